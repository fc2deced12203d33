"""`migctl validate` against the two real clusters: values compared by value, differences found exactly.

The harness's source and target differ in TimeZone, DateStyle, IntervalStyle,
extra_float_digits, bytea_output and collation (ICU en-US against C), so any
comparison that leans on a server default or a sort order shows up here.
Every data test runs across major versions: source 15 to target 15, and
source 15 to target 18.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.integration.validate_support import (
    ALL_TYPES,
    CHANGES,
    COLLATION_SENSITIVE,
    DETECT,
    on_target,
    run,
    table,
)


@pytest.fixture(params=["pg15-pg15", "pg15-pg18"])
def pg_pair(request: pytest.FixtureRequest, pg_pair: Any) -> Any:
    """Every test here runs twice: on two PostgreSQL 15 clusters, and from 15 to 18."""
    if request.param == "pg15-pg18":
        return request.getfixturevalue("pg_pair_mixed")
    return pg_pair


def all_types(pg_pair: Any) -> str:
    """ALL_TYPES; the PostgreSQL 18 wheel is built without libxml, so there xml is stored as text."""
    import psycopg

    with pg_pair.target_conn() as conn:
        try:
            conn.execute("SELECT '<a/>'::xml")
        except psycopg.errors.FeatureNotSupported:
            if pg_pair.target.bin_dir == pg_pair.source.bin_dir:
                raise  # the system's build has libxml: never drop xml from the same-version run
            return ALL_TYPES.replace(" x xml\n", " x text\n")
    return ALL_TYPES


def test_differing_server_defaults_produce_no_difference(pg_pair: Any) -> None:
    with (
        pg_pair.target_conn() as conn
    ):  # shift the target's type OIDs: enum hashes must not depend on them
        conn.execute("CREATE TYPE unrelated AS ENUM ('x'); CREATE TYPE unrelated2 AS (q int)")
    pg_pair.execute_both(all_types(pg_pair))
    report = run(pg_pair)
    everything = table(report, "public.everything")
    assert everything.status == "match", everything
    assert (everything.source_rows, everything.target_rows) == (4, 4)
    assert report.ok and report.exit_code == 0
    assert everything.source_digest == everything.target_digest  # the report shows the two
    assert (everything.source_digest or "").startswith("4:")


def test_each_small_change_is_detected_with_its_key(pg_pair: Any) -> None:
    pg_pair.execute_both(DETECT)
    on_target(pg_pair, *CHANGES.values())
    detect = table(run(pg_pair, chunk_rows=40), "public.detect")
    assert detect.status == "mismatch"
    assert detect.changed == tuple((k,) for k in [*range(1, 13), *range(300, 311)])
    assert detect.changed_count == 23
    assert (detect.missing_in_target_count, detect.missing_in_source_count) == (0, 0)
    assert detect.method == "range" and detect.chunks > 1 and detect.differing_chunks >= 2
    assert detect.source_digest != detect.target_digest
    rechunked = table(run(pg_pair, chunk_rows=7), "public.detect")
    assert rechunked.chunks != detect.chunks  # the digest does not depend on the chunks
    assert (rechunked.source_digest, rechunked.target_digest) == (
        detect.source_digest,
        detect.target_digest,
    )


def test_only_numeric_with_a_precision_is_hashed_as_finite(pg_pair: Any) -> None:
    """The ``numeric_finite`` family rests on PostgreSQL refusing ±Infinity under a typmod."""
    from migctl.validate.catalog import read_catalog

    pg_pair.execute_both(
        "CREATE DOMAIN amount2 AS numeric(10,2); CREATE DOMAIN checked AS amount2 CHECK (VALUE > 0);"
        "CREATE TABLE kinds (id int PRIMARY KEY, p numeric(10,2), d amount2, c checked, n numeric)"
    )
    for connect in (pg_pair.source_conn, pg_pair.target_conn):
        with connect() as conn:
            with pytest.raises(psycopg.errors.NumericValueOutOfRange):
                conn.execute("INSERT INTO kinds (id, p) VALUES (1, 'Infinity')")
            with pytest.raises(psycopg.errors.NumericValueOutOfRange):
                conn.execute("INSERT INTO kinds (id, d) VALUES (1, '-Infinity')")
            conn.execute("INSERT INTO kinds VALUES (1, 'NaN', 'NaN', 'NaN', 'Infinity')")
            kinds = read_catalog(conn, ["public"]).tables[("public", "kinds")]
            finite = {c.name: c.type.finite for c in kinds.columns}
            assert finite == {"id": False, "p": True, "d": True, "c": True, "n": False}
    assert table(run(pg_pair), "public.kinds").status == "match"


def test_jsonb_by_value_and_widened_types_are_not_data_differences(pg_pair: Any) -> None:
    with pg_pair.source_conn() as conn:
        conn.execute(
            "CREATE TABLE widened (id int PRIMARY KEY, amount numeric(18,4), label varchar(10), doc jsonb);"
            "INSERT INTO widened VALUES (1, 12.5, 'x', '{\"a\": 1, \"b\": [1, 2]}'), (2, NULL, NULL, 'null'),"
            ' (3, -0.0001, \'\', \'{"z":{"y":1,"x":2}}\')'
        )
    with pg_pair.target_conn() as conn:
        conn.execute(
            "CREATE TABLE widened (id bigint PRIMARY KEY, amount numeric(20,6), label text, doc jsonb);"
            "INSERT INTO widened VALUES (1, 12.500000, 'x', '{ \"b\" : [1,2] ,\"a\":1 }'), (2, NULL, NULL, 'null'),"
            ' (3, -0.000100, \'\', \'{"z":{"x":2,  "y":1}}\')'
        )
    widened = table(run(pg_pair), "public.widened")
    assert widened.data_match
    assert (
        widened.changed_count,
        widened.missing_in_source_count,
        widened.missing_in_target_count,
    ) == (0, 0, 0)
    assert widened.status == "mismatch"  # the schema differences alone make it one
    assert widened.schema_differences == (
        "column id: type integer on source, bigint on target",
        "column amount: type numeric(18,4) on source, numeric(20,6) on target",
        "column label: type character varying(10) on source, text on target",
    )


def test_a_case_insensitive_collation_does_not_hide_a_difference(pg_pair: Any) -> None:
    """Text is hashed byte for byte, whatever the column's collation on either side.

    'Abc' = 'abc' under the source's collation, but they are different data; 'same' is
    the same data under either collation. The same holds inside arrays of text.
    """
    with pg_pair.source_conn() as conn:
        conn.execute(
            "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);"
            "CREATE TABLE folded (id int PRIMARY KEY, name text COLLATE ci, code char(3) COLLATE ci,"
            " tags text[] COLLATE ci, codes char(3)[] COLLATE ci);"
            "INSERT INTO folded VALUES (1, 'Abc', 'EUR', '{a}', '{EUR}'), (2, 'same', 'usd', '{b}', '{}'),"
            " (3, 'x', 'CHF', '{Tag,b}', '{usd}'), (4, 'y', 'GBP', '{c}', '{GBP,usd}')"
        )
    with pg_pair.target_conn() as conn:
        conn.execute(
            "CREATE TABLE folded (id int PRIMARY KEY, name text, code char(3), tags text[],"
            " codes char(3)[]);"
            "INSERT INTO folded VALUES (1, 'abc', 'EUR', '{a}', '{EUR}'), (2, 'same', 'usd', '{b}', '{}'),"
            " (3, 'x', 'CHF', '{tag,b}', '{usd}'), (4, 'y', 'GBP', '{c}', '{GBP,USD}')"
        )
    folded = table(run(pg_pair, tables=("public.folded",)), "public.folded")
    assert folded.changed == ((1,), (3,), (4,))


@pytest.mark.parametrize("pg_pair", ["pg15-pg15"], indirect=True)  # the 18 wheel has no ICU
def test_one_case_insensitive_collation_on_both_sides_does_not_hide_a_difference(
    pg_pair: Any,
) -> None:
    """Values equal under the collation both sides share, but not byte for byte, differ."""
    pg_pair.execute_both(
        "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);"
        "CREATE TABLE both_ci (id int PRIMARY KEY, name text COLLATE ci, tags text[] COLLATE ci)"
    )
    with pg_pair.source_conn() as conn:
        conn.execute("INSERT INTO both_ci VALUES (1, 'x', '{Abc}'), (2, 'Y', '{same}')")
    on_target(pg_pair, "INSERT INTO both_ci VALUES (1, 'x', '{abc}'), (2, 'y', '{same}')")
    assert table(run(pg_pair), "public.both_ci").changed == ((1,), (2,))


def test_keys_far_apart_are_reported_exactly(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE sparse (id bigint PRIMARY KEY, v text);"
        "INSERT INTO sparse SELECT g, 'v' || g FROM generate_series(1, 1000) g;"
        "INSERT INTO sparse SELECT g, 'v' || g FROM generate_series(9000000000000, 9000000001000) g;"
    )
    on_target(
        pg_pair,
        "DELETE FROM sparse WHERE id IN (500, 9000000000500)",
        "INSERT INTO sparse VALUES (2000, 'new'), (9000000002000, 'new'), (-5, 'neg')",
        "UPDATE sparse SET v = 'changed' WHERE id IN (1, 9000000001000)",
    )
    sparse = table(run(pg_pair, chunk_rows=64), "public.sparse")
    assert sparse.missing_in_target == ((500,), (9000000000500,))
    assert sparse.missing_in_source == ((-5,), (2000,), (9000000002000,))
    assert sparse.changed == ((1,), (9000000001000,))
    assert (sparse.source_rows, sparse.target_rows) == (2001, 2002)


def test_text_uuid_and_composite_keys(pg_pair: Any) -> None:
    words = ", ".join(f"('{w}', {i})" for i, w in enumerate(COLLATION_SENSITIVE))
    pg_pair.execute_both(
        f"CREATE TABLE words (w text PRIMARY KEY, n int); INSERT INTO words VALUES {words};"
        "INSERT INTO words SELECT 'w' || g, g FROM generate_series(1, 1500) g;"
        "CREATE TABLE tokens (u uuid PRIMARY KEY, n int);"
        "INSERT INTO tokens SELECT md5(g::text)::uuid, g FROM generate_series(1, 1500) g;"
        "CREATE TABLE lines (tenant text, line int, amount numeric, PRIMARY KEY (tenant, line));"
        "INSERT INTO lines SELECT 't' || (g % 7), g, g FROM generate_series(1, 1500) g;"
    )
    on_target(
        pg_pair,
        "DELETE FROM words WHERE w IN ('é', 'w77')",
        "INSERT INTO words VALUES ('Ä', 1), ('w9999', 1)",
        "UPDATE words SET n = -1 WHERE w IN ('B', '_x', 'w1000')",
        "DELETE FROM tokens WHERE n = 3",
        "UPDATE tokens SET n = 0 WHERE n = 4",
        "INSERT INTO tokens VALUES ('00000000-0000-0000-0000-00000000000a', 1)",
        "DELETE FROM lines WHERE line = 10",
        "UPDATE lines SET amount = 0 WHERE line = 11",
        "INSERT INTO lines VALUES ('t9', 1, 1)",
    )
    report = run(pg_pair, chunk_rows=10)
    words_result = table(report, "public.words")
    assert words_result.method == "hash"
    assert words_result.missing_in_target == (("w77",), ("é",))
    assert words_result.missing_in_source == (("w9999",), ("Ä",))
    assert words_result.changed == (("B",), ("_x",), ("w1000",))
    tokens = table(report, "public.tokens")
    assert tokens.missing_in_target == (("eccbc87e-4b5c-e2fe-2830-8fd9f2a7baf3",),)  # md5('3')
    assert tokens.missing_in_source == (("00000000-0000-0000-0000-00000000000a",),)
    assert tokens.changed == (("a87ff679-a2f3-e71d-9181-a67b7542122c",),)  # md5('4')
    lines = table(report, "public.lines")
    assert lines.key_columns == ("tenant", "line")
    assert lines.missing_in_target == (("t3", 10),)
    assert lines.missing_in_source == (("t9", 1),)
    assert lines.changed == (("t4", 11),)


def test_missing_tables_both_ways_and_table_selection(pg_pair: Any) -> None:
    with pg_pair.source_conn() as conn:
        conn.execute(
            "CREATE TABLE only_source (id int PRIMARY KEY); INSERT INTO only_source VALUES (1), (2)"
        )
    with pg_pair.target_conn() as conn:
        conn.execute(
            "CREATE TABLE only_target (id int PRIMARY KEY); INSERT INTO only_target VALUES (1)"
        )
    pg_pair.execute_both("CREATE TABLE same (id int PRIMARY KEY); INSERT INTO same VALUES (1)")
    report = run(pg_pair)
    assert [(t.table, t.status, t.source_rows, t.target_rows) for t in report.tables] == [
        ("public.only_source", "missing_in_target", 2, None),
        ("public.only_target", "missing_in_source", None, 1),
        ("public.same", "match", 1, 1),
    ]
    assert report.exit_code == 1
    only_same = run(pg_pair, tables=("public.s*",), exclude=("*source",))
    assert [t.table for t in only_same.tables] == ["public.same"] and only_same.exit_code == 0


def test_tables_without_primary_key_compare_as_multisets(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE events (kind text, n int);"
        "INSERT INTO events SELECT 'k' || (g % 5), g % 3 FROM generate_series(1, 300) g;"
        "INSERT INTO events VALUES ('dup', 1), ('dup', 1), ('dup', 1), (NULL, NULL)"
    )
    on_target(
        pg_pair,
        "DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'dup' LIMIT 2)",
        "INSERT INTO events VALUES ('new', 1), ('new', 1), (NULL, NULL), ('', NULL)",
    )
    events = table(run(pg_pair, chunk_rows=8), "public.events")
    assert events.method == "multiset"
    assert (events.missing_in_target_count, events.missing_in_source_count) == (2, 4)
    assert (events.source_rows, events.target_rows) == (304, 306)
    assert events.status == "mismatch"


def test_sequences_behind_ahead_and_never_called(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, v int);"
        "CREATE TABLE items (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);"
        "CREATE SEQUENCE spare; CREATE SEQUENCE down INCREMENT -1 START -1 MAXVALUE -1;"
    )
    with pg_pair.source_conn() as conn:
        conn.execute("INSERT INTO orders (v) SELECT g FROM generate_series(1, 50) g")
        conn.execute(
            "INSERT INTO items VALUES (DEFAULT), (DEFAULT), (70)"
        )  # 70 is beyond the sequence
        conn.execute("SELECT nextval('down'), nextval('down')")
    with pg_pair.target_conn() as conn:
        conn.execute(
            "INSERT INTO orders (id, v) SELECT g, g FROM generate_series(1, 50) g"
        )  # DMS: sequence untouched
        conn.execute("INSERT INTO items VALUES (1), (2), (70); SELECT setval('items_id_seq', 70)")
        conn.execute("SELECT setval('down', -5)")
    report = run(pg_pair)
    sequences = {s.sequence: s for s in report.sequences}
    orders = sequences["public.orders_id_seq"]
    assert (orders.status, orders.source_last_value, orders.target_last_value) == ("behind", 50, 1)
    assert (orders.target_is_called, orders.owned_by, orders.column_max) == (
        False,
        "public.orders.id",
        50,
    )
    items = sequences["public.items_id_seq"]
    assert (items.status, items.source_last_value, items.column_max) == ("ahead", 2, 70)
    assert sequences["public.spare"].status == "match"
    assert sequences["public.down"].status == "ahead"
    assert report.exit_code == 1
    with pg_pair.target_conn() as conn:
        conn.execute("SELECT setval('orders_id_seq', 50)")
    assert {s.sequence: s.status for s in run(pg_pair).sequences}["public.orders_id_seq"] == "match"


def test_many_differences_counts_stay_exact_beyond_max_keys(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE codes (code text PRIMARY KEY, v int);"
        "INSERT INTO codes SELECT md5(g::text), g FROM generate_series(1, 3000) g;"
        "CREATE TABLE ids (id int PRIMARY KEY, v int); INSERT INTO ids SELECT g, g FROM generate_series(1, 3000) g"
    )
    on_target(
        pg_pair,
        "UPDATE codes SET v = -v WHERE v % 7 = 0",  # 428 rows, all over the hash space
        "DELETE FROM codes WHERE v % 100 = 1",  # 26 rows: 301, 1001, 1701, 2401 were negated above
        "UPDATE ids SET v = -v WHERE v % 9 = 0",  # 333 rows
    )
    report = run(pg_pair, chunk_rows=10, max_keys=5)
    codes = table(report, "public.codes")
    assert (codes.changed_count, codes.missing_in_target_count, len(codes.changed)) == (428, 26, 5)
    assert codes.queries > 6  # the hash buckets were refined before streaming
    ids = table(report, "public.ids")
    assert (ids.changed_count, ids.changed) == (333, ((9,), (18,), (27,), (36,), (45,)))


def test_many_differing_chunks_share_each_narrowing_statement(pg_pair: Any) -> None:
    """Hundreds of differing chunks, dense and sparse keys: a few statements per batch of chunks."""
    from migctl.validate.narrow import BATCH_RANGES

    pg_pair.execute_both(
        "CREATE TABLE dense (id int PRIMARY KEY, v int);"
        "INSERT INTO dense SELECT g, g FROM generate_series(1, 20000) g;"
        # 1,000 apart: too sparse for aligned chunks, so chunks and splits come from quantiles
        "CREATE TABLE spread (id bigint PRIMARY KEY, v int);"
        "INSERT INTO spread SELECT g * 1000, g FROM generate_series(1, 20000) g;"
        "ANALYZE dense; ANALYZE spread"
    )
    on_target(
        pg_pair,
        "UPDATE dense SET v = -v WHERE v % 97 = 0",  # 206 rows: one or two in every chunk
        "DELETE FROM dense WHERE v IN (1, 20000)",  # in the first and the last chunk
        "UPDATE spread SET v = -v WHERE v % 89 = 0",  # 224 rows
        "INSERT INTO spread VALUES (-1, 0), (2500, 0), (20000001, 0)",
    )
    report = run(pg_pair, chunk_rows=100, max_keys=3)
    dense, spread = table(report, "public.dense"), table(report, "public.spread")
    assert (dense.changed_count, dense.missing_in_target_count) == (206, 2)
    assert (dense.changed, dense.missing_in_target) == (((97,), (194,), (291,)), ((1,), (20000,)))
    assert (spread.changed_count, spread.changed) == (224, ((89000,), (178000,), (267000,)))
    assert spread.missing_in_source == ((-1,), (2500,), (20000001,))
    assert (spread.missing_in_source_count, spread.missing_in_target_count) == (3, 0)
    for found in (dense, spread):
        # One chunk at a time took three or four statements per differing chunk; batched, each
        # step of narrowing takes one statement per side for up to BATCH_RANGES chunks.
        batches = -(-found.differing_chunks // BATCH_RANGES)
        assert found.differing_chunks > 3 * BATCH_RANGES
        assert found.queries <= 10 + 10 * batches, (found.queries, batches)


def test_a_big_table_gets_the_planner_hints_and_the_same_exact_answer(pg_pair: Any) -> None:
    """Above BIG_TABLE_ROWS the first pass runs with planner hints; the target stores rows at random."""
    from migctl.validate.table import BIG_TABLE_ROWS

    rows = BIG_TABLE_ROWS + 10_000
    create = "CREATE TABLE big (id bigint PRIMARY KEY, v text, j jsonb)"
    fill = f"INSERT INTO big SELECT g, 'v' || g, jsonb_build_object('g', g) FROM generate_series(1, {rows}) g"
    with pg_pair.source_conn() as conn:
        conn.execute(f"{create}; {fill}; ANALYZE big")
    with pg_pair.target_conn() as conn:
        conn.execute(f"{create}; {fill} ORDER BY md5(g::text); ANALYZE big")
    on_target(
        pg_pair,
        "DELETE FROM big WHERE id = 100",
        f"INSERT INTO big VALUES ({rows + 7}, 'x', NULL), (-3, 'below the first key', NULL)",
        "UPDATE big SET j = '{\"g\": -30000}' WHERE id = 30000",  # the sign of a jsonb number
    )
    big = table(run(pg_pair, tables=("public.big",)), "public.big")
    assert (big.missing_in_target, big.missing_in_source, big.changed) == (
        ((100,),),
        ((-3,), (rows + 7,)),
        ((30000,),),
    )
    assert big.chunks > 20 and big.source_rows == rows and big.target_rows == rows + 1


def test_a_key_repeated_on_a_target_without_the_primary_key_is_streamed(
    pg_pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Narrowing ends on one key value holding more rows than are fetched at once."""
    from migctl.validate.narrow import FETCH_ROWS
    from migctl.validate.session import Side

    streams: list[str] = []
    stream = Side.stream

    def spy(self: Side, *args: Any, **kwargs: Any) -> Any:
        streams.append(self.label)
        return stream(self, *args, **kwargs)

    monkeypatch.setattr(Side, "stream", spy)

    copies = FETCH_ROWS + 2_000
    with pg_pair.source_conn() as conn:
        conn.execute("CREATE TABLE dupes (id int PRIMARY KEY, v text)")
    with pg_pair.target_conn() as conn:
        conn.execute("CREATE TABLE dupes (id int NOT NULL, v text)")
    pg_pair.execute_both("INSERT INTO dupes SELECT g, 'v' || g FROM generate_series(1, 100) g")
    on_target(pg_pair, f"INSERT INTO dupes SELECT 50, 'v50' FROM generate_series(1, {copies})")
    dupes = table(run(pg_pair, chunk_rows=40), "public.dupes")
    assert dupes.schema_differences == ("primary key (id) on source, none on target",)
    assert (dupes.missing_in_source, dupes.missing_in_source_count) == (((50,),), copies)
    assert (dupes.missing_in_target_count, dupes.changed_count) == (0, 0)
    assert streams == ["source", "target"]  # through server-side cursors, not in memory


def test_the_keys_kept_are_the_first_even_beside_a_streamed_leaf(pg_pair: Any) -> None:
    """One chunk; key 20 in a small leaf, key 4000 repeated in a streamed one: max_keys keeps 20."""
    from migctl.validate.narrow import FETCH_ROWS

    with pg_pair.source_conn() as conn:
        conn.execute("CREATE TABLE dupes (id int PRIMARY KEY, v text)")
    with pg_pair.target_conn() as conn:
        conn.execute("CREATE TABLE dupes (id int NOT NULL, v text)")
    pg_pair.execute_both("INSERT INTO dupes SELECT g, 'v' || g FROM generate_series(1, 5000) g")
    on_target(
        pg_pair,
        f"INSERT INTO dupes SELECT 4000, 'v4000' FROM generate_series(1, {FETCH_ROWS + 2_000})",
        "INSERT INTO dupes VALUES (20, 'extra')",
    )
    dupes = table(run(pg_pair, chunk_rows=1_000_000, max_keys=1), "public.dupes")
    assert (dupes.chunks, dupes.missing_in_source_count) == (1, FETCH_ROWS + 2_001)
    assert dupes.missing_in_source == ((20,),)


def test_shifted_buckets_over_aligned_bounds_are_width_bucket(pg_pair: Any) -> None:
    """The first pass's cheap bucket for dense keys gives exactly ``width_bucket``'s numbers."""
    from bisect import bisect_right

    from migctl.validate.checksum import (
        Buckets,
        ChecksumPlan,
        aligned_shift,
        batch_checksums,
        bucket_checksums,
    )
    from migctl.validate.hashing import ColumnHash

    low, high = -(2**63), 2**63 - 1
    keys = sorted(
        {low, low + 1, high - 1, high, -(2**62), 2**62, *range(-5000, 5001, 7), *range(-40, 41)}
    )
    pg_pair.execute_both(
        "CREATE TABLE keys (id bigint PRIMARY KEY);"
        f"INSERT INTO keys SELECT unnest('{{{','.join(map(str, keys))}}}'::int8[])"
    )
    plan = ChecksumPlan("public", "keys", (ColumnHash("id", "int", nullable=False),), ("id",))
    cases = [  # bounds, and whether the shift is used
        (tuple(range(-8, 9)), True),  # shift 0
        (tuple(range(-4096, 4097, 512)), True),  # shift 9, negative bounds
        ((-(2**63), -(2**62), 0, 2**62), True),  # shift 62, from the smallest int8
        ((-(2**63), -(2**63) + 1), False),  # shift 0 at the smallest int8: no room below
        ((-8, -1, 3, 100), False),  # not aligned
    ]
    with pg_pair.source_conn() as conn:
        seen: list[str] = []

        def run(query: Any, params: Any) -> list[tuple[Any, ...]]:
            seen.append(query.as_string(conn))
            return conn.execute(query, params).fetchall()

        for bounds, shifted in cases:
            expected: dict[int, int] = {}
            for k in keys:
                expected[bisect_right(bounds, k)] = expected.get(bisect_right(bounds, k), 0) + 1
            sums = bucket_checksums(run, plan, Buckets("range", bounds=bounds))
            assert {b: s.rows for b, s in sums.items()} == expected, (bounds, aligned_shift(bounds))
            assert ("width_bucket" not in seen[-1]) == shifted
            server = conn.execute(
                "SELECT width_bucket(id, %s::int8[]), count(*) FROM keys GROUP BY 1", [list(bounds)]
            ).fetchall()
            assert dict(server) == expected

        # Narrowing asks for several splits at once, restricted to ranges: one statement, the
        # same sums as one statement each (both bucket shapes, open and closed ends).
        specs = [
            Buckets("range", bounds=bounds, lo=lo, hi=hi)
            for bounds, _ in cases
            for lo, hi in ((None, None), (-4000, 4000), (None, 0), (-20, None))
        ]
        one_by_one = [bucket_checksums(run, plan, spec) for spec in specs]
        statements = len(seen)
        assert batch_checksums(run, plan, specs) == one_by_one
        assert len(seen) == statements + 1 and "UNION ALL" in seen[-1]
        assert all(one_by_one) and len({tuple(s.items()) for s in one_by_one}) > len(cases)


def test_a_not_valid_not_null_column_still_counts_its_nulls(pg_pair_mixed: Any) -> None:
    """PostgreSQL 18's NOT NULL ... NOT VALID leaves old NULLs: such a column is hashed as nullable."""
    with pg_pair_mixed.source_conn() as conn:
        conn.execute(
            "CREATE TABLE nn (id int PRIMARY KEY, v text NOT NULL); INSERT INTO nn VALUES (1, 'x'), (2, 'y')"
        )
    with pg_pair_mixed.target_conn() as conn:
        conn.execute(
            "CREATE TABLE nn (id int PRIMARY KEY, v text); INSERT INTO nn VALUES (1, NULL), (2, 'y');"
            "ALTER TABLE nn ADD CONSTRAINT nn_v_not_null NOT NULL v NOT VALID"
        )
    nn = table(run(pg_pair_mixed, tables=("public.nn",)), "public.nn")
    assert nn.changed == ((1,),)
    assert nn.schema_differences == ("column v: NOT NULL on source, nullable on target",)
