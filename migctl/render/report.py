"""The cutover report's sections, shared by its HTML and Markdown forms; the Markdown form.

:func:`sections` turns a :class:`~migctl.cutover.evidence.CutoverReport` into
titled tables of text, in the order people read them. The HTML form
(``report_html.py``) renders the same sections and adds the timeline chart;
the Markdown form renders them as they are, with the timeline as a table.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migctl.cutover.evidence import CutoverReport, Run, Span, to_json
from migctl.render import Output

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str | None = None


@dataclass(frozen=True)
class Section:
    title: str
    anchor: str
    notes: tuple[str, ...] = ()
    tables: tuple[Table, ...] = field(default_factory=tuple)


def text(value: Any) -> str:
    """A fact as people read it: None is "not recorded", nested facts compact JSON."""
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, separators=(", ", ": "), default=str) if value else "none"
    return str(value)


def seconds(value: float | None) -> str:
    return NOT_RECORDED if value is None else f"{value:.3f} s"


def offset(report: CutoverReport, at: str | None) -> float | None:
    """Seconds from the cutover's start."""
    if at is None or report.started_at is None:
        return None
    return (_parse(at) - _parse(report.started_at)).total_seconds()


def _parse(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at)


def _kv(pairs: Iterable[tuple[str, Any]], caption: str | None = None) -> Table:
    return Table(("", ""), tuple((k, text(v)) for k, v in pairs), caption)


def span_seconds(span: Span) -> float | None:
    if span.end is None:
        return None
    return (_parse(span.end) - _parse(span.start)).total_seconds()


def outcome_line(report: CutoverReport) -> str:
    code = NOT_RECORDED if report.exit_code is None else str(report.exit_code)
    return f"{report.outcome} (exit {code})"


def freeze_line(report: CutoverReport) -> str:
    f = report.freeze
    if f.started_at is None:
        return "the source was never frozen"
    if f.still_frozen:
        return f"{seconds(f.seconds)} so far: no end journaled (still frozen, or the run died)"
    return f"{seconds(f.seconds)}, from {f.started_at} to {f.ended_at}"


def sections(report: CutoverReport) -> list[Section]:
    return [
        _summary(report),
        _runs(report),
        _timeline(report),
        _steps(report),
        _validation(report),
        _freeze(report),
        _rollout(report),
        _end(report),
    ]


def _summary(r: CutoverReport) -> Section:
    s = r.systems
    users = ", ".join(dict.fromkeys(_who(run) for run in r.runs)) or None
    versions = ", ".join(dict.fromkeys(v.migctl_version or "?" for v in r.runs)) or None
    config = s.get("config_sha256")
    if config and s.get("config_changed_between_runs"):
        config += " (the configuration changed between runs: see Runs)"
    return Section(
        "Summary",
        "summary",
        tables=(
            _kv(
                [
                    ("Environment", r.environment),
                    ("Cutover", r.cutover_id),
                    ("Outcome", outcome_line(r)),
                    ("Reason", r.reason or "none"),
                    ("Image", r.image),
                    ("Started", r.started_at),
                    ("Last record", r.ended_at),
                    ("Write freeze", freeze_line(r)),
                    ("Run by", users),
                    ("migctl", versions),
                    ("Source PostgreSQL", s.get("source_server")),
                    ("Target PostgreSQL", s.get("target_server")),
                    ("DMS task", s.get("dms_task")),
                    ("ECS service", _service(s.get("ecs_cluster"), s.get("ecs_service"))),
                    ("AWS identity", s.get("aws_identity")),
                    ("Configuration (SHA-256, secrets excluded)", config),
                    ("Journal", r.journal),
                ]
            ),
        ),
    )


def _who(run: Run) -> str:
    return f"{run.user or '?'}@{run.host or '?'}"


def _service(cluster: str | None, service: str | None) -> str | None:
    return f"{cluster}/{service}" if cluster and service else service


def _runs(r: CutoverReport) -> Section:
    rows = tuple(
        (run.mode, text(run.started_at), text(run.finished_at), text(run.outcome),
         text(run.exit_code), f"{_who(run)} pid {text(run.pid)}", text(run.migctl_version),
         (run.config_sha256 or NOT_RECORDED)[:16], run.reason or "")
        for run in r.runs
    )  # fmt: skip
    headers = ("Run", "Started", "Finished", "Outcome", "Exit", "By", "migctl", "Config", "Reason")
    return Section("Runs", "runs", tables=(Table(headers, rows),))


def _timeline(r: CutoverReport) -> Section:
    rows = tuple(
        (
            span.kind,
            span.step,
            _off(r, span.start),
            _off(r, span.end),
            seconds(span_seconds(span)),
            span.status,
        )
        for span in r.timeline
    )
    notes = [f"Write freeze: {freeze_line(r)}."]
    notes += [f"CDC latency at {p.at}: {p.seconds:g} s ({p.what})." for p in r.latency]
    headers = ("Kind", "Step", "Start (s)", "End (s)", "Took", "Status")
    return Section("Timeline", "timeline", tuple(notes), (Table(headers, rows),))


def _off(r: CutoverReport, at: str | None) -> str:
    value = offset(r, at)
    return "no end journaled" if value is None else f"+{value:.3f}"


def _steps(r: CutoverReport) -> Section:
    rows = tuple(
        (s.name, s.title, s.status, str(s.attempts), seconds(s.duration_seconds), s.error or "",
         s.undo_status or "", s.undo_error or "")
        for s in r.steps
    )  # fmt: skip
    headers = ("Step", "Title", "Status", "Attempts", "Took", "Error", "Undo", "Undo error")
    return Section("Steps", "steps", tables=(Table(headers, rows),))


def _table_rows(
    compared: Sequence[Mapping[str, Any]], unknown: str = NOT_RECORDED
) -> tuple[tuple[str, ...], ...]:
    """``unknown``: what a missing count or digest means (a round of incremental validation
    compares changed keys: it counts no rows and hashes no whole table)."""

    def cell(value: Any) -> str:
        return unknown if value is None else text(value)

    return tuple(
        (str(t.get("table")), str(t.get("status")), cell(t.get("source_rows")),
         cell(t.get("target_rows")), cell(t.get("source_digest")), cell(t.get("target_digest")),
         text(t.get("method")),
         text(t.get("missing_in_target", 0) + t.get("missing_in_source", 0) + t.get("changed", 0)),
         text(t.get("keys")) if t.get("keys") else "")
        for t in compared
    )  # fmt: skip


TABLE_HEADERS = (
    "Table",
    "Status",
    "Source rows",
    "Target rows",
    "Source digest",
    "Target digest",
    "Method",
    "Differing",
    "Keys",
)


def _validation(r: CutoverReport) -> Section:
    v = r.validation
    notes: list[str] = []
    tables: list[Table] = []
    if v.baseline and v.baseline.get("compared") is not None:
        state = v.baseline.get("state") or {}
        notes.append(
            "Baseline: every table compared in full before the freeze, while the application "
            f"wrote; the changes since were read from slot {text(state.get('slot'))} at "
            f"{text(state.get('positions'))}. Differences here are replication lag until the "
            "validation under the freeze says otherwise."
        )
        tables.append(Table(TABLE_HEADERS, _table_rows(v.baseline["compared"]), "Baseline"))
    elif v.baseline:
        notes.append(f"Baseline: {text(v.baseline)}")
    if v.final is None:
        notes.append(f"Validation under the freeze: {v.final_status or 'never ran'}.")
    else:
        f = v.final
        where = (
            f"the rows changed since the baseline (read up to {text(f.get('read_up_to'))}) "
            f"and those still differing: {text(f.get('rechecked'))} key(s) compared"
            if f.get("mode") == "incremental"
            else "every table compared in full"
        )
        notes.append(
            f"Validation under the freeze ({v.final_status}): {f.get('mode')}, {where}; "
            f"{text(f.get('still_differing', 0))} still differing."
        )
        if f.get("compared_in_full"):
            notes.append(f"Compared in full in that round: {text(f.get('compared_in_full'))}.")
        if f.get("compared") is not None:
            unknown = "not counted" if f.get("mode") == "incremental" else NOT_RECORDED
            rows = _table_rows(f["compared"], unknown)
            tables.append(Table(TABLE_HEADERS, rows, "Under the freeze"))
        if f.get("differences"):
            caption = "Differences (the cutover stopped on them)"
            tables.append(Table(TABLE_HEADERS, _table_rows(f["differences"]), caption))
    if v.final_error:
        notes.append(f"Validation error: {v.final_error}")
    if v.sequences:
        rows = tuple(
            (str(q.get("sequence")), text(q.get("leader")), text(q.get("before")),
             text(q.get("after")))
            for q in v.sequences
        )  # fmt: skip
        caption = f"Sequences (margin {text(v.sequence_margin)})"
        tables.append(Table(("Sequence", "Source", "Target before", "Target after"), rows, caption))
    else:
        notes.append("Sequences: not synchronized in this cutover.")
    return Section("Validation", "validation", tuple(notes), tuple(tables))


def _freeze(r: CutoverReport) -> Section:
    f = r.freeze
    notes = [f"Write freeze: {freeze_line(r)}."]
    tables = [
        _kv(
            [("Strategy", f.strategy), *f.fenced.items(), *f.facts.items()],
            "What the fence changed",
        )
    ]
    if f.restored is not None:
        tables.append(_kv(f.restored.items(), "What the rollback restored"))
    rows = tuple(
        (str(p.get("step")), text(p.get("from_lsn")), text(p.get("to_lsn")),
         str(len(p.get("breaches") or ())), text(p.get("breaches")), text(p.get("outside_fence")))
        for p in f.proofs
    )  # fmt: skip
    if rows:
        headers = ("Checked by", "From LSN", "To LSN", "Breaches", "Which", "Outside the fence")
        tables.append(Table(headers, rows, "Proof that no write got through"))
    else:
        notes.append("No proof was journaled: the cutover did not reach prove_freeze.")
    return Section("Write freeze", "freeze", tuple(notes), tuple(tables))


def _rollout(r: CutoverReport) -> Section:
    o = r.rollout
    tables = [
        _kv(
            [
                ("Switch", o.switch),
                ("Service", _service(o.cluster, o.service)),
                ("Standby service", o.standby),
                ("Listener", o.listener),
                ("Task definition before", o.task_definition_before),
                ("Task definition after", o.task_definition_after),
                ("Images before", dict(o.images_before) or None),
                ("Image after", o.image),
                ("Live on the target at", o.live_at),
                ("Baked", seconds(o.baked_seconds) if o.baked_seconds is not None else None),
                ("Deployments", ", ".join(o.deployments) or "none"),
            ]
        )
    ]
    if o.alarms:
        rows = tuple(
            (str(a.get("at")), str(a.get("step")), text(a.get("name")), text(a.get("state")))
            for a in o.alarms
        )
        tables.append(Table(("At", "Step", "Alarm", "State"), rows, "Alarms watched"))
    if o.events:
        rows = tuple((e.at, e.step, e.kind, e.message) for e in o.events)
        tables.append(Table(("At", "Step", "Event", "Message"), rows, "Deployment events"))
    return Section("Rollout", "rollout", tables=tuple(tables))


def _end(r: CutoverReport) -> Section:
    notes = [f"Warning: {w}" for w in r.warnings] or ["No warnings."]
    tables = []
    undone = [s for s in r.steps if s.undo_status or s.undo_details]
    rows: tuple[tuple[str, ...], ...]
    if undone:
        rows = tuple(
            (s.name, text(s.undo_status), text(s.undone_at), s.undo_error or "",
             text(s.undo_details))
            for s in undone
        )  # fmt: skip
        tables.append(Table(("Step", "Undo", "At", "Error", "What it did"), rows, "Undos"))
    else:
        notes.append("Nothing was undone.")
    if r.manual_steps:
        rows = tuple((str(i), m) for i, m in enumerate(r.manual_steps, 1))
        tables.append(Table(("#", "Manual step"), rows, "What a person must do"))
    if r.state:
        rows = tuple((s,) for s in r.state)
        tables.append(Table(("System",), rows, "Where each system stands"))
    return Section("Warnings, undos and manual steps", "end", tuple(notes), tuple(tables))


def to_markdown(report: CutoverReport) -> str:
    out = [f"# Cutover {report.cutover_id}: {outcome_line(report)}", ""]
    out.append(f"Generated {report.generated_at} by {report.generated_by} from its journal.")
    for section in sections(report):
        out += ["", f"## {section.title}"]
        if section.notes:
            out += ["", *(f"{_md(n)}  " for n in section.notes)]
        for table in section.tables:
            if table.caption:
                out += ["", f"**{_md(table.caption)}**"]
            out.append("")
            headers = table.headers if any(table.headers) else ("Fact", "Value")
            out.append("| " + " | ".join(_md(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table.rows]
    return "\n".join(out) + "\n"


def _md(value: str) -> str:
    """A table cell: pipes escaped, one line, and no markup of its own (backslashes, angle
    brackets, backticks, asterisks and brackets escaped; an underscore inside a word, as in
    table names, is no markup in GitHub's Markdown and stays as it is)."""
    value = value.replace("\\", "\\\\")
    for ch in "|<>`*[]":
        value = value.replace(ch, "\\" + ch)
    return " ".join(value.split())


FORMATS = ("html", "md", "json")  # each is also the file's extension


def report_json(report: CutoverReport) -> str:
    """The JSON form: the report's data (docs/report.md)."""
    return json.dumps(to_json(report), indent=2, default=str) + "\n"


def render_written(out: Output, written: Mapping[str, Any]) -> None:
    """Where the report went (``-`` : it was the output itself, and nothing more is said)."""
    if written["path"] == "-":
        return
    if out.json:
        out.emit(dict(written))
        return
    out.out.print(
        f"Report of cutover {written['cutover_id']} ({written['outcome']}): {written['path']}",
        markup=False,
        highlight=False,
    )
