"""``migctl cutover plan`` (the steps with their gates, what the configuration makes of them)
and ``migctl cutover status`` (where the latest cutover stands, and every one before it),
from the journal. Reads; changes nothing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from migctl.cutover.journal import Journal
from migctl.cutover.lock import Lock, LockHolder
from migctl.cutover.session import cutover_history, cutover_status
from migctl.cutover.state import CutoverState
from migctl.cutover.steps import STEPS

if TYPE_CHECKING:
    from migctl.config import Settings


@dataclass(frozen=True)
class PlannedStep:
    number: int
    name: str
    title: str
    gate: str
    action: str
    check: str
    undo: str | None
    point_of_no_return: bool
    status: str  # in the latest cutover of the journal


@dataclass(frozen=True)
class CutoverPlan:
    steps: tuple[PlannedStep, ...]
    journal: str
    lock: str
    lock_holder: LockHolder | None
    cutover_id: str | None
    phase: str  # none, in_progress, rolling_back, completed, closed
    last_outcome: str | None
    next_step: str | None
    image: str | None
    freeze_strategy: str
    app_roles: tuple[str, ...]
    sequence_margin: int


def plan_cutover(settings: Settings, journal: Journal, lock: Lock) -> CutoverPlan:
    state = cutover_status(journal)
    resumable = state.phase == "in_progress"
    index = state.first_unfinished() if resumable else None
    conf = settings.cutover
    return CutoverPlan(
        steps=tuple(
            PlannedStep(
                number,
                step.name,
                step.title,
                step.gate_text,
                step.action_text,
                step.check_text,
                step.undo_text,
                step.point_of_no_return,
                state.step(step.name).status,
            )
            for number, step in enumerate(STEPS, start=1)
        ),
        journal=journal.location,
        lock=lock.location,
        lock_holder=lock.holder(),
        cutover_id=state.cutover_id,
        phase=state.phase,
        last_outcome=state.outcome,
        next_step=STEPS[index].name if index is not None else None,
        image=state.image if resumable and state.image else conf.image,
        freeze_strategy=conf.freeze_strategy,
        app_roles=conf.app_roles,
        sequence_margin=conf.sequence_margin,
    )


@dataclass(frozen=True, kw_only=True)
class CutoverSummary:
    """One cutover of the journal."""

    cutover_id: str
    started_at: str | None
    image: str | None
    phase: str  # in_progress, rolling_back, completed, closed
    last_outcome: str | None
    write_freeze_seconds: float | None
    write_freeze_open: bool
    steps: dict[str, str]  # name -> status
    next_commands: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CutoverOverview:
    journal: str
    lock_holder: LockHolder | None
    latest: CutoverSummary | None
    history: tuple[CutoverSummary, ...]  # oldest first, the latest included


def cutover_overview(journal: Journal, lock: Lock) -> CutoverOverview:
    now = dt.datetime.now(dt.UTC)
    summaries = tuple(_summary(state, now) for state in cutover_history(journal))
    return CutoverOverview(
        journal=journal.location,
        lock_holder=lock.holder(),
        latest=summaries[-1] if summaries else None,
        history=summaries,
    )


def _summary(state: CutoverState, now: dt.datetime) -> CutoverSummary:
    seconds, still = state.write_freeze(now)
    rollback = f"migctl cutover rollback --cutover {state.cutover_id}"
    commands = {
        "in_progress": ("migctl cutover --resume", rollback),
        "rolling_back": (rollback,),
        "completed": (rollback,),
    }.get(state.phase, ())
    return CutoverSummary(
        cutover_id=str(state.cutover_id),
        started_at=state.started_at,
        image=state.image,
        phase=state.phase,
        last_outcome=state.outcome,
        write_freeze_seconds=seconds,
        write_freeze_open=still,
        steps={s.name: s.status for s in state.steps},
        next_commands=commands,
    )
