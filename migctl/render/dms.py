"""DMS status, watch and start/stop results: rich tables and a live view, or the documented JSON.

The JSON keys are documented in docs/dms.md and in each command's help. A
metric with no datapoints is ``null`` with ``"datapoints": 0``, never 0.
"""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import TYPE_CHECKING, Any

from migctl.dms.control import ControlResult
from migctl.dms.metrics import CdcMetrics, MetricSeries
from migctl.dms.task import StatusReport, TableStats, TaskRef, TaskSnapshot
from migctl.dms.watch import WatchResult, WatchState, WatchUpdate
from migctl.render import Output, count, fit_names, fmt_time, ident, plain, state_style

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live


def task_json(ref: TaskRef, task: TaskSnapshot) -> dict[str, Any]:
    s = task.stats
    return {
        "arn": task.arn,
        "identifier": task.identifier,
        "resource_id": ref.resource_id,
        "instance_identifier": ref.instance_identifier,
        "migration_type": task.migration_type,
        "status": task.status,
        "phase": task.phase,
        "stop_reason": task.stop_reason,
        "last_failure_message": task.last_failure_message,
        "recovery_checkpoint": task.recovery_checkpoint,
        "cdc_stop_position": task.cdc_stop_position,
        "started_at": task.started_at,
        "full_load_percent": s.full_load_percent,
        "tables_loaded": s.tables_loaded,
        "tables_loading": s.tables_loading,
        "tables_queued": s.tables_queued,
        "tables_errored": s.tables_errored,
        "elapsed_seconds": s.elapsed_seconds,
        "fresh_start_date": s.fresh_start_date,
        "start_date": s.start_date,
        "stop_date": s.stop_date,
        "full_load_start_date": s.full_load_start_date,
        "full_load_finish_date": s.full_load_finish_date,
    }


def tables_json(tables: tuple[TableStats, ...] | None) -> list[dict[str, Any]] | None:
    return None if tables is None else [dict(vars(t)) for t in tables]


def _series_json(series: MetricSeries) -> dict[str, Any]:
    return {
        "latest": series.latest,
        "latest_at": series.latest_at,
        "maximum": series.maximum,
        "datapoints": series.count,
    }


def cdc_json(cdc: CdcMetrics | None) -> dict[str, Any] | None:
    if cdc is None:
        return None
    return {
        "window_start": cdc.window_start,
        "window_end": cdc.window_end,
        "period_seconds": cdc.period_seconds,
        "statistic": cdc.statistic,
        "dimensions": cdc.dimensions,
        "datapoints": cdc.datapoints,
        "latency_source_seconds": _series_json(cdc.latency_source),
        "latency_target_seconds": _series_json(cdc.latency_target),
        "incoming_changes": _series_json(cdc.incoming_changes),
    }


def status_json(report: StatusReport) -> dict[str, Any]:
    return {
        "healthy": report.healthy,
        "problems": list(report.problems),
        "task": task_json(report.ref, report.task),
        "tables": tables_json(report.tables),
        "tables_error": report.tables_error,
        "cdc": cdc_json(report.cdc),
        "reverse": status_json(report.reverse) if report.reverse is not None else None,
    }


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _metric_text(series: MetricSeries, unit: str = "") -> str:
    if series.latest is None:
        return "no datapoints"
    peak = f"max {series.maximum:g}{unit}"
    return f"{series.latest:g}{unit} ({peak}, {series.count} pts, {fmt_time(series.latest_at)})"


def _task_table(ref: TaskRef, task: TaskSnapshot) -> Any:
    from rich.table import Table

    s = task.stats
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("task", ident(f"{task.identifier} ({task.migration_type})"))
    grid.add_row(
        "status", f"[{state_style(task.status)}]{task.status}[/]  phase [bold]{task.phase}[/]"
    )
    if task.stop_reason or task.last_failure_message:
        grid.add_row("stopped because", plain(task.failure))
    percent = "-" if s.full_load_percent is None else f"{s.full_load_percent}%"
    grid.add_row("full load", f"{percent}  finished {fmt_time(s.full_load_finish_date)}")
    grid.add_row(
        "tables",
        f"{count(s.tables_loaded)} loaded, {count(s.tables_loading)} loading, "
        f"{count(s.tables_queued)} queued, "
        f"[{'bold red' if s.tables_errored else 'green'}]{count(s.tables_errored)} errored[/]",
    )
    grid.add_row("elapsed", _fmt_seconds(s.elapsed_seconds))
    if task.recovery_checkpoint:
        grid.add_row("recovery checkpoint", ident(task.recovery_checkpoint))
    grid.add_row("arn", ident(task.arn))
    grid.add_row("instance", ident(ref.instance_identifier))
    return grid


def _cdc_table(cdc: CdcMetrics | None) -> Any:
    from rich.table import Table

    table = Table(title="CDC metrics", title_justify="left")
    table.add_column("metric")
    table.add_column(f"latest {cdc.statistic if cdc else ''} per period")
    if cdc is None:
        table.add_row("-", "not read yet")
        return table
    table.add_row(
        "CDCLatencySource", _metric_text(cdc.latency_source, "s") + "  (0 when the source is idle)"
    )
    table.add_row("CDCLatencyTarget", _metric_text(cdc.latency_target, "s"))
    table.add_row("CDCIncomingChanges", _metric_text(cdc.incoming_changes))
    if not cdc.datapoints:
        dims = "\n".join(f"{k}={v}" for k, v in cdc.dimensions.items())
        table.caption = f"no datapoints since {fmt_time(cdc.window_start)} for\n{dims}"
    return table


def _tables_table(tables: tuple[TableStats, ...]) -> Any:
    """One row per table. Names and counts are never folded (too narrow, a name is shortened
    with …; JSON has it whole); the states, words, wrap. Validation counts show when not 0."""
    from rich.table import Table

    table = Table(title="Tables", title_justify="left")
    table.add_column("table", no_wrap=True, overflow="ellipsis")
    table.add_column("state")
    table.add_column("full load\nrows", no_wrap=True, justify="right")
    table.add_column("inserts /\nupdates /\ndeletes", no_wrap=True, justify="right")
    table.add_column("validation")
    for t in tables:
        bad = t.validation_failed_records or t.validation_suspended_records
        found = [
            f"{count(n)} {what}"
            for n, what in (
                (t.validation_failed_records, "failed"),
                (t.validation_pending_records, "pending"),
                (t.validation_suspended_records, "suspended"),
            )
            if n
        ]
        validation = plain(t.validation_state or "-") + (f": {', '.join(found)}" if found else "")
        table.add_row(
            ident(f"{t.schema}.{t.table}"),
            f"[{'bold red' if t.errored else 'green'}]{plain(t.state)}[/]",
            count(t.full_load_rows),
            f"{count(t.inserts)} / {count(t.updates)} / {count(t.deletes)}",
            f"[{'bold red' if bad else 'default'}]{validation}[/]",
        )
    return table


def render_status(out: Output, report: StatusReport) -> None:
    if out.json:
        out.emit(status_json(report))
        return
    _render_one(out, report)
    if report.reverse is not None:
        out.out.print("[bold]The way back: reverse replication, target to source[/]")
        _render_one(out, report.reverse)
    if report.healthy:
        out.err.print("[green]healthy[/]")


def _render_one(out: Output, report: StatusReport) -> None:
    out.out.print(_task_table(report.ref, report.task))
    if report.tables:
        out.out.print(fit_names(out.out, _tables_table(report.tables)))
    elif report.tables_error:
        out.out.print(report.tables_error, markup=False)
    else:
        out.out.print("no table statistics reported")
    out.out.print(_cdc_table(report.cdc))
    for problem in report.problems:
        out.err.print(f"[bold red]problem:[/] {plain(problem)}", highlight=False)


def _watch_state_json(ref: TaskRef, state: WatchState) -> dict[str, Any]:
    r = state.readiness
    return {
        "polls": state.polls,
        "elapsed_seconds": round(state.elapsed_seconds, 3),
        "next_poll_seconds": state.next_poll_seconds,
        "throttled": state.throttled,
        "ready": r.ready,
        "stable_datapoints": r.stable_datapoints,
        "needed": r.needed,
        "waiting_for": None if r.ready else r.reason,
        "task": task_json(ref, state.task),
        "table_states": dict(Counter(t.state for t in state.tables))
        if state.tables is not None
        else None,
        "cdc": cdc_json(state.cdc),
        "reverse": None
        if state.reverse is None
        else {
            "identifier": state.reverse.identifier,
            "status": state.reverse.status,
            "phase": state.reverse.phase,
            "problems": list(state.reverse_problems),
        },
    }


def watch_result_json(ref: TaskRef, result: WatchResult) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "until": result.until,
        "reached": result.reached,
        "outcome": result.outcome,
        "reason": result.reason,
    }
    if result.state is None:
        return {**payload, "task": None, "tables": None, "cdc": None}
    body = _watch_state_json(ref, result.state)
    body.pop("table_states")
    return {**payload, **body, "tables": tables_json(result.state.tables)}


def _live_renderable(ref: TaskRef, until: str, state: WatchState, note: str) -> RenderableType:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    s = state.task.stats
    parts: list[Any] = [_task_table(ref, state.task)]
    if s.full_load_percent is not None:
        bar = Table.grid(padding=(0, 2))
        bar.add_row("full load", ProgressBar(total=100, completed=s.full_load_percent, width=50))
        parts.append(bar)
    if state.tables:
        counts = Counter(t.state for t in state.tables)
        parts.append(
            Text("tables: " + ", ".join(f"{count(n)} {name}" for name, n in sorted(counts.items())))
        )
    parts.append(_cdc_table(state.cdc))
    if state.reverse is not None:
        back = state.reverse
        wrong = f": {'; '.join(state.reverse_problems)}" if state.reverse_problems else ""
        parts.append(
            Text(
                f"the way back: {back.identifier} {back.status} (phase {back.phase}){wrong}",
                style="bold red" if wrong else "",
            )
        )
    r = state.readiness
    waiting = "ready" if r.ready else r.reason
    parts.append(
        Text(
            f"until {until}: {waiting}  [poll {state.polls}, next in {state.next_poll_seconds:g}s]"
        )
    )
    if note:
        parts.append(Text(note, style="yellow"))
    return Group(*parts)


def _watch_line(until: str, state: WatchState) -> str:
    """One state of the watch as one line, for a log."""
    task, r = state.task, state.readiness
    percent = task.stats.full_load_percent
    loaded = "" if percent is None else f", full load {percent}%"
    lag = state.cdc.latency_target.latest if state.cdc is not None else None
    latency = "" if lag is None else f", CDCLatencyTarget {lag:g}s"
    waiting = "ready" if r.ready else r.reason
    back = state.reverse
    way_back = "" if back is None else f"; the way back: {back.identifier} {back.status}"
    return (
        f"{task.identifier}: {task.status} (phase {task.phase}{loaded}{latency}){way_back}; "
        f"until {until}: {waiting} [poll {state.polls}]"
    )


class WatchView:
    """The watch's display: a rich Live view on stderr, or a JSON line per state change."""

    def __init__(self, out: Output, ref: TaskRef, until: str) -> None:
        self._out, self._ref, self._until = out, ref, until
        self._live: Live | None = None
        self._state: WatchState | None = None

    def __enter__(self) -> WatchView:
        # Without a terminal (CI, a pipe, a log file) a live view cannot redraw: each change
        # is one complete line instead (see :func:`_watch_line`).
        if not self._out.json and self._out.progress.is_terminal:
            from rich.live import Live

            self._live = Live(console=self._out.progress, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def update(self, update: WatchUpdate) -> None:
        if self._out.json:
            if update.kind == "throttled":
                polls = update.state.polls if update.state else 0
                self._out.event("throttled", message=update.message, polls=polls)
            elif update.changed and update.state is not None:
                self._out.event("state", **_watch_state_json(self._ref, update.state))
            return
        self._state = update.state or self._state
        if self._live is None:
            if update.kind == "throttled":
                self._out.note(update.message, style="yellow")
            elif update.changed and update.state is not None:
                self._out.note(_watch_line(self._until, update.state), style="")
            return
        if self._state is not None:
            note = update.message if update.kind == "throttled" else ""
            self._live.update(
                _live_renderable(self._ref, self._until, self._state, note), refresh=True
            )

    def result(self, result: WatchResult) -> None:
        if self._out.json:
            self._out.event("result", **watch_result_json(self._ref, result))
            return
        style = "green" if result.reached else "bold red"
        self._out.out.print(f"[{style}]{result.outcome}[/]: {result.reason}", highlight=False)


def control_json(ref: TaskRef, result: ControlResult) -> dict[str, Any]:
    return {
        "action": result.action,
        "outcome": result.outcome,
        "ok": result.ok,
        "reason": result.reason,
        "start_type": result.start_type,
        "previous_status": result.previous_status,
        "recovery_checkpoint": result.task.recovery_checkpoint,
        "polls": result.polls,
        "elapsed_seconds": round(result.elapsed_seconds, 3),
        "task": task_json(ref, result.task),
    }


class ControlProgress:
    """Status changes while starting or stopping: a note on stderr, or a JSON line."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._last: str | None = None

    def __call__(self, task: TaskSnapshot) -> None:
        if task.status == self._last:
            return
        self._last = task.status
        if self._out.json:
            self._out.event(
                "status", status=task.status, phase=task.phase, stop_reason=task.stop_reason
            )
        else:
            self._out.note(f"{task.identifier}: {task.status} ({task.phase})")

    def result(self, ref: TaskRef, result: ControlResult) -> None:
        if self._out.json:
            self._out.event("result", **control_json(ref, result))
            return
        style = "green" if result.ok else "bold red"
        self._out.out.print(f"[{style}]{result.outcome}[/]: {result.reason}", highlight=False)
        if result.action == "stop" or result.task.recovery_checkpoint:
            checkpoint = (
                result.task.recovery_checkpoint or "none reported (full-load tasks have none)"
            )
            self._out.out.print(f"RecoveryCheckpoint: {checkpoint}", markup=False, highlight=False)
