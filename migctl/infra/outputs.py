"""Stack outputs cached by ``migctl outputs``: the last fallback when resolving targets.

``migctl outputs`` (see ``provision.py``) writes ``<state_dir>/outputs-<stack>.json``
as a flat JSON object of output name -> value, with secret values masked.
Commands resolve a target from a flag, then config, then this cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migctl.config import Settings
from migctl.errors import ConfigError

SECRET_MASK = "[secret]"  # noqa: S105 - the placeholder the cache holds instead of a secret


def outputs_cache_path(settings: Settings) -> Path:
    return settings.state_dir / f"outputs-{settings.project.stack_name}.json"


def load_cached_outputs(settings: Settings) -> dict[str, Any]:
    """The cached outputs of the configured stack, or ``{}`` when none are cached."""
    path = outputs_cache_path(settings)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: unreadable outputs cache ({exc}); rerun 'migctl outputs'"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: outputs cache is not a JSON object; rerun 'migctl outputs'")
    return data


def resolve(settings: Settings, value: str | None, output_key: str, *, what: str, flag: str) -> str:
    """A flag or config value, else the cached stack output, else a ConfigError naming all three."""
    if value:
        return value
    cached = load_cached_outputs(settings).get(output_key)
    if isinstance(cached, str) and cached and cached != SECRET_MASK:
        return cached
    raise ConfigError(
        f"no {what} given",
        hint=(
            f"use {flag}, set it in migctl.toml, "
            f"or run 'migctl outputs' to cache the stack output {output_key}"
        ),
    )
