"""Who ran a cutover run, with what: journaled with each ``run_started`` for the report.

The configuration is identified by a digest of its effective settings with
the secrets left out: a DSN counts without its password, and the Pulumi
config keys named in ``[pulumi] secret_keys`` count by name only. Two runs
with the same digest ran with the same settings; the settings themselves
stay where they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from migctl import __version__
from migctl.cutover.lock import me
from migctl.redact import MASK, redact_dsn

if TYPE_CHECKING:
    from migctl.config import Settings

_NOT_SETTINGS = ("config_path", "output", "verbose")  # where the file was, and global flags


def run_facts(settings: Settings) -> dict[str, Any]:
    """The ``run_started`` fields that say who ran it, where, and with what."""
    holder = me("")  # who the lock would name: the same user, host and pid
    return {
        "user": holder.user,
        "host": holder.host,
        "pid": holder.pid,
        "migctl_version": __version__,
        "config_sha256": config_digest(settings),
    }


def config_digest(settings: Settings) -> str:
    """SHA-256 of the effective settings, secrets excluded (see the module's docstring)."""
    data = dataclasses.asdict(settings)
    for name in _NOT_SETTINGS:
        data.pop(name, None)
    for side in ("source", "target"):
        if data[side].get("dsn"):
            data[side]["dsn"] = redact_dsn(data[side]["dsn"])
    secret = set(settings.pulumi.secret_keys)
    data["pulumi"]["config"] = {
        key: MASK if key in secret else value for key, value in data["pulumi"]["config"].items()
    }
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
