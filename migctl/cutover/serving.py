"""Whether a service serves: steady on its PRIMARY deployment, its tasks healthy targets.

Shared by the rollout and post-checks (``release.py``) and the standby switch
(``standby.py``). Which target groups: the service's ``loadBalancers``; when
it declares none, the stack output ``targetGroupArnSuffix``. An empty target
group fails the check when the service declares it (ECS registers its tasks
there); when it only comes from the stack outputs and has no registered
target at all, the ECS running count is the evidence, and the facts say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migctl.cutover.context import CutoverContext
from migctl.infra.outputs import load_cached_outputs
from migctl.rollout.deployments import COMPLETED, RolloutStep, describe_service, primary_of
from migctl.rollout.taskdef import container_images

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


def _steady(service: dict[str, Any]) -> bool:
    primary = primary_of(service)
    return (
        primary is not None
        and primary.rollout_state in (COMPLETED, None)
        and len(service.get("deployments", [])) == 1
        and int(service.get("runningCount", 0)) >= int(service.get("desiredCount", 0))
    )


def settled(
    ecs: ECSClient, cluster: str, name: str, service: dict[str, Any] | None = None
) -> tuple[bool, str]:
    service = service or describe_service(ecs, cluster, name)
    if _steady(service):
        return True, "the service is steady"
    primary = primary_of(service)
    state = primary.summary() if primary else "no PRIMARY deployment"
    return False, f"service {name}: {state}, running {service.get('runningCount')}"


def targets_healthy(
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


def images_of(ecs: ECSClient, task_definition: str) -> dict[str, str]:
    """Container name -> image of a task definition."""
    found = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    return container_images(found)


def runs_image(
    ecs: ECSClient, task_definition: str, container: str | None, image: str | None
) -> bool:
    images = images_of(ecs, task_definition)
    if container:
        return images.get(container) == image
    return len(images) == 1 and next(iter(images.values())) == image


def rollout_facts(step: RolloutStep) -> dict[str, Any]:
    """A rollout event's note details: its kind, and its facts (a deployment's id and counts,
    an alarm's name and state) for the cutover report."""
    return {"rollout_event": step.event, "facts": dict(step.details)}
