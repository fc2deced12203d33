"""The rules of ``dms lint``: each turns facts (settings, catalog, measures) into findings.

Every rule names the AWS DMS documentation it rests on (``REFERENCES``), and
docs/dms.md lists them with their severities: an error is data DMS would lose
or change; a warning is a decision to make.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from migctl.dms.lint_source import Measurement, Readiness, SourceColumn, SourceTable
from migctl.dms.lint_task import TaskLintSettings

Severity = Literal["error", "warning"]
ERROR: Final = "error"
WARNING: Final = "warning"

_SOURCE = "https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html"
_LIMITS = f"{_SOURCE}#CHAP_Source.PostgreSQL.Limitations"
_TYPES = f"{_SOURCE}#CHAP_Source.PostgreSQL.Homogeneous"
_CDC = f"{_SOURCE}#CHAP_Source.PostgreSQL.Prerequisites.CDC"
_ECA = f"{_SOURCE}#CHAP_Source.PostgreSQL.ConnectionAttrib"
_LOBS = "https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html"
_PG_SETTINGS = "https://docs.aws.amazon.com/dms/latest/APIReference/API_PostgreSQLSettings.html"
_SELECTION = (
    "https://docs.aws.amazon.com/dms/latest/userguide/"
    "CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Selections.html"
)

#: Each check and the AWS documentation it rests on (docs/dms.md lists them).
REFERENCES: Final = {
    "numeric-unbounded": _LIMITS,
    "lob-truncated": _LOBS,
    "lob-not-migrated": _LOBS,
    "lob-sampled": _LOBS,
    "lob-truncation-silent": _PG_SETTINGS,
    "type-unsupported": _TYPES,
    "type-partial": _TYPES,
    "array-without-key": _LIMITS,
    "no-key": _LIMITS,
    "no-key-full-identity": _LIMITS,
    "unlogged": _LIMITS,
    "not-selected": _SELECTION,
    "marker-not-selected": _SELECTION,
    "mappings-unreadable": _SELECTION,
    "partition-duplicated": _TYPES,
    "partition-parent-only": _LIMITS,
    "partition-left-out": _SELECTION,
    "wal-level": _CDC,
    "replication-slots": _CDC,
    "wal-senders": _CDC,
    "prepared-transactions": _LIMITS,
    "long-transaction": _LIMITS,
    "measure-failed": _LIMITS,
}

#: numeric without precision becomes numeric(28,6): 22 integer digits, 6 after the point.
NUMERIC_PRECISION, NUMERIC_SCALE = 28, 6
# AWS's PostgreSQL-to-PostgreSQL table: "doesn't migrate" ...
UNSUPPORTED_TYPES: Final = frozenset(
    {"inet", "macaddr", "macaddr8", "tsvector", "tsquery", "line", "lseg", "box", "path", "circle"}
)
UNSUPPORTED_KINDS: Final = {"e": "enum", "c": "composite", "r": "range", "m": "multirange"}
# ... and "partially migrates" (numeric(p,s) only when p > 38: DMS then moves it as a string).
PARTIAL_TYPES: Final = frozenset({"timestamptz", "timetz", "interval", "json", "xml"})
# The types DMS moves as LOBs (NCLOB, CLOB, BLOB), varchar without a length among them.
LOB_TYPES: Final = frozenset({"text", "bytea", "json", "jsonb", "xml", "hstore", "polygon"})
# Extension types AWS's table lists as migrating (PostGIS).
LISTED_EXTENSION_TYPES: Final = frozenset({"geometry", "geography", "hstore"})


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    table: str | None  # schema.table, or None for the task or the server
    column: str | None
    evidence: str
    fix: str
    scan: str | None = None  # how the data was read, for a finding measured on the data

    @property
    def reference(self) -> str:
        return REFERENCES[self.check]


def show(table: SourceTable | tuple[str, str]) -> str:
    schema, name = (table.schema, table.name) if isinstance(table, SourceTable) else table
    return f"{schema}.{name}"


def unsupported(column: SourceColumn) -> str | None:
    """Why AWS says this column's type does not migrate, or None."""
    if column.category == "A":
        if column.element_kind in UNSUPPORTED_KINDS:
            return f"an array of {UNSUPPORTED_KINDS[column.element_kind]}"
        if column.element_builtin and column.element in UNSUPPORTED_TYPES:
            return f"an array of {column.element}"
        return None
    if column.kind in UNSUPPORTED_KINDS:
        return UNSUPPORTED_KINDS[column.kind]
    if column.builtin and column.base in UNSUPPORTED_TYPES:
        return column.base
    return None


def partial(column: SourceColumn) -> str | None:
    """The name under which AWS lists this type as partly migrating (or not at all), or None."""
    if column.category == "A":
        return None
    if column.builtin and column.base in PARTIAL_TYPES:
        return column.base
    precision = ((column.typmod - 4) >> 16) & 0xFFFF if column.typmod >= 4 else 0
    if column.builtin and column.base == "numeric" and precision > 38:
        return "numeric(p,s) with p > 38"
    if not column.builtin and column.kind == "b" and column.base not in LISTED_EXTENSION_TYPES:
        return f"{column.base} (not in AWS's list)"
    return None


def is_unbounded_numeric(column: SourceColumn) -> bool:
    return column.builtin and column.base == "numeric" and column.typmod < 0


def lob_form(column: SourceColumn) -> bool | None:
    """None: not a LOB; else whether octet_length reads it as it is (bytea, text) or as text."""
    if unsupported(column):
        return None
    if column.category == "A" or column.kind == "c":
        return False
    if column.base in ("bytea", "text") or (column.base == "varchar" and column.typmod < 0):
        return column.builtin
    if column.base in LOB_TYPES:
        return False
    return None


def type_findings(table: SourceTable) -> list[Finding]:
    out = []
    for column in table.columns:
        why = unsupported(column)
        if why:
            out.append(
                Finding(
                    "type-unsupported",
                    ERROR,
                    show(table),
                    column.name,
                    f"{column.type_sql} is {why}, which AWS DMS does not migrate PostgreSQL to "
                    "PostgreSQL",
                    "change the column to a type DMS moves (text with a CHECK, for an enum), or "
                    "move this table another way (pg_dump, native logical replication)",
                )
            )
    arrays = [c.name for c in table.columns if c.category == "A"]
    if arrays and not table.has_primary_key:
        out.append(
            Finding(
                "array-without-key",
                ERROR,
                show(table),
                ", ".join(arrays),
                "a table with an ARRAY column and no primary key is suspended during the full load",
                "add a primary key",
            )
        )
    return out


def partial_findings(tables: Iterable[SourceTable]) -> list[Finding]:
    """One warning for all columns of partly migrating or unlisted types, by type."""
    by_type: dict[str, list[str]] = {}
    for table in tables:
        for column in table.columns:
            name = partial(column)
            if name:
                by_type.setdefault(name, []).append(f"{show(table)}.{column.name}")
    if not by_type:
        return []
    parts = []
    for name, where in sorted(by_type.items()):
        listed = ", ".join(where[:5]) + (f", ... ({len(where)} in all)" if len(where) > 5 else "")
        parts.append(f"{name}: {listed}")
    return [
        Finding(
            "type-partial",
            WARNING,
            None,
            None,
            "AWS lists these types as only partly migrating PostgreSQL to PostgreSQL (or does "
            "not list them): " + "; ".join(parts),
            "validate these columns after the full load (migctl validate compares every value)",
        )
    ]


def key_findings(table: SourceTable, settings: TaskLintSettings) -> list[Finding]:
    """CDC: updates and deletes of a table without a key are lost; unlogged tables are unseen."""
    if not settings.cdc or table.relkind != "r":
        return []
    out = []
    if table.unlogged:
        out.append(
            Finding(
                "unlogged",
                ERROR,
                show(table),
                None,
                "the table is UNLOGGED: its changes never reach the WAL, so CDC replicates none",
                f"ALTER TABLE {show(table)} SET LOGGED (or leave it out of the mappings on purpose)",
            )
        )
    if table.has_primary_key:
        return out
    identity = table.replica_identity
    if identity == "f":
        out.append(
            Finding(
                "no-key-full-identity",
                WARNING,
                show(table),
                None,
                "no primary key; REPLICA IDENTITY FULL lets updates and deletes reach DMS, "
                "which matches them on every column (LOB columns make this unpredictable, and "
                "DMS validation skips tables without a primary key)",
                "add a primary key if the table has one; else keep FULL and compare it with "
                "migctl validate",
            )
        )
    elif identity == "i":
        out.append(
            Finding(
                "no-key-full-identity",
                WARNING,
                show(table),
                None,
                "no primary key; the replica identity is a unique index",
                "promote the unique index to the primary key",
            )
        )
    else:
        said = {"d": "DEFAULT", "n": "NOTHING"}.get(identity, identity)
        out.append(
            Finding(
                "no-key",
                ERROR,
                show(table),
                None,
                f"no primary key and REPLICA IDENTITY {said}: DMS ignores its UPDATEs and DELETEs",
                f"add a primary key, or ALTER TABLE {show(table)} REPLICA IDENTITY FULL",
            )
        )
    return out


def numeric_finding(
    table: SourceTable, column: str, measured: Measurement, settings: TaskLintSettings
) -> Finding:
    scale, digits, precision = measured.numeric[column]
    seen = (
        f"largest scale {_num(scale)}, integer digits {_num(digits)}, precision "
        f"{_num(precision)} ({measured.how})"
    )
    as_string = settings.map_unbounded_numeric_as_string
    if as_string:
        over = settings.cdc and (precision or 0) > NUMERIC_PRECISION
        limit = (
            f"MapUnboundedNumericAsString is on: the full load keeps every digit, CDC caps "
            f"precision at {NUMERIC_PRECISION}"
            if settings.cdc
            else "MapUnboundedNumericAsString is on and the task is full load only"
        )
    else:
        over = (scale or 0) > NUMERIC_SCALE or (digits or 0) > NUMERIC_PRECISION - NUMERIC_SCALE
        limit = (
            f"DMS moves numeric without precision as numeric({NUMERIC_PRECISION},"
            f"{NUMERIC_SCALE}): values are rounded to {NUMERIC_SCALE} decimals and at most "
            f"{NUMERIC_PRECISION - NUMERIC_SCALE} integer digits fit"
        )
    if over:
        evidence = f"data that DMS would change: {seen}; {limit}"
    else:
        evidence = f"{seen} fits today; {limit}, so a later value may not"
    if not measured.full_scan and not over:
        evidence += "; rows outside the sample were not read"
    return Finding(
        "numeric-unbounded",
        ERROR if over else WARNING,
        show(table),
        column,
        evidence,
        f"declare a precision and scale that hold the data (ALTER TABLE {show(table)} ALTER "
        f"{column} TYPE numeric(p,s)), or set MapUnboundedNumericAsString=true on the source "
        "endpoint",
        scan=measured.how,
    )


def lob_finding(
    table: SourceTable, column: str, measured: Measurement, settings: TaskLintSettings
) -> Finding | None:
    largest = measured.lob_bytes.get(column)
    mode, limit = settings.lob_mode, settings.lob_max_size_bytes
    if mode == "none":
        if not largest and measured.full_scan:
            return None
        return Finding(
            "lob-not-migrated",
            ERROR,
            show(table),
            column,
            f"SupportLobs is false: DMS leaves this LOB column out; largest value "
            f"{_bytes(largest)} ({measured.how})",
            "set TargetMetadata.SupportLobs to true (limited LOB mode with a LobMaxSize above "
            "the largest value, or full LOB mode)",
            scan=measured.how,
        )
    if mode != "limited":
        return None
    if largest is not None and largest > limit:
        what = (
            "the task fails mid-load (FailTasksOnLobTruncation is true)"
            if settings.fail_on_lob_truncation
            else "DMS truncates it silently (FailTasksOnLobTruncation is false)"
        )
        return Finding(
            "lob-truncated",
            ERROR,
            show(table),
            column,
            f"largest value {_bytes(largest)} is over LobMaxSize {settings.lob_max_size_kb} KB "
            f"({limit:,} bytes) in limited LOB mode: {what} ({measured.how})",
            f"raise TargetMetadata.LobMaxSize to at least {-(-largest // 1024)} KB, or use full "
            "LOB mode",
            scan=measured.how,
        )
    if not measured.full_scan:
        return Finding(
            "lob-sampled",
            WARNING,
            show(table),
            column,
            f"largest value in the sample {_bytes(largest)}, under LobMaxSize "
            f"{settings.lob_max_size_kb} KB; rows outside the sample were not read "
            f"({measured.how})",
            "raise [dms] lint_max_rows (or --max-rows) to read the whole table",
            scan=measured.how,
        )
    return None


def silent_truncation(settings: TaskLintSettings, lob_columns: int) -> list[Finding]:
    if settings.lob_mode != "limited" or settings.fail_on_lob_truncation or not lob_columns:
        return []
    origin = settings.origins.get("FailTasksOnLobTruncation", "DMS default")
    return [
        Finding(
            "lob-truncation-silent",
            WARNING,
            None,
            None,
            f"limited LOB mode (LobMaxSize {settings.lob_max_size_kb} KB) over {lob_columns} "
            f"LOB column(s), and FailTasksOnLobTruncation is false ({origin}): a later value "
            "over LobMaxSize is truncated with only a warning in the task log",
            "set PostgreSQLSettings.FailTasksOnLobTruncation = true on the source endpoint",
        )
    ]


def readiness_findings(
    ready: Readiness, settings: TaskLintSettings, *, max_transaction_seconds: float
) -> list[Finding]:
    if not settings.cdc:
        return []
    out = []
    if ready.wal_level != "logical":
        out.append(
            Finding(
                "wal-level",
                ERROR,
                None,
                None,
                f"wal_level is {ready.wal_level}: CDC needs logical decoding",
                "set wal_level = logical (rds.logical_replication = 1 on RDS and Aurora) and "
                "restart the server",
            )
        )
    running = settings.status in ("running", "starting")
    free_slots = ready.max_replication_slots - ready.replication_slots_used
    if not settings.has_run and free_slots < 1:
        out.append(
            Finding(
                "replication-slots",
                ERROR,
                None,
                None,
                f"{ready.replication_slots_used} of max_replication_slots "
                f"{ready.max_replication_slots} in use: none free for the task's slot",
                "drop unused slots (pg_replication_slots) or raise max_replication_slots",
            )
        )
    free_senders = ready.max_wal_senders - ready.wal_senders_used
    if not running and free_senders < 1:
        out.append(
            Finding(
                "wal-senders",
                ERROR,
                None,
                None,
                f"{ready.wal_senders_used} of max_wal_senders {ready.max_wal_senders} in use: "
                "none free for the task",
                "raise max_wal_senders (a restart) or end other replication connections",
            )
        )
    if ready.prepared_transactions:
        out.append(
            Finding(
                "prepared-transactions",
                ERROR,
                None,
                None,
                f"{ready.prepared_transactions} prepared transaction(s) in this database (oldest "
                f"prepared at {ready.oldest_prepared_at}); max_prepared_transactions is "
                f"{ready.max_prepared_transactions}. DMS does not process two-phase commits",
                "COMMIT PREPARED or ROLLBACK PREPARED them (pg_prepared_xacts), and keep the "
                "application from preparing transactions while DMS replicates",
            )
        )
    age = ready.oldest_transaction_seconds
    if age is not None and age > max_transaction_seconds:
        out.append(
            Finding(
                "long-transaction",
                WARNING,
                None,
                None,
                f"a write transaction has been open {age:,.0f}s ({ready.oldest_transaction}); "
                "DMS spills a long transaction's changes to disk and holds the slot's WAL until "
                "it ends (and a new slot waits for it)",
                "end it, or split the work into short transactions",
            )
        )
    return out


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _bytes(value: int | None) -> str:
    return "none (no value)" if value is None else f"{value:,} bytes"
