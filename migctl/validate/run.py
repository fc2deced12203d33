"""``migctl validate``'s entry point: the executor that runs the queries, and the one loop around it.

``run_validation`` picks an executor and hands it to ``runner.run``. With
``local`` the queries run from here (``local.LocalExecutor``). With ``lambda``
or ``lambda-local`` they run as invocations (``lambda_table.LambdaExecutor``):
``plan`` on both sides for the catalogs and row estimates, ``plan`` on the
source for the key bounds of range-chunked tables, ``checksum`` per span of
chunks per side (concurrently), ``narrow`` per differing chunk or group of them,
and ``sequences`` once. The loop is the same, so the report, its JSON and its
exit code are too; ``queries`` and ``retries`` count invocations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from migctl.db import Database
from migctl.errors import UsageError
from migctl.validate.lambda_invoke import Fanout, Invoker
from migctl.validate.lambda_table import FanoutOptions, LambdaExecutor, RemoteRun, RemoteSide
from migctl.validate.local import validate as validate_locally
from migctl.validate.report import Progress, ValidationReport
from migctl.validate.runner import ValidateOptions, check_options, run

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
    check_options(options)
    fanout = Fanout(
        invoke, fanout_options.concurrency, attempts=fanout_options.attempts, sleep=sleep
    )
    remote = RemoteRun(
        fanout,
        _remote(source, "source"),
        _remote(target, "target"),
        options,
        fanout_options,
        progress or (lambda _: None),
        clock,
    )
    try:
        return run(LambdaExecutor(remote), options, clock=clock)
    finally:
        fanout.close()


def _remote(side: Database | RemoteSide, label: str) -> RemoteSide:
    return RemoteSide(label, dsn=side.dsn) if isinstance(side, Database) else side
