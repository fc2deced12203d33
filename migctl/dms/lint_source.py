"""What ``dms lint`` reads from the source: tables, columns, replication readiness, and a bounded
measure of the data where it matters (unbounded numeric, LOB columns).

Everything runs read-only, on the connection it is given. A measure reads at
most ``max_rows`` rows of a table: the whole table when it holds no more,
else a ``TABLESAMPLE SYSTEM`` sample cut at ``max_rows``; the result says
which. Partition roots come from ``pg_partition_root`` (PostgreSQL 12 and later).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from migctl.pgnames import TableName

SYSTEM_SCHEMAS_SQL = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
)

_TABLES_SQL = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.relispartition,
       c.relreplident, c.reltuples,
       EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       rn.nspname, rc.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON c.relispartition AND rc.oid = pg_partition_root(c.oid)
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE c.relkind IN ('r', 'p') AND {SYSTEM_SCHEMAS_SQL}
ORDER BY n.nspname, c.relname
"""

# Domains are read as their base type (one level), arrays with their element type.
_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod),
       CASE WHEN t.typtype = 'd' AND a.atttypmod < 0 THEN t.typtypmod ELSE a.atttypmod END,
       b.typname, bn.nspname = 'pg_catalog', b.typtype, b.typcategory,
       e.typname, e.typtype, en.nspname = 'pg_catalog'
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
JOIN pg_namespace bn ON bn.oid = b.typnamespace
LEFT JOIN pg_type e ON b.typcategory = 'A' AND e.oid = b.typelem
LEFT JOIN pg_namespace en ON en.oid = e.typnamespace
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_READINESS_SQL = """
SELECT current_setting('server_version_num')::int,
       current_setting('wal_level'),
       current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots),
       current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'),
       current_setting('max_prepared_transactions')::int,
       (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()),
       (SELECT min(prepared) FROM pg_prepared_xacts WHERE database = current_database())
"""

_OLDEST_SQL = """
SELECT pid, usename, application_name, state,
       extract(epoch FROM clock_timestamp() - xact_start)::float8
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_xid IS NOT NULL AND xact_start IS NOT NULL
ORDER BY xact_start
LIMIT 1
"""


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type_sql: str  # format_type(): numeric(18,4), text, mood[]
    typmod: int  # -1: none (an unbounded numeric or varchar)
    base: str  # the base type's name (domains resolved): numeric, _int4, mood
    builtin: bool  # the base type lives in pg_catalog
    kind: str  # typtype: b base, e enum, c composite, r range, m multirange, p pseudo
    category: str  # typcategory: A array, S string, N numeric, ...
    element: str | None = None  # an array's element type
    element_kind: str | None = None
    element_builtin: bool = True


@dataclass(frozen=True)
class SourceTable:
    schema: str
    name: str
    relkind: str  # r table, p partitioned table
    unlogged: bool
    partition_of: TableName | None  # the partition tree's root, for a partition
    replica_identity: str  # d default, f full, i index, n nothing
    has_primary_key: bool
    estimated_rows: float  # reltuples; negative or 0 when never analyzed
    columns: tuple[SourceColumn, ...] = ()

    @property
    def key(self) -> TableName:
        return (self.schema, self.name)


@dataclass(frozen=True)
class Readiness:
    server_version: int
    wal_level: str
    max_replication_slots: int
    replication_slots_used: int
    max_wal_senders: int
    wal_senders_used: int
    max_prepared_transactions: int
    prepared_transactions: int  # in this database
    oldest_prepared_at: Any  # datetime or None
    oldest_transaction_seconds: float | None  # the oldest open write transaction here
    oldest_transaction: str | None  # who holds it: pid, user, application, state


@dataclass(frozen=True)
class Measurement:
    """Largest values found in a table's measured columns, and how the rows were read."""

    rows: int
    full_scan: bool
    how: str  # "full scan of 12 rows", "sample of 1,000 rows (TABLESAMPLE SYSTEM 2.5%, ...)"
    numeric: dict[str, tuple[int | None, int | None, int | None]]  # scale, int digits, precision
    lob_bytes: dict[str, int | None]


def read_tables(conn: Any) -> list[SourceTable]:
    """Every ordinary and partitioned table outside the system schemas, with its columns."""
    rows = conn.execute(_TABLES_SQL).fetchall()
    columns: dict[int, list[SourceColumn]] = {}
    oids = [r[0] for r in rows]
    for rel, name, type_sql, typmod, base, builtin, kind, cat, elem, elem_kind, elem_builtin in (
        conn.execute(_COLUMNS_SQL, (oids,)).fetchall() if oids else []
    ):
        columns.setdefault(rel, []).append(
            SourceColumn(
                name,
                type_sql,
                int(typmod),
                base,
                bool(builtin),
                kind,
                cat,
                elem,
                elem_kind,
                True if elem_builtin is None else bool(elem_builtin),
            )
        )
    tables = []
    for oid, schema, name, relkind, persistence, _part, ident, tuples, pk, r_schema, r_name in rows:
        tables.append(
            SourceTable(
                schema=schema,
                name=name,
                relkind=relkind,
                unlogged=persistence == "u",
                partition_of=(r_schema, r_name) if r_name else None,
                replica_identity=ident,
                has_primary_key=bool(pk),
                estimated_rows=float(tuples),
                columns=tuple(columns.get(oid, ())),
            )
        )
    return tables


def read_readiness(conn: Any) -> Readiness:
    version, wal, slots, slots_used, senders, senders_used, prepared_max, prepared, oldest_prep = (
        conn.execute(_READINESS_SQL).fetchone()
    )
    oldest = conn.execute(_OLDEST_SQL).fetchone()
    holder = None
    if oldest:
        pid, user, app, state, _ = oldest
        holder = f"pid {pid} ({user}, {app or 'no application_name'}, {state})"
    return Readiness(
        server_version=int(version),
        wal_level=str(wal),
        max_replication_slots=int(slots),
        replication_slots_used=int(slots_used),
        max_wal_senders=int(senders),
        wal_senders_used=int(senders_used),
        max_prepared_transactions=int(prepared_max),
        prepared_transactions=int(prepared),
        oldest_prepared_at=oldest_prep,
        oldest_transaction_seconds=float(oldest[4]) if oldest else None,
        oldest_transaction=holder,
    )


def measure(
    conn: Any,
    table: SourceTable,
    numeric_columns: Sequence[str],
    lob_columns: Sequence[tuple[str, bool]],  # (name, measured as it is: bytea and text types)
    *,
    max_rows: int,
    min_scale: bool,
) -> Measurement:
    """One bounded query: the largest scale, integer digits and precision of each numeric
    column, and the largest octet length of each LOB column.

    ``min_scale`` (PostgreSQL 13+): the scale a value needs (1.50 needs 1), not its display scale.
    """
    from psycopg import sql

    relation = sql.SQL("ONLY {}.{}").format(
        sql.Identifier(table.schema), sql.Identifier(table.name)
    )
    scale_fn = sql.SQL("min_scale" if min_scale else "scale")
    aggregates: list[sql.Composable] = []
    for name in numeric_columns:
        col = sql.Identifier(name)
        digits = sql.SQL(
            "CASE WHEN abs({c}) >= 1 THEN length(trunc(abs({c}))::text) ELSE 0 END"
        ).format(c=col)
        aggregates += [
            sql.SQL("max({f}({c}))").format(f=scale_fn, c=col),
            sql.SQL("max({d})").format(d=digits),
            sql.SQL("max({d} + coalesce({f}({c}), 0))").format(d=digits, f=scale_fn, c=col),
        ]
    for name, as_is in lob_columns:
        col = sql.Identifier(name)
        form = sql.SQL("{}" if as_is else "{}::text").format(col)
        aggregates.append(sql.SQL("max(octet_length({}))").format(form))
    names = [*numeric_columns, *(n for n, _ in lob_columns)]
    estimate = table.estimated_rows
    sampled = estimate > max_rows
    percent = min(100.0, 100.0 * max_rows / estimate) if sampled else 100.0
    sample = (
        sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(round(percent, 4)))
        if sampled
        else sql.SQL("")
    )
    limit = max_rows if sampled else max_rows + 1
    query = sql.SQL("SELECT count(*), {aggs} FROM (SELECT {cols} FROM {rel}{sample} LIMIT {n}) s")
    row = conn.execute(
        query.format(
            aggs=sql.SQL(", ").join(aggregates),
            cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            rel=relation,
            sample=sample,
            n=sql.Literal(limit),
        )
    ).fetchone()
    rows = int(row[0])
    values = list(row[1:])
    numeric = {}
    for name in numeric_columns:
        scale, digits, precision = values[:3]
        values = values[3:]
        numeric[name] = (scale, digits, precision)
    lob_bytes = {name: value for (name, _), value in zip(lob_columns, values, strict=True)}
    full = not sampled and rows <= max_rows
    if full:
        how = f"full scan of {rows:,} rows"
    elif sampled:
        how = (
            f"sample of {rows:,} rows (TABLESAMPLE SYSTEM {percent:.3g}% of about "
            f"{estimate:,.0f} rows, cut at {max_rows:,})"
        )
    else:
        how = f"first {rows:,} rows only (the table holds more than its statistics say)"
    return Measurement(rows, full, how, numeric, lob_bytes)
