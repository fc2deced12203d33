"""No task start inside the window: the new revision waits, started and healthy, on a standby.

With ``[cutover] switch = "standby"`` (the default) the application's service
has a twin, the standby service (``[ecs] standby_service``, stack output
``ecsStandbyServiceName``): same cluster, its own target group, desired count 0
outside a cutover. The load balancer's listener (``[ecs] listener_arn``, stack
output ``albListenerArn``) forwards to the service's target group.

- **stage** (before the baseline and the freeze): the target is fenced against every role but
  the one DMS applies as (``[cutover] dms_target_role``, default the DMS target
  endpoint's user); a marker written on the source must then reach the target
  with no table of the DMS task in error (a change the fence refused would put
  its table in error; the validation under the freeze is the proof that every
  change arrived). Then the new revision (the service's own, with the new
  image: what ``migctl rollout`` would register) starts on the standby at the
  service's desired count, and its deployment is followed to COMPLETED with
  its targets healthy. The new image runs but takes no traffic, and the fence
  refuses anything it would write on the target before the switch.
- **the switch** (the rollout step, the point of no return): the standby must
  still run the image, steady and healthy; the target's fence is lifted (its
  functions become no-ops: no table lock, so no reader is waited for), and
  the listener forwards to the standby's target group. The new image serves
  from that moment (``live_at``), then the gate alarms are baked.
- **converge** (the last step, the way back open): the service itself moves to
  the revision the standby runs (its old tasks take no traffic), the listener
  switches back to the service's target group once it is healthy, the
  standby goes back to 0, and the lifted fence's triggers are dropped. After a cutover the service is the application, as
  before it.

Undo: before the switch, the standby goes back to 0 and, once it runs no task,
the target's fence comes down. After it, the rollout's undo points the listener
back to the service's target group, whose tasks still run the old image, so the
old application serves again without waiting for a task to start.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from migctl.cutover import marker
from migctl.cutover.context import CutoverContext
from migctl.cutover.fallback import fence_target, lift_target_fence, unfence_target
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.cutover.serving import rollout_facts, runs_image, settled, targets_healthy
from migctl.dms.task import describe_task, fetch_table_statistics, find_problems
from migctl.errors import ConfigError
from migctl.infra.outputs import resolve
from migctl.rollout.deploy import OnStep, finish
from migctl.rollout.deployments import FollowResult, describe_service
from migctl.rollout.plan import plan_rollout

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client

STANDBY = "standby"


@dataclass(frozen=True)
class Layout:
    """The two services, their target groups and the listener between them."""

    cluster: str
    service: str
    standby: str
    listener: str
    service_group: str
    standby_group: str

    @classmethod
    def of(cls, facts: Facts) -> Layout:
        return cls(**{k: str(facts[k]) for k in cls.__dataclass_fields__})


def enabled(ctx: CutoverContext, memo: StepMemo | None = None) -> bool:
    """As recorded before the step's first attempt (a resume keeps it), else from the config."""
    recorded = memo.before.get("switch") if memo is not None else None
    return (recorded or ctx.settings.cutover.switch) == STANDBY


def layout(ctx: CutoverContext) -> Layout:
    settings = ctx.settings
    options = ctx.rollout_options()
    standby = resolve(
        settings,
        settings.ecs.standby_service,
        "ecsStandbyServiceName",
        what="standby ECS service ([cutover] switch = 'standby')",
        flag="[ecs] standby_service",
    )
    listener = resolve(
        settings,
        settings.ecs.listener_arn,
        "albListenerArn",
        what="load balancer listener ([cutover] switch = 'standby')",
        flag="[ecs] listener_arn",
    )
    ecs = ctx.aws.client("ecs")
    return Layout(
        cluster=options.cluster,
        service=options.service,
        standby=standby,
        listener=listener,
        service_group=_group(describe_service(ecs, options.cluster, options.service)),
        standby_group=_group(describe_service(ecs, options.cluster, standby)),
    )


def _group(service: dict[str, Any]) -> str:
    groups = {
        lb["targetGroupArn"] for lb in service.get("loadBalancers", []) if lb.get("targetGroupArn")
    }
    if len(groups) != 1:
        raise ConfigError(
            f"ECS service {service.get('serviceName')} declares {len(groups)} target groups: the "
            "standby switch needs exactly one per service",
            hint="create the services with infra_pulumi (migctl up), or set [cutover] switch = "
            "'rollout'",
        )
    return str(groups.pop())


def forwards_to(elbv2: ElasticLoadBalancingv2Client, listener: str) -> str | None:
    """The one target group the listener's default action forwards to (None: anything else,
    such as a weighted split between two groups)."""
    found = elbv2.describe_listeners(ListenerArns=[listener])["Listeners"]
    actions = found[0].get("DefaultActions", []) if found else []
    groups: set[str] = set()
    for action in actions:
        if action.get("Type") != "forward":
            return None
        weighted = action.get("ForwardConfig", {}).get("TargetGroups", [])
        groups.update(g["TargetGroupArn"] for g in weighted if g.get("Weight", 1) > 0)
        if action.get("TargetGroupArn"):
            groups.add(action["TargetGroupArn"])
    return groups.pop() if len(groups) == 1 else None


def point(ctx: CutoverContext, lay: Layout, group: str) -> bool:
    """Point the listener at ``group``; False when it already forwarded there."""
    elbv2 = ctx.aws.client("elbv2")
    if forwards_to(elbv2, lay.listener) == group:
        return False
    elbv2.modify_listener(
        ListenerArn=lay.listener, DefaultActions=[{"Type": "forward", "TargetGroupArn": group}]
    )
    return True


def dms_role(ctx: CutoverContext) -> str:
    """The role DMS applies changes on the target as: the config, else its target endpoint's."""
    configured = ctx.settings.cutover.dms_target_role
    if configured:
        return configured
    dms = ctx.aws.client("dms")
    task = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [ctx.task_ref().arn]}]
    )["ReplicationTasks"][0]
    endpoint = dms.describe_endpoints(
        Filters=[{"Name": "endpoint-arn", "Values": [task["TargetEndpointArn"]]}]
    )["Endpoints"][0]
    user = endpoint.get("Username") or endpoint.get("PostgreSQLSettings", {}).get("Username")
    if not user:
        raise ConfigError(
            f"the DMS target endpoint {endpoint.get('EndpointIdentifier')} names no user: the "
            "standby switch fences the target against every role but DMS's",
            hint="set [cutover] dms_target_role",
        )
    return str(user)


# --- stage ----------------------------------------------------------------------


def staged(ctx: CutoverContext) -> bool:
    """Whether this cutover's new image waits on the standby: as the stage step found it once
    done (a config changed since does not change it), else as the config says."""
    stage_facts = ctx.done.get("stage")
    if stage_facts is not None:
        return bool(stage_facts.get("task_definition"))
    return ctx.settings.cutover.switch == STANDBY


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    if not staged(ctx):
        return {"switch": "rollout"}
    lay = layout(ctx)
    return {"switch": STANDBY, **asdict(lay), "dms_role": dms_role(ctx)}


def gate(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {"note": "switch = rollout: the new image starts inside the window"}
    lay = Layout.of(memo.before)
    forwarding = forwards_to(ctx.aws.client("elbv2"), lay.listener)
    if forwarding != lay.service_group:
        raise StepFailed(
            f"the listener forwards to {forwarding or 'no single target group'}, not to the "
            f"service {lay.service}'s target group {lay.service_group}; nothing was changed",
            hint="point it back (aws elbv2 modify-listener) or finish the cutover that moved it",
        )
    return {"listener_forwards_to": forwarding}


def stage(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {}
    lay, role = Layout.of(memo.before), str(memo.before["dms_role"])
    marker.ensure_table(ctx, memo)  # before the target's DDL guard goes up
    fenced = fence_target(ctx, open_to=(role,))
    hint = (
        f"the target's fence lets {role} through: is that the role DMS applies as? (set "
        "[cutover] dms_target_role)"
    )
    through = marker.carry(
        ctx,
        ctx.source_conn,
        ctx.target_conn,
        ("source", "target"),
        hint=hint,
        failed=lambda: _replication_problem(ctx),
    )
    problem = _replication_problem(ctx)  # a write the fence refused puts its table in error
    if problem:
        raise StepFailed(f"replication under the target's fence: {problem}", hint=hint)
    task_definition = _start_on_standby(ctx, lay)
    return {
        "target_fenced": fenced,
        "open_to": role,
        "replication_through_fence": through,
        "task_definition": task_definition,
    }


def _replication_problem(ctx: CutoverContext) -> str | None:
    dms, arn = ctx.aws.client("dms"), ctx.task_ref().arn
    problems = find_problems(describe_task(dms, arn), fetch_table_statistics(dms, arn))
    return "; ".join(problems) or None


def _start_on_standby(ctx: CutoverContext, lay: Layout) -> str:
    """Register the new revision (a copy of the service's with the image) and run it on the
    standby at the service's desired count; a rerun that finds it there reuses it."""
    options = ctx.rollout_options()
    ecs = ctx.aws.client("ecs")
    service = describe_service(ecs, lay.cluster, lay.service)
    desired = int(service.get("desiredCount", 0))
    standby = describe_service(ecs, lay.cluster, lay.standby)
    current = str(standby["taskDefinition"])
    if runs_image(ecs, current, options.container, options.image) and desired == int(
        standby.get("desiredCount", 0)
    ):
        task_definition = current
        ctx.report(f"the standby already runs {options.image} ({current})", {})
    else:
        _plan, copy = plan_rollout(ecs, service, options)
        registered = ecs.register_task_definition(**copy.register_kwargs())["taskDefinition"]
        task_definition = str(registered["taskDefinitionArn"])
        ecs.update_service(
            cluster=lay.cluster,
            service=lay.standby,
            taskDefinition=task_definition,
            desiredCount=desired,
            forceNewDeployment=True,
        )
        ctx.report(f"{lay.standby}: starting {desired} task(s) of {task_definition}", {})
    outcome = _follow(ctx, lay.standby)
    if not outcome.ok:
        raise StepFailed(
            f"{options.image} did not start on the standby {lay.standby}: {outcome.reason}"
        )
    return task_definition


def _follow(
    ctx: CutoverContext, service: str, *, bake_seconds: float = 0, on_step: OnStep | None = None
) -> FollowResult:
    """Follow ``service``'s PRIMARY deployment to its end, then bake ``bake_seconds`` on the
    gate alarms (none: no gate)."""
    options = replace(ctx.rollout_options(), service=service)
    return finish(
        ctx.aws.client("ecs"),
        ctx.aws.client("cloudwatch"),
        options if bake_seconds else replace(options, gate=None),
        bake_seconds=bake_seconds,
        on_step=on_step or (lambda step: ctx.report(step.message, rollout_facts(step))),
        clock=ctx.timing.clock,
        sleep=ctx.timing.sleep,
    )


def check(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {}
    lay = Layout.of(memo.before)
    ready, why = ready_to_serve(ctx, lay, str(memo.details["task_definition"]))
    if not ready:
        raise StepFailed(f"the standby {lay.standby} is not ready: {why}")
    return {"standby": why}


def ready_to_serve(ctx: CutoverContext, lay: Layout, task_definition: str) -> tuple[bool, str]:
    """The standby runs ``task_definition``, steady, every task a healthy target."""
    ecs = ctx.aws.client("ecs")
    standby = describe_service(ecs, lay.cluster, lay.standby)
    if standby["taskDefinition"] != task_definition:
        return False, f"it runs {standby['taskDefinition']}, not {task_definition}"
    steady, why = settled(ecs, lay.cluster, lay.standby, standby)
    desired = int(standby.get("desiredCount", 0))
    if not steady or desired < 1:
        return False, why if not steady else "its desired count is 0"
    healthy, why = targets_healthy(ctx, standby, desired, {})
    return healthy, why


def unstage(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """The standby back to 0 and, once no task of it runs, the target's fence down."""
    if not enabled(ctx, memo):
        return {"note": "switch = rollout: nothing was staged"}
    lay = Layout.of(memo.before)
    idle = idle_standby(ctx, lay)
    removed = unfence_target(ctx)
    return {"standby": idle, "target_fence_removed": removed}


def manual_unstage(_ctx: CutoverContext, memo: StepMemo) -> str:
    lay = memo.before
    return (
        f"Scale the standby service to 0 (aws ecs update-service --cluster {lay.get('cluster')} "
        f"--service {lay.get('standby')} --desired-count 0), wait until it runs no task, then "
        "drop the target's fence (the migctl_fence_*_target triggers and functions, see "
        "docs/runbook.md)"
    )


def idle_standby(ctx: CutoverContext, lay: Layout) -> str:
    """Desired count 0 on the standby, waited for until it runs no task."""
    ecs = ctx.aws.client("ecs")
    ecs.update_service(cluster=lay.cluster, service=lay.standby, desiredCount=0)

    def probe() -> tuple[bool, str]:
        running = int(describe_service(ecs, lay.cluster, lay.standby).get("runningCount", 0))
        if running:
            return False, f"{running} task(s) still running"
        stopping = _not_stopped(ecs, lay.cluster, lay.standby)
        return not stopping, f"{stopping} task(s) still stopping"

    return ctx.wait_until(f"the standby {lay.standby} to run no task", probe)


def _not_stopped(ecs: ECSClient, cluster: str, service: str) -> int:
    """The service's tasks not STOPPED yet, those on their way out included: a task that is
    shutting down may still write (a scheduled job), so the target's fence waits for it."""
    arns: list[str] = []
    for desired in ("RUNNING", "STOPPED"):
        pages = ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, serviceName=service, desiredStatus=desired
        )
        arns.extend(arn for page in pages for arn in page.get("taskArns", []))
    alive = 0
    for start in range(0, len(arns), 100):
        found = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"]
        alive += sum(t.get("lastStatus") != "STOPPED" for t in found)
    return alive


# --- the switch (the rollout step with switch = standby) ----------------------------


def switch(ctx: CutoverContext, memo: StepMemo, bake_seconds: float, on_step: OnStep) -> Facts:
    """Open the target, point the listener at the standby, bake (``on_step`` journals its
    progress); a rerun that finds the listener switched already bakes what is left."""
    lay = Layout.of(memo.before["standby"])
    task_definition = str(ctx.done["stage"]["task_definition"])
    switched = forwards_to(ctx.aws.client("elbv2"), lay.listener) == lay.standby_group
    if not switched:
        ready, why = ready_to_serve(ctx, lay, task_definition)
        if not ready:
            raise StepFailed(f"the standby {lay.standby} is not ready to serve: {why}")
        lift_target_fence(ctx)  # no table lock: the standby's readers are not waited for
        point(ctx, lay, lay.standby_group)
        now = dt.datetime.now(dt.UTC).isoformat()
        ctx.report(
            f"the listener forwards to {lay.standby}: {ctx.image} serves from the target",
            {"progress": {"live_at": now, "switched_at": now}},
        )
    outcome = _follow(ctx, lay.standby, bake_seconds=bake_seconds, on_step=on_step)
    if not outcome.ok:
        raise StepFailed(f"{ctx.image} on the standby {lay.standby}: {outcome.reason}")
    ctx.report("baked", {"progress": {"baked": True}})
    return {
        "outcome": "completed",
        "switched": True,
        "already_switched": switched,
        "service": lay.standby,
        "task_definition": task_definition,
        "baked_seconds": bake_seconds,
    }


def serves(ctx: CutoverContext, lay: Layout) -> bool:
    return forwards_to(ctx.aws.client("elbv2"), lay.listener) == lay.standby_group


def switch_back(ctx: CutoverContext, lay: Layout) -> Facts:
    """The listener back to the service's target group, then the standby to 0."""
    moved = point(ctx, lay, lay.service_group)
    if moved:
        ctx.report(f"the listener forwards to {lay.service} again", {})
    return {"listener_switched_back": moved, "standby": idle_standby(ctx, lay)}


def serving_service(ctx: CutoverContext) -> str:
    """The service the new image serves from: the standby between the switch and converge."""
    rollout = ctx.done.get("rollout", {})
    if rollout.get("switched") and "converge" not in ctx.done:
        return str(rollout["service"])
    return ctx.rollout_options().service


# --- converge -------------------------------------------------------------------


def converge(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """The service onto the standby's revision, the listener back to it, the standby to 0."""
    if not enabled(ctx, memo):
        return {}
    lay = Layout.of(memo.before)
    ecs = ctx.aws.client("ecs")
    task_definition = str(ctx.done["stage"]["task_definition"])
    service = describe_service(ecs, lay.cluster, lay.service)
    if service["taskDefinition"] != task_definition:
        ecs.update_service(cluster=lay.cluster, service=lay.service, taskDefinition=task_definition)
        ctx.report(f"{lay.service}: deploying {task_definition} (it takes no traffic yet)", {})
    outcome = _follow(ctx, lay.service)
    if not outcome.ok:
        raise StepFailed(f"{lay.service} did not move to {task_definition}: {outcome.reason}")

    def probe() -> tuple[bool, str]:
        current = describe_service(ecs, lay.cluster, lay.service)
        steady, why = settled(ecs, lay.cluster, lay.service, current)
        if not steady:
            return False, why
        return targets_healthy(ctx, current, int(current.get("desiredCount", 0)), {})

    ctx.wait_until(f"{lay.service}'s targets to be healthy", probe)
    facts = {"task_definition": task_definition, **switch_back(ctx, lay)}
    return {**facts, "target_fence_removed": unfence_target(ctx)}  # lifted at the switch


def state(ctx: CutoverContext) -> str:
    """Where the listener forwards and what the standby runs (for a failed rollback's report)."""
    if ctx.settings.cutover.switch != STANDBY:
        return "no standby switch (switch = rollout)"
    lay = layout(ctx)
    group = forwards_to(ctx.aws.client("elbv2"), lay.listener)
    serving = {lay.service_group: lay.service, lay.standby_group: lay.standby}.get(group or "")
    found = describe_service(ctx.aws.client("ecs"), lay.cluster, lay.standby)
    return (
        f"the listener forwards to {serving or group or 'no single target group'}; the standby "
        f"{lay.standby} runs {found.get('runningCount', 0)} task(s) of {found['taskDefinition']}"
    )
