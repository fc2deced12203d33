"""moto's DMS, extended with what migctl reads and moto 5.2 does not model. Tests and sandbox only.

moto (the optional ``sandbox`` extra) flips a started task straight to
``running``, keeps constant stats, has no ``describe_table_statistics``, stop
reason, failure message or checkpoint, and builds ARNs from *names*, which
would hide the mistake that empties the CDC metrics (real ARNs end in a
random resource id). :func:`install` patches moto's DMS classes so that:

- task and replication-instance ARNs end in a random resource id, as on AWS;
- a new task becomes ``ready`` on its first describe; ``start``/``stop`` pass
  through ``starting``/``stopping``, a step per describe (:func:`set_task`
  ``after_start``/``after_stop`` script them);
- ``start_replication_task`` honours ``StartReplicationTaskType``,
  ``CdcStopPosition`` and ``CdcStartPosition`` and records each call (``task_extras(arn).start_calls``);
- status, stats, stop reason, failure message and checkpoint are settable
  (:func:`set_task`); ``describe_table_statistics`` serves, paginated and
  filtered, the rows of :func:`set_table_statistics`;
- ``describe_replication_tasks`` raises ``ResourceNotFoundFault`` when its
  filters match nothing, as AWS does, and can throttle (:func:`throttle`);
- ``modify_endpoint`` (which moto lacks) changes an endpoint's ``PostgreSQLSettings``:
  merged into the present ones, or replacing them with ``ExactSettings``, as AWS does
  (the sandbox reads them when a task starts: ``FailTasksOnLobTruncation``).

In-process (``mock_aws``) tests call :func:`install`, then the helpers. A moto
*server* needs the patches in its own process:
``python -m migctl.sandbox.moto_dms -H 127.0.0.1 -p PORT`` runs one.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import secrets
import string
import sys
from dataclasses import dataclass, field
from typing import Any

DEFAULT_REGION = "us-east-1"
_TASK_STAT_DATES = (
    "FreshStartDate",
    "StartDate",
    "StopDate",
    "FullLoadStartDate",
    "FullLoadFinishDate",
)
_TABLE_DEFAULTS: dict[str, Any] = {
    "Inserts": 0,
    "Deletes": 0,
    "Updates": 0,
    "Ddls": 0,
    "FullLoadRows": 0,
    "FullLoadCondtnlChkFailedRows": 0,
    "FullLoadErrorRows": 0,
    "TableState": "Table completed",
    "ValidationPendingRecords": 0,
    "ValidationFailedRecords": 0,
    "ValidationSuspendedRecords": 0,
    "ValidationState": "Not enabled",
}
_FILTER_KEYS = {"schema-name": "SchemaName", "table-name": "TableName", "table-state": "TableState"}
_installed: set[str] = set()  # holds "dms" once patched


def _zero_stats() -> dict[str, Any]:
    return {
        "FullLoadProgressPercent": 0,
        "ElapsedTimeMillis": 0,
        "TablesLoaded": 0,
        "TablesLoading": 0,
        "TablesQueued": 0,
        "TablesErrored": 0,
    }


@dataclass
class TaskExtras:
    """What moto's FakeReplicationTask lacks; stats dates are datetimes, the rest as on the wire."""

    stop_reason: str | None = None
    last_failure_message: str | None = None
    recovery_checkpoint: str | None = None
    cdc_stop_position: str | None = None
    stats: dict[str, Any] = field(default_factory=_zero_stats)
    tables: list[dict[str, Any]] = field(default_factory=list)
    pending_statuses: list[str] = field(default_factory=list)
    after_start: list[str] = field(default_factory=lambda: ["running"])
    after_stop: list[str] = field(default_factory=lambda: ["stopped"])
    start_calls: list[dict[str, Any]] = field(default_factory=list)
    stop_calls: int = 0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _resource_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return secrets.choice(string.ascii_uppercase) + "".join(
        secrets.choice(alphabet) for _ in range(25)
    )


def _epoch(value: Any) -> Any:
    """JSON-protocol timestamps are epoch seconds on the wire; moto's naive datetimes are UTC."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return value


def install() -> None:
    """Patch moto's DMS model and responses (idempotent)."""
    if "dms" in _installed:
        return
    models: Any = importlib.import_module("moto.dms.models")
    responses: Any = importlib.import_module("moto.dms.responses")

    task_cls = models.FakeReplicationTask
    instance_cls = models.FakeReplicationInstance
    backend_cls = models.DatabaseMigrationServiceBackend
    response_cls = responses.DatabaseMigrationServiceResponse

    task_init = task_cls.__init__

    @functools.wraps(task_init)
    def init_task(self: Any, *args: Any, **kwargs: Any) -> None:
        task_init(self, *args, **kwargs)
        self.arn = f"{self.arn.rsplit(':', 1)[0]}:{_resource_id()}"
        self.migctl = TaskExtras(pending_statuses=["ready"])

    instance_init = instance_cls.__init__

    @functools.wraps(instance_init)
    def init_instance(self: Any, *args: Any, **kwargs: Any) -> None:
        instance_init(self, *args, **kwargs)
        self.arn = f"{self.arn.rsplit(':', 1)[0]}:{self.resource_identifier or _resource_id()}"

    create_task = backend_cls.create_replication_task

    @functools.wraps(create_task)
    def create_replication_task(self: Any, replication_task_identifier: str, **kwargs: Any) -> Any:
        if any(t.id == replication_task_identifier for t in self.replication_tasks.values()):
            raise models.ResourceAlreadyExistsFault(
                "The resource you are attempting to create already exists."
            )
        return create_task(self, replication_task_identifier=replication_task_identifier, **kwargs)

    describe_tasks = backend_cls.describe_replication_tasks

    @functools.wraps(describe_tasks)
    def describe_replication_tasks(
        self: Any, filters: list[dict[str, Any]], max_records: int
    ) -> Any:
        _maybe_throttle(self, "DescribeReplicationTasks")
        tasks = list(describe_tasks(self, filters, max_records))
        if filters and not tasks:
            raise models.ResourceNotFoundFault("No Tasks found matching provided filters")
        for task in tasks:
            extras: TaskExtras = task.migctl
            if extras.pending_statuses:
                task.status = extras.pending_statuses.pop(0)
        return tasks

    def start_replication_task(
        self: Any,
        replication_task_arn: str,
        start_type: str = "start-replication",
        cdc_stop_position: str | None = None,
        cdc_start_position: str | None = None,
    ) -> Any:
        task = self.replication_tasks.get(replication_task_arn)
        if task is None:
            raise models.ResourceNotFoundFault("Replication task could not be found.")
        if task.status not in ("ready", "stopped", "failed"):
            raise models.InvalidResourceStateFault(
                f"Replication task is {task.status}; it cannot be started"
            )
        extras: TaskExtras = task.migctl
        extras.start_calls.append(
            {
                "StartReplicationTaskType": start_type,
                "CdcStopPosition": cdc_stop_position,
                "CdcStartPosition": cdc_start_position,
            }
        )
        now = _now()
        task.status, task.start_date, task.stop_date = "starting", now, None
        extras.stop_reason = extras.last_failure_message = None
        extras.cdc_stop_position = cdc_stop_position
        extras.stats["StartDate"] = now
        extras.stats.pop("StopDate", None)
        if start_type in ("start-replication", "reload-target"):
            extras.stats.update(FreshStartDate=now, FullLoadProgressPercent=0, TablesLoaded=0)
            extras.stats.pop("FullLoadFinishDate", None)
            if task.migration_type != "cdc":
                extras.stats["FullLoadStartDate"] = now
        extras.pending_statuses = list(extras.after_start)
        return task

    def stop_replication_task(self: Any, replication_task_arn: str) -> Any:
        task = self.replication_tasks.get(replication_task_arn)
        if task is None:
            raise models.ResourceNotFoundFault("Replication task could not be found.")
        if task.status not in ("running", "starting"):
            raise models.InvalidResourceStateFault(
                f"Replication task is {task.status}, not running"
            )
        extras: TaskExtras = task.migctl
        extras.stop_calls += 1
        task.status, task.stop_date = "stopping", _now()
        extras.stats["StopDate"] = task.stop_date
        extras.stop_reason = "Stop Reason NORMAL"
        if extras.recovery_checkpoint is None and task.migration_type != "full-load":
            lsn = f"{secrets.randbelow(0xFFFF):08X}/{secrets.randbelow(0xFFFFFFFF):08X}"
            extras.recovery_checkpoint = (
                f"checkpoint:V1#{secrets.randbelow(999) + 1}#{lsn}#0#0#*#0#0"
            )
        extras.pending_statuses = list(extras.after_stop)
        return task

    task_cls.__init__ = init_task
    task_cls.to_dict = _task_to_dict
    instance_cls.__init__ = init_instance
    backend_cls.create_replication_task = create_replication_task
    backend_cls.describe_replication_tasks = describe_replication_tasks
    backend_cls.start_replication_task = start_replication_task
    backend_cls.stop_replication_task = stop_replication_task
    response_cls.start_replication_task = _start_response
    response_cls.describe_table_statistics = _describe_table_statistics_response
    response_cls.modify_endpoint = _modify_endpoint_response
    _installed.add("dms")


def _task_to_dict(task: Any) -> dict[str, Any]:
    extras: TaskExtras = task.migctl
    stats = {
        k: (_epoch(v) if k in _TASK_STAT_DATES else v)
        for k, v in extras.stats.items()
        if v is not None
    }
    body: dict[str, Any] = {
        "ReplicationTaskIdentifier": task.id,
        "SourceEndpointArn": task.source_endpoint_arn,
        "TargetEndpointArn": task.target_endpoint_arn,
        "ReplicationInstanceArn": task.replication_instance_arn,
        "MigrationType": task.migration_type,
        "TableMappings": task.table_mappings,
        "ReplicationTaskSettings": task.replication_task_settings,
        "Status": task.status,
        "StopReason": extras.stop_reason,
        "LastFailureMessage": extras.last_failure_message,
        "RecoveryCheckpoint": extras.recovery_checkpoint,
        "CdcStopPosition": extras.cdc_stop_position,
        "ReplicationTaskCreationDate": _epoch(task.creation_date),
        "ReplicationTaskStartDate": _epoch(task.start_date),
        "ReplicationTaskArn": task.arn,
        "ReplicationTaskStats": stats,
    }
    return {k: v for k, v in body.items() if v is not None}


def _start_response(self: Any) -> str:
    task = self.dms_backend.start_replication_task(
        self._get_param("ReplicationTaskArn"),
        self._get_param("StartReplicationTaskType") or "start-replication",
        self._get_param("CdcStopPosition"),
        self._get_param("CdcStartPosition"),
    )
    return json.dumps({"ReplicationTask": task.to_dict()})


def _modify_endpoint_response(self: Any) -> str:
    exceptions: Any = importlib.import_module("moto.dms.exceptions")
    arn = self._get_param("EndpointArn")
    endpoint = next((e for e in self.dms_backend.endpoints.values() if e.endpoint_arn == arn), None)
    if endpoint is None:
        raise exceptions.ResourceNotFoundFault("Endpoint could not be found.")
    settings = self._get_param("PostgreSQLSettings")
    if settings is not None:
        exact = bool(self._get_param("ExactSettings"))
        endpoint.postgre_sql_settings = {
            **({} if exact else (endpoint.postgre_sql_settings or {})),
            **settings,
        }
    return json.dumps({"Endpoint": endpoint.to_dict()})


def _describe_table_statistics_response(self: Any) -> str:
    exceptions: Any = importlib.import_module("moto.dms.exceptions")
    backend = self.dms_backend
    _maybe_throttle(backend, "DescribeTableStatistics")
    arn = self._get_param("ReplicationTaskArn")
    task = backend.replication_tasks.get(arn)
    if task is None:
        raise exceptions.ResourceNotFoundFault("Replication task could not be found.")
    rows = list(task.migctl.tables)
    for flt in self._get_param("Filters") or []:
        key = _FILTER_KEYS.get(flt["Name"])
        if key is None:
            raise exceptions.ValidationError(f"Invalid filter name: {flt['Name']}")
        rows = [r for r in rows if r.get(key) in flt["Values"]]
    start = int(self._get_param("Marker") or 0)
    size = int(self._get_param("MaxRecords") or 100)
    page = rows[start : start + size]
    body: dict[str, Any] = {
        "ReplicationTaskArn": arn,
        "TableStatistics": [{k: _epoch(v) for k, v in row.items()} for row in page],
    }
    if start + size < len(rows):
        body["Marker"] = str(start + size)
    return json.dumps(body)


def _maybe_throttle(backend: Any, operation: str) -> None:
    remaining: dict[str, int] = backend.__dict__.setdefault("migctl_throttle", {})
    if remaining.get(operation, 0) > 0:
        core_exceptions: Any = importlib.import_module("moto.core.exceptions")
        remaining[operation] -= 1
        raise core_exceptions.JsonRESTError("ThrottlingException", "Rate exceeded")


# --- helpers for tests and the sandbox: drive state from inside the moto process ---


def backend(*, account_id: str | None = None, region: str = DEFAULT_REGION) -> Any:
    models: Any = importlib.import_module("moto.dms.models")
    default_account: str = importlib.import_module("moto.core.models").DEFAULT_ACCOUNT_ID
    return models.dms_backends[account_id or default_account][region]


def find_task(
    arn_or_id: str, *, account_id: str | None = None, region: str = DEFAULT_REGION
) -> Any:
    """The FakeReplicationTask with this ARN or identifier."""
    for task in backend(account_id=account_id, region=region).replication_tasks.values():
        if arn_or_id in (task.arn, task.id):
            return task
    raise KeyError(f"no DMS task {arn_or_id!r} in moto")


def task_extras(arn_or_id: str, **where: Any) -> TaskExtras:
    extras: TaskExtras = find_task(arn_or_id, **where).migctl
    return extras


_UNSET: Any = object()


def set_task(
    arn_or_id: str,
    *,
    status: str | None = None,
    stats: dict[str, Any] | None = None,
    stop_reason: str | None = _UNSET,
    last_failure_message: str | None = _UNSET,
    recovery_checkpoint: str | None = _UNSET,
    then: list[str] | None = None,
    after_start: list[str] | None = None,
    after_stop: list[str] | None = None,
    **where: Any,
) -> None:
    """Set what AWS would report; ``stats`` keys are ReplicationTaskStats keys (None removes one).

    ``then`` queues statuses applied one per describe; ``after_start`` and
    ``after_stop`` script what the next start or stop passes through.
    """
    task = find_task(arn_or_id, **where)
    extras: TaskExtras = task.migctl
    if status is not None:
        task.status = status
        extras.pending_statuses = []
    for key, value in (stats or {}).items():
        if value is None:
            extras.stats.pop(key, None)
        else:
            extras.stats[key] = value
    if stop_reason is not _UNSET:
        extras.stop_reason = stop_reason
    if last_failure_message is not _UNSET:
        extras.last_failure_message = last_failure_message
    if recovery_checkpoint is not _UNSET:
        extras.recovery_checkpoint = recovery_checkpoint
    if then is not None:
        extras.pending_statuses = list(then)
    if after_start is not None:
        extras.after_start = list(after_start)
    if after_stop is not None:
        extras.after_stop = list(after_stop)


def table_row(schema: str, table: str, **fields: Any) -> dict[str, Any]:
    """One TableStatistics entry with AWS's counters defaulted to 0 and the table completed."""
    return {
        "SchemaName": schema,
        "TableName": table,
        **_TABLE_DEFAULTS,
        "LastUpdateTime": _now(),
        **fields,
    }


def set_table_statistics(arn_or_id: str, rows: list[dict[str, Any]], **where: Any) -> None:
    """Replace the task's table statistics; partial rows are completed by :func:`table_row`."""
    task_extras(arn_or_id, **where).tables = [
        table_row(r["SchemaName"], r["TableName"], **r) for r in rows
    ]


def throttle(
    operation: str, times: int, *, account_id: str | None = None, region: str = DEFAULT_REGION
) -> None:
    """Make the next ``times`` calls of ``operation`` (e.g. DescribeReplicationTasks) throttle."""
    b = backend(account_id=account_id, region=region)
    b.__dict__.setdefault("migctl_throttle", {})[operation] = times


def serve(argv: list[str] | None = None) -> None:
    """Run moto's server with these patches installed (same flags as ``python -m moto.server``)."""
    install()
    server: Any = importlib.import_module("moto.server")
    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    serve()
