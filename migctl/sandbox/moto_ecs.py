"""Realistic ECS deployments for moto 5.2: what tests and the sandbox need to rehearse a rollout.

moto's ECS keeps one deployment per service forever: ``update_service`` with a
new task definition only changes ``service.taskDefinition`` and ``rolloutState``
never moves (docs/field-notes.md, "moto 5.2"). :func:`install` patches
``EC2ContainerServiceBackend.update_service`` so that a changed task definition
(or ``forceNewDeployment``) starts a new PRIMARY deployment (``IN_PROGRESS``,
nothing running yet) and demotes the previous PRIMARY to ACTIVE, as ECS does.

:class:`MotoEcsService` then plays the part of the ECS scheduler from the test
side (or from the sandbox controller, in the moto server's process): complete
a deployment, fail it (optionally as the circuit breaker does, rolling back to
the last completed deployment), remove it, set its counts, add service events.
Whatever it stores is serialised by moto against botocore's output shapes, so
``describe_services`` keeps validating against botocore's model.

moto is an optional extra (``migctl[sandbox]``): only this module imports it.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ecs.models import EC2ContainerServiceBackend, Service, ecs_backends

_ORIGINAL_ATTR = "_migctl_original_update_service"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"


def install() -> None:
    """Patch moto's ECS backend (idempotent): ``update_service`` starts real deployments and
    leaves the running count to the scheduler."""
    if hasattr(EC2ContainerServiceBackend, _ORIGINAL_ATTR):
        return
    original = EC2ContainerServiceBackend.update_service
    setattr(EC2ContainerServiceBackend, _ORIGINAL_ATTR, original)

    def update_service(
        self: EC2ContainerServiceBackend, service_properties: dict[str, Any]
    ) -> Service:
        cluster = service_properties.get("cluster", "default")
        name = str(service_properties["service"]).split("/")[-1]
        requested = service_properties.get("task_definition")
        force = bool(service_properties.pop("force_new_deployment", False))
        service = self._get_service(cluster, name)
        before = service.task_definition
        counts = (service.running_count, service.pending_count)
        updated: Service = original(self, service_properties)
        # moto runs a new desired count at once; ECS starts and stops tasks over time, and
        # the scheduler's stand-in (``MotoEcsService``, the sandbox controller) does too.
        updated.running_count, updated.pending_count = counts
        if requested:
            # moto stores the string it was given ("family:3"); ECS answers with the ARN.
            updated.task_definition = self.describe_task_definition(requested).arn
        if updated.task_definition != before or force:
            start_deployment(updated)
        return updated

    EC2ContainerServiceBackend.update_service = update_service  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo :func:`install` (tests that want moto's own behaviour back)."""
    original = getattr(EC2ContainerServiceBackend, _ORIGINAL_ATTR, None)
    if original is not None:
        EC2ContainerServiceBackend.update_service = original  # type: ignore[method-assign]
        delattr(EC2ContainerServiceBackend, _ORIGINAL_ATTR)


def installed() -> bool:
    return hasattr(EC2ContainerServiceBackend, _ORIGINAL_ATTR)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_deployment_id() -> str:
    return f"ecs-svc/{secrets.randbelow(10**19):019d}"


def start_deployment(service: Service, task_definition: str | None = None) -> dict[str, Any]:
    """Start a PRIMARY deployment of ``task_definition`` (default: the service's).

    The previous PRIMARY becomes ACTIVE, as when ECS starts a rolling update.
    """
    for deployment in service.deployments:
        if deployment["status"] == "PRIMARY":
            deployment["status"] = "ACTIVE"
            deployment["updatedAt"] = _now()
    if task_definition is not None:
        service.task_definition = task_definition
    deployment_id = new_deployment_id()
    now = _now()
    deployment = {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": service.task_definition,
        "desiredCount": service.desired_count,
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": now,
        "updatedAt": now,
        "launchType": service.launch_type,
        "platformFamily": "EC2" if service.launch_type == "EC2" else "FARGATE",
        "rolloutState": IN_PROGRESS,
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
    }
    service.deployments.insert(0, deployment)
    return deployment


class MotoEcsService:
    """Drive one service's deployments inside the moto process, as the ECS scheduler would."""

    def __init__(
        self,
        cluster: str,
        service: str,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = "us-east-1",
    ) -> None:
        self.cluster = cluster
        self.name = service
        self.account_id = account_id
        self.region = region

    @property
    def service(self) -> Service:
        backend: EC2ContainerServiceBackend = ecs_backends[self.account_id][self.region]
        return backend._get_service(self.cluster, self.name)

    @property
    def deployments(self) -> list[dict[str, Any]]:
        return list(self.service.deployments)

    def deployment(self, deployment_id: str | None = None) -> dict[str, Any]:
        """The deployment with this id, or the PRIMARY one."""
        for deployment in self.service.deployments:
            if deployment["id"] == deployment_id or (
                deployment_id is None and deployment["status"] == "PRIMARY"
            ):
                return deployment
        raise KeyError(deployment_id or "PRIMARY")

    def set_deployment(
        self,
        deployment_id: str | None = None,
        *,
        rollout_state: str | None = None,
        reason: str | None = None,
        running: int | None = None,
        pending: int | None = None,
        failed_tasks: int | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """Set fields of a deployment (default: the PRIMARY one)."""
        deployment = self.deployment(deployment_id)
        changes = {
            "rolloutState": rollout_state,
            "rolloutStateReason": reason,
            "runningCount": running,
            "pendingCount": pending,
            "failedTasks": failed_tasks,
            "status": status,
        }
        deployment.update({k: v for k, v in changes.items() if v is not None})
        deployment["updatedAt"] = _now()
        if running is not None and deployment["status"] == "PRIMARY":
            self.service.running_count = running
        return deployment

    def complete(self, deployment_id: str | None = None) -> dict[str, Any]:
        """The deployment reaches steady state: all tasks running, the older deployments drained."""
        deployment = self.deployment(deployment_id)
        desired = deployment["desiredCount"]
        self.set_deployment(
            deployment["id"],
            rollout_state=COMPLETED,
            reason=f"ECS deployment {deployment['id']} completed.",
            running=desired,
            pending=0,
        )
        self.service.deployments[:] = [deployment]
        self.service.running_count = desired
        self.service.pending_count = 0
        self.add_event(f"(service {self.name}) has reached a steady state.")
        return deployment

    def fail(
        self,
        deployment_id: str | None = None,
        *,
        reason: str = "ECS deployment circuit breaker: tasks failed to start.",
        circuit_breaker_rollback: bool = False,
    ) -> dict[str, Any] | None:
        """Mark a deployment FAILED; with ``circuit_breaker_rollback`` ECS also redeploys the last
        completed task definition, which becomes the new PRIMARY (returned)."""
        deployment = self.deployment(deployment_id)
        self.set_deployment(deployment["id"], rollout_state=FAILED, reason=reason, failed_tasks=3)
        self.add_event(
            f"(service {self.name}) (deployment {deployment['id']}) deployment failed: {reason}"
        )
        if not circuit_breaker_rollback:
            return None
        last_good = next(
            (
                d
                for d in self.service.deployments
                if d is not deployment and d["rolloutState"] == COMPLETED
            ),
            None,
        )
        if last_good is None:
            return None
        rollback = start_deployment(self.service, str(last_good["taskDefinition"]))
        self.add_event(f"(service {self.name}) rolling back to deployment {last_good['id']}.")
        return rollback

    def remove(self, deployment_id: str | None = None) -> None:
        """The deployment disappears from describe_services (replaced or drained)."""
        deployment = self.deployment(deployment_id)
        self.service.deployments[:] = [d for d in self.service.deployments if d is not deployment]

    def add_event(self, message: str) -> dict[str, Any]:
        """A service event, newest first as ECS lists them (ECS keeps the latest 100)."""
        event = {"id": str(uuid.uuid4()), "createdAt": _now(), "message": message}
        self.service.events.insert(0, event)
        del self.service.events[100:]
        return event
