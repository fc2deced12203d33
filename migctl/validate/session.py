"""Read-only sessions with pinned settings, reopened when the connection drops.

Every transaction is ``READ ONLY`` and ``REPEATABLE READ``: one snapshot per
table per side. Settings that change how a value prints (TimeZone, DateStyle,
IntervalStyle, extra_float_digits, bytea_output, lc_monetary) are pinned, so a
text form computed on either server is the same for the same value. Nothing
migctl runs takes a lock above ACCESS SHARE: it only ever SELECTs.

A dropped connection (``pg_terminate_backend``, a failover, a network cut) is
retried by :func:`retry_unit` with tenacity: the side reconnects on its next
query, with a new snapshot, and the unit of work (a pass over a table, or the
narrowing of one chunk) runs again from its start, so its answer stays exact.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from migctl.db import connect
from migctl.errors import DatabaseError, translate

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

APPLICATION_NAME = "migctl-validate"

#: Session settings pinned on both sides, whatever the servers' defaults are.
PINNED_SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
    "lc_monetary": "C",
    "standard_conforming_strings": "on",
    "search_path": "pg_catalog",  # every function we call is built in; no user function can shadow it
    "row_security": "off",  # fail loudly instead of comparing only the rows a policy lets us see
    "default_transaction_read_only": "on",
    "jit": "off",  # compiling costs more than it saves on small queries (big scans: planner_hints)
    "idle_in_transaction_session_timeout": "0",
}


@dataclass(frozen=True)
class SessionOptions:
    statement_timeout_seconds: int = 600
    lock_timeout_seconds: int = 5
    retry_attempts: int = 4  # tries per unit of work when a connection drops
    retry_wait_seconds: float = 0.5  # first back-off; doubles, capped at 10 s
    # PostgreSQL parallel workers per query: each server runs at most jobs x (1 + this)
    parallel_workers: int = 0


def set_configs(settings: dict[str, str], *, local: bool) -> tuple[str, list[str]]:
    """``set_config(name, value, local), ...`` for a select list, and its parameters."""
    flag = "true" if local else "false"
    calls = ", ".join(f"set_config(%s, %s, {flag})" for _ in settings)
    return calls, [v for pair in settings.items() for v in pair]


def pinned_settings(options: SessionOptions) -> dict[str, str]:
    return {
        **PINNED_SETTINGS,
        "statement_timeout": f"{options.statement_timeout_seconds * 1000}",
        "lock_timeout": f"{options.lock_timeout_seconds * 1000}",
        "max_parallel_workers_per_gather": f"{options.parallel_workers}",
    }


class Side:
    """One database of the comparison: a connection in a read-only snapshot, reopened after a drop.

    Not thread-safe: one thread uses a Side at a time. ``generation`` counts
    reconnects, so a caller can tell that its snapshot changed.
    """

    def __init__(self, dsn: str, label: str, options: SessionOptions | None = None) -> None:
        self.dsn = dsn
        self.label = label
        self.options = options or SessionOptions()
        self._conn: psycopg.Connection[Any] | None = None
        self.generation = 0
        self.queries = 0
        self.server_version = 0

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The live connection, reconnecting (new snapshot) if the last one dropped."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._close_quietly()
            self._conn = open_connection(self.dsn, self.options)
            self.server_version = int(self._conn.info.server_version)
            self.generation += 1
        return self._conn

    def execute(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one query in the current snapshot and fetch all rows."""
        self.queries += 1
        cur = self.conn.execute(query, [] if params is None else params)  # `%` in names: always
        return cur.fetchall() if cur.description else []

    def stream(
        self, query: Any, params: Any = None, *, itersize: int = 5000
    ) -> Generator[tuple[Any, ...], None, None]:
        """Iterate a query through a server-side cursor: memory stays flat however many rows."""
        self.queries += 1
        with self.conn.cursor(name=f"migctl_stream_{self.queries}") as cur:
            cur.itersize = itersize
            cur.execute(query, [] if params is None else params)
            yield from cur

    def new_snapshot(self) -> None:
        """End the current read-only transaction; the next query starts a new one."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            self._conn.rollback()

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(
                Exception
            ):  # a dead connection may fail to close: nothing to do
                conn.close()


def open_connection(dsn: str, options: SessionOptions) -> psycopg.Connection[Any]:
    """A connection whose transactions are REPEATABLE READ READ ONLY, with settings pinned."""
    import psycopg

    conn = connect(dsn, application_name=APPLICATION_NAME, autocommit=True)
    try:
        settings = pinned_settings(options)
        if (
            conn.info.server_version < 110000
        ):  # no jit yet; the version is refused with a clear message later
            settings.pop("jit")
        calls, params = set_configs(settings, local=False)
        conn.execute("SELECT " + calls, params)
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
    except psycopg.Error as exc:
        conn.close()

        err = translate(exc)
        raise DatabaseError(
            f"cannot prepare a validation session: {err.message if err else exc}"
        ) from None
    return conn


def is_connection_loss(exc: BaseException, *sides: Side) -> bool:
    """A dropped connection (retry), as opposed to a timeout or a refused query (report)."""
    import psycopg

    if isinstance(exc, DatabaseError):  # reconnecting failed: the server may be coming back
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CrashShutdown):
        return True
    return any(s._conn is not None and (s._conn.broken or s._conn.closed) for s in sides)


def retry_unit(
    unit: Callable[[], T], *sides: Side, on_retry: Callable[[], None] | None = None
) -> T:
    """Run a unit of work; when a connection drops, reconnect and run the whole unit again."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    options = sides[0].options if sides else SessionOptions()

    def before_sleep(_: Any) -> None:
        for side in sides:
            if side._conn is not None and (side._conn.broken or side._conn.closed):
                side._close_quietly()
        if on_retry is not None:
            on_retry()

    retrying = Retrying(
        stop=stop_after_attempt(max(1, options.retry_attempts)),
        wait=wait_exponential(multiplier=options.retry_wait_seconds, max=10),
        retry=retry_if_exception(lambda e: is_connection_loss(e, *sides)),
        before_sleep=before_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            return unit()
    raise AssertionError("unreachable")  # pragma: no cover - reraise=True raises the last error


class Pair:
    """The source and target Sides one worker thread uses, and how often it had to retry."""

    def __init__(self, source: Side, target: Side) -> None:
        self.source = source
        self.target = target
        self._lock = threading.Lock()
        self.retries = 0

    def note_retry(self) -> None:
        with self._lock:
            self.retries += 1

    @property
    def queries(self) -> int:
        return self.source.queries + self.target.queries

    def close(self) -> None:
        self.source.close()
        self.target.close()


#: For the one big GROUP BY per side, this transaction only. The planner guesses one group
#: per key for ``GROUP BY bucket`` and would sort millions of rows to disk (the real number
#: of groups is small); parallel workers, if allowed, should not look expensive; and the
#: row hash is compiled (JIT: expressions and tuple deforming; it pays on a big scan) without
#: LLVM's inlining and optimisation, whose compile time grows with the columns. Where the
#: server has no JIT, ``jit = on`` does nothing. ``work_mem`` holds the hash table of every
#: chunk (~230 bytes each; at most ~93,000 chunks, ~21 MB): under the default 4 MB, a first
#: pass of more than ~37,000 chunks would spill every row it reads to temporary files on the
#: server. The figures behind each: docs/performance.md.
_BIG_SCAN_SETTINGS = {
    "enable_sort": "off",
    "work_mem": "32MB",
    "parallel_setup_cost": "0",
    "parallel_tuple_cost": "0",
    "jit": "on",
    "jit_above_cost": "0",
    "jit_inline_above_cost": "-1",
    "jit_optimize_above_cost": "-1",
}


@contextmanager
def planner_hints(side: Side, *, big: bool) -> Iterator[None]:
    """``_BIG_SCAN_SETTINGS`` around the first pass of a big table, then the session's own.

    One query reads the session's values (a target list is evaluated in order)
    and sets the new ones; they are put back afterwards, not reset: ``SET LOCAL
    ... TO DEFAULT`` would give the server's default, not the pinned ``jit = off``.
    """
    if not big:
        yield
        return
    names = list(_BIG_SCAN_SETTINGS)
    calls, params = set_configs(_BIG_SCAN_SETTINGS, local=True)
    current = ", ".join("current_setting(%s)" for _ in names)
    row = side.execute(f"SELECT {current}, {calls}", [*names, *params])[0]
    session_values = dict(zip(names, row[: len(names)], strict=True))
    try:
        yield
    finally:
        from psycopg.pq import TransactionStatus

        conn = side._conn
        if (
            conn is not None
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.INTRANS
        ):
            calls, params = set_configs(session_values, local=True)
            conn.execute("SELECT " + calls, params)


_S = TypeVar("_S")
_T = TypeVar("_T")


def on_both_sides(
    pool: Executor, on_source: Callable[[], _S], on_target: Callable[[], _T]
) -> tuple[_S, _T]:
    """Run one step on both servers at once (the source's in ``pool``); wait for both before raising."""
    future = pool.submit(on_source)
    try:
        on_target_result = on_target()
    except BaseException:
        wait([future])
        raise
    return future.result(), on_target_result
