"""Step 5, stop replication: stop the DMS task, wait for ``stopped``, record its RecoveryCheckpoint.

Both directions reuse ``dms.control`` (its own polling, not the botocore
waiter). Undo resumes the task from its checkpoint (``resume-processing``),
never ``start-replication``, which would reload the target from scratch.
After a rollback that carried writes back (``fallback.py``) it resumes from
the position after them (``CdcStartPosition``); when the new image's writes
are on the target only (fallback = none) it leaves the task stopped and says
why: resumed, it would collide with them.
"""

from __future__ import annotations

from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.dms.control import start_task, stop_task
from migctl.dms.task import CDC, STOPPED, describe_task


def gate(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    task = describe_task(ctx.aws.client("dms"), ctx.task_ref().arn)
    if task.phase not in (CDC, STOPPED) and task.status != "stopping":
        raise StepFailed(
            f"DMS task {task.identifier} is {task.status} (phase {task.phase}): "
            "not replicating, not stopped"
        )
    return {"status_before": task.status}


def stop(ctx: CutoverContext, _memo: StepMemo) -> Facts:

    timing = ctx.timing
    say = ctx.reporter()
    result = stop_task(
        ctx.aws.client("dms"),
        ctx.task_ref(),
        confirm=lambda _plan: True,
        timeout=timing.wait_timeout,
        interval=timing.interval,
        on_poll=lambda task: say(f"DMS task {task.identifier}: {task.status}"),
        clock=timing.clock,
        sleep=timing.sleep,
    )
    if not result.ok:
        raise StepFailed(
            f"stopping the DMS task: {result.reason}", details={"outcome": result.outcome}
        )
    return {
        "outcome": result.outcome,
        "status": result.task.status,
        "stop_reason": result.task.stop_reason,
        "recovery_checkpoint": result.task.recovery_checkpoint,
    }


def check(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    task = describe_task(ctx.aws.client("dms"), ctx.task_ref().arn)
    if task.status != "stopped":
        raise StepFailed(f"DMS task {task.identifier} is {task.status}, not stopped")
    return {}


LEFT_STOPPED = "left-stopped"


def resume_point(ctx: CutoverContext) -> tuple[str | None, str | None]:
    """Where forward replication may resume without a conflict: (CdcStartPosition, None) or
    (None, None) for its checkpoint; (None, why) when it must stay stopped.

    Read from what the rollback's later undos found (``ctx.undone``). Rows the reverse
    replication carried to the source are in the source's WAL after the checkpoint and
    already on the target: the task resumes from the position where the reverse task
    stopped. Rows the new image wrote on the target without a way back (fallback = none)
    took sequence values the source will hand out again: it stays stopped."""
    carried = ctx.undone.get("start_fallback", {})
    if "drained" not in carried:  # or the rollout's undo carried them, the way back unstarted
        carried = ctx.undone.get("rollout", {})
    if "drained" in carried:
        position = carried.get("forward_from")
        if position:
            return str(position), None
        return None, "the reverse replication carried rows back and recorded no position after them"
    written = ctx.undone.get("rollout", {})
    if written.get("written_rows") or written.get("written_unknown"):
        return None, (
            "the new image wrote on the target since go-live and those rows are not on the "
            "source: resumed, the task would collide with them"
        )
    return None, None


def resume(ctx: CutoverContext, _memo: StepMemo) -> Facts:

    position, why = resume_point(ctx)
    if why is not None:
        name = ctx.task_ref().identifier
        return {
            "outcome": LEFT_STOPPED,
            "warning": f"forward replication left stopped: {why}. The target is behind the "
            f"source from now on; before another cutover, reload it: migctl dms start --type "
            f"reload --task {name} --yes",
        }
    timing = ctx.timing
    say = ctx.reporter()
    dms, ref = ctx.aws.client("dms"), ctx.task_ref()
    if describe_task(dms, ref.arn).status == "stopping":
        ctx.wait_until(
            "the DMS task to stop before it resumes",
            lambda: (describe_task(dms, ref.arn).status != "stopping", "stopping"),
        )
    task = describe_task(dms, ref.arn)
    if task.status in ("running", "starting"):
        return {"outcome": "already-running"}
    result = start_task(
        dms,
        ref,
        kind="resume",
        confirm=lambda _plan: True,
        cdc_start_position=position,
        timeout=timing.wait_timeout,
        interval=timing.interval,
        on_poll=lambda task: say(f"DMS task {task.identifier}: {task.status}"),
        clock=timing.clock,
        sleep=timing.sleep,
    )
    if not result.ok:
        raise StepFailed(f"resuming the DMS task: {result.reason}")
    where = {"from_position": position} if position else {}
    return {"outcome": result.outcome, "status": result.task.status, **where}


def manual_resume(ctx: CutoverContext, _memo: StepMemo) -> str:
    try:
        name = ctx.task_ref().identifier
    except Exception:
        name = "<task>"
    return (
        f"Resume replication from its checkpoint: migctl dms start --type resume --task {name} "
        "--yes (never --type start: it would reload the target), then migctl dms watch "
        "--until cdc-ready"
    )


def task_state(ctx: CutoverContext) -> str:
    task = describe_task(ctx.aws.client("dms"), ctx.task_ref().arn)
    checkpoint = f", checkpoint {task.recovery_checkpoint}" if task.recovery_checkpoint else ""
    return f"DMS task {task.identifier}: {task.status} (phase {task.phase}){checkpoint}"
