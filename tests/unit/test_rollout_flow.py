"""migctl.rollout.deploy core against moto: every way a deployment ends, and what migctl does about it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from rollout_support import (
    ALARMS,
    CLUSTER,
    FAMILY,
    SERVICE,
    TAGS,
    Calls,
    FakeTime,
    Scheduler,
    World,
)

from migctl.alarms import AlarmSelector
from migctl.errors import CheckFailed, OperationalError
from migctl.rollout.deploy import RolloutOptions, RolloutResult, rollout, undo
from migctl.rollout.deployments import RolloutStep
from migctl.sandbox import moto_ecs

NEW_IMAGE = "registry.example/app:v2"


def run(
    w: World,
    scheduler: Scheduler,
    *,
    steps: list[RolloutStep] | None = None,
    **overrides: Any,
) -> RolloutResult:
    fake = FakeTime(scheduler)
    options = RolloutOptions(
        cluster=CLUSTER,
        service=SERVICE,
        image=NEW_IMAGE,
        bake_seconds=60,
        timeout=300,
        interval=10,
        gate=AlarmSelector(names=ALARMS),
    )
    for key, value in overrides.items():
        options = options.__class__(**{**options.__dict__, key: value})
    return rollout(
        w.ecs,
        w.cloudwatch,
        options,
        on_step=steps.append if steps is not None else None,
        clock=fake.monotonic,
        sleep=fake.sleep,
    )


def second_revision() -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{FAMILY}:2"


def test_completed_registers_a_copy_with_the_new_image_and_its_tags(
    world: World, calls: Calls
) -> None:
    steps: list[RolloutStep] = []
    result = run(world, world.scheduler("complete"), steps=steps)
    assert result.outcome == "completed" and result.exit_code == 0, result.reason
    assert result.task_definition == second_revision()
    assert result.previous_task_definition == world.first_revision
    service = world.service()
    assert service["taskDefinition"] == second_revision()
    assert [(d["status"], d["rolloutState"]) for d in service["deployments"]] == [
        ("PRIMARY", "COMPLETED")
    ]
    old, new = world.task_definition(world.first_revision), world.task_definition(second_revision())
    assert new["containerDefinitions"][0]["image"] == NEW_IMAGE
    for key in ("cpu", "memory", "networkMode", "executionRoleArn", "requiresCompatibilities"):
        assert new[key] == old[key]
    assert (
        new["containerDefinitions"][0]["environment"]
        == old["containerDefinitions"][0]["environment"]
    )
    tags = world.ecs.list_tags_for_resource(resourceArn=second_revision())["tags"]
    baked = [*TAGS, {"key": "migctl:rollout-outcome", "value": "baked"}]  # and what became of it
    assert sorted(tags, key=lambda t: t["key"]) == sorted(baked, key=lambda t: t["key"])
    (register,) = calls.params("RegisterTaskDefinition")
    assert (
        "revision" not in register
        and "taskDefinitionArn" not in register
        and "status" not in register
    )
    assert calls.count("UpdateService") == 1 and calls.count("DeregisterTaskDefinition") == 0
    events = [s.event for s in steps]
    assert events[:3] == ["plan", "registered", "updated"]
    assert "bake" in events and events[-1] == "completed"
    messages = [s.message for s in steps if s.event == "service_event"]
    assert messages == [
        f"(service {SERVICE}) has started 1 tasks: (task 0001).",
        f"(service {SERVICE}) has reached a steady state.",
    ]  # only the new events, oldest first; the steady-state event from before is history
    states = [s.details["rollout_state"] for s in steps if s.event == "deployment"]
    assert states == ["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]


def test_circuit_breaker_failure_rolls_back_and_exits_4(world: World, calls: Calls) -> None:
    """The case services_stable gets wrong: ECS rolled back itself and the service is 'stable'."""
    result = run(world, world.scheduler("fail_cb", "complete"))
    assert result.outcome == "rolled_back" and result.exit_code == 4
    assert "FAILED" in (result.reason or "") and "circuit breaker" in (result.reason or "")
    service = world.service()
    assert service["taskDefinition"] == world.first_revision
    primary = next(d for d in service["deployments"] if d["status"] == "PRIMARY")
    assert primary["rolloutState"] == "COMPLETED" and primary["id"] == result.rollback_deployment_id
    assert [p["taskDefinition"] for p in calls.params("UpdateService")] == [
        second_revision(),
        world.first_revision,
    ]
    assert world.task_definition(world.first_revision)["status"] == "ACTIVE"
    assert calls.count("DeregisterTaskDefinition") == 0


def test_failed_deployment_without_circuit_breaker_is_rolled_back(world: World) -> None:
    steps: list[RolloutStep] = []
    result = run(world, world.scheduler("fail", "complete"), steps=steps)
    assert result.outcome == "rolled_back" and result.exit_code == 4
    assert result.deployment_id != result.rollback_deployment_id
    assert world.service()["taskDefinition"] == world.first_revision
    events = [s.event for s in steps]
    assert events.index("failure") < events.index("rollback") < events.index("rolled_back")
    assert "bake" not in events


def test_vanished_deployment_is_a_failure(world: World) -> None:
    result = run(world, world.scheduler("vanish", "complete"))
    assert result.outcome == "rolled_back"
    assert "vanished" in (result.reason or "")


def test_deployment_that_stops_being_primary_is_a_failure(world: World) -> None:
    result = run(world, world.scheduler("replaced", "complete"))
    assert result.outcome == "rolled_back"
    assert "no longer PRIMARY" in (result.reason or "")


def test_timeout_rolls_back(world: World) -> None:
    scheduler = world.scheduler("hang", "complete")
    fake = FakeTime(scheduler)
    result = rollout(
        world.ecs,
        world.cloudwatch,
        RolloutOptions(CLUSTER, SERVICE, image=NEW_IMAGE, bake_seconds=0, timeout=45, interval=10),
        clock=fake.monotonic,
        sleep=fake.sleep,
    )
    assert result.outcome == "rolled_back" and result.exit_code == 4
    assert "timed out after 45s" in (result.reason or "")
    assert fake.sleeps[:5] == [10, 10, 10, 10, 5]  # never sleeps past the deadline
    assert world.service()["taskDefinition"] == world.first_revision


def test_alarm_during_the_bake_rolls_back(world: World, calls: Calls) -> None:
    scheduler = world.scheduler("complete", "complete")
    # Once the new deployment has completed, the 5xx alarm fires a little later.
    scheduler.hooks.append(lambda tick: world.set_alarm(ALARMS[0], "ALARM") if tick == 4 else None)
    steps: list[RolloutStep] = []
    result = run(world, scheduler, steps=steps)
    assert result.outcome == "rolled_back" and result.exit_code == 4
    assert f"gate alarm in ALARM during the bake: {ALARMS[0]}" in (result.reason or "")
    events = [s.event for s in steps]
    assert events.index("bake") < events.index("failure") < events.index("rollback")
    assert any(s.event == "alarm" and s.details["state"] == "ALARM" for s in steps)
    assert world.service()["taskDefinition"] == world.first_revision
    assert calls.count("DeregisterTaskDefinition") == 0


def test_a_bake_does_not_pass_while_every_task_dies_under_quiet_alarms(world: World) -> None:
    """The PRIMARY deployment stays COMPLETED, the alarms stay OK, but running falls to 0/2
    with failed tasks during the bake: rolled back, never completed."""
    scheduler = world.scheduler("complete", "complete")

    def tasks_die(tick: int) -> None:
        deployment = world.control.deployment()
        if tick == 4 and deployment["rolloutState"] == "COMPLETED":
            world.control.set_deployment(deployment["id"], running=0, failed_tasks=2)
            world.control.add_event(f"(service {SERVICE}) has stopped 2 running tasks.")

    scheduler.hooks.append(tasks_die)
    result = run(world, scheduler)
    assert result.outcome == "rolled_back" and result.exit_code == 4, result.reason
    assert "lost tasks during the bake: running 0/2, failed tasks 2 (was 0)" in (
        result.reason or ""
    )


def test_a_gate_alarm_deleted_during_the_bake_fails_it_even_when_selected_by_prefix(
    world: World,
) -> None:
    scheduler = world.scheduler("complete", "complete")
    scheduler.hooks.append(
        lambda tick: world.cloudwatch.delete_alarms(AlarmNames=[ALARMS[1]]) if tick == 4 else None
    )
    result = run(world, scheduler, gate=AlarmSelector(prefix="payments-test-"))
    assert result.outcome == "rolled_back", result.reason
    assert ALARMS[1] in (result.reason or "")


def test_a_hotfix_someone_else_deploys_during_the_bake_is_never_rolled_back_over(
    world: World, calls: Calls
) -> None:
    """Another actor deploys revision :3 during the bake: migctl stops, names both revisions
    and exits 5 with the manual steps, and the service stays on the hotfix."""
    scheduler = world.scheduler("complete", "complete")
    first = world.task_definition(world.first_revision)
    hotfix: list[str] = []

    def deploy_hotfix(tick: int) -> None:
        if tick == 4 and not hotfix:
            containers = [
                {**c, "image": "registry.example/app:hotfix"} for c in first["containerDefinitions"]
            ]
            arn = world.ecs.register_task_definition(
                family=FAMILY, containerDefinitions=containers
            )["taskDefinition"]["taskDefinitionArn"]
            hotfix.append(arn)
            moto_ecs.start_deployment(world.control.service, arn)

    scheduler.hooks.append(deploy_hotfix)
    result = run(world, scheduler)
    assert (result.outcome, result.exit_code) == ("rollback_failed", 5), result.reason
    assert (
        hotfix and hotfix[0] in (result.reason or "") and "did not start" in (result.reason or "")
    )
    assert world.service()["taskDefinition"] == hotfix[0]  # not replaced by a rollback
    assert any("rollout undo" in step for step in result.manual_steps)


def test_undo_never_goes_back_to_a_revision_migctl_rolled_back(world: World) -> None:
    """v2-bad fails its bake (rolled back), v3 completes, then `rollout undo`: ECS has
    forgotten the old deployments, and "the revision below" is v2-bad. The undo goes to v1,
    the last one that was not rejected, and a copy of v3 does not inherit v3's outcome."""
    scheduler = world.scheduler("complete", "complete")
    scheduler.hooks.append(lambda tick: world.set_alarm(ALARMS[0], "ALARM") if tick == 4 else None)
    bad = run(world, scheduler, image="registry.example/app:v2-bad")
    assert bad.outcome == "rolled_back"
    world.set_alarm(ALARMS[0], "OK")
    good = run(world, world.scheduler("complete"), image="registry.example/app:v3")
    assert good.outcome == "completed", good.reason
    options = RolloutOptions(
        cluster=CLUSTER, service=SERVICE, image=None, timeout=300, interval=10, gate=None
    )
    fake = FakeTime(world.scheduler("complete"))
    back = undo(world.ecs, world.cloudwatch, options, clock=fake.monotonic, sleep=fake.sleep)
    assert back.outcome == "completed", back.reason
    assert back.task_definition == world.first_revision  # not v2-bad
    image = world.task_definition(world.service()["taskDefinition"])["containerDefinitions"][0]
    assert image["image"] == "registry.example/app:v1"


def test_an_alarm_that_fires_and_clears_between_two_polls_fails_the_bake(world: World) -> None:
    scheduler = world.scheduler("complete", "complete")

    def blip(tick: int) -> None:
        if tick == 4:  # ALARM for a moment, OK again before the next poll
            world.set_alarm(ALARMS[0], "ALARM")
            world.set_alarm(ALARMS[0], "OK")

    scheduler.hooks.append(blip)
    result = run(world, scheduler)
    assert result.outcome == "rolled_back", result.reason
    assert f"{ALARMS[0]} left OK during the bake" in (result.reason or "")


def test_insufficient_data_at_the_end_of_the_bake_is_not_ok(world: World) -> None:
    world.set_alarm(ALARMS[1], "INSUFFICIENT_DATA")
    result = run(world, world.scheduler("complete", "complete"))
    assert result.outcome == "rolled_back"
    assert f"not proven OK after the bake: {ALARMS[1]}=INSUFFICIENT_DATA" in (result.reason or "")


def test_insufficient_data_allowed_when_configured(world: World) -> None:
    world.set_alarm(ALARMS[1], "INSUFFICIENT_DATA")
    result = run(world, world.scheduler("complete"), allow_insufficient_data=True)
    assert result.outcome == "completed", result.reason


def test_rollback_that_fails_too_exits_5_with_state_and_manual_steps(world: World) -> None:
    result = run(world, world.scheduler("fail", "fail"))
    assert result.outcome == "rollback_failed" and result.exit_code == 5
    assert "the rollback to" in (result.reason or "") and (result.reason or "").count("FAILED") == 2
    assert result.final_deployments and result.final_deployments[0].rollout_state == "FAILED"
    steps = "\n".join(result.manual_steps)
    assert (
        f"aws ecs update-service --cluster {CLUSTER} --service {SERVICE} "
        f"--task-definition {world.first_revision}"
    ) in steps
    assert "migctl rollout status" in steps and "stays registered" in steps


def test_rollback_refused_by_aws_exits_5(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """update_service itself fails on the way back (permissions, outage), at the botocore call."""
    original = BaseClient._make_api_call

    def refuse_rollback(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "UpdateService" and params.get("taskDefinition") == world.first_revision:
            error = {"Code": "AccessDeniedException", "Message": "the pipeline role cannot update"}
            raise ClientError({"Error": error}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", refuse_rollback)
    result = run(world, world.scheduler("fail"))
    assert result.outcome == "rollback_failed" and result.exit_code == 5
    assert "AccessDeniedException" in (result.reason or "")
    assert result.final_deployments[0].task_definition == second_revision()
    assert result.final_deployments[0].rollout_state == "FAILED"
    assert any(world.first_revision in line for line in result.manual_steps)


def test_no_rollback_stops_at_failed_exit_1(world: World, calls: Calls) -> None:
    result = run(world, world.scheduler("fail"), rollback=False)
    assert result.outcome == "failed" and result.exit_code == 1
    assert calls.count("UpdateService") == 1
    assert world.service()["taskDefinition"] == second_revision()
    assert result.manual_steps and result.final_deployments


def test_dry_run_registers_and_updates_nothing(world: World, calls: Calls) -> None:
    result = run(world, world.scheduler(), dry_run=True)
    assert result.outcome == "dry_run" and result.exit_code == 0
    assert result.task_definition is None
    assert calls.count("RegisterTaskDefinition") == 0 and calls.count("UpdateService") == 0
    assert result.plan is not None
    assert '-      "image": "registry.example/app:v1",' in result.plan.diff
    assert f'+      "image": "{NEW_IMAGE}",' in result.plan.diff
    assert world.ecs.list_task_definitions(familyPrefix=FAMILY)["taskDefinitionArns"] == [
        world.first_revision
    ]


def test_gate_alarm_already_firing_refuses_before_any_change(world: World, calls: Calls) -> None:
    world.set_alarm(ALARMS[0], "ALARM")
    with pytest.raises(CheckFailed, match="already in ALARM"):
        run(world, world.scheduler())
    steps: list[RolloutStep] = []
    with pytest.raises(CheckFailed, match="already in ALARM"):  # the dry run says it too
        run(world, world.scheduler(), dry_run=True, steps=steps)
    assert [s.event for s in steps] == ["plan"]  # after showing what it would do
    assert calls.count("RegisterTaskDefinition") == 0 and calls.count("UpdateService") == 0


def test_a_service_with_no_task_is_refused_a_rollout(world: World, calls: Calls) -> None:
    """With desiredCount 0, no task would ever run the image: nothing could prove it works."""
    world.ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    world.control.complete()
    with pytest.raises(CheckFailed, match="desiredCount 0"):
        run(world, world.scheduler())
    assert calls.count("RegisterTaskDefinition") == 0


def test_service_mid_deployment_is_refused(world: World, calls: Calls) -> None:
    world.control.set_deployment(rollout_state="IN_PROGRESS", running=1)
    with pytest.raises(CheckFailed, match="mid-deployment"):
        run(world, world.scheduler())
    assert calls.count("RegisterTaskDefinition") == 0


def test_declined_confirmation_changes_nothing(world: World, calls: Calls) -> None:
    seen: list[str] = []
    fake = FakeTime()
    result = rollout(
        world.ecs,
        world.cloudwatch,
        RolloutOptions(CLUSTER, SERVICE, image=NEW_IMAGE, bake_seconds=0),
        confirm=lambda plan: seen.append(plan.summary()) is not None,
        clock=fake.monotonic,
        sleep=fake.sleep,
    )
    assert result.outcome == "aborted" and result.exit_code == 1
    assert seen == [
        f"rollout {CLUSTER}/{SERVICE}: {FAMILY}:1 -> a new revision "
        f"(app: registry.example/app:v1 -> {NEW_IMAGE})"
    ]
    assert calls.count("RegisterTaskDefinition") == 0 and calls.count("UpdateService") == 0


def test_update_refused_changes_nothing_and_is_exit_3(
    world: World, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = BaseClient._make_api_call

    def refuse_update(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "UpdateService":
            raise ClientError({"Error": {"Code": "ServerException", "Message": "boom"}}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", refuse_update)
    with pytest.raises(OperationalError, match="the service still runs") as caught:
        run(world, world.scheduler())
    assert caught.value.exit_code == 3
    assert world.service()["taskDefinition"] == world.first_revision
    assert calls.count("RegisterTaskDefinition") == 1  # the new revision exists, unused


def test_interrupt_while_following_reports_the_state_and_reraises(world: World) -> None:
    steps: list[RolloutStep] = []

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rollout(
            world.ecs,
            world.cloudwatch,
            RolloutOptions(CLUSTER, SERVICE, image=NEW_IMAGE, bake_seconds=0),
            on_step=steps.append,
            clock=FakeTime().monotonic,
            sleep=interrupt,
        )
    assert steps[-1].event == "interrupted" and "half-deployed" in steps[-1].message
    assert any(world.first_revision in line for line in steps[-1].details["manual_steps"])


def throttle_after_update(monkeypatch: pytest.MonkeyPatch, throttle: dict[str, float]) -> list[str]:
    """Once UpdateService was called, AWS throttles each operation of ``throttle`` as many
    times as it says (``math.inf``: always). Returns the UpdateService calls seen."""
    original = BaseClient._make_api_call
    updated: list[str] = []

    def throttling(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "UpdateService":
            updated.append(operation)
        elif updated and throttle.get(operation, 0) > 0:
            throttle[operation] -= 1
            error = {"Code": "ThrottlingException", "Message": "Rate exceeded"}
            raise ClientError({"Error": error}, operation)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", throttling)
    return updated


def test_throttled_ecs_and_cloudwatch_calls_slow_the_polls_instead_of_failing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ECS and CloudWatch throttle (after botocore's retries): the wait backs off and goes on."""
    throttle: dict[str, float] = {"DescribeServices": 3, "DescribeAlarms": 2}
    throttle_after_update(monkeypatch, throttle)
    steps: list[RolloutStep] = []
    fake = FakeTime(world.scheduler("complete"))
    result = rollout(
        world.ecs,
        world.cloudwatch,
        RolloutOptions(
            cluster=CLUSTER, service=SERVICE, image=NEW_IMAGE, bake_seconds=60, timeout=600,
            interval=10, gate=AlarmSelector(names=ALARMS),
        ),
        on_step=steps.append,
        clock=fake.monotonic,
        sleep=fake.sleep,
    )  # fmt: skip
    assert result.outcome == "completed", result.reason
    assert throttle == {"DescribeServices": 0, "DescribeAlarms": 0}
    assert 20 in fake.sleeps  # a throttled poll waited twice the interval


def test_a_healthy_deployment_is_never_rolled_back_because_aws_throttled_every_look(
    world: World, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DescribeServices throttled from the update to the deadline: the deployment (which
    completes meanwhile) is not known to have failed, so it stays; exit 1 with what to check."""
    updated = throttle_after_update(monkeypatch, {"DescribeServices": math.inf})
    result = run(world, world.scheduler("complete"))
    monkeypatch.undo()
    assert (result.outcome, result.exit_code) == ("failed", 1), result.reason
    assert "throttled" in (result.reason or "") and "not seen" in (result.reason or "")
    assert len(updated) == 1  # no rollback: one UpdateService, ours
    assert world.service()["taskDefinition"] == second_revision()
    assert any("its end was not seen" in step for step in result.manual_steps)
