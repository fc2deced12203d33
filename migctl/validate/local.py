"""``validate()``: every selected table and sequence, source against target, into one report.

Tables run ``jobs`` at a time; each worker thread holds one read-only
connection per side, and each table's queries run on both servers at once,
so at most ``jobs`` queries run per side. Connection failures at the start
raise ``DatabaseError`` (exit 3); an unknown explicit table raises
``UsageError`` (exit 2) before any data is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from migctl.db import Database
from migctl.errors import UsageError
from migctl.pgnames import TableName
from migctl.validate.catalog import Catalog, read_catalog, select_tables
from migctl.validate.hashing import choose_algorithm
from migctl.validate.report import Progress, SequenceResult, TableResult, ValidationReport
from migctl.validate.sequences import compare_sequences, select_sequences
from migctl.validate.session import Pair, SessionOptions, Side, on_both_sides
from migctl.validate.table import CHUNK_ROWS, TableOptions, compare_table

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class ValidateOptions:
    schemas: tuple[str, ...] = ("public",)
    tables: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    jobs: int = 2
    max_keys: int = 100
    chunk_rows: int = CHUNK_ROWS
    session: SessionOptions = field(default_factory=SessionOptions)
    sequences: bool = True


def validate(
    source: Database,
    target: Database,
    options: ValidateOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ValidationReport:
    """Compare every selected table and sequence; never raises for a data difference."""
    options = options or ValidateOptions()
    _check(options)
    started = clock()
    report_progress = progress or (lambda _: None)
    main = Pair(
        Side(source.dsn, "source", options.session), Side(target.dsn, "target", options.session)
    )
    workers: list[Pair] = []
    spare = [main]  # the first worker thread reuses the catalog's connections
    workers_lock = threading.Lock()
    try:
        with (
            ThreadPoolExecutor(options.jobs, "validate") as tables_pool,
            ThreadPoolExecutor(options.jobs, "validate-side") as side_pool,
        ):

            def both(on_source: Callable[[], T], on_target: Callable[[], U]) -> tuple[T, U]:
                return on_both_sides(side_pool, on_source, on_target)

            source_catalog, target_catalog = both(
                lambda: read_catalog(main.source.conn, options.schemas),
                lambda: read_catalog(main.target.conn, options.schemas),
            )
            algorithm = choose_algorithm(
                source_catalog.server_version, target_catalog.server_version
            )
            names = select(options, source_catalog, target_catalog)
            table_options = TableOptions(chunk_rows=options.chunk_rows, max_keys=options.max_keys)
            local = threading.local()

            def run(name: TableName) -> TableResult:
                pair: Pair | None = getattr(local, "pair", None)
                if pair is None:
                    with workers_lock:
                        pair = spare.pop() if spare else None
                    if pair is None:
                        pair = Pair(
                            Side(source.dsn, "source", options.session),
                            Side(target.dsn, "target", options.session),
                        )
                        with workers_lock:
                            workers.append(pair)
                    local.pair = pair
                return compare_table(
                    pair,
                    name,
                    source_catalog.tables.get(name),
                    target_catalog.tables.get(name),
                    algorithm,
                    table_options,
                    both,
                    report_progress,
                    clock,
                )

            tables = tuple(tables_pool.map(run, names))
        sequences: tuple[SequenceResult, ...] = ()
        if options.sequences:
            chosen = select_sequences(source_catalog, names, options.tables, options.exclude)
            sequences = compare_sequences(
                main.source, main.target, source_catalog, target_catalog, chosen
            )
        return ValidationReport(
            source=source.display,
            target=target.display,
            duration_seconds=round(clock() - started, 3),
            tables=tables,
            sequences=sequences,
            algorithm=algorithm,
            source_version=source_catalog.server_version,
            target_version=target_catalog.server_version,
        )
    finally:
        main.close()
        for pair in workers:
            pair.close()


def select(options: ValidateOptions, source: Catalog, target: Catalog) -> list[TableName]:
    """The tables these options select on these catalogs (UsageError when nothing)."""
    return select_tables(source, target, options.schemas, options.tables, options.exclude)


def selected_tables(
    source: Database, target: Database, options: ValidateOptions
) -> list[TableName]:
    """What ``validate`` would compare, read-only, without reading data: a check to run early.

    Raises UsageError (exit 2) when the selection selects nothing, DatabaseError
    when a side is unreachable.
    """
    _check(options)
    pair = Pair(
        Side(source.dsn, "source", options.session), Side(target.dsn, "target", options.session)
    )
    try:
        return select(
            options,
            read_catalog(pair.source.conn, options.schemas),
            read_catalog(pair.target.conn, options.schemas),
        )
    finally:
        pair.close()


def _check(options: ValidateOptions) -> None:
    if options.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if options.max_keys < 0:
        raise UsageError("--max-keys must be 0 or more")
    if options.session.parallel_workers < 0:
        raise UsageError("--parallel-workers must be 0 or more")
    if options.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1")
    if not options.schemas:
        raise UsageError("no schema to validate", hint="use --schema or [validate] schemas")
