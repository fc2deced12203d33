"""Incremental validation (a baseline, then rounds over what changed) gives the full answer.

The property: after any mix of writes on the source, on the target, or on both (replication),
before the baseline (lag that converges or not), between rounds and after them, a round
reports exactly the differences that a full ``validate`` at the same moment reports, key by
key and kind by kind. The writes include key changes, deletes and re-inserts, and text keys
full of what test_decoding quotes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migctl.db import Database
from migctl.validate import changes, incremental
from migctl.validate.local import validate
from migctl.validate.report import TableResult
from migctl.validate.runner import ValidateOptions

ODD_TEXT = st.lists(
    st.sampled_from(["a", "Z", " ", "'", '"', "\\", "é", "[", "]", ":", "null", " new-tuple: "]),
    min_size=1,
    max_size=5,
).map("".join)
KEYS = {"bigint": st.integers(-(2**62), 2**62), "text": ODD_TEXT}


@dataclass(frozen=True)
class Write:
    side: str  # source, target, both
    kind: str  # upsert, delete, rekey
    key: Any
    value: str
    new_key: Any = None


def writes(key: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Write]]:
    one = st.builds(
        Write,
        side=st.sampled_from(["source", "target", "both", "both"]),
        kind=st.sampled_from(["upsert", "upsert", "delete", "rekey"]),
        key=key,
        value=ODD_TEXT,
        new_key=key,
    )
    return st.lists(one, max_size=8)


def apply(pg_pair: Any, table: str, ws: list[Write]) -> None:
    for w in ws:
        sides = ["source", "target"] if w.side == "both" else [w.side]
        for side in sides:
            with pg_pair.source_conn() if side == "source" else pg_pair.target_conn() as conn:
                if w.kind == "upsert":
                    conn.execute(
                        f"INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (k) DO UPDATE"
                        " SET v = excluded.v",
                        (w.key, w.value),
                    )
                elif w.kind == "delete":
                    conn.execute(f"DELETE FROM {table} WHERE k = %s", (w.key,))
                else:
                    conn.execute(
                        f"UPDATE {table} SET k = %s WHERE k = %s AND NOT EXISTS "
                        f"(SELECT 1 FROM {table} WHERE k = %s)",
                        (w.new_key, w.key, w.new_key),
                    )


def found(t: TableResult) -> tuple[Any, ...]:
    return (
        t.status,
        sorted(map(str, t.missing_in_target)),
        sorted(map(str, t.missing_in_source)),
        sorted(map(str, t.changed)),
    )


def full(pg_pair: Any, options: ValidateOptions) -> tuple[Any, ...]:
    report = validate(Database(pg_pair.source_dsn), Database(pg_pair.target_dsn), options)
    (table,) = report.tables
    return found(table)


@pytest.mark.parametrize("key_type", sorted(KEYS))
def test_a_round_reports_what_a_full_validation_reports(pg_pair: Any, key_type: str) -> None:
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)

    @settings(max_examples=12, derandomize=True, deadline=None)
    @given(
        rows=st.lists(KEYS[key_type], max_size=6, unique=True),
        lag=writes(KEYS[key_type]),
        between=writes(KEYS[key_type]),
        after=writes(KEYS[key_type]),
    )
    def check(rows: list[Any], lag: list[Write], between: list[Write], after: list[Write]) -> None:
        table = f"t_{secrets.token_hex(4)}"
        options = ValidateOptions(tables=(f"public.{table}",), max_keys=1000, sequences=False)
        slot = f"migctl_validate_{table}"
        pg_pair.execute_both(f"CREATE TABLE {table} (k {key_type} PRIMARY KEY, v text)")
        try:
            apply(pg_pair, table, [Write("both", "upsert", k, "v0") for k in rows])
            apply(pg_pair, table, lag)  # differences the baseline sees: lag, or real
            baseline = incremental.begin(source, target, slot, options)
            apply(pg_pair, table, between)
            first = incremental.recheck(source, target, options, baseline.state)
            (t,) = first.tables
            assert found(t) == full(pg_pair, options)
            incremental.advance(source, target, first.state)
            apply(pg_pair, table, after)
            second = incremental.recheck(source, target, options, first.state)
            (t,) = second.tables
            assert found(t) == full(pg_pair, options)
            assert not second.whole  # every key came from the WAL, nothing read in full
        finally:
            incremental.drop(source, target, slot)
            pg_pair.execute_both(f"DROP TABLE {table}")

    check()


def test_a_write_on_the_target_alone_is_caught(pg_pair: Any) -> None:
    """A stray writer on the target, on a row nobody else touched: the target's slot has it."""
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)
    pg_pair.execute_both(
        "CREATE TABLE pay (id bigint PRIMARY KEY, amount numeric(12,2));"
        "INSERT INTO pay SELECT g, g FROM generate_series(1, 5000) g"
    )
    options = ValidateOptions(tables=("public.pay",))
    baseline = incremental.begin(source, target, "migctl_validate_t1", options)
    assert baseline.ok
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE pay SET amount = amount + 0.01 WHERE id = 4242")
    round_ = incremental.recheck(source, target, options, baseline.state)
    (t,) = round_.tables
    assert (t.status, t.changed) == ("mismatch", ((4242,),))
    assert round_.rechecked == 1 and round_.changed == {"source": 0, "target": 1}
    incremental.drop(source, target, "migctl_validate_t1")


def test_differences_that_converge_are_lag_and_those_that_stay_are_real(pg_pair: Any) -> None:
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)
    pg_pair.execute_both("CREATE TABLE pay (id int PRIMARY KEY, v text)")
    with pg_pair.source_conn() as conn:  # replication has not carried these yet
        conn.execute("INSERT INTO pay VALUES (1, 'a'), (2, 'b')")
    options = ValidateOptions(tables=("public.pay",))
    baseline = incremental.begin(source, target, "migctl_validate_t2", options)
    assert not baseline.ok and baseline.state.pending == {"public.pay": (("1",), ("2",))}
    with pg_pair.target_conn() as conn:  # replication catches up with one of them
        conn.execute("INSERT INTO pay VALUES (1, 'a')")
    round_ = incremental.recheck(source, target, options, baseline.state)
    (t,) = round_.tables
    assert t.missing_in_target == ((2,),) and round_.state.pending == {"public.pay": (("2",),)}
    incremental.drop(source, target, "migctl_validate_t2")


def test_what_cannot_be_keyed_is_compared_in_full(pg_pair: Any) -> None:
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)
    pg_pair.execute_both(
        "CREATE TABLE cut (id int PRIMARY KEY); INSERT INTO cut VALUES (1), (2);"
        "CREATE TABLE loose (v text); INSERT INTO loose VALUES ('x');"
        "CREATE TABLE grow (id int PRIMARY KEY); INSERT INTO grow VALUES (1);"
        "CREATE TABLE calm (id int PRIMARY KEY); INSERT INTO calm VALUES (1)"
    )
    options = ValidateOptions(tables=("public.*",))
    baseline = incremental.begin(source, target, "migctl_validate_t3", options)
    assert baseline.ok
    with pg_pair.target_conn() as conn:
        conn.execute("TRUNCATE cut; INSERT INTO cut VALUES (1), (2)")
        conn.execute("DELETE FROM loose")
    pg_pair.execute_both("ALTER TABLE grow ADD COLUMN note text DEFAULT 'n'")
    round_ = incremental.recheck(source, target, options, baseline.state)
    assert round_.whole == {
        "public.cut": "on the target, it was truncated",
        "public.loose": "on the target, it has no primary key",
        "public.grow": "its columns or key changed since the baseline",
    }
    status = {t.table: t.status for t in round_.tables}
    assert status == {
        "public.calm": "match",
        "public.cut": "match",
        "public.grow": "match",
        "public.loose": "mismatch",
    }
    incremental.drop(source, target, "migctl_validate_t3")


def test_a_round_read_twice_reads_the_same_until_the_slots_move_on(pg_pair: Any) -> None:
    """The journal-then-advance order: a crash before ``advance`` reads the same again."""
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)
    pg_pair.execute_both("CREATE TABLE pay (id int PRIMARY KEY, v text)")
    options = ValidateOptions(tables=("public.pay",))
    baseline = incremental.begin(source, target, "migctl_validate_t4", options)
    with pg_pair.source_conn() as conn:
        conn.execute("INSERT INTO pay VALUES (7, 'source only')")
    first = incremental.recheck(source, target, options, baseline.state)
    again = incremental.recheck(source, target, options, baseline.state)
    assert first.changed == again.changed == {"source": 1, "target": 0}
    incremental.advance(source, target, first.state)
    moved = incremental.recheck(source, target, options, first.state)
    assert moved.changed == {"source": 0, "target": 0}
    assert moved.rechecked == 1  # key 7 still differs: carried as pending, not lost
    assert moved.tables[0].missing_in_target == ((7,),)
    incremental.drop(source, target, "migctl_validate_t4")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id[bigint]:5 v[text]:'it''s new-tuple: x'", {"id": "5", "v": "it's new-tuple: x"}),
        ('"Odd ""Name"""[integer]:1 b[bit(3)]:B\'101\'', {'Odd "Name"': "1", "b": "101"}),
        ("a[integer[]]:'{1,2}' n[text]:null", {"a": "{1,2}", "n": None}),
        ("t[text]:unchanged-toast-datum", {"t": "unchanged-toast-datum"}),
        ("ts[timestamp with time zone]:'2024-01-02 03:04:05+00'", {"ts": "2024-01-02 03:04:05+00"}),
    ],
)
def test_test_decoding_tuples_parse(text: str, expected: dict[str, Any]) -> None:
    assert changes.columns(text)[0] == expected


def test_a_change_to_a_partition_counts_for_its_partitioned_table(pg_pair: Any) -> None:
    """Decoding names the partition a row lives in; validate compares the partitioned table:
    a write to a partition must be rechecked as the partitioned table's row."""
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)
    pg_pair.execute_both(
        "CREATE TABLE pay (id int, region text, v text, PRIMARY KEY (id, region))"
        " PARTITION BY LIST (region);"
        "CREATE TABLE pay_eu PARTITION OF pay FOR VALUES IN ('eu');"
        "CREATE TABLE pay_us PARTITION OF pay FOR VALUES IN ('us');"
        "INSERT INTO pay VALUES (1, 'eu', 'a'), (2, 'us', 'b')"
    )
    options = ValidateOptions(tables=("public.pay",))
    baseline = incremental.begin(source, target, "migctl_validate_t5", options)
    assert baseline.ok
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE pay SET v = 'stray' WHERE id = 2")
    round_ = incremental.recheck(source, target, options, baseline.state)
    (t,) = round_.tables
    assert (t.table, t.status, t.changed) == ("public.pay", "mismatch", ((2, "us"),))
    incremental.drop(source, target, "migctl_validate_t5")


def test_a_partition_attached_with_its_rows_makes_the_round_compare_in_full(
    pg_pair: Any,
) -> None:
    """ATTACH PARTITION brings rows in without a row change in the WAL: the round sees the
    partitioned table's tree change and compares it in full."""
    source, target = Database(pg_pair.source_dsn), Database(pg_pair.target_dsn)
    pg_pair.execute_both(
        "CREATE TABLE pay (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);"
        "CREATE TABLE pay_eu PARTITION OF pay FOR VALUES IN ('eu');"
        "CREATE TABLE pay_us (id int NOT NULL, region text NOT NULL)"
    )
    with pg_pair.target_conn() as conn:
        conn.execute("INSERT INTO pay_us VALUES (9, 'us')")
    options = ValidateOptions(tables=("public.pay",))
    baseline = incremental.begin(source, target, "migctl_validate_t6", options)
    assert baseline.ok
    with pg_pair.target_conn() as conn:
        conn.execute("ALTER TABLE pay ATTACH PARTITION pay_us FOR VALUES IN ('us')")
    round_ = incremental.recheck(source, target, options, baseline.state)
    (t,) = round_.tables
    assert round_.whole == {"public.pay": "its columns or key changed since the baseline"}
    assert (t.status, t.missing_in_source) == ("mismatch", ((9, "us"),))
    incremental.drop(source, target, "migctl_validate_t6")
