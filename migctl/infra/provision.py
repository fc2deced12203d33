"""Provision an environment with the Pulumi Automation API: preview, up, destroy, refresh, outputs.

The inline program is ``infra_pulumi.program.pulumi_program``, imported only
when the engine runs it. Each operation opens the stack (``infra.stack``),
syncs the stack config from migctl.toml, makes sure the aws plugin is present,
then runs on a worker thread while engine events reach ``on_progress`` on the
caller's thread (``provision_events``). Failures of the operation itself come
back in :class:`OperationResult` (``error``), so the caller can render what
happened before exiting; problems before it starts are raised.

Stack outputs are cached in ``<state_dir>/outputs-<stack>.json`` with secret
values masked (``infra.outputs.SECRET_MASK``); ``destroy`` removes the cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from migctl.config import Settings
from migctl.errors import MigctlError, OperationalError, UsageError, translate
from migctl.infra.errors import translate_pulumi_error
from migctl.infra.events import (
    OnProgress,
    ProgressEvent,
    ProgressTracker,
    ResourceProgress,
    StreamOutcome,
    run_with_events,
)
from migctl.infra.outputs import SECRET_MASK, outputs_cache_path
from migctl.infra.running_image import IMAGE_KEY, RunningImage, running_image, service_of
from migctl.infra.stack import (
    ConfigEntry,
    StackSpec,
    aws_plugin_version,
    ensure_aws_plugin,
    open_stack,
    stack_config,
    stack_spec,
    sync_config,
)
from migctl.redact import redact_text, register_secret

log = logging.getLogger(__name__)
T = TypeVar("T")


def infra_program() -> None:
    """The inline Pulumi program: ``infra_pulumi.program.pulumi_program``, imported when it runs."""
    from infra_pulumi.program import pulumi_program

    pulumi_program()


@dataclass(frozen=True)
class OutputEntry:
    value: Any = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class StackOutputs:
    stack: str
    values: Mapping[str, OutputEntry]
    cache_path: Path | None = None

    def shown(self, *, show_secrets: bool = False) -> dict[str, Any]:
        """Output name -> value, secret values masked unless ``show_secrets``."""
        return {
            k: (v.value if show_secrets or not v.secret else SECRET_MASK)
            for k, v in sorted(self.values.items())
        }

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(sorted(k for k, v in self.values.items() if v.secret))


@dataclass(frozen=True, kw_only=True)
class OperationResult:
    """How ``preview``/``up``/``destroy``/``refresh`` went. ``error`` is set when it failed."""

    operation: str
    stack: str
    ok: bool
    applied: bool = False  # resources were changed (or an attempt was made)
    declined: bool = False  # the confirmation was answered no
    cancelled: bool = False  # interrupted with Ctrl-C
    forced: bool = False  # a second Ctrl-C: pulumi was terminated and the lock released
    changes: Mapping[str, int] = field(default_factory=dict)
    preview_changes: Mapping[str, int] | None = None
    resources: tuple[ResourceProgress, ...] = ()
    errors: tuple[str, ...] = ()
    outputs: StackOutputs | None = None
    config_changed: tuple[str, ...] = ()
    plugin_installed: bool = False
    running_image: RunningImage | None = None  # what the service runs, which the stack declares
    warnings: tuple[str, ...] = ()
    error: MigctlError | None = field(default=None, compare=False)


Confirm = Callable[[OperationResult], bool]


def preview(
    settings: Settings,
    *,
    pulumi_root: Path | None = None,
    program: Callable[[], None] | None = None,
    on_progress: OnProgress | None = None,
    aws: Any = None,
) -> OperationResult:
    """What ``up`` would change. Creates the (empty) stack if it does not exist yet.

    With ``aws`` (clients), the stack declares the image the service runs (:mod:`.running_image`).
    """
    stack, spec, prepared = _prepare(
        settings, pulumi_root, program, create=True, on_progress=on_progress, aws=aws
    )
    return _finish(_run(stack, spec, "preview", settings, on_progress), prepared)


def up(
    settings: Settings,
    *,
    pulumi_root: Path | None = None,
    program: Callable[[], None] | None = None,
    on_progress: OnProgress | None = None,
    confirm: Confirm | None = None,
    aws: Any = None,
) -> OperationResult:
    """Create or update the stack's resources; with ``confirm``, preview and apply only on yes.

    With ``aws`` (clients), the stack declares the image the service runs (:mod:`.running_image`).
    """
    stack, spec, prepared = _prepare(
        settings, pulumi_root, program, create=True, on_progress=on_progress, aws=aws
    )
    result = _confirmed_run(stack, spec, "up", settings, on_progress, confirm)
    if result.outputs is not None:
        result = _with_cache(result, settings)
    return _finish(result, prepared)


def destroy(
    settings: Settings,
    *,
    pulumi_root: Path | None = None,
    program: Callable[[], None] | None = None,
    on_progress: OnProgress | None = None,
    confirm: Confirm | None = None,
    allow_prod: bool = False,
) -> OperationResult:
    """Delete every resource of the stack (refused for production without ``allow_prod``)."""
    if settings.project.is_production and not allow_prod:
        raise UsageError(
            f"refusing to destroy the production environment {settings.project.environment!r}",
            hint="pass --allow-prod if that is really what you mean",
        )
    stack, spec, prepared = _prepare(
        settings, pulumi_root, program, create=False, on_progress=on_progress
    )
    result = _confirmed_run(stack, spec, "destroy", settings, on_progress, confirm)
    if result.ok:
        outputs_cache_path(settings).unlink(missing_ok=True)
    return _finish(result, prepared)


def refresh(
    settings: Settings,
    *,
    pulumi_root: Path | None = None,
    program: Callable[[], None] | None = None,
    on_progress: OnProgress | None = None,
) -> OperationResult:
    """Read the real state of every resource into the stack state (changes no resource)."""
    stack, spec, prepared = _prepare(
        settings, pulumi_root, program, create=False, on_progress=on_progress
    )
    return _finish(_run(stack, spec, "refresh", settings, on_progress), prepared)


def outputs(settings: Settings, *, pulumi_root: Path | None = None) -> StackOutputs:
    """The stack outputs; also caches them (secrets masked) for the other commands."""
    spec = stack_spec(settings, pulumi_root=pulumi_root)
    stack = open_stack(spec, program=infra_program, create=False)
    raw = _pulumi_call(spec, "stack output", stack.outputs)
    return write_outputs_cache(settings, _stack_outputs(spec.stack, raw))


def write_outputs_cache(settings: Settings, values: StackOutputs) -> StackOutputs:
    """Write ``<state_dir>/outputs-<stack>.json``: name -> value, secret values masked."""
    path = outputs_cache_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(values.shown(show_secrets=False), indent=2, sort_keys=True, default=str) + "\n"
    )
    os.replace(tmp, path)
    return StackOutputs(values.stack, values.values, path)


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    config_changed: tuple[str, ...]
    plugin_installed: bool
    running_image: RunningImage | None = None
    warnings: tuple[str, ...] = ()


def _prepare(
    settings: Settings,
    pulumi_root: Path | None,
    program: Callable[[], None] | None,
    *,
    create: bool,
    on_progress: OnProgress | None,
    aws: Any = None,
) -> tuple[Any, StackSpec, _Prepared]:
    entries = stack_config(settings)
    plugin_version = aws_plugin_version()
    spec = stack_spec(settings, pulumi_root=pulumi_root)
    stack = open_stack(spec, program=program or infra_program, create=create)
    running: RunningImage | None = None
    warnings: tuple[str, ...] = ()
    if aws is not None:
        running, warnings = _running_image(stack, spec, entries, aws)
        if running is not None:
            entries = _declaring(entries, running.image)
    synced = _pulumi_call(spec, "config", lambda: sync_config(stack, entries))
    changed = synced.set_keys + synced.removed_keys
    if changed:
        _note(on_progress, f"stack config updated: {', '.join(changed)}")
    installed = _pulumi_call(
        spec, "plugin", lambda: ensure_aws_plugin(stack.workspace, plugin_version)
    )
    if installed:
        _note(on_progress, f"installed the Pulumi aws plugin v{plugin_version}")
    return stack, spec, _Prepared(changed, installed, running, warnings)


def _running_image(
    stack: Any, spec: StackSpec, entries: tuple[ConfigEntry, ...], aws: Any
) -> tuple[RunningImage | None, tuple[str, ...]]:
    """The image the stack's service runs; when AWS cannot say, a warning instead."""
    configured = next((e.value for e in entries if e.key == IMAGE_KEY), None)
    outputs = _pulumi_call(spec, "stack output", stack.outputs)
    names = service_of({k: v.value for k, v in outputs.items()})
    if names is None:
        return None, ()
    try:
        return running_image(aws.client("ecs"), *names, configured), ()
    except Exception as exc:
        err = translate(exc)
        if err is None:
            raise
        return None, (
            f"could not read the image the service runs ({err.one_line()}): the stack declares "
            "migctl.toml's containerImage; up never changes the revision the service runs",
        )


def _declaring(entries: tuple[ConfigEntry, ...], image: str) -> tuple[ConfigEntry, ...]:
    kept = tuple(e for e in entries if e.key != IMAGE_KEY)
    return (*kept, ConfigEntry(IMAGE_KEY, image))


def _pulumi_call(spec: StackSpec, action: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except MigctlError:
        raise
    except Exception as exc:
        err = translate_pulumi_error(exc, spec, action)
        if err is None:
            raise
        raise err from None


def _note(on_progress: OnProgress | None, message: str) -> None:
    if on_progress is not None:
        on_progress(ProgressEvent("note", "prepare", message=message))


def _run(
    stack: Any,
    spec: StackSpec,
    operation: str,
    settings: Settings,
    on_progress: OnProgress | None,
    *,
    preview: OperationResult | None = None,
) -> OperationResult:
    tracker = ProgressTracker(operation, verbose=settings.verbose > 0)

    def on_output(line: str) -> None:
        log.debug("pulumi: %s", redact_text(line))

    common: dict[str, Any] = {"on_output": on_output, "on_error": on_output, "color": "never"}
    calls: dict[str, Callable[[Callable[[Any], None]], Any]] = {
        "preview": lambda on_event: stack.preview(on_event=on_event, **common),
        "destroy-preview": lambda on_event: stack.preview_destroy(on_event=on_event, **common),
        "up": lambda on_event: stack.up(on_event=on_event, show_secrets=False, **common),
        "destroy": lambda on_event: stack.destroy(on_event=on_event, show_secrets=False, **common),
        "refresh": lambda on_event: stack.refresh(on_event=on_event, show_secrets=False, **common),
    }
    outcome: StreamOutcome[Any] = run_with_events(calls[operation], tracker, on_progress)
    base = OperationResult(
        operation=operation,
        stack=spec.stack,
        ok=False,
        applied=operation in ("up", "destroy", "refresh"),
        changes=dict(tracker.changes or {}),
        preview_changes=dict(preview.changes) if preview is not None else None,
        resources=tuple(tracker.rows.values()),
        errors=tuple(tracker.errors),
    )
    if outcome.cancelled and (outcome.error is not None or not outcome.finished):
        return _cancelled(stack, spec, base, outcome)  # else it finished before the cancel landed
    if outcome.error is not None:
        err = translate_pulumi_error(
            outcome.error,
            spec,
            operation.replace("destroy-preview", "destroy --preview"),
            tracker.errors,
        )
        if err is None:
            raise outcome.error
        return _replace(base, error=err)
    done: Any = outcome.result
    changes = dict(base.changes) or _result_changes(done)
    values = _stack_outputs(spec.stack, done.outputs) if operation == "up" else None
    return _replace(base, ok=True, changes=changes, outputs=values)


def _cancelled(
    stack: Any, spec: StackSpec, base: OperationResult, outcome: StreamOutcome[Any]
) -> OperationResult:
    message = f"{base.operation} of stack {spec.stack!r} was cancelled (Ctrl-C)"
    hint = "in-flight operations were allowed to finish; run 'migctl preview' to see what is left"
    if outcome.forced and not outcome.finished:
        # Releasing the lock while pulumi still runs would let a second update in beside it.
        pids = ", ".join(map(str, outcome.signalled)) or "unknown"
        hint = (
            f"pulumi (pid {pids}) did not stop; stop it, then run "
            f"'pulumi cancel --yes --stack {spec.stack}' and 'migctl refresh'"
        )
    elif outcome.forced:
        # pulumi was terminated mid-operation and may have left the stack locked: release it.
        try:
            stack.cancel()
            hint = (
                "pulumi was stopped and the stack lock released; "
                "run 'migctl refresh' before the next 'migctl up'"
            )
        except Exception as exc:
            err = translate_pulumi_error(exc, spec, "cancel")
            detail = err.message if err is not None else str(exc)
            hint = (
                f"releasing the stack lock failed ({detail}); "
                f"run 'pulumi cancel --yes --stack {spec.stack}' and 'migctl refresh'"
            )
    return _replace(
        base, cancelled=True, forced=outcome.forced, error=OperationalError(message, hint=hint)
    )


def _confirmed_run(
    stack: Any,
    spec: StackSpec,
    operation: str,
    settings: Settings,
    on_progress: OnProgress | None,
    confirm: Confirm | None,
) -> OperationResult:
    """Run ``up`` or ``destroy``; with ``confirm``, preview first and apply only on yes."""
    previewed: OperationResult | None = None
    if confirm is not None:
        preview_op = "preview" if operation == "up" else f"{operation}-preview"
        previewed = _run(stack, spec, preview_op, settings, on_progress)
        if not previewed.ok or not confirm(previewed):
            return _declined(previewed)
    return _run(stack, spec, operation, settings, on_progress, preview=previewed)


def _declined(previewed: OperationResult) -> OperationResult:
    if not previewed.ok:
        return previewed
    operation = "destroy" if previewed.operation == "destroy-preview" else "up"
    return _replace(
        previewed,
        operation=operation,
        ok=False,
        declined=True,
        preview_changes=dict(previewed.changes),
        changes={},
    )


def _finish(result: OperationResult, prepared: _Prepared) -> OperationResult:
    return _replace(
        result,
        config_changed=prepared.config_changed,
        plugin_installed=prepared.plugin_installed,
        running_image=prepared.running_image,
        warnings=prepared.warnings,
    )


def _with_cache(result: OperationResult, settings: Settings) -> OperationResult:
    assert result.outputs is not None
    return _replace(result, outputs=write_outputs_cache(settings, result.outputs))


def _replace(result: OperationResult, **changes: Any) -> OperationResult:
    return dataclasses.replace(result, **changes)


def _result_changes(result: Any) -> dict[str, int]:
    summary = getattr(result, "summary", None)
    raw = (
        getattr(summary, "resource_changes", None) or getattr(result, "change_summary", None) or {}
    )
    return {str(getattr(k, "value", k)): int(v) for k, v in raw.items()}


def _stack_outputs(stack: str, raw: Mapping[str, Any]) -> StackOutputs:
    values = {}
    for name, output in raw.items():
        if output.secret and isinstance(output.value, str):
            register_secret(output.value)
        values[name] = OutputEntry(output.value, bool(output.secret))
    return StackOutputs(stack, values)
