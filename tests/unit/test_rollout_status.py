"""`migctl rollout status` and `migctl rollout undo` against moto with realistic deployments."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_support import (
    CLUSTER,
    FAMILY,
    SERVICE,
    Calls,
    FakeTime,
    World,
)

from tests.cli_support import Cli

TARGET = ("--cluster", CLUSTER, "--service", SERVICE)


def arn(revision: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{FAMILY}:{revision}"


def register(w: World, image: str) -> str:
    answer = w.ecs.register_task_definition(
        family=FAMILY, containerDefinitions=[{"name": "app", "image": image, "memory": 512}]
    )
    return str(answer["taskDefinition"]["taskDefinitionArn"])


def deploy(w: World, task_definition: str, *, complete: bool = True) -> None:
    w.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=task_definition)
    if complete:
        w.control.complete()


def drive(monkeypatch: pytest.MonkeyPatch, w: World, *fates: str) -> FakeTime:
    fake = FakeTime(w.scheduler(*fates))
    monkeypatch.setattr("migctl.rollout.deploy.time", fake)
    return fake


def test_status_json_shows_deployments_revisions_and_events(cli: Cli, world: World) -> None:
    deploy(world, register(world, "registry.example/app:v2"))
    world.control.add_event("(service payments) registered 2 targets in (target-group tg)")
    result = cli("--output", "json", "rollout", "status", *TARGET)
    assert result.code == 0, result.stderr
    status: Any = result.json()
    assert status["task_definition"] == arn(2) and status["steady"] is True
    assert [(d["status"], d["rollout_state"]) for d in status["deployments"]] == [
        ("PRIMARY", "COMPLETED")
    ]
    assert [(r["revision"], r["images"], r["current"]) for r in status["revisions"]] == [
        (2, {"app": "registry.example/app:v2"}, True),
        (1, {"app": "registry.example/app:v1"}, False),
    ]
    assert (
        status["events"][0]["message"]
        == "(service payments) registered 2 targets in (target-group tg)"
    )
    assert status["undo_target"] == arn(1)
    assert status["desired_count"] == status["running_count"] == 2
    assert [r["outcome"] for r in status["revisions"]] == [None, None]  # not rolled out by migctl


def test_status_shows_what_became_of_each_revision_and_undo_skips_the_rejected(
    cli: Cli, world: World
) -> None:
    deploy(world, register(world, "registry.example/app:v2"))
    deploy(world, register(world, "registry.example/app:v3"))
    outcome = "migctl:rollout-outcome"
    world.ecs.tag_resource(resourceArn=arn(2), tags=[{"key": outcome, "value": "rolled-back"}])
    world.ecs.tag_resource(resourceArn=arn(3), tags=[{"key": outcome, "value": "baked"}])
    status: Any = cli("--output", "json", "rollout", "status", *TARGET).json()
    assert [(r["revision"], r["outcome"]) for r in status["revisions"]] == [
        (3, "baked"),
        (2, "rolled-back"),
        (1, None),
    ]
    assert status["undo_target"] == arn(1)  # never the revision migctl rolled back
    table = cli("rollout", "status", *TARGET)
    assert "rolled back by migctl" in " ".join(table.stdout.split())


def test_status_mid_deployment_exits_1_and_shows_both_deployments(cli: Cli, world: World) -> None:
    deploy(world, register(world, "registry.example/app:v2"), complete=False)
    result = cli("rollout", "status", *TARGET)
    assert result.code == 1
    assert "not steady" in result.stdout
    assert "PRIMARY" in result.stdout and "ACTIVE" in result.stdout
    assert "undo target" in result.stdout


def test_undo_goes_back_to_the_previous_active_revision(
    cli: Cli, world: World, monkeypatch
) -> None:
    deploy(world, register(world, "registry.example/app:v2"))
    drive(monkeypatch, world, "complete")
    result = cli("--output", "json", "rollout", "undo", *TARGET, "--yes")
    assert result.code == 0, result.stderr
    lines = result.json_lines()
    assert lines[0]["event"] == "plan" and lines[0]["action"] == "undo"
    assert lines[0]["old_image"] == "registry.example/app:v2"
    assert lines[0]["new_image"] == "registry.example/app:v1"
    final = lines[-1]
    assert final["outcome"] == "completed"
    assert final["task_definition"] == arn(1) and final["previous_task_definition"] == arn(2)
    assert world.service()["taskDefinition"] == arn(1)
    assert world.task_definition(arn(2))["status"] == "ACTIVE"  # never deregistered


def test_undo_mid_deployment_returns_to_the_draining_deployment(
    cli, world: World, monkeypatch
) -> None:
    register(world, "registry.example/app:v2")
    deploy(world, register(world, "registry.example/app:v3"), complete=False)
    drive(monkeypatch, world, "complete")
    result = cli("--output", "json", "rollout", "undo", *TARGET, "--yes")
    assert result.code == 0, result.stderr
    # The ACTIVE deployment still runs revision 1: that, not revision 2, is what ran before.
    assert result.json_lines()[-1]["task_definition"] == arn(1)
    assert world.service()["taskDefinition"] == arn(1)


def test_undo_never_picks_a_failed_deployment(cli: Cli, world: World, monkeypatch) -> None:
    deploy(world, register(world, "registry.example/app:v2"))
    deploy(world, register(world, "registry.example/app:v3"), complete=False)
    world.control.fail(circuit_breaker_rollback=True)  # ECS is already putting revision 2 back
    drive(monkeypatch, world, "complete")
    result = cli("--output", "json", "rollout", "undo", *TARGET, "--yes", "--dry-run")
    assert result.code == 0, result.stderr
    plan = result.json_lines()[0]
    assert plan["previous_task_definition"] == arn(2) and plan["task_definition"] == arn(1)


def test_undo_that_fails_is_rolled_back_exit_4(
    cli, world: World, calls: Calls, monkeypatch
) -> None:
    deploy(world, register(world, "registry.example/app:v2"))
    calls.items.clear()
    drive(monkeypatch, world, "fail", "complete")
    result = cli("--output", "json", "rollout", "undo", *TARGET, "--yes")
    assert result.code == 4
    assert result.json_lines()[-1]["outcome"] == "rolled_back"
    assert world.service()["taskDefinition"] == arn(2)
    assert [p["taskDefinition"] for p in calls.params("UpdateService")] == [arn(1), arn(2)]
    assert (
        calls.count("RegisterTaskDefinition") == 0 and calls.count("DeregisterTaskDefinition") == 0
    )


def test_undo_to_a_named_revision_and_nothing_to_undo(cli: Cli, world: World, monkeypatch) -> None:
    drive(monkeypatch, world)
    nothing = cli("rollout", "undo", *TARGET, "--yes")
    assert nothing.code == 2 and f"no earlier ACTIVE revision of {FAMILY}" in nothing.stderr
    register(world, "registry.example/app:v2")
    named = cli("rollout", "undo", *TARGET, "--yes", "--to", f"{FAMILY}:2")
    assert named.code == 0, named.stderr
    assert world.service()["taskDefinition"] == arn(2)
    missing = cli("rollout", "undo", *TARGET, "--yes", "--to", f"{FAMILY}:9")
    assert missing.code == 2 and f"no task definition '{FAMILY}:9'" in missing.stderr
