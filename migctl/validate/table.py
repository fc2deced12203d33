"""Compare one table: presence, schema, one checksum pass per side, then narrowing.

One read-only snapshot per table per side. The first pass computes every
chunk's ``(count, checksum)`` in ONE scan per side, both servers at once;
equal tables end there. Differing chunks are narrowed to exact keys up to
``BATCH_RANGES`` at a time, sharing each narrowing statement; a batch whose
connection drops is redone from its start on a fresh snapshot. A table whose
comparison cannot complete is ``error``, never ``match``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from psycopg import sql

from migctl.pgnames import TableName, ident, show
from migctl.redact import redact_text
from migctl.validate.catalog import TableInfo
from migctl.validate.checksum import (
    Buckets,
    BucketSum,
    bucket_checksums,
    chunk_bounds,
    table_digest,
)
from migctl.validate.comparison import TablePlan, plan_table
from migctl.validate.narrow import (
    Both,
    Range,
    Tally,
    batched,
    differing,
    resolve_hash,
    resolve_ranges,
)
from migctl.validate.report import Key, Progress, TableResult
from migctl.validate.session import Pair, Side, planner_hints, retry_unit

MAX_RANGE_BUCKETS = 65_536
MAX_HASH_BITS = 16
SAMPLE_ROWS_PER_BUCKET = 64  # block sampling: enough blocks for roughly even quantiles
BIG_TABLE_ROWS = 50_000  # below this, planner hints and parallel workers cost more than they save
# Rows per first-pass chunk. Each differing chunk is read again on both sides to narrow it, so
# smaller chunks make many differences cheaper; with few, 512 to 2,000 cost the same (the
# figures: docs/performance.md). config.py repeats it (importing this module would put
# psycopg in every command's start-up).
CHUNK_ROWS = 512


class InconsistentResult(RuntimeError):
    """A chunk's checksums differed but no differing row was found on the same snapshots."""


@dataclass(frozen=True)
class TableOptions:
    chunk_rows: int = CHUNK_ROWS
    max_keys: int = 100
    # A differing range this small is streamed at once; a bigger one is split first. Streaming
    # a whole first-pass chunk costs more than splitting it: every row crosses the wire and
    # the merge (2.5 times the narrowing time with 555 differences in 2M rows).
    leaf_rows: int = 64

    @property
    def stream_rows(self) -> int:
        """Hash buckets are refined (one more scan) only while they hold more rows than this."""
        return 16 * self.chunk_rows


ProgressFn = Callable[[Progress], None]


def compare_table(
    pair: Pair,
    name: TableName,
    source: TableInfo | None,
    target: TableInfo | None,
    algorithm: str,
    options: TableOptions,
    both: Both[Any, Any],
    progress: ProgressFn,
    clock: Callable[[], float],
) -> TableResult:
    start = clock()
    progress(Progress(show(name), "start"))
    queries_before, retries_before = pair.queries, pair.retries
    try:
        pair.source.new_snapshot()
        pair.target.new_snapshot()
        if source is None or target is None:
            result = _missing(pair, name, source, target)
        else:
            result = _compare(
                pair, name, source, target, algorithm, options, both, progress, clock, start
            )
    except Exception as exc:  # never a match when the comparison could not complete
        result = TableResult(
            name=name, status="error", error=redact_text(f"{type(exc).__name__}: {exc}".strip())
        )
    finally:
        pair.source.new_snapshot()
        pair.target.new_snapshot()
    result = _with_stats(
        result, pair.queries - queries_before, pair.retries - retries_before, clock() - start
    )
    progress(Progress.done(result, clock() - start))
    return result


def _with_stats(result: TableResult, queries: int, retries: int, seconds: float) -> TableResult:

    return replace(result, queries=queries, retries=retries, duration_seconds=round(seconds, 3))


def _count(side: Side, table: TableInfo) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(ident(table.schema, table.name))
    return int(retry_unit(lambda: side.execute(query)[0][0], side))


def _missing(
    pair: Pair, name: TableName, source: TableInfo | None, target: TableInfo | None
) -> TableResult:
    if source is not None:
        return TableResult(
            name=name, status="missing_in_target", source_rows=_count(pair.source, source)
        )
    assert target is not None
    return TableResult(
        name=name, status="missing_in_source", target_rows=_count(pair.target, target)
    )


_SIZE_GUESS_SQL = """
SELECT pg_relation_size(c.oid) / current_setting('block_size')::int * 60
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""


def estimate_rows(side: Side, table: TableInfo) -> float:
    """reltuples, or a guess from the size for a table never vacuumed nor analyzed (inside its snapshot)."""
    if table.estimated_rows >= 0:
        return table.estimated_rows
    rows = retry_unit(lambda: side.execute(_SIZE_GUESS_SQL, [table.schema, table.name]), side)
    return float(rows[0][0]) if rows else 0.0


def range_buckets(estimated_rows: float, chunk_rows: int) -> tuple[int, float]:
    """How many first-pass chunks, and what percentage of blocks to sample for their bounds."""
    buckets = min(MAX_RANGE_BUCKETS, max(1, math.ceil(estimated_rows / max(1, chunk_rows))))
    percent = min(100.0, 100.0 * SAMPLE_ROWS_PER_BUCKET * buckets / max(estimated_rows, 1.0))
    return buckets, percent


def hash_bits(estimated_rows: float, chunk_rows: int) -> int:
    wanted = max(1.0, estimated_rows / max(1, chunk_rows))
    return min(MAX_HASH_BITS, math.ceil(math.log2(wanted)))


def _compare(
    pair: Pair,
    name: TableName,
    source: TableInfo,
    target: TableInfo,
    algorithm: str,
    options: TableOptions,
    both: Both[Any, Any],
    progress: ProgressFn,
    clock: Callable[[], float],
    start: float,
) -> TableResult:
    table_plan = plan_table(source, target, algorithm)
    plan, method = table_plan.plan, table_plan.method
    estimate = max(estimate_rows(pair.source, source), estimate_rows(pair.target, target))
    if method == "range":
        count, percent = range_buckets(estimate, options.chunk_rows)
        bounds = retry_unit(
            lambda: chunk_bounds(pair.source.execute, plan, count, percent, estimate), pair.source
        )
        spec = Buckets("range", bounds=bounds)
    else:
        spec = Buckets("hash", bits=hash_bits(estimate, options.chunk_rows))
    big = estimate >= BIG_TABLE_ROWS

    def first_pass(side: Side) -> dict[int, BucketSum]:
        def unit() -> dict[int, BucketSum]:
            with planner_hints(side, big=big):
                return bucket_checksums(side.execute, plan, spec)

        return retry_unit(unit, side, on_retry=pair.note_retry)

    source_sums, target_sums = both(
        lambda: first_pass(pair.source), lambda: first_pass(pair.target)
    )
    pass_generations = (pair.source.generation, pair.target.generation)
    diff = differing(source_sums, target_sums)
    source_rows = sum(s.rows for s in source_sums.values())
    target_rows = sum(s.rows for s in target_sums.values())
    chunks = len(set(source_sums) | set(target_sums))
    progress(
        Progress(
            show(name), "scanned", source_rows, target_rows, chunks, len(diff), 0, clock() - start
        )
    )

    tally = Tally(options.max_keys)

    def run_unit(count: int, resolve: Callable[[list[Tally]], None]) -> None:
        """Narrow ``count`` differing chunks as one unit, redone whole if a connection drops."""

        def unit() -> list[Tally]:
            generations = (pair.source.generation, pair.target.generation)
            found = [Tally(options.max_keys) for _ in range(count)]
            resolve(found)
            if generations == pass_generations and not all(t.explained for t in found):
                raise InconsistentResult("chunk checksums differ but no differing row was found")
            return found

        for found in retry_unit(unit, pair.source, pair.target, on_retry=pair.note_retry):
            tally.absorb(found)

    if method == "range":
        ranges = [(spec.range_of(bucket), counts) for bucket, counts in diff.items()]

        def narrow(batch: Sequence[tuple[Range, tuple[int, int]]], found: list[Tally]) -> None:
            work = [(rng, counts, t) for (rng, counts), t in zip(batch, found, strict=True)]
            resolve_ranges(pair, plan, work, both, options.leaf_rows)

        done = 0
        for batch in batched(ranges):
            run_unit(len(batch), partial(narrow, batch))
            done += len(batch)
            progress(
                Progress(
                    show(name), "narrowing", source_rows, target_rows, chunks, len(diff), done,
                    clock() - start,
                )
            )  # fmt: skip
    elif diff:
        run_unit(
            1,
            lambda found: resolve_hash(
                pair, plan, diff, spec.bits, found[0], both, options.stream_rows
            ),
        )

    return table_result(
        name, table_plan, tally,
        source_rows=source_rows, target_rows=target_rows, chunks=chunks, differing_chunks=len(diff),
        sums=(source_sums, target_sums),
    )  # fmt: skip


def table_result(
    name: TableName,
    table_plan: TablePlan,
    tally: Tally,
    *,
    source_rows: int | None,
    target_rows: int | None,
    chunks: int = 0,
    differing_chunks: int = 0,
    sums: tuple[Mapping[int, BucketSum], Mapping[int, BucketSum]] | None = None,
) -> TableResult:
    """The verdict on one table, from its plan and the differences found (local, fanned out,
    or a round of incremental validation, which counts no rows: None). ``sums``: each side's
    chunk checksums, where the whole table was hashed (its digests)."""
    same = tally.total == 0 and source_rows == target_rows
    return TableResult(
        name=name,
        status="match" if same and not table_plan.schema_differences else "mismatch",
        source_rows=source_rows,
        target_rows=target_rows,
        missing_in_target_count=tally.missing_in_target_count,
        missing_in_source_count=tally.missing_in_source_count,
        changed_count=tally.changed_count,
        missing_in_target=_sorted(tally.missing_in_target),
        missing_in_source=_sorted(tally.missing_in_source),
        changed=_sorted(tally.changed),
        equal_by_value_count=tally.equal_by_value_count,
        schema_differences=table_plan.schema_differences,
        method=table_plan.method,
        key_columns=table_plan.plan.key,
        chunks=chunks,
        differing_chunks=differing_chunks,
        source_digest=table_digest(sums[0]) if sums is not None else None,
        target_digest=table_digest(sums[1]) if sums is not None else None,
    )


def _sorted(keys: list[Key]) -> tuple[Key, ...]:
    return tuple(
        sorted(
            keys,
            key=lambda k: tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in k),
        )
    )
