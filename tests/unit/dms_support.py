"""A DMS task in moto (patched by migctl.sandbox.moto_dms) and CDC metrics in moto's CloudWatch.

Used with the ``aws`` fixture. Clients here make one attempt per call, so a
throttling test sees the ThrottlingException without botocore's retry sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from migctl.dms.task import TaskRef, resolve_task
from migctl.sandbox import moto_dms

REGION = "us-east-1"


@dataclass
class DmsWorld:
    dms: Any
    cloudwatch: Any
    task_arn: str
    task_name: str
    instance_id: str
    calls: list[str] = field(default_factory=list)

    @property
    def resource_id(self) -> str:
        return self.task_arn.rsplit(":", 1)[1]

    def ref(self) -> TaskRef:
        return resolve_task(self.dms, self.task_name)

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


def client(service: str, *, max_attempts: int = 1) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts})
    return boto3.client(service, region_name=REGION, config=config)


def make_task(name: str = "payments-cdc", *, migration_type: str = "full-load-and-cdc") -> DmsWorld:
    """A replication instance, source and target endpoints and a task, as the stack creates."""
    moto_dms.install()
    dms = client("dms")
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier="migctl-test-ri", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    endpoints = [
        dms.create_endpoint(
            EndpointIdentifier=f"{name}-{kind}",
            EndpointType=kind,
            EngineName=engine,
            ServerName="db.invalid",
            Port=5432,
            DatabaseName="payments",
            Username="dms",
        )["Endpoint"]["EndpointArn"]
        for kind, engine in (("source", "postgres"), ("target", "aurora-postgresql"))
    ]
    task = dms.create_replication_task(
        ReplicationTaskIdentifier=name,
        SourceEndpointArn=endpoints[0],
        TargetEndpointArn=endpoints[1],
        ReplicationInstanceArn=instance["ReplicationInstanceArn"],
        MigrationType=migration_type,
        TableMappings=json.dumps(
            {
                "rules": [
                    {
                        "rule-type": "selection",
                        "rule-id": "1",
                        "rule-name": "all",
                        "object-locator": {"schema-name": "public", "table-name": "%"},
                        "rule-action": "include",
                    }
                ]
            }
        ),
    )["ReplicationTask"]
    world = DmsWorld(dms, client("cloudwatch"), task["ReplicationTaskArn"], name, "migctl-test-ri")
    dms.describe_replication_tasks(
        WithoutSettings=True
    )  # creating -> ready, as AWS does after a while
    for c in (world.dms, world.cloudwatch):
        c.meta.events.register("before-call.*.*", lambda model, **_: world.calls.append(model.name))
    return world


def minute_ago(n: int, now: dt.datetime | None = None) -> dt.datetime:
    base = now or dt.datetime.now(dt.UTC)
    return base - dt.timedelta(seconds=60 * n + 1)


def put_cdc_metrics(
    world: DmsWorld,
    *,
    latency_target: list[float],
    incoming: list[float],
    latency_source: list[float] | None = None,
    task_dimension: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """One datapoint per minute, oldest first, the newest a second before ``now``.

    ``task_dimension`` defaults to the ARN's resource id (what DMS publishes under).
    """
    dims = [
        {"Name": "ReplicationInstanceIdentifier", "Value": world.instance_id},
        {"Name": "ReplicationTaskIdentifier", "Value": task_dimension or world.resource_id},
    ]
    series = {"CDCLatencyTarget": latency_target, "CDCIncomingChanges": incoming}
    if latency_source is not None:
        series["CDCLatencySource"] = latency_source
    cw = client("cloudwatch")
    for metric, values in series.items():
        data = [
            {
                "MetricName": metric,
                "Dimensions": dims,
                "Timestamp": minute_ago(len(values) - 1 - i, now),
                "Value": v,
            }
            for i, v in enumerate(values)
        ]
        cw.put_metric_data(Namespace="AWS/DMS", MetricData=data)


def set_full_load(
    world: DmsWorld,
    *,
    percent: int,
    loaded: int,
    loading: int,
    queued: int,
    errored: int = 0,
    finished: bool = False,
) -> None:
    now = dt.datetime.now(dt.UTC)
    moto_dms.set_task(
        world.task_arn,
        stats={
            "FullLoadProgressPercent": percent,
            "TablesLoaded": loaded,
            "TablesLoading": loading,
            "TablesQueued": queued,
            "TablesErrored": errored,
            "ElapsedTimeMillis": 754_000,
            "FullLoadFinishDate": now if finished else None,
        },
    )


def start_running(world: DmsWorld) -> None:
    """Started once, now running (as after `migctl dms start`)."""
    world.dms.start_replication_task(
        ReplicationTaskArn=world.task_arn, StartReplicationTaskType="start-replication"
    )
    moto_dms.set_task(world.task_arn, status="running")


def in_cdc(world: DmsWorld, tables: int = 3) -> None:
    start_running(world)
    set_full_load(world, percent=100, loaded=tables, loading=0, queued=0, finished=True)


class FakeTime:
    """Clocks that only move when the watch sleeps; runs ``between_polls`` on each sleep.

    ``wall()`` is the UTC time the watch uses for its metrics window: ``base`` plus the slept time.
    """

    def __init__(
        self, between_polls: Callable[[int], None] | None = None, base: dt.datetime | None = None
    ) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.between_polls = between_polls
        self.base = base or dt.datetime.now(dt.UTC)

    def clock(self) -> float:
        return self.now

    def wall(self) -> dt.datetime:
        return self.base + dt.timedelta(seconds=self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.between_polls:
            self.between_polls(len(self.sleeps))
