"""The merge that turns two sorted streams into exact differences, and the bookkeeping around it."""

from __future__ import annotations

from migctl.validate.checksum import BucketSum
from migctl.validate.narrow import Tally, _coalesce, differing, merge_counts, merge_keyed


def rows(*items: tuple[int, int]) -> list[tuple[int, tuple[int], int, int]]:
    """(key, hash) -> a merge row whose canonical and strict hashes are the same."""
    return [(k, (k,), h, h) for k, h in items]


def test_merge_keyed_finds_each_kind_of_difference() -> None:
    tally = Tally(max_keys=10)
    merge_keyed(rows((1, 10), (2, 20), (4, 40)), rows((1, 10), (2, 21), (3, 30)), tally)
    assert tally.changed == [(2,)]
    assert tally.missing_in_source == [(3,)]
    assert tally.missing_in_target == [(4,)]
    assert (tally.changed_count, tally.missing_in_source_count, tally.missing_in_target_count) == (
        1,
        1,
        1,
    )


def test_merge_keyed_with_duplicate_keys_on_a_side_without_primary_key() -> None:
    tally = Tally(max_keys=10)
    merge_keyed(rows((1, 10)), rows((1, 10), (1, 10), (1, 11)), tally)
    assert tally.missing_in_source_count == 2
    assert tally.changed_count == 0


def test_counts_stay_exact_beyond_max_keys() -> None:
    tally = Tally(max_keys=2)
    merge_keyed(rows(*[(k, k) for k in range(100)]), rows(*[(k, k + 1) for k in range(100)]), tally)
    assert tally.changed_count == 100
    assert tally.changed == [(0,), (1,)]
    total = Tally(max_keys=3)
    total.absorb(tally)
    total.absorb(tally)
    assert total.changed_count == 200 and len(total.changed) == 3


def test_merge_keyed_counts_rows_equal_by_value_apart_from_differences() -> None:
    tally = Tally(max_keys=10)
    # key 1: same value stored alike; key 2: equal by value, stored differently (jsonb 1.0 and
    # 1.00: same canonical hash, other strict hash); key 3: a real change
    merge_keyed(
        [(1, (1,), 10, 10), (2, (2,), 20, 21), (3, (3,), 30, 30)],
        [(1, (1,), 10, 10), (2, (2,), 20, 22), (3, (3,), 31, 31)],
        tally,
    )
    assert tally.changed == [(3,)] and tally.total == 1
    assert tally.equal_by_value_count == 1 and tally.explained
    assert not Tally(5).explained


def test_merge_counts_is_a_multiset_difference() -> None:
    tally = Tally(max_keys=5)
    merge_counts([(1, 1, 2), (5, 5, 1), (9, 9, 1)], [(1, 1, 1), (7, 7, 3), (9, 9, 1)], tally)
    assert tally.missing_in_target_count == 2  # one copy of 1, and 5
    assert tally.missing_in_source_count == 3  # three copies of 7
    assert tally.missing_in_target == [] and tally.changed_count == 0
    assert tally.equal_by_value_count == 0


def test_merge_counts_tells_equal_values_stored_differently_from_differences() -> None:
    tally = Tally(max_keys=5)
    # canonical 1: two rows each side, one of them stored differently; canonical 2: one extra row
    merge_counts([(1, 10, 1), (1, 11, 1), (2, 20, 2)], [(1, 10, 1), (1, 12, 1), (2, 20, 1)], tally)
    assert tally.total == 1 and tally.missing_in_target_count == 1
    assert tally.equal_by_value_count == 1
    total = Tally(5)
    total.absorb(tally)
    assert total.equal_by_value_count == 1


def test_differing_compares_count_and_checksum_and_absent_buckets() -> None:
    src = {0: BucketSum(0, 5, 100), 1: BucketSum(1, 5, 100), 2: BucketSum(2, 1, 7)}
    tgt = {0: BucketSum(0, 5, 100), 1: BucketSum(1, 5, 101), 3: BucketSum(3, 2, 8)}
    assert differing(src, tgt) == {1: (5, 5), 2: (1, 0), 3: (0, 2)}


def test_adjacent_leaf_ranges_are_streamed_together() -> None:
    leaves = [((10, 20), 3), ((None, 5), 1), ((20, 30), 4), ((40, None), 2)]
    assert _coalesce(leaves) == [((None, 5), 1), ((10, 30), 7), ((40, None), 2)]


def test_narrow_groups_spread_chunks_over_the_concurrency() -> None:
    from migctl.validate.lambda_table import narrow_groups
    from migctl.validate.narrow import BATCH_RANGES

    assert narrow_groups(list(range(5)), 50) == [[0], [1], [2], [3], [4]]  # one each: they fit
    assert [len(g) for g in narrow_groups(list(range(100)), 50)] == [2] * 50
    assert [len(g) for g in narrow_groups(list(range(101)), 50)] == [3] * 33 + [2]
    many = narrow_groups(list(range(10_000)), 50)  # never more than BATCH_RANGES a statement
    assert {len(g) for g in many} == {BATCH_RANGES, 10_000 % BATCH_RANGES}
    assert [c for g in many for c in g] == list(range(10_000))  # consecutive, in order
    assert narrow_groups([], 50) == [] and narrow_groups([1], 0) == [[1]]


def test_checksum_spans_hold_about_the_same_rows_whatever_the_chunk_size() -> None:
    from migctl.validate.lambda_table import ROWS_PER_INVOCATION, FanoutOptions

    default = FanoutOptions()
    assert default.span_chunks(512) == ROWS_PER_INVOCATION // 512 == 62
    assert default.span_chunks(2_000) == 16  # as it was while the default chunk was 2,000 rows
    assert default.span_chunks(1_000_000) == 1
    assert FanoutOptions(chunks_per_invocation=3).span_chunks(512) == 3
