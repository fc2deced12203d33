"""Provisioning progress and results: a live resource table for people, JSON lines for machines.

Table mode: a rich ``Live`` table on stderr (type, name, operation, state,
seconds) per phase (preview, up, destroy, refresh), warnings and errors printed
above it, a one-line summary of the changes at the end of each phase, and the
stack outputs (secrets masked) on stdout.

JSON mode, one line per event that matters, on stdout::

    {"event": "resource", "phase": "up", "op": "create", "type": ..., "name": ..., "urn": ...,
     "state": "running" | "done" | "planned" | "failed", "seconds": 1.2}
    {"event": "diagnostic", "phase": "up", "severity": "error" | "warning", "message": ...,
     "urn": ...}
    {"event": "summary", "phase": "up", "changes": {"create": 3}, "duration_seconds": 4}
    {"event": "cancelling", "phase": "up", "forced": false}
    {"event": "result", "operation": "up", "stack": ..., "ok": true, "applied": true,
     "declined": false, "cancelled": false, "changes": {...}, "preview_changes": {...} | null,
     "outputs": {...masked...}, "error": null | "..."}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from migctl.infra.events import ProgressEvent, ResourceProgress
from migctl.infra.provision import OperationResult, StackOutputs
from migctl.render import Output, ident, plain, state_style

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from migctl.infra.running_image import RunningImage

PHASE_TITLES = {
    "preview": "Preview",
    "destroy-preview": "Destroy preview",
    "up": "Update",
    "destroy": "Destroy",
    "refresh": "Refresh",
}
OP_STYLE = {
    "create": "green",
    "update": "yellow",
    "replace": "magenta",
    "delete": "red",
    "refresh": "cyan",
}


def changes_text(changes: Mapping[str, int] | None) -> str:
    """``create 3, update 1 (12 unchanged)``, or ``no changes``."""
    changes = changes or {}
    text = (
        ", ".join(f"{op} {n}" for op, n in sorted(changes.items()) if op != "same" and n)
        or "no changes"
    )
    same = changes.get("same", 0)
    return f"{text} ({same} unchanged)" if same else text


class ProvisionProgress:
    """The ``on_progress`` callback: feeds a live table (stderr) or writes JSON lines (stdout)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._rows: dict[str, ResourceProgress] = {}
        self._printed: dict[str, tuple[str, str]] = {}  # without a terminal: per URN, op/state
        self._phase: str | None = None
        self._live: Live | None = None

    def __enter__(self) -> ProvisionProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if self.out.json:
            self._emit_json(event)
        else:
            self._show(event)

    # --- JSON --------------------------------------------------------------------------

    def _emit_json(self, event: ProgressEvent) -> None:
        if event.kind == "resource" and event.resource is not None:
            r = event.resource
            fields: dict[str, Any] = {
                "op": r.op,
                "type": r.type,
                "name": r.name,
                "urn": r.urn,
                "state": r.state,
            }
            if r.seconds is not None:
                fields["seconds"] = r.seconds
            self.out.event("resource", phase=event.phase, **fields)
        elif event.kind == "diagnostic":
            urn = event.resource.urn if event.resource else None
            self.out.event(
                "diagnostic",
                phase=event.phase,
                severity=event.severity,
                message=event.message,
                urn=urn,
            )
        elif event.kind == "summary":
            self.out.event(
                "summary",
                phase=event.phase,
                changes=event.changes,
                duration_seconds=event.duration_seconds,
            )
        elif event.kind == "cancelling":
            self.out.event("cancelling", phase=event.phase, forced=event.forced)
            self.out.note(_cancel_note(event.forced))
        elif event.kind == "note" and event.message:
            self.out.note(event.message)

    # --- table -------------------------------------------------------------------------

    def _show(self, event: ProgressEvent) -> None:
        if event.kind == "note" and event.message:
            self._print(event.message, "dim")
            return
        if event.kind == "cancelling":
            self._print(_cancel_note(event.forced), "bold yellow")
            return
        if event.phase != self._phase:
            self.stop()
            with self._lock:
                self._phase = event.phase
                self._rows = {}
        if event.kind == "resource" and event.resource is not None:
            r = event.resource
            if not self.out.progress.is_terminal:  # a log, CI: one whole line per change
                if self._printed.get(r.urn) != (r.op, r.state):
                    self._printed[r.urn] = (r.op, r.state)
                    took = f" ({r.seconds:.1f}s)" if r.seconds is not None else ""
                    self._print(f"{r.type} {r.name}: {r.op} {r.state}{took}", "")
                return
            self._start()
            with self._lock:
                self._rows[r.urn] = r
        elif event.kind == "diagnostic" and event.message:
            style = "bold red" if event.severity == "error" else "yellow"
            where = f"{event.resource.name}: " if event.resource else ""
            self._print(f"{event.severity}: {where}{event.message}", style)
        elif event.kind == "summary":
            self.stop()
            title = PHASE_TITLES.get(event.phase, event.phase)
            self.out.progress.print(
                f"{title}: {changes_text(event.changes)}", markup=False, highlight=False
            )

    def _print(self, text: str, style: str) -> None:
        console = self._live.console if self._live is not None else self.out.progress
        console.print(text, style=style, markup=False, highlight=False)

    def _start(self) -> None:
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                console=self.out.progress,
                refresh_per_second=4,
                get_renderable=self._table,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def stop(self) -> None:
        """Stop the live display (prints its last frame); the next event starts a new one."""
        if self._live is not None:
            self._live.stop()
            if not self.out.progress.is_terminal:  # rich ends the last frame without a newline
                self.out.progress.line()
            self._live = None

    def _table(self) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        table = Table(title=PHASE_TITLES.get(self._phase or "", self._phase), title_justify="left")
        for column in ("type", "name", "operation", "state", "seconds"):
            table.add_column(column, justify="right" if column == "seconds" else "left")
        with self._lock:
            rows = list(self._rows.values())
        for r in rows:
            seconds = r.seconds if r.seconds is not None else now - r.started_at
            table.add_row(
                ident(r.type),
                ident(r.name),
                Text(r.op, style=OP_STYLE.get(r.op, "")),
                Text(r.state, style=state_style(r.state)),
                Text(f"{seconds:.1f}"),
            )
        return table


def _cancel_note(forced: bool) -> str:
    if forced:
        return "forcing: stopping pulumi now; the stack lock will be released"
    return (
        "cancelling: pulumi finishes the operations in flight, then stops (Ctrl-C again to force)"
    )


def result_json(result: OperationResult) -> dict[str, Any]:
    return {
        "operation": result.operation,
        "stack": result.stack,
        "ok": result.ok,
        "applied": result.applied,
        "declined": result.declined,
        "cancelled": result.cancelled,
        "changes": dict(result.changes),
        "preview_changes": dict(result.preview_changes)
        if result.preview_changes is not None
        else None,
        "outputs": result.outputs.shown() if result.outputs is not None else {},
        "config_changed": list(result.config_changed),
        "running_image": _running_json(result.running_image),
        "warnings": list(result.warnings),
        "error": result.error.one_line() if result.error is not None else None,
    }


def _running_json(running: RunningImage | None) -> dict[str, Any] | None:
    if running is None:
        return None
    return {
        "image": running.image,
        "task_definition": running.task_definition,
        "configured": running.configured,
        "differs": running.differs,
    }


def render_operation(out: Output, result: OperationResult) -> None:
    """The end of an operation: the result line (JSON) or a summary and the outputs (table)."""
    if out.json:
        out.event("result", **result_json(result))
        return
    if result.running_image is not None:
        if result.running_image.differs:
            out.warn(result.running_image.note())
        else:
            out.note(result.running_image.note())
    for warning in result.warnings:
        out.warn(warning)
    if result.declined:
        out.err.print(
            f"[yellow]not applied[/]: you declined; stack {plain(result.stack)} is unchanged"
        )
    elif result.cancelled:
        out.err.print(
            f"[bold yellow]cancelled[/]: {changes_text(result.changes)} before it stopped"
        )
    elif result.ok and result.applied:
        out.err.print(
            f"[green]done[/]: {result.operation} of stack {plain(result.stack)}: "
            f"{changes_text(result.changes)}"
        )
    if result.outputs is not None and result.outputs.values:
        render_outputs(out, result.outputs)


def render_outputs(out: Output, outputs: StackOutputs, *, show_secrets: bool = False) -> None:
    values = outputs.shown(show_secrets=show_secrets)
    if out.json:
        out.emit(
            {
                "stack": outputs.stack,
                "outputs": values,
                "secret_outputs": list(outputs.secret_names),
                "cache": str(outputs.cache_path) if outputs.cache_path else None,
            }
        )
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Outputs of stack {plain(outputs.stack)}", title_justify="left")
    table.add_column("name")
    table.add_column("value", overflow="fold")
    for name, value in values.items():
        masked = name in outputs.secret_names and not show_secrets
        text = value if isinstance(value, str) else _compact(value)
        table.add_row(Text(name), Text(text, style="dim" if masked else ""))
    out.out.print(table)
    if outputs.cache_path is not None:
        out.note(f"cached in {outputs.cache_path}")


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), default=str)
