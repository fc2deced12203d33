"""THE chunk checksum: SQL that both databases (and the validation Lambda) run per chunk.

A chunk's checksum is ``(count(*), sum(row_hash))`` grouped by a bucket of
the key: it does not depend on row order, and the sum is numeric, so it
never overflows. Equal chunks send only these aggregates over the wire.
Chunks are key ranges (over integer keys) or bits of the key's hash (every
other key, and the row's hash when there is no key).

Key ranges come in two shapes with the same meaning, ``width_bucket(key,
bounds)``. Dense keys (the span from the smallest to the largest key at most
``DENSE_KEYS`` times the rows: serial and identity keys) get consecutive
multiples of a power of two as bounds, read off the key's index with no
sample, and the bucket is then computed as a clamped shift of the key, which
costs less per row than ``width_bucket``'s binary search. A primary key is
unique, so such a range never holds more rows than it has key values.
Sparse or skewed keys get bounds at the quantiles of a block sample.

Everything here is JSON-serialisable (``to_dict``/``from_dict``) for the
Lambda; nothing imports rich or the CLI. Identifiers only reach SQL through
``migctl.pgnames.ident`` (quoted, ``%`` doubled: every query runs with
parameters); how each column is hashed is in ``hashing.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import sql

from migctl.errors import UsageError
from migctl.pgnames import TableName, ident
from migctl.validate.hashing import (
    ALGORITHMS,
    CASTS,
    FAMILIES,
    ColumnHash,
    has_loose_equality,
    hash_columns,
)

Runner = Callable[[Any, Any], list[tuple[Any, ...]]]

INT8_MIN = -(2**63)
DENSE_KEYS = 4  # keys spanning at most 4 values per row get aligned bounds without a sample


@dataclass(frozen=True)
class ChecksumPlan:
    """What to hash in one table: the shared columns, the key (empty: multiset) and the algorithm."""

    schema: str
    table: str
    columns: tuple[ColumnHash, ...]
    key: tuple[str, ...]
    algorithm: str = ALGORITHMS[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "table": self.table,
            "columns": [
                {"name": c.name, "family": c.family, "cast": c.cast, "nullable": c.nullable}
                for c in self.columns
            ],
            "key": list(self.key),
            "algorithm": self.algorithm,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChecksumPlan:
        """Parse and check a plan that may come from a Lambda payload."""
        try:
            columns = tuple(
                ColumnHash(
                    str(c["name"]), str(c["family"]), c.get("cast"), bool(c.get("nullable", True))
                )
                for c in data["columns"]
            )
            plan = cls(
                str(data["schema"]),
                str(data["table"]),
                columns,
                tuple(map(str, data["key"])),
                str(data.get("algorithm", ALGORITHMS[0])),
            )
        except (KeyError, TypeError) as exc:
            raise UsageError(f"bad checksum plan: missing or malformed {exc}") from None
        if plan.algorithm not in ALGORITHMS:
            raise UsageError(
                f"bad checksum plan: unknown algorithm {plan.algorithm!r} (this side knows"
                f" {', '.join(ALGORITHMS)}): deploy the Lambda that matches migctl"
                " (migctl lambda build, then migctl up)"
            )
        for c in plan.columns:
            if c.family not in FAMILIES or (c.cast is not None and c.cast not in CASTS):
                raise UsageError(
                    f"bad checksum plan: column {c.name!r} has family {c.family!r}, cast {c.cast!r}"
                )
        names = {c.name for c in plan.columns}
        if any(k not in names for k in plan.key):
            raise UsageError("bad checksum plan: a key column is not among the columns")
        return plan

    @property
    def relation(self) -> sql.Composable:
        return ident(self.schema, self.table)

    @property
    def name(self) -> TableName:
        return (self.schema, self.table)

    @property
    def loose(self) -> bool:
        """Some column holds values PostgreSQL calls equal whose strict hashes differ (jsonb)."""
        return has_loose_equality(self.columns)

    @property
    def key_columns(self) -> tuple[ColumnHash, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.key)

    @property
    def integer_key(self) -> bool:
        """A single integer key: chunks are key ranges that an index can scan."""
        return len(self.key) == 1 and self.key_columns[0].is_integer


def row_hash_sql(plan: ChecksumPlan, *, canonical: bool = False) -> sql.Composable:
    """The row's 64-bit hash (``hashing.hash_columns``): summed per chunk, it never cancels out.

    Strict by default (jsonb by its text); ``canonical`` for comparing the rows
    of narrowing's leaves, where jsonb values PostgreSQL calls equal hash alike.
    """
    return hash_columns(plan.columns, canonical=canonical)


def leaf_hashes_sql(plan: ChecksumPlan) -> sql.Composable:
    """The hashes a leaf's rows are compared by: the canonical one, then (loose plans) the strict."""
    if not plan.loose:
        return row_hash_sql(plan)
    return sql.SQL("{}, {}").format(row_hash_sql(plan, canonical=True), row_hash_sql(plan))


def key_hash_sql(plan: ChecksumPlan) -> sql.Composable:
    """What hash buckets split on: the key's hash (equal keys alike), or the row's strict hash."""
    return hash_columns(plan.key_columns, canonical=True) if plan.key else row_hash_sql(plan)


def key_int_sql(plan: ChecksumPlan) -> sql.Composable:
    return sql.SQL("{}::int8").format(plan.key_columns[0].value())


def key_output_sql(plan: ChecksumPlan) -> list[sql.Composable]:
    """The key as reported: integers as numbers, everything else in its (pinned) text form."""
    return [
        sql.SQL("{}::int8").format(c.value())
        if c.is_integer
        else sql.SQL("{}::text").format(ident(c.name))
        for c in plan.key_columns
    ]


@dataclass(frozen=True)
class Buckets:
    """How to split a table into chunks, and which part of it to look at.

    ``range``: bucket = ``width_bucket(key, bounds)``, restricted to ``lo <= key < hi``.
    ``hash``: bucket = ``key_hash & (2^bits - 1)``, restricted to rows whose
    ``key_hash & (2^restrict_bits - 1)`` is in ``restrict``.
    """

    kind: Literal["range", "hash"]
    bounds: tuple[int, ...] = ()
    lo: int | None = None
    hi: int | None = None
    bits: int = 0
    restrict_bits: int = 0
    restrict: tuple[int, ...] = ()

    def range_of(self, bucket: int) -> tuple[int | None, int | None]:
        """``[lo, hi)`` of a range bucket: the ends of the split, or the bounds around it."""
        lo = self.lo if bucket == 0 else self.bounds[bucket - 1]
        hi = self.hi if bucket == len(self.bounds) else self.bounds[bucket]
        return lo, hi

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bounds": list(self.bounds),
            "lo": self.lo,
            "hi": self.hi,
            "bits": self.bits,
            "restrict_bits": self.restrict_bits,
            "restrict": list(self.restrict),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Buckets:
        kind = data.get("kind")
        if kind not in ("range", "hash"):
            raise UsageError(f"bad buckets: kind must be 'range' or 'hash', not {kind!r}")
        try:
            lo, hi = data.get("lo"), data.get("hi")
            buckets = cls(
                kind,
                tuple(int(b) for b in data.get("bounds", ())),
                int(lo) if lo is not None else None,
                int(hi) if hi is not None else None,
                int(data.get("bits", 0)),
                int(data.get("restrict_bits", 0)),
                tuple(int(v) for v in data.get("restrict", ())),
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad buckets: {exc}") from None
        if not 0 <= buckets.bits <= 62 or not 0 <= buckets.restrict_bits <= buckets.bits:
            raise UsageError("bad buckets: bits must be within 0..62 and restrict_bits <= bits")
        return buckets


def mask(bits: int) -> int:
    return (1 << bits) - 1


def bucket_filter(plan: ChecksumPlan, buckets: Buckets) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause (possibly ``TRUE``) and its parameters."""
    conds: list[sql.Composable] = []
    params: list[Any] = []
    if buckets.kind == "range":
        key = ident(plan.key[0])  # the bare column, so that its index serves the range
        if buckets.lo is not None:
            conds.append(sql.SQL("{} >= %s::int8").format(key))
            params.append(buckets.lo)
        if buckets.hi is not None:
            conds.append(sql.SQL("{} < %s::int8").format(key))
            params.append(buckets.hi)
    elif buckets.restrict_bits:
        conds.append(sql.SQL("({} & %s) = ANY(%s::int8[])").format(key_hash_sql(plan)))
        params += [mask(buckets.restrict_bits), list(buckets.restrict)]
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    return where, params


def aligned_shift(bounds: tuple[int, ...]) -> int | None:
    """``s`` when the bounds are consecutive multiples of ``2^s``, else None."""
    if len(bounds) < 2:
        return None
    step = bounds[1] - bounds[0]
    if step <= 0 or step & (step - 1) or bounds[0] % step:
        return None
    if bounds != tuple(range(bounds[0], bounds[0] + step * len(bounds), step)):
        return None
    return step.bit_length() - 1


def bucket_sql(plan: ChecksumPlan, buckets: Buckets) -> tuple[sql.Composable, list[Any], int]:
    """The bucket expression, its parameters, and what to subtract from its value.

    The result is ``width_bucket(key, bounds)`` (0 below the first bound, one
    more per bound reached). Over aligned bounds ``(f + i) << s`` the same
    number is ``least(greatest(key >> s, f - 1), f + n - 1) - (f - 1)``.
    """
    if buckets.kind == "range":
        bounds = buckets.bounds
        if not bounds:
            return sql.SQL("0"), [], 0
        shift = aligned_shift(bounds)
        if shift is None or (bounds[0] >> shift) - 1 < INT8_MIN:
            return (
                sql.SQL("width_bucket({}, %s::int8[])").format(key_int_sql(plan)),
                [list(bounds)],
                0,
            )
        below, top = (bounds[0] >> shift) - 1, bounds[-1] >> shift
        return (
            sql.SQL("least(greatest({} >> %s::int4, %s::int8), %s::int8)").format(
                key_int_sql(plan)
            ),
            [shift, below, top],
            below,
        )
    return sql.SQL("({} & %s)").format(key_hash_sql(plan)), [mask(buckets.bits)], 0


@dataclass(frozen=True, slots=True)  # one per chunk and side: up to ~93,000 of each
class BucketSum:
    bucket: int
    rows: int
    checksum: int


def table_digest(sums: Mapping[int, BucketSum]) -> str:
    """A whole table's ``rows:sum``, the sum of its row hashes modulo 2**64 in hex.

    It does not depend on how the rows were bucketed: equal tables (the same
    plan on both sides) have equal digests, and the report shows the two.
    """
    rows = sum(s.rows for s in sums.values())
    total = sum(s.checksum for s in sums.values())
    return f"{rows}:{total % 2**64:016x}"


def _checksum_query(plan: ChecksumPlan, buckets: Buckets) -> tuple[sql.Composable, list[Any], int]:
    """The per-bucket ``count(*), sum(row_hash)`` query, its parameters, and the bucket offset."""
    bucket, bucket_params, offset = bucket_sql(plan, buckets)
    where, where_params = bucket_filter(plan, buckets)
    query = sql.SQL("SELECT {} AS bucket, count(*), sum({}) FROM {} WHERE {} GROUP BY 1").format(
        bucket, row_hash_sql(plan), plan.relation, where
    )
    return query, [*bucket_params, *where_params], offset


def bucket_checksums(run: Runner, plan: ChecksumPlan, buckets: Buckets) -> dict[int, BucketSum]:
    """``count(*)`` and ``sum(row_hash)`` per bucket, in one scan; empty buckets are absent."""
    return batch_checksums(run, plan, [buckets])[0]


def batch_checksums(
    run: Runner, plan: ChecksumPlan, specs: Sequence[Buckets]
) -> list[dict[int, BucketSum]]:
    """:func:`bucket_checksums` for each of ``specs``, in one statement (one round trip)."""
    built = [_checksum_query(plan, spec) for spec in specs]
    parts: Iterable[tuple[Any, ...]]
    if len(built) == 1:
        query, params, _ = built[0]
        parts = ((0, *row) for row in run(query, params))  # no copy of a first pass's rows
    else:
        query, params = union_all([(q, p) for q, p, _ in built])
        parts = run(query, params)
    found: list[dict[int, BucketSum]] = [{} for _ in specs]
    for part, b, n, s in parts:
        bucket = int(b) - built[part][2]
        found[part][bucket] = BucketSum(bucket, int(n), int(s))
    return found


def union_all(
    queries: Sequence[tuple[sql.Composable, list[Any]]],
) -> tuple[sql.Composable, list[Any]]:
    """One statement for several queries: their rows, each led by its query's index (``part``)."""
    parts = [
        sql.SQL("SELECT {} AS part, q.* FROM ({}) q").format(sql.Literal(i), query)
        for i, (query, _) in enumerate(queries)
    ]
    return sql.SQL(" UNION ALL ").join(parts), [p for _, params in queries for p in params]


def chunk_bounds(
    run: Runner, plan: ChecksumPlan, buckets: int, percent: float, rows: float
) -> tuple[int, ...]:
    """First-pass bounds for about ``buckets`` chunks of a table holding about ``rows`` rows.

    Dense keys: aligned bounds from the key's two ends (two index probes).
    Otherwise, or without an estimate: the quantiles of a ``percent`` block sample.
    """
    if buckets <= 1:
        return ()
    if rows > 0:
        key = ident(plan.key[0])  # the bare column, so that its index gives both ends
        query = sql.SQL("SELECT min({k})::int8, max({k})::int8 FROM {t}").format(
            k=key, t=plan.relation
        )
        low, high = run(query, [])[0]
        if low is None:
            return ()
        if high - low + 1 <= DENSE_KEYS * rows:
            return aligned_bounds(int(low), int(high), buckets)
    return sample_bounds(run, plan, buckets, percent)


def aligned_bounds(low: int, high: int, buckets: int) -> tuple[int, ...]:
    """Multiples of the power of two nearest ``(high - low + 1) / buckets`` between the two keys."""
    shift = max(0, round(math.log2((high - low + 1) / buckets)))
    return tuple(b << shift for b in range((low >> shift) + 1, (high >> shift) + 1))


def sample_bounds(run: Runner, plan: ChecksumPlan, buckets: int, percent: float) -> tuple[int, ...]:
    """Bucket boundaries at the key quantiles of a block sample: even chunks however sparse the keys."""
    if buckets <= 1:
        return ()
    fractions = [i / buckets for i in range(1, buckets)]
    sample = sql.SQL("TABLESAMPLE SYSTEM (%s) REPEATABLE (7)") if percent < 100 else sql.SQL("")
    query = sql.SQL(
        "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {k}) FROM {t} {s}"
    ).format(k=key_int_sql(plan), t=plan.relation, s=sample)
    params: list[Any] = [fractions] + ([percent] if percent < 100 else [])
    rows = run(query, params)
    values = rows[0][0] if rows and rows[0][0] else []
    return tuple(sorted({int(v) for v in values if v is not None}))
