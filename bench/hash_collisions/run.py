"""Measure the row hash's collisions: systematic ones (none), and chance ones (as a random hash).

Not a test, and not a timing: it counts. It starts one PostgreSQL cluster on
127.0.0.1 (stopped by PID at the end), fills tables built to collide under a
hash that loses bits, and counts, for the row hash ``migctl validate`` uses
(over every column but the ``id`` that numbers the rows):

- collisions of the full 64 bits: any is a defect (expected by chance: n^2 / 2^65,
  about 3e-8 for a million rows);
- collisions of the low 32 bits only, against the birthday expectation
  n(n-1) / 2^33 of a uniformly random hash: a hash that spreads these inputs as a
  random one does shows the same count, within a few standard deviations.

With ``--baseline DIR`` (an older checkout) it also counts the older chain's
collisions on the same rows.

    python bench/hash_collisions/run.py --rows 1000000 [--baseline /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from migctl.sandbox.postgres import PgCluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# name -> (CREATE TABLE ... AS SELECT, with {n}); each is built to collide under a weak hash
DATASETS = {
    # timestamps whose 64 bits fold onto the same 32 (hashint8extended XORs the halves):
    # one high half per row, the low half chosen so that the fold is always 0x12345678
    "timestamp, one fold": (
        "SELECT g AS id, timestamp '2000-01-01' + ((((g::int8) << 32) | ((g # 305419896)::int8))"
        " || ' microseconds')::interval AS v FROM generate_series(0, {n} - 1) g"
    ),
    "timestamptz, one fold": (
        "SELECT g AS id, timestamptz '2000-01-01 00:00+00' + ((((g::int8) << 32) |"
        " ((g # 305419896)::int8)) || ' microseconds')::interval AS v"
        " FROM generate_series(0, {n} - 1) g"
    ),
    "bigint[], one fold": (
        "SELECT g AS id, ARRAY[((g::int8) << 32) | (g # 305419896)::int8] AS v"
        " FROM generate_series(0, {n} - 1) g"
    ),
    # (0, x) and (x, 0) in two float8 columns, (NULL, 0) and (0, NULL)
    "float8 pairs swapped": (
        "SELECT g AS id, CASE WHEN g % 2 = 0 THEN 0 ELSE g / 2 END::float8 AS a,"
        " CASE WHEN g % 2 = 0 THEN g / 2 ELSE 0 END::float8 AS b FROM generate_series(1, {n}) g"
    ),
    # numeric NaN and Infinity swapped between two columns, beside a counter shared by the pair
    "numeric specials swapped": (
        "SELECT g AS id, (ARRAY['NaN', 'Infinity'])[1 + g % 2]::numeric AS a,"
        " (ARRAY['Infinity', 'NaN'])[1 + g % 2]::numeric AS b, g / 2 AS c"
        " FROM generate_series(1, {n}) g"
    ),
    # the benchmark's payments rows: what a payment table looks like
    "payments": (
        "SELECT g AS id, (g % 100000) / 100.0 AS amount, (ARRAY['EUR', 'USD'])[1 + g % 2]::char(3)"
        " AS currency, 'payment ' || g AS description,"
        " timestamptz '2024-01-01 00:00+00' + g * interval '1.5 second' AS created_at,"
        " md5('ref' || g)::uuid AS ref, jsonb_build_object('customer', g % 1000) AS meta"
        " FROM generate_series(1, {n}) g"
    ),
}

ROW_HASH = r"""
import json, sys
from migctl.validate import hashing
from migctl.validate.catalog import read_catalog
try:
    from migctl.validate.comparison import plan_table
except ImportError:  # a checkout from before the packages were named by capability
    from migctl.validate.plan import plan_table
import psycopg
with psycopg.connect(sys.argv[1]) as conn:
    catalog = read_catalog(conn, ["public"])
    out = {}
    for key, info in catalog.tables.items():
        name = key if isinstance(key, str) else ".".join(key)
        plan = plan_table(info, info, hashing.ALGORITHMS[0]).plan
        values = tuple(c for c in plan.columns if c.name != "id")  # rows differ in these only
        out[name] = hashing.hash_columns(values).as_string(conn).replace("%%", "%")
    print(json.dumps({"algorithm": hashing.ALGORITHMS[0], "sql": out}))
"""


def row_hash_sql(dsn: str, checkout: Path | None) -> tuple[str, dict[str, str]]:
    """The row hash SQL of every table but its id, as the migctl of ``checkout`` builds it."""
    env = {"PYTHONPATH": str(checkout or ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(  # in the checkout: `python -c` puts the current folder first
        [sys.executable, "-c", ROW_HASH, dsn],
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout or ROOT,
        check=True,
    )
    found = json.loads(done.stdout)
    return found["algorithm"], found["sql"]


def count(conn: psycopg.Connection[tuple[int, ...]], table: str, row_hash: str) -> dict[str, int]:
    row = conn.execute(
        f"SELECT count(*), count(*) - count(DISTINCT h), count(*) - count(DISTINCT h & 4294967295)"  # type: ignore[arg-type]
        f" FROM (SELECT {row_hash} AS h FROM {table}) t"
    ).fetchone()
    assert row is not None
    return {"rows": row[0], "collisions_64": row[1], "collisions_low_32": row[2]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=Path, help="an older checkout of migctl, to compare")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="migctl-collisions-"))
    cluster = PgCluster(work / "pg", settings={"timezone": "UTC", "shared_buffers": "256MB"})
    cluster.init()
    cluster.start()
    results = []
    try:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'"
            )
            tables = {}
            for i, (name, select) in enumerate(DATASETS.items()):
                table = f"d{i}"
                conn.execute(f"CREATE TABLE {table} AS {select.format(n=args.rows)}")  # type: ignore[arg-type]
                conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")  # type: ignore[arg-type]
                conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
                tables[name] = table
            versions = {"this checkout": row_hash_sql(dsn, None)}
            if args.baseline:
                versions["baseline"] = row_hash_sql(dsn, args.baseline)
            for name, table in tables.items():
                n = args.rows
                expected = n * (n - 1) / 2**33
                entry: dict[str, object] = {
                    "dataset": name,
                    "rows": n,
                    "low_32_expected_if_random": round(expected, 1),
                    "low_32_expected_sd": round(math.sqrt(expected), 1),
                }
                for label, (algorithm, sqls) in versions.items():
                    entry[label] = {
                        "algorithm": algorithm,
                        **count(conn, table, sqls[f"public.{table}"]),
                    }
                results.append(entry)
                print(json.dumps(entry), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        "\ndataset                   rows   64-bit collisions   low-32 collisions (random: mean ± sd)"
    )
    for r in results:
        for label in ("this checkout", "baseline"):
            if label in r:
                found = r[label]
                assert isinstance(found, dict)
                print(
                    f"{r['dataset']:<24} {r['rows']:>9,}  {found['collisions_64']:>10} ({label})"
                    f"  {found['collisions_low_32']:>10}  ({r['low_32_expected_if_random']} ± {r['low_32_expected_sd']})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
