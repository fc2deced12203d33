"""What ``dms lint`` reads from DMS: the task's LOB settings, its mappings, its source endpoint.

Where each setting comes from, and its default when it is missing (DMS's
documented defaults, docs/dms.md "migctl dms lint"):

- ``ReplicationTaskSettings`` -> ``TargetMetadata``: ``SupportLobs`` (true),
  ``FullLobMode`` (false), ``LimitedSizeLobMode`` (true), ``LobMaxSize``
  (32, in KB), ``InlineLobMaxSize`` (0).
- The source endpoint's ``PostgreSQLSettings``: ``FailTasksOnLobTruncation``
  (false) and ``MapUnboundedNumericAsString`` (false); either may instead
  be an extra connection attribute (``failTasksOnLobTruncation=true``),
  whose names and values are read case-insensitively. ``PostgreSQLSettings``
  wins when both say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from migctl.dms.mappings import TableSelection, parse_selection
from migctl.dms.task import TaskRef
from migctl.errors import UsageError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

LobMode = Literal["none", "limited", "full", "inline"]
DEFAULT_LOB_MAX_SIZE_KB = 32
_TRUE_WORDS = frozenset({"true", "y", "yes", "1"})


@dataclass(frozen=True)
class TaskLintSettings:
    """The settings the lint judges by, and where each came from (task, endpoint, default)."""

    identifier: str
    arn: str
    migration_type: str
    status: str
    has_run: bool
    lob_mode: LobMode
    lob_max_size_kb: int
    fail_on_lob_truncation: bool
    map_unbounded_numeric_as_string: bool
    source_endpoint: str | None
    origins: Mapping[str, str] = field(default_factory=dict)
    selection: TableSelection | None = field(default=None, repr=False)
    table_mappings_rules: str = ""  # the selection rules in one line, for evidence

    @property
    def cdc(self) -> bool:
        """The task replicates changes (full-load-and-cdc or cdc), not only a full load."""
        return self.migration_type != "full-load"

    @property
    def lob_max_size_bytes(self) -> int:
        return self.lob_max_size_kb * 1024


def read_task_settings(dms: DatabaseMigrationServiceClient, ref: TaskRef) -> TaskLintSettings:
    """One describe_replication_tasks (with settings) and one describe_endpoints call."""
    try:
        tasks = dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [ref.arn]}], WithoutSettings=False
        ).get("ReplicationTasks", [])
    except Exception as exc:
        if aws_error_code(exc) == "ResourceNotFoundFault":
            raise UsageError(f"no DMS replication task {ref.arn}") from None
        raise
    if not tasks:
        raise UsageError(f"no DMS replication task {ref.arn}")
    raw: Mapping[str, Any] = tasks[0]
    origins: dict[str, str] = {}
    target = _target_metadata(raw.get("ReplicationTaskSettings"))

    def task_value(key: str, default: Any) -> Any:
        if key in target:
            origins[key] = "task settings"
            return target[key]
        origins[key] = "DMS default"
        return default

    support = _truthy(task_value("SupportLobs", True))
    full = _truthy(task_value("FullLobMode", False))
    task_value("LimitedSizeLobMode", True)  # limited is what is left when full is off
    max_kb = _int(task_value("LobMaxSize", DEFAULT_LOB_MAX_SIZE_KB), DEFAULT_LOB_MAX_SIZE_KB)
    inline = _int(task_value("InlineLobMaxSize", 0), 0)
    mode: LobMode = "limited"
    if not support:
        mode = "none"
    elif full:
        mode = "inline" if inline else "full"
    endpoint_arn = raw.get("SourceEndpointArn")
    endpoint = _endpoint(dms, endpoint_arn) if endpoint_arn else {}
    fail = _endpoint_flag(endpoint, "FailTasksOnLobTruncation", origins)
    as_string = _endpoint_flag(endpoint, "MapUnboundedNumericAsString", origins)
    selection = parse_selection(raw.get("TableMappings"))
    status = str(raw.get("Status", "unknown"))
    stats = raw.get("ReplicationTaskStats") or {}
    has_run = bool(
        raw.get("ReplicationTaskStartDate") or stats.get("StartDate") or stats.get("FreshStartDate")
    ) or status in {"starting", "running", "stopping", "stopped", "failed"}
    return TaskLintSettings(
        identifier=ref.identifier,
        arn=ref.arn,
        migration_type=str(raw.get("MigrationType", ref.migration_type)),
        status=status,
        has_run=has_run,
        lob_mode=mode,
        lob_max_size_kb=max_kb,
        fail_on_lob_truncation=fail,
        map_unbounded_numeric_as_string=as_string,
        source_endpoint=endpoint.get("EndpointIdentifier") or endpoint_arn,
        origins=origins,
        selection=selection,
        table_mappings_rules=selection.describe() if selection else "",
    )


def _target_metadata(settings: Any) -> Mapping[str, Any]:
    """``TargetMetadata`` of the task's settings JSON; empty (all defaults) when absent."""
    if not settings:
        return {}
    try:
        document = json.loads(settings) if isinstance(settings, str) else settings
    except ValueError:
        return {}
    target = document.get("TargetMetadata") if isinstance(document, dict) else None
    return target if isinstance(target, dict) else {}


def _endpoint(dms: DatabaseMigrationServiceClient, arn: str) -> Mapping[str, Any]:
    try:
        found = dms.describe_endpoints(Filters=[{"Name": "endpoint-arn", "Values": [arn]}]).get(
            "Endpoints", []
        )
    except Exception as exc:
        if aws_error_code(exc) == "ResourceNotFoundFault":
            return {}
        raise
    return found[0] if found else {}


def extra_connection_attributes(text: str | None) -> dict[str, str]:
    """``a=b;C=D`` as ``{"a": "b", "c": "D"}``: names lower-cased, values as they are."""
    attributes: dict[str, str] = {}
    for part in (text or "").split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            attributes[name.strip().lower()] = value.strip()
    return attributes


def _endpoint_flag(endpoint: Mapping[str, Any], name: str, origins: dict[str, str]) -> bool:
    settings = endpoint.get("PostgreSQLSettings") or {}
    if name in settings and settings[name] is not None:
        origins[name] = "source endpoint PostgreSQLSettings"
        return _truthy(settings[name])
    attributes = extra_connection_attributes(endpoint.get("ExtraConnectionAttributes"))
    if name.lower() in attributes:
        origins[name] = "source endpoint extra connection attributes"
        return _truthy(attributes[name.lower()])
    origins[name] = "DMS default"
    return False


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    return bool(value)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
