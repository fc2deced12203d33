"""Table selection, type -> hashing decisions, schema differences and plan payloads (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from migctl.errors import UsageError
from migctl.pgnames import TableName
from migctl.validate.catalog import Catalog, Column, PgType, TableInfo, select_tables
from migctl.validate.checksum import (
    Buckets,
    ChecksumPlan,
    aligned_bounds,
    aligned_shift,
    bucket_checksums,
    chunk_bounds,
    row_hash_sql,
)
from migctl.validate.comparison import plan_table
from migctl.validate.hashing import ColumnHash, choose_algorithm, column_hash, family

INT4 = PgType("int4", True, "b")
INT8 = PgType("int8", True, "b")
NUMERIC = PgType("numeric", True, "b")
NUMERIC_P = PgType("numeric", True, "b", finite=True)  # numeric(p, s): no ±Infinity
TEXT = PgType("text", True, "b")
VARCHAR = PgType("varchar", True, "b")
JSON = PgType("json", True, "b")
JSONB = PgType("jsonb", True, "b")
ENUM = PgType("mood", False, "e")
INTERVAL = PgType("interval", True, "b")


def col(
    name: str, t: PgType, type_sql: str | None = None, not_null: bool = False, pos: int = 1
) -> Column:
    return Column(name, type_sql or t.name, t, not_null, pos)


def catalog(*names: TableName, schemas: tuple[str, ...] = ()) -> Catalog:
    tables = {n: TableInfo(n[0], n[1], (), (), 0.0) for n in names}
    return Catalog(150000, tables, {}, schemas or tuple(sorted({n[0] for n in names})))


def pick(
    names: list[TableName], include: list[str], exclude: list[str], schemas: tuple[str, ...] = ()
) -> list[TableName]:
    return select_tables(catalog(*names), catalog(), schemas, include, exclude)


PAY = [("public", "payments"), ("public", "payouts"), ("public", "users"), ("audit", "payments")]


def test_select_tables_globs_and_excludes() -> None:
    assert pick(PAY, ["public.pay*"], []) == [("public", "payments"), ("public", "payouts")]
    assert pick(PAY, ["payments"], []) == [("audit", "payments"), ("public", "payments")]
    assert pick(PAY, [], ["*.pay*"]) == [("public", "users")]
    assert pick(PAY, ["public.*"], ["payouts"]) == [("public", "payments"), ("public", "users")]


def test_dotted_names_are_pairs_never_joined_strings() -> None:
    names = [("a", "b.c"), ("a.b", "c")]
    assert pick(names, ['a."b.c"'], []) == [("a", "b.c")]
    assert pick(names, ['"a.b".c'], []) == [("a.b", "c")]
    assert pick(names, ["a.b.c"], []) == [("a", "b.c")]  # split at the first unquoted dot
    assert pick(names, ["*"], ['"a.b".*']) == [("a", "b.c")]
    assert pick([("public", "pay*"), ("public", "payx")], ['public."pay*"'], []) == [
        ("public", "pay*")
    ]


@pytest.mark.parametrize(
    ("include", "exclude", "schemas", "message"),
    [
        (["public.nope"], [], (), r"table 'public\.nope' matched no table"),
        (["nosuch.*"], [], (), r"table pattern 'nosuch\.\*' matched no table"),
        (["public.pay*", "public.ledgr*"], [], (), r"'public\.ledgr\*' matched no table"),
        ([], ["*"], (), r"--exclude '\*' selected no table"),
        (["public.*"], ["public.*"], (), r"--table 'public\.\*' --exclude 'public\.\*' selected"),
        (
            [],
            [],
            ("pubic",),
            r"--schema pubic matched no schema; schemas on the source: audit, public",
        ),
    ],
)
def test_a_selection_that_selects_nothing_is_a_usage_error(
    include: list[str], exclude: list[str], schemas: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        pick(PAY, include, exclude, schemas)


def test_an_empty_schema_selects_nothing() -> None:
    with pytest.raises(UsageError, match="--schema public selected no table"):
        select_tables(catalog(schemas=("public",)), catalog(), ("public",), [], [])


@pytest.mark.parametrize(
    ("pg_type", "expected"),
    [
        (INT4, "int"),
        (NUMERIC, "numeric"),
        (NUMERIC_P, "numeric_finite"),
        (VARCHAR, "text"),
        (JSONB, "jsonb"),  # hashed as its canonical text
        (PgType("inet", True, "b"), "as_text"),
        (PgType("_jsonb", True, "b", "jsonb"), "as_text"),
        (JSON, "as_text"),  # no hash function
        (ENUM, "as_text"),  # hashenumextended hashes the label's OID, which differs per server
        (INTERVAL, "as_text"),  # interval equality says '1 day' = '24 hours'
        (PgType("_int4", True, "b", "int4"), "array"),
        (PgType("_varchar", True, "b", "varchar"), "text_array"),  # under COLLATE "C"
        (
            PgType("_numeric", True, "b", "numeric"),
            "as_text",
        ),  # NaN/Infinity would collide inside arrays
        (PgType("_mood", True, "b", None), "as_text"),
    ],
)
def test_family(pg_type: PgType, expected: str) -> None:
    assert family(pg_type) == expected


def test_widened_types_hash_alike_and_mixed_types_meet_on_common_ground() -> None:
    assert column_hash("a", NUMERIC, NUMERIC) == ColumnHash("a", "numeric")
    assert column_hash("a", VARCHAR, TEXT) == ColumnHash("a", "text")
    assert column_hash("a", INT4, INT8) == ColumnHash("a", "int", "int8")
    assert column_hash("a", INT8, NUMERIC) == ColumnHash("a", "numeric", "numeric")
    assert column_hash("a", NUMERIC_P, NUMERIC_P) == ColumnHash("a", "numeric_finite")
    assert column_hash("a", NUMERIC_P, NUMERIC) == ColumnHash("a", "numeric")  # may hold Infinity
    assert column_hash("a", INT4, NUMERIC_P) == ColumnHash("a", "numeric_finite", "numeric")
    assert column_hash("a", JSON, JSONB) == ColumnHash("a", "jsonb", "jsonb")
    assert (
        column_hash("a", PgType("timestamp", True, "b"), PgType("timestamptz", True, "b")).family
        == "as_text"
    )


def test_plan_table_reports_schema_differences_and_compares_shared_columns() -> None:
    source = TableInfo(
        "public",
        "t",
        (
            col("id", INT4, not_null=True),
            col("amount", NUMERIC, "numeric(18,4)"),
            col("gone", TEXT),
        ),
        ("id",),
        10,
    )
    target = TableInfo(
        "public",
        "t",
        (
            col("id", INT8, "bigint", not_null=True),
            col("amount", NUMERIC, "numeric(20,6)", not_null=True),
            col("new", TEXT),
        ),
        (),
        10,
    )
    planned = plan_table(source, target, "chain")
    assert [c.name for c in planned.plan.columns] == ["id", "amount"]
    # NOT NULL on both sides needs no NULL handling; NOT NULL on one side only still does
    assert [c.nullable for c in planned.plan.columns] == [False, True]
    assert planned.method == "range"  # int4 against int8 is still an integer key
    assert planned.schema_differences == (
        "column id: type int4 on source, bigint on target",
        "column amount: type numeric(18,4) on source, numeric(20,6) on target",
        "column amount: nullable on source, NOT NULL on target",
        "column gone (text) only on source",
        "column new (text) only on target",
        "primary key (id) on source, none on target",
    )


def test_plan_method_follows_the_key() -> None:
    text_key = TableInfo("public", "t", (col("code", TEXT), col("v", INT4)), ("code",), 1)
    no_key = TableInfo("public", "t", (col("code", TEXT),), (), 1)
    assert plan_table(text_key, text_key, "chain").method == "hash"
    assert plan_table(no_key, no_key, "chain").method == "multiset"


def test_one_algorithm_from_postgresql_11_on() -> None:
    assert choose_algorithm(150004, 180001) == choose_algorithm(110000, 130010) == "chain64"
    with pytest.raises(UsageError, match="PostgreSQL 10 is not supported"):
        choose_algorithm(100023, 150000)


def test_plan_payload_round_trips_and_rejects_injection() -> None:
    plan = ChecksumPlan(
        "public",
        'x"; drop table y; --',
        (ColumnHash("id", "int"), ColumnHash("n", "numeric", nullable=False)),
        ("id",),
    )
    assert ChecksumPlan.from_dict(plan.to_dict()) == plan
    bad = plan.to_dict() | {
        "columns": [{"name": "id", "family": "int", "cast": "int8); drop table y; --"}]
    }
    with pytest.raises(UsageError, match="bad checksum plan"):
        ChecksumPlan.from_dict(bad)
    with pytest.raises(UsageError, match="unknown algorithm"):
        ChecksumPlan.from_dict(plan.to_dict() | {"algorithm": "md5"})
    with pytest.raises(UsageError, match="bad buckets"):
        Buckets.from_dict({"kind": "hash", "bits": 99})
    assert Buckets.from_dict(Buckets("range", (1, 5), 0, 9).to_dict()) == Buckets(
        "range", (1, 5), 0, 9
    )


def test_identifiers_are_quoted_in_the_sql() -> None:
    plan = ChecksumPlan("public", 'x"; drop table y; --', (ColumnHash('we"ird', "numeric"),), ())
    text = row_hash_sql(plan).as_string(None)
    assert '"we""ird"' in text
    assert "'NaN'" in text and "< 0" in text  # the sign and NaN go into the seed
    seen: list[str] = []

    def run(query: object, params: object) -> list[tuple[object, ...]]:
        seen.append(query.as_string(None))  # type: ignore[attr-defined]
        return [(0, 3, 12345)]

    sums = bucket_checksums(run, plan, Buckets("hash", bits=4))
    assert sums[0].rows == 3 and sums[0].checksum == 12345
    assert '"public"."x""; drop table y; --"' in seen[0]


def test_aligned_shift_recognises_only_consecutive_multiples_of_a_power_of_two() -> None:
    assert aligned_shift((2048, 4096, 6144)) == 11
    assert aligned_shift((-3, -2, -1, 0, 1)) == 0
    assert aligned_shift((-(2**63), -(2**62), 0, 2**62)) == 62
    assert aligned_shift((7,)) is None  # one bound: width_bucket
    assert aligned_shift((0, 3, 6)) is None  # not a power of two
    assert aligned_shift((2, 6, 10)) is None  # not a multiple of the step
    assert aligned_shift((0, 4, 12)) is None  # a bound missing
    assert aligned_shift((0, 1, 2**60)) is None  # decided without building 2^60 bounds


@pytest.mark.parametrize(
    ("low", "high", "buckets"),
    [(1, 2_000_000, 1000), (-5_000, 5_000, 7), (10**12, 10**12 + 99_999, 50), (3, 9, 5000)],
)
def test_aligned_bounds_split_the_key_span_into_about_as_many_power_of_two_ranges(
    low: int, high: int, buckets: int
) -> None:
    bounds = aligned_bounds(low, high, buckets)
    shift = aligned_shift(bounds)
    assert shift is not None
    assert low < bounds[0] and bounds[-1] <= high
    assert bounds[0] - low <= 2**shift and high - bounds[-1] < 2**shift
    span = high - low + 1
    assert min(buckets, span) / 2 <= len(bounds) + 1 <= min(2 * buckets, span)


def test_chunk_bounds_read_dense_keys_off_the_index_and_sample_sparse_ones() -> None:
    plan = ChecksumPlan("public", "t", (ColumnHash("id", "int", nullable=False),), ("id",))
    seen: list[str] = []

    def runner(low: int | None, high: int | None) -> Any:
        def run(query: Any, params: Any) -> list[tuple[Any, ...]]:
            text = query.as_string(None)
            seen.append(text)
            if text.startswith("SELECT min("):
                return [(low, high)]
            return [([500, 1000, 1500],)]  # the sample's quantiles

        return run

    dense = chunk_bounds(runner(1, 2_000), plan, 4, 50.0, rows=2_000)
    assert aligned_shift(dense) == 9 and len(seen) == 1  # no sample
    assert '"id"' in seen[0] and '"id"::int8' not in seen[0]  # the bare column: its index serves
    seen.clear()
    assert chunk_bounds(runner(1, 10**9), plan, 4, 50.0, rows=2_000) == (500, 1000, 1500)
    assert len(seen) == 2  # sparse: the ends, then the sample
    seen.clear()
    assert chunk_bounds(runner(1, 2_000), plan, 4, 50.0, rows=0) == (500, 1000, 1500)
    assert len(seen) == 1  # no estimate (an older Lambda payload): the sample only
    assert chunk_bounds(runner(None, None), plan, 4, 50.0, rows=2_000) == ()  # empty table
    assert chunk_bounds(runner(1, 2), plan, 1, 50.0, rows=2_000) == ()  # one chunk: no bounds
