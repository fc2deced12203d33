"""The local executor: the queries run from where migctl runs, on one connection per side and thread.

Tables run ``jobs`` at a time; each worker thread holds one read-only
connection per side (the first reuses the catalog's), and each table's queries
run on both servers at once, so at most ``jobs`` queries run per side.
Connection failures at the start raise ``DatabaseError`` (exit 3). The loop
around it is ``runner.run``, shared with the Lambda executor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

from migctl.db import Database
from migctl.pgnames import TableName
from migctl.validate.catalog import Catalog, TableInfo, read_catalog
from migctl.validate.checksum import ChecksumPlan
from migctl.validate.keyed import TextKey, compare_keys
from migctl.validate.narrow import Tally
from migctl.validate.report import Progress, SequenceResult, TableResult, ValidationReport
from migctl.validate.runner import ValidateOptions, check_options, run, select
from migctl.validate.sequences import compare_sequences, select_sequences
from migctl.validate.session import Pair, Side, on_both_sides
from migctl.validate.table import TableOptions, compare_table

T = TypeVar("T")
U = TypeVar("U")


class LocalExecutor:
    """Runs a validation's queries from here; a context manager that closes every connection."""

    def __init__(
        self,
        source: Database,
        target: Database,
        options: ValidateOptions,
        *,
        progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source_display, self.target_display = source.display, target.display
        self._dsns = (source.dsn, target.dsn)
        self._options = options
        self._table_options = TableOptions(chunk_rows=options.chunk_rows, max_keys=options.max_keys)
        self._progress = progress or (lambda _: None)
        self._clock = clock
        self._main = self._pair()
        self._spare = [self._main]  # the first table thread reuses the catalog's connections
        self._workers: list[Pair] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sides = ThreadPoolExecutor(options.jobs, "validate-side")

    def _pair(self) -> Pair:
        session = self._options.session
        return Pair(Side(self._dsns[0], "source", session), Side(self._dsns[1], "target", session))

    def both(self, on_source: Callable[[], T], on_target: Callable[[], U]) -> tuple[T, U]:
        return on_both_sides(self._sides, on_source, on_target)

    def catalogs(self) -> tuple[Catalog, Catalog]:
        schemas = self._options.schemas
        return self.both(
            lambda: read_catalog(self._main.source.conn, schemas),
            lambda: read_catalog(self._main.target.conn, schemas),
        )

    def table_workers(self, tables: int) -> int:
        return self._options.jobs

    def compare(
        self, name: TableName, source: TableInfo | None, target: TableInfo | None, algorithm: str
    ) -> TableResult:
        return compare_table(
            self._thread_pair(),
            name,
            source,
            target,
            algorithm,
            self._table_options,
            self.both,
            self._progress,
            self._clock,
        )

    def compare_keys(
        self,
        plan: ChecksumPlan,
        source: TableInfo,
        target: TableInfo,
        keys: Collection[TextKey],
        tally: Tally,
    ) -> None:
        """Compare the rows of these keys (``keyed.compare_keys``), both servers at once."""
        pair = self._thread_pair()
        pair.source.new_snapshot()
        pair.target.new_snapshot()
        try:
            compare_keys(pair, plan, source, target, keys, self.both, tally)
        finally:
            pair.source.new_snapshot()
            pair.target.new_snapshot()

    def _thread_pair(self) -> Pair:
        pair: Pair | None = getattr(self._local, "pair", None)
        if pair is None:
            with self._lock:
                pair = self._spare.pop() if self._spare else None
            if pair is None:
                pair = self._pair()
                with self._lock:
                    self._workers.append(pair)
            self._local.pair = pair
        return pair

    def sequences(
        self, names: Sequence[TableName], source: Catalog, target: Catalog
    ) -> tuple[SequenceResult, ...]:
        options = self._options
        chosen = select_sequences(source, names, options.tables, options.exclude)
        return compare_sequences(self._main.source, self._main.target, source, target, chosen)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sides.shutdown(wait=True)
        self._main.close()
        for pair in self._workers:
            pair.close()


def validate(
    source: Database,
    target: Database,
    options: ValidateOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ValidationReport:
    """Compare every selected table and sequence from here; never raises for a data difference."""
    options = options or ValidateOptions()
    check_options(options)
    with LocalExecutor(source, target, options, progress=progress, clock=clock) as executor:
        return run(executor, options, clock=clock)


def selected_tables(
    source: Database, target: Database, options: ValidateOptions
) -> list[TableName]:
    """What ``validate`` would compare, read-only, without reading data: a check to run early.

    Raises UsageError (exit 2) when the selection selects nothing, DatabaseError
    when a side is unreachable.
    """
    check_options(options)
    with LocalExecutor(source, target, options) as executor:
        return select(options, *executor.catalogs())
