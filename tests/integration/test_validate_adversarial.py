"""Each way validate was made to lie or to fail, kept as a test against the real clusters.

The false greens first: different data called equal, a selection of nothing
called a pass. Every one of them failed on the code before the ``chain64`` row
hash (checked by running this file against that checkout); they use only what
every version of the API had (the report's ``table``, ``status``, counts and
exit code). Then the tables that could never pass a gate (an ``error``, or a
difference where PostgreSQL sees none).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli_support import Cli
from tests.integration.validate_support import on_target, run, table


def differs(pg_pair: Any, name: str, ddl: str, source_rows: str, target_rows: str) -> Any:
    pg_pair.execute_both(ddl)
    with pg_pair.source_conn() as conn:
        conn.execute(f"INSERT INTO {name} VALUES {source_rows}")  # type: ignore[arg-type]
    on_target(pg_pair, f"INSERT INTO {name} VALUES {target_rows}")
    return table(run(pg_pair, sequences=False), f"public.{name}")


# 64-bit values whose halves fold onto the same 32 bits hashed alike (hashint8extended XORs the
# high half into the low half): a systematic collision, not a 2^-32 chance.
FOLDED = [
    ("timestamp", "'2000-01-01 00:00:00'", "'2000-01-01 00:00:00'::timestamp + interval '4294967297 microseconds'"),
    ("timestamptz", "'infinity'", "'2000-01-01 00:35:47.483648+00'"),
    ("time", "'00:00'", "'01:11:34.967297'"),
    ("date", "date '2000-01-01' - 1502987", "date '2000-01-01' + 54075"),
    ("bigint[]", "'{0}'", "'{4294967297}'"),
    ("timestamp[]", "ARRAY['2000-01-01 00:00:00'::timestamp]", "ARRAY['2000-01-01 00:00:00'::timestamp + interval '4294967297 microseconds']"),
]  # fmt: skip


@pytest.mark.parametrize(("type_sql", "source", "target"), FOLDED, ids=[f[0] for f in FOLDED])
def test_values_whose_64_bits_fold_alike_differ(
    pg_pair: Any, type_sql: str, source: str, target: str
) -> None:
    found = differs(
        pg_pair, "folded", f"CREATE TABLE folded (id int PRIMARY KEY, v {type_sql})",
        f"(1, {source})", f"(1, {target})",
    )  # fmt: skip
    assert (found.status, found.changed_count, found.changed) == ("mismatch", 1, ((1,),))


def test_a_key_and_its_folded_twin_are_two_keys(pg_pair: Any) -> None:
    """'infinity' on one side, its twin on the other: one row missing on each side, not a match."""
    found = differs(
        pg_pair, "twins", "CREATE TABLE twins (ts timestamptz PRIMARY KEY, v int)",
        "('infinity', 1)", "('2000-01-01 00:35:47.483648+00', 1)",
    )  # fmt: skip
    assert found.status == "mismatch"
    assert (found.missing_in_target_count, found.missing_in_source_count) == (1, 1)


# A value whose hash returned its seed (float ±0, numeric NaN and ±Infinity, arrays of NULLs, '{}')
# left the chain's state as it was, or XORed in a constant: moved to another column, it still
# summed to the same row hash.
SWAPPED = [
    ("float8", "0, 5", "5, 0"),
    ("float8", "NULL, 0", "0, NULL"),
    ("real", "0, 2.5", "2.5, 0"),
    ("numeric", "'NaN', 'Infinity'", "'Infinity', 'NaN'"),
    ("numeric", "'NaN', '-Infinity'", "'-Infinity', 'NaN'"),
    ("int[]", "'{NULL}', '{NULL,NULL}'", "'{NULL,NULL}', '{NULL}'"),
    ("int[]", "NULL, '{}'", "'{}', NULL"),
]


@pytest.mark.parametrize(("type_sql", "source", "target"), SWAPPED)
def test_values_swapped_between_columns_differ(
    pg_pair: Any, type_sql: str, source: str, target: str
) -> None:
    found = differs(
        pg_pair, "swapped", f"CREATE TABLE swapped (id int PRIMARY KEY, a {type_sql}, b {type_sql})",
        f"(1, {source})", f"(1, {target})",
    )  # fmt: skip
    assert (found.status, found.changed_count) == ("mismatch", 1)


def test_null_and_an_empty_array_differ(pg_pair: Any) -> None:
    found = differs(
        pg_pair, "arrays", "CREATE TABLE arrays (id int PRIMARY KEY, a int[])",
        "(1, NULL), (2, '{}')", "(1, '{}'), (2, NULL)",
    )  # fmt: skip
    assert (found.status, found.changed_count) == ("mismatch", 2)


def test_dotted_names_are_two_tables(pg_pair: Any, cli: Cli) -> None:
    """Schema a with table "b.c" and schema "a.b" with table c: both compared, the change found."""
    pg_pair.execute_both(
        'CREATE SCHEMA a; CREATE SCHEMA "a.b";'
        'CREATE TABLE a."b.c" (id int PRIMARY KEY, v text); CREATE TABLE "a.b".c (id int PRIMARY KEY, v text);'
        "INSERT INTO a.\"b.c\" VALUES (1, 'x'); INSERT INTO \"a.b\".c VALUES (1, 'x')"
    )
    on_target(pg_pair, "UPDATE \"a.b\".c SET v = 'changed'")
    result = cli(
        "--output", "json", "validate", "--source", pg_pair.source_dsn, "--target",
        pg_pair.target_dsn, "--schema", "a", "--schema", "a.b",
    )  # fmt: skip
    assert result.code == 1, result.stderr
    tables = {t["table"]: t["status"] for t in json.loads(result.stdout)["tables"]}
    assert tables == {'a."b.c"': "match", '"a.b".c': "mismatch"}


@pytest.mark.parametrize(
    "selection",
    [
        ["--schema", "pubic"],
        ["--table", "nosuch.*"],
        ["--exclude", "*"],
        ["--table", "public.led*", "--table", "public.ledgr*"],
    ],
)
def test_a_selection_of_nothing_never_passes(pg_pair: Any, cli: Cli, selection: list[str]) -> None:
    pg_pair.execute_both("CREATE TABLE ledger (id int PRIMARY KEY)")
    on_target(pg_pair, "INSERT INTO ledger VALUES (1)")  # the target differs: no pass is right
    result = cli(
        "validate", "--source", pg_pair.source_dsn, "--target", pg_pair.target_dsn, *selection
    )
    assert result.code == 2, (result.code, result.stderr)
    assert "matched no" in result.stderr or "selected no table" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- tables that could never pass ------------------------------------------------------


def test_names_with_percent_signs_quotes_dots_spaces_and_unicode(pg_pair: Any) -> None:
    pg_pair.execute_both(
        'CREATE TABLE "discount_%" ("id%" int PRIMARY KEY, "rate %s" numeric, "a.b ""c""" text,'
        ' "prix é" text);'
        "INSERT INTO \"discount_%\" SELECT g, g / 10.0, 'x', 'y' FROM generate_series(1, 300) g"
    )
    on_target(pg_pair, 'UPDATE "discount_%" SET "a.b ""c""" = \'z\' WHERE "id%" IN (7, 250)')
    found = table(
        run(pg_pair, chunk_rows=16, tables=('public."discount_%"',)), 'public."discount_%"'
    )
    assert (found.status, found.changed, found.error) == ("mismatch", ((7,), (250,)), None)


def test_a_table_of_1600_columns_compares(pg_pair: Any) -> None:
    """PostgreSQL's limit; the chain's SQL nests shallowly and is built flat (no recursion)."""
    kinds = ["int", "text", "numeric", "timestamptz", "float8", "jsonb", "int[]", "date", "bool"]
    columns = ", ".join(f"c{i} {kinds[i % len(kinds)]}" for i in range(1599))
    pg_pair.execute_both(
        f"CREATE TABLE wide (id int PRIMARY KEY, {columns});"
        "INSERT INTO wide (id, c0, c1) SELECT g, g, 'v' FROM generate_series(1, 200) g"
    )
    on_target(
        pg_pair,
        "UPDATE wide SET c1598 = '1' WHERE id = 77",
        "UPDATE wide SET c1 = 'w' WHERE id = 5",
    )
    found = table(run(pg_pair, chunk_rows=16), "public.wide")
    assert (found.status, found.changed, found.error) == ("mismatch", ((5,), (77,)), None)


def test_jsonb_numbers_postgresql_calls_equal_are_equal(pg_pair: Any) -> None:
    pg_pair.execute_both("CREATE TABLE docs (id int PRIMARY KEY, doc jsonb, other jsonb)")
    with pg_pair.source_conn() as conn:
        conn.execute(
            """INSERT INTO docs VALUES (1, '{"a": 1.0, "b": [2.50, {"c": 0.0}]}', '"1.0"'),"""
            """ (2, '1.0', '[1.0]'), (3, '{"x": 1}', '{}')"""
        )
    on_target(
        pg_pair,
        """INSERT INTO docs VALUES (1, '{"a": 1.00, "b": [2.5, {"c": 0}]}', '"1.0"'),"""
        """ (2, '1', '[1.000]'), (3, '{"x": -1}', '[]')""",
    )
    found = table(run(pg_pair), "public.docs")
    assert (found.status, found.changed) == ("mismatch", ((3,),))  # a sign and {} against []
    assert found.equal_by_value_count == 2  # rows 1 and 2: equal by value, stored differently


def test_dates_beyond_the_timestamp_range_compare(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE far (id int PRIMARY KEY, d date);"
        "INSERT INTO far VALUES (1, '5874897-12-31'), (2, 'infinity'), (3, '4713-01-01 BC')"
    )
    on_target(pg_pair, "UPDATE far SET d = '5874897-12-30' WHERE id = 1")
    found = table(run(pg_pair), "public.far")
    assert (found.status, found.changed, found.error) == ("mismatch", ((1,),), None)
