"""`migctl rollout status`: deployments, recent revisions and events; and the undo target."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.errors import UsageError, aws_error_code
from migctl.rollout.deployments import (
    FAILED,
    PRIMARY,
    Deployment,
    ServiceEvent,
    deployments_of,
    describe_service,
)
from migctl.rollout.taskdef import OUTCOME_TAG, container_images, revision_of, short_name

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


@dataclass(frozen=True)
class Revision:
    task_definition: str
    revision: int
    images: Mapping[str, str] = field(default_factory=dict)
    current: bool = False  # the service's taskDefinition
    in_deployment: str | None = None  # the status of a deployment running it (PRIMARY/ACTIVE)
    outcome: str | None = None  # what became of it in a migctl rollout: baked, rolled-back


@dataclass(frozen=True)
class ServiceStatus:
    cluster: str
    service: str
    task_definition: str
    desired_count: int
    running_count: int
    pending_count: int
    deployment_controller: str
    circuit_breaker: Mapping[str, Any] | None
    deployments: tuple[Deployment, ...]
    revisions: tuple[Revision, ...]
    events: tuple[ServiceEvent, ...]
    undo_target: str | None

    @property
    def steady(self) -> bool:
        return (
            len(self.deployments) == 1
            and self.deployments[0].rollout_state in ("COMPLETED", None)
            and self.running_count == self.desired_count
        )


def family_revisions(ecs: ECSClient, family: str) -> list[str]:
    """Every ACTIVE revision ARN of the family, newest first (sorted here, whatever the API did)."""
    arns: list[str] = []
    paginator = ecs.get_paginator("list_task_definitions")
    for page in paginator.paginate(familyPrefix=family, status="ACTIVE", sort="DESC"):
        arns.extend(page.get("taskDefinitionArns", []))
    same_family = [a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]
    return sorted(same_family, key=lambda a: revision_of(a) or 0, reverse=True)


def resolve_task_definition(ecs: ECSClient, name: str) -> str:
    """``family:12`` or an ARN -> the ARN (UsageError when it does not exist)."""
    try:
        return str(
            ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]["taskDefinitionArn"]
        )
    except Exception as exc:
        code = aws_error_code(exc)
        if code in ("ClientException", "InvalidParameterException"):
            raise UsageError(f"no task definition {name!r}") from None
        raise


def undo_target(ecs: ECSClient, service: Mapping[str, Any]) -> str:
    """The revision to go back to.

    The task definition of the most recent non-PRIMARY deployment (an older
    one still draining) that did not fail and runs something else; else the
    highest ACTIVE revision of the family below the current one that migctl did
    not roll back (its ``OUTCOME_TAG``): ECS forgets finished deployments, and
    "the revision below" may be one a bake rejected.
    """
    current: str = service["taskDefinition"]
    older = [
        d
        for d in deployments_of(service)
        if d.status != PRIMARY and d.rollout_state != FAILED and d.task_definition != current
    ]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    older.sort(key=lambda d: d.created_at or epoch, reverse=True)
    if older:
        return older[0].task_definition
    family = current.rsplit("/", 1)[-1].rsplit(":", 1)[0]
    current_revision = revision_of(current) or 0
    skipped = []
    for arn in family_revisions(ecs, family):
        if (revision_of(arn) or 0) >= current_revision:
            continue
        if outcome_of(ecs, arn) == "rolled-back":
            skipped.append(short_name(arn))
            continue
        return arn
    rejected = f" (migctl rolled back {', '.join(skipped)})" if skipped else ""
    raise UsageError(
        f"no earlier ACTIVE revision of {family} to go back to{rejected}",
        hint="name one with --to",
    )


def outcome_of(ecs: ECSClient, task_definition: str) -> str | None:
    """What became of a revision migctl rolled out (``OUTCOME_TAG``), when it says."""
    tags = ecs.list_tags_for_resource(resourceArn=task_definition).get("tags", [])
    return next((t.get("value") for t in tags if t.get("key") == OUTCOME_TAG), None)


def service_status(
    ecs: ECSClient, cluster: str, service_name: str, *, revisions: int = 5, events: int = 10
) -> ServiceStatus:
    """A snapshot: deployments, the newest ``revisions`` of the family, the latest ``events``."""
    service = describe_service(ecs, cluster, service_name)
    current: str = service["taskDefinition"]
    deployments = tuple(deployments_of(service))
    family = current.rsplit("/", 1)[-1].rsplit(":", 1)[0]
    deployed = {d.task_definition: d.status for d in reversed(deployments)}
    wanted = family_revisions(ecs, family)[:revisions]
    for arn in deployed:  # always show what runs, even if older or deregistered
        if arn not in wanted:
            wanted.append(arn)
    revision_rows = []
    for arn in sorted(wanted, key=lambda a: revision_of(a) or 0, reverse=True):
        definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        revision_rows.append(
            Revision(
                task_definition=arn,
                revision=revision_of(arn) or 0,
                images=container_images(definition),
                current=arn == current,
                in_deployment=deployed.get(arn),
                outcome=outcome_of(ecs, arn),
            )
        )
    try:
        target: str | None = undo_target(ecs, service)
    except UsageError:
        target = None
    config = service.get("deploymentConfiguration") or {}
    return ServiceStatus(
        cluster=cluster,
        service=service_name,
        task_definition=current,
        desired_count=int(service.get("desiredCount", 0)),
        running_count=int(service.get("runningCount", 0)),
        pending_count=int(service.get("pendingCount", 0)),
        deployment_controller=service.get("deploymentController", {}).get("type", "ECS"),
        circuit_breaker=config.get("deploymentCircuitBreaker"),
        deployments=deployments,
        revisions=tuple(revision_rows),
        events=tuple(
            ServiceEvent(e["id"], e.get("createdAt"), e.get("message", ""))
            for e in service.get("events", [])[:events]
        ),
        undo_target=target,
    )
