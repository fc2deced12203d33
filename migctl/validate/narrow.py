"""From differing chunks to exact keys: missing in the target, missing in the source, changed.

Integer keys narrow by key ranges: a differing range is split (into equal
widths when it spans few key values, else at the key quantiles of its bigger
side: one index range scan), both sides checksum the sub-ranges (one more
each), and only differing sub-ranges go on, until a range is small enough to
stream ``(key, row_hash)`` from both sides in key order and merge. k
differences cost about k·log(n) small range scans. Up to ``BATCH_RANGES``
differing chunks are narrowed together: each step is one statement per side
for all their ranges (``UNION ALL``), so the round trips number about
k / ``BATCH_RANGES`` · log(n).

Other keys (text, uuid, composite) narrow by more bits of the key's hash,
then stream the rows of the differing hash buckets ordered by
``(key_hash, key text COLLATE "C")``: the order is the same on both servers
whatever their collations.

Small leaves are fetched from both sides at once; anything bigger streams
through server-side cursors and a merge that holds one row per side, so memory
stays flat however large the difference; only the first ``max_keys`` keys of
each kind are kept, the counts are always exact.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Any, TypeVar

from psycopg import sql

from migctl.pgnames import ident
from migctl.validate.checksum import (
    INT8_MIN,
    Buckets,
    BucketSum,
    ChecksumPlan,
    batch_checksums,
    bucket_checksums,
    bucket_filter,
    key_hash_sql,
    key_int_sql,
    key_output_sql,
    leaf_hashes_sql,
    union_all,
)
from migctl.validate.hashing import key_text_sql
from migctl.validate.report import Key
from migctl.validate.session import Pair, Side

T = TypeVar("T")
U = TypeVar("U")
Both = Callable[[Callable[[], T], Callable[[], U]], tuple[T, U]]

FANOUT = 64  # sub-ranges per narrowing step
FETCH_ROWS = 10_000  # leaves up to this many rows per side are fetched from both sides at once
BATCH_RANGES = 32  # ranges (or leaves) one narrowing statement covers per side
MAX_DEPTH = 48  # ranges shrink strictly, so this is only a guard
HASH_STEP_BITS = 8  # hash narrowing refines by 256
MAX_HASH_BITS = 56


@dataclass
class Tally:
    """Differences found so far: exact counts, and the first ``max_keys`` keys of each kind.

    ``equal_by_value_count``: rows whose stored forms differ but whose values
    PostgreSQL calls equal (jsonb ``1.0`` against ``1.00``): not a difference.
    """

    max_keys: int
    missing_in_target_count: int = 0
    missing_in_source_count: int = 0
    changed_count: int = 0
    missing_in_target: list[Key] = field(default_factory=list)
    missing_in_source: list[Key] = field(default_factory=list)
    changed: list[Key] = field(default_factory=list)
    equal_by_value_count: int = 0

    @property
    def total(self) -> int:
        return self.missing_in_target_count + self.missing_in_source_count + self.changed_count

    @property
    def explained(self) -> bool:
        """Something accounts for a chunk's differing checksums: a difference, or equal values."""
        return self.total > 0 or self.equal_by_value_count > 0

    def add(self, kind: str, key: Key | None, count: int = 1) -> None:
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + count)
        keys: list[Key] = getattr(self, kind)
        if key is not None and len(keys) < self.max_keys:
            keys.append(key)

    def absorb(self, other: Tally) -> None:
        for kind in ("missing_in_target", "missing_in_source", "changed"):
            setattr(
                self,
                f"{kind}_count",
                getattr(self, f"{kind}_count") + getattr(other, f"{kind}_count"),
            )
            keys: list[Key] = getattr(self, kind)
            keys.extend(getattr(other, kind)[: max(0, self.max_keys - len(keys))])
        self.equal_by_value_count += other.equal_by_value_count


def differs(a: BucketSum | None, b: BucketSum | None) -> bool:
    if a is None or b is None:
        return (a or b) is not None
    return (a.rows, a.checksum) != (b.rows, b.checksum)


def rows_of(s: BucketSum | None) -> int:
    return s.rows if s else 0


def differing(
    source: dict[int, BucketSum], target: dict[int, BucketSum]
) -> dict[int, tuple[int, int]]:
    """Buckets whose (count, checksum) differ, with each side's row count."""
    return {
        b: (rows_of(source.get(b)), rows_of(target.get(b)))
        for b in sorted(set(source) | set(target))
        if differs(source.get(b), target.get(b))
    }


# -- merging two sorted streams -------------------------------------------------

# A row: (sort key, reported key, canonical hash, strict hash). The canonical hash calls equal
# what PostgreSQL calls equal; the strict one differs as soon as the stored form does.
Row = tuple[Any, Key, int, int]
Hashes = tuple[int, int]  # (canonical, strict)


def _runs(rows: Iterable[Row]) -> Iterator[tuple[Any, Key, list[Hashes]]]:
    """Group consecutive rows with the same sort key (duplicates only where a side lacks the PK)."""
    for sort_key, run in groupby(rows, key=itemgetter(0)):
        found = list(run)
        yield sort_key, found[0][1], [(canonical, strict) for _, _, canonical, strict in found]


def _equal_by_value(source: list[Hashes], target: list[Hashes]) -> int:
    """How many rows the two lists share by value but not by stored form."""
    by_value = Counter(h for h, _ in source) & Counter(h for h, _ in target)
    as_stored = Counter(source) & Counter(target)
    return sum(by_value.values()) - sum(as_stored.values())


def merge_keyed(source: Iterable[Row], target: Iterable[Row], tally: Tally) -> None:
    """Walk two key-ordered streams once: keys on one side only, and keys whose row differs."""
    src, tgt = _runs(source), _runs(target)
    a, b = next(src, None), next(tgt, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            tally.add("missing_in_target", a[1], len(a[2]))
            a = next(src, None)
        elif a is None or b[0] < a[0]:
            tally.add("missing_in_source", b[1], len(b[2]))
            b = next(tgt, None)
        else:
            common = Counter(h for h, _ in a[2]) & Counter(h for h, _ in b[2])
            only_src = len(a[2]) - sum(common.values())
            only_tgt = len(b[2]) - sum(common.values())
            changed = min(only_src, only_tgt)
            if changed:
                tally.add("changed", a[1], changed)
            if only_src - changed:
                tally.add("missing_in_target", a[1], only_src - changed)
            if only_tgt - changed:
                tally.add("missing_in_source", b[1], only_tgt - changed)
            tally.equal_by_value_count += _equal_by_value(a[2], b[2])
            a, b = next(src, None), next(tgt, None)


CountRow = tuple[int, int, int]  # (canonical hash, strict hash, rows)


def _count_runs(rows: Iterable[CountRow]) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """Group ``(canonical, strict, rows)`` by canonical hash: ``(canonical, [(strict, rows)])``."""
    for canonical, run in groupby(rows, key=itemgetter(0)):
        yield canonical, [(strict, count) for _, strict, count in run]


def merge_counts(source: Iterable[CountRow], target: Iterable[CountRow], tally: Tally) -> None:
    """Multiset merge of ``(canonical, strict, rows)`` streams ordered by canonical hash."""
    src, tgt = _count_runs(source), _count_runs(target)
    a, b = next(src, None), next(tgt, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            tally.add("missing_in_target", None, sum(n for _, n in a[1]))
            a = next(src, None)
        elif a is None or b[0] < a[0]:
            tally.add("missing_in_source", None, sum(n for _, n in b[1]))
            b = next(tgt, None)
        else:
            rows_a, rows_b = sum(n for _, n in a[1]), sum(n for _, n in b[1])
            if rows_a > rows_b:
                tally.add("missing_in_target", None, rows_a - rows_b)
            elif rows_b > rows_a:
                tally.add("missing_in_source", None, rows_b - rows_a)
            as_stored = sum(min(n, dict(b[1]).get(h, 0)) for h, n in a[1])
            tally.equal_by_value_count += min(rows_a, rows_b) - as_stored
            a, b = next(src, None), next(tgt, None)


def _merge_streams(
    pair: Pair, query: sql.Composable, params: list[Any], merge: Callable[[Any, Any], None]
) -> None:
    src = pair.source.stream(query, params)
    tgt = pair.target.stream(query, params)
    try:
        merge(src, tgt)
    finally:
        src.close()
        tgt.close()


# -- integer keys: ranges ---------------------------------------------------------

Range = tuple[int | None, int | None]  # [lo, hi); None is unbounded
Leaf = tuple[Range, int]  # a range to stream, and the most rows either side holds in it
Chunk = tuple[Range, tuple[int, int], Tally]  # a differing chunk, each side's rows, its findings
Part = tuple[Range, tuple[int, int], int]  # a range being narrowed, its rows, its chunk's index
SmallLeaf = tuple[Range, int, Tally]  # a leaf fetched in memory, its rows, its findings


def resolve_ranges(
    pair: Pair, plan: ChecksumPlan, chunks: Sequence[Chunk], both: Both[Any, Any], leaf_rows: int
) -> None:
    """Find the exact differing keys of several chunks, each into its own tally, all together.

    Each step (the quantiles to split at, the pieces' checksums, the leaves'
    rows) is one statement per side for up to ``BATCH_RANGES`` ranges of any of
    the chunks, both sides at once: the round trips grow with the number of
    differing chunks divided by ``BATCH_RANGES``, not with the number.
    """
    leaves: list[tuple[Leaf, int]] = []
    parts: list[Part] = [(rng, counts, i) for i, (rng, counts, _) in enumerate(chunks)]
    for depth in range(MAX_DEPTH + 1):
        wide: list[Part] = []
        for rng, counts, i in parts:
            if max(counts) <= leaf_rows or depth == MAX_DEPTH:
                leaves.append(((rng, max(counts)), i))
            else:
                wide.append((rng, counts, i))
        specs: list[tuple[Buckets, int]] = []
        for (rng, counts, i), bounds in zip(
            wide, _split(pair, plan, wide, both, leaf_rows), strict=True
        ):
            if bounds:
                specs.append((Buckets("range", bounds=bounds, lo=rng[0], hi=rng[1]), i))
            else:
                leaves.append(((rng, max(counts)), i))
        parts = []
        for batch in batched(specs):
            wanted = [spec for spec, _ in batch]
            sums = both(
                partial(batch_checksums, pair.source.execute, plan, wanted),
                partial(batch_checksums, pair.target.execute, plan, wanted),
            )
            for (spec, i), source, target in zip(batch, *sums, strict=True):
                for bucket, sub_counts in differing(source, target).items():
                    parts.append((spec.range_of(bucket), sub_counts, i))
        if not parts:
            break
    _fetch_leaves(pair, plan, chunks, leaves, both)


def batched(items: Sequence[T], size: int = BATCH_RANGES) -> list[Sequence[T]]:
    """Consecutive groups of ``size`` items (the last one shorter), in order."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _split(
    pair: Pair, plan: ChecksumPlan, parts: list[Part], both: Both[Any, Any], leaf_rows: int
) -> list[tuple[int, ...]]:
    """Up to ``FANOUT - 1`` bounds inside each part's range.

    A range of at most ``FANOUT * leaf_rows`` key values is cut into equal
    widths, with no query: a primary key puts at most one row on each value, so
    every piece is a leaf (a side without the primary key may need another
    split). Otherwise at the key quantiles of the bigger side (index range
    scans, batched per side, both sides at once).
    """
    found: list[tuple[int, ...]] = []
    by_side: tuple[list[int], list[int]] = ([], [])  # the parts each side splits at quantiles
    for n, ((lo, hi), counts, _) in enumerate(parts):
        if lo is not None and hi is not None and hi - lo <= FANOUT * leaf_rows:
            step = -(-(hi - lo) // FANOUT)
            found.append(tuple(range(lo + step, hi, step)))
        else:
            found.append(())
            by_side[0 if counts[0] >= counts[1] else 1].append(n)
    fractions = [i / FANOUT for i in range(1, FANOUT)]

    def quantiles(side: Side, wanted: list[int]) -> None:
        for batch in batched(wanted):
            queries = []
            for n in batch:
                lo, hi = parts[n][0]
                where, params = bucket_filter(plan, Buckets("range", lo=lo, hi=hi))
                query = sql.SQL(
                    "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {k})"
                    " FROM {t} WHERE {w}"
                ).format(k=key_int_sql(plan), t=plan.relation, w=where)
                queries.append((query, [fractions, *params]))
            for part, values in side.execute(*union_all(queries)):
                n = batch[part]
                lo = parts[n][0][0]
                found[n] = tuple(
                    sorted(
                        {int(v) for v in values or [] if v is not None and (lo is None or v > lo)}
                    )
                )

    if by_side[0] or by_side[1]:
        both(
            partial(quantiles, pair.source, by_side[0]),
            partial(quantiles, pair.target, by_side[1]),
        )
    return found


def _fetch_leaves(
    pair: Pair,
    plan: ChecksumPlan,
    chunks: Sequence[Chunk],
    leaves: list[tuple[Leaf, int]],
    both: Both[Any, Any],
) -> None:
    """Read each leaf's ``(key, row_hash)`` from both sides and merge it into its chunk's tally.

    Adjacent leaves of a chunk are read as one. Leaves of up to ``FETCH_ROWS``
    rows are fetched from both sides at once, up to ``BATCH_RANGES`` leaves and
    ``FETCH_ROWS`` rows in one statement per side; bigger ones stream through
    server-side cursors. Each leaf fills its own tally, which its chunk absorbs in
    key order: the keys kept under ``max_keys`` are the chunk's first ones.
    """
    by_chunk: list[list[Leaf]] = [[] for _ in chunks]
    for leaf, i in leaves:
        by_chunk[i].append(leaf)
    in_order: list[list[Tally]] = [[] for _ in chunks]
    small: list[SmallLeaf] = []
    for (_, _, tally), chunk_leaves, found in zip(chunks, by_chunk, in_order, strict=True):
        for rng, rows in _coalesce(chunk_leaves):  # in key order
            found.append(Tally(tally.max_keys))
            if rows <= FETCH_ROWS:
                small.append((rng, rows, found[-1]))
            else:
                _merge_streams(pair, *_leaf_query(plan, [rng]), _merge_into(found[-1]))
    small.sort(key=lambda leaf: _start(leaf[0]))
    batch: list[SmallLeaf] = []
    rows = 0
    for item in small:
        if batch and (len(batch) == BATCH_RANGES or rows + item[1] > FETCH_ROWS):
            _fetch_small(pair, plan, batch, both)
            batch, rows = [], 0
        batch.append(item)
        rows += item[1]
    if batch:
        _fetch_small(pair, plan, batch, both)
    for (_, _, tally), found in zip(chunks, in_order, strict=True):
        for leaf_tally in found:
            tally.absorb(leaf_tally)


def _fetch_small(
    pair: Pair, plan: ChecksumPlan, batch: list[SmallLeaf], both: Both[Any, Any]
) -> None:
    """Disjoint leaves, in key order: one statement per side, then each leaf's rows merged alone."""
    query, params = _leaf_query(plan, [rng for rng, _, _ in batch])
    found = both(
        partial(pair.source.execute, query, params), partial(pair.target.execute, query, params)
    )
    starts = [_start(rng) for rng, _, _ in batch]  # sorted: the batch is in key order
    per_leaf: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = [([], []) for _ in batch]
    for side, rows in enumerate(found):
        for row in rows:
            per_leaf[bisect_right(starts, row[0]) - 1][side].append(row)
    for (_, _, tally), (src, tgt) in zip(batch, per_leaf, strict=True):
        _merge_into(tally)(src, tgt)


def _start(rng: Range) -> int:
    """Where a range starts, for ordering leaves and finding a row's leaf."""
    return INT8_MIN if rng[0] is None else rng[0]


def _leaf_query(plan: ChecksumPlan, ranges: Sequence[Range]) -> tuple[sql.Composable, list[Any]]:
    """``(key, hashes...)`` of the rows in any of ``ranges``, in key order."""
    wheres, params = [], []
    for lo, hi in ranges:
        where, where_params = bucket_filter(plan, Buckets("range", lo=lo, hi=hi))
        wheres.append(sql.SQL("({})").format(where))
        params += where_params
    query = sql.SQL("SELECT {k}, {h} FROM {t} WHERE {w} ORDER BY {o}").format(
        k=key_int_sql(plan),
        h=leaf_hashes_sql(plan),
        t=plan.relation,
        w=sql.SQL(" OR ").join(wheres),
        o=ident(plan.key[0]),
    )
    return query, params


def _merge_into(
    tally: Tally,
) -> Callable[[Iterable[tuple[Any, ...]], Iterable[tuple[Any, ...]]], None]:
    return lambda src, tgt: merge_keyed(_int_rows(src), _int_rows(tgt), tally)


def _int_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[Row]:
    for key, *hashes in rows:
        yield key, (key,), hashes[0], hashes[-1]


def _coalesce(leaves: list[Leaf]) -> list[Leaf]:
    """Adjacent leaf ranges become one query."""
    merged: list[Leaf] = []
    for (lo, hi), rows in sorted(leaves, key=lambda r: (r[0][0] is not None, r[0][0] or 0)):
        if merged and merged[-1][0][1] is not None and merged[-1][0][1] == lo:
            merged[-1] = ((merged[-1][0][0], hi), merged[-1][1] + rows)
        else:
            merged.append(((lo, hi), rows))
    return merged


# -- other keys, and tables without a key: hash buckets ------------------------------


def resolve_hash(
    pair: Pair,
    plan: ChecksumPlan,
    buckets: dict[int, tuple[int, int]],
    bits: int,
    tally: Tally,
    both: Both[Any, Any],
    stream_rows: int,
) -> None:
    """Refine differing hash buckets while they hold many rows, then stream and merge them."""
    while (
        buckets
        and sum(max(c) for c in buckets.values()) > stream_rows
        and bits + HASH_STEP_BITS <= MAX_HASH_BITS
    ):
        spec = Buckets(
            "hash", bits=bits + HASH_STEP_BITS, restrict_bits=bits, restrict=tuple(buckets)
        )
        sums = both(
            partial(bucket_checksums, pair.source.execute, plan, spec),
            partial(bucket_checksums, pair.target.execute, plan, spec),
        )
        buckets, bits = differing(*sums), bits + HASH_STEP_BITS
    if not buckets:
        return
    where, params = bucket_filter(
        plan, Buckets("hash", bits=bits, restrict_bits=bits, restrict=tuple(buckets))
    )
    if not plan.key:
        groups = sql.SQL("1, 2" if plan.loose else "1")
        query = sql.SQL("SELECT {h}, count(*) FROM {t} WHERE {w} GROUP BY {g} ORDER BY {g}").format(
            h=leaf_hashes_sql(plan), t=plan.relation, w=where, g=groups
        )

        def counts(stream: Iterable[tuple[Any, ...]]) -> Iterator[CountRow]:
            for *hashes, rows in stream:  # (canonical[, strict], rows)
                yield hashes[0], hashes[-1], rows

        _merge_streams(pair, query, params, lambda s, t: merge_counts(counts(s), counts(t), tally))
        return
    width = len(plan.key)
    query = sql.SQL("SELECT {kh}, {texts}, {out}, {h} FROM {t} WHERE {w} ORDER BY {order}").format(
        kh=key_hash_sql(plan),
        texts=sql.SQL(", ").join(sql.SQL(key_text_sql(c)) for c in plan.key_columns),
        out=sql.SQL(", ").join(key_output_sql(plan)),
        h=leaf_hashes_sql(plan),
        t=plan.relation,
        w=where,
        order=sql.SQL(", ").join(sql.SQL(str(i)) for i in range(1, width + 2)),
    )

    def rows(stream: Iterable[tuple[Any, ...]]) -> Iterator[Row]:
        for row in stream:  # key hash, key texts (the order), key, hashes
            yield (
                (row[0], *row[1 : width + 1]),
                tuple(row[width + 1 : 2 * width + 1]),
                row[2 * width + 1],
                row[-1],
            )

    _merge_streams(pair, query, params, lambda s, t: merge_keyed(rows(s), rows(t), tally))
