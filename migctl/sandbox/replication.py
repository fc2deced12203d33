"""Real PostgreSQL logical replication, standing in for the DMS task in the sandbox.

Starting the sandbox's DMS task creates a publication on the source and a
subscription on the target (a full copy, then changes); stopping it disables
the subscription, resuming enables it, reloading truncates the target and
copies again. The numbers DMS would report are read from the servers:

- per table, the copy state from ``pg_subscription_rel`` and the rows applied
  from the target's ``pg_stat_user_tables``;
- the lag from the source's replication slot and ``pg_stat_replication``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

NAME = "migctl_dms"
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
    _baseline: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    _errors_at_start: int = 0

    def _source(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.source_dsn, autocommit=True, application_name="migctl-sandbox")

    def _target(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target_dsn, autocommit=True, application_name="migctl-sandbox")

    def start(self, *, reload: bool = False) -> None:
        """Create (or recreate, with ``reload``) the publication and the subscription."""
        with self._source() as src, self._target() as tgt:
            if reload:
                self._drop_subscription(tgt)
                tables = _user_tables(tgt, self.schemas)
                if tables:
                    tgt.execute(
                        sql.SQL("TRUNCATE {} CASCADE").format(
                            sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
                        )
                    )
            exists = src.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (NAME,)
            ).fetchone()
            if not exists:
                src.execute(
                    sql.SQL("CREATE PUBLICATION {} FOR TABLES IN SCHEMA {}").format(
                        sql.Identifier(NAME), sql.SQL(", ").join(map(sql.Identifier, self.schemas))
                    )
                )
            sub = tgt.execute(
                "SELECT subenabled FROM pg_subscription WHERE subname = %s", (NAME,)
            ).fetchone()
            if sub is None:
                self._baseline = {}
                tgt.execute(
                    sql.SQL(
                        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)"
                    ).format(
                        sql.Identifier(NAME), sql.Literal(self.source_dsn), sql.Identifier(NAME)
                    )
                )
            elif not sub[0]:
                tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(NAME)))
            self._errors_at_start = _error_count(tgt)

    def stop(self) -> None:
        with self._target() as tgt:
            if tgt.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (NAME,)).fetchone():
                tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(NAME)))

    def confirmed_lsn(self) -> str | None:
        """The source LSN up to which the target has confirmed the changes (DMS's checkpoint)."""
        with self._source() as src:
            row = src.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (NAME,),
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    @staticmethod
    def _drop_subscription(tgt: psycopg.Connection[Any]) -> None:
        if tgt.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (NAME,)).fetchone():
            ident = sql.Identifier(NAME)
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            tgt.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))

    def snapshot(self) -> ReplicationSnapshot:
        """What DMS would report: per-table state and rows, and the lag."""
        with self._target() as tgt:
            sub = tgt.execute(
                "SELECT oid, subenabled FROM pg_subscription WHERE subname = %s", (NAME,)
            ).fetchone()
            if sub is None:
                return ReplicationSnapshot(exists=False, enabled=False)
            rels = tgt.execute(
                "SELECT n.nspname, c.relname, r.srsubstate, "
                "coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_del, 0), "
                "coalesce(s.n_live_tup, 0) "
                "FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_stat_user_tables s ON s.relid = r.srrelid "
                "WHERE r.srsubid = %s ORDER BY 1, 2",
                (sub[0],),
            ).fetchall()
            errors = max(0, _error_count(tgt) - self._errors_at_start)
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
        self, schema: str, table: str, substate: str, ins: int, upd: int, dele: int, live: int
    ) -> TableProgress:
        key = f"{schema}.{table}"
        if substate in ("i", "d"):
            state = "Before load" if substate == "i" else "Full load"
            return TableProgress(schema, table, state, 0, 0, 0, 0)
        # The first time a table is seen synced, its inserted rows are the full load.
        base = self._baseline.setdefault(key, (ins, upd, dele))
        return TableProgress(
            schema, table, "Table completed", base[0], ins - base[0], upd - base[1], dele - base[2]
        )

    def _lag(self) -> tuple[int, float, float]:
        with self._source() as src:
            row = src.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, "
                "extract(epoch FROM r.replay_lag)::float8, extract(epoch FROM r.write_lag)::float8 "
                "FROM pg_replication_slots s "
                "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
                "WHERE s.slot_name = %s",
                (NAME,),
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


def _error_count(tgt: psycopg.Connection[Any]) -> int:
    """The subscription's apply and sync failures so far (each failure restarts its worker)."""
    row = tgt.execute(
        "SELECT coalesce(sum(apply_error_count + sync_error_count), 0)::bigint "
        "FROM pg_stat_subscription_stats WHERE subname = %s",
        (NAME,),
    ).fetchone()
    return int(row[0]) if row else 0


_LOG_TAIL = 256 * 1024
_RELATION = re.compile(r'replication target relation "([^"]+)\.([^"]+)"')


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
