"""``migctl cutover plan``: the steps with their gates, what the configuration makes of them,
and where the journal says the latest cutover stands. Reads; changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from migctl.cutover.journal import Journal
from migctl.cutover.lock import Lock, LockHolder
from migctl.cutover.session import cutover_status
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
