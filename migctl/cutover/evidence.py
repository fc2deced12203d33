"""The evidence of one cutover, from its journal alone: what ``migctl cutover report`` renders.

Nothing here reaches a database or AWS: the report of a cutover can be made
after the fact, on another machine, from a copy of the journal. Every fact
comes from a journal record (docs/report.md maps each one to its record);
what the journal does not hold is ``None`` and the report says "not
recorded", never a guess. Every string is passed through
:func:`migctl.redact.redact_text` on its way in.

The JSON form is :func:`to_json` of :class:`CutoverReport`; its
``report_version`` changes only when a field changes meaning or goes away.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migctl import __version__
from migctl.cutover.model import Step
from migctl.cutover.state import CutoverState, StepState, replay
from migctl.cutover.steps import STEPS
from migctl.errors import UsageError
from migctl.redact import redact_text

REPORT_VERSION = 1
Record = Mapping[str, Any]


@dataclass(frozen=True)
class Run:
    """One invocation: the run, a resume, a rollback or a finalize."""

    mode: str
    started_at: str
    finished_at: str | None = None  # None: it never finished (a crash, or still running)
    outcome: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    user: str | None = None
    host: str | None = None
    pid: int | None = None
    migctl_version: str | None = None
    config_sha256: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class Span:
    """A bar of the timeline: a step's attempt or an undo."""

    kind: str  # "step" or "undo"
    step: str
    start: str
    end: str | None  # None: no end was journaled (the run died)
    status: str


@dataclass(frozen=True)
class StepRow:
    name: str
    title: str
    status: str
    attempts: int
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    error: str | None
    details: Mapping[str, Any]
    undo_status: str | None = None  # undone, undo_failed; None: never undone
    undone_at: str | None = None
    undo_error: str | None = None
    undo_details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Freeze:
    started_at: str | None  # None: the source was never frozen
    ended_at: str | None
    seconds: float | None
    still_frozen: bool  # no end journaled: frozen when the report was made (or the run died)
    strategy: str | None
    fenced: Mapping[str, Any]  # what the fence created, and on which tables
    facts: Mapping[str, Any]  # freeze_writes' facts: when, from which LSN, how many tables
    restored: Mapping[str, Any] | None  # the freeze's undo: what it took down
    proofs: tuple[Mapping[str, Any], ...]  # {step, from_lsn, to_lsn, breaches, outside_fence}


@dataclass(frozen=True)
class Validation:
    baseline: Mapping[str, Any] | None  # the full comparison before the freeze
    final: Mapping[str, Any] | None  # the validate step: under the freeze
    final_status: str | None  # the validate step's status
    final_error: str | None
    sequences: tuple[Mapping[str, Any], ...]  # {sequence, leader, before, after}
    sequence_margin: int | None


@dataclass(frozen=True)
class RolloutEvent:
    at: str
    step: str
    kind: str  # deployment, service_event, alarm, bake, completed ...
    message: str
    facts: Mapping[str, Any]


@dataclass(frozen=True)
class Rollout:
    switch: str | None  # standby or rollout
    cluster: str | None
    service: str | None
    standby: str | None
    listener: str | None
    task_definition_before: str | None
    task_definition_after: str | None
    image: str | None
    images_before: Mapping[str, str]  # container -> image of the task definition before
    live_at: str | None
    baked_seconds: float | None
    deployments: tuple[str, ...]
    alarms: tuple[Mapping[str, Any], ...]  # {at, step, name, state, reason}: every state seen
    events: tuple[RolloutEvent, ...]


@dataclass(frozen=True)
class LatencyPoint:
    at: str
    seconds: float
    what: str


@dataclass(frozen=True)
class CutoverReport:
    cutover_id: str
    environment: str | None
    image: str | None
    freeze_strategy: str | None
    started_at: str | None
    ended_at: str | None  # the last record's time
    outcome: str  # the last run's; "unfinished" when a run did not finish
    exit_code: int | None
    reason: str | None
    phase: str
    journal: str
    runs: tuple[Run, ...]
    systems: Mapping[str, Any]
    steps: tuple[StepRow, ...]
    timeline: tuple[Span, ...]
    freeze: Freeze
    validation: Validation
    rollout: Rollout
    latency: tuple[LatencyPoint, ...]
    warnings: tuple[str, ...]
    manual_steps: tuple[str, ...]
    state: tuple[str, ...]
    report_version: int = REPORT_VERSION
    generated_at: str = ""
    generated_by: str = f"migctl {__version__}"


def build(
    records: Sequence[Record],
    *,
    journal: str,
    cutover_id: str | None = None,
    steps: Sequence[Step] = STEPS,
    now: dt.datetime | None = None,
) -> CutoverReport:
    """The report of the latest cutover, or of ``cutover_id``; UsageError (exit 2) when the
    journal holds no such cutover."""
    records = [_clean(r) for r in records]
    names = [s.name for s in steps]
    cut = replay(records, names, cutover_id)
    if cut.cutover_id is None:
        known = [str(r["cutover_id"]) for r in records if r.get("event") == "cutover_started"]
        if cutover_id is None:
            raise UsageError(f"the journal {journal} holds no cutover yet")
        raise UsageError(
            f"no cutover {cutover_id!r} in the journal {journal}",
            hint=f"its cutovers: {', '.join(known[-5:])}" if known else None,
        )
    mine = [r for r in records if r.get("cutover_id") == cut.cutover_id]
    first = next(r for r in mine if r.get("event") == "cutover_started")
    now = now or dt.datetime.now(dt.UTC)
    runs = _runs(mine)
    last = runs[-1] if runs else None
    last_end = next((r for r in reversed(mine) if r.get("event") == "run_finished"), {})
    unfinished = last is None or last.finished_at is None
    return CutoverReport(
        cutover_id=cut.cutover_id,
        environment=first.get("environment"),
        image=cut.image,
        freeze_strategy=first.get("freeze_strategy"),
        started_at=cut.started_at,
        ended_at=mine[-1].get("ts"),
        outcome="unfinished" if unfinished else str(last_end.get("outcome")),
        exit_code=None if unfinished else last_end.get("exit_code"),
        reason=last_end.get("reason") if not unfinished else None,
        phase=cut.phase,
        journal=journal,
        runs=tuple(runs),
        systems=_systems(cut, runs),
        steps=_steps(cut, steps),
        timeline=_timeline(mine),
        freeze=_freeze(cut, now),
        validation=_validation(cut),
        rollout=_rollout(cut, mine),
        latency=_latency(cut),
        warnings=_warnings(mine),
        manual_steps=tuple(last_end.get("manual_steps") or ()) if not unfinished else (),
        state=tuple(last_end.get("state") or ()) if not unfinished else (),
        generated_at=now.isoformat(),
    )


def to_json(report: CutoverReport) -> dict[str, Any]:
    return dataclasses.asdict(report)


def _clean(value: Any) -> Any:
    """Every string of a record, redacted (a DSN's password, a secret this process knows)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _runs(mine: Sequence[Record]) -> list[Run]:
    runs: list[Run] = []
    for r in mine:
        if r.get("event") == "run_started":
            runs.append(
                Run(
                    mode=str(r.get("mode")),
                    started_at=str(r.get("ts")),
                    user=r.get("user"),
                    host=r.get("host"),
                    pid=r.get("pid"),
                    migctl_version=r.get("migctl_version"),
                    config_sha256=r.get("config_sha256"),
                    image=r.get("image"),
                )
            )
        elif r.get("event") == "run_finished" and runs and runs[-1].finished_at is None:
            runs[-1] = dataclasses.replace(
                runs[-1],
                finished_at=r.get("ts"),
                outcome=r.get("outcome"),
                exit_code=r.get("exit_code"),
                reason=r.get("reason"),
            )
    return runs


def _details(cut: CutoverState, name: str) -> Mapping[str, Any]:
    return cut.step(name).details if name in cut.step_names else {}


def _before(cut: CutoverState, name: str) -> Mapping[str, Any]:
    return cut.step(name).before if name in cut.step_names else {}


def _systems(cut: CutoverState, runs: Sequence[Run]) -> dict[str, Any]:
    versions: Mapping[str, Any] = {}
    for name in ("validate", "baseline", "preflight"):  # the latest reading
        versions = _details(cut, name).get("server_versions") or versions
        if versions:
            break
    stage, rollout = _before(cut, "stage"), _before(cut, "rollout")
    preflight = _details(cut, "preflight")
    configs = [r.config_sha256 for r in runs if r.config_sha256]
    return {
        "source_server": _pg_version(versions.get("source")),
        "target_server": _pg_version(versions.get("target")),
        "dms_task": preflight.get("dms_task"),
        "ecs_cluster": stage.get("cluster") or rollout.get("cluster"),
        "ecs_service": stage.get("service") or rollout.get("service"),
        "config_sha256": configs[-1] if configs else None,
        "config_changed_between_runs": len(set(configs)) > 1,
        "aws_identity": (preflight.get("identity") or {}).get("arn"),
    }


def _pg_version(number: Any) -> str | None:
    """150004 -> "15.4" (PostgreSQL 10 and later)."""
    if not isinstance(number, int):
        return None
    return f"{number // 10000}.{number % 10000}"


def _steps(cut: CutoverState, steps: Sequence[Step]) -> tuple[StepRow, ...]:
    return tuple(_row(s, step.title) for s, step in zip(cut.steps, steps, strict=True))


def _row(s: StepState, title: str) -> StepRow:
    return StepRow(
        name=s.name,
        title=title,
        status=s.status,
        attempts=s.attempts,
        started_at=s.started_at,
        finished_at=s.finished_at,
        duration_seconds=s.duration_seconds,
        error=s.error,
        details=s.details,
        undo_status=s.status if s.status in ("undone", "undo_failed") else None,
        undone_at=s.undone_at,
        undo_error=s.undo_error,
        undo_details=s.undo_details,
    )


def _timeline(mine: Sequence[Record]) -> tuple[Span, ...]:
    """Each attempt of a step and each undo, from its start record to its end record; one
    whose end was never journaled ends with the run (``end`` None)."""
    spans: list[Span] = []
    open_: dict[tuple[str, str], int] = {}
    ends = {"step_finished": "step", "undo_finished": "undo"}
    starts = {"step_started": "step", "undo_started": "undo"}
    for r in mine:
        event, step, ts = r.get("event"), str(r.get("step")), str(r.get("ts"))
        if event in starts:
            open_[(starts[event], step)] = len(spans)
            spans.append(Span(starts[event], step, ts, None, "running"))
        elif event in ends and (ends[event], step) in open_:
            at = open_.pop((ends[event], step))
            spans[at] = dataclasses.replace(spans[at], end=ts, status=str(r.get("status")))
        elif event in {"run_finished", "run_started"}:
            for at in open_.values():  # a run that ended (or died) ends its open spans
                spans[at] = dataclasses.replace(spans[at], end=ts, status="interrupted")
            open_.clear()
    return tuple(spans)


def _freeze(cut: CutoverState, now: dt.datetime) -> Freeze:
    start, end = cut.freeze_bounds()
    seconds, still = cut.write_freeze(now)
    freeze = cut.step("freeze_writes") if "freeze_writes" in cut.step_names else None
    proofs = []
    for name in ("prove_freeze", "post_checks"):
        proof = _details(cut, name).get("proof")
        if isinstance(proof, Mapping):
            proofs.append({"step": name, **proof})
    before = freeze.before if freeze else {}
    return Freeze(
        started_at=start,
        ended_at=end,
        seconds=seconds,
        still_frozen=still,
        strategy=before.get("strategy"),
        fenced={k: before[k] for k in ("creates", "tables", "database") if k in before},
        facts=freeze.details if freeze else {},
        restored=freeze.undo_details if freeze and freeze.undo_details else None,
        proofs=tuple(proofs),
    )


def _validation(cut: CutoverState) -> Validation:
    baseline = _details(cut, "baseline")
    validate = cut.step("validate") if "validate" in cut.step_names else None
    sync = _details(cut, "sync_sequences")
    return Validation(
        baseline=baseline or None,
        final=validate.details if validate and validate.details else None,
        final_status=validate.status if validate else None,
        final_error=validate.error if validate else None,
        sequences=tuple(sync.get("values") or ()),
        sequence_margin=sync.get("margin"),
    )


def _rollout(cut: CutoverState, mine: Sequence[Record]) -> Rollout:
    stage, rollout = _before(cut, "stage"), _before(cut, "rollout")
    events = tuple(
        RolloutEvent(
            at=str(r.get("ts")),
            step=str(r.get("step")),
            kind=str(r["details"]["rollout_event"]),
            message=str(r.get("message")),
            facts=r["details"].get("facts") or {},
        )
        for r in mine
        if r.get("event") == "note"
        and isinstance(r.get("details"), Mapping)
        and r["details"].get("rollout_event")
    )
    deployments = tuple(
        dict.fromkeys(
            str(e.facts["id"]) for e in events if e.kind == "deployment" and e.facts.get("id")
        )
    )
    alarms = tuple(
        {"at": e.at, "step": e.step, "name": e.facts.get("name"), "state": e.facts.get("state"),
         "reason": e.facts.get("reason")}
        for e in events if e.kind == "alarm"
    )  # fmt: skip
    step = cut.step("rollout") if "rollout" in cut.step_names else None
    after = (step.details.get("task_definition") if step else None) or _details(cut, "stage").get(
        "task_definition"
    )
    return Rollout(
        switch=stage.get("switch") or rollout.get("switch"),
        cluster=stage.get("cluster") or rollout.get("cluster"),
        service=stage.get("service") or rollout.get("service"),
        standby=stage.get("standby"),
        listener=stage.get("listener"),
        task_definition_before=rollout.get("previous_task_definition"),
        task_definition_after=after,
        image=cut.image,
        images_before=rollout.get("previous_images") or {},
        live_at=step.progress.get("live_at") if step else None,
        baked_seconds=step.details.get("baked_seconds") if step else None,
        deployments=deployments,
        alarms=alarms,
        events=events,
    )


def _latency(cut: CutoverState) -> tuple[LatencyPoint, ...]:
    """CDC latency where the journal measured it: the preflight's CDCLatencyTarget, and the
    time a marker row took from the source to the target (the stage's, the freeze's)."""
    points = []
    preflight = cut.step("preflight") if "preflight" in cut.step_names else None
    if preflight and isinstance(preflight.details.get("cdc_latency_target_seconds"), int | float):
        points.append(
            LatencyPoint(
                str(preflight.finished_at),
                float(preflight.details["cdc_latency_target_seconds"]),
                "CDCLatencyTarget (preflight)",
            )
        )
    for name, where, what in (
        ("stage", "replication_through_fence", "marker row, source to target (stage)"),
        ("marker", None, "marker row, source to target (under the freeze)"),
    ):
        if name not in cut.step_names:
            continue
        s = cut.step(name)
        facts = s.details.get(where) if where else s.details
        if isinstance(facts, Mapping) and isinstance(facts.get("drain_seconds"), int | float):
            points.append(LatencyPoint(str(s.finished_at), float(facts["drain_seconds"]), what))
    return tuple(points)


def _warnings(mine: Sequence[Record]) -> tuple[str, ...]:
    found: list[str] = []
    for r in mine:
        details = r.get("details")
        if r.get("event") == "note" and isinstance(details, Mapping) and details.get("warning"):
            found.append(str(r.get("message")))
        elif r.get("event") == "run_finished":
            found += [str(w) for w in r.get("warnings") or ()]
    return tuple(dict.fromkeys(found))
