"""Validation reports as a summary table, as the documented JSON, and progress while it runs."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from migctl.render import Output, count, fit_names, ident, plain, state_style
from migctl.validate.report import Progress, SequenceResult, TableResult, ValidationReport

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


def table_json(t: TableResult) -> dict[str, Any]:
    return {
        "table": t.table,
        "schema": t.name[0],
        "name": t.name[1],
        "status": t.status,
        "source_rows": t.source_rows,
        "target_rows": t.target_rows,
        "missing_in_target_count": t.missing_in_target_count,
        "missing_in_source_count": t.missing_in_source_count,
        "changed_count": t.changed_count,
        "missing_in_target": [list(k) for k in t.missing_in_target],
        "missing_in_source": [list(k) for k in t.missing_in_source],
        "changed": [list(k) for k in t.changed],
        "equal_by_value_count": t.equal_by_value_count,
        "schema_differences": list(t.schema_differences),
        "data_match": t.data_match,
        "method": t.method,
        "key_columns": list(t.key_columns),
        "chunks": t.chunks,
        "differing_chunks": t.differing_chunks,
        "source_digest": t.source_digest,
        "target_digest": t.target_digest,
        "queries": t.queries,
        "retries": t.retries,
        "duration_seconds": t.duration_seconds,
        "error": t.error,
    }


def sequence_json(s: SequenceResult) -> dict[str, Any]:
    return {
        "sequence": s.sequence,
        "schema": s.name[0],
        "name": s.name[1],
        "source_last_value": s.source_last_value,
        "target_last_value": s.target_last_value,
        "status": s.status,
        "source_is_called": s.source_is_called,
        "target_is_called": s.target_is_called,
        "owned_by": s.owned_by,
        "column_max": s.column_max,
        "increment": s.increment,
    }


def validation_json(report: ValidationReport) -> dict[str, Any]:
    """The JSON of ``migctl validate``: scripts read it, so fields are added, never renamed."""
    return {
        "ok": report.ok,
        "source": report.source,
        "target": report.target,
        "duration_seconds": report.duration_seconds,
        "tables": [table_json(t) for t in report.tables],
        "sequences": [sequence_json(s) for s in report.sequences],
        "algorithm": report.algorithm,
        "source_version": report.source_version,
        "target_version": report.target_version,
    }


def render_validation(out: Output, report: ValidationReport) -> None:
    if out.json:
        out.emit(validation_json(report))
        return
    from rich.table import Table

    table = Table(
        title=f"validate {plain(report.source)} -> {plain(report.target)}", title_justify="left"
    )
    for column in (
        "table",
        "status",
        "source\nrows",
        "target\nrows",
        "missing in\ntarget",
        "missing in\nsource",
        "changed",
    ):
        # Names, states and row counts keep their width; the keys wrap first.
        free_text = column.startswith(("missing", "changed"))
        table.add_column(
            column,
            no_wrap=not free_text,
            overflow="fold" if free_text else "ellipsis",
            justify="right" if "rows" in column else "left",
        )
    notes: list[tuple[str, str]] = []
    for t in report.tables:
        notes += [
            (t.table, note)
            for note in (*t.schema_differences, *([t.error] if t.error else []), *_equal_note(t))
        ]
        table.add_row(
            ident(t.table),
            f"[{state_style(t.status)}]{t.status}[/]",
            count(t.source_rows),
            count(t.target_rows),
            _count_and_keys(t.missing_in_target_count, t.missing_in_target),
            _count_and_keys(t.missing_in_source_count, t.missing_in_source),
            _count_and_keys(t.changed_count, t.changed),
        )
    out.out.print(fit_names(out.out, table))
    for name, note in notes:  # below the table, one per line: a narrow column would chop them
        out.out.print(f"{name}: {note}", markup=False, highlight=False, soft_wrap=True)
    if report.sequences:
        seqs = Table(title="sequences", title_justify="left")
        for column in (
            "sequence",
            "status",
            "source last_value",
            "target last_value",
            "column max",
        ):
            seqs.add_column(
                column,
                justify="left" if column in ("sequence", "status") else "right",
                no_wrap=column == "sequence",
                overflow="ellipsis",
            )
        for s in report.sequences:
            seqs.add_row(
                ident(s.sequence),
                f"[{state_style(s.status)}]{s.status}[/]",
                count(s.source_last_value),
                count(s.target_last_value),
                count(s.column_max),
            )
        out.out.print(fit_names(out.out, seqs))
    bad = [t for t in report.tables if not t.ok]
    behind = [s for s in report.sequences if not s.ok]
    if report.errored:
        out.err.print(
            f"[bold red]{len(report.errored)} table(s) could not be compared[/]: not a match"
        )
    if report.ok:
        out.err.print(
            f"[green]all {len(report.tables)} table(s) and {len(report.sequences)} sequence(s) match[/]"
            f" ({report.duration_seconds:.1f} s)"
        )
    else:
        out.err.print(
            f"[bold red]{len(bad)} table(s) and {len(behind)} sequence(s) differ[/]"
            f" ({report.duration_seconds:.1f} s)"
        )


def _equal_note(t: TableResult) -> list[str]:
    if not t.equal_by_value_count:
        return []
    return [
        f"{count(t.equal_by_value_count)} row(s) stored differently, equal by value (jsonb numbers)"
    ]


def _count_and_keys(found: int, keys: tuple[tuple[Any, ...], ...], shown: int = 3) -> str:
    if not found:
        return "0"
    sample = ", ".join(_key(k) for k in keys[:shown])
    more = " ..." if found > shown and keys else ""
    return plain(f"{count(found)}: {sample}{more}") if sample else count(found)


def _key(key: tuple[Any, ...]) -> str:
    return str(key[0]) if len(key) == 1 else "(" + ", ".join(map(str, key)) + ")"


class ValidationProgress:
    """rich progress on stderr, one line per table: rows, chunks, rows/s. Thread-safe."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._progress: RichProgress | None = None
        self._phases: dict[str, str] = {}  # without a terminal: the last phase printed, per table

    def __enter__(self) -> ValidationProgress:
        if self._out.json or not self._out.progress.is_terminal:
            return self
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self._out.progress,
            transient=False,
        )
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Progress) -> None:
        if self._out.json:
            return
        rows = max(event.source_rows or 0, event.target_rows or 0)
        speed = (
            f"{rows / event.elapsed_seconds:,.0f} rows/s"
            if event.elapsed_seconds > 0 and rows
            else ""
        )
        update: dict[str, Any] = {}
        if event.phase == "checksumming":
            status = (
                f"{count(rows)} rows, {event.chunks_done}/{event.chunks} invocations done,"
                f" {event.in_flight or 0} in flight  {speed}"
            )
        elif event.phase == "scanned":
            status = f"{count(rows)} rows, {event.chunks} chunks, {event.differing_chunks} differ  {speed}"
            update = {"total": max(event.differing_chunks, 1), "completed": 0}
        elif event.phase == "narrowing":
            status = (
                f"{count(rows)} rows, narrowing chunk {event.chunks_done}/{event.differing_chunks}"
            )
            if event.in_flight is not None:
                status += f", {event.in_flight} in flight"
            update = {"completed": event.chunks_done}
        elif event.phase == "done" and event.result is not None:
            r = event.result
            status = f"{r.status}: {count(rows)} rows, {r.chunks} chunks  {speed}"
            update = {"total": 1, "completed": 1}
        else:
            return
        with self._lock:
            if self._progress is None:  # no terminal (a log, CI): one whole line per phase
                if self._phases.get(event.table) != event.phase:
                    self._phases[event.table] = event.phase
                    self._out.progress.print(
                        f"{event.table}: {status.strip()}", markup=False, highlight=False
                    )
                return
            task = self._tasks.get(event.table)
            if task is None:
                task = self._progress.add_task(plain(event.table), total=None, status="scanning")
                self._tasks[event.table] = task
            self._progress.update(task, status=status, **update)
