"""What a rollout or undo will do, decided before anything changes: target, copy, diff, gate.

Also where the service, container and gate alarms come from (flag, then
migctl.toml, then the cached stack outputs), the pre-flight refusals, and the
manual steps printed when a person has to take over.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from migctl.alarms import AlarmSelector, AlarmStatus
from migctl.config import Settings
from migctl.errors import CheckFailed, UsageError
from migctl.infra.outputs import load_cached_outputs, resolve
from migctl.rollout.deployments import COMPLETED, PRIMARY, deployments_of
from migctl.rollout.status import resolve_task_definition, undo_target
from migctl.rollout.taskdef import (
    TaskDefinitionCopy,
    container_images,
    diff_lines,
    short_name,
    with_image,
)

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


@dataclass(frozen=True)
class RolloutOptions:
    cluster: str
    service: str
    image: str | None = None
    container: str | None = None
    bake_seconds: float = 300.0
    timeout: float = 900.0
    interval: float = 10.0
    gate: AlarmSelector | None = None  # None: no alarm gate (only with bake_seconds == 0)
    allow_insufficient_data: bool = False
    dry_run: bool = False
    rollback: bool = True
    force: bool = False  # roll out the image the container already runs (its tasks restart)


@dataclass(frozen=True)
class RolloutPlan:
    action: Literal["rollout", "undo"]
    cluster: str
    service: str
    previous_task_definition: str  # running now; what a rollback puts back
    task_definition: str | None  # the target; None until a rollout registers it
    container: str | None
    old_image: str | None
    new_image: str | None
    diff: tuple[str, ...]
    gate: AlarmSelector | None
    bake_seconds: float
    timeout: float
    rollback: bool
    tags: tuple[Mapping[str, str], ...] = ()
    gate_states: tuple[AlarmStatus, ...] = ()

    def summary(self) -> str:
        target = short_name(self.task_definition) if self.task_definition else "a new revision"
        change = (
            f" ({self.container}: {self.old_image} -> {self.new_image})" if self.container else ""
        )
        return (
            f"{self.action} {self.cluster}/{self.service}: "
            f"{short_name(self.previous_task_definition)} -> {target}{change}"
        )

    def details(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "cluster": self.cluster,
            "service": self.service,
            "previous_task_definition": self.previous_task_definition,
            "task_definition": self.task_definition,
            "container": self.container,
            "old_image": self.old_image,
            "new_image": self.new_image,
            "gate": self.gate.describe() if self.gate else None,
            "gate_alarms": [{"name": a.name, "state": a.state} for a in self.gate_states],
            "bake_seconds": self.bake_seconds,
            "timeout": self.timeout,
            "rollback": self.rollback,
            "tags": [dict(t) for t in self.tags],
            "diff": list(self.diff),
        }


def check_deployment_controller(service: Mapping[str, Any]) -> None:
    kind = service.get("deploymentController", {}).get("type", "ECS")
    if kind != "ECS":
        raise UsageError(
            f"service {service.get('serviceName')} uses the {kind} deployment controller; "
            "migctl rollout drives ECS rolling deployments only"
        )


def check_steady(service: Mapping[str, Any]) -> None:
    """Refuse to start while another deployment is still in flight: 'previous' would be a guess."""
    deployments = deployments_of(service)
    busy = [
        d for d in deployments if d.status != PRIMARY or d.rollout_state not in (COMPLETED, None)
    ]
    if busy:
        raise CheckFailed(
            f"service {service.get('serviceName')} is mid-deployment: "
            + "; ".join(d.summary() for d in deployments)
            + ". Nothing was changed",
            hint="wait for it (migctl rollout status) or go back with 'migctl rollout undo'",
        )


def _register_fields(ecs: ECSClient) -> frozenset[str] | None:
    try:
        shape = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape
    except AttributeError:  # a stub client without botocore's model
        return None
    return frozenset(shape.members) if shape is not None else None


# The distribution reference grammar (what docker and ECS accept): an optional registry host
# (with a dot or a port, or localhost), lowercase path components, a tag, a digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_IMAGE = re.compile(
    rf"(?:{_HOST}(?:\.{_HOST})*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def require_image(image: str | None) -> str:
    """The image reference, checked: UsageError (exit 2) when it is none, or not one."""
    if not image or not image.strip():
        raise UsageError("--image is required", hint="migctl rollout --image REPO:TAG")
    image = image.strip()
    if not _IMAGE.fullmatch(image) or len(image) > 255:
        raise UsageError(
            f"{image!r} is not an image reference",
            hint="REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], the repository in lowercase, e.g. "
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments:v42",
        )
    return image


def plan_rollout(
    ecs: ECSClient, service: Mapping[str, Any], options: RolloutOptions
) -> tuple[RolloutPlan, TaskDefinitionCopy]:
    image = require_image(options.image)
    if options.gate is None and options.bake_seconds > 0:
        raise UsageError(
            "no gate alarms to bake on",
            hint="use --alarm NAME, [ecs] gate_alarms, [alarms] prefix/names, "
            "cache the stack output alarmNames, or --bake 0 to skip the bake",
        )
    current_arn: str = service["taskDefinition"]
    current = ecs.describe_task_definition(taskDefinition=current_arn)["taskDefinition"]
    tags = ecs.list_tags_for_resource(resourceArn=current["taskDefinitionArn"]).get("tags", [])
    new_copy = with_image(
        current,
        container=options.container,
        image=image,
        tags=tags,
        allowed_fields=_register_fields(ecs),
    )
    if new_copy.old_image == new_copy.new_image and not options.force:
        raise UsageError(
            f"container {new_copy.container} of {short_name(current_arn)} already runs {image}: "
            "a rollout would only replace its tasks with the same image",
            hint="pass --force to roll it out anyway",
        )
    plan = RolloutPlan(
        action="rollout",
        cluster=options.cluster,
        service=options.service,
        previous_task_definition=current_arn,
        task_definition=None,
        container=new_copy.container,
        old_image=new_copy.old_image,
        new_image=new_copy.new_image,
        diff=diff_lines(
            current, new_copy.params, old_label=short_name(current_arn), new_label="new revision"
        ),
        gate=options.gate,
        bake_seconds=options.bake_seconds,
        timeout=options.timeout,
        rollback=options.rollback,
        tags=new_copy.tags,
    )
    return plan, new_copy


def plan_undo(
    ecs: ECSClient, service: Mapping[str, Any], options: RolloutOptions, *, to: str | None
) -> RolloutPlan:
    current_arn: str = service["taskDefinition"]
    target_arn = resolve_task_definition(ecs, to) if to else undo_target(ecs, service)
    if target_arn == current_arn:
        raise UsageError(f"the service already runs {short_name(current_arn)}; nothing to undo")
    current = ecs.describe_task_definition(taskDefinition=current_arn)["taskDefinition"]
    target = ecs.describe_task_definition(taskDefinition=target_arn)["taskDefinition"]
    before, after = container_images(current), container_images(target)
    changed = [name for name in after if before.get(name) != after[name]]
    return RolloutPlan(
        action="undo",
        cluster=options.cluster,
        service=options.service,
        previous_task_definition=current_arn,
        task_definition=target_arn,
        container=changed[0] if len(changed) == 1 else None,
        old_image=before.get(changed[0]) if len(changed) == 1 else None,
        new_image=after[changed[0]] if len(changed) == 1 else None,
        diff=diff_lines(
            current, target, old_label=short_name(current_arn), new_label=short_name(target_arn)
        ),
        gate=None,
        bake_seconds=0,
        timeout=options.timeout,
        rollback=options.rollback,
    )


def manual_steps(
    options: RolloutOptions,
    plan: RolloutPlan,
    *,
    rollback_attempted: bool,
    why_left: str = "--no-rollback",
) -> tuple[str, ...]:
    """What a person does when migctl could not put the service back on its own."""
    c, s = options.cluster, options.service
    good = plan.previous_task_definition
    bad = plan.task_definition or "the new revision"
    if rollback_attempted:
        first = (
            f"The automatic rollback to {short_name(good)} did not complete. See what ECS is "
            f"doing: migctl rollout status --cluster {c} --service {s} "
            f"(or: aws ecs describe-services --cluster {c} --services {s})"
        )
        alternative = ""
    else:
        first = (
            f"The service was left on {short_name(bad)} ({why_left}). See what ECS is doing: "
            f"migctl rollout status --cluster {c} --service {s}"
        )
        alternative = f" (or: migctl rollout undo --cluster {c} --service {s} --to {good})"
    return (
        first,
        "If the PRIMARY deployment runs "
        f"{short_name(good)} and is still IN_PROGRESS, it may finish on its own: keep watching. "
        f"Otherwise put the last good revision back: aws ecs update-service --cluster {c} "
        f"--service {s} --task-definition {good} --force-new-deployment{alternative}",
        "Follow the PRIMARY deployment that update-service returns until its rolloutState is "
        "COMPLETED and runningCount equals desiredCount (migctl rollout status); "
        "'aws ecs wait services-stable' alone also passes after a circuit-breaker rollback",
        f"If {short_name(good)}'s tasks fail to start too, the cause is outside the image: "
        f"read the stopped tasks' reasons (aws ecs list-tasks --cluster {c} --service-name {s} "
        "--desired-status STOPPED), the target group health and the database connection",
        f"{short_name(bad)} stays registered (migctl never deregisters a task definition); "
        "keep it for the investigation",
    )


@dataclass(frozen=True)
class RolloutTarget:
    cluster: str
    service: str
    container: str | None


def resolve_target(
    settings: Settings, *, cluster: str | None, service: str | None, container: str | None
) -> RolloutTarget:
    """Flag, then ``[ecs]``, then the cached stack outputs (``ecsClusterName`` ...)."""
    ecs = settings.ecs
    resolved_cluster = resolve(
        settings, cluster or ecs.cluster, "ecsClusterName", what="ECS cluster", flag="--cluster"
    )
    resolved_service = resolve(
        settings, service or ecs.service, "ecsServiceName", what="ECS service", flag="--service"
    )
    resolved_container = container or ecs.container
    if not resolved_container:
        cached = load_cached_outputs(settings).get("ecsContainerName")
        resolved_container = cached if isinstance(cached, str) and cached else None
    return RolloutTarget(resolved_cluster, resolved_service, resolved_container)


def resolve_gate(settings: Settings, alarm_names: tuple[str, ...]) -> AlarmSelector | None:
    """``--alarm``, else ``[ecs] gate_alarms``, else ``[alarms]`` prefix/names, else the stack
    output ``alarmNames``; None when none of them names an alarm."""
    if alarm_names:
        return AlarmSelector(names=alarm_names)
    if settings.ecs.gate_alarms:
        return AlarmSelector(names=settings.ecs.gate_alarms)
    if settings.alarms.prefix or settings.alarms.names:
        return AlarmSelector(settings.alarms.prefix, settings.alarms.names)
    cached = load_cached_outputs(settings).get("alarmNames")
    if isinstance(cached, list) and cached and all(isinstance(n, str) for n in cached):
        return AlarmSelector(names=tuple(cached))
    return None
