"""`migctl rollout` in-process: exit codes, JSON lines, confirmation, containers, config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_support import (
    ALARMS,
    CLUSTER,
    FAMILY,
    SERVICE,
    Calls,
    FakeTime,
    World,
    build_world,
    deploying_moto,
)

from tests.cli_support import Cli

NEW_IMAGE = "registry.example/app:v2"
TARGET = ("--cluster", CLUSTER, "--service", SERVICE)


def drive(monkeypatch: pytest.MonkeyPatch, w: World, *fates: str) -> FakeTime:
    """Swap migctl.rollout.deploy's clock and sleep for a fake whose sleeps move the deployments."""
    fake = FakeTime(w.scheduler(*fates))
    monkeypatch.setattr("migctl.rollout.deploy.time", fake)
    return fake


def rollout_args(*extra: str) -> list[str]:
    return [
        "rollout",
        "--image",
        NEW_IMAGE,
        *TARGET,
        "--alarm",
        ALARMS[0],
        "--alarm",
        ALARMS[1],
        *extra,
    ]


def test_completed_json_lines_end_with_the_result(cli: Cli, world: World, monkeypatch) -> None:
    drive(monkeypatch, world, "complete")
    result = cli("--output", "json", *rollout_args("--yes", "--bake", "30"))
    assert result.code == 0, result.stderr
    lines = result.json_lines()
    events = [line["event"] for line in lines]
    assert events[:3] == ["plan", "registered", "updated"]
    assert {"deployment", "service_event", "bake", "alarm", "completed"} <= set(events)
    assert lines[-1] == {
        "event": "result",
        "outcome": "completed",
        "exit_code": 0,
        "cluster": CLUSTER,
        "service": SERVICE,
        "task_definition": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{FAMILY}:2",
        "previous_task_definition": world.first_revision,
        "reason": None,
        "deployment_id": lines[2]["deployment_id"],
        "rollback_deployment_id": None,
        "final_deployments": [],
        "manual_steps": [],
    }
    deployment_lines = [line for line in lines if line["event"] == "deployment"]
    assert deployment_lines[-1]["rollout_state"] == "COMPLETED"
    assert deployment_lines[-1]["running_count"] == deployment_lines[-1]["desired_count"] == 2


def test_circuit_breaker_exit_4_in_json(cli: Cli, world: World, monkeypatch) -> None:
    drive(monkeypatch, world, "fail_cb", "complete")
    result = cli("--output", "json", *rollout_args("--yes"))
    assert result.code == 4, result.stderr
    final = result.json_lines()[-1]
    assert (
        final["outcome"] == "rolled_back"
        and final["previous_task_definition"] == world.first_revision
    )
    assert "FAILED" in final["reason"]
    assert world.service()["taskDefinition"] == world.first_revision


def test_rollback_failed_exit_5_prints_state_and_manual_steps(
    cli, world: World, monkeypatch
) -> None:
    drive(monkeypatch, world, "fail", "hang")
    result = cli(*rollout_args("--yes", "--timeout", "60"))
    assert result.code == 5
    assert "rollback_failed" in result.stderr
    assert "state of the service now:" in result.stderr and "manual steps:" in result.stderr
    assert f"--task-definition {world.first_revision}" in result.stderr.replace("\n", "")
    assert "timed out after 60s" in result.stderr


def test_dry_run_makes_no_register_or_update_call(
    cli, world: World, calls: Calls, monkeypatch
) -> None:
    drive(monkeypatch, world)
    result = cli(*rollout_args("--dry-run"))
    assert result.code == 0, result.stderr
    assert calls.count("RegisterTaskDefinition") == 0 and calls.count("UpdateService") == 0
    assert '+      "image": "registry.example/app:v2",' in result.stdout
    assert '-      "image": "registry.example/app:v1",' in result.stdout
    assert "dry run: nothing was registered or updated" in result.stderr


def test_no_rollback_exit_1_leaves_the_failed_revision_running(
    cli, world: World, calls: Calls, monkeypatch
) -> None:
    drive(monkeypatch, world, "fail")
    result = cli("--output", "json", *rollout_args("--yes", "--no-rollback"))
    assert result.code == 1
    final = result.json_lines()[-1]
    assert final["outcome"] == "failed" and final["manual_steps"]
    assert calls.count("UpdateService") == 1


def test_without_a_terminal_and_without_yes_refuses_with_exit_2(
    cli, world: World, calls: Calls, monkeypatch
) -> None:
    drive(monkeypatch, world)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    result = cli(*rollout_args())
    assert result.code == 2
    assert "pass --yes" in result.stderr
    assert calls.count("RegisterTaskDefinition") == 0 and calls.count("UpdateService") == 0


@pytest.fixture
def sidecar_world(aws: None) -> Iterator[World]:
    with deploying_moto():
        yield build_world(containers=("app", "envoy", "log-router"))


def test_several_containers_need_container(
    cli, sidecar_world: World, calls: Calls, monkeypatch
) -> None:
    w = sidecar_world
    drive(monkeypatch, w)
    result = cli(*rollout_args("--yes"))
    assert result.code == 2
    assert (
        "3 containers: app, envoy, log-router" in result.stderr and "--container" in result.stderr
    )
    unknown = cli(*rollout_args("--yes", "--container", "api"))
    assert unknown.code == 2 and "no container named 'api'" in unknown.stderr
    assert calls.count("RegisterTaskDefinition") == 0

    chosen = cli(*rollout_args("--yes", "--container", "envoy", "--bake", "0"))
    assert chosen.code == 0, chosen.stderr
    service = w.service()
    images = {
        c["name"]: c["image"]
        for c in w.task_definition(service["taskDefinition"])["containerDefinitions"]
    }
    assert images == {
        "app": "registry.example/app:v1",
        "envoy": NEW_IMAGE,
        "log-router": "registry.example/log-router:v1",
    }


def test_image_is_required_and_belongs_to_rollout_only(cli: Cli, world: World) -> None:
    missing = cli("rollout", *TARGET)
    assert missing.code == 2 and "--image is required" in missing.stderr
    mixed = cli("rollout", "--image", NEW_IMAGE, "status", *TARGET)
    assert mixed.code == 2 and "--image" in mixed.stderr


@pytest.mark.parametrize(
    "image", ["payments app:2.0", ":", "Payments-App:v1!!", "repo/app:", "a//b"]
)
def test_a_reference_that_is_no_image_is_exit_2_before_anything_changes(
    cli: Cli, world: World, calls: Calls, image: str
) -> None:
    result = cli("rollout", "--image", image, *TARGET, "--yes", "--bake", "0")
    assert result.code == 2, result.stderr
    assert f"{image!r} is not an image reference" in result.stderr
    assert calls.count("RegisterTaskDefinition") == 0


@pytest.mark.parametrize(
    "image",
    [
        "repo/payments:v42",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/payments:2.14.0",
        "localhost:5000/team/app@sha256:" + "ab" * 32,
        "payments-app:2.0.0-aurora",
    ],
)
def test_image_references_that_are_ones_pass(image: str) -> None:
    from migctl.rollout.plan import require_image

    assert require_image(f" {image} ") == image


def test_no_gate_alarms_is_a_config_error_unless_bake_0(
    cli, world: World, calls: Calls, monkeypatch
) -> None:
    drive(monkeypatch, world)
    result = cli("rollout", "--image", NEW_IMAGE, *TARGET, "--yes")
    assert result.code == 2 and "no gate alarms" in result.stderr
    assert calls.count("RegisterTaskDefinition") == 0
    skipped = cli("rollout", "--image", NEW_IMAGE, *TARGET, "--yes", "--bake", "0")
    assert skipped.code == 0, skipped.stderr


def test_targets_and_gate_come_from_config_then_stack_outputs(
    cli: Cli,
    world: World,
    calls: Calls,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    drive(monkeypatch, world)
    cache = tmp_path / ".migctl" / "outputs-test.json"
    cache.parent.mkdir()
    cache.write_text(
        json.dumps(
            {
                "ecsClusterName": CLUSTER,
                "ecsServiceName": "not-this-one",
                "alarmNames": list(ALARMS),
            }
        )
    )
    (tmp_path / "migctl.toml").write_text(f'[ecs]\nservice = "{SERVICE}"\nbake_seconds = 20\n')
    result = cli("--output", "json", "rollout", "--image", NEW_IMAGE, "--yes")
    assert result.code == 0, result.stderr
    plan = result.json_lines()[0]
    assert plan["event"] == "plan" and plan["cluster"] == CLUSTER and plan["service"] == SERVICE
    assert plan["bake_seconds"] == 20
    assert [a["name"] for a in plan["gate_alarms"]] == sorted(ALARMS)
    described = calls.params("DescribeAlarms", service="cloudwatch")
    assert described and sorted(described[0]["AlarmNames"]) == sorted(ALARMS)


def test_missing_cluster_names_flag_config_and_output(cli: Cli, world: World) -> None:
    result = cli("rollout", "--image", NEW_IMAGE, "--service", SERVICE, "--bake", "0", "--yes")
    assert result.code == 2
    assert "--cluster" in result.stderr and "ecsClusterName" in result.stderr


def test_unknown_service_is_exit_2(cli: Cli, world: World) -> None:
    result = cli(
        "rollout", "--image", NEW_IMAGE, "--cluster", CLUSTER, "--service", "nope", "--bake", "0"
    )
    assert result.code == 2 and "'nope' not found" in result.stderr
    cluster = cli("rollout", "--image", NEW_IMAGE, "--cluster", "nope", "--service", SERVICE)
    assert cluster.code == 2 and "ECS cluster 'nope' not found" in cluster.stderr
