"""Benchmark: `migctl validate` against reladiff (hashdiff) and the one-pass limit.

Starts two local PostgreSQL clusters (127.0.0.1, stopped by PID at the end),
builds a `payments` table of N rows on both (bigint key, numeric, char(3),
text, timestamptz, uuid, text with NULLs, jsonb), plants 5 differences on the
target (1 missing, 1 extra, 3 changed) and times:

- migctl validate (a subprocess; peak RSS from wait4),
- reladiff <src> payments <tgt> payments -k id -c '%' -a hashdiff (from bench/.venv),
- the one-pass limit: both servers computing count(*), sum(hash_record_extended(t, 0))
  at the same time, with the server's default parallel workers and with none (the faster
  counts), in turns with migctl.

Then it adds more changed rows (k = 50, 500) and records migctl's query count.
Not a test: run it by hand, see README.md.

    python bench/validate_vs_reladiff/run.py --rows 2000000 --rows 10000000
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

import migctl
from migctl.sandbox.postgres import PgCluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RELADIFF = ROOT / "bench" / ".venv" / "bin" / "reladiff"
MIGCTL = ROOT / ".venv" / "bin" / "migctl"

BUILD = """
DROP TABLE IF EXISTS payments;
CREATE TABLE payments (
    id bigint NOT NULL,
    amount numeric(18,4) NOT NULL,
    currency char(3) NOT NULL,
    description text NOT NULL,
    created_at timestamptz NOT NULL,
    ref uuid NOT NULL,
    note text,
    meta jsonb
);
INSERT INTO payments
SELECT g,
       (('x' || substr(md5(g::text), 1, 8))::bit(32)::int8 % 10000000) / 10000.0,
       (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + g % 4],
       'payment ' || g || ' for order ' || (g * 7919 % 1000003),
       '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second',
       md5('ref' || g)::uuid,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END,
       jsonb_build_object('customer', g % 100000, 'channel', (ARRAY['web', 'pos', 'api'])[1 + g % 3],
                          'tags', jsonb_build_array('a', g % 7))
FROM generate_series(1::bigint, {rows}) g;
ALTER TABLE payments ADD PRIMARY KEY (id);
VACUUM ANALYZE payments;
"""

PLANT = """
DELETE FROM payments WHERE id = %(missing)s;
INSERT INTO payments VALUES (%(extra)s, 1.0000, 'EUR', 'extra', '2030-01-01 00:00+00', md5('x')::uuid, NULL, '{}');
UPDATE payments SET amount = amount + 0.0001 WHERE id = %(c1)s;
UPDATE payments SET note = '' WHERE id = %(c2)s;
UPDATE payments SET meta = jsonb_set(meta, '{channel}', '"moon"') WHERE id = %(c3)s;
VACUUM ANALYZE payments;
"""

# reladiff stops with "'<' not supported between 'NoneType' and 'str'" (and exit 0) when a changed
# row holds a NULL. To time a run it can finish, put rows c2 and c3 back as the generator made them
# and change two rows without NULLs instead.
RELADIFF_FRIENDLY = """
UPDATE payments SET note = NULL WHERE id = %(c2)s;
UPDATE payments SET meta = jsonb_set(meta, '{channel}', to_jsonb((ARRAY['web', 'pos', 'api'])[1 + id %% 3]))
 WHERE id = %(c3)s;
UPDATE payments SET note = note || '!' WHERE id = %(c2b)s;
UPDATE payments SET meta = jsonb_set(meta, '{channel}', '"moon"') WHERE id = %(c3b)s;
VACUUM ANALYZE payments;
"""


def start_clusters(work: Path) -> tuple[PgCluster, PgCluster]:
    common = {
        "shared_buffers": "512MB",
        "max_connections": "50",
        "work_mem": "64MB",
        "max_wal_size": "4GB",
    }
    source = PgCluster(
        work / "source",
        settings={**common, "timezone": "UTC"},
        initdb_args=("--locale-provider=icu", "--icu-locale=en-US", "--locale=C.UTF-8"),
    )
    target = PgCluster(
        work / "target",
        settings={
            **common,
            "timezone": "Asia/Kathmandu",
            "datestyle": "SQL, DMY",
            "intervalstyle": "sql_standard",
            "extra_float_digits": "0",
            "bytea_output": "escape",
        },
        initdb_args=("--locale=C",),
    )
    for cluster in (source, target):
        cluster.init()
        cluster.start()
    return source, target


def on_both(source: PgCluster, target: PgCluster, sql: str) -> None:
    errors: list[BaseException] = []

    def run(cluster: PgCluster) -> None:
        try:
            with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
                for statement in filter(str.strip, sql.split(";\n")):
                    conn.execute(statement)  # type: ignore[call-overload]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in (source, target)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def on_target(target: PgCluster, sql: str, params: dict[str, int]) -> None:
    with psycopg.connect(target.dsn("bench"), autocommit=True) as conn:
        for statement in filter(str.strip, sql.split(";\n")):
            conn.execute(statement, params)  # type: ignore[arg-type]


def timed_process(argv: list[str]) -> tuple[float, int, str, int]:
    """Wall seconds, peak RSS in MB (wait4), stdout, exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss // 1024, out, proc.returncode


def run_migctl(
    source: PgCluster, target: PgCluster, executor: str = "local", binary: Path = MIGCTL
) -> dict[str, object]:
    seconds, rss, out, code = timed_process(
        [
            str(binary),
            "--output",
            "json",
            "validate",
            "--source",
            source.dsn("bench"),
            "--target",
            target.dsn("bench"),
            "--table",
            "public.payments",
            "--executor",
            executor,
        ]
    )
    report = json.loads(out)
    table = report["tables"][0]
    return {"seconds": seconds, "rss_mb": rss, "exit": code, "table": table}


def run_reladiff(source: PgCluster, target: PgCluster) -> dict[str, object]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(RELADIFF),
            source.url("bench"),
            "payments",
            target.url("bench"),
            "payments",
            "-k",
            "id",
            "-c",
            "%",
            "-a",
            "hashdiff",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    lines = [ln for ln in out.splitlines() if ln.startswith(("+ ", "- "))]
    errors = [ln for ln in err.splitlines() if "ERROR" in ln]
    return {
        "seconds": seconds,
        "exit": proc.returncode,
        "diff_lines": len(lines),
        "error": errors[-1].strip() if errors else None,
    }


def one_pass_limit(source: PgCluster, target: PgCluster, workers: int | None = None) -> float:
    """Both servers hashing every row once, at the same time; ``workers``: parallel workers
    per query (None: the server's default, 2)."""

    def run(cluster: PgCluster) -> None:
        with psycopg.connect(cluster.dsn("bench")) as conn:
            if workers is not None:
                conn.execute(f"SET max_parallel_workers_per_gather = {int(workers)}")
            conn.execute(
                "SELECT count(*), sum(hash_record_extended(t, 0)) FROM payments t"
            ).fetchall()

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(c,)) for c in (source, target)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def median_of(repeats: int, fn, *args):  # type: ignore[no-untyped-def]
    return _median([fn(*args) for _ in range(repeats)])


def _median(results):  # type: ignore[no-untyped-def]
    if isinstance(results[0], float):
        return statistics.median(results), results
    ordered = sorted(results, key=lambda r: r["seconds"])
    return ordered[len(ordered) // 2], [r["seconds"] for r in results]


def per_turn(numerators: list[float], denominators: list[float]) -> dict[str, object]:
    """Each turn's ratio and their median: the pairs ran side by side, so drift between turns
    cancels out (a ratio of medians can pair a quiet turn's run with a busy turn's)."""
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {"median": round(statistics.median(ratios), 2), "turns": [round(r, 2) for r in ratios]}


def interleaved(repeats: int, **runs):  # type: ignore[no-untyped-def]
    """Median of each run, taking turns (a, b, c, a, b, c, ...): the machine's drift hits all alike."""
    results: dict[str, list[object]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return {name: _median(found) for name, found in results.items()}


def bench_size(
    source: PgCluster,
    target: PgCluster,
    rows: int,
    repeats: int,
    with_reladiff: bool,
    executors: tuple[str, ...] = (),
    baseline: Path | None = None,
) -> dict[str, object]:
    started = time.perf_counter()
    on_both(source, target, BUILD.format(rows=int(rows)))
    planted = {
        "missing": rows // 3,
        "extra": rows + 1000,
        "c1": 17,
        "c2": rows // 2,
        "c3": rows - 5,
    }
    on_target(target, PLANT, planted)
    print(f"[{rows:,} rows] built in {time.perf_counter() - started:.0f} s", flush=True)
    one_pass_limit(source, target)  # warm the caches
    # The limit is the faster of the server's default (2 parallel workers per query) and none:
    # on this 2-core machine the two servers' parallel workers only compete for the same cores.
    runs = {
        "default_workers": lambda: one_pass_limit(source, target),
        "no_workers": lambda: one_pass_limit(source, target, 0),
        "migctl": lambda: run_migctl(source, target),
    }
    if baseline is not None:  # another migctl (an older checkout), in the same turns
        runs["baseline"] = lambda: run_migctl(source, target, binary=baseline)
    timed = interleaved(repeats, **runs)
    limits = {None: timed["default_workers"], 0: timed["no_workers"]}
    limit, limit_runs = min(limits.values(), key=lambda m: m[0])
    migctl, migctl_runs = timed["migctl"]
    turn_limits = [min(pair) for pair in zip(limits[None][1], limits[0][1], strict=True)]
    table = migctl["table"]
    result: dict[str, object] = {
        "rows": rows,
        "one_pass_limit_seconds": round(limit, 2),
        "one_pass_limit_runs": [round(x, 2) for x in limit_runs],
        "one_pass_limit_default_workers_seconds": round(limits[None][0], 2),
        "one_pass_limit_no_workers_seconds": round(limits[0][0], 2),
        "migctl_seconds": round(migctl["seconds"], 2),
        "migctl_runs": [round(x, 2) for x in migctl_runs],
        "migctl_peak_rss_mb": max(int(migctl["rss_mb"]), 0),
        "migctl_exit": migctl["exit"],
        "migctl_found": {
            k: table[k] for k in ("missing_in_target", "missing_in_source", "changed")
        },
        "migctl_queries": table["queries"],
        "planted": planted,
    }
    exact = (
        table["missing_in_target"] == [[planted["missing"]]]
        and table["missing_in_source"] == [[planted["extra"]]]
        and sorted(table["changed"]) == sorted([[planted["c1"]], [planted["c2"]], [planted["c3"]]])
    )
    result["migctl_exact"] = exact
    result["migctl_vs_limit"] = round(migctl["seconds"] / limit, 2)
    result["migctl_vs_limit_per_turn"] = per_turn(migctl_runs, turn_limits)
    if baseline is not None:
        base, base_runs = timed["baseline"]
        found = base["table"]
        result.update(
            baseline=str(baseline),
            baseline_seconds=round(float(base["seconds"]), 2),
            baseline_runs=[round(x, 2) for x in base_runs],
            baseline_vs_limit_per_turn=per_turn(base_runs, turn_limits),
            migctl_vs_baseline_per_turn=per_turn(migctl_runs, base_runs),
            baseline_peak_rss_mb=int(base["rss_mb"]),
            baseline_same_keys=all(
                found[k] == table[k] for k in ("missing_in_target", "missing_in_source", "changed")
            ),
        )
    for executor in executors:  # the same data, the same planted differences
        other, other_runs = median_of(repeats, run_migctl, source, target, executor)
        found = other["table"]
        result[f"{executor}_seconds"] = round(float(other["seconds"]), 2)
        result[f"{executor}_runs"] = [round(x, 2) for x in other_runs]
        result[f"{executor}_peak_rss_mb"] = int(other["rss_mb"])
        result[f"{executor}_invocations"] = found["queries"]
        result[f"{executor}_same_keys"] = all(
            found[k] == table[k] for k in ("missing_in_target", "missing_in_source", "changed")
        )
        result[f"{executor}_vs_local"] = round(float(other["seconds"]) / migctl["seconds"], 2)
    if with_reladiff:
        crashed = run_reladiff(source, target)
        result.update(
            reladiff_planted_seconds=round(float(crashed["seconds"]), 2),
            reladiff_planted_exit=crashed["exit"],
            reladiff_planted_diff_lines=crashed["diff_lines"],
            reladiff_planted_error=crashed["error"],
        )
        friendly = {**planted, "c2b": rows // 2 + 1, "c3b": rows - 4}
        on_target(target, RELADIFF_FRIENDLY, friendly)
        turns = interleaved(
            repeats,
            reladiff=lambda: run_reladiff(source, target),
            migctl=lambda: run_migctl(source, target),
        )
        (reladiff, reladiff_runs), (again, again_runs) = turns["reladiff"], turns["migctl"]
        result.update(
            reladiff_seconds=round(float(reladiff["seconds"]), 2),
            reladiff_runs=[round(x, 2) for x in reladiff_runs],
            migctl_runs_same_data=[round(x, 2) for x in again_runs],
            reladiff_exit=reladiff["exit"],
            reladiff_diff_lines=reladiff["diff_lines"],
            migctl_seconds_same_data=round(float(again["seconds"]), 2),
            migctl_changed_same_data=again["table"]["changed"],
            reladiff_vs_migctl=round(float(reladiff["seconds"]) / float(again["seconds"]), 2),
            reladiff_vs_migctl_per_turn=per_turn(reladiff_runs, again_runs),
        )
    # k differences: more changed rows spread over the key space; report total differences
    queries: dict[int, object] = {
        5: {"queries": table["queries"], "seconds": round(float(migctl["seconds"]), 2)}
    }
    for k in (50, 500):
        with psycopg.connect(target.dsn("bench"), autocommit=True) as conn:
            conn.execute(
                "UPDATE payments SET description = description || '*' WHERE id IN "
                "(SELECT (g * %(step)s)::bigint FROM generate_series(1, %(n)s) g) AND description NOT LIKE '%%*'",
                {"step": rows // (k + 1), "n": k},
            )
        run = run_migctl(source, target)
        t = run["table"]
        total = t["missing_in_target_count"] + t["missing_in_source_count"] + t["changed_count"]
        queries[total] = {"queries": t["queries"], "seconds": round(float(run["seconds"]), 2)}
    result["queries_by_differences"] = queries
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, action="append", help="table size; repeatable (default 2,000,000)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reladiff-max-rows",
        type=int,
        default=2_000_000,
        help="skip reladiff above this size (it is slow)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the clusters' data folder")
    parser.add_argument(
        "--executors",
        default="",
        help="other migctl executors to time beside local, e.g. 'lambda-local' (comma-separated)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another migctl executable (e.g. an older checkout's .venv/bin/migctl), timed in"
        " the same turns on the same data",
    )
    args = parser.parse_args()
    executors = tuple(e for e in args.executors.split(",") if e and e != "local")
    if not RELADIFF.exists() and any(r <= args.reladiff_max_rows for r in args.rows or [2_000_000]):
        print(f"missing {RELADIFF}: see bench/validate_vs_reladiff/README.md", file=sys.stderr)
        return 2
    work = Path(
        tempfile.mkdtemp(
            prefix="migctl-bench-",
            dir=ROOT / "bench" / ".work" if (ROOT / "bench" / ".work").is_dir() else None,
        )
    )
    # As `pip install` does: migctl is timed from bytecode, not compiled from source on every
    # run (which a PYTHONDONTWRITEBYTECODE environment would otherwise make it do).
    compileall.compile_dir(str(Path(migctl.__file__).parent), quiet=1)
    source, target = start_clusters(work)
    results = []
    try:
        for cluster in (source, target):
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench")
        for rows in args.rows or [2_000_000]:
            result = bench_size(
                source,
                target,
                rows,
                args.repeats,
                rows <= args.reladiff_max_rows,
                executors,
                args.baseline,
            )
            results.append(result)
            print(json.dumps(result, indent=2), flush=True)
    finally:
        source.stop()
        target.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        "\nrows        limit s  migctl s  migctl/limit  reladiff s  reladiff/migctl  peak RSS MB  exact"
        "  (per turn: migctl/limit, reladiff/migctl)"
    )
    for r in results:
        print(
            f"{r['rows']:>10,}  {r['one_pass_limit_seconds']:>7}  {r['migctl_seconds']:>8}  "
            f"{r['migctl_vs_limit']:>12}  {r.get('reladiff_seconds', '-'):>10}  "
            f"{r.get('reladiff_vs_migctl', '-'):>15}  {r['migctl_peak_rss_mb']:>11}  {r['migctl_exact']}"
            f"  ({r['migctl_vs_limit_per_turn']['median']},"
            f" {r.get('reladiff_vs_migctl_per_turn', {}).get('median', '-')})"
        )
        if "baseline_seconds" in r:
            print(
                f"{'':>10}  baseline: {r['baseline_seconds']} s, migctl/baseline per turn"
                f" {r['migctl_vs_baseline_per_turn']['median']}, baseline/limit per turn"
                f" {r['baseline_vs_limit_per_turn']['median']}, same keys: {r['baseline_same_keys']}"
            )
        for executor in executors:
            print(
                f"{'':>10}  {executor}: {r[f'{executor}_seconds']} s"
                f" ({r[f'{executor}_vs_local']} x local), {r[f'{executor}_invocations']} invocations,"
                f" same keys: {r[f'{executor}_same_keys']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
