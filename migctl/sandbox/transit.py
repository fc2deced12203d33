"""What DMS changes in transit, emulated on the sandbox's target by row triggers.

The sandbox's DMS task is PostgreSQL logical replication, which carries every value whole.
DMS does not (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html,
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.LOBSupport.html):

- ``numeric`` without a precision travels as ``numeric(28,6)``: a value with more than 6
  decimals arrives rounded to 6. One with more than 22 digits before the point does not
  fit; the user guide does not say what DMS then writes, so the sandbox fails the task
  (the apply refuses the row) rather than invent a value.
- LOBs (text, varchar without a length, bytea, json, jsonb, xml): in limited LOB mode a value longer
  than ``LobMaxSize`` KB (its octet length) is truncated to that many bytes (text on a
  character boundary), with a warning in the target's log, as DMS warns in the task's. When
  the source endpoint's PostgreSQLSettings say ``FailTasksOnLobTruncation``, the apply
  refuses the row instead, and the task fails naming the table. A truncated json, jsonb or
  xml is no longer a document: the target refuses it either way. Full LOB mode carries
  every LOB whole.

The rules come from the task's ReplicationTaskSettings and its source endpoint, as the
task is when it starts (:meth:`TransitRules.from_dms`). Each table of the replicated
schemas that has such a column gets a ``BEFORE INSERT OR UPDATE`` row trigger, generated
from the catalog, enabled ``REPLICA``: it fires only in sessions with
``session_replication_role = replica``, which the subscription's apply and table-sync
workers are (the sync's ``COPY`` fires row triggers too). The application's own writes on
the target after go-live, and the way back's apply on the source, never meet it.
:func:`install` changes nothing when the triggers are already as wanted (a resume runs no
DDL, which the cutover's fence on the target could refuse); :func:`remove` drops them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

SCHEMA = "migctl_dms"  # on the target: the trigger functions
TRIGGER = "migctl_dms_transit"
NUMERIC_SCALE = 6  # numeric(28,6)
NUMERIC_INTEGER_DIGITS = 22
DOCUMENT_TYPES = ("json", "jsonb", "xml")  # LOBs that are no longer valid once truncated
JSONB_TEXT_PER_BYTE = 6  # jsonb's text is at most 6 characters per stored byte (\u0001)
# DMS's TargetMetadata defaults: limited LOB mode, 32 KB.
_DEFAULT_METADATA: dict[str, Any] = {
    "SupportLobs": True,
    "FullLobMode": False,
    "LimitedSizeLobMode": True,
    "LobMaxSize": 32,
}


@dataclass(frozen=True)
class TransitRules:
    """``lob_max_bytes``: the LOB limit in limited LOB mode (None: LOBs travel whole)."""

    lob_max_bytes: int | None = 32 * 1024
    fail_on_lob_truncation: bool = False

    @classmethod
    def from_dms(
        cls, task_settings: str | None, postgres_settings: Mapping[str, Any] | None
    ) -> TransitRules:
        """From a task's ReplicationTaskSettings (JSON) and its source endpoint's
        PostgreSQLSettings, with DMS's defaults for what they leave out."""
        metadata = {
            **_DEFAULT_METADATA,
            **json.loads(task_settings or "{}").get("TargetMetadata", {}),
        }
        limited = (
            bool(metadata["SupportLobs"])
            and bool(metadata["LimitedSizeLobMode"])
            and not bool(metadata["FullLobMode"])
        )
        return cls(
            lob_max_bytes=int(metadata["LobMaxSize"]) * 1024 if limited else None,
            fail_on_lob_truncation=bool(
                (postgres_settings or {}).get("FailTasksOnLobTruncation", False)
            ),
        )


_COLUMNS_SQL = """
SELECT c.oid, n.nspname, c.relname, a.attname, t.typname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = ANY(%s) AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = ''
  AND (t.typname IN ('text', 'bytea', 'json', 'jsonb', 'xml')
       OR (t.typname IN ('numeric', 'varchar') AND a.atttypmod = -1))
ORDER BY n.nspname, c.relname, a.attnum
"""
_PRESENT_SQL = """
SELECT t.tgrelid, t.tgenabled, p.proname, p.prosrc
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE t.tgname = %s
"""
_FUNCTIONS_SQL = """
SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %s
"""
# Called only when a LOB is over the limit: the row's cost is one octet_length per column.
_HELPERS: dict[str, str] = {
    "lob_text": """
DECLARE
    kept text := left(value, max_bytes);
BEGIN
    IF fail THEN
        RAISE EXCEPTION USING ERRCODE = 'string_data_right_truncation', MESSAGE = format(
            'LOB value of %s is %s bytes, over LobMaxSize (%s KB), and the source endpoint '
            'sets FailTasksOnLobTruncation', what, octet_length(value), max_bytes / 1024);
    END IF;
    WHILE octet_length(kept) > max_bytes LOOP  -- multibyte characters: cut on a boundary
        kept := left(kept, length(kept) - greatest(1, (octet_length(kept) - max_bytes + 3) / 4));
    END LOOP;
    RAISE WARNING 'LOB value of % truncated from % to % bytes (LobMaxSize % KB)',
        what, octet_length(value), octet_length(kept), max_bytes / 1024;
    RETURN kept;
END""",
    "lob_bytea": """
BEGIN
    IF fail THEN
        RAISE EXCEPTION USING ERRCODE = 'string_data_right_truncation', MESSAGE = format(
            'LOB value of %s is %s bytes, over LobMaxSize (%s KB), and the source endpoint '
            'sets FailTasksOnLobTruncation', what, octet_length(value), max_bytes / 1024);
    END IF;
    RAISE WARNING 'LOB value of % truncated from % to % bytes (LobMaxSize % KB)',
        what, octet_length(value), max_bytes, max_bytes / 1024;
    RETURN substring(value FROM 1 FOR max_bytes);
END""",
    "lob_document": """
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'string_data_right_truncation', MESSAGE = format(
        'LOB value of %s is %s bytes, over LobMaxSize (%s KB): %s', what,
        octet_length(value), max_bytes / 1024,
        CASE WHEN fail THEN 'the source endpoint sets FailTasksOnLobTruncation'
             ELSE 'truncated, it is no longer a document and the target refuses it' END);
END""",
    "narrow_numeric": """
BEGIN
    RETURN value::numeric(28,6);
EXCEPTION WHEN numeric_value_out_of_range THEN
    RAISE EXCEPTION USING ERRCODE = 'numeric_value_out_of_range', MESSAGE = format(
        'numeric value of %s does not fit numeric(28,6), the type DMS carries an unbounded '
        'numeric as: %s digits before the point', what, length(trunc(abs(value))::text));
END""",
}
_HELPER_ARGS = {
    "lob_text": "value text, max_bytes integer, what text, fail boolean",
    "lob_bytea": "value bytea, max_bytes integer, what text, fail boolean",
    "lob_document": "value text, max_bytes integer, what text, fail boolean",
    "narrow_numeric": "value numeric, what text",
}
_HELPER_RETURNS = {
    "lob_text": "text",
    "lob_bytea": "bytea",
    "lob_document": "void",
    "narrow_numeric": "numeric",
}


@dataclass(frozen=True)
class _Table:
    oid: int
    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, type name)

    @property
    def function(self) -> str:
        return f"transit_{self.oid}"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Trigger:
    """The trigger function's body. No WHEN clause: the apply builds its executor state
    anew for every change, so a WHEN is compiled per row, which measured slower than the
    PL/pgSQL function (compiled once per session) doing the same checks."""

    body: str


def _trigger(table: _Table, rules: TransitRules) -> _Trigger | None:
    """The table's trigger, or None when no column of the table changes in transit."""
    checks: list[tuple[str, str]] = []  # (condition, what the function then does)
    for column, type_name in table.columns:
        value = f"NEW.{_q(column)}"
        what = _literal(f'"{table.schema}.{table.name}" column {column}')
        if type_name == "numeric":
            checks.append(
                (
                    f"scale({value}) > {NUMERIC_SCALE} "
                    f"OR NOT abs({value}) < 1e{NUMERIC_INTEGER_DIGITS}",
                    f"{value} := {SCHEMA}.narrow_numeric({value}, {what})",
                )
            )
            continue
        limit = rules.lob_max_bytes
        if limit is None:
            continue
        fail = "true" if rules.fail_on_lob_truncation else "false"
        if type_name in DOCUMENT_TYPES:
            size = f"octet_length({value}::text) > {limit}"
            if type_name == "jsonb":
                # Its size is its text's, which takes printing it: only when its stored
                # size (at least a sixth of the text's: an escaped control character is
                # six) says it may be over.
                size = f"pg_column_size({value}) * {JSONB_TEXT_PER_BYTE} > {limit} AND {size}"
            change = f"PERFORM {SCHEMA}.lob_document({value}::text, {limit}, {what}, {fail})"
            checks.append((size, change))
            continue
        helper = "lob_bytea" if type_name == "bytea" else "lob_text"
        checks.append(
            (
                f"octet_length({value}) > {limit}",
                f"{value} := {SCHEMA}.{helper}({value}, {limit}, {what}, {fail})",
            )
        )
    if not checks:
        return None
    steps = "".join(f"    IF {c} THEN\n        {change};\n    END IF;\n" for c, change in checks)
    return _Trigger(body=f"\nBEGIN\n{steps}    RETURN NEW;\nEND")


def _tables(conn: psycopg.Connection[Any], schemas: tuple[str, ...]) -> list[_Table]:
    found: dict[int, _Table] = {}
    for oid, schema, name, column, type_name in conn.execute(
        _COLUMNS_SQL, (list(schemas),)
    ).fetchall():
        table = found.get(int(oid)) or _Table(int(oid), str(schema), str(name), ())
        found[int(oid)] = _Table(
            table.oid, table.schema, table.name, (*table.columns, (str(column), str(type_name)))
        )
    return list(found.values())


def wanted(
    conn: psycopg.Connection[Any], rules: TransitRules, schemas: tuple[str, ...]
) -> dict[_Table, _Trigger]:
    """Per table that needs one, its trigger."""
    triggers = {table: _trigger(table, rules) for table in _tables(conn, schemas)}
    return {table: trigger for table, trigger in triggers.items() if trigger is not None}


def install(conn: psycopg.Connection[Any], rules: TransitRules, schemas: tuple[str, ...]) -> bool:
    """Make the target's transit triggers what ``rules`` want for the tables there now; False
    when they already were (no DDL ran). ``conn`` is an autocommit admin connection."""
    tables = wanted(conn, rules, schemas)
    present = {
        int(relid): (str(enabled), str(function), str(source))
        for relid, enabled, function, source in conn.execute(_PRESENT_SQL, (TRIGGER,)).fetchall()
    }
    helpers = {str(n): str(s) for n, s in conn.execute(_FUNCTIONS_SQL, (SCHEMA,)).fetchall()}
    if present == {t.oid: ("R", t.function, trig.body) for t, trig in tables.items()} and all(
        helpers.get(name) == body for name, body in _HELPERS.items()
    ):
        return False
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        for name, body in _HELPERS.items():
            conn.execute(
                _function(name, _HELPER_ARGS[name], _HELPER_RETURNS[name], body, strict=True)
            )
        for relid in set(present) - {t.oid for t in tables}:
            conn.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {_regclass(conn, relid)}")
        for table, trig in tables.items():
            target = f"{_q(table.schema)}.{_q(table.name)}"
            conn.execute(_function(table.function, "", "trigger", trig.body, strict=False))
            conn.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {target}")
            conn.execute(
                f"CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON {target} FOR EACH ROW "
                f"EXECUTE FUNCTION {SCHEMA}.{table.function}()"
            )
            conn.execute(f"ALTER TABLE {target} ENABLE REPLICA TRIGGER {TRIGGER}")
        keep = set(_HELPERS) | {t.function for t in tables}
        for name in set(helpers) - keep:
            conn.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.{_q(name)} CASCADE")
    return True


def remove(conn: psycopg.Connection[Any]) -> None:
    """Drop every transit trigger and function (the schema with them)."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


def _regclass(conn: psycopg.Connection[Any], relid: int) -> str:
    row = conn.execute("SELECT %s::oid::regclass::text", (relid,)).fetchone()
    return str(row[0]) if row else str(relid)


def _function(name: str, args: str, returns: str, body: str, *, strict: bool) -> str:
    strictness = " STRICT" if strict else ""
    return (
        f"CREATE OR REPLACE FUNCTION {SCHEMA}.{_q(name)}({args}) RETURNS {returns} "
        f"LANGUAGE plpgsql{strictness} AS {_literal(body)}"
    )
