"""The proof of the freeze: every change that reached the source, read from its WAL.

The freeze creates a logical replication slot (``test_decoding``, through
the SQL functions: on RDS/Aurora and on-premises alike, the source already
runs ``wal_level = logical`` for DMS) before the fence goes up. The fence's
last transaction writes a transactional logical message (prefix
``migctl_fence``, content the cutover id): the proof starts at that
transaction's commit. Every transaction that commits after it is read with
``pg_logical_slot_peek_changes`` (peek: nothing is consumed, so the proof
can be read again up to a later point). A change to a table in the fence's
scope is a breach; changes to other tables (the marker row, DMS's own
``awsdms_*`` tables) are counted and shown, not judged.

The slot holds WAL on the source until it is dropped: the cutover drops it
when it completes or when the freeze is undone; preflight reports one left
behind. What the proof cannot see: unlogged tables (not in the WAL; DMS does
not see them either) and sequences (``nextval`` writes no row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migctl.cutover.fence import FenceNames
from migctl.pgnames import TableName, show
from migctl.validate.changes import PLUGIN, flush, split_qualified

if TYPE_CHECKING:
    import psycopg

MESSAGE_PREFIX = "migctl_fence"
_NAME = r'(?:"(?:[^"]|"")*"|[a-z_][a-z0-9_]*)'
_TABLE_RE = rf"^table ({_NAME}\.{_NAME}): (?:INSERT|UPDATE|DELETE|TRUNCATE):"
_ACTION_RE = rf"^table {_NAME}\.{_NAME}: (INSERT|UPDATE|DELETE|TRUNCATE):"

# One pass over the slot (the CTE is materialized once): where the fence's message commits,
# then the changes committed after it, counted per table and action.
_READ_SQL = """
WITH c AS MATERIALIZED (
  SELECT n, lsn, xid, data
  FROM pg_logical_slot_peek_changes(%(slot)s, %(upto)s::pg_lsn, NULL,
                                    'include-xids', '1')
       WITH ORDINALITY AS c(lsn, xid, data, n)
), m AS (
  SELECT n, xid FROM c WHERE data = %(message)s ORDER BY n LIMIT 1
), s AS (
  SELECT c.n, c.lsn FROM c JOIN m ON c.n > m.n AND c.data = 'COMMIT ' || m.xid ORDER BY c.n LIMIT 1
)
SELECT (SELECT lsn::text FROM s),
       (SELECT coalesce(json_agg(json_build_array(t, a, k)), '[]'::json) FROM (
          SELECT substring(c.data FROM %(table_re)s) AS t,
                 substring(c.data FROM %(action_re)s) AS a, count(*) AS k
          FROM c, s WHERE c.n > s.n AND starts_with(c.data, 'table ')
          GROUP BY 1, 2 ORDER BY 1, 2) x)
"""
_SLOTS_SQL = r"""
SELECT slot_name, active, plugin,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
FROM pg_replication_slots
WHERE database = current_database()
  AND (slot_name LIKE 'migctl\_fence\_%%' OR slot_name LIKE 'migctl\_validate\_%%')
ORDER BY 1
"""
_PRIVILEGES_SQL = """
SELECT current_setting('wal_level'),
       r.rolsuper OR r.rolreplication
         OR (to_regrole('rds_replication') IS NOT NULL
             AND pg_has_role(r.oid, to_regrole('rds_replication'), 'MEMBER'))
FROM pg_roles r WHERE r.rolname = current_user
"""


@dataclass(frozen=True)
class Slot:
    name: str
    active: bool
    plugin: str
    retained_bytes: int

    def show(self) -> str:
        held = f"{self.retained_bytes / 2**20:.1f} MiB of WAL"
        return f"replication slot {self.name} ({self.plugin}) holds {held}" + (
            ", in use" if self.active else ""
        )


@dataclass(frozen=True, kw_only=True)
class Changes:
    """What committed on the source after the fence went up, up to ``to_lsn``."""

    from_lsn: str | None  # the fence's commit; None: its start message is not in the slot
    to_lsn: str
    counts: dict[TableName, dict[str, int]]  # per table, per action (INSERT, ...)

    def in_scope(self) -> dict[TableName, dict[str, int]]:
        return {t: c for t, c in self.counts.items() if in_scope(t)}

    def outside(self) -> dict[TableName, dict[str, int]]:
        return {t: c for t, c in self.counts.items() if not in_scope(t)}

    def facts(self) -> dict[str, Any]:
        def listed(found: dict[TableName, dict[str, int]]) -> list[dict[str, Any]]:
            return [{"schema": s, "name": n, "changes": c} for (s, n), c in sorted(found.items())]

        return {
            "from_lsn": self.from_lsn,
            "to_lsn": self.to_lsn,
            "breaches": listed(self.in_scope()),
            "outside_fence": listed(self.outside()),
        }


def in_scope(table: TableName) -> bool:
    """The fence's scope (fence.SCOPE_SQL), by name."""
    schema, name = table
    system = schema in ("pg_catalog", "information_schema", "migctl") or schema.startswith(
        ("pg_toast", "pg_temp_")
    )
    return not system and not name.startswith("awsdms_")


def describe(counts: dict[TableName, dict[str, int]]) -> str:
    return "; ".join(
        f"{show(t)}: " + ", ".join(f"{n} {a}" for a, n in sorted(c.items()))
        for t, c in sorted(counts.items())
    )


def check_privileges(conn: psycopg.Connection[Any]) -> list[str]:
    """What the proof needs and the source does not give: an empty list when all is there."""
    row = conn.execute(_PRIVILEGES_SQL, []).fetchone()
    assert row is not None
    level, may_replicate = row
    missing = []
    if level != "logical":
        missing.append(f"wal_level is {level}, not logical")
    if not may_replicate:
        missing.append(
            "the source user may not create a replication slot (REPLICATION, or rds_replication)"
        )
    return missing


def slots(conn: psycopg.Connection[Any]) -> list[Slot]:
    rows = conn.execute(_SLOTS_SQL, []).fetchall()
    return [Slot(str(n), bool(a), str(p), int(b or 0)) for n, a, p, b in rows]


def slot_of(conn: psycopg.Connection[Any], names: FenceNames) -> Slot | None:
    """This cutover's slot, when it exists."""
    return next((s for s in slots(conn) if s.name == names.trigger), None)


def create_slot(conn: psycopg.Connection[Any], names: FenceNames) -> str | None:
    """Create the slot unless it exists; the LSN it starts at, None when it existed.

    PostgreSQL waits for every transaction running at that moment to end
    before the slot is ready: the caller sets ``statement_timeout``.
    """
    if slot_of(conn, names) is not None:
        return None
    row = conn.execute(
        "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
        (names.trigger, PLUGIN),
    ).fetchone()
    return str(row[0]) if row else None


def drop_slot(conn: psycopg.Connection[Any], names: FenceNames) -> bool:
    """Drop the slot when it exists; whether it did."""
    row = conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (names.trigger,),
    ).fetchone()
    return row is not None


def write_start(conn: psycopg.Connection[Any], names: FenceNames) -> str:
    """The start mark, in the caller's transaction: a logical message with the cutover id.

    The transaction commits with ``synchronous_commit = on``: the mark is on disk when the
    fence is said to be up."""
    conn.execute("SET LOCAL synchronous_commit = on")
    row = conn.execute(
        "SELECT pg_logical_emit_message(true, %s, %s)::text", (MESSAGE_PREFIX, names.cutover_id)
    ).fetchone()
    assert row is not None
    return str(row[0])


def start_written(conn: psycopg.Connection[Any], names: FenceNames) -> bool:
    """Whether the start mark is in the slot (False without a slot)."""
    if slot_of(conn, names) is None:
        return False
    return read(conn, names).from_lsn is not None


def read(conn: psycopg.Connection[Any], names: FenceNames) -> Changes:
    """Every change committed after the start mark, up to now (:func:`flush`)."""
    upto = (flush(conn),)
    content = names.cutover_id
    message = (
        f"message: transactional: 1 prefix: {MESSAGE_PREFIX}, "
        f"sz: {len(content.encode())} content:{content}"
    )
    row = conn.execute(
        _READ_SQL,
        {
            "slot": names.trigger,
            "upto": upto[0],
            "message": message,
            "table_re": _TABLE_RE,
            "action_re": _ACTION_RE,
        },
    ).fetchone()
    assert row is not None
    from_lsn, found = row
    counts: dict[TableName, dict[str, int]] = {}
    for qualified, action, count in found:
        counts.setdefault(split_qualified(qualified), {})[action] = int(count)
    return Changes(from_lsn=from_lsn, to_lsn=str(upto[0]), counts=counts)
