"""Where the Pulumi stack lives and what it is told: backend, secrets, config, CLI, plugin.

- Project ``migctl``; the stack is ``[project] stack`` (default: the environment).
- Backend: ``PULUMI_BACKEND_URL``, else ``[pulumi] backend``, else
  ``file://~/.migctl/pulumi`` (created on first use).
- Secrets: ``[pulumi] secrets_provider`` (``awskms://...``) is used when the
  stack is created; self-managed backends without one need a passphrase in
  ``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``.
- Config: ``aws:region`` and ``migctl:environment`` from ``[project]``, the rest
  from ``[pulumi] config``; ``migctl:lambdaPackage`` always, as an absolute path (a
  relative one is relative to migctl.toml's folder, like every path in it); keys in ``[pulumi] secret_keys`` are set with
  ``--secret`` and must take their value from ``{ env = "VAR" }`` or
  ``{ file = "path" }``, never from migctl.toml itself.
- The Pulumi CLI: on ``PATH`` or under ``--pulumi-root``/``[pulumi] root``
  (``<root>/bin/pulumi``); at least :data:`MIN_PULUMI_VERSION`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from migctl.config import Settings
from migctl.errors import ConfigError, ToolMissingError
from migctl.infra.errors import INSTALL_CLI, command_failure, translate_pulumi_error
from migctl.infra.lambda_build import PACKAGE_KEY, package_path
from migctl.redact import register_secret

PROJECT = "migctl"
MIN_PULUMI_VERSION = "3.181.0"  # inline programs for refresh and destroy (--client)
CONFIG_NAMESPACES = ("migctl:", "aws:")


@dataclass(frozen=True)
class ConfigEntry:
    key: str
    value: str = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class StackSpec:
    """Everything needed to open the stack, resolved from settings and the environment."""

    stack: str
    backend_url: str
    secrets_provider: str | None
    pulumi_root: Path | None
    work_dir: Path
    env_vars: Mapping[str, str]


def stack_spec(
    settings: Settings, *, pulumi_root: Path | None = None, environ: Mapping[str, str] | None = None
) -> StackSpec:
    env = os.environ if environ is None else environ
    backend = _backend_url(settings, env)
    provider = settings.pulumi.secrets_provider
    if provider and provider != "passphrase" and "://" not in provider:
        raise ConfigError(
            f"[pulumi] secrets_provider {provider!r} is not a provider URL",
            hint="use 'passphrase' or a URL such as awskms://alias/migctl?region=eu-west-1",
        )
    if not backend.startswith(("https://", "http://")) and provider in (None, "passphrase"):
        _require_passphrase(env)
    env_vars = {"PULUMI_BACKEND_URL": backend, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    if settings.project.profile:
        env_vars["AWS_PROFILE"] = settings.project.profile
    return StackSpec(
        stack=settings.project.stack_name,
        backend_url=backend,
        secrets_provider=provider if provider not in (None, "passphrase") else None,
        pulumi_root=_pulumi_root(settings, pulumi_root),
        work_dir=settings.state_dir / "pulumi",
        env_vars=env_vars,
    )


def _backend_url(settings: Settings, env: Mapping[str, str]) -> str:
    url = env.get("PULUMI_BACKEND_URL") or settings.pulumi.backend
    if not url:
        path = Path.home() / ".migctl" / "pulumi"
    elif url.startswith("file://"):
        path = Path(url[len("file://") :]).expanduser()
        if not path.is_absolute():
            path = settings.base_dir / path
    else:
        return url
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"file://{path}"


def _require_passphrase(env: Mapping[str, str]) -> None:
    if "PULUMI_CONFIG_PASSPHRASE" in env:
        return
    passphrase_file = env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if passphrase_file:
        if not Path(passphrase_file).is_file():
            raise ConfigError(f"PULUMI_CONFIG_PASSPHRASE_FILE={passphrase_file} is not a file")
        return
    raise ConfigError(
        "no passphrase for the stack's secrets",
        hint="set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE, "
        'or set [pulumi] secrets_provider = "awskms://..." (docs/deploy.md)',
    )


def _pulumi_root(settings: Settings, flag: Path | None) -> Path | None:
    if flag is not None:
        root = flag.expanduser().absolute()
    elif settings.pulumi.root:
        root = Path(settings.pulumi.root).expanduser()
        root = root if root.is_absolute() else settings.base_dir / root
    else:
        return None
    if not (root / "bin" / "pulumi").exists() and root.name == "bin" and (root / "pulumi").exists():
        return root.parent  # they named the bin directory itself
    return root


def stack_config(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[ConfigEntry, ...]:
    """migctl.toml -> stack config entries; secret values are registered for redaction."""
    env = os.environ if environ is None else environ
    if not settings.project.region:
        raise ConfigError(
            "no AWS region for the stack", hint="set [project] region, --region or AWS_REGION"
        )
    entries = {
        "aws:region": ConfigEntry("aws:region", settings.project.region),
        "migctl:environment": ConfigEntry("migctl:environment", settings.project.environment),
    }
    secret_keys = {_qualify(k) for k in settings.pulumi.secret_keys}
    for raw_key, raw_value in settings.pulumi.config.items():
        key = _qualify(raw_key)
        if key in entries:
            raise ConfigError(
                f"[pulumi] config {raw_key!r} comes from [project]; remove it from [pulumi] config"
            )
        secret = key in secret_keys
        value = _config_value(
            raw_value, raw_key, secret=secret, env=env, base_dir=settings.base_dir
        )
        if secret:
            register_secret(value)
        entries[key] = ConfigEntry(key, value, secret)
    package = _qualify(PACKAGE_KEY)  # absolute: the program runs in another folder
    raw_package = {PACKAGE_KEY: entries[package].value} if package in entries else {}
    entries[package] = ConfigEntry(
        package, str(package_path(raw_package, settings.base_dir)), package in secret_keys
    )
    unknown = sorted(secret_keys - entries.keys())
    if unknown:
        raise ConfigError(
            f"[pulumi] secret_keys names {', '.join(unknown)}, which [pulumi] config does not set"
        )
    return tuple(entries.values())


def _qualify(key: str) -> str:
    if ":" not in key:
        return f"migctl:{key}"
    if not key.startswith(CONFIG_NAMESPACES):
        raise ConfigError(
            f"[pulumi] config key {key!r}: only migctl:* and aws:* keys are passed to the stack"
        )
    return key


def _config_value(
    value: Any, key: str, *, secret: bool, env: Mapping[str, str], base_dir: Path
) -> str:
    if isinstance(value, dict) and set(value) == {"env"}:
        if value["env"] not in env:
            raise ConfigError(f"[pulumi] config {key!r} reads ${value['env']}, which is not set")
        return env[value["env"]]
    if isinstance(value, dict) and set(value) == {"file"}:
        path = Path(str(value["file"])).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"[pulumi] config {key!r}: cannot read {path}: {exc.strerror}"
            ) from None
    if secret:
        raise ConfigError(
            f"[pulumi] config {key!r} is a secret: keep its value out of migctl.toml",
            hint=f'write {key} = {{ env = "VAR" }} or {{ file = "path" }}',
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def pulumi_command(root: Path | None) -> Any:
    """A ``PulumiCommand`` for the CLI on PATH or under ``root``; ToolMissingError if none."""
    from pulumi.automation import InvalidVersionError, PulumiCommand
    from semver import VersionInfo

    where = str(root / "bin" / "pulumi") if root else "pulumi (on PATH)"
    try:
        return PulumiCommand(
            root=str(root) if root else None, version=VersionInfo.parse(MIN_PULUMI_VERSION)
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        raise ToolMissingError(
            f"the Pulumi CLI is missing: no executable {where}", hint=INSTALL_CLI
        ) from None
    except subprocess.CalledProcessError as exc:
        raise ToolMissingError(
            f"'{where} version' failed with exit {exc.returncode}", hint=INSTALL_CLI
        ) from None
    except InvalidVersionError as exc:
        raise ToolMissingError(
            f"the Pulumi CLI {where} cannot be used: {exc}",
            hint=f"migctl needs {MIN_PULUMI_VERSION} or later",
        ) from None


def open_stack(spec: StackSpec, *, program: Any, create: bool) -> Any:
    """Select (or, with ``create``, create) the stack in a workspace under ``.migctl/pulumi``."""
    from pulumi import automation as auto

    command = pulumi_command(spec.pulumi_root)
    spec.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(spec.work_dir),
        env_vars=dict(spec.env_vars),
        secrets_provider=spec.secrets_provider,
        pulumi_command=command,
        project_settings=auto.ProjectSettings(name=PROJECT, runtime="python"),
    )
    opener = auto.create_or_select_stack if create else auto.select_stack
    try:
        return opener(spec.stack, project_name=PROJECT, program=program, opts=opts)
    except Exception as exc:
        err = translate_pulumi_error(exc, spec, "stack select")
        if err is None:
            raise
        raise err from None


@dataclass(frozen=True)
class ConfigSync:
    set_keys: tuple[str, ...]
    removed_keys: tuple[str, ...]


def sync_config(stack: Any, entries: tuple[ConfigEntry, ...]) -> ConfigSync:
    """Make the stack config match ``entries``: set what differs, drop stale ``migctl:*`` keys.

    Only changed values are passed to ``pulumi config set-all``, so a secret
    crosses a process boundary only when it changes.
    """
    from pulumi.automation import ConfigValue

    current = stack.get_all_config()
    wanted = {e.key: e for e in entries}
    changed = {
        e.key: ConfigValue(value=e.value, secret=e.secret)
        for e in entries
        if e.key not in current
        or current[e.key].value != e.value
        or bool(current[e.key].secret) != e.secret
    }
    stale = sorted(k for k in current if k.startswith("migctl:") and k not in wanted)
    if changed:
        stack.set_all_config(changed)
    if stale:
        stack.remove_all_config(stale)
    return ConfigSync(tuple(sorted(changed)), tuple(stale))


def aws_plugin_version() -> str:
    """The aws provider plugin version the installed pulumi-aws package was built for."""
    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissingError(
            "the pulumi-aws package is not installed", hint="pip install 'migctl[infra]'"
        )
    plugin_json = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    try:
        return str(json.loads(plugin_json.read_text())["version"]).lstrip("v")
    except (OSError, ValueError, KeyError):
        return version("pulumi_aws")


def ensure_aws_plugin(workspace: Any, version: str) -> bool:
    """Install the aws resource plugin at ``version`` unless present; True when it was installed."""
    from pulumi.automation import CommandError

    for plugin in workspace.list_plugins():
        if (
            plugin.name == "aws"
            and plugin.kind == "resource"
            and (plugin.version or "").lstrip("v") == version
        ):
            return False
    try:
        workspace.install_plugin("aws", f"v{version}")
    except CommandError as exc:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        tarball = f"pulumi-resource-aws-v{version}-{platform.system().lower()}-{arch}.tar.gz"
        raise ToolMissingError(
            f"the Pulumi aws plugin v{version} is not installed and could not be installed: "
            f"{command_failure(exc).summary}",
            hint=f"offline: fetch https://get.pulumi.com/releases/plugins/{tarball} on a "
            f"connected machine, copy it here and run "
            f"'pulumi plugin install resource aws v{version} --file {tarball}'",
        ) from None
    return True
