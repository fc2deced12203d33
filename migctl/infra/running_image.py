"""The image the service runs, which the stack declares: ``up`` never puts another one back.

Once the service exists, the revision it runs belongs to ``migctl rollout`` (the
program ignores the service's ``taskDefinition``). So that the stack declares
what runs, ``preview`` and ``up`` read the running revision's image and set the
stack's ``containerImage`` to it, whatever migctl.toml says; a different image
in migctl.toml is reported, with the rollout that ships it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migctl.rollout.taskdef import container_images, short_name

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

IMAGE_KEY = "migctl:containerImage"
SERVICE_OUTPUTS = ("ecsClusterName", "ecsServiceName", "ecsContainerName")


@dataclass(frozen=True)
class RunningImage:
    """What the service runs, and what migctl.toml asked for (None when it says nothing)."""

    image: str
    task_definition: str  # family:revision
    configured: str | None

    @property
    def differs(self) -> bool:
        return self.configured is not None and self.configured != self.image

    def note(self) -> str:
        where = f"the service runs {self.task_definition} ({self.image})"
        if not self.differs:
            return f"containerImage: {where}, as migctl.toml says"
        return (
            f"containerImage: {where}: the stack declares it, not migctl.toml's "
            f"{self.configured}; ship that image with migctl rollout --image {self.configured}"
        )


def service_of(outputs: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The stack's cluster, service and container names; None before the stack has them."""
    names = [outputs.get(key) for key in SERVICE_OUTPUTS]
    if not all(isinstance(name, str) and name for name in names):
        return None
    cluster, service, container = (str(name) for name in names)
    return cluster, service, container


def running_image(
    ecs: ECSClient, cluster: str, service: str, container: str, configured: str | None
) -> RunningImage | None:
    """The container's image in the revision the service runs; None when ECS has no such
    service (not created yet, or deleted)."""
    found = ecs.describe_services(cluster=cluster, services=[service]).get("services", [])
    active = [s for s in found if s.get("status") == "ACTIVE"]
    if not active:
        return None
    arn = str(active[0]["taskDefinition"])
    task_definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    image = container_images(task_definition).get(container)
    if image is None:
        return None
    return RunningImage(image, short_name(arn), configured)
