"""Step 5, stop replication: stop the DMS task, wait for ``stopped``, record its RecoveryCheckpoint.

Both directions reuse ``dms.control`` (its own polling, not the botocore
waiter). Undo resumes the task from its checkpoint (``resume-processing``),
never ``start-replication``, which would reload the target from scratch.
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


def resume(ctx: CutoverContext, _memo: StepMemo) -> Facts:

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
        timeout=timing.wait_timeout,
        interval=timing.interval,
        on_poll=lambda task: say(f"DMS task {task.identifier}: {task.status}"),
        clock=timing.clock,
        sleep=timing.sleep,
    )
    if not result.ok:
        raise StepFailed(f"resuming the DMS task: {result.reason}")
    return {"outcome": result.outcome, "status": result.task.status}


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
