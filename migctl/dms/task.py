"""DMS replication tasks: find one, take a snapshot, derive its phase, read its table statistics.

Field facts (docs/field-notes.md, "AWS DMS"): no flag says a task is in CDC,
so the phase is derived; the CloudWatch task dimension is the resource id at
the end of the task ARN, not the task's name; ``describe_table_statistics`` is
paginated. Starting and stopping live in ``dms/control.py``, the CDC metrics in
``dms/metrics.py`` and the watch loop in ``dms/watch.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from migctl.dms.metrics import CdcMetrics, fetch_cdc_metrics
from migctl.errors import UsageError, aws_error_code, aws_error_message

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dms import DatabaseMigrationServiceClient

# Phases, in the order a task normally passes through them (docs/dms.md).
Phase = Literal["not-running", "starting", "full-load", "cdc", "stopped", "failed"]
NOT_RUNNING: Final = "not-running"
STARTING: Final = "starting"
FULL_LOAD: Final = "full-load"
CDC: Final = "cdc"
STOPPED: Final = "stopped"
FAILED: Final = "failed"
# Statuses that prove the task has run at least once.
_HAS_RUN_STATUSES = frozenset({"starting", "running", "stopping", "stopped", "failed"})
# Stop reasons of a task that stopped because it was asked to or was done: anything else
# (FATAL_ERROR, RECOVERABLE_ERROR, STOPPED_DUE_TO_LOW_DISK, ..., or a reason this list does
# not know) is a task that stopped on a problem.
CLEAN_STOPS: Final = frozenset(
    {
        "NORMAL",
        "FULL_LOAD_ONLY_FINISHED",
        "STOPPED_AFTER_FULL_LOAD",
        "STOPPED_AFTER_CACHED_EVENTS",
        "STOPPED_AFTER_DDL_APPLY",
        "STOPPED_AT_SERVER_TIME",
        "STOPPED_AT_COMMIT_TIME",
    }
)
# Table states of a table that is, or will be, replicated; any other ("Table error", "Table
# cancelled", "Table does not exist", or one this list does not know) is a problem.
GOOD_TABLE_STATES: Final = frozenset(
    {"Before load", "Full load", "Table completed", "Table is being reloaded"}
)


@dataclass(frozen=True)
class TaskRef:
    """A resolved task and the two CloudWatch dimension values that belong to it."""

    arn: str
    identifier: str  # the task's name (ReplicationTaskIdentifier in the DMS API)
    instance_arn: str
    instance_identifier: str  # CloudWatch dimension ReplicationInstanceIdentifier
    migration_type: str

    @property
    def resource_id(self) -> str:
        """CloudWatch dimension ReplicationTaskIdentifier: the end of the ARN, not the name."""
        return task_resource_id(self.arn)


@dataclass(frozen=True)
class TaskStats:
    full_load_percent: int | None
    tables_loaded: int
    tables_loading: int
    tables_queued: int
    tables_errored: int
    elapsed_seconds: float | None
    fresh_start_date: dt.datetime | None
    start_date: dt.datetime | None
    stop_date: dt.datetime | None
    full_load_start_date: dt.datetime | None
    full_load_finish_date: dt.datetime | None

    @property
    def full_load_finished(self) -> bool:
        """FullLoadFinishDate set (not from an earlier run) and no table loading or queued."""
        finish = self.full_load_finish_date
        if finish is None or self.tables_loading or self.tables_queued:
            return False
        started = self.full_load_start_date or self.fresh_start_date
        return started is None or _utc(finish) >= _utc(started)


@dataclass(frozen=True)
class TaskSnapshot:
    arn: str
    identifier: str
    migration_type: str
    status: str
    phase: Phase
    stop_reason: str | None
    last_failure_message: str | None
    recovery_checkpoint: str | None
    cdc_stop_position: str | None
    started_at: dt.datetime | None
    stats: TaskStats

    @property
    def has_run(self) -> bool:
        s = self.stats
        return (
            bool(self.started_at or s.start_date or s.fresh_start_date)
            or self.status in _HAS_RUN_STATUSES
        )

    @property
    def stopped_on_error(self) -> bool:
        """Stopped, with a stop reason that is not a clean stop (``CLEAN_STOPS``)."""
        if self.status != "stopped" or not self.stop_reason:
            return False
        return self.stop_reason.removeprefix("Stop Reason ").strip() not in CLEAN_STOPS

    @property
    def failure(self) -> str:
        """Stop reason and failure message in one line, for people."""
        parts = [p for p in (self.stop_reason, self.last_failure_message) if p]
        return "; ".join(parts) or "no stop reason reported"


@dataclass(frozen=True)
class TableStats:
    schema: str
    table: str
    state: str
    full_load_rows: int
    full_load_error_rows: int
    inserts: int
    updates: int
    deletes: int
    ddls: int
    validation_state: str | None
    validation_failed_records: int
    validation_pending_records: int
    validation_suspended_records: int
    last_updated_at: dt.datetime | None

    @property
    def errored(self) -> bool:
        return self.state.lower().startswith("table error")


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    """``migctl dms status``: the task, its tables and its CDC metrics; healthy when no problem."""

    ref: TaskRef
    task: TaskSnapshot
    tables: tuple[TableStats, ...] | None
    tables_error: str | None
    cdc: CdcMetrics
    problems: tuple[str, ...]
    reverse: StatusReport | None = None  # the way back's task (target to source), when defined

    @property
    def healthy(self) -> bool:
        """No problem here, nor in the reverse task: a replication whose apply fails is never
        healthy, whichever way it runs."""
        return not self.problems and (self.reverse is None or self.reverse.healthy)


def task_resource_id(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def derive_phase(status: str, migration_type: str, stats: TaskStats) -> Phase:
    """The REFERENCE's definition: CDC = running, full load finished, nothing loading or queued."""
    if status in ("failed", "failed-move"):
        return FAILED
    if status in ("stopped", "stopping"):
        return STOPPED
    if status == "starting":
        return STARTING
    if status != "running":
        return NOT_RUNNING
    if migration_type == "cdc":
        return CDC
    if migration_type != "full-load" and stats.full_load_finished:
        return CDC
    return FULL_LOAD


def _stats(raw: Mapping[str, Any]) -> TaskStats:
    elapsed = raw.get("ElapsedTimeMillis")
    return TaskStats(
        full_load_percent=raw.get("FullLoadProgressPercent"),
        tables_loaded=int(raw.get("TablesLoaded", 0)),
        tables_loading=int(raw.get("TablesLoading", 0)),
        tables_queued=int(raw.get("TablesQueued", 0)),
        tables_errored=int(raw.get("TablesErrored", 0)),
        elapsed_seconds=elapsed / 1000 if elapsed is not None else None,
        fresh_start_date=raw.get("FreshStartDate"),
        start_date=raw.get("StartDate"),
        stop_date=raw.get("StopDate"),
        full_load_start_date=raw.get("FullLoadStartDate"),
        full_load_finish_date=raw.get("FullLoadFinishDate"),
    )


def snapshot_from(raw: Mapping[str, Any]) -> TaskSnapshot:
    """A TaskSnapshot from one ReplicationTask of describe_replication_tasks."""
    stats = _stats(raw.get("ReplicationTaskStats") or {})
    status = raw["Status"]
    migration_type = raw.get("MigrationType", "full-load-and-cdc")
    return TaskSnapshot(
        arn=raw["ReplicationTaskArn"],
        identifier=raw["ReplicationTaskIdentifier"],
        migration_type=migration_type,
        status=status,
        phase=derive_phase(status, migration_type, stats),
        stop_reason=raw.get("StopReason") or None,
        last_failure_message=raw.get("LastFailureMessage") or None,
        recovery_checkpoint=raw.get("RecoveryCheckpoint") or None,
        cdc_stop_position=raw.get("CdcStopPosition") or None,
        started_at=raw.get("ReplicationTaskStartDate"),
        stats=stats,
    )


def _describe(
    dms: DatabaseMigrationServiceClient, filters: list[dict[str, Any]] | None
) -> list[Mapping[str, Any]]:
    """Every task the filters match; AWS raises ResourceNotFoundFault for none, moto returns []."""
    kwargs: dict[str, Any] = {"WithoutSettings": True}
    if filters:
        kwargs["Filters"] = filters
    try:
        tasks: list[Mapping[str, Any]] = []
        for page in dms.get_paginator("describe_replication_tasks").paginate(**kwargs):
            tasks.extend(page.get("ReplicationTasks", []))
        return tasks
    except Exception as exc:
        if aws_error_code(exc) == "ResourceNotFoundFault":
            return []
        raise


def describe_task(dms: DatabaseMigrationServiceClient, arn: str) -> TaskSnapshot:
    """One describe_replication_tasks call for one task."""
    try:
        response = dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [arn]}], WithoutSettings=True
        )
    except Exception as exc:
        if aws_error_code(exc) == "ResourceNotFoundFault":
            raise UsageError(f"no DMS replication task {arn}") from None
        raise
    tasks = response.get("ReplicationTasks", [])
    if not tasks:
        raise UsageError(f"no DMS replication task {arn}")
    return snapshot_from(tasks[0])


def resolve_task(
    dms: DatabaseMigrationServiceClient, task: str, *, instance_identifier: str | None = None
) -> TaskRef:
    """A task by ARN, by name, or by the resource id at the end of its ARN.

    The replication instance's identifier (a CloudWatch dimension) comes from
    ``instance_identifier`` when given ([dms] instance), else from
    describe_replication_instances.
    """
    if task.startswith("arn:"):
        found = _describe(dms, [{"Name": "replication-task-arn", "Values": [task]}])
    else:
        found = _describe(dms, [{"Name": "replication-task-id", "Values": [task]}])
        if not found:
            found = [
                t for t in _describe(dms, None) if task_resource_id(t["ReplicationTaskArn"]) == task
            ]
    if not found:
        raise UsageError(
            f"no DMS replication task {task!r}",
            hint="check --task, [dms] task or the stack outputs",
        )
    raw = found[0]
    instance_arn = raw["ReplicationInstanceArn"]
    return TaskRef(
        arn=raw["ReplicationTaskArn"],
        identifier=raw["ReplicationTaskIdentifier"],
        instance_arn=instance_arn,
        instance_identifier=instance_identifier or _instance_identifier(dms, instance_arn),
        migration_type=raw.get("MigrationType", "full-load-and-cdc"),
    )


def _instance_identifier(dms: DatabaseMigrationServiceClient, instance_arn: str) -> str:
    response = dms.describe_replication_instances(
        Filters=[{"Name": "replication-instance-arn", "Values": [instance_arn]}]
    )
    instances = response.get("ReplicationInstances", [])
    if not instances:
        raise UsageError(
            f"no DMS replication instance {instance_arn}",
            hint="set [dms] instance to its identifier",
        )
    return str(instances[0]["ReplicationInstanceIdentifier"])


def fetch_table_statistics(dms: DatabaseMigrationServiceClient, arn: str) -> tuple[TableStats, ...]:
    """Every table of the task, following every page of describe_table_statistics."""
    rows: list[TableStats] = []
    for page in dms.get_paginator("describe_table_statistics").paginate(ReplicationTaskArn=arn):
        rows.extend(_table(raw) for raw in page.get("TableStatistics", []))
    return tuple(sorted(rows, key=lambda t: (t.schema, t.table)))


def _table(raw: Mapping[str, Any]) -> TableStats:
    return TableStats(
        schema=raw.get("SchemaName", ""),
        table=raw.get("TableName", ""),
        state=raw.get("TableState", "unknown"),
        full_load_rows=int(raw.get("FullLoadRows", 0)),
        full_load_error_rows=int(raw.get("FullLoadErrorRows", 0)),
        inserts=int(raw.get("Inserts", 0)),
        updates=int(raw.get("Updates", 0)),
        deletes=int(raw.get("Deletes", 0)),
        ddls=int(raw.get("Ddls", 0)),
        validation_state=raw.get("ValidationState"),
        validation_failed_records=int(raw.get("ValidationFailedRecords", 0)),
        validation_pending_records=int(raw.get("ValidationPendingRecords", 0)),
        validation_suspended_records=int(raw.get("ValidationSuspendedRecords", 0)),
        last_updated_at=raw.get("LastUpdateTime"),
    )


def table_statistics_or_reason(
    dms: DatabaseMigrationServiceClient, arn: str
) -> tuple[tuple[TableStats, ...] | None, str | None]:
    """Table statistics, or None and why when DMS will not give them (a task never started)."""
    try:
        return fetch_table_statistics(dms, arn), None
    except Exception as exc:
        if aws_error_code(exc) in ("InvalidResourceStateFault", "ResourceNotFoundFault"):
            message = aws_error_message(exc)
            return None, f"table statistics unavailable: {message or aws_error_code(exc)}"
        raise


def find_problems(task: TaskSnapshot, tables: tuple[TableStats, ...] | None) -> tuple[str, ...]:
    """Why ``status`` exits 1 and ``watch`` fails: a failed task or one stopped on an error, a
    table in error or in any state but a good one, failed or suspended validation."""
    problems: list[str] = []
    if task.phase == FAILED:
        problems.append(f"task {task.identifier} is {task.status}: {task.failure}")
    elif task.stopped_on_error:
        problems.append(f"task {task.identifier} stopped on an error: {task.failure}")
    errored = [f"{t.schema}.{t.table}" for t in tables or () if t.errored]
    unwell = [
        f"{t.schema}.{t.table} ({t.state})"
        for t in tables or ()
        if not t.errored and t.state not in GOOD_TABLE_STATES
    ]
    if errored:
        problems.append(f"{len(errored)} table(s) in error: {', '.join(errored[:10])}")
    if unwell:
        problems.append(f"{len(unwell)} table(s) not replicating: {', '.join(unwell[:10])}")
    if not errored and task.stats.tables_errored:
        problems.append(f"{task.stats.tables_errored} table(s) errored (task stats)")
    for t in tables or ():
        if t.validation_failed_records or t.validation_suspended_records:
            problems.append(
                f"{t.schema}.{t.table}: validation {t.validation_state or 'unknown'}, "
                f"{t.validation_failed_records} failed, "
                f"{t.validation_suspended_records} suspended record(s)"
            )
    return tuple(problems)


def task_status(
    dms: DatabaseMigrationServiceClient,
    cloudwatch: CloudWatchClient,
    ref: TaskRef,
    *,
    minutes: float,
    period_seconds: int,
    now: Callable[[], dt.datetime] | None = None,
) -> StatusReport:
    """One snapshot: describe the task, read every table's statistics, read the CDC metrics once."""
    task = describe_task(dms, ref.arn)
    tables, tables_error = table_statistics_or_reason(dms, ref.arn)
    metrics = fetch_cdc_metrics(
        cloudwatch,
        instance_identifier=ref.instance_identifier,
        task_resource_id=ref.resource_id,
        lookback_seconds=minutes * 60,
        period_seconds=period_seconds,
        now=now,
    )
    return StatusReport(
        ref=ref,
        task=task,
        tables=tables,
        tables_error=tables_error,
        cdc=metrics,
        problems=find_problems(task, tables),
    )
