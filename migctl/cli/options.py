"""What the flags of several commands share: their ranges come from the settings they override.

A flag that overrides a ``migctl.toml`` key gets its range from that key's
``config.bounded`` declaration, so ``--jobs 0`` and ``jobs = 0`` in the file are
refused by the same rule (the flag by typer, with the range in ``--help``; the
file and the environment when the settings load, and ``config.overridden``).
"""

from __future__ import annotations

import dataclasses

from migctl.config import TABLES


def at_least(table: str, key: str) -> float | None:
    """The least value ``[table] key`` takes (``None``: no floor, or an open one)."""
    (found,) = [f for f in dataclasses.fields(TABLES[table]) if f.name == key]
    floor = found.metadata.get("at_least")
    return None if floor is None else floor
