"""What each side holds: tables, columns, types, primary keys and sequences, from pg_catalog.

Works on PostgreSQL 11 and later (``pg_sequence``, ``relispartition``). Only
ordinary and partitioned tables are compared; partitions are covered by their
parent. Tables and sequences are keyed by ``(schema, name)`` pairs, never by a
joined string. Table selection takes globs (``migctl.pgnames.matches``), and a
selection that selects nothing is an error, never "0 tables, all match".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from migctl.errors import UsageError
from migctl.pgnames import TableName, is_glob, matches, show, show_part


@dataclass(frozen=True)
class PgType:
    """A column's type as far as hashing cares: its base (domains resolved) in pg_catalog or not."""

    name: str  # typname of the base type, e.g. "numeric", "_int4", "mood"
    builtin: bool  # base type lives in pg_catalog
    kind: str  # typtype of the base: b base, e enum, c composite, r range, m multirange, p pseudo
    element: str | None = None  # element typname for arrays of pg_catalog types
    finite: bool = False  # numeric with a declared precision: it cannot hold ±Infinity


@dataclass(frozen=True)
class Column:
    name: str
    type_sql: str  # format_type(), as people read it: numeric(18,4)
    type: PgType
    not_null: bool
    position: int


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    estimated_rows: float  # reltuples; negative when never vacuumed or analyzed

    @property
    def key(self) -> TableName:
        return (self.schema, self.name)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class SequenceInfo:
    schema: str
    name: str
    increment: int
    owned_by: tuple[str, str, str] | None  # (schema, table, column)

    @property
    def key(self) -> TableName:
        return (self.schema, self.name)

    @property
    def owner(self) -> TableName | None:
        return (self.owned_by[0], self.owned_by[1]) if self.owned_by else None


@dataclass(frozen=True)
class Catalog:
    server_version: int
    tables: dict[TableName, TableInfo]
    sequences: dict[TableName, SequenceInfo]
    schemas: tuple[str, ...] = field(default=())  # every schema on the server but the system's


_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.reltuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod),
       a.attnotnull AND NOT EXISTS (  -- PostgreSQL 18: NOT NULL ... NOT VALID lets old NULLs stay
           SELECT FROM pg_constraint k
           WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND NOT k.convalidated
             AND a.attnum = ANY(k.conkey)),
       a.atttypid, a.atttypmod
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_PRIMARY_KEYS_SQL = """
SELECT i.indrelid, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = ANY(%s)
ORDER BY i.indrelid, k.ord
"""

_TYPES_SQL = """
SELECT t.oid, t.typname, n.nspname = 'pg_catalog', t.typtype, t.typbasetype, t.typelem, t.typcategory,
       t.typtypmod
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
"""

_SCHEMAS_SQL = """
SELECT nspname FROM pg_namespace
WHERE nspname <> 'information_schema' AND nspname !~ '^pg_(catalog|toast|temp_|toast_temp_)'
ORDER BY 1
"""

_SEQUENCES_SQL = """
SELECT n.nspname, c.relname, s.seqincrement, tn.nspname, tc.relname, ta.attname
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class tc ON tc.oid = d.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
LEFT JOIN pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
WHERE n.nspname = ANY(%s)
ORDER BY 1, 2
"""


def read_catalog(conn: Any, schemas: Sequence[str]) -> Catalog:
    """Tables, columns, primary keys and sequences in ``schemas`` (one read-only transaction)."""
    schema_list = list(schemas)
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])
    rows = conn.execute(_TABLES_SQL, (schema_list,)).fetchall()
    column_rows = conn.execute(_COLUMNS_SQL, (schema_list,)).fetchall()
    types = _resolve_types(conn.execute(_TYPES_SQL).fetchall())
    columns: dict[int, list[Column]] = {}
    for relid, name, attnum, type_sql, not_null, type_oid, typmod in column_rows:
        pg_type = types.get(type_oid, PgType("unknown", False, "b"))
        if typmod >= 0 and pg_type.name == "numeric":
            pg_type = replace(pg_type, finite=True)
        columns.setdefault(relid, []).append(
            Column(name, type_sql, pg_type, bool(not_null), attnum)
        )
    keys: dict[int, list[str]] = {}
    for relid, attname in conn.execute(_PRIMARY_KEYS_SQL, (schema_list,)).fetchall():
        keys.setdefault(relid, []).append(attname)
    tables = {}
    for oid, schema, name, estimate in rows:
        info = TableInfo(
            schema, name, tuple(columns.get(oid, ())), tuple(keys.get(oid, ())), float(estimate)
        )
        tables[info.key] = info
    sequences = {}
    for schema, name, increment, t_schema, t_name, t_col in conn.execute(
        _SEQUENCES_SQL, (schema_list,)
    ):
        owner = (t_schema, t_name, t_col) if t_name else None
        seq = SequenceInfo(schema, name, int(increment), owner)
        sequences[seq.key] = seq
    all_schemas = tuple(r[0] for r in conn.execute(_SCHEMAS_SQL).fetchall())
    conn.rollback()
    return Catalog(version, tables, sequences, all_schemas)


def _resolve_types(rows: Iterable[tuple[Any, ...]]) -> dict[int, PgType]:
    raw = {r[0]: r for r in rows}

    def base(oid: int) -> tuple[tuple[Any, ...], bool]:
        """The base type's row, and whether a domain on the way declares a typmod."""
        seen = 0
        row = raw[oid]
        typmod = False
        while row[3] == "d" and row[4] in raw and seen < 32:  # domain over domain over ...
            typmod = typmod or row[7] >= 0
            row = raw[row[4]]
            seen += 1
        return row, typmod

    resolved: dict[int, PgType] = {}
    for oid in raw:
        (_, typname, builtin, typtype, _, typelem, category, _), typmod = base(oid)
        element = None
        if category == "A" and typelem in raw:
            elem = base(typelem)[0]
            element = elem[1] if elem[2] else None
        finite = typmod and typname == "numeric"
        resolved[oid] = PgType(typname, bool(builtin), typtype, element, finite)
    return resolved


def select_tables(
    source: Catalog,
    target: Catalog,
    schemas: Sequence[str],
    include: Sequence[str],
    exclude: Sequence[str],
) -> list[TableName]:
    """The tables to compare: on either side, matching any include glob (all when none), no exclude.

    A selection that selects nothing is a mistake the operator must hear about,
    not "0 tables, all match": UsageError (exit 2) when a schema asked for exists
    on neither side, when an include pattern matches no table (a typo would
    silently leave tables out of the gate), or when nothing is left.
    """
    present = set(source.schemas) | set(target.schemas)
    missing = [s for s in schemas if s not in present]
    if missing:
        on_source = ", ".join(show_part(s) for s in source.schemas) or "none"
        raise UsageError(
            f"--schema {', '.join(show_part(s) for s in missing)} matched no schema;"
            f" schemas on the source: {on_source}",
            hint="use --schema or [validate] schemas",
        )
    universe = sorted(set(source.tables) | set(target.tables))
    for pattern in include:
        if not any(matches(n, pattern) for n in universe):
            what = "table pattern" if is_glob(pattern) else "table"
            raise UsageError(
                f"{what} {pattern!r} matched no table on source or target{_listing(universe)}"
            )
    selected = [n for n in universe if not include or any(matches(n, p) for p in include)]
    chosen = [n for n in selected if not any(matches(n, p) for p in exclude)]
    if not chosen:
        parts = [f"--table {p!r}" for p in include] + [f"--exclude {p!r}" for p in exclude]
        selection = " ".join(parts) or f"--schema {', '.join(map(show_part, schemas))}"
        raise UsageError(f"{selection} selected no table: nothing to compare{_listing(universe)}")
    return chosen


def _listing(names: Sequence[TableName], shown: int = 10) -> str:
    if not names:
        return " (the selected schemas hold no table)"
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return f"; tables: {', '.join(show(n) for n in names[:shown])}{more}"
