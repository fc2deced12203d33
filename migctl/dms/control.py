"""Start and stop a DMS task, and wait for it by polling (not the botocore waiter).

``replication_task_running`` treats ``stopped`` as a failure, so it fails on
full-load-only tasks that finish before it looks; our own loop knows a
full-load-only task that stopped with FULL_LOAD_ONLY_FINISHED has done its job.
Both actions check the task's state first and refuse what would do damage:
``start-replication`` on a task that has run before would reload the target
from scratch; ``resume``/``reload`` on a task that never ran is invalid.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from migctl.dms.task import FAILED, TaskRef, TaskSnapshot, describe_task
from migctl.errors import UsageError
from migctl.poll import Clock, Done, Pending, Round, poll

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

StartType = Literal["start-replication", "resume-processing", "reload-target"]
START_TYPES: dict[str, StartType] = {
    "start": "start-replication",
    "resume": "resume-processing",
    "reload": "reload-target",
}
Outcome = Literal[
    "running", "finished", "stopped", "already-stopped", "failed", "timed-out", "declined"
]
# A stopped task whose stop reason says it finished what it was asked to do.
FINISHED_STOP_REASONS = (
    "FULL_LOAD_ONLY_FINISHED",
    "STOPPED_AFTER_FULL_LOAD",
    "STOPPED_AFTER_CACHED_EVENTS",
)
_STARTABLE = frozenset({"ready", "stopped", "failed"})
_STOPPABLE = frozenset({"running", "starting"})


@dataclass(frozen=True)
class ControlPlan:
    """What is about to happen, shown to the operator before asking."""

    action: Literal["start", "stop"]
    task: TaskSnapshot
    start_type: StartType | None = None  # the StartReplicationTaskType sent
    cdc_stop_position: str | None = None

    def describe(self) -> str:
        if self.action == "stop":
            task = self.task
            return f"stop DMS task {task.identifier} (now {task.status}, phase {task.phase})"
        stop = f" until {self.cdc_stop_position}" if self.cdc_stop_position else ""
        return f"{self.start_type} DMS task {self.task.identifier} (now {self.task.status}){stop}"


@dataclass(frozen=True, kw_only=True)
class ControlResult:
    """Outcome: running | finished | stopped | already-stopped | failed | timed-out | declined."""

    action: Literal["start", "stop"]
    outcome: Outcome
    ok: bool
    reason: str
    task: TaskSnapshot
    previous_status: str
    start_type: StartType | None
    polls: int
    elapsed_seconds: float


_TIME_POSITION = re.compile(r"(server_time|commit_time):(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})")
_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def check_position(value: str, flag: str = "--cdc-stop-position") -> str:
    """A CDC position in a form AWS accepts: ``server_time:`` or ``commit_time:`` and an ISO
    time to the second, a DMS checkpoint (``checkpoint:V1#...``), or a PostgreSQL LSN
    (``0/16B3748``); else UsageError (exit 2)."""
    value = value.strip()
    timed = _TIME_POSITION.fullmatch(value)
    if timed is not None:
        try:
            dt.datetime.fromisoformat(timed.group(2))
        except ValueError:
            raise UsageError(f"{flag} {value!r}: {timed.group(2)} is no date and time") from None
        return value
    if value.startswith("checkpoint:V1#") or _LSN.fullmatch(value):
        return value
    raise UsageError(
        f"{flag} {value!r} is not a CDC position",
        hint="server_time:2024-01-01T12:00:00, commit_time:2024-01-01T12:00:00, a DMS "
        "checkpoint (checkpoint:V1#...) or, for a PostgreSQL source, an LSN (0/16B3748)",
    )


def plan_start(
    task: TaskSnapshot,
    kind: str,
    cdc_stop_position: str | None = None,
    *,
    from_position: bool = False,
) -> ControlPlan:
    """Check the task may be started this way; else UsageError (exit 2) naming what to do."""
    if kind not in START_TYPES:
        raise UsageError(f"--type must be one of {', '.join(START_TYPES)}, not {kind!r}")
    if cdc_stop_position is not None:
        cdc_stop_position = check_position(cdc_stop_position)
    if task.status in ("running", "starting"):
        raise UsageError(f"DMS task {task.identifier} is already {task.status}")
    if task.status not in _STARTABLE:
        raise UsageError(
            f"DMS task {task.identifier} is {task.status}; wait until it is ready or stopped"
        )
    cdc_from_position = from_position and task.migration_type == "cdc"
    if kind == "start" and task.has_run and not cdc_from_position:
        raise UsageError(
            f"DMS task {task.identifier} has run before (status {task.status}); "
            "start-replication would reload the target from scratch",
            hint="use --type resume to continue from its checkpoint, "
            "or --type reload to reload on purpose",
        )
    if kind != "start" and not task.has_run:
        raise UsageError(
            f"DMS task {task.identifier} has never run; "
            f"{START_TYPES[kind]} is not valid for a first run",
            hint="use --type start",
        )
    return ControlPlan("start", task, START_TYPES[kind], cdc_stop_position)


def start_task(
    dms: DatabaseMigrationServiceClient,
    ref: TaskRef,
    *,
    kind: str,
    confirm: Callable[[ControlPlan], bool],
    timeout: float,
    interval: float,
    cdc_stop_position: str | None = None,
    cdc_start_position: str | None = None,
    on_poll: Callable[[TaskSnapshot], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ControlResult:
    """Check, ask, start, then poll until ``running`` (or a full-load-only task finished).

    ``cdc_start_position``: where a CDC-only task starts reading (a start from it never
    reloads anything, so it is allowed for a task that ran before)."""
    before = describe_task(dms, ref.arn)
    plan = plan_start(before, kind, cdc_stop_position, from_position=bool(cdc_start_position))
    if not confirm(plan):
        return _declined(plan)
    start_type = START_TYPES[kind]  # plan_start checked it
    positions = {
        "CdcStopPosition": cdc_stop_position,
        "CdcStartPosition": cdc_start_position,
    }
    dms.start_replication_task(
        ReplicationTaskArn=ref.arn,
        StartReplicationTaskType=start_type,
        **{k: v for k, v in positions.items() if v},
    )

    seen_start = False

    def settled(task: TaskSnapshot) -> tuple[Outcome, bool, str] | None:
        nonlocal seen_start
        # Until the task shows this start, an old stopped/failed status is stale.
        seen_start = (
            seen_start
            or task.status in ("starting", "running")
            or task.started_at != before.started_at
        )
        if task.status == "running":
            return "running", True, f"task is running ({task.phase})"
        if not seen_start:
            return None
        if task.phase == FAILED:
            return "failed", False, f"task failed: {task.failure}"
        if task.status == "stopped":
            if any(r in (task.stop_reason or "") for r in FINISHED_STOP_REASONS):
                return "finished", True, f"task ran and stopped as configured: {task.stop_reason}"
            return "failed", False, f"task stopped: {task.failure}"
        return None

    return _wait(dms, ref, plan, settled, timeout, interval, on_poll, clock, sleep, "running")


def stop_task(
    dms: DatabaseMigrationServiceClient,
    ref: TaskRef,
    *,
    confirm: Callable[[ControlPlan], bool],
    timeout: float,
    interval: float,
    on_poll: Callable[[TaskSnapshot], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ControlResult:
    """Ask, stop, then poll until ``stopped``; the result's task holds the RecoveryCheckpoint."""
    before = describe_task(dms, ref.arn)
    plan = ControlPlan("stop", before)
    if before.status == "stopped":
        return ControlResult(
            action="stop",
            outcome="already-stopped",
            ok=True,
            reason="task was already stopped"
            + (f", on an error: {before.failure}" if before.stopped_on_error else ""),
            task=before,
            previous_status="stopped",
            start_type=None,
            polls=1,
            elapsed_seconds=0.0,
        )
    if before.phase == FAILED:
        return ControlResult(
            action="stop",
            outcome="failed",
            ok=False,
            reason=f"task is {before.status}: {before.failure}",
            task=before,
            previous_status=before.status,
            start_type=None,
            polls=1,
            elapsed_seconds=0.0,
        )
    if before.status != "stopping":
        if before.status not in _STOPPABLE:
            raise UsageError(
                f"DMS task {before.identifier} is {before.status}; "
                "only a running task can be stopped"
            )
        if not confirm(plan):
            return _declined(plan)
        dms.stop_replication_task(ReplicationTaskArn=ref.arn)

    def settled(task: TaskSnapshot) -> tuple[Outcome, bool, str] | None:
        if task.status == "stopped":
            return "stopped", True, "task stopped"
        if task.phase == FAILED:
            return "failed", False, f"task failed while stopping: {task.failure}"
        return None

    return _wait(dms, ref, plan, settled, timeout, interval, on_poll, clock, sleep, "stopped")


def _declined(plan: ControlPlan) -> ControlResult:
    return ControlResult(
        action=plan.action,
        outcome="declined",
        ok=False,
        reason="not confirmed; nothing was done",
        task=plan.task,
        previous_status=plan.task.status,
        start_type=plan.start_type,
        polls=1,
        elapsed_seconds=0.0,
    )


def _wait(
    dms: DatabaseMigrationServiceClient,
    ref: TaskRef,
    plan: ControlPlan,
    settled: Callable[[TaskSnapshot], tuple[Outcome, bool, str] | None],
    timeout: float,
    interval: float,
    on_poll: Callable[[TaskSnapshot], None] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    goal: str,
) -> ControlResult:
    """Poll the task until ``settled`` says so or time runs out; throttling slows the polls."""
    Verdict = tuple[TaskSnapshot, tuple[Outcome, bool, str] | None]

    def probe(_: Round) -> Done[Verdict] | Pending[Verdict]:
        task = describe_task(dms, ref.arn)
        if on_poll:
            on_poll(task)
        verdict = settled(task)
        if verdict is not None:
            return Done((task, verdict))
        return Pending((task, None), reason=f"task is {task.status} ({task.phase})")

    result = poll(
        probe,
        timeout=timeout,
        interval=interval,
        clock=Clock(clock, sleep),
        what=f"DMS task {ref.identifier}: {goal}",
    )
    task = result.value[0] if result.value else plan.task
    outcome: Outcome
    if result.done and result.value is not None and result.value[1] is not None:
        outcome, ok, reason = result.value[1]
    else:
        outcome, ok = "timed-out", False
        reason = f"timed out after {timeout:g}s waiting for {goal}; task is {task.status}"
    return ControlResult(
        action=plan.action,
        outcome=outcome,
        ok=ok,
        reason=reason,
        task=task,
        previous_status=plan.task.status,
        start_type=plan.start_type,
        polls=result.polls,
        elapsed_seconds=result.elapsed,
    )
