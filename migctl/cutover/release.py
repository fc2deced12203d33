"""The rollout step and the post-checks: the image that points at the target serves.

With ``[cutover] switch = "standby"`` the rollout step is the listener switch to
the standby that step ``stage`` started (``standby.py``). With ``"rollout"`` it
is ``migctl rollout`` itself (``rollout.rollout``): a copy of the task
definition with the new image, the PRIMARY deployment followed to COMPLETED,
the bake under the gate alarms, and its own rollback on failure. Its undo is
``rollout.undo`` to the revision recorded before the first attempt (after the
standby switch: the listener back first). A rerun (after a crash or Ctrl-C)
finds the image already deployed (or the listener switched): it follows that
deployment to its end and bakes what is left of the bake (journaled as
progress: after Ctrl-C the bake's remaining time, after a crash mid-bake all
of it, after a finished bake nothing).

Post-checks, on the service that serves (the standby until ``converge``): the
gate alarms OK, its PRIMARY deployment COMPLETED with ``runningCount >=
desiredCount``, and its healthy targets at least the desired count
(``serving.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from migctl.alarms import ALARM, check_alarms
from migctl.cutover import fallback, standby, target_writes
from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.cutover.serving import (
    images_of,
    rollout_facts,
    runs_image,
    settled,
    targets_healthy,
)
from migctl.rollout.deploy import finish, rollout, undo
from migctl.rollout.deployments import RolloutStep, describe_service


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    options = ctx.rollout_options()
    ecs = ctx.aws.client("ecs")
    service = describe_service(ecs, options.cluster, options.service)
    with ctx.target_conn() as conn:
        counters = target_writes.mark(conn)  # the source is frozen, replication stopped
    return {
        "cluster": options.cluster,
        "service": options.service,
        "previous_task_definition": service["taskDefinition"],
        "previous_images": images_of(ecs, service["taskDefinition"]),  # for the report
        "target_writes_at_go_live": counters,
        "way_back": dict(fallback.prepare(ctx, _memo)),  # for a rollback before start_fallback
        **_switch(ctx),
    }


def _switch(ctx: CutoverContext) -> Facts:
    if not standby.staged(ctx):
        return {"switch": "rollout"}
    return {"switch": standby.STANDBY, "standby": asdict(standby.layout(ctx))}


def roll_out(ctx: CutoverContext, memo: StepMemo) -> Facts:
    options = ctx.rollout_options()
    if standby.enabled(ctx, memo):
        left = bake_left(options.bake_seconds, memo.progress)
        return standby.switch(ctx, memo, left, lambda step: note(ctx, step, live=False))
    ecs = ctx.aws.client("ecs")
    previous = memo.before["previous_task_definition"]
    service = describe_service(ecs, options.cluster, options.service)
    current = service["taskDefinition"]
    if current != previous and runs_image(ecs, current, options.container, options.image):
        return _pick_up(ctx, memo, current)
    result = rollout(
        ecs,
        ctx.aws.client("cloudwatch"),
        options,
        on_step=lambda step: note(ctx, step),
        clock=ctx.timing.clock,
        sleep=ctx.timing.sleep,
    )
    details: dict[str, Any] = {
        "outcome": result.outcome,
        "task_definition": result.task_definition,
        "previous_task_definition": result.previous_task_definition,
        "deployment_id": result.deployment_id,
    }
    if result.outcome == "completed":
        return details
    raise StepFailed(
        f"the rollout of {options.image} ended {result.outcome}: {result.reason}",
        details={**details, "manual_steps": list(result.manual_steps)},
    )


def bake_left(bake_seconds: float, progress: Mapping[str, Any]) -> float:
    """What is left of the bake after earlier attempts, from their progress notes."""
    if progress.get("baked"):
        return 0.0
    started, stopped = progress.get("bake_started_at"), progress.get("interrupted_at")
    length = float(progress.get("bake_seconds", bake_seconds))
    if not started or not stopped:
        return bake_seconds  # never started, or the process died mid-bake: bake it all
    watched = (
        dt.datetime.fromisoformat(stopped) - dt.datetime.fromisoformat(started)
    ).total_seconds()
    if watched < 0:
        return bake_seconds
    return max(0.0, min(bake_seconds, length - watched))


def _pick_up(ctx: CutoverContext, memo: StepMemo, current: str) -> Facts:
    """An earlier attempt deployed the image: follow it to its end, bake what is left."""
    options = ctx.rollout_options()
    left = bake_left(options.bake_seconds, memo.progress)
    ctx.report(f"{current} was deployed by an earlier attempt; baking the {left:g}s left", {})
    outcome = finish(
        ctx.aws.client("ecs"),
        ctx.aws.client("cloudwatch"),
        options,
        bake_seconds=left,
        on_step=lambda step: note(ctx, step),
        clock=ctx.timing.clock,
        sleep=ctx.timing.sleep,
    )
    if not outcome.ok:
        raise StepFailed(f"the rollout of {options.image}, picked up again: {outcome.reason}")
    _alarms_ok(ctx)
    return {
        "outcome": "completed",
        "task_definition": current,
        "already_deployed": True,
        "baked_seconds": left,
    }


def note(ctx: CutoverContext, step: RolloutStep, *, live: bool = True) -> None:
    """A rollout event to the journal; the bake's start and end as the step's progress. With
    ``live`` the bake's start is when the new image serves (a rollout: the deployment completed);
    the standby switch records that itself."""
    details = rollout_facts(step)
    if step.event == "bake":
        now = dt.datetime.now(dt.UTC).isoformat()
        details["progress"] = {"bake_started_at": now, "bake_seconds": step.details.get("seconds")}
        if live:
            details["progress"]["live_at"] = now
    elif step.event == "completed":
        details["progress"] = {"baked": True}
    ctx.report(step.message, details)


def roll_back(ctx: CutoverContext, memo: StepMemo) -> Facts:

    previous = memo.before.get("previous_task_definition")
    if not previous:
        return {"note": "nothing was deployed"}
    options = ctx.rollout_options()
    ecs = ctx.aws.client("ecs")
    running = describe_service(ecs, options.cluster, options.service)["taskDefinition"]
    lay = standby.Layout.of(memo.before["standby"]) if standby.enabled(ctx, memo) else None
    deployed = (
        bool(memo.details.get("task_definition"))
        or running != previous
        or (lay is not None and standby.serves(ctx, lay))
    )
    # The new image may have served (during the bake, or the post-checks) before the way back
    # was started: carry what it wrote back first, as start_fallback's undo would have.
    carried: dict[str, Any] = {}
    if deployed and "start_fallback" not in ctx.undone:
        carried = dict(fallback.carry_back_unstarted(ctx, memo.before.get("way_back", {}), memo))
    written = _written_on_target(ctx, memo, carried="drained" in carried) if deployed else {}
    if lay is not None:  # the service's tasks still run the old image: they serve at once
        carried.update(standby.switch_back(ctx, lay))
    if running == previous:
        ctx.wait_until(
            f"the service to settle on {previous}",
            lambda: settled(ecs, options.cluster, options.service),
            timeout=options.timeout,
        )
        facts = {"task_definition": previous, "note": "the service already ran it"}
        return {**facts, **carried, **written}
    result = undo(
        ecs,
        ctx.aws.client("cloudwatch"),
        options,
        to=previous,
        on_step=lambda step: ctx.report(step.message, rollout_facts(step)),
        clock=ctx.timing.clock,
        sleep=ctx.timing.sleep,
    )
    if result.outcome != "completed":
        raise StepFailed(
            f"putting the service back on {previous} ended {result.outcome}: {result.reason}",
            details={"manual_steps": list(result.manual_steps)},
        )
    return {"task_definition": previous, **carried, **written}


def _written_on_target(ctx: CutoverContext, memo: StepMemo, *, carried: bool) -> Facts:
    """What the new image wrote on the target since go-live, per table.

    With the way back (``fallback.py``) those rows were carried to the source before ECS comes
    back: a count, no warning. Without it they are on the target only: the warning says so."""
    carried = carried or "drained" in ctx.undone.get("start_fallback", {})
    lost = "not on the source (no reverse replication): reconcile them before the source "
    lost += "takes traffic again"
    before = memo.before.get("target_writes_at_go_live")
    if before is None:  # a cutover an earlier version started
        if carried:
            return {}
        return {
            "written_unknown": True,
            "warning": f"the new image served from the target: its writes there are {lost}",
        }
    try:
        with ctx.target_conn() as conn:
            written = target_writes.since(conn, before)
    except Exception as exc:  # the undo is done: say what is unknown, do not fail it
        if carried:
            return {"note": f"what the new image wrote on the target could not be counted ({exc})"}
        return {
            "written_unknown": True,
            "warning": f"the new image served from the target; what it wrote there could "
            f"not be counted ({exc}); its writes are {lost}",
        }
    facts: dict[str, Any] = {
        "written_on_target_since_go_live": written.facts(),
        "written_rows": written.rows,
        "written_unknown": bool(written.unknown),
    }
    if carried:
        facts["note"] = "the reverse replication carried them to the source"
    elif written.rows or written.unknown:
        facts["warning"] = (
            f"{written.rows} row(s) were written on the target since go-live and are {lost}: "
            f"{written.describe()}"
        )
    return facts


def manual_roll_back(ctx: CutoverContext, memo: StepMemo) -> str:
    previous = memo.before.get("previous_task_definition", "<previous revision>")
    cluster = memo.before.get("cluster", "<cluster>")
    service = memo.before.get("service", "<service>")
    return (
        f"Put the service back on {previous}: migctl rollout undo --cluster {cluster} "
        f"--service {service} --to {previous} --yes (or aws ecs update-service --cluster "
        f"{cluster} --service {service} --task-definition {previous}), and follow it with "
        "migctl rollout status until its deployment is COMPLETED. Until then, keep the source "
        "frozen and replication stopped: the new image may be writing to the target"
    )


def post_checks(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    options = replace(ctx.rollout_options(), service=standby.serving_service(ctx))
    ecs = ctx.aws.client("ecs")
    facts: dict[str, Any] = {"service": options.service}

    def probe() -> tuple[bool, str]:
        alarms = _alarms_ok(ctx, wait=True)
        if alarms:
            return False, alarms
        service = describe_service(ecs, options.cluster, options.service)
        steady, why = settled(ecs, options.cluster, options.service, service)
        if not steady:
            return False, why
        desired = int(service.get("desiredCount", 0))
        facts["running"], facts["desired"] = int(service.get("runningCount", 0)), desired
        healthy, why = targets_healthy(ctx, service, desired, facts)
        return healthy, why

    facts["verdict"] = ctx.wait_until("the post-checks", probe)
    return facts


def _alarms_ok(ctx: CutoverContext, *, wait: bool = False) -> str | None:
    """None when every gate alarm is OK; ALARM fails at once; else why it is not proven OK."""
    settings = ctx.settings
    report = check_alarms(
        ctx.aws.client("cloudwatch"),
        ctx.gate_alarms(),
        allow_insufficient_data=settings.alarms.allow_insufficient_data,
    )
    firing = [a.name for a in report.alarms if a.state == ALARM]
    if firing:
        raise StepFailed(f"gate alarm(s) in ALARM: {', '.join(firing)}")
    if report.ok:
        return None
    why = "gate alarms not proven OK: " + ", ".join(f"{a.name} {a.state}" for a in report.not_ok)
    if not wait:
        raise StepFailed(why)
    return why


def service_state(ctx: CutoverContext) -> str:
    options = ctx.rollout_options()
    service = describe_service(ctx.aws.client("ecs"), options.cluster, options.service)
    deployments = "; ".join(
        f"{d['id']} {d.get('status')} {d.get('rolloutState')} {d.get('taskDefinition')}"
        for d in service.get("deployments", [])
    )
    return f"ECS service {options.service} runs {service['taskDefinition']} ({deployments})"
