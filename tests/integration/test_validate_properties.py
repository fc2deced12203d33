"""Validation proven by property (hypothesis) against the two real clusters, not by a few examples.

- Every supported column type: a value and its nearest different neighbours
  (one bit or one unit at every position of its representation; for 8-byte
  types each of the 64 bits and the values whose halves fold onto the same 32
  bits) hash apart, as a value and as a key, and hash alike on both servers;
  ``validate`` reports each neighbour, as a changed value and as a key, and a
  value swapped with a neighbour or NULL between two columns as a change.
- Random tables (random types, keys, NULLs) with random single-cell changes,
  deleted and inserted rows: ``validate`` reports exactly the changed keys.
- Values PostgreSQL calls equal (numeric trailing zeros, jsonb numbers,
  ``-0.0``, char(n) blanks) are equal.

CI runs the ``ci`` profile (a fixed seed, few examples: tests/conftest.py);
``pytest tests/integration/test_validate_properties.py --hypothesis-profile=deep``
runs many more (docs/validate.md). Every data test runs from PostgreSQL 15 to
15 and to 18, whose session defaults and collations differ (tests/conftest.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from value_cases import CASES, JSONB_VALUES, jsonb_text, with_more_zeros

from migctl.db import Database
from migctl.validate.catalog import read_catalog
from migctl.validate.comparison import plan_table
from migctl.validate.hashing import ALGORITHMS, hash_columns
from migctl.validate.local import validate
from migctl.validate.report import TableResult
from migctl.validate.runner import ValidateOptions
from migctl.validate.session import SessionOptions, Side


@pytest.fixture(params=["pg15-pg15", "pg15-pg18"])
def pair(request: pytest.FixtureRequest) -> Any:
    name = "pg_pair_mixed" if request.param == "pg15-pg18" else "pg_pair"
    return request.getfixturevalue(name)


def fresh_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def create(conn: psycopg.Connection[Any], table: str, columns: str) -> None:
    conn.execute(f'CREATE TABLE "{table}" ({columns})')  # type: ignore[arg-type]


def insert(
    conn: psycopg.Connection[Any], table: str, rows: list[tuple[tuple[str, tuple[Any, ...]], ...]]
) -> None:
    """Rows of (SQL expression, parameters) cells, in one statement per 200 rows."""
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        values = ", ".join("(" + ", ".join(e for e, _ in row) + ")" for row in chunk)
        params = [p for row in chunk for _, ps in row for p in ps]
        conn.execute(f'INSERT INTO "{table}" VALUES {values}', params)  # type: ignore[arg-type]


def lit(value: Any) -> tuple[str, tuple[Any, ...]]:
    return "%s", (value,)


def check(pair: Any, table: str, *, chunk_rows: int = 8, max_keys: int = 100_000) -> TableResult:
    report = validate(
        Database(pair.source_dsn, "source"),
        Database(pair.target_dsn, "target"),
        ValidateOptions(
            tables=(f'public."{table}"',),
            chunk_rows=chunk_rows,
            max_keys=max_keys,
            sequences=False,
            session=SessionOptions(retry_wait_seconds=0),
        ),
    )
    (result,) = report.tables
    assert result.error is None, result.error
    return result


def drop(pair: Any, *tables: str) -> None:
    for connect in (pair.source_conn, pair.target_conn):
        with connect() as conn:
            for table in tables:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')  # type: ignore[arg-type]


def value_hashes(pair: Any, table: str) -> dict[str, dict[int, tuple[int, int]]]:
    """Per side, per id: (value hash, key hash) of column v, as validate computes them."""
    out: dict[str, dict[int, tuple[int, int]]] = {}
    plan = None
    for label, dsn in (("source", pair.source_dsn), ("target", pair.target_dsn)):
        side = Side(dsn, label, SessionOptions(retry_wait_seconds=0))
        try:
            if plan is None:
                info = read_catalog(side.conn, ["public"]).tables[("public", table)]
                plan = plan_table(info, info, ALGORITHMS[0]).plan
            (column,) = [c for c in plan.columns if c.name == "v"]
            query = psycopg.sql.SQL("SELECT id, {}, {} FROM {}").format(
                hash_columns((column,)),
                hash_columns((column,), canonical=True),
                plan.relation,
            )
            out[label] = {int(i): (int(h), int(k)) for i, h, k in side.execute(query)}
        finally:
            side.close()
    return out


CASE_NAMES = sorted(CASES)


def around(case_name: str, base: Any) -> list[Any]:
    """``base``'s neighbours, each once and none equal to ``base`` as written."""
    case = CASES[case_name]
    seen = {case.sql(base)}
    out = []
    for value in case.neighbours(base):
        written = case.sql(value)
        if written not in seen:
            seen.add(written)
            out.append(value)
    return out


@pytest.mark.parametrize("case_name", CASE_NAMES)
@given(data=st.data())
def test_every_neighbour_hashes_apart_and_alike_on_both_servers(
    pair: Any, case_name: str, data: st.DataObject
) -> None:
    case = CASES[case_name]
    base = data.draw(case.values, label="base")
    values = [base, *around(case_name, base)]
    table = fresh_name("h")
    rows = [(lit(i), case.sql(v)) for i, v in enumerate(values)]
    rows.append((lit(len(values)), case.sql(None)))  # NULL: a value of its own
    for connect in (pair.source_conn, pair.target_conn):
        with connect() as conn:
            create(conn, table, f"id int PRIMARY KEY, v {case.type_sql}")
            insert(conn, table, rows)
    try:
        hashes = value_hashes(pair, table)
        assert hashes["source"] == hashes["target"]  # the same value hashes alike everywhere
        by_value = {h for h, _ in hashes["source"].values()}
        by_key = {k for _, k in hashes["source"].values()}
        assert len(by_value) == len(by_key) == len(rows), "two different values hash alike"
    finally:
        drop(pair, table)


@pytest.mark.parametrize("case_name", CASE_NAMES)
@given(data=st.data())
def test_validate_reports_every_neighbour_as_a_value_and_as_a_key(
    pair: Any, case_name: str, data: st.DataObject
) -> None:
    case = CASES[case_name]
    base = data.draw(case.values, label="base")
    neighbours = around(case_name, base)
    assume(neighbours)
    values, keys = fresh_name("v"), fresh_name("k")
    with pair.source_conn() as src, pair.target_conn() as tgt:
        for conn in (src, tgt):
            create(conn, values, f"id int PRIMARY KEY, v {case.type_sql}")
        insert(src, values, [(lit(i), case.sql(base)) for i in range(len(neighbours))])
        insert(tgt, values, [(lit(i), case.sql(n)) for i, n in enumerate(neighbours)])
        if case.key:
            on_source = [base, *neighbours[1::2]]
            on_target = neighbours[0::2]
            for conn, held in ((src, on_source), (tgt, on_target)):
                create(conn, keys, f"k {case.type_sql} PRIMARY KEY, n int")
                insert(conn, keys, [(case.sql(v), lit(1)) for v in held])
    try:
        changed = check(pair, values)
        assert changed.changed_count == len(neighbours)
        assert sorted(k[0] for k in changed.changed) == list(range(len(neighbours)))
        assert changed.missing_in_source_count == changed.missing_in_target_count == 0
        if case.key:
            moved = check(pair, keys)
            assert (moved.missing_in_target_count, moved.missing_in_source_count) == (
                len(on_source),
                len(on_target),
            )
            assert moved.changed_count == 0 and moved.status == "mismatch"
    finally:
        drop(pair, values, keys)


@pytest.mark.parametrize("case_name", CASE_NAMES)
@given(data=st.data())
def test_a_value_swapped_with_a_neighbour_or_null_between_two_columns_is_a_change(
    pair: Any, case_name: str, data: st.DataObject
) -> None:
    """(a, b) against (b, a): a hash that returns its seed for some value (float 0, numeric
    NaN, an array of NULLs) would let the two columns' steps commute and call them equal."""
    case = CASES[case_name]
    base = data.draw(case.values, label="base")
    others = [None, *around(case_name, base)]
    table = fresh_name("s")
    with pair.source_conn() as src, pair.target_conn() as tgt:
        for conn in (src, tgt):
            create(conn, table, f"id int PRIMARY KEY, a {case.type_sql}, b {case.type_sql}")
        insert(src, table, [(lit(i), case.sql(base), case.sql(o)) for i, o in enumerate(others)])
        insert(tgt, table, [(lit(i), case.sql(o), case.sql(base)) for i, o in enumerate(others)])
    try:
        swapped = check(pair, table)
        assert sorted(k[0] for k in swapped.changed) == list(range(len(others)))
    finally:
        drop(pair, table)


# -- random tables ------------------------------------------------------------------

RANDOM_TYPES = [
    "int2", "int4", "int8", "float4", "float8", "numeric", "numeric(18,4)", "text", "char(4)",
    "bytea", "uuid", "bool", "date", "timestamp", "timestamptz", "time", "timetz", "money",
    "jsonb", "int8[]", "int4[]",
]  # fmt: skip
KEY_TYPES = ["int4", "int8", "text", "uuid", "timestamptz", "date", "composite", None]
Cell = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Table:
    key: str | None  # a CASES name, "composite" (int4, text) or None: no primary key
    columns: tuple[str, ...]  # CASES names of the other columns

    @property
    def keys(self) -> list[str]:
        if self.key is None:
            return []
        return ["int4", "text"] if self.key == "composite" else [self.key]

    def ddl(self) -> str:
        parts = [f"k{i} {CASES[k].type_sql} NOT NULL" for i, k in enumerate(self.keys)]
        parts += [f"c{i} {CASES[c].type_sql}" for i, c in enumerate(self.columns)]
        if self.keys:
            parts.append(f"PRIMARY KEY ({', '.join(f'k{i}' for i in range(len(self.keys)))})")
        return ", ".join(parts)

    def cells(self, key: tuple[Any, ...], values: list[Any]) -> tuple[Cell, ...]:
        kinds = [*self.keys, *self.columns]
        return tuple(CASES[k].sql(v) for k, v in zip(kinds, [*key, *values], strict=True))

    def key_out(self, alias: str) -> str:
        """The key as validate reports it: integers as numbers, other types as their text."""
        return ", ".join(
            f"{alias}.k{i}::int8" if k in ("int2", "int4", "int8") else f"{alias}.k{i}::text"
            for i, k in enumerate(self.keys)
        )


@st.composite
def random_tables(
    draw: st.DrawFn,
) -> tuple[
    Table,
    list[tuple[Any, ...]],
    list[list[Any]],
    list[list[Any]],
    set[int],
    list[tuple[int, int, Any]],
]:
    """A table, its unique keys, the source's rows, the inserted rows, the deleted, the changes."""
    t = Table(
        draw(st.sampled_from(KEY_TYPES)),
        tuple(draw(st.lists(st.sampled_from(RANDOM_TYPES), min_size=1, max_size=6))),
    )
    n = draw(st.integers(0, 40))
    extra = draw(st.integers(0, 3))
    key_values = st.tuples(*(CASES[k].values for k in t.keys))
    keys = draw(st.lists(key_values, min_size=n + extra, max_size=n + extra, unique=True))
    row = st.tuples(*(CASES[c].values | st.none() for c in t.columns)).map(list)
    rows = draw(st.lists(row, min_size=n + extra, max_size=n + extra))
    deleted = draw(st.sets(st.integers(0, n - 1), max_size=3)) if n else set()
    changes = []
    if n:
        for _ in range(draw(st.integers(0, 4))):
            i, c = draw(st.integers(0, n - 1)), draw(st.integers(0, len(t.columns) - 1))
            changes.append((i, c, draw(CASES[t.columns[c]].values | st.none())))
    return t, keys, rows[:n], rows[n:], deleted, changes


@given(drawn=random_tables())
def test_random_tables_report_exactly_the_changed_keys(pair: Any, drawn: Any) -> None:
    """Whatever the types, keys and NULLs, validate reports what PostgreSQL's own equality says.

    The oracle is PostgreSQL: the target's rows are also loaded beside the
    source's on the source server, where plain SQL (``IS DISTINCT FROM`` row by
    row on the key, ``EXCEPT ALL`` without one) says what differs.
    """
    t, keys, rows, inserted, deleted, changes = drawn
    source = [t.cells(keys[i], r) for i, r in enumerate(rows)]
    changed_rows = {i: list(r) for i, r in enumerate(rows)}
    for i, c, value in changes:
        changed_rows[i][c] = value
    target = [t.cells(keys[i], changed_rows[i]) for i in range(len(rows)) if i not in deleted]
    target += [t.cells(keys[len(rows) + j], r) for j, r in enumerate(inserted)]
    table = fresh_name("r")
    with pair.source_conn() as src, pair.target_conn() as tgt:
        for conn in (src, tgt):
            create(conn, table, t.ddl())
        create(src, table + "_t", t.ddl())
        insert(src, table, list(source))
        insert(tgt, table, target)
        insert(src, table + "_t", target)  # the oracle's copy of the target
    try:
        result = check(pair, table, chunk_rows=4)
        expected = oracle(pair, t, table)
        if t.keys:
            assert set(result.changed) == expected["changed"]
            assert set(result.missing_in_target) == expected["missing_in_target"]
            assert set(result.missing_in_source) == expected["missing_in_source"]
            assert result.changed_count == len(expected["changed"])
        assert result.missing_in_target_count == len(expected["missing_in_target"])
        assert result.missing_in_source_count == len(expected["missing_in_source"])
        differs = any(expected.values())
        assert result.status == ("mismatch" if differs else "match"), result
    finally:
        drop(pair, table, table + "_t")


def oracle(pair: Any, t: Table, table: str) -> dict[str, set[Any]]:
    """What differs between the source's table and the target's copy, by PostgreSQL's equality."""
    s, o = f'"{table}"', f'"{table}_t"'
    with pair.source_conn() as conn:
        conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'")
        if not t.keys:
            return _multiset(conn, s, o)
        on = " AND ".join(f"a.k{i} = b.k{i}" for i in range(len(t.keys)))
        rows = ", ".join(f"a.c{i}" for i in range(len(t.columns)))
        other = ", ".join(f"b.c{i}" for i in range(len(t.columns)))

        def keys(query: str) -> set[tuple[Any, ...]]:
            return set(map(tuple, conn.execute(query).fetchall()))  # type: ignore[arg-type]

        return {
            "changed": keys(
                f"SELECT {t.key_out('a')} FROM {s} a JOIN {o} b ON {on}"
                f" WHERE ROW({rows}) IS DISTINCT FROM ROW({other})"
            ),
            "missing_in_target": keys(
                f"SELECT {t.key_out('a')} FROM {s} a WHERE NOT EXISTS (SELECT FROM {o} b WHERE {on})"
            ),
            "missing_in_source": keys(
                f"SELECT {t.key_out('b')} FROM {o} b WHERE NOT EXISTS (SELECT FROM {s} a WHERE {on})"
            ),
        }


def _multiset(conn: psycopg.Connection[Any], s: str, o: str) -> dict[str, set[Any]]:
    """Without a key only counts are reported: one entry per surplus row, numbered."""

    def surplus(a: str, b: str) -> set[Any]:
        n = conn.execute(
            f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) d"
        ).fetchone()  # type: ignore[arg-type]
        return set(range(int(n[0]) if n else 0))

    return {
        "missing_in_target": surplus(s, o),
        "missing_in_source": surplus(o, s),
        "changed": set(),
    }


# -- values PostgreSQL calls equal ---------------------------------------------------


@given(
    number=st.decimals(allow_nan=False, allow_infinity=False, places=3),
    zeros=st.integers(1, 6),
    document=JSONB_VALUES,
)
def test_values_postgresql_calls_equal_are_equal(
    pair: Any, number: Decimal, zeros: int, document: Any
) -> None:
    """numeric and jsonb numbers with more trailing zeros, -0.0, char(n) blanks: a match."""
    padded = with_more_zeros(number, zeros)
    more = with_more_zeros(document, zeros)
    table = fresh_name("eq")
    columns = "id int PRIMARY KEY, n numeric, j jsonb, f float8, r float4, c char(6), a float8[]"
    with pair.source_conn() as src, pair.target_conn() as tgt:
        create(src, table, columns)
        create(tgt, table, columns)
        insert(
            src,
            table,
            [
                (
                    lit(1),
                    lit(str(number)),
                    lit(jsonb_text(document)),
                    lit("0.0"),
                    lit("0.0"),
                    lit("ab"),
                    lit("{0.0,1.5}"),
                )
            ],
        )
        insert(
            tgt,
            table,
            [
                (
                    lit(1),
                    lit(str(padded)),
                    lit(jsonb_text(more)),
                    lit("-0.0"),
                    lit("-0.0"),
                    lit("ab   "),
                    lit("{-0.0,1.50}"),
                )
            ],
        )
        equal = src.execute(
            "SELECT %s::numeric = %s::numeric AND %s::jsonb = %s::jsonb",
            (str(number), str(padded), jsonb_text(document), jsonb_text(more)),
        ).fetchone()
        assert equal == (True,)  # PostgreSQL calls them equal: the test's premise
        stored = src.execute(
            "SELECT %s::jsonb::text = %s::jsonb::text", (jsonb_text(document), jsonb_text(more))
        ).fetchone()
    try:
        result = check(pair, table)
        assert result.status == "match", result
        assert result.equal_by_value_count == (0 if stored == (True,) else 1)
    finally:
        drop(pair, table)


def test_a_case_writes_exactly_the_value_it_is_given(pg_pair: Any) -> None:
    """The suite's own premise: 8-byte values reach PostgreSQL bit for bit, at both ends."""
    with pg_pair.source_conn() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for name, send in (
            ("timestamp", "timestamp_send"),
            ("timestamptz", "timestamptz_send"),
            ("money", "cash_send"),
            ("int8", "int8send"),
        ):
            case = CASES[name]
            for v in (-211813488000000000, -1, 0, 4294967297, 9223371331199999999):
                expr, params = case.sql(v)
                row = conn.execute(f"SELECT encode({send}({expr}), 'hex')", params).fetchone()  # type: ignore[arg-type]
                assert row == (format(v & (2**64 - 1), "016x"),)
        expr, params = CASES["float8"].sql(0x7FF0000000000001)  # a NaN
        assert conn.execute(f"SELECT {expr} = 'NaN'", params).fetchone() == (True,)  # type: ignore[arg-type]
