"""Table selection, type -> hashing decisions, schema differences and plan payloads (no database)."""

from __future__ import annotations

import pytest

from migctl.errors import UsageError
from migctl.validate.catalog import Column, PgType, TableInfo, select_tables
from migctl.validate.checksum import Buckets, ChecksumPlan, bucket_checksums, row_hash_sql
from migctl.validate.hashing import ColumnHash, choose_algorithm, column_hash, family
from migctl.validate.plan import plan_table

INT4 = PgType("int4", True, "b")
INT8 = PgType("int8", True, "b")
NUMERIC = PgType("numeric", True, "b")
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


def test_select_tables_globs_and_excludes() -> None:
    names = ["public.payments", "public.payouts", "public.users", "audit.payments"]
    assert select_tables(names, ["public.pay*"], []) == ["public.payments", "public.payouts"]
    assert select_tables(names, ["payments"], []) == ["audit.payments", "public.payments"]
    assert select_tables(names, [], ["*.pay*"]) == ["public.users"]
    assert select_tables(names, ["public.*"], ["payouts"]) == ["public.payments", "public.users"]


def test_unknown_explicit_table_is_a_usage_error_but_an_empty_glob_is_not() -> None:
    with pytest.raises(UsageError, match=r"unknown table 'public\.nope'"):
        select_tables(["public.a"], ["public.nope"], [])
    assert select_tables(["public.a"], ["public.nope*"], []) == []


@pytest.mark.parametrize(
    ("pg_type", "expected"),
    [
        (INT4, "int"),
        (NUMERIC, "numeric"),
        (VARCHAR, "text"),
        (JSONB, "jsonb"),  # hashed as its canonical text
        (PgType("inet", True, "b"), "as_text"),
        (PgType("_jsonb", True, "b", "jsonb"), "as_text"),
        (JSON, "as_text"),  # no hash function
        (ENUM, "as_text"),  # hashenumextended hashes the label's OID, which differs per server
        (INTERVAL, "as_text"),  # interval equality says '1 day' = '24 hours'
        (PgType("_int4", True, "b", "int4"), "array"),
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
    assert choose_algorithm(150004, 180001) == choose_algorithm(110000, 130010) == "chain"
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
