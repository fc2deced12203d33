"""The DMS tasks' settings and the source endpoint's PostgreSQL settings, as plain data.

One builder for both users: the Pulumi program (``components/migration.py``) and migctl's
sandbox, which creates the same tasks in its local AWS endpoint and emulates what DMS does
with them. Importing this module imports nothing from pulumi.

What DMS does to values, PostgreSQL to PostgreSQL, that these settings decide
(https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html,
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html):

- text, jsonb, bytea and varchar without a length are LOBs. In limited LOB mode a value
  longer than ``LobMaxSize`` KB is truncated, with only a warning in the task log, unless
  the PostgreSQL *source endpoint* says ``FailTasksOnLobTruncation`` (default false), in
  which case the task fails instead
  (https://docs.aws.amazon.com/dms/latest/APIReference/API_PostgreSQLSettings.html).
  migctl always sets it: a truncated payment memo is never silent. Full LOB mode carries
  every LOB whole, piece by piece, and is slower.
- ``numeric`` without a precision travels as ``numeric(28,6)``: more than 6 decimals are
  rounded, and more than 22 digits before the point do not fit. The endpoint setting
  ``MapUnboundedNumericAsString`` only helps the full load (CDC stays at precision 28),
  so it is not set: rows loaded and rows changed later would be rounded differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

LobMode = Literal["limited", "full"]
LOB_MODES: tuple[LobMode, ...] = ("limited", "full")
DEFAULT_LOB_MODE: LobMode = "limited"
DEFAULT_LOB_MAX_SIZE_KB = 32
MAX_LOB_MAX_SIZE_KB = 102400  # DMS's limit for LobMaxSize (100 MB)
LOG_COMPONENTS = ("SOURCE_CAPTURE", "SOURCE_UNLOAD", "TARGET_APPLY", "TARGET_LOAD", "TASK_MANAGER")
# PostgreSQLSettings of every PostgreSQL source endpoint (forward and reverse): a LOB longer
# than LobMaxSize fails the task instead of being truncated.
FAIL_TASKS_ON_LOB_TRUNCATION = True


@dataclass(frozen=True)
class LobSettings:
    """How the tasks carry LOBs: ``limited`` to ``max_size_kb`` KB, or ``full``."""

    mode: LobMode = DEFAULT_LOB_MODE
    max_size_kb: int = DEFAULT_LOB_MAX_SIZE_KB

    def __post_init__(self) -> None:
        if self.mode not in LOB_MODES:
            raise ValueError(f"LOB mode must be one of {', '.join(LOB_MODES)}, not {self.mode!r}")
        if not 1 <= self.max_size_kb <= MAX_LOB_MAX_SIZE_KB:
            raise ValueError(
                f"LobMaxSize must be 1 to {MAX_LOB_MAX_SIZE_KB} KB, not {self.max_size_kb}"
            )

    def target_metadata(self) -> dict[str, Any]:
        # LobMaxSize stays set in full mode too: DMS ignores it there, and the value is not lost
        # when the mode is switched back.
        return {
            "SupportLobs": True,
            "FullLobMode": self.mode == "full",
            "LimitedSizeLobMode": self.mode == "limited",
            "LobMaxSize": self.max_size_kb,
        }


def source_postgres_settings() -> dict[str, Any]:
    """The PostgreSQLSettings of a source endpoint (the API's shape)."""
    return {"FailTasksOnLobTruncation": FAIL_TASKS_ON_LOB_TRUNCATION}


def common_settings(lobs: LobSettings, *, batch_apply: bool | None = None) -> dict[str, Any]:
    """What both directions share: the LOB mode, tables pre-created on the target
    (DO_NOTHING), logging on."""
    metadata = lobs.target_metadata()
    if batch_apply is not None:
        metadata["BatchApplyEnabled"] = batch_apply
    return {
        "TargetMetadata": metadata,
        "FullLoadSettings": {"TargetTablePrepMode": "DO_NOTHING"},
        "Logging": {
            "EnableLogging": True,
            "LogComponents": [
                {"Id": component, "Severity": "LOGGER_SEVERITY_DEFAULT"}
                for component in LOG_COMPONENTS
            ],
        },
    }


def task_settings(lobs: LobSettings | None = None) -> str:
    """The forward task: validation and logging on; tables are pre-created on the target."""
    settings = common_settings(lobs or LobSettings())
    settings["FullLoadSettings"]["MaxFullLoadSubTasks"] = 8
    settings["ValidationSettings"] = {
        "EnableValidation": True,
        "ValidationMode": "ROW_LEVEL",
        "ThreadCount": 5,
        "FailureMaxCount": 10000,
    }
    return json.dumps(settings, sort_keys=True)


def reverse_task_settings(lobs: LobSettings | None = None) -> str:
    """The way back's CDC-only task: transactional apply in commit order (no batch apply,
    which reorders and defeats loop prevention), a table error stops the task."""
    settings = common_settings(lobs or LobSettings(), batch_apply=False)
    settings["ErrorBehavior"] = {
        "ApplyErrorFailOnTruncationDdl": True,
        "TableErrorPolicy": "STOP_TASK",
    }
    return json.dumps(settings, sort_keys=True)
