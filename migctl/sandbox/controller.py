"""The sandbox controller: makes the local AWS endpoint behave the way AWS does where moto does not.

It runs inside the moto server's process (``migctl.sandbox.server``), so it
reads and writes moto's backend objects directly:

- **DMS.** Starting the task starts real logical replication from the source
  to the target cluster (:mod:`migctl.sandbox.replication`); resuming enables
  it again, reloading copies afresh, stopping disables it. The task's status,
  stats and table statistics follow the replication (a change the target
  refuses, such as a duplicate key, puts its table in error and fails the
  task, as DMS stops on a table error), and ``CDCLatencySource``,
  ``CDCLatencyTarget`` and ``CDCIncomingChanges`` are published to CloudWatch,
  with the dimensions AWS uses, from the real lag.
- **ECS.** A deployment that ``update_service`` started moves to ``COMPLETED``
  a moment later, or to ``FAILED`` (with the circuit breaker's rollback) when
  its image tag contains ``broken``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from migctl.sandbox import moto_dms
from migctl.sandbox.moto_ecs import IN_PROGRESS, MotoEcsService
from migctl.sandbox.replication import Replication, ReplicationSnapshot

log = logging.getLogger("migctl.sandbox")
DEPLOY_SECONDS = 2.0
START_TYPES_THAT_COPY = ("start-replication", "reload-target")


@dataclass
class _TaskTracker:
    starts_seen: int = 0
    stops_seen: int = 0
    full_load_finished: dt.datetime | None = None
    started_at: float = 0.0


@dataclass
class Controller:
    source_dsn: str
    target_dsn: str
    region: str = "us-east-1"
    interval: float = 0.5
    _replication: Replication = field(init=False)
    _tasks: dict[str, _TaskTracker] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._replication = Replication(self.source_dsn, self.target_dsn)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # keep the sandbox alive; the log says what went wrong
                log.exception("sandbox controller tick failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        self._tick_dms()
        self._tick_ecs()

    # --- DMS -------------------------------------------------------------

    def _tick_dms(self) -> None:

        backend = moto_dms.backend(region=self.region)
        for task in list(backend.replication_tasks.values()):
            if task.arn not in self._tasks:
                # The controller, not moto, says when a start or stop has taken effect.
                moto_dms.set_task(task.arn, after_start=["starting"], after_stop=["stopping"])
            tracker = self._tasks.setdefault(task.arn, _TaskTracker())
            extras = task.migctl
            for call in extras.start_calls[tracker.starts_seen :]:
                self._start(task, tracker, call["StartReplicationTaskType"])
            tracker.starts_seen = len(extras.start_calls)
            if extras.stop_calls > tracker.stops_seen:
                self._replication.stop()
                tracker.stops_seen = extras.stop_calls
                lsn = self._replication.confirmed_lsn()
                checkpoint = f"checkpoint:V1#{tracker.stops_seen}#{lsn}#0#0#*#0#0" if lsn else None
                moto_dms.set_task(task.arn, status="stopped", recovery_checkpoint=checkpoint)
            if task.status == "running":
                self._follow(task, tracker, backend)

    def _start(self, task: Any, tracker: _TaskTracker, start_type: str) -> None:

        try:
            self._replication.start(reload=start_type == "reload-target")
        except Exception as exc:
            moto_dms.set_task(
                task.arn,
                status="failed",
                stop_reason="Stop Reason FATAL_ERROR",
                last_failure_message=f"sandbox replication could not start: {exc}",
            )
            return
        tracker.started_at = time.monotonic()
        if start_type in START_TYPES_THAT_COPY:
            tracker.full_load_finished = None
        moto_dms.set_task(task.arn, status="running")

    def _follow(self, task: Any, tracker: _TaskTracker, backend: Any) -> None:

        snap = self._replication.snapshot()
        if not snap.exists:
            return
        if snap.apply_errors:
            self._fail_apply(task, snap)
            return
        if snap.full_load_done and tracker.full_load_finished is None:
            tracker.full_load_finished = dt.datetime.now(dt.UTC)
        loading = sum(t.state == "Full load" for t in snap.tables)
        queued = sum(t.state == "Before load" for t in snap.tables)
        stats: dict[str, Any] = {
            "FullLoadProgressPercent": int(100 * snap.tables_loaded / snap.tables_total)
            if snap.tables_total
            else 0,
            "TablesLoaded": snap.tables_loaded,
            "TablesLoading": loading,
            "TablesQueued": queued,
            "TablesErrored": 0,
            "ElapsedTimeMillis": int((time.monotonic() - tracker.started_at) * 1000),
            "FullLoadFinishDate": tracker.full_load_finished,
        }
        moto_dms.set_task(task.arn, stats=stats)
        moto_dms.set_table_statistics(task.arn, [_table_row(t) for t in snap.tables])
        if tracker.full_load_finished is not None:
            self._publish_cdc_metrics(task, backend, snap)

    def _fail_apply(self, task: Any, snap: ReplicationSnapshot) -> None:
        """The target refused a change (a duplicate key, a missing table): as DMS does with
        ``TableErrorPolicy = STOP_TASK``, the table is in error and the task fails, stopped."""
        self._replication.stop()
        error = snap.last_error
        failing = error.table if error else None
        rows = [
            {**_table_row(t), "TableState": "Table error"}
            if (t.schema, t.table) == failing
            else _table_row(t)
            for t in snap.tables
        ]
        where = f" on {failing[0]}.{failing[1]}" if failing else ""
        message = error.message if error else "the target's apply failed"
        moto_dms.set_table_statistics(task.arn, rows)
        moto_dms.set_task(
            task.arn,
            status="failed",
            stats={"TablesErrored": 1 if failing else 0},
            stop_reason="Stop Reason FATAL_ERROR",
            last_failure_message=f"apply failed{where} ({snap.apply_errors} time(s)): {message}",
        )
        log.warning("DMS task %s failed: apply failed%s: %s", task.arn, where, message)

    def _publish_cdc_metrics(self, task: Any, backend: Any, snap: ReplicationSnapshot) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        instance = next(
            (
                i
                for i in backend.replication_instances.values()
                if i.arn == task.replication_instance_arn
            ),
            None,
        )
        if instance is None:
            return
        dims = [
            {"Name": "ReplicationInstanceIdentifier", "Value": instance.id},
            {"Name": "ReplicationTaskIdentifier", "Value": task.arn.rsplit(":", 1)[1]},
        ]
        values = {
            "CDCLatencySource": (snap.source_latency_seconds, "Seconds"),
            "CDCLatencyTarget": (snap.latency_seconds, "Seconds"),
            "CDCIncomingChanges": (float(snap.incoming_changes), "Count"),
        }
        cloudwatch = cloudwatch_backends[backend.account_id][self.region]
        cloudwatch.put_metric_data(
            "AWS/DMS",
            [
                # No Timestamp: moto stamps the datum with its own (naive UTC) clock.
                {"MetricName": name, "Dimensions": dims, "Value": value, "Unit": unit}
                for name, (value, unit) in values.items()
            ],
        )

    # --- ECS -------------------------------------------------------------

    def _tick_ecs(self) -> None:
        from moto.ecs.models import ecs_backends

        for account, regions in ecs_backends.items():
            backend = regions[self.region]
            for service in list(backend.services.values()):
                deployment: dict[str, Any]
                for deployment in list(service.deployments):
                    if (
                        deployment.get("rolloutState") != IN_PROGRESS
                        or deployment.get("status") != "PRIMARY"
                    ):
                        continue
                    age = (
                        dt.datetime.now(dt.UTC) - _aware(deployment["createdAt"])
                    ).total_seconds()
                    if age < DEPLOY_SECONDS:
                        continue
                    driver = MotoEcsService(
                        service.cluster_name, service.name, account_id=account, region=self.region
                    )
                    image = _image_of(backend, str(deployment["taskDefinition"]))
                    deployment_id = str(deployment["id"])
                    if "broken" in image.rsplit(":", 1)[-1]:
                        driver.fail(
                            deployment_id,
                            reason=f"ECS deployment circuit breaker: tasks of {image} failed their health checks.",
                            circuit_breaker_rollback=True,
                        )
                    else:
                        driver.complete(deployment_id)
                    log.info("deployment %s -> %s", deployment_id, deployment.get("rolloutState"))


def _table_row(t: Any) -> dict[str, Any]:
    return {
        "SchemaName": t.schema,
        "TableName": t.table,
        "TableState": t.state,
        "FullLoadRows": t.full_load_rows,
        "Inserts": t.inserts,
        "Updates": t.updates,
        "Deletes": t.deletes,
        "ValidationState": "Not enabled",
    }


def _aware(value: Any) -> dt.datetime:
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _image_of(backend: Any, taskdef_arn: str) -> str:
    try:
        taskdef = backend.describe_task_definition(taskdef_arn)
    except Exception:
        return ""
    images = [c.get("image", "") for c in taskdef.container_definitions]
    return images[0] if images else ""
