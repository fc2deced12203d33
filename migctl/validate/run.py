"""Where the checksums run: local SQL (``engine.validate``) or invocations of the validation function.

``run_validation`` is the one entry point of ``migctl validate``. With
``local`` it is :func:`migctl.validate.local.validate`. With ``lambda`` or
``lambda-local`` the same steps run as invocations (see ``fanout_table.py``):
``plan`` on both sides for the catalogs and row estimates, ``plan`` on the
source for the key bounds of range-chunked tables, ``checksum`` per span of
chunks per side (concurrently), ``narrow`` per differing chunk or group of them, and
``sequences`` once. The report, its JSON and its exit code are the local
ones; ``queries`` and ``retries`` count invocations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from migctl.db import Database
from migctl.errors import OperationalError, UsageError
from migctl.validate.catalog import Catalog
from migctl.validate.hashing import choose_algorithm
from migctl.validate.lambda_invoke import ChunkFailed, Fanout, Invoker
from migctl.validate.lambda_table import FanoutOptions, RemoteRun, RemoteSide, compare_table_remote
from migctl.validate.local import ValidateOptions, _check, select
from migctl.validate.local import validate as validate_locally
from migctl.validate.payloads import catalog_from_dict, sequence_from_dict
from migctl.validate.report import Progress, SequenceResult, ValidationReport

ExecutorKind = Literal["local", "lambda", "lambda-local"]
EXECUTORS: tuple[ExecutorKind, ...] = ("local", "lambda", "lambda-local")


def run_validation(
    source: Database | RemoteSide,
    target: Database | RemoteSide,
    options: ValidateOptions | None = None,
    *,
    executor: ExecutorKind = "local",
    invoke: Invoker | None = None,
    fanout_options: FanoutOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ValidationReport:
    """Validate with the chosen executor; ``invoke`` is required unless it is ``local``."""
    options = options or ValidateOptions()
    if executor == "local":
        if not isinstance(source, Database) or not isinstance(target, Database):
            raise UsageError("the local executor needs both databases' DSNs")
        return validate_locally(source, target, options, progress=progress, clock=clock)
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if invoke is None:
        raise UsageError(f"the {executor} executor needs an invoker")
    fanout_options = fanout_options or FanoutOptions()
    if fanout_options.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    _check(options)
    fanout = Fanout(
        invoke, fanout_options.concurrency, attempts=fanout_options.attempts, sleep=sleep
    )
    run = RemoteRun(
        fanout,
        _remote(source, "source"),
        _remote(target, "target"),
        options,
        fanout_options,
        progress or (lambda _: None),
        clock,
    )
    try:
        return _validate_remote(run)
    finally:
        fanout.close()


def _remote(side: Database | RemoteSide, label: str) -> RemoteSide:
    return RemoteSide(label, dsn=side.dsn) if isinstance(side, Database) else side


def _catalog(run: RemoteRun, side: str) -> Catalog:
    try:
        answer = run.call(run.payload("plan", side, schemas=list(run.options.schemas)))
    except ChunkFailed as exc:
        raise OperationalError(f"cannot read the {side} catalog: {exc.message}") from None
    return catalog_from_dict(answer["catalog"])


def _validate_remote(run: RemoteRun) -> ValidationReport:
    started = run.clock()
    with ThreadPoolExecutor(2, "plan") as pool:
        source_future = pool.submit(_catalog, run, "source")
        target_catalog = _catalog(run, "target")
        source_catalog = source_future.result()
    options = run.options
    algorithm = choose_algorithm(source_catalog.server_version, target_catalog.server_version)
    names = select(options, source_catalog, target_catalog)
    table_threads = max(1, min(len(names), run.fanout_options.concurrency, 16))
    with ThreadPoolExecutor(table_threads, "validate-table") as tables_pool:
        tables = tuple(
            tables_pool.map(
                lambda name: compare_table_remote(
                    run,
                    name,
                    source_catalog.tables.get(name),
                    target_catalog.tables.get(name),
                    algorithm,
                ),
                names,
            )
        )
    sequences: tuple[SequenceResult, ...] = ()
    if options.sequences:
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
        sequences = tuple(sequence_from_dict(s) for s in answer["sequences"])
    return ValidationReport(
        source=run.source.display,
        target=run.target.display,
        duration_seconds=round(run.clock() - started, 3),
        tables=tables,
        sequences=sequences,
        algorithm=algorithm,
        source_version=source_catalog.server_version,
        target_version=target_catalog.server_version,
    )
