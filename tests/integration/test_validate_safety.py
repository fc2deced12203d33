"""Safety of `migctl validate` on live databases: read only, pinned, ACCESS SHARE only, quoting, drops."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from migctl.db import Database
from migctl.validate.local import validate
from migctl.validate.report import Progress, ValidationReport
from migctl.validate.runner import ValidateOptions
from migctl.validate.session import APPLICATION_NAME, PINNED_SETTINGS, SessionOptions, Side

FAST_RETRY = SessionOptions(retry_wait_seconds=0)


def run(pg_pair: Any, progress: Any = None, **options: Any) -> ValidationReport:
    options.setdefault("session", FAST_RETRY)
    return validate(
        Database(pg_pair.source_dsn, "source"),
        Database(pg_pair.target_dsn, "target"),
        ValidateOptions(**options),
        progress=progress,
    )


def test_sessions_are_read_only_repeatable_read_with_pinned_settings(pg_pair: Any) -> None:
    pg_pair.execute_both("CREATE TABLE t (id int PRIMARY KEY)")
    side = Side(
        pg_pair.target_dsn,
        "target",
        SessionOptions(statement_timeout_seconds=42, lock_timeout_seconds=3),
    )
    try:
        show = {
            name: side.execute(f"SHOW {name}")[0][0]
            for name in ("transaction_read_only", "transaction_isolation")
        }
        assert show == {"transaction_read_only": "on", "transaction_isolation": "repeatable read"}
        for name in (
            "TimeZone",
            "IntervalStyle",
            "extra_float_digits",
            "bytea_output",
            "search_path",
            "row_security",
        ):
            assert side.execute(f"SHOW {name}")[0][0] == PINNED_SETTINGS[name]
        assert (
            side.execute("SHOW DateStyle")[0][0] == "ISO, MDY"
        )  # the target's default is SQL, DMY
        assert side.execute("SHOW statement_timeout")[0][0] == "42s"
        assert side.execute("SHOW lock_timeout")[0][0] == "3s"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            side.execute("INSERT INTO public.t VALUES (1)")
    finally:
        side.close()
    with pg_pair.target_conn() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def _migctl_locks(dsn: str, dbname: str) -> list[tuple[str, str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT l.locktype, l.mode, a.backend_xid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE a.application_name = %s AND a.datname = %s AND l.locktype = 'relation'",
            (APPLICATION_NAME, dbname),
        ).fetchall()


def test_no_lock_above_access_share_and_no_transaction_id(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 500) g"
    )
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE t SET v = 'w' WHERE id = 250")
    seen: list[tuple[str, str, Any]] = []

    def watch(event: Progress) -> None:
        if event.phase in ("scanned", "narrowing"):
            seen.extend(_migctl_locks(pg_pair.source_dsn, pg_pair.dbname))
            seen.extend(_migctl_locks(pg_pair.target_dsn, pg_pair.dbname))

    report = run(pg_pair, progress=watch, chunk_rows=20)
    assert report.tables[0].changed == ((250,),)
    assert seen, "expected to observe the validation sessions' locks"
    assert {mode for _, mode, _ in seen} == {"AccessShareLock"}
    assert all(xid is None for _, _, xid in seen)


def test_a_hostile_table_name_is_just_a_name(pg_pair: Any) -> None:
    pg_pair.execute_both(
        'CREATE TABLE y (id int PRIMARY KEY); CREATE TABLE "x""; drop table y; --" ("we""ird col" text PRIMARY KEY, v int);'
        "INSERT INTO \"x\"\"; drop table y; --\" VALUES ('a', 1), ('b', 2)"
    )
    with pg_pair.target_conn() as conn:
        conn.execute('UPDATE "x""; drop table y; --" SET v = 3 WHERE v = 2')
    report = run(pg_pair, tables=('public."x""; drop table y; --"',))  # quoted: a literal name
    (hostile,) = report.tables
    assert hostile.name == ("public", 'x"; drop table y; --') and hostile.changed == (("b",),)
    assert hostile.table == 'public."x""; drop table y; --"'  # quoted as PostgreSQL would
    for connect in (pg_pair.source_conn, pg_pair.target_conn):
        with connect() as conn:
            assert conn.execute("SELECT to_regclass('public.y') IS NOT NULL").fetchone() == (True,)


def _terminate(dsn: str, dbname: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (APPLICATION_NAME, dbname),
        ).fetchone()
    return int(row[0]) if row else 0


def test_dropped_connections_are_retried_and_the_answer_stays_exact(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 2000) g;"
        "CREATE TABLE words (w text PRIMARY KEY); INSERT INTO words SELECT 'w' || g FROM generate_series(1, 500) g"
    )
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE big SET v = 'x' WHERE id IN (7, 1500); DELETE FROM big WHERE id = 999")
        conn.execute("DELETE FROM words WHERE w = 'w42'")
    killed: list[str] = []

    def kill(event: Progress) -> None:
        # Before the first pass (source) and before narrowing (target): both kinds of unit retry.
        if event.phase == "start" and _terminate(pg_pair.source_dsn, pg_pair.dbname):
            killed.append(f"{event.table} source at start")
        if (
            event.phase == "scanned"
            and event.differing_chunks
            and _terminate(pg_pair.target_dsn, pg_pair.dbname)
        ):
            killed.append(f"{event.table} target at narrowing")

    report = run(pg_pair, progress=kill, jobs=1, chunk_rows=50)
    big, words = report.tables
    assert len(killed) >= 3, killed
    assert big.status == words.status == "mismatch"
    assert (big.changed, big.missing_in_target) == (((7,), (1500,)), ((999,),))
    assert words.missing_in_target == (("w42",),)
    assert big.retries + words.retries >= 2


def test_a_table_that_cannot_be_compared_is_an_error_never_a_match(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE locked (id int PRIMARY KEY); CREATE TABLE fine (id int PRIMARY KEY)"
    )
    with pg_pair.target_conn() as holder:
        holder.execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        report = run(pg_pair, session=SessionOptions(lock_timeout_seconds=1, retry_wait_seconds=0))
        holder.execute("ROLLBACK")
    statuses = {t.table: t.status for t in report.tables}
    assert statuses == {"public.fine": "match", "public.locked": "error"}
    (locked,) = report.errored
    assert locked.error and "lock timeout" in locked.error
    assert not report.ok and report.exit_code == 3


def test_planner_hints_last_only_for_the_first_pass(pg_pair: Any) -> None:
    from migctl.validate.session import planner_hints

    side = Side(pg_pair.source_dsn, "source", FAST_RETRY)
    try:
        with planner_hints(side, big=True):
            assert side.execute("SHOW enable_sort")[0][0] == "off"
            assert side.execute("SHOW parallel_tuple_cost")[0][0] == "0"
            assert side.execute("SHOW jit")[0][0] == "on"  # without inlining and optimisation:
            assert side.execute("SHOW jit_optimize_above_cost")[0][0] == "-1"
            assert side.execute("SHOW jit_inline_above_cost")[0][0] == "-1"
            assert side.execute("SHOW work_mem")[0][0] == "32MB"
        assert side.execute("SHOW enable_sort")[0][0] == "on"
        assert side.execute("SHOW work_mem")[0][0] == "4MB"
        assert side.execute("SHOW parallel_tuple_cost")[0][0] == "0.1"
        assert side.execute("SHOW jit")[0][0] == "off"  # the narrowing's small queries
        assert side.execute("SHOW transaction_read_only")[0][0] == "on"
    finally:
        side.close()


def test_the_first_pass_never_writes_temporary_files_on_a_server_with_little_work_mem(
    pg_pair: Any,
) -> None:
    """Under a tiny work_mem the first pass's hash table of chunks would spill to disk; here
    any temporary file is an error (temp_file_limit = 0), so the table errors unless the
    first pass raises work_mem for itself."""
    from migctl.validate.table import BIG_TABLE_ROWS

    rows = BIG_TABLE_ROWS + 10_000
    pg_pair.execute_both(
        "CREATE TABLE spill (id bigint PRIMARY KEY, v text);"
        f"INSERT INTO spill SELECT g, 'v' || g FROM generate_series(1, {rows}) g; ANALYZE spill"
    )
    db = f'"{pg_pair.dbname}"'
    pg_pair.execute_both(
        f"ALTER DATABASE {db} SET work_mem = '64kB'; ALTER DATABASE {db} SET temp_file_limit = 0"
    )
    spill = run(pg_pair, chunk_rows=20).tables[0]
    assert (spill.table, spill.status, spill.error) == ("public.spill", "match", None)
    assert spill.chunks >= rows // 32  # ~3,000 chunks: far more than 64 kB can hold


def test_bad_options_are_usage_errors(pg_pair: Any) -> None:
    from migctl.errors import UsageError

    for bad in (
        {"jobs": 0},
        {"chunk_rows": 0},
        {"max_keys": -1},
        {"schemas": ()},
        {"session": SessionOptions(parallel_workers=-1)},
    ):
        with pytest.raises(UsageError):
            run(pg_pair, **bad)
