"""The moto extension itself (``migctl.sandbox.moto_ecs``): ECS deployments that move like ECS's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rollout_support import CLUSTER, FAMILY, SERVICE, World, build_world

from migctl.sandbox import moto_ecs


def _shape_members(client: Any, operation: str, *path: str) -> set[str]:
    shape = client.meta.service_model.operation_model(operation).output_shape
    for name in path:
        shape = shape.members[name]
        if shape.type_name == "list":
            shape = shape.member
    return set(shape.members)


def test_update_service_starts_a_primary_deployment_and_demotes_the_old_one(world: World) -> None:
    old_id = world.control.deployment()["id"]
    arn = world.ecs.register_task_definition(
        family=FAMILY, containerDefinitions=[{"name": "app", "image": "x:2", "memory": 512}]
    )["taskDefinition"]["taskDefinitionArn"]
    answer = world.ecs.update_service(
        cluster=CLUSTER, service=SERVICE, taskDefinition=f"{FAMILY}:2"
    )
    service = answer["service"]
    assert service["taskDefinition"] == arn  # the ARN, not the "family:2" given
    primary, old = service["deployments"]
    assert primary["status"] == "PRIMARY" and primary["taskDefinition"] == arn
    assert primary["rolloutState"] == "IN_PROGRESS" and primary["runningCount"] == 0
    assert primary["id"].startswith("ecs-svc/") and primary["id"] != old_id
    assert old["id"] == old_id and old["status"] == "ACTIVE" and old["rolloutState"] == "COMPLETED"
    # The same task definition again is no new deployment.
    again = world.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn)
    assert [d["id"] for d in again["service"]["deployments"]] == [primary["id"], old_id]


def test_describe_services_output_fits_botocores_model(world: World) -> None:
    world.ecs.register_task_definition(
        family=FAMILY, containerDefinitions=[{"name": "app", "image": "x:2", "memory": 512}]
    )
    world.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=f"{FAMILY}:2")
    world.control.fail(circuit_breaker_rollback=True)
    world.control.add_event("hello")
    service = world.service()
    deployment_fields = _shape_members(world.ecs, "DescribeServices", "services", "deployments")
    event_fields = _shape_members(world.ecs, "DescribeServices", "services", "events")
    assert len(service["deployments"]) == 3
    for deployment in service["deployments"]:
        assert set(deployment) <= deployment_fields
        assert {
            "id",
            "status",
            "taskDefinition",
            "rolloutState",
            "runningCount",
            "desiredCount",
        } <= set(deployment)
        assert isinstance(deployment["createdAt"], dt.datetime)
    assert [d["rolloutState"] for d in service["deployments"]] == [
        "IN_PROGRESS",
        "FAILED",
        "COMPLETED",
    ]
    assert service["deployments"][0]["taskDefinition"] == world.first_revision  # the CB went back
    assert service["events"][0]["message"] == "hello"
    for event in service["events"]:
        assert set(event) == event_fields
        assert isinstance(event["createdAt"], dt.datetime)


def test_uninstall_restores_moto(patched_moto: None) -> None:
    moto_ecs.uninstall()
    try:
        w = build_world()
        w.ecs.register_task_definition(
            family=FAMILY, containerDefinitions=[{"name": "app", "image": "x:2", "memory": 512}]
        )
        answer = w.ecs.update_service(
            cluster=CLUSTER, service=SERVICE, taskDefinition=f"{FAMILY}:2"
        )
        assert len(answer["service"]["deployments"]) == 1  # moto's own behaviour
    finally:
        moto_ecs.install()


def test_the_sandbox_controller_starts_tasks_in_task_start_seconds(
    world: World, tmp_path: Any
) -> None:
    """[sandbox] task_start_seconds, as sandbox.json holds it now: a deployment younger than
    that stays IN_PROGRESS, an older one completes."""
    import json

    from migctl.sandbox.controller import Controller

    world.ecs.register_task_definition(
        family=FAMILY, containerDefinitions=[{"name": "app", "image": "x:2", "memory": 512}]
    )
    world.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=f"{FAMILY}:2")
    controller = Controller("host=127.0.0.1", "host=127.0.0.1", sandbox_dir=str(tmp_path))
    (tmp_path / "sandbox.json").write_text(json.dumps({"task_start_seconds": 60}))
    controller._tick_ecs()
    assert world.control.deployment()["rolloutState"] == "IN_PROGRESS"
    (tmp_path / "sandbox.json").write_text(json.dumps({"task_start_seconds": 0}))
    controller._tick_ecs()
    assert world.control.deployment()["rolloutState"] == "COMPLETED"
