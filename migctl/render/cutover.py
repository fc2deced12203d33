"""The cutover for people (a live list of steps, a summary with the write freeze) and for
machines (the journal records as JSON lines, then ``{"event": "result", ...}``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from migctl.render import Output, fit_names, ident, plain, state_style, to_jsonable

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

    from migctl.cutover.model import Step
    from migctl.cutover.overview import CutoverOverview, CutoverPlan
    from migctl.cutover.result import CutoverResult

_STYLES = {
    "done": "green",
    "undone": "cyan",
    "running": "bold yellow",
    "undoing": "bold yellow",
    "failed": "bold red",
    "undo_failed": "bold red",
    "interrupted": "bold yellow",
    "pending": "dim",
}


def _style(status: str) -> str:
    return _STYLES.get(status, state_style(status))


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f}min"


class CutoverView:
    """Follows the journal records of a run: a live table on a terminal, lines on a log, or JSON."""

    def __init__(self, out: Output, steps: Sequence[Step]) -> None:
        self._out = out
        self._titles = {s.name: s.title for s in steps}
        self._status = {s.name: "pending" for s in steps}
        self._duration: dict[str, float | None] = {s.name: None for s in steps}
        self._since: dict[str, float] = {}
        self._note: dict[str, str] = {}
        self._live: Live | None = None

    def __enter__(self) -> CutoverView:
        if not self._out.json and self._out.progress.is_terminal:
            from rich.live import Live

            self._live = Live(
                get_renderable=self._table, console=self._out.progress, refresh_per_second=2
            )
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
            self._live = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while a question is asked on the terminal."""
        live = self._live
        if live is not None:
            live.stop()
        try:
            yield
        finally:
            if live is not None:
                live.start()

    def event(self, record: Mapping[str, Any]) -> None:
        if self._out.json:
            if not self._out.quiet:  # -q: the result line only
                self._out.emit(record)
            return
        kind = record.get("event")
        step = str(record.get("step", ""))
        if kind == "run_started":
            for item in record.get("steps") or ():
                self._status[item["name"]] = item["status"]
        elif kind in ("step_started", "undo_started"):
            self._status[step] = "running" if kind == "step_started" else "undoing"
            self._since[step] = time.monotonic()
            self._line(f"{self._titles.get(step, step)}: {self._status[step]}")
        elif kind in ("step_finished", "undo_finished"):
            status = str(record.get("status"))
            if kind == "undo_finished":
                status = "undone" if status == "undone" else "undo_failed"
            self._status[step] = status
            self._duration[step] = record.get("duration_seconds")
            error = record.get("error")
            if error:
                self._note[step] = str(error)
            self._line(
                f"{self._titles.get(step, step)}: {status} ({_seconds(self._duration[step])})"
                + (f": {error}" if error else ""),
                style=_style(status),
            )
        elif kind == "note":
            self._note[step] = str(record.get("message", ""))
            self._line(f"  {record.get('message', '')}", style="dim")
        elif kind == "lock_broken":
            self._line(f"broke the lock held by {record.get('holder')}", style="yellow")

    def _line(self, text: str, style: str = "") -> None:
        if self._live is not None:
            self._live.refresh()
            if style:  # keep a trace of each transition above the live table
                self._live.console.print(text, style=style, markup=False, highlight=False)
            return
        self._out.progress.print(text, style=style or None, markup=False, highlight=False)

    def _table(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="migctl cutover", title_justify="left", expand=False)
        for column in ("#", "step", "state", "time", "last note"):
            table.add_column(column, overflow="fold" if column == "last note" else "ellipsis")
        for number, (name, title) in enumerate(self._titles.items(), start=1):
            status = self._status[name]
            duration = self._duration[name]
            if status in ("running", "undoing") and name in self._since:
                duration = time.monotonic() - self._since[name]
            table.add_row(
                str(number),
                title,
                Text(status, style=_style(status)),
                _seconds(duration),
                Text(self._note.get(name, "")[:100]),
            )
        return table


def result_json(result: CutoverResult) -> dict[str, Any]:
    payload: dict[str, Any] = to_jsonable(result)
    return payload


def render_result(out: Output, result: CutoverResult) -> None:
    if out.json:
        out.event("result", **result_json(result))
        return
    from rich.table import Table
    from rich.text import Text

    console = out.out
    table = Table(title=f"cutover {result.cutover_id}", title_justify="left")
    for column in ("#", "step", "state", "tries", "time", "detail"):
        table.add_column(column)
    for number, step in enumerate(result.steps, start=1):
        detail = step.undo_error or step.error or ""
        table.add_row(
            str(number),
            Text(step.title),
            Text(step.status, style=_style(step.status)),
            str(step.attempts or "-"),
            _seconds(step.duration_seconds),
            Text(detail),
        )
    console.print(table)
    style = "green" if result.exit_code == 0 else "bold red"
    console.print(f"[{style}]{result.outcome}[/] (exit {result.exit_code})", highlight=False)
    if result.reason:
        console.print(result.reason, markup=False, highlight=False)
    if result.write_freeze_seconds is not None:
        still = " and counting: the source is still frozen" if result.write_freeze_open else ""
        console.print(
            f"Write freeze (the downtime the business sees): "
            f"[bold]{_seconds(result.write_freeze_seconds)}[/]{still}",
            highlight=False,
        )
    if result.carried_back is not None:
        total = sum(sum(c.values()) for c in result.carried_back.values())
        console.print(
            f"Carried back to the source by the reverse replication: [bold]{total}[/] row "
            "change(s)" + (":" if total else ""),
            highlight=False,
        )
        for name, counts in sorted(result.carried_back.items()):
            parts = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
            console.print(f"  {name}: {parts}", markup=False, highlight=False)
    _numbered(console, "Warnings", result.warnings)
    _numbered(console, "State now", result.state)
    _numbered(console, "What a person must do", result.manual_steps)
    _numbered(console, "Next", result.next_steps)
    console.print(f"Journal: {result.journal}", markup=False, highlight=False, style="dim")
    if result.report_command:
        console.print(f"Report: {result.report_command}", markup=False, highlight=False)


def _numbered(console: Any, title: str, lines: Sequence[str]) -> None:
    if not lines:
        return
    console.print(f"[bold]{title}:[/]")
    for number, line in enumerate(lines, start=1):
        console.print(f"  {number}. {line}", markup=False, highlight=False)


def render_plan(out: Output, plan: CutoverPlan, *, details: bool = False) -> None:
    """The steps on one screen (one line each), or with ``details`` their gates, actions,
    checks and undos in full; then the settings and where the journal stands."""
    if out.json:
        out.emit(to_jsonable(plan))
        return
    from rich.table import Table
    from rich.text import Text

    console = out.out
    if not details:
        table = Table(title="cutover plan (--details: gates, checks, undos)", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("step", no_wrap=True, overflow="ellipsis")
        table.add_column("undo", no_wrap=True)
        table.add_column("state", no_wrap=True)
        for step in plan.steps:
            title = step.title + (" (asks first)" if step.point_of_no_return else "")
            undo = "yes" if step.undo else "-"
            table.add_row(
                str(step.number), Text(title), undo, Text(step.status, style=_style(step.status))
            )
        console.print(table)
        _plan_footer(console, plan)
        return
    table = Table(title="cutover plan", title_justify="left", show_lines=True)
    for column in ("#", "step", "gate", "action", "check", "undo", "state"):
        table.add_column(column, overflow="fold")
    for step in plan.steps:
        title = step.title + (" (asks first)" if step.point_of_no_return else "")
        table.add_row(
            str(step.number),
            Text(title),
            Text(step.gate),
            Text(step.action),
            Text(step.check),
            Text(step.undo or "-"),
            Text(step.status, style=_style(step.status)),
        )
    console.print(table)
    _plan_footer(console, plan)


def _plan_footer(console: Any, plan: CutoverPlan) -> None:
    roles = ", ".join(plan.app_roles) or "none set"
    console.print(
        f"image {plan.image or 'not set'}; freeze {plan.freeze_strategy} (app roles: {roles}); "
        f"sequence margin {plan.sequence_margin}",
        markup=False,
        highlight=False,
    )
    where = (
        f"latest cutover {plan.cutover_id}: {plan.phase}" if plan.cutover_id else "no cutover yet"
    )
    if plan.last_outcome:
        where += f" (last run ended {plan.last_outcome})"
    if plan.next_step:
        where += f"; --resume starts at {plan.next_step}"
    console.print(f"Journal {plan.journal}: {where}", markup=False, highlight=False)
    if plan.lock_holder is not None:
        console.print(f"[yellow]Locked by {plain(plan.lock_holder.describe())}[/]", highlight=False)


def render_status(out: Output, overview: CutoverOverview) -> None:
    if out.json:
        out.emit(to_jsonable(overview))
        return
    from rich.table import Table
    from rich.text import Text

    console = out.out
    latest = overview.latest
    if latest is None:
        console.print(f"No cutover yet in {overview.journal}", markup=False, highlight=False)
        return
    ended = f", its last run ended {latest.last_outcome}" if latest.last_outcome else ""
    console.print(
        f"Latest cutover {latest.cutover_id}: [bold]{latest.phase.replace('_', ' ')}[/]{ended}; "
        f"image {plain(latest.image or '-')}, started {latest.started_at}",
        highlight=False,
    )
    steps = Table(title_justify="left")
    for column in ("#", "step", "state"):
        steps.add_column(column)
    for number, (name, status) in enumerate(latest.steps.items(), start=1):
        steps.add_row(str(number), name, Text(status, style=_style(status)))
    console.print(steps)
    if latest.write_freeze_seconds is not None:
        still = " and counting: the source is still frozen" if latest.write_freeze_open else ""
        console.print(
            f"Write freeze: {_seconds(latest.write_freeze_seconds)}{still}", highlight=False
        )
    _numbered(console, "Next", latest.next_commands)
    history = Table(title="every cutover in the journal", title_justify="left")
    for column in ("cutover", "started", "image", "phase", "last run", "write freeze"):
        history.add_column(column)
    for item in reversed(overview.history):
        history.add_row(
            ident(item.cutover_id),
            item.started_at or "-",
            ident(item.image or "-"),
            item.phase.replace("_", " "),
            item.last_outcome or "-",
            _seconds(item.write_freeze_seconds),
        )
    console.print(fit_names(console, history, column=2))
    console.print(f"Journal: {overview.journal}", markup=False, highlight=False, style="dim")
    if overview.lock_holder is not None:
        console.print(
            f"[yellow]Locked by {plain(overview.lock_holder.describe())}[/]", highlight=False
        )
