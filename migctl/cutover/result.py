"""What a cutover run reports: its options, its outcome, each step, the write freeze.

Outcomes and exit codes: ``completed`` 0; ``paused`` 0 (``--until``);
``stopped`` 1, or the error's own code (2 usage, 3 operational): a gate not
met before anything changed; ``aborted`` 1 (not confirmed; the state is left
as it is, resumable); ``rolled_back`` 4; ``rollback_failed`` 5;
``interrupted`` 130 (Ctrl-C: the state is left as it is, said, resumable);
``finalized`` 0 (``cutover finalize``: the way back is closed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migctl.cutover.model import Step
from migctl.cutover.state import CutoverState
from migctl.errors import ExitCode

EXIT_CODES: Mapping[str, int] = {
    "completed": ExitCode.OK,
    "finalized": ExitCode.OK,
    "paused": ExitCode.OK,
    "aborted": ExitCode.CHECK_FAILED,
    "rolled_back": ExitCode.ROLLED_BACK,
    "rollback_failed": ExitCode.ROLLBACK_FAILED,
    "interrupted": ExitCode.INTERRUPTED,
}


@dataclass(frozen=True)
class RunOptions:
    resume: bool = False
    until: str | None = None
    yes: bool = False  # confirms freeze_strategy = "none"; the CLI also drops ``confirm``
    break_lock: bool = False
    image: str | None = None
    new: bool = False  # start a cutover even though the latest one completed


@dataclass(frozen=True)
class StepSummary:
    name: str
    title: str
    status: str
    attempts: int
    duration_seconds: float | None
    error: str | None
    undo_error: str | None
    details: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class CutoverResult:
    outcome: str
    exit_code: int
    cutover_id: str | None
    journal: str
    steps: tuple[StepSummary, ...]
    write_freeze_seconds: float | None
    write_freeze_open: bool
    reason: str | None = None
    next_steps: tuple[str, ...] = ()
    manual_steps: tuple[str, ...] = ()
    state: tuple[str, ...] = ()  # each system as it is, after a failed rollback
    warnings: tuple[str, ...] = ()
    # After a rollback after go-live: per table, the changes the reverse replication carried
    # from the target to the source ({"schema.table": {"inserts", "updates", "deletes"}}).
    carried_back: Mapping[str, Mapping[str, int]] | None = None
    report_command: str | None = None  # what writes this cutover's report (the evidence)


def carried_back(cutover: CutoverState) -> Mapping[str, Mapping[str, int]] | None:
    """What the way back carried: start_fallback's undo, or the rollout's when the way back
    had not started."""
    for name in ("start_fallback", "rollout"):
        if name in cutover.step_names:
            found = cutover.step(name).undo_details.get("carried_back")
            if isinstance(found, Mapping):
                return found
    return None


def summarize(
    cutover: CutoverState,
    steps: Sequence[Step],
    *,
    outcome: str,
    exit_code: int,
    journal: str,
    write_freeze: tuple[float | None, bool],
    **fields: Any,
) -> CutoverResult:
    return CutoverResult(
        outcome=outcome,
        exit_code=exit_code,
        cutover_id=cutover.cutover_id,
        journal=journal,
        steps=tuple(
            StepSummary(
                s.name,
                step.title,
                s.status,
                s.attempts,
                s.duration_seconds,
                s.error,
                s.undo_error,
                s.details,
            )
            for s, step in zip(cutover.steps, steps, strict=True)
        ),
        write_freeze_seconds=write_freeze[0],
        write_freeze_open=write_freeze[1],
        carried_back=carried_back(cutover),
        report_command=(
            f"migctl cutover report --cutover {cutover.cutover_id}" if cutover.cutover_id else None
        ),
        **fields,
    )
