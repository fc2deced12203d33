"""Real PostgreSQL logical replication, standing in for the DMS task in the sandbox.

Starting the sandbox's DMS task creates a publication on the source and a
subscription on the target (a full copy, then changes); stopping it disables
the subscription, resuming enables it, reloading truncates the target and
copies again.

The reverse task (target to source, CDC only) is the same pair the other way
round, with ``slot`` set: the subscription reads the slot the cutover made on
the target (from ``CdcStartPosition`` when that is further on), copies
nothing, and is dropped when the task stops, the slot moved to exactly what
was applied (the slot stays: the cutover owns it). Its publication is made with the sandbox, before any slot: pgoutput
reads publications as of each change. The numbers DMS would report are read
from the servers:

- per table, the copy state from ``pg_subscription_rel`` and the rows applied
  from the target's ``pg_stat_user_tables``: a table's full load is the rows its
  copy inserted (PostgreSQL's table synchronization: ``COPY`` from the snapshot
  of the slot it creates, then the changes since, up to where the subscription
  takes over), complete once its sync worker has exited (a worker reports its
  counts when it exits);
- the lag from the source's replication slot and ``pg_stat_replication``.

What DMS changes in transit (unbounded numerics, LOBs over the limit) the forward task
does too: :mod:`migctl.sandbox.transit`'s triggers on the target, installed from the
task's settings at each start, dropped with the task (:meth:`Replication.teardown`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from migctl.sandbox import transit

NAME = "migctl_dms"
REVERSE_NAME = "migctl_reverse"  # the reverse task's slot, publication and subscription
REVERSE_ROLE = "migctl_reverse"  # the role the reverse task writes to the source as
# WAL that no change of ours explains (a running-xacts record, a checkpoint)
# can sit between the current LSN and the slot's confirmed position until the
# subscriber's next status message. Below this many bytes the lag is noise.
IDLE_WAL_BYTES = 512


@dataclass(frozen=True)
class TableProgress:
    schema: str
    table: str
    state: str  # "Table completed", "Before load", "Full load", ...
    full_load_rows: int
    inserts: int
    updates: int
    deletes: int


@dataclass(frozen=True)
class ApplyError:
    """The latest apply failure the target's log shows: its message and, when named, the table."""

    message: str
    table: tuple[str, str] | None


@dataclass(frozen=True)
class ReplicationSnapshot:
    exists: bool
    enabled: bool
    tables: tuple[TableProgress, ...] = ()
    lag_bytes: int = 0
    latency_seconds: float = 0.0
    source_latency_seconds: float = 0.0
    tables_total: int = 0
    apply_errors: int = 0  # the target's apply or sync failures since the last start
    last_error: ApplyError | None = None

    @property
    def tables_loaded(self) -> int:
        return sum(t.state == "Table completed" for t in self.tables)

    @property
    def full_load_done(self) -> bool:
        return self.exists and self.tables_total > 0 and self.tables_loaded == self.tables_total

    @property
    def incoming_changes(self) -> int:
        """Changes not yet applied on the target, estimated from the WAL lag (about 200 bytes each)."""
        if self.lag_bytes <= IDLE_WAL_BYTES:
            return 0
        return max(1, self.lag_bytes // 200)


@dataclass
class Replication:
    """The publication/subscription pair; DSNs are for admin connections on loopback."""

    source_dsn: str
    target_dsn: str
    # migctl: the cutover's marker table (migctl.cutover_marker) is replicated too.
    schemas: tuple[str, ...] = ("public", "migctl")
    name: str = NAME  # of the publication and the subscription
    slot: str | None = None  # CDC only, from this existing slot on the source side
    _baseline: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    _zero: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # before the copy
    _errors_at_start: int = 0

    def _source(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.source_dsn, autocommit=True, application_name="migctl-sandbox")

    def _target(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target_dsn, autocommit=True, application_name="migctl-sandbox")

    def start(
        self,
        *,
        reload: bool = False,
        position: str | None = None,
        rules: transit.TransitRules | None = None,
    ) -> None:
        """Create (or recreate, with ``reload``) the publication and the subscription;
        ``position``: a CDC-only start moves the slot there first when it is behind;
        ``rules``: what DMS changes in transit, in place before any row is copied or applied
        (a reload sees the tables created since the last start)."""
        if self.slot is not None:
            self._start_from_slot(position)
            return
        if position and not reload:
            self._advance(self.name, position)
        with self._source() as src, self._target() as tgt:
            if reload:
                self._drop_subscription(tgt)
                # The copy starts afresh, and the changes from its own slot's snapshot: the
                # old slot (which the dropped subscription leaves) goes, or the new
                # subscription could not create its slot under the same name.
                self._drop_slot(src, self.name)
                tables = _user_tables(tgt, self.schemas)
                if tables:
                    tgt.execute(
                        sql.SQL("TRUNCATE {} CASCADE").format(
                            sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
                        )
                    )
            self.publish(src)
            if rules is not None:
                transit.install(tgt, rules, self.schemas)
            sub = tgt.execute(
                "SELECT subenabled FROM pg_subscription WHERE subname = %s", (self.name,)
            ).fetchone()
            ident = sql.Identifier(self.name)
            if sub is None:
                self._baseline = {}
                # The target's counters only grow (a reload's TRUNCATE leaves them): its
                # full load is what they gain from here.
                self._zero = _counters(tgt, self.schemas)
                tgt.execute(
                    sql.SQL(
                        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)"
                    ).format(ident, sql.Literal(self.source_dsn), ident)
                )
            elif not sub[0]:
                tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(ident))
            self._errors_at_start = _error_count(tgt, self.name)

    def publish(self, src: psycopg.Connection[Any]) -> None:
        """The publication of every table in ``schemas`` (those created later too)."""
        if src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.name,)).fetchone():
            return
        for schema in self.schemas:
            src.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        src.execute(
            sql.SQL("CREATE PUBLICATION {} FOR TABLES IN SCHEMA {}").format(
                sql.Identifier(self.name), sql.SQL(", ").join(map(sql.Identifier, self.schemas))
            )
        )

    def _start_from_slot(self, position: str | None) -> None:
        assert self.slot is not None
        with self._source() as src, self._target() as tgt:
            found = src.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot,),
            ).fetchone()
            if found is None:
                raise RuntimeError(f"replication slot {self.slot} does not exist")
            self._drop_subscription(tgt)
            if position:
                self._advance(self.slot, position)
            self._baseline = _counters(tgt, self.schemas)
            ident = sql.Identifier(self.name)
            tgt.execute(
                sql.SQL(
                    "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = false, "
                    "create_slot = false, slot_name = {})"
                ).format(ident, sql.Literal(self.source_dsn), ident, sql.Literal(self.slot))
            )
            self._errors_at_start = _error_count(tgt, self.name)

    def _advance(self, slot: str, position: str) -> None:
        """Move the slot to ``position`` (CdcStartPosition) when it is behind; it must be idle,
        so wait a moment for a just-disabled subscription's sender to let go."""
        for _ in range(100):
            with self._source() as src:
                row = src.execute(
                    "SELECT active, confirmed_flush_lsn < %s::pg_lsn FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    (position, slot),
                ).fetchone()
                if row is None or not row[1]:
                    return
                if not row[0]:
                    src.execute(
                        "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, position)
                    )
                    return
            time.sleep(0.1)
        raise RuntimeError(f"replication slot {slot} stayed active: it cannot be moved")

    def _drop_slot(self, src: psycopg.Connection[Any], slot: str) -> None:
        """Drop the slot once it is idle: a just-dropped subscription's sender lets go of it
        a moment later."""
        for _ in range(100):
            row = src.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                src.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.1)
        raise RuntimeError(f"replication slot {slot} stayed active: it cannot be dropped")

    def stop(self) -> None:
        with self._target() as tgt:
            if self.slot is not None:
                self._let_go(tgt)
                return
            if tgt.execute(
                "SELECT 1 FROM pg_subscription WHERE subname = %s", (self.name,)
            ).fetchone():
                tgt.execute(
                    sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(self.name))
                )

    def teardown(self) -> None:
        """The task is gone: drop the subscription, its slot (not a CDC-only task's: the
        cutover owns that one) and the transit triggers."""
        with self._source() as src, self._target() as tgt:
            self._drop_subscription(tgt)
            if self.slot is None:
                self._drop_slot(src, self.name)
                transit.remove(tgt)

    def confirmed_lsn(self) -> str | None:
        """The source LSN up to which the target has confirmed the changes (DMS's checkpoint)."""
        with self._source() as src:
            row = src.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot or self.name,),
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    def _let_go(self, tgt: psycopg.Connection[Any]) -> None:
        """Stop a CDC-only subscription and drop it, leaving the slot (the cutover owns it) at
        exactly what was applied, as a DMS checkpoint would: the slot's confirmed position
        lags the subscriber's, and a restart from it would apply some changes twice (a table
        without a key would take duplicate rows)."""
        assert self.slot is not None
        found = tgt.execute(
            "SELECT oid FROM pg_subscription WHERE subname = %s", (self.name,)
        ).fetchone()
        if found is None:
            return
        tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(self.name)))
        applied = tgt.execute(
            "SELECT remote_lsn::text FROM pg_replication_origin_status WHERE external_id = %s",
            (f"pg_{found[0]}",),
        ).fetchone()
        self._drop_subscription(tgt)
        if applied and applied[0] and applied[0] != "0/0":
            self._advance(self.slot, str(applied[0]))

    def _drop_subscription(self, tgt: psycopg.Connection[Any]) -> None:
        if tgt.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (self.name,)).fetchone():
            ident = sql.Identifier(self.name)
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            tgt.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))

    def snapshot(self) -> ReplicationSnapshot:
        """What DMS would report: per-table state and rows, and the lag."""
        with self._target() as tgt:
            sub = tgt.execute(
                "SELECT oid, subenabled FROM pg_subscription WHERE subname = %s", (self.name,)
            ).fetchone()
            if sub is None:
                return ReplicationSnapshot(exists=False, enabled=False)
            rels = tgt.execute(
                "SELECT n.nspname, c.relname, r.srsubstate, "
                "coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_del, 0), "
                "coalesce(s.n_live_tup, 0), "
                "EXISTS (SELECT FROM pg_stat_subscription w WHERE w.subid = r.srsubid "
                "AND w.relid = r.srrelid AND w.pid IS NOT NULL) "
                "FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_stat_user_tables s ON s.relid = r.srrelid "
                "WHERE r.srsubid = %s ORDER BY 1, 2",
                (sub[0],),
            ).fetchall()
            errors = max(0, _error_count(tgt, self.name) - self._errors_at_start)
            last_error = _last_apply_error(tgt) if errors else None
        tables = tuple(self._progress(*row) for row in rels)
        lag_bytes, latency, source_latency = self._lag()
        return ReplicationSnapshot(
            exists=True,
            enabled=bool(sub[1]),
            tables=tables,
            lag_bytes=lag_bytes,
            latency_seconds=latency,
            source_latency_seconds=source_latency,
            tables_total=len(tables),
            apply_errors=errors,
            last_error=last_error,
        )

    def _progress(
        self,
        schema: str,
        table: str,
        substate: str,
        ins: int,
        upd: int,
        dele: int,
        live: int,
        syncing: bool = False,
    ) -> TableProgress:
        key = f"{schema}.{table}"
        # Until its sync worker exits, a copied table is still loading (it applies the
        # changes made during its copy), and the rows it copied are not counted yet.
        if substate in ("i", "d") or syncing:
            state = "Before load" if substate == "i" else "Full load"
            return TableProgress(schema, table, state, 0, 0, 0, 0)
        if self.slot is not None:  # CDC only: the counters at its start are the baseline
            i0, u0, d0 = self._baseline.get(key, (0, 0, 0))
            return TableProgress(schema, table, "Table completed", 0, ins - i0, upd - u0, dele - d0)
        # The first time a table is seen synced, its inserted rows are the full load.
        base = self._baseline.setdefault(key, (ins, upd, dele))
        zero = self._zero.get(key, (0, 0, 0))[0]
        return TableProgress(
            schema,
            table,
            "Table completed",
            base[0] - zero,
            ins - base[0],
            upd - base[1],
            dele - base[2],
        )

    def _lag(self) -> tuple[int, float, float]:
        with self._source() as src:
            row = src.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, "
                "extract(epoch FROM r.replay_lag)::float8, extract(epoch FROM r.write_lag)::float8 "
                "FROM pg_replication_slots s "
                "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
                "WHERE s.slot_name = %s",
                (self.slot or self.name,),
            ).fetchone()
        if row is None or row[0] is None:
            return 0, 0.0, 0.0
        lag_bytes = max(0, int(row[0]))
        if lag_bytes <= IDLE_WAL_BYTES:
            return lag_bytes, 0.0, 0.0
        return lag_bytes, float(row[1] or 0.0), float(row[2] or 0.0)


def _user_tables(conn: psycopg.Connection[Any], schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT schemaname, relname FROM pg_stat_user_tables WHERE schemaname = ANY(%s) ORDER BY 1, 2",
        (list(schemas),),
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def _error_count(tgt: psycopg.Connection[Any], name: str) -> int:
    """The subscription's apply and sync failures so far (each failure restarts its worker)."""
    row = tgt.execute(
        "SELECT coalesce(sum(apply_error_count + sync_error_count), 0)::bigint "
        "FROM pg_stat_subscription_stats WHERE subname = %s",
        (name,),
    ).fetchone()
    return int(row[0]) if row else 0


def _counters(
    conn: psycopg.Connection[Any], schemas: tuple[str, ...]
) -> dict[str, tuple[int, int, int]]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del "
        "FROM pg_stat_user_tables WHERE schemaname = ANY(%s)",
        (list(schemas),),
    ).fetchall()
    return {str(k): (int(i), int(u), int(d)) for k, i, u, d in rows}


_LOG_TAIL = 256 * 1024
# The apply's context names the table; a refusal by a transit trigger names it in its message
# (the table sync's COPY has no such context).
_RELATION = re.compile(
    r'(?:replication target relation|LOB value of|numeric value of) "([^"]+)\.([^"]+)"'
)


def _last_apply_error(tgt: psycopg.Connection[Any]) -> ApplyError:
    """The last apply failure in the target's server log (the sandbox's clusters log to
    ``server.log`` in their data directory); a generic message when it cannot be read."""
    try:
        row = tgt.execute(
            "SELECT pg_read_file('server.log', greatest(0, (pg_stat_file('server.log')).size - %s), "
            "%s)",
            (_LOG_TAIL, _LOG_TAIL),
        ).fetchone()
    except psycopg.Error:
        return ApplyError("the target's apply failed (its log could not be read)", None)
    lines = str(row[0] if row else "").splitlines()
    for index in range(len(lines) - 1, -1, -1):
        found = _RELATION.search(lines[index])
        if found is None:
            continue
        message = next(
            (
                line.split("ERROR:", 1)[1].strip()
                for line in reversed(lines[max(0, index - 5) : index + 1])
                if "ERROR:" in line
            ),
            "the target's apply failed",
        )
        return ApplyError(message, (found.group(1), found.group(2)))
    return ApplyError("the target's apply failed; see its server log", None)
