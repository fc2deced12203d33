"""migctl.toml + environment + flags -> one typed, frozen Settings object.

Precedence, highest first: command-line flag, environment, file, stack outputs
(resolved later by the command that needs them, see ``infra/outputs.py``),
default. Every key is documented in docs/configuration.md; a test keeps the two
in step.

Each table is a frozen dataclass. Unknown tables or keys, wrong types and
invalid TOML are a :class:`ConfigError` (exit 2) naming the table and key.
Any key can also be set from the environment as ``MIGCTL_<TABLE>_<KEY>``
(for example ``MIGCTL_PROJECT_ENVIRONMENT=staging``).

A command's flags go over the settings in one step, :func:`overridden`: a flag
left out is ``None`` and changes nothing, a flag given (``0`` included) wins.
A key's range (:func:`limits`) is checked the same way wherever its value came
from: the file, the environment or the flag.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from migctl.errors import ConfigError

DEFAULT_CONFIG_NAME = "migctl.toml"
OutputFormat = Literal["table", "json"]


def limits(
    *, flag: str | None = None, at_least: float | None = None, above: float | None = None
) -> dict[str, Any]:
    """A key's range, as field metadata, and the flag that sets it (for messages)."""
    return {"flag": flag, "at_least": at_least, "above": above}


def bounded(default: Any, **range_: Any) -> Any:
    """A settings field with a default and :func:`limits`."""
    return field(default=default, metadata=limits(**range_))


@dataclass(frozen=True)
class ProjectSettings:
    environment: str = "test"
    region: str | None = None
    profile: str | None = None
    stack: str | None = None

    @property
    def stack_name(self) -> str:
        return self.stack or self.environment

    @property
    def is_production(self) -> bool:
        return self.environment in {"prod", "production"}


@dataclass(frozen=True)
class DatabaseSettings:
    """Where a database is: exactly one of dsn, dsn_env or secret_arn."""

    dsn: str | None = None
    dsn_env: str | None = None
    secret_arn: str | None = None
    host: str | None = None  # overrides the host in the secret (tunnels, proxies)
    port: int | None = None
    dbname: str | None = None
    sslmode: str | None = None


@dataclass(frozen=True)
class AlarmSettings:
    prefix: str | None = None
    names: tuple[str, ...] = ()
    allow_insufficient_data: bool = False


@dataclass(frozen=True)
class ValidateSettings:
    schemas: tuple[str, ...] = bounded(("public",), flag="--schema")
    tables: tuple[str, ...] = bounded((), flag="--table")
    exclude: tuple[str, ...] = bounded((), flag="--exclude")
    jobs: int = bounded(2, flag="--jobs", at_least=1)
    max_keys: int = bounded(100, flag="--max-keys", at_least=0)
    chunk_rows: int = bounded(512, flag="--chunk-rows", at_least=1)  # validate.table.CHUNK_ROWS
    statement_timeout_seconds: int = bounded(600, at_least=0)
    lock_timeout_seconds: int = bounded(5, at_least=0)
    parallel_workers: int = bounded(0, flag="--parallel-workers", at_least=0)
    executor: Literal["local", "lambda", "lambda-local"] = bounded("local", flag="--executor")
    function: str | None = bounded(None, flag="--function")  # default: stack output
    # default: 50 (lambda), 2 x CPUs (lambda-local)
    concurrency: int | None = bounded(None, flag="--concurrency", at_least=1)


@dataclass(frozen=True)
class DmsSettings:
    task: str | None = bounded(None, flag="--task")
    instance: str | None = None
    max_latency_seconds: float = bounded(5.0, flag="--max-latency", at_least=0)
    stable_for: int = bounded(3, flag="--stable-for", at_least=1)
    metric_period_seconds: int = bounded(60, at_least=1)
    # `dms lint` (and the gate of `dms start` and the cutover's preflight)
    lint_max_rows: int = bounded(1_000_000, flag="--max-rows", at_least=1)
    lint_statement_timeout_seconds: float = bounded(300.0, at_least=0)
    lint_transaction_age_seconds: float = bounded(300.0, at_least=0)


@dataclass(frozen=True)
class EcsSettings:
    cluster: str | None = None
    service: str | None = None
    container: str | None = None
    bake_seconds: float = bounded(300.0, flag="--bake", at_least=0)
    timeout_seconds: float = bounded(900.0, flag="--timeout", at_least=0)
    gate_alarms: tuple[str, ...] = ()
    interval_seconds: float = bounded(10.0, flag="--interval", above=0)
    # The cutover's standby service and the listener it switches (default: the stack outputs)
    standby_service: str | None = None
    listener_arn: str | None = None


@dataclass(frozen=True)
class CutoverSettings:
    journal: str | None = None  # local path or s3:// URI; default .migctl/cutover-<env>.jsonl
    freeze_strategy: Literal["fence", "none"] = "fence"
    app_roles: tuple[str, ...] = ()  # their sessions are ended when they hold the freeze back
    sequence_margin: int = bounded(1000, at_least=0)
    sns_topic_arn: str | None = None
    image: str | None = bounded(None, flag="--image")
    interval_seconds: float = bounded(2.0, above=0)  # between polls of every cutover wait
    # preflight window, sessions, DMS stop/resume, post-checks
    wait_timeout_seconds: float = bounded(600.0, at_least=0)
    marker_timeout_seconds: float = bounded(300.0, at_least=0)  # the marker row to the target
    # How the freeze validates: a baseline before it, then only what changed (docs/runbook.md)
    validate: Literal["incremental", "full"] = "incremental"
    # How the new image takes traffic: the standby service, started before the freeze, and a
    # listener switch (docs/runbook.md); or a rollout of the service inside the freeze.
    switch: Literal["standby", "rollout"] = "standby"
    dms_target_role: str | None = None  # default: the DMS target endpoint's user name
    # The way back after go-live (docs/fallback.md): reverse replication, target -> source.
    fallback: Literal["reverse-replication", "none"] = "reverse-replication"
    reverse_task: str | None = None  # default: stack output dmsReverseTaskArn
    reverse_slot: str = "migctl_reverse"  # the slot on the target the reverse task reads
    reverse_plugin: Literal["test_decoding", "pgoutput", "pglogical"] = "test_decoding"
    reverse_role: str = "migctl_reverse"  # the role the reverse task writes to the source as


@dataclass(frozen=True)
class SandboxSettings:
    dir: str = ".migctl/sandbox"  # where `migctl sandbox` commands find it (sandbox.env sets it)
    # How long the emulated ECS takes to start a deployment's tasks and see them healthy
    task_start_seconds: float = bounded(2.0, at_least=0)


@dataclass(frozen=True)
class PulumiSettings:
    backend: str | None = None
    secrets_provider: str | None = None
    root: str | None = None  # directory holding the pulumi CLI when it is not on PATH
    config: Mapping[str, Any] = field(default_factory=dict)
    secret_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    project: ProjectSettings = field(default_factory=ProjectSettings)
    source: DatabaseSettings = field(default_factory=DatabaseSettings)
    target: DatabaseSettings = field(default_factory=DatabaseSettings)
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    validate: ValidateSettings = field(default_factory=ValidateSettings)
    dms: DmsSettings = field(default_factory=DmsSettings)
    ecs: EcsSettings = field(default_factory=EcsSettings)
    cutover: CutoverSettings = field(default_factory=CutoverSettings)
    pulumi: PulumiSettings = field(default_factory=PulumiSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    # Not from the file: where it came from, and the global flags.
    config_path: Path | None = None
    output: OutputFormat = "table"
    verbose: int = 0

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        return self.config_path.parent if self.config_path else Path.cwd()

    @property
    def state_dir(self) -> Path:
        """Where migctl keeps caches, journals and locks (``.migctl`` beside the config)."""
        return self.base_dir / ".migctl"


TABLES: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name not in {"config_path", "output", "verbose"}
}


def load_settings(
    config: Path | None = None,
    *,
    output: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    verbose: int = 0,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build Settings from the file, the environment and the global flags."""
    env = os.environ if environ is None else environ
    path = _find_config(config, env, cwd or Path.cwd())
    logging.getLogger("migctl").info("config: %s", path or "none found (defaults)")
    raw = _read_toml(path) if path else {}
    data = _merge_env(raw, env)
    tables: dict[str, Any] = {}
    for name, cls in TABLES.items():
        tables[name] = _build(cls, data.pop(name, {}), name)
    if data:
        unknown = ", ".join(sorted(data))
        raise ConfigError(f"{_where(path)}: unknown table [{unknown}]; known: {', '.join(TABLES)}")
    project: ProjectSettings = tables["project"]
    region = region or project.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    profile = profile or project.profile or env.get("AWS_PROFILE")
    tables["project"] = dataclasses.replace(project, region=region, profile=profile)
    fmt = (output or env.get("MIGCTL_OUTPUT") or "table").lower()
    if fmt not in ("table", "json"):
        raise ConfigError(f"--output must be 'table' or 'json', not {fmt!r}")
    return Settings(
        **tables,
        config_path=path,
        output=typing.cast(OutputFormat, fmt),
        verbose=verbose,
    )


def _find_config(config: Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    if config is None and env.get("MIGCTL_CONFIG"):
        config = Path(env["MIGCTL_CONFIG"])
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"config file not found: {config}")
        return config.resolve()
    for folder in (cwd, *cwd.resolve().parents):  # the nearest, as git finds .git
        found = folder / DEFAULT_CONFIG_NAME
        if found.is_file():
            return found.resolve()
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _merge_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``MIGCTL_<TABLE>_<KEY>`` variables that name a known table and key."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for table, cls in TABLES.items():
        for f in dataclasses.fields(cls):
            var = f"MIGCTL_{table}_{f.name}".upper()
            if var in env:
                section = data.setdefault(table, {})
                if isinstance(section, dict):
                    section[f.name] = _EnvValue(env[var], var)
    return data


@dataclass(frozen=True)
class _EnvValue:
    """A string from the environment, converted to the field's type on build."""

    text: str
    var: str


def _where(path: Path | None) -> str:
    return str(path) if path else "configuration"


def _build(cls: type[Any], section: Any, table: str) -> Any:
    if not isinstance(section, dict):
        raise ConfigError(f"[{table}] must be a table, not {type(section).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in [{table}]; known keys: {', '.join(sorted(known))}"
        )
    values = {key: _coerce(value, hints[key], f"[{table}] {key}") for key, value in section.items()}
    built = cls(**values)
    for f in dataclasses.fields(cls):
        _check_range(f, getattr(built, f.name), f"[{table}] {f.name}")
    return built


def _check_range(f: dataclasses.Field[Any], value: Any, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    at_least, above = f.metadata.get("at_least"), f.metadata.get("above")
    if at_least is not None and value < at_least:
        raise ConfigError(f"{where} must be at least {at_least:g}, not {value:g}")
    if above is not None and value <= above:
        raise ConfigError(f"{where} must be more than {above:g}, not {value:g}")


def overridden(settings: Settings, table: str, **flags: Any) -> Settings:
    """``settings`` with the command-line flags given (not ``None``) over one table's keys.

    Each value is checked as the file's are (type, choices, range), the message
    naming the flag: ``--jobs must be at least 1, not 0``.
    """
    cls = TABLES[table]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    changes: dict[str, Any] = {}
    for name, given in flags.items():
        if given is None:
            continue
        f = fields[name]
        where = f.metadata.get("flag") or f"[{table}] {name}"
        raw = list(given) if typing.get_origin(hints[name]) is tuple else given  # as TOML has it
        value = _coerce(raw, hints[name], where)
        _check_range(f, value, where)
        changes[name] = value
    if not changes:
        return settings
    return dataclasses.replace(
        settings, **{table: dataclasses.replace(getattr(settings, table), **changes)}
    )


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if isinstance(value, _EnvValue):
        return _coerce_env(value, hint, where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is Literal:
        if value not in args:
            choices = " | ".join(map(str, args))
            raise ConfigError(f"{where} must be one of {choices}, not {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return tuple(value)
    if origin is Mapping or hint is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return dict(value)
    expected: type | tuple[type, ...] = (int, float) if hint is float else hint
    if isinstance(value, bool) and hint is not bool:
        raise ConfigError(f"{where} must be {hint.__name__}, not a boolean")
    if not isinstance(value, expected):
        raise ConfigError(f"{where} must be {hint.__name__}, not {type(value).__name__}")
    return float(value) if isinstance(value, int) and hint is float else value


def _coerce_env(value: _EnvValue, hint: Any, where: str) -> Any:
    text = value.text
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce_env(value, inner, where)
    try:
        if origin is tuple:
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if hint is bool:
            if text.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(text)
            return text.lower() in {"1", "true", "yes"}
        if hint in (int, float):
            return hint(text)
    except ValueError:
        raise ConfigError(
            f"{value.var}={text!r}: {where} must be {getattr(hint, '__name__', hint)}"
        ) from None
    if origin is Mapping or hint is Mapping:
        raise ConfigError(f"{value.var}: {where} cannot be set from the environment")
    return _coerce(text, hint, where)
