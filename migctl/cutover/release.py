"""Steps 7 and 8: roll out the image that points at the target, then check that it serves.

The rollout is ``migctl rollout`` itself (``rollout.rollout``): a copy of the
task definition with the new image, the PRIMARY deployment followed to
COMPLETED, the bake under the gate alarms, and its own rollback on failure.
Its undo is ``rollout.undo`` to the revision recorded before the first
attempt. A rerun (after a crash or Ctrl-C) finds the image already deployed:
it follows that deployment to its end and bakes what is left of the bake
(journaled as progress: after Ctrl-C the bake's remaining time, after a
crash mid-bake all of it, after a finished bake nothing).

Post-checks: the gate alarms OK, the service's PRIMARY deployment COMPLETED
with ``runningCount >= desiredCount``, and the ALB's healthy targets at least
the desired count. Which target groups: the service's ``loadBalancers``; when
it declares none, the stack output ``targetGroupArnSuffix``. An empty target
group fails the check when the service declares it (ECS registers its tasks
there); when it only comes from the stack outputs and has no registered
target at all (the sandbox: moto runs no tasks), the ECS running count is the
evidence, and the facts say so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from migctl.alarms import ALARM, check_alarms
from migctl.cutover import fallback, target_writes
from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.infra.outputs import load_cached_outputs
from migctl.rollout.deploy import finish, rollout, undo
from migctl.rollout.deployments import COMPLETED, RolloutStep, describe_service, primary_of
from migctl.rollout.taskdef import container_images

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    options = ctx.rollout_options()
    service = describe_service(ctx.aws.client("ecs"), options.cluster, options.service)
    with ctx.target_conn() as conn:
        counters = target_writes.mark(conn)  # the source is frozen, replication stopped
    return {
        "cluster": options.cluster,
        "service": options.service,
        "previous_task_definition": service["taskDefinition"],
        "target_writes_at_go_live": counters,
        "way_back": dict(fallback.prepare(ctx, _memo)),  # for a rollback before start_fallback
    }


def roll_out(ctx: CutoverContext, memo: StepMemo) -> Facts:
    options = ctx.rollout_options()
    ecs = ctx.aws.client("ecs")
    previous = memo.before["previous_task_definition"]
    service = describe_service(ecs, options.cluster, options.service)
    current = service["taskDefinition"]
    if current != previous and _runs_image(ecs, current, options.container, options.image):
        return _pick_up(ctx, memo, current)
    result = rollout(
        ecs,
        ctx.aws.client("cloudwatch"),
        options,
        on_step=lambda step: _note(ctx, step),
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
        on_step=lambda step: _note(ctx, step),
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


def _note(ctx: CutoverContext, step: RolloutStep) -> None:
    """A rollout event to the journal; the bake's start and end as the step's progress."""
    details: dict[str, Any] = {"rollout_event": step.event}
    if step.event == "bake":  # the deployment completed: the new image serves
        now = dt.datetime.now(dt.UTC).isoformat()
        details["progress"] = {
            "live_at": now,
            "bake_started_at": now,
            "bake_seconds": step.details.get("seconds"),
        }
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
    deployed = bool(memo.details.get("task_definition")) or running != previous
    # The new image may have served (during the bake, or the post-checks) before the way back
    # was started: carry what it wrote back first, as start_fallback's undo would have.
    carried: dict[str, Any] = {}
    if deployed and "start_fallback" not in ctx.undone:
        carried = dict(fallback.carry_back_unstarted(ctx, memo.before.get("way_back", {}), memo))
    written = _written_on_target(ctx, memo, carried="drained" in carried) if deployed else {}
    if running == previous:
        ctx.wait_until(
            f"the service to settle on {previous}",
            lambda: _settled(ecs, options.cluster, options.service),
            timeout=options.timeout,
        )
        facts = {"task_definition": previous, "note": "the service already ran it"}
        return {**facts, **carried, **written}
    result = undo(
        ecs,
        ctx.aws.client("cloudwatch"),
        options,
        to=previous,
        on_step=lambda step: ctx.report(step.message, {"rollout_event": step.event}),
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
    options = ctx.rollout_options()
    ecs = ctx.aws.client("ecs")
    facts: dict[str, Any] = {}

    def probe() -> tuple[bool, str]:
        alarms = _alarms_ok(ctx, wait=True)
        if alarms:
            return False, alarms
        service = describe_service(ecs, options.cluster, options.service)
        settled, why = _settled(ecs, options.cluster, options.service, service)
        if not settled:
            return False, why
        desired = int(service.get("desiredCount", 0))
        facts["running"], facts["desired"] = int(service.get("runningCount", 0)), desired
        healthy, why = _targets_healthy(ctx, service, desired, facts)
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


def _steady(service: dict[str, Any]) -> bool:
    primary = primary_of(service)
    return (
        primary is not None
        and primary.rollout_state in (COMPLETED, None)
        and len(service.get("deployments", [])) == 1
        and int(service.get("runningCount", 0)) >= int(service.get("desiredCount", 0))
    )


def _settled(
    ecs: ECSClient, cluster: str, name: str, service: dict[str, Any] | None = None
) -> tuple[bool, str]:
    service = service or describe_service(ecs, cluster, name)
    if _steady(service):
        return True, "the service is steady"
    primary = primary_of(service)
    state = primary.summary() if primary else "no PRIMARY deployment"
    return False, f"service {name}: {state}, running {service.get('runningCount')}"


def _runs_image(
    ecs: ECSClient, task_definition: str, container: str | None, image: str | None
) -> bool:

    found = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    images = container_images(found)
    if container:
        return images.get(container) == image
    return len(images) == 1 and next(iter(images.values())) == image


def _targets_healthy(
    ctx: CutoverContext, service: dict[str, Any], desired: int, facts: dict[str, Any]
) -> tuple[bool, str]:

    elbv2 = ctx.aws.client("elbv2")
    arns = [
        lb["targetGroupArn"] for lb in service.get("loadBalancers", []) if "targetGroupArn" in lb
    ]
    declared = bool(arns)
    if not arns:
        suffix = load_cached_outputs(ctx.settings).get("targetGroupArnSuffix")
        if isinstance(suffix, str) and suffix.count("/") >= 1:
            name = suffix.split("/")[1]
            groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
            arns = [g["TargetGroupArn"] for g in groups]
    health: dict[str, Any] = {}
    for arn in arns:
        targets = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        healthy = sum(t.get("TargetHealth", {}).get("State") == "healthy" for t in targets)
        short = arn.rsplit(":", 1)[-1]
        health[short] = {"registered": len(targets), "healthy": healthy}
        if not targets and not declared:
            health[short]["note"] = "no registered targets; judged by the ECS running count"
            continue
        if healthy < desired:
            facts["target_health"] = health
            return False, f"{healthy} of {desired} targets healthy in {short}"
    facts["target_health"] = health or "no target group found; judged by the ECS running count"
    return True, "alarms OK, deployment COMPLETED, running >= desired, targets healthy"


def service_state(ctx: CutoverContext) -> str:
    options = ctx.rollout_options()
    service = describe_service(ctx.aws.client("ecs"), options.cluster, options.service)
    deployments = "; ".join(
        f"{d['id']} {d.get('status')} {d.get('rolloutState')} {d.get('taskDefinition')}"
        for d in service.get("deployments", [])
    )
    return f"ECS service {options.service} runs {service['taskDefinition']} ({deployments})"
