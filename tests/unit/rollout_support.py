"""The rollout tests' world: an ECS service in moto that deploys like ECS, a fake clock, a call spy.

moto's ECS does not move deployments, so :class:`Scheduler` plays ECS from
inside the moto process: each time migctl sleeps, it advances the PRIMARY
deployment according to its scripted fate (complete, fail, vanish, hang ...).
The ``world`` and ``calls`` fixtures (tests/unit/conftest.py) are built from these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from migctl.sandbox import moto_ecs
from migctl.sandbox.moto_ecs import MotoEcsService

CLUSTER = "payments-test"
SERVICE = "payments"
FAMILY = "payments-app"
TAGS = [{"key": "team", "value": "payments"}, {"key": "cost-center", "value": "4242"}]
ALARMS = ("payments-test-5xx", "payments-test-latency")


@dataclass
class Calls:
    """Every AWS API call made through botocore in this test, in order."""

    items: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def ops(self, service: str = "ecs") -> list[str]:
        return [op for svc, op, _ in self.items if svc == service]

    def count(self, operation: str, service: str = "ecs") -> int:
        return self.ops(service).count(operation)

    def params(self, operation: str, service: str = "ecs") -> list[dict[str, Any]]:
        return [p for svc, op, p in self.items if svc == service and op == operation]


def spy_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Record every botocore call (service, operation, params) until the test ends."""
    recorder = Calls()
    original = BaseClient._make_api_call

    def spy(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        recorder.items.append(
            (self.meta.service_model.service_name, operation_name, dict(api_params))
        )
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    return recorder


class Scheduler:
    """Plays the ECS scheduler: on each tick, the PRIMARY deployment in progress meets its fate.

    Fates are taken in order by each new deployment (migctl's, then the rollback's):
    ``complete`` (one task, then steady), ``fail`` (FAILED on the 2nd tick),
    ``fail_cb`` (FAILED and the circuit breaker rolls back), ``vanish``,
    ``replaced`` (someone else deploys revision 1 again), ``hang`` (never moves).
    Without a fate left, a deployment completes.
    """

    def __init__(self, control: MotoEcsService, fates: tuple[str, ...] = ()) -> None:
        self.control = control
        self.fates = list(fates)
        self.fate_of: dict[str, str] = {}
        self.ticks: dict[str, int] = {}
        self.hooks: list[Callable[[int], None]] = []  # extra actions, called with the tick count
        self.tick_count = 0

    def __call__(self) -> None:
        self.tick_count += 1
        for hook in self.hooks:
            hook(self.tick_count)
        try:
            deployment = self.control.deployment()
        except KeyError:
            return
        if deployment["rolloutState"] != "IN_PROGRESS":
            return
        dep_id = deployment["id"]
        if dep_id not in self.fate_of:
            self.fate_of[dep_id] = self.fates.pop(0) if self.fates else "complete"
        fate = self.fate_of[dep_id]
        tick = self.ticks[dep_id] = self.ticks.get(dep_id, 0) + 1
        if fate == "complete":
            if tick == 1:
                self.control.set_deployment(dep_id, running=1, pending=1)
                self.control.add_event(f"(service {SERVICE}) has started 1 tasks: (task 0001).")
            else:
                self.control.complete(dep_id)
        elif fate == "fail" and tick >= 2:
            self.control.fail(dep_id)
        elif fate == "fail_cb":
            self.control.fail(dep_id, circuit_breaker_rollback=True)
        elif fate == "vanish":
            self.control.remove(dep_id)
        elif fate == "replaced":
            first = f"arn:aws:ecs:us-east-1:123456789012:task-definition/{FAMILY}:1"
            moto_ecs.start_deployment(self.control.service, first)


class FakeTime:
    """Stands in for the ``time`` module in migctl.rollout.deploy: sleeping advances the clock and ECS."""

    def __init__(self, on_sleep: Callable[[], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()


@dataclass
class World:
    ecs: Any
    cloudwatch: Any
    control: MotoEcsService
    first_revision: str

    def scheduler(self, *fates: str) -> Scheduler:
        return Scheduler(self.control, fates)

    def task_definition(self, arn: str) -> dict[str, Any]:
        return dict(self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])

    def service(self) -> dict[str, Any]:
        return dict(self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0])

    def set_alarm(self, name: str, state: str) -> None:
        self.cloudwatch.set_alarm_state(
            AlarmName=name, StateValue=state, StateReason=f"test: {state}"
        )


def build_world(containers: tuple[str, ...] = ("app",)) -> World:
    ecs = boto3.client("ecs", region_name="us-east-1")
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    for name in ALARMS:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanThreshold",
        )
    ecs.create_cluster(clusterName=CLUSTER)
    definitions = [
        {
            "name": name,
            "image": f"registry.example/{name}:v1",
            "memory": 512,
            "essential": index == 0,
            "environment": [{"name": "DB_HOST", "value": "onprem.example"}],
        }
        for index, name in enumerate(containers)
    ]
    registered = ecs.register_task_definition(
        family=FAMILY,
        containerDefinitions=definitions,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="1024",
        executionRoleArn="arn:aws:iam::123456789012:role/exec",
        tags=TAGS,
    )["taskDefinition"]
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=registered["taskDefinitionArn"],
        desiredCount=2,
        launchType="FARGATE",
    )
    control = MotoEcsService(CLUSTER, SERVICE)
    control.complete()
    return World(ecs, cloudwatch, control, registered["taskDefinitionArn"])


@contextlib.contextmanager
def deploying_moto() -> Iterator[None]:
    """moto with realistic ECS deployments (migctl.sandbox.moto_ecs) for the duration."""
    was_installed = moto_ecs.installed()
    moto_ecs.install()
    try:
        yield
    finally:
        if not was_installed:
            moto_ecs.uninstall()
