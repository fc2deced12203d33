"""Which rows changed since a point, read from the database's own WAL (logical decoding).

A logical replication slot (``test_decoding``, through the SQL functions: on
RDS/Aurora and on-premises alike) is created before the point it must see
from: every transaction that commits after the slot is ready is decoded,
whatever wrote it (the application, DMS, a superuser, a trigger). Reading
never consumes (``pg_logical_slot_peek_changes``); the caller moves the slot
on (:func:`advance`) once it has recorded what it read, so a crash in between
reads the same changes again, never fewer.

From each change, only the table and its key are kept: ``INSERT`` and
``UPDATE`` name the new row's key (an ``UPDATE`` that changed the key names
the old one too, in ``old-key``), ``DELETE`` the old one. When a change does
not carry its key (a ``TRUNCATE``; a ``DELETE`` of a table whose replica
identity holds no key; a key too large to be stored inline, printed as
``unchanged-toast-datum``), the table is marked to be compared in full.
Values are the type's text output, the same text ``::text`` gives, so a key
read here finds its row with ``key::text = value`` on either side.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.errors import OperationalError
from migctl.pgnames import TableName
from migctl.validate.session import PINNED_SETTINGS, set_configs

if TYPE_CHECKING:
    import psycopg

PLUGIN = "test_decoding"
FLUSH_PREFIX = "migctl_fence_flush"
TextKey = tuple[str, ...]

_PART = re.compile(r'"((?:[^"]|"")*)"|([a-z_][a-z0-9_$]*)')
_HEADER = re.compile(r"table (.+?): (INSERT|UPDATE|DELETE|TRUNCATE):(?: |$)")
_UNCHANGED = "unchanged-toast-datum"
_VALUE_SETTINGS = ("TimeZone", "DateStyle", "IntervalStyle", "extra_float_digits", "bytea_output")
_OLD_KEY = "old-key: "
_NEW_TUPLE = "new-tuple: "
_READ_SQL = """
SELECT data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL, 'skip-empty-xacts', '1')
WHERE starts_with(data, 'table ')
"""
_ROOTS_SQL = """
SELECT n.nspname, c.relname, rn.nspname, r.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = pg_partition_root(c.oid) JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relispartition
"""
# Every transaction in progress when the position was taken, still in progress: a
# transaction whose commit is before the position may not be visible yet to a snapshot.
_RUNNING_SQL = """
SELECT count(*) FROM pg_snapshot_xip(%s::pg_snapshot) x
WHERE pg_xact_status(x) = 'in progress'
"""


@dataclass
class TableChanges:
    """One table's changes: the keys they touched, or why the table must be read in full."""

    keys: set[TextKey] = field(default_factory=set)
    whole: str | None = None
    changes: int = 0


def split_qualified(qualified: str) -> TableName:
    """``schema.table`` as test_decoding prints it (quote_identifier on each part)."""
    parts = []
    position = 0
    for _ in range(2):
        match = _PART.match(qualified, position)
        if match is None:
            raise ValueError(f"not a qualified table name: {qualified!r}")
        quoted, plain = match.groups()
        parts.append(quoted.replace('""', '"') if quoted is not None else plain)
        position = match.end() + 1  # past the dot
    return parts[0], parts[1]


def flush(conn: psycopg.Connection[Any]) -> str:
    """Make every commit so far readable by a slot; the WAL position it reaches.

    Decoding reads only WAL flushed to disk, and with ``synchronous_commit =
    off`` (or ``local``) a transaction is visible before its commit is
    flushed: a change read too early would be missed. A transaction that
    writes a logical message and commits with ``synchronous_commit = on``
    flushes the WAL up to its own commit, so everything committed before it.
    ``conn`` is in autocommit.
    """
    assert conn.autocommit, "flush() commits: it needs an autocommit connection"
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, %s, '')", (FLUSH_PREFIX,))
    row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def create_slot(conn: psycopg.Connection[Any], name: str) -> str:
    """Create the slot unless it exists; where it starts (its confirmed position).

    PostgreSQL waits for every transaction running at that moment to end before
    the slot is ready: the caller sets ``statement_timeout``.
    """
    found = position(conn, name)
    if found is not None:
        return found
    row = conn.execute(
        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (name, PLUGIN)
    ).fetchone()
    assert row is not None
    return str(row[0])


def position(conn: psycopg.Connection[Any], name: str) -> str | None:
    """Where the slot's next read starts; None when there is no such slot."""
    row = conn.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (name,)
    ).fetchone()
    return None if row is None else str(row[0])


def drop_slot(conn: psycopg.Connection[Any], name: str) -> bool:
    """Drop the slot when it exists; whether it did."""
    row = conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    ).fetchone()
    return row is not None


def mark(conn: psycopg.Connection[Any], *, wait_seconds: float = 60.0) -> str:
    """A position such that every transaction committed before it is readable by the slot
    and visible to every snapshot taken after this returns.

    A transaction's commit record is written before it leaves the list of running
    transactions: one committed just before the position may still look running to a
    snapshot taken at once. So this waits for every transaction running at the position
    to end (bounded by ``wait_seconds``), then flushes (:func:`flush`).
    """
    row = conn.execute(
        "SELECT pg_current_wal_insert_lsn()::text, pg_current_snapshot()::text"
    ).fetchone()
    assert row is not None
    lsn, snapshot = str(row[0]), str(row[1])
    deadline = time.monotonic() + wait_seconds
    while True:
        running = conn.execute(_RUNNING_SQL, (snapshot,)).fetchone()
        if running is None or int(running[0]) == 0:
            break
        if time.monotonic() > deadline:
            raise OperationalError(
                f"{running[0]} transaction(s) running at WAL position {lsn} did not end within "
                f"{wait_seconds:g}s: the changes they make cannot be placed before or after it"
            )
        time.sleep(0.01)
    flush(conn)
    return lsn


def advance(conn: psycopg.Connection[Any], name: str, upto: str) -> None:
    """Move the slot on to ``upto``: what committed before it is not read again."""
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (name, upto))


def read_changes(
    conn: psycopg.Connection[Any],
    slot: str,
    upto: str,
    keys: Mapping[TableName, Sequence[str]],
) -> dict[TableName, TableChanges]:
    """The keys of the rows of ``keys``' tables (table -> its key columns) changed in the
    transactions that committed before ``upto``, since the slot's position."""
    found: dict[TableName, TableChanges] = {}
    roots = partition_roots(conn)
    with conn.transaction(), conn.cursor(name="migctl_changes") as cur:
        # Values are printed by their types' output functions under this session's settings:
        # the validation's own (session.PINNED_SETTINGS), so a key reads as ``key::text`` does.
        calls, params = set_configs({k: PINNED_SETTINGS[k] for k in _VALUE_SETTINGS}, local=True)
        conn.execute("SELECT " + calls, params)
        cur.itersize = 10_000
        cur.execute(_READ_SQL, (slot, upto))
        for (data,) in cur:
            header = _HEADER.match(data)
            if header is None:
                continue
            table = split_qualified(header.group(1))
            table = roots.get(table, table)  # a row of a partition is its partitioned table's
            if table not in keys:
                continue
            changes = found.setdefault(table, TableChanges())
            changes.changes += 1
            if changes.whole is None:
                _note(changes, header.group(2), data[header.end() :], keys[table])
    return found


def partition_roots(conn: psycopg.Connection[Any]) -> dict[TableName, TableName]:
    """Each partition -> the partitioned table at the top of its tree: decoding names the
    partition a row lives in, validate compares the partitioned table."""
    rows = conn.execute(_ROOTS_SQL).fetchall()
    return {(str(s), str(n)): (str(rs), str(rn)) for s, n, rs, rn in rows}


def _note(changes: TableChanges, action: str, rest: str, key: Sequence[str]) -> None:
    if action == "TRUNCATE":
        changes.whole = "it was truncated"
        return
    if not key:
        changes.whole = "it has no primary key"
        return
    if rest.startswith("(no-tuple-data)"):
        changes.whole = f"a {action} did not carry the row's key (replica identity)"
        return
    if rest.startswith(_OLD_KEY):  # an UPDATE that changed the key: the old one, then the row
        old, end = columns(rest, len(_OLD_KEY))
        rows = [old, columns(rest, end + len(_NEW_TUPLE))[0]]
    else:
        rows = [columns(rest)[0]]
    for values in rows:
        picked = tuple(values.get(k) for k in key)
        if any(v is None or v == _UNCHANGED for v in picked):
            changes.whole = f"a {action} did not carry the row's key"
            return
        changes.keys.add(tuple(str(v) for v in picked))


def columns(text: str, start: int = 0) -> tuple[dict[str, str | None], int]:
    """``name[type]:value ...`` as test_decoding prints a tuple, from ``start`` to the end or
    to ``new-tuple: ``: name -> text (None: null), and where it stopped."""
    out: dict[str, str | None] = {}
    i, n = start, len(text)
    while i < n and not text.startswith(_NEW_TUPLE, i):
        if text[i] == '"':
            end = i + 1
            while True:
                end = text.index('"', end)
                if end + 1 < n and text[end + 1] == '"':
                    end += 2
                    continue
                break
            name = text[i + 1 : end].replace('""', '"')
            i = end + 1
        else:
            end = text.index("[", i)
            name = text[i:end]
            i = end
        if text[i] != "[":
            raise ValueError(f"unexpected test_decoding output near {text[i : i + 40]!r}")
        i = text.index("]:", i) + 2
        value, i = _value(text, i)
        out[name] = value
        if i < n and text[i] == " ":
            i += 1
    return out, i


def _value(text: str, i: int) -> tuple[str | None, int]:
    if text.startswith("B'", i):  # bit strings: B'0101'
        i += 1
    if text.startswith("'", i):
        parts = []
        j = i + 1
        while True:
            end = text.index("'", j)
            parts.append(text[j:end])
            if end + 1 < len(text) and text[end + 1] == "'":
                parts.append("'")
                j = end + 2
                continue
            return "".join(parts), end + 1
    end = text.find(" ", i)
    end = len(text) if end < 0 else end
    literal = text[i:end]
    return (None if literal == "null" else literal), end
