"""Where a cutover stands, replayed from its journal records.

The journal is the truth: every decision (start fresh, resume from which
step, what to roll back) is taken from :func:`replay` of its records, and
the runbook keeps its state current by applying each record it writes with
:func:`apply`, the same function. A ``cutover_started`` record begins a new
cutover; :func:`replay` follows the latest one, or the one asked for by id,
and :func:`history` lists them all.

Record kinds (each also has ``ts`` and ``cutover_id``): ``cutover_started``,
``run_started`` (mode run/resume/rollback), ``step_started``,
``step_finished`` (status done/failed/interrupted), ``note`` (its
``details.progress`` is kept per step, across attempts), ``undo_started``,
``undo_finished`` (status undone/failed), ``lock_broken``, ``run_finished``
(the outcome).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Phase = Literal["none", "in_progress", "rolling_back", "completed", "closed"]
UNDO_PENDING = frozenset({"done", "running", "interrupted", "undoing", "undo_failed"})


@dataclass(frozen=True)
class StepState:
    name: str
    status: str = "pending"  # pending running done failed interrupted undoing undone undo_failed
    attempts: int = 0
    changed: bool = False  # an action started: there may be something to undo
    completed: bool = False  # it finished "done" at least once (an undo does not clear it)
    before: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    undo_details: Mapping[str, Any] = field(default_factory=dict)
    undo_error: str | None = None
    undone_at: str | None = None
    progress: Mapping[str, Any] = field(default_factory=dict)  # noted by its attempts so far

    @property
    def needs_undo(self) -> bool:
        return self.status in UNDO_PENDING or (self.status == "failed" and self.changed)


@dataclass(frozen=True)
class CutoverState:
    step_names: tuple[str, ...]
    cutover_id: str | None = None
    started_at: str | None = None
    image: str | None = None
    steps: tuple[StepState, ...] = ()
    outcome: str | None = None  # of the last finished run; None while a run is open
    run_open: bool = False  # a run started and did not finish (a crash, a kill -9)
    run_mode: str | None = None
    rollback_started: bool = False

    def step(self, name: str) -> StepState:
        return next(s for s in self.steps if s.name == name)

    @property
    def phase(self) -> Phase:
        if self.cutover_id is None:
            return "none"
        if self.rollback_started and self.outcome != "rolled_back":
            return "rolling_back"
        if self.outcome in ("rolled_back", "stopped", "finalized"):
            return "closed"
        if self.outcome == "completed":
            return "completed"
        return "in_progress"

    def first_unfinished(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.status != "done"), None)

    def write_freeze(self, now: dt.datetime) -> tuple[float | None, bool]:
        """Seconds the source was frozen (the downtime the business sees), and whether it still is.

        It starts when the freeze took effect and ends when the new image serves from the
        target: its deployment completed (the bake then runs with customers paying), or, with
        no bake, the rollout step is done; or when the freeze was undone.
        """
        start, end = self.freeze_bounds()
        if not start:
            return None, False
        stop = _parse(end) if end else now
        return round((stop - _parse(start)).total_seconds(), 3), end is None

    def freeze_bounds(self) -> tuple[str | None, str | None]:
        """When the write freeze took effect and when it ended (None: not yet), as journaled."""
        if "freeze_writes" not in self.step_names:
            return None, None
        freeze = self.step("freeze_writes")
        # A rerun (after a crash) froze an already frozen source: count from the first attempt.
        first = freeze.started_at if freeze.attempts > 1 else freeze.details.get("frozen_at")
        start = first if freeze.changed else None
        if not start:
            return None, None
        end = None
        rollout = self.step("rollout") if "rollout" in self.step_names else None
        if rollout is not None and rollout.completed:  # from then on the target takes writes
            end = rollout.progress.get("live_at") or rollout.finished_at
        elif freeze.status == "undone":
            end = freeze.undone_at
        return start, end


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def empty(step_names: Sequence[str]) -> CutoverState:
    return CutoverState(tuple(step_names), steps=tuple(StepState(n) for n in step_names))


def replay(
    records: Iterable[Mapping[str, Any]],
    step_names: Sequence[str],
    cutover_id: str | None = None,
) -> CutoverState:
    """The latest cutover, or the one ``cutover_id`` names (an empty state when unknown)."""
    state = empty(step_names)
    for record in records:
        if cutover_id is None or record.get("cutover_id") == cutover_id:
            state = apply(state, record)
    return state


def history(records: Sequence[Mapping[str, Any]], step_names: Sequence[str]) -> list[CutoverState]:
    """Every cutover of the journal, oldest first."""
    ids = [r.get("cutover_id") for r in records if r.get("event") == "cutover_started"]
    return [replay(records, step_names, str(i)) for i in dict.fromkeys(ids) if i]


def apply(state: CutoverState, record: Mapping[str, Any]) -> CutoverState:
    event = record.get("event")
    if event == "cutover_started":
        return replace(
            empty(state.step_names),
            cutover_id=record.get("cutover_id"),
            started_at=record.get("ts"),
            image=record.get("image"),
        )
    if state.cutover_id is None or record.get("cutover_id") != state.cutover_id:
        return state  # an older cutover's record
    if event == "note":
        return _noted(state, record)
    if event == "run_started":
        mode = record.get("mode")
        return replace(
            state,
            run_open=True,
            # finalize changes nothing the runbook did: until it ends, the cutover is completed
            outcome=state.outcome if mode == "finalize" else None,
            run_mode=mode,
            image=record.get("image") or state.image,  # a resume may bring the image
            rollback_started=state.rollback_started or mode == "rollback",
        )
    if event == "run_finished":
        return replace(state, run_open=False, outcome=record.get("outcome"))
    if event == "rollback_started":
        return replace(state, rollback_started=True)
    name = record.get("step")
    if event not in _STEP_EVENTS or name not in state.step_names:
        return state
    current = state.step(name)
    updated = _STEP_EVENTS[event](current, record)
    steps = tuple(updated if s.name == name else s for s in state.steps)
    rollback = state.rollback_started or event.startswith("undo_")
    return replace(state, steps=steps, rollback_started=rollback)


def _noted(state: CutoverState, record: Mapping[str, Any]) -> CutoverState:
    details = record.get("details")
    progress = details.get("progress") if isinstance(details, Mapping) else None
    name = record.get("step")
    if not isinstance(progress, Mapping) or name not in state.step_names:
        return state
    steps = tuple(
        replace(s, progress={**s.progress, **progress}) if s.name == name else s
        for s in state.steps
    )
    return replace(state, steps=steps)


def _started(step: StepState, record: Mapping[str, Any]) -> StepState:
    return replace(
        step,
        status="running",
        attempts=step.attempts + 1,
        before=step.before or dict(record.get("before") or {}),
        started_at=step.started_at or record.get("ts"),
        error=None,
    )


def _finished(step: StepState, record: Mapping[str, Any]) -> StepState:
    progress = step.progress
    if record.get("status") == "interrupted":
        progress = {**progress, "interrupted_at": record.get("ts")}
    return replace(
        step,
        progress=progress,
        status=str(record.get("status")),
        changed=step.changed or bool(record.get("changed")),
        completed=step.completed or record.get("status") == "done",
        details=dict(record.get("details") or {}),
        error=record.get("error"),
        finished_at=record.get("ts"),
        duration_seconds=record.get("duration_seconds"),
    )


def _undo_started(step: StepState, _record: Mapping[str, Any]) -> StepState:
    return replace(step, status="undoing", undo_error=None)


def _undo_finished(step: StepState, record: Mapping[str, Any]) -> StepState:
    ok = record.get("status") == "undone"
    return replace(
        step,
        status="undone" if ok else "undo_failed",
        undo_details=dict(record.get("details") or {}),
        undo_error=record.get("error"),
        undone_at=record.get("ts") if ok else None,
    )


_STEP_EVENTS = {
    "step_started": _started,
    "step_finished": _finished,
    "undo_started": _undo_started,
    "undo_finished": _undo_finished,
}
