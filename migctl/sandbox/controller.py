"""The sandbox controller: makes the local AWS endpoint behave the way AWS does where moto does not.

It runs inside the moto server's process (``migctl.sandbox.server``), so it
reads and writes moto's backend objects directly:

- **DMS.** Starting the task starts real logical replication from the source
  to the target cluster (:mod:`migctl.sandbox.replication`); resuming enables
  it again, reloading copies afresh, stopping disables it, deleting it drops it.
  Each start reads the task's settings and its source endpoint's, so that what
  DMS changes in transit changes here too (:mod:`migctl.sandbox.transit`). The task's status,
  stats and table statistics follow the replication (a change the target
  refuses, such as a duplicate key, puts its table in error and fails the
  task, as DMS stops on a table error), and ``CDCLatencySource``,
  ``CDCLatencyTarget`` and ``CDCIncomingChanges`` are published to CloudWatch,
  with the dimensions AWS uses, from the real lag.
- **ECS.** A deployment that ``update_service`` started moves to ``COMPLETED``
  ``[sandbox] task_start_seconds`` later, or to ``FAILED`` (with the circuit
  breaker's rollback) when its image tag contains ``broken``. A changed desired
  count without a new deployment takes effect at the next tick (on a scale-down
  the emulated application stops writing first). Each running task is a
  registered (healthy) target of its service's target group.
- **The load balancer.** Only the service whose target group the listener
  forwards to takes traffic: the emulated application on ECS writes from that
  service's tasks only (the cutover's standby runs without traffic until the
  switch).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migctl.sandbox import moto_dms
from migctl.sandbox.environment import APP_ROLE
from migctl.sandbox.moto_ecs import IN_PROGRESS, MotoEcsService
from migctl.sandbox.replication import (
    REVERSE_NAME,
    REVERSE_ROLE,
    Replication,
    ReplicationSnapshot,
)
from migctl.sandbox.transit import TransitRules
from migctl.sandbox.writer import ECS_KEYS, EcsWriter

log = logging.getLogger("migctl.sandbox")
DEPLOY_SECONDS = 2.0
START_TYPES_THAT_COPY = ("start-replication", "reload-target")


@dataclass
class _TaskTracker:
    starts_seen: int = 0
    stops_seen: int = 0
    full_load_finished: dt.datetime | None = None
    started_at: float = 0.0
    forward: bool = False  # it started the forward replication


@dataclass
class Controller:
    source_dsn: str
    target_dsn: str
    region: str = "us-east-1"
    interval: float = 0.5
    sandbox_dir: str | None = None  # where sandbox.json says whether traffic is on
    _replication: Replication = field(init=False)
    _reverse: Replication = field(init=False)
    _tasks: dict[str, _TaskTracker] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _writer: EcsWriter | None = None

    def __post_init__(self) -> None:
        self._replication = Replication(self.source_dsn, self.target_dsn)
        # The reverse task: from the target's slot to the source, writing as REVERSE_ROLE.
        self._reverse = Replication(
            self.target_dsn,
            make_conninfo(self.source_dsn, user=REVERSE_ROLE),
            name=REVERSE_NAME,
            slot=REVERSE_NAME,
        )

    def _source_endpoint(self, task: Any) -> Any:
        backend = moto_dms.backend(region=self.region)
        return next(
            (e for e in backend.endpoints.values() if e.endpoint_arn == task.source_endpoint_arn),
            None,
        )

    def transit_rules(self, task: Any) -> TransitRules:
        """What DMS changes in transit for this task: its settings, its source endpoint's."""
        endpoint = self._source_endpoint(task)
        return TransitRules.from_dms(
            task.replication_task_settings, getattr(endpoint, "postgre_sql_settings", None)
        )

    def replication_of(self, task: Any) -> Replication:
        """The reverse task reads the target: its source endpoint is the target's port."""
        endpoint = self._source_endpoint(task)
        target_port = conninfo_to_dict(self.target_dsn).get("port")
        if endpoint is not None and str(getattr(endpoint, "port", "")) == str(target_port):
            return self._reverse
        return self._replication

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # keep the sandbox alive; the log says what went wrong
                log.exception("sandbox controller tick failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.stop()

    def tick(self) -> None:
        self._tick_dms()
        self._tick_ecs()

    # --- DMS -------------------------------------------------------------

    def _tick_dms(self) -> None:

        backend = moto_dms.backend(region=self.region)
        tasks = list(backend.replication_tasks.values())
        self._forget_deleted({task.arn for task in tasks})
        for task in tasks:
            if task.arn not in self._tasks:
                # The controller, not moto, says when a start or stop has taken effect.
                moto_dms.set_task(task.arn, after_start=["starting"], after_stop=["stopping"])
            tracker = self._tasks.setdefault(task.arn, _TaskTracker())
            extras = task.migctl
            replication = self.replication_of(task)
            for call in extras.start_calls[tracker.starts_seen :]:
                self._start(task, tracker, replication, call)
            tracker.starts_seen = len(extras.start_calls)
            if extras.stop_calls > tracker.stops_seen:
                replication.stop()
                tracker.stops_seen = extras.stop_calls
                lsn = replication.confirmed_lsn()
                checkpoint = f"checkpoint:V1#{tracker.stops_seen}#{lsn}#0#0#*#0#0" if lsn else None
                moto_dms.set_task(task.arn, status="stopped", recovery_checkpoint=checkpoint)
            if task.status == "running":
                self._follow(task, tracker, backend, replication)

    def _forget_deleted(self, arns: set[str]) -> None:
        """A deleted forward task takes its replication and transit triggers with it."""
        for arn in set(self._tasks) - arns:
            tracker = self._tasks.pop(arn)
            if tracker.forward:
                self._replication.teardown()
                log.info("DMS task %s deleted: its replication is dropped", arn)

    def _start(
        self, task: Any, tracker: _TaskTracker, replication: Replication, call: dict[str, Any]
    ) -> None:
        start_type = call["StartReplicationTaskType"]
        forward = replication is self._replication
        try:
            replication.start(
                reload=start_type == "reload-target",
                position=call.get("CdcStartPosition"),
                # Not emulated on the way back: its apply on the source would need the triggers.
                rules=self.transit_rules(task) if forward else None,
            )
        except Exception as exc:
            moto_dms.set_task(
                task.arn,
                status="failed",
                stop_reason="Stop Reason FATAL_ERROR",
                last_failure_message=f"sandbox replication could not start: {exc}",
            )
            return
        tracker.started_at = time.monotonic()
        tracker.forward = forward
        if start_type in START_TYPES_THAT_COPY:
            tracker.full_load_finished = None
        moto_dms.set_task(task.arn, status="running")

    def _follow(
        self, task: Any, tracker: _TaskTracker, backend: Any, replication: Replication
    ) -> None:

        snap = replication.snapshot()
        if not snap.exists:
            return
        if snap.apply_errors:
            self._fail_apply(task, snap, replication)
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

    def _fail_apply(self, task: Any, snap: ReplicationSnapshot, replication: Replication) -> None:
        """The target refused a change (a duplicate key, a missing table): as DMS does with
        ``TableErrorPolicy = STOP_TASK``, the table is in error and the task fails, stopped."""
        replication.stop()
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

        wanted: str | None = None
        for account, regions in ecs_backends.items():
            backend = regions[self.region]
            services = list(backend.services.values())
            if any(_scaling_down(s) for s in services):
                # A stopped task writes nothing: the writer stops before the service says so.
                self._follow_writer(None)
            for service in services:
                self._deploy(account, backend, service)
                _scale(service)
                _register_targets(account, self.region, service)
            serving = _forwarded_groups(account, self.region)
            for service in services:
                wanted = wanted or self._writes_to(account, backend, service, serving)
        self._follow_writer(wanted)

    def _deploy(self, account: str, backend: Any, service: Any) -> None:
        """Complete (or fail) a PRIMARY deployment once its tasks have had time to start."""
        deployment: dict[str, Any]
        for deployment in list(service.deployments):
            if (
                deployment.get("rolloutState") != IN_PROGRESS
                or deployment.get("status") != "PRIMARY"
            ):
                continue
            age = (dt.datetime.now(dt.UTC) - _aware(deployment["createdAt"])).total_seconds()
            if age < self._sandbox().get("task_start_seconds", DEPLOY_SECONDS):
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

    def _writes_to(self, account: str, backend: Any, service: Any, serving: set[str]) -> str | None:
        """The DSN the application on ECS writes to now, or None (no Aurora image serving, the
        load balancer forwards to another service's target group, or the sandbox's traffic is
        off)."""
        if not self._traffic_on() or int(getattr(service, "running_count", 0) or 0) < 1:
            return None
        groups = {lb.get("targetGroupArn") for lb in service.load_balancers or []}
        if groups and serving and not groups & serving:
            return None  # it runs, but takes no traffic
        taskdef_arn = str(service.task_definition)
        if any(
            d.get("rolloutState") == IN_PROGRESS and d.get("status") == "PRIMARY"
            for d in service.deployments
        ):
            return None  # tasks of the new revision are not serving yet
        if "aurora" not in _image_of(backend, taskdef_arn).rsplit(":", 1)[-1]:
            return None
        return _database_of(account, self.region, backend, taskdef_arn)

    def _follow_writer(self, dsn: str | None) -> None:
        current = self._writer
        if current is not None and (current.dsn != dsn or not current.alive):
            current.stop()
            log.info("the application on ECS stopped writing")
            self._writer = None
        if dsn is not None and self._writer is None and self.sandbox_dir is not None:
            self._writer = EcsWriter(dsn, Path(self.sandbox_dir) / "logs" / ECS_KEYS)
            self._writer.start()
            log.info("the application on ECS writes to %s", conninfo_to_dict(dsn).get("port"))

    def _sandbox(self) -> dict[str, Any]:
        """sandbox.json as it is now (empty without one): traffic and task start change in it."""
        if self.sandbox_dir is None:
            return {}
        try:
            state = json.loads((Path(self.sandbox_dir) / "sandbox.json").read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _traffic_on(self) -> bool:
        state = self._sandbox()
        return "traffic" in state.get("processes", {}) and bool(state.get("ecs_writer", True))


def _forwarded_groups(account: str, region: str) -> set[str]:
    """The target groups the load balancers' listeners forward to now."""
    from moto.elbv2.models import elbv2_backends

    groups: set[str] = set()
    for balancer in elbv2_backends[account][region].load_balancers.values():
        for listener in balancer.listeners.values():
            for action in listener.default_actions:
                data = action.data
                if data.get("TargetGroupArn"):
                    groups.add(data["TargetGroupArn"])
                weighted = data.get("ForwardConfig", {}).get("TargetGroups", [])
                groups.update(g["TargetGroupArn"] for g in weighted if int(g.get("Weight", 1)) > 0)
    return groups


def _scaling_down(service: Any) -> bool:
    primary = next((d for d in service.deployments if d.get("status") == "PRIMARY"), None)
    in_progress = primary is not None and primary.get("rolloutState") == IN_PROGRESS
    return not in_progress and int(service.desired_count) < int(service.running_count or 0)


def _scale(service: Any) -> None:
    """A changed desired count without a new deployment (a scale-down, a scale-up) takes effect:
    ECS starts or stops tasks of the PRIMARY deployment."""
    primary = next((d for d in service.deployments if d.get("status") == "PRIMARY"), None)
    if primary is None or primary.get("rolloutState") == IN_PROGRESS:
        return
    desired = int(service.desired_count)
    if int(service.running_count) != desired or int(primary.get("desiredCount", 0)) != desired:
        service.running_count = desired
        service.pending_count = 0
        primary.update(desiredCount=desired, runningCount=desired, pendingCount=0)


def _register_targets(account: str, region: str, service: Any) -> None:
    """Each running task is a healthy target of the service's target groups, as ECS registers
    them (moto reports a registered target healthy); a stopped one is deregistered."""
    from moto.elbv2.models import elbv2_backends

    groups = elbv2_backends[account][region].target_groups
    base = zlib.crc32(str(service.name).encode()) % 200
    wanted = {f"10.43.{base}.{i + 1}" for i in range(int(service.running_count or 0))}
    for lb in service.load_balancers or []:
        group = groups.get(str(lb.get("targetGroupArn")))
        if group is None:
            continue
        current = set(group.targets)
        if wanted - current:
            group.register([{"Id": ip, "Port": group.port} for ip in sorted(wanted - current)])
        if current - wanted:
            group.deregister([{"Id": ip} for ip in sorted(current - wanted)])


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


def _database_of(account: str, region: str, backend: Any, taskdef_arn: str) -> str | None:
    """The database of the task definition's DB_SECRET, as the application role."""
    from moto.secretsmanager.models import secretsmanager_backends

    try:
        taskdef = backend.describe_task_definition(taskdef_arn)
        arn = next(
            s["valueFrom"]
            for c in taskdef.container_definitions
            for s in c.get("secrets", [])
            if s.get("name") == "DB_SECRET"
        )
        secrets: Any = secretsmanager_backends[account][region]
        secret = secrets.get_secret_value(arn, None, None)
        value = json.loads(secret["SecretString"])
    except (StopIteration, KeyError, ValueError, LookupError):
        return None
    return make_conninfo(
        host=value["host"],
        port=value["port"],
        dbname=value["dbname"],
        user=APP_ROLE,
        sslmode="disable",
    )


def _image_of(backend: Any, taskdef_arn: str) -> str:
    try:
        taskdef = backend.describe_task_definition(taskdef_arn)
    except Exception:
        return ""
    images = [c.get("image", "") for c in taskdef.container_definitions]
    return images[0] if images else ""
