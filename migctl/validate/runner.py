"""The one validation loop, whatever runs the queries: catalogs, selection, tables, sequences, report.

An :class:`Executor` runs the queries: ``local.LocalExecutor`` from where migctl
runs, ``lambda_table.LambdaExecutor`` as invocations of the validation function.
:func:`run` is the same for both, so they give the same report by construction:
read both catalogs, pick the hash algorithm both servers can run, select the
tables (a selection of nothing is a UsageError, exit 2, before any data is
read), compare them ``executor.table_workers`` at a time, compare the
sequences, and build the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from migctl.config import ValidateSettings
from migctl.errors import UsageError
from migctl.pgnames import TableName
from migctl.validate.catalog import Catalog, TableInfo, select_tables
from migctl.validate.hashing import choose_algorithm
from migctl.validate.report import SequenceResult, TableResult, ValidationReport
from migctl.validate.session import SessionOptions
from migctl.validate.table import CHUNK_ROWS

log = logging.getLogger(__name__)


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

    @classmethod
    def from_settings(cls, conf: ValidateSettings) -> ValidateOptions:
        """``[validate]`` (with the flags over it: ``config.overridden``) as a run's options."""
        return cls(
            schemas=conf.schemas,
            tables=conf.tables,
            exclude=conf.exclude,
            jobs=conf.jobs,
            max_keys=conf.max_keys,
            chunk_rows=conf.chunk_rows,
            session=SessionOptions(
                statement_timeout_seconds=conf.statement_timeout_seconds,
                lock_timeout_seconds=conf.lock_timeout_seconds,
                parallel_workers=conf.parallel_workers,
            ),
        )


def check_options(options: ValidateOptions) -> None:
    """UsageError (exit 2) for options no run could use."""
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


def select(options: ValidateOptions, source: Catalog, target: Catalog) -> list[TableName]:
    """The tables these options select on these catalogs (UsageError when nothing)."""
    return select_tables(source, target, options.schemas, options.tables, options.exclude)


class Executor(Protocol):
    """What runs a validation's queries (and, for progress, reports each table's steps)."""

    source_display: str  # the source as it may be shown (no password)
    target_display: str

    def catalogs(self) -> tuple[Catalog, Catalog]: ...

    def table_workers(self, tables: int) -> int:
        """How many tables to compare at once."""
        ...

    def compare(
        self, name: TableName, source: TableInfo | None, target: TableInfo | None, algorithm: str
    ) -> TableResult:
        """One table's verdict; never raises for a difference or a failure (status ``error``)."""
        ...

    def sequences(
        self, names: Sequence[TableName], source: Catalog, target: Catalog
    ) -> tuple[SequenceResult, ...]: ...


def run(
    executor: Executor,
    options: ValidateOptions,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ValidationReport:
    """Compare every selected table and sequence; never raises for a data difference."""
    check_options(options)
    started = clock()
    source_catalog, target_catalog = executor.catalogs()
    algorithm = choose_algorithm(source_catalog.server_version, target_catalog.server_version)
    names = select(options, source_catalog, target_catalog)

    def compare(name: TableName) -> TableResult:
        result = executor.compare(
            name, source_catalog.tables.get(name), target_catalog.tables.get(name), algorithm
        )
        log.info(
            "compared %s: %s, %s source / %s target rows, %d queries, %.2fs%s",
            result.table,
            result.status,
            result.source_rows,
            result.target_rows,
            result.queries,
            result.duration_seconds,
            f" ({result.error})" if result.error else "",
        )
        return result

    with ThreadPoolExecutor(executor.table_workers(len(names)), "validate-table") as pool:
        tables = tuple(pool.map(compare, names))
    sequences: tuple[SequenceResult, ...] = ()
    if options.sequences:
        sequences = executor.sequences(names, source_catalog, target_catalog)
    return ValidationReport(
        source=executor.source_display,
        target=executor.target_display,
        duration_seconds=round(clock() - started, 3),
        tables=tables,
        sequences=sequences,
        algorithm=algorithm,
        source_version=source_catalog.server_version,
        target_version=target_catalog.server_version,
    )
