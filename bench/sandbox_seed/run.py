"""Benchmark: the sandbox's seed and its emulated DMS full load, at N payments.

Starts a source and a target PostgreSQL cluster on 127.0.0.1 with the settings
`migctl sandbox up` gives them (migctl.sandbox.bootstrap), and for each
``--rows`` N, in a fresh database on each:

- creates the payments schema on both (migctl.sandbox.schema.create_schema),
- times ``schema.seed(conn, N)`` on the source (with its phases),
- times the full load: ``Replication.start()`` (the sandbox's DMS task: a
  subscription that copies every table) until every table is "Table completed",
- checks that the target holds the source's rows and that the reported full-load
  rows are the seeded ones.

The clusters are stopped by PID and their folders removed at the end. Not a
test: run it by hand, see README.md.

    .venv/bin/python bench/sandbox_seed/run.py --rows 1000000 --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from migctl.sandbox import schema
from migctl.sandbox.bootstrap import SOURCE_SETTINGS, TARGET_SETTINGS
from migctl.sandbox.postgres import PgCluster, find_pg_bin
from migctl.sandbox.replication import NAME, Replication


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (Linux): how busy a run kept it."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:8]]
    except OSError:
        return 0, 0
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 2) if total else None


def fresh_database(cluster: PgCluster, name: str) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute("CHECKPOINT")  # each size starts from a clean slate
    return cluster.dsn(name)


def drop_database(source: PgCluster, target: PgCluster, name: str) -> None:
    with psycopg.connect(target.dsn(name), autocommit=True) as tgt:
        if tgt.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (NAME,)).fetchone():
            ident = sql.Identifier(NAME)
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
            tgt.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
            tgt.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
    with psycopg.connect(source.dsn(), autocommit=True) as src:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the senders let go of the slots a moment later
            slots = src.execute(
                "SELECT slot_name, active FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall()
            if not any(active for _, active in slots):
                break
            time.sleep(0.1)
        for slot, _ in slots:
            src.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    for cluster in (source, target):
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def launcher_pause(target: PgCluster, since: float) -> None:
    """PostgreSQL 15's logical replication launcher starts a subscription's worker at most
    once per wal_retrieve_retry_interval: wait that long after the previous size's start, so
    that the figure is the copy's and not the launcher's pause (a sandbox has one
    subscription)."""
    with psycopg.connect(target.dsn()) as conn:
        interval_ms = int(
            conn.execute(
                "SELECT setting FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'"
            ).fetchone()[0]  # type: ignore[index]
        )
    time.sleep(max(0.0, since + interval_ms / 1000 + 0.5 - time.monotonic()))


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: int(
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
                ).fetchone()[0]
            )  # type: ignore[index]
            for t in schema.TABLES
        }


_last_start = [-1e9]  # time.monotonic() of the previous subscription's start


def run_size(source: PgCluster, target: PgCluster, rows: int, jobs: int | None) -> dict[str, Any]:
    name = f"bench_{rows}"
    source_dsn = fresh_database(source, name)
    target_dsn = fresh_database(target, name)
    result: dict[str, Any] = {"rows": rows}
    try:
        for dsn in (source_dsn, target_dsn):
            with psycopg.connect(dsn) as conn:
                schema.create_schema(conn)

        phases: dict[str, float] = {}
        before = cpu_busy()
        started = time.perf_counter()
        with psycopg.connect(source_dsn) as conn:
            seeded = schema.seed(conn, rows, jobs=jobs, timings=phases)
        result["seed_seconds"] = round(time.perf_counter() - started, 1)
        result["seed_phases"] = {k: round(v, 1) for k, v in phases.items()}
        result["seed_machine_busy"] = busy_share(before, cpu_busy())
        result["seeded"] = seeded
        with psycopg.connect(source_dsn) as conn:
            result["source_mb"] = int(
                conn.execute("SELECT pg_database_size(current_database()) >> 20").fetchone()[0]  # type: ignore[index]
            )

        replication = Replication(source_dsn, target_dsn)
        completed: dict[str, float] = {}
        launcher_pause(target, _last_start[0])
        _last_start[0] = time.monotonic()
        before = cpu_busy()
        started = time.perf_counter()
        replication.start()
        while True:
            snap = replication.snapshot()
            now = time.perf_counter() - started
            for t in snap.tables:
                if t.state == "Table completed" and t.table not in completed:
                    completed[t.table] = round(now, 1)
            if snap.full_load_done:
                break
            if snap.apply_errors:
                raise RuntimeError(f"the full load failed: {snap.last_error}")
            time.sleep(0.2)
        result["full_load_seconds"] = round(time.perf_counter() - started, 1)
        result["full_load_machine_busy"] = busy_share(before, cpu_busy())
        result["table_completed_at"] = completed
        reported = {t.table: t.full_load_rows for t in snap.tables if t.schema == "public"}
        on_target = table_counts(target_dsn)
        result["full_load_rows_match"] = reported == seeded
        result["target_matches_source"] = on_target == table_counts(source_dsn) == seeded
        if not (result["full_load_rows_match"] and result["target_matches_source"]):
            result["reported"], result["on_target"] = reported, on_target
    finally:
        drop_database(source, target, name)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        type=int,
        action="append",
        help="payments to seed (repeatable; default 1,000,000)",
    )
    parser.add_argument("--jobs", type=int, help="seed sessions (default: the machine's cores)")
    parser.add_argument("--keep", action="store_true", help="keep the clusters' folder")
    args = parser.parse_args()
    sizes = args.rows or [1_000_000]

    bin_dir = find_pg_bin()
    root = Path(tempfile.mkdtemp(prefix="migctl-bench-seed-"))
    source = PgCluster(root / "source", settings=dict(SOURCE_SETTINGS), bin_dir=bin_dir)
    target = PgCluster(root / "target", settings=dict(TARGET_SETTINGS), bin_dir=bin_dir)
    started: list[PgCluster] = []
    try:
        for cluster in (source, target):
            cluster.init()
            cluster.start()
            started.append(cluster)
        with psycopg.connect(source.dsn()) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        print(
            json.dumps(
                {
                    "machine": platform.machine(),
                    "cores": os.cpu_count(),
                    "postgres": version,
                    "source_settings": SOURCE_SETTINGS,
                    "target_settings": TARGET_SETTINGS,
                }
            ),
            flush=True,
        )
        results = []
        for rows in sizes:
            result = run_size(source, target, rows, args.jobs)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        for cluster in started:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"{'payments':>12}  {'seed s':>7}  {'full load s':>11}  {'source MB':>9}  ok")
    for r in results:
        ok = r["full_load_rows_match"] and r["target_matches_source"]
        print(
            f"{r['rows']:>12,}  {r['seed_seconds']:>7}  {r['full_load_seconds']:>11}  "
            f"{r['source_mb']:>9}  {'yes' if ok else 'NO'}"
        )
    return (
        0 if all(r["full_load_rows_match"] and r["target_matches_source"] for r in results) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
