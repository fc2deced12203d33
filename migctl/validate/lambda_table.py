"""One table compared through invocations: the same plan, chunks and narrowing as ``table.py``.

The first pass is split into spans of consecutive chunks, one ``checksum``
invocation per span and side, all in flight at once (up to the fan-out's
concurrency). Bucket numbers are global, so the chunks and differing chunks
are the ones a local run finds. Differing range chunks are narrowed by
``narrow`` invocations (both sides, one snapshot each): one chunk each while
they fit the concurrency, else groups of consecutive chunks narrowed together;
hash buckets by one for the table, as locally, so the same first ``max_keys``
keys are kept. Any invocation that still fails after its retries makes the
table ``error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from migctl.db import Database
from migctl.errors import OperationalError
from migctl.pgnames import TableName, show
from migctl.redact import redact_text
from migctl.validate.catalog import Catalog, TableInfo
from migctl.validate.checksum import Buckets, BucketSum
from migctl.validate.comparison import plan_table
from migctl.validate.lambda_invoke import CallStats, ChunkFailed, Fanout
from migctl.validate.narrow import BATCH_RANGES, Tally, batched, differing
from migctl.validate.payloads import (
    PAYLOAD_VERSION,
    catalog_from_dict,
    sequence_from_dict,
    tally_from_dict,
)
from migctl.validate.report import Progress, SequenceResult, TableResult
from migctl.validate.runner import ValidateOptions
from migctl.validate.table import TableOptions, hash_bits, range_buckets, table_result

ROWS_PER_INVOCATION = 32_000  # first-pass rows per checksum invocation (62 chunks of 512)


@dataclass(frozen=True)
class RemoteSide:
    """How the function reaches one side: a DSN (lambda-local), a secret ARN, or its own environment."""

    label: str
    dsn: str | None = None
    secret_arn: str | None = None

    @property
    def display(self) -> str:
        if self.dsn:
            return Database(self.dsn, self.label).display
        if self.secret_arn:
            return f"secret {self.secret_arn}"
        return f"function environment ({self.label.upper()}_SECRET_ARN)"

    def fields(self) -> dict[str, str]:
        if self.dsn:
            return {f"{self.label}_dsn": self.dsn}
        if self.secret_arn:
            return {f"{self.label}_secret_arn": self.secret_arn}
        return {}


@dataclass(frozen=True)
class FanoutOptions:
    concurrency: int = 50
    attempts: int = 3  # tries per invocation before its table is reported failed
    # Per invocation. The handler cuts it to the function's remaining time less a
    # margin (the function's timeout is 900 s; the lambda client reads for 900 s).
    deadline_seconds: float = 600.0
    chunks_per_invocation: int | None = None  # default: ROWS_PER_INVOCATION rows' worth

    def span_chunks(self, chunk_rows: int) -> int:
        """First-pass chunks per ``checksum`` invocation."""
        return self.chunks_per_invocation or max(1, ROWS_PER_INVOCATION // max(1, chunk_rows))


@dataclass(frozen=True)
class RemoteRun:
    """What every table's comparison shares: the fan-out, both sides, the options."""

    fanout: Fanout
    source: RemoteSide
    target: RemoteSide
    options: ValidateOptions
    fanout_options: FanoutOptions
    progress: Callable[[Progress], None]
    clock: Callable[[], float]

    def payload(self, action: str, side: str | None = None, **fields: Any) -> dict[str, Any]:
        """A version-1 request; one side's credentials, or both for two-sided actions."""
        sides = [self.source, self.target] if side is None else [self._side(side)]
        base: dict[str, Any] = {
            "version": PAYLOAD_VERSION,
            "action": action,
            "deadline_seconds": self.fanout_options.deadline_seconds,
        }
        if side is not None:
            base["side"] = side
        for s in sides:
            base.update(s.fields())
        return {**base, **fields}

    def _side(self, side: str) -> RemoteSide:
        return self.source if side == "source" else self.target

    def call(self, payload: dict[str, Any], stats: CallStats | None = None) -> dict[str, Any]:
        return self.fanout.call(payload, stats or CallStats())


T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    """Global buckets ``first..first + n`` as one invocation's ``Buckets``."""

    first: int
    buckets: Buckets


def range_spans(bounds: tuple[int, ...], per_invocation: int) -> list[Span]:
    """Consecutive range chunks, ``per_invocation`` at a time, with their outer limits."""
    total = len(bounds) + 1
    spans = []
    for first in range(0, total, max(1, per_invocation)):
        last = min(first + per_invocation, total) - 1
        lo = None if first == 0 else bounds[first - 1]
        hi = None if last == total - 1 else bounds[last]
        spans.append(Span(first, Buckets("range", bounds=bounds[first:last], lo=lo, hi=hi)))
    return spans


def narrow_groups(chunks: Sequence[T], concurrency: int) -> list[Sequence[T]]:
    """Consecutive differing chunks per ``narrow`` invocation: one each while they fit the
    concurrency, else as many as spread them over it (up to ``BATCH_RANGES``, which the
    function narrows together), so every invocation's connections do more than one chunk."""
    return batched(chunks, max(1, min(BATCH_RANGES, -(-len(chunks) // max(1, concurrency)))))


class LambdaExecutor:
    """Runs a validation's queries as invocations of the validation function (``runner.run``'s executor)."""

    def __init__(self, run: RemoteRun) -> None:
        self.run = run
        self.source_display = run.source.display
        self.target_display = run.target.display

    def catalogs(self) -> tuple[Catalog, Catalog]:
        with ThreadPoolExecutor(2, "plan") as pool:
            source = pool.submit(self._catalog, "source")
            target = self._catalog("target")
            return source.result(), target

    def _catalog(self, side: str) -> Catalog:
        run = self.run
        try:
            answer = run.call(run.payload("plan", side, schemas=list(run.options.schemas)))
        except ChunkFailed as exc:
            raise OperationalError(f"cannot read the {side} catalog: {exc.message}") from None
        return catalog_from_dict(answer["catalog"])

    def table_workers(self, tables: int) -> int:
        return max(1, min(tables, self.run.fanout_options.concurrency, 16))

    def compare(
        self, name: TableName, source: TableInfo | None, target: TableInfo | None, algorithm: str
    ) -> TableResult:
        return compare_table_remote(self.run, name, source, target, algorithm)

    def sequences(
        self, names: Sequence[TableName], source: Catalog, target: Catalog
    ) -> tuple[SequenceResult, ...]:
        run, options = self.run, self.run.options
        request = run.payload(
            "sequences",
            schemas=list(options.schemas),
            names=[list(n) for n in names],
            tables=list(options.tables),
            exclude=list(options.exclude),
        )
        try:
            answer = run.call(request)
        except ChunkFailed as exc:
            raise OperationalError(f"cannot compare sequences: {exc.message}") from None
        return tuple(sequence_from_dict(s) for s in answer["sequences"])


def compare_table_remote(
    run: RemoteRun,
    name: TableName,
    source: TableInfo | None,
    target: TableInfo | None,
    algorithm: str,
) -> TableResult:
    start = run.clock()
    run.progress(Progress(show(name), "start"))
    stats = CallStats()
    try:
        if source is None or target is None:
            result = _missing(run, name, source, target, stats)
        else:
            result = _compare(run, name, source, target, algorithm, stats, start)
    except Exception as exc:  # never a match when the comparison could not complete
        result = TableResult(
            name=name, status="error", error=redact_text(f"{type(exc).__name__}: {exc}")
        )

    result = replace(
        result,
        queries=stats.invocations,
        retries=stats.retries,
        duration_seconds=round(run.clock() - start, 3),
    )
    run.progress(Progress.done(result, run.clock() - start))
    return result


def _missing(
    run: RemoteRun,
    name: TableName,
    source: TableInfo | None,
    target: TableInfo | None,
    stats: CallStats,
) -> TableResult:
    present, side = (source, "source") if source is not None else (target, "target")
    assert present is not None
    answer = run.call(run.payload("count", side, schema=present.schema, table=present.name), stats)
    if side == "source":
        return TableResult(name=name, status="missing_in_target", source_rows=int(answer["rows"]))
    return TableResult(name=name, status="missing_in_source", target_rows=int(answer["rows"]))


def _compare(
    run: RemoteRun,
    name: TableName,
    source: TableInfo,
    target: TableInfo,
    algorithm: str,
    stats: CallStats,
    start: float,
) -> TableResult:
    options = TableOptions(chunk_rows=run.options.chunk_rows, max_keys=run.options.max_keys)
    table_plan = plan_table(source, target, algorithm)
    plan, method = table_plan.plan, table_plan.method
    estimate = max(source.estimated_rows, target.estimated_rows)
    if method == "range":
        count, percent = range_buckets(estimate, options.chunk_rows)
        bounds: tuple[int, ...] = ()
        if count > 1:
            request = {"plan": plan.to_dict(), "count": count, "percent": percent, "rows": estimate}
            answer = run.call(run.payload("plan", "source", bounds=[request]), stats)
            bounds = tuple(int(b) for b in answer["bounds"][0])
        spans = range_spans(bounds, run.fanout_options.span_chunks(options.chunk_rows))
    else:
        bits = hash_bits(estimate, options.chunk_rows)
        spans = [Span(0, Buckets("hash", bits=bits))]

    sums: dict[str, dict[int, BucketSum]] = {"source": {}, "target": {}}
    rows = {"source": 0, "target": 0}
    futures: dict[Future[dict[str, Any]], tuple[str, Span]] = {}
    for span in spans:
        for side in ("source", "target"):
            payload = run.payload(
                "checksum", side, plan=plan.to_dict(), buckets=span.buckets.to_dict()
            )
            futures[run.fanout.submit(payload, stats)] = (side, span)
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            side, span = futures[future]
            for b in future.result()["buckets"]:
                bucket = span.first + int(b["bucket"])
                sums[side][bucket] = BucketSum(bucket, int(b["rows"]), int(b["checksum"]))
                rows[side] += int(b["rows"])
            run.progress(
                Progress(
                    show(name),
                    "checksumming",
                    rows["source"],
                    rows["target"],
                    len(futures),
                    0,
                    done,
                    run.clock() - start,
                    in_flight=run.fanout.in_flight,
                )
            )
    finally:
        for future in futures:
            future.cancel()
    diff = differing(sums["source"], sums["target"])
    source_rows, target_rows = rows["source"], rows["target"]
    chunks = len(set(sums["source"]) | set(sums["target"]))
    elapsed = run.clock() - start
    run.progress(
        Progress(show(name), "scanned", source_rows, target_rows, chunks, len(diff), 0, elapsed)
    )

    common: dict[str, Any] = {
        "plan": plan.to_dict(),
        "method": method,
        "max_keys": options.max_keys,
        "leaf_rows": options.leaf_rows,
        "stream_rows": options.stream_rows,
    }
    requests: list[dict[str, Any]] = []
    if method == "range":
        chunked = Buckets("range", bounds=bounds)
        for bucket, counts in diff.items():
            lo, hi = chunked.range_of(bucket)
            requests.append({"lo": lo, "hi": hi, "counts": list(counts)})
    elif diff:
        buckets = [[b, list(c)] for b, c in diff.items()]
        requests = [{"buckets": buckets, "bits": spans[0].buckets.bits, "counts": [0, 0]}]
    groups = narrow_groups(requests, run.fanout_options.concurrency)
    narrowing = [
        run.fanout.submit(run.payload("narrow", chunks=group, **common), stats) for group in groups
    ]
    tally = Tally(options.max_keys)
    done = 0
    try:
        for group, future in zip(groups, narrowing, strict=True):  # in chunk order: same keys kept
            tally.absorb(tally_from_dict(future.result()["tally"]))
            done += len(group)
            run.progress(
                Progress(
                    show(name),
                    "narrowing",
                    source_rows,
                    target_rows,
                    chunks,
                    len(diff),
                    done,
                    run.clock() - start,
                    in_flight=run.fanout.in_flight,
                )
            )
    finally:
        for future in narrowing:
            future.cancel()

    return table_result(
        name, table_plan, tally,
        source_rows=source_rows, target_rows=target_rows, chunks=chunks, differing_chunks=len(diff),
        sums=(sums["source"], sums["target"]),
    )  # fmt: skip
