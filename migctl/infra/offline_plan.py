"""``migctl plan``: evaluate the Pulumi program offline and price what it would create.

The program runs under ``pulumi.runtime.set_mocks`` (see
``infra_pulumi.offline``), so no cloud credentials, no Pulumi CLI and no
network are needed. Pulumi keeps its runtime state in context variables; the
evaluation runs in a fresh context on its own event loop and leaves nothing
behind, so it is safe in-process (the tests evaluate several stacks in one).

Config comes, lowest precedence first, from ``Pulumi.<stack>.yaml`` beside
``Pulumi.yaml``, then ``[pulumi] config`` in migctl.toml, then ``--set``.
Encrypted (``secure:``) values cannot be read offline; a stand-in is used and
the plan says so. A relative ``lambdaPackage`` is made absolute against the folder
of the file that sets it (the stack file's, migctl.toml's; the current folder for
``--set``), and the default against migctl.toml's, as ``migctl up`` does.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migctl.errors import ConfigError, UsageError
from migctl.infra.lambda_build import PACKAGE_KEY, package_path
from migctl.infra.pricing import CostEstimate, PriceTable, estimate, load_price_table

NAMESPACE = "migctl"
SECRET_STAND_IN = "offline-plan-stand-in"  # noqa: S105 - replaces an encrypted value


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    component: str


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    environment: str
    stack: str
    resources: tuple[PlannedResource, ...]
    counts: Mapping[str, int]
    monthly_cost_usd: CostEstimate
    warnings: tuple[str, ...]

    def by_component(self) -> dict[str, list[PlannedResource]]:
        grouped: dict[str, list[PlannedResource]] = {}
        for res in self.resources:
            grouped.setdefault(res.component, []).append(res)
        return grouped


def project_dir() -> Path:
    """The folder of ``Pulumi.yaml``: the parent of the ``infra_pulumi`` package."""
    import infra_pulumi

    return Path(infra_pulumi.__file__).resolve().parent.parent


def qualify(key: str) -> str:
    """``containerImage`` -> ``migctl:containerImage``; namespaced keys stay as they are."""
    return key if ":" in key else f"{NAMESPACE}:{key}"


def config_text(value: Any) -> str:
    """Pulumi config values are strings; structures are JSON, booleans lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def read_stack_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """The ``config:`` of a ``Pulumi.<stack>.yaml`` and the keys that are encrypted."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable stack config: {exc}") from None
    section = data.get("config") if isinstance(data, dict) else None
    if section is None:
        return {}, []
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'config' must be a mapping")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in section.items():
        encrypted = isinstance(value, dict) and "secure" in value
        if encrypted:
            secret_keys.append(str(key))
        config[qualify(str(key))] = SECRET_STAND_IN if encrypted else config_text(value)
    return config, secret_keys


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs; a pair without ``=`` is a UsageError."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, not {pair!r}")
        overrides[qualify(key.strip())] = value
    return overrides


def gather_config(
    stack: str,
    *,
    settings_config: Mapping[str, Any],
    secret_keys: Sequence[str] = (),
    overrides: Sequence[str] = (),
    environment: str | None = None,
    region: str | None = None,
    directory: Path | None = None,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Merge the stack file, ``[pulumi] config`` of migctl.toml and ``--set``; and warnings.

    ``environment`` and ``region`` (from ``[project]`` or ``--env``) win over
    both files, as they do for ``migctl up``. Values written ``{ env = "VAR" }``
    or ``{ file = "path" }`` are read; secret keys never are (a stand-in is used).
    """
    warnings: list[str] = []
    stack_file = (directory or project_dir()) / f"Pulumi.{stack}.yaml"
    config: dict[str, str] = {}
    package_key = qualify(PACKAGE_KEY)
    package_base = base_dir or Path.cwd()  # where a relative lambdaPackage is relative to
    if stack_file.is_file():
        config, encrypted = read_stack_file(stack_file)
        package_base = stack_file.parent if package_key in config else package_base
        warnings.extend(
            f"{key} is encrypted in {stack_file.name}; the offline plan used a stand-in value"
            for key in encrypted
        )
    secrets = {qualify(k) for k in secret_keys}
    env = os.environ if environ is None else environ
    for raw_key, raw_value in settings_config.items():
        key = qualify(raw_key)
        value = None if key in secrets else _indirect(raw_value, env, base_dir or Path.cwd())
        if value is None:
            warnings.append(f"{key}: the offline plan used a stand-in value")
        config[key] = SECRET_STAND_IN if value is None else value
        package_base = (base_dir or Path.cwd()) if key == package_key else package_base
    overridden = parse_overrides(overrides)
    config.update(overridden)
    package_base = Path.cwd() if package_key in overridden else package_base
    if config.get(package_key) != SECRET_STAND_IN:
        given = {PACKAGE_KEY: config[package_key]} if package_key in config else {}
        config[package_key] = str(package_path(given, package_base))
    if region:
        config["aws:region"] = region
    if environment:
        config[f"{NAMESPACE}:environment"] = environment
    return config, warnings


def _indirect(value: Any, env: Mapping[str, str], base_dir: Path) -> str | None:
    """A ``[pulumi] config`` value as text; None when its ``env``/``file`` source is absent."""
    if isinstance(value, dict) and set(value) == {"env"}:
        return env.get(str(value["env"]))
    if isinstance(value, dict) and set(value) == {"file"}:
        path = Path(str(value["file"])).expanduser()
        try:
            return (path if path.is_absolute() else base_dir / path).read_text().strip()
        except OSError:
            return None
    return config_text(value)


def plan(
    stack: str,
    config: Mapping[str, str],
    *,
    prices: PriceTable | None = None,
    warnings: Sequence[str] = (),
) -> PlanResult:
    """Evaluate the program for ``stack`` with ``config`` and price the result."""
    import pulumi

    from infra_pulumi.offline import evaluate
    from infra_pulumi.program import pulumi_program

    table = prices or load_price_table()
    try:
        evaluation = evaluate(pulumi_program, config=config, stack=stack, preview=True)
    except pulumi.RunError as exc:
        raise ConfigError(f"stack {stack}: {exc}") from None
    custom = [r for r in evaluation.resources if r.custom]
    planned = tuple(
        sorted(
            (PlannedResource(r.type, r.name, r.component or "-") for r in custom),
            key=lambda r: (r.component, r.type, r.name),
        )
    )
    cost = estimate(custom, table)
    notes = [*warnings, *evaluation.warnings]
    region = config.get("aws:region")
    if region and region != table.region:
        notes.append(
            f"prices are for {table.region} (taken {table.taken_on}); the stack is in {region}"
        )
    notes.extend(f"no price for {name}" for name in cost.unpriced)
    return PlanResult(
        environment=str(evaluation.outputs.get("environment", stack)),
        stack=stack,
        resources=planned,
        counts=dict(sorted(Counter(r.type for r in planned).items())),
        monthly_cost_usd=cost,
        warnings=tuple(notes),
    )
