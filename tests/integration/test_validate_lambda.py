"""`--executor lambda-local` / the fan-out against the two real clusters: the same report as local.

The corpus is the one of test_validate_correctness.py (all types, small changes,
sparse keys, text/uuid/composite keys, no-PK tables, missing tables, sequences).
Invocations go through the real handler with a JSON round trip; the
process-pool transport is exercised through the CLI.
"""

from __future__ import annotations

import json
from typing import Any

from migctl.db import Database
from migctl.render.validate import validation_json
from migctl.validate.lambda_handler import handle
from migctl.validate.lambda_invoke import Throttled
from migctl.validate.lambda_table import FanoutOptions
from migctl.validate.payloads import PAYLOAD_VERSION as V
from migctl.validate.report import Progress, ValidationReport
from migctl.validate.run import run_validation
from migctl.validate.runner import ValidateOptions
from migctl.validate.session import SessionOptions
from tests.cli_support import Cli
from tests.integration.validate_support import (
    ALL_TYPES,
    CHANGES,
    COLLATION_SENSITIVE,
    DETECT,
)

VOLATILE = ("queries", "retries", "duration_seconds")


def in_process(payload: dict[str, Any]) -> dict[str, Any]:
    """The handler as the Lambda runtime calls it: JSON in, JSON out."""
    answer: dict[str, Any] = json.loads(json.dumps(handle(json.loads(json.dumps(payload)), None)))
    return answer


def comparable(report: ValidationReport) -> dict[str, Any]:
    doc = validation_json(report)
    for key in ("duration_seconds", "source", "target"):
        doc.pop(key)
    for t in doc["tables"]:
        for key in VOLATILE:
            t.pop(key)
    return doc


def build_corpus(pg_pair: Any) -> None:
    words = ", ".join(f"('{w}', {i})" for i, w in enumerate(COLLATION_SENSITIVE))
    pg_pair.execute_both(ALL_TYPES)
    pg_pair.execute_both(DETECT)
    pg_pair.execute_both(
        "CREATE TABLE sparse (id bigint PRIMARY KEY, v text);"
        "INSERT INTO sparse SELECT g, 'v' || g FROM generate_series(1, 1000) g;"
        "INSERT INTO sparse SELECT g, 'v' || g FROM generate_series(9000000000000, 9000000001000) g;"
        f"CREATE TABLE words (w text PRIMARY KEY, n int); INSERT INTO words VALUES {words};"
        "INSERT INTO words SELECT 'w' || g, g FROM generate_series(1, 1500) g;"
        "CREATE TABLE tokens (u uuid PRIMARY KEY, n int);"
        "INSERT INTO tokens SELECT md5(g::text)::uuid, g FROM generate_series(1, 1500) g;"
        "CREATE TABLE lines (tenant text, line int, amount numeric, PRIMARY KEY (tenant, line));"
        "INSERT INTO lines SELECT 't' || (g % 7), g, g FROM generate_series(1, 1500) g;"
        "CREATE TABLE events (kind text, n int);"
        "INSERT INTO events SELECT 'k' || (g % 5), g % 3 FROM generate_series(1, 300) g;"
        "INSERT INTO events VALUES ('dup', 1), ('dup', 1), ('dup', 1), (NULL, NULL);"
        "CREATE TABLE orders (id bigserial PRIMARY KEY, v int);"
    )
    with pg_pair.source_conn() as conn:
        conn.execute(
            "CREATE TABLE only_source (id int PRIMARY KEY); INSERT INTO only_source VALUES (1), (2)"
        )
        conn.execute("INSERT INTO orders (v) SELECT g FROM generate_series(1, 50) g")
    with pg_pair.target_conn() as conn:
        conn.execute(
            "CREATE TABLE only_target (id int PRIMARY KEY); INSERT INTO only_target VALUES (1)"
        )
        conn.execute("INSERT INTO orders (id, v) SELECT g, g FROM generate_series(1, 50) g")
        for statement in [
            *CHANGES.values(),
            "DELETE FROM sparse WHERE id IN (500, 9000000000500)",
            "INSERT INTO sparse VALUES (2000, 'new'), (9000000002000, 'new'), (-5, 'neg')",
            "UPDATE sparse SET v = 'changed' WHERE id IN (1, 9000000001000)",
            "DELETE FROM words WHERE w IN ('é', 'w77')",
            "INSERT INTO words VALUES ('Ä', 1), ('w9999', 1)",
            "UPDATE words SET n = -1 WHERE w IN ('B', '_x', 'w1000')",
            "DELETE FROM tokens WHERE n = 3",
            "UPDATE tokens SET n = 0 WHERE n = 4",
            "DELETE FROM lines WHERE line = 10",
            "UPDATE lines SET amount = 0 WHERE line = 11",
            "DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'dup' LIMIT 2)",
            "INSERT INTO events VALUES ('new', 1), (NULL, NULL), ('', NULL)",
        ]:
            conn.execute(statement)
    pg_pair.execute_both("ANALYZE")


def dbs(pg_pair: Any) -> tuple[Database, Database]:
    return Database(pg_pair.source_dsn, "source"), Database(pg_pair.target_dsn, "target")


def options(**overrides: Any) -> ValidateOptions:
    return ValidateOptions(session=SessionOptions(retry_wait_seconds=0), **overrides)


def test_fanout_report_equals_the_local_report_on_the_corpus(pg_pair: Any) -> None:
    build_corpus(pg_pair)
    source, target = dbs(pg_pair)
    for chunk_rows in (40, 300):
        opts = options(chunk_rows=chunk_rows, max_keys=5)
        local = run_validation(source, target, opts)
        events: list[Progress] = []
        fanned = run_validation(
            source,
            target,
            opts,
            executor="lambda-local",
            invoke=in_process,
            fanout_options=FanoutOptions(concurrency=8, chunks_per_invocation=3),
            progress=events.append,
        )
        assert comparable(fanned) == comparable(local)
        assert fanned.exit_code == local.exit_code == 1
        assert not fanned.errored
        statuses = {t.table: t.status for t in fanned.tables}
        assert statuses["public.everything"] == "match"
        assert statuses["public.detect"] == "mismatch"
        detect = next(t for t in fanned.tables if t.table == "public.detect")
        assert detect.changed_count == len(CHANGES) and detect.differing_chunks >= 2
        assert detect.queries > 2 * detect.chunks // 3  # one invocation per span and side, at least
        assert any(e.phase == "checksumming" and e.in_flight is not None for e in events)


def test_cli_lambda_local_runs_the_handler_in_worker_processes(pg_pair: Any, cli: Cli) -> None:
    build_corpus(pg_pair)
    common = ("--source", pg_pair.source_dsn, "--target", pg_pair.target_dsn, "--chunk-rows", "100")
    local = cli("--output", "json", "validate", *common)
    fanned = cli(
        "--output", "json", "validate", *common, "--executor", "lambda-local", "--concurrency", "3"
    )
    assert (fanned.code, local.code) == (1, 1), fanned.stderr
    local_doc, fanned_doc = local.json(), fanned.json()
    for doc in (local_doc, fanned_doc):
        doc.pop("duration_seconds")
        for t in doc["tables"]:
            for key in VOLATILE:
                t.pop(key)
    assert fanned_doc == local_doc


def test_throttles_back_off_then_succeed(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 500) g;"
        "ANALYZE t"
    )
    throttled: list[str] = []

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["action"] == "checksum" and len(throttled) < 4:
            throttled.append(payload["side"])
            raise Throttled("TooManyRequestsException")
        return in_process(payload)

    sleeps: list[float] = []
    source, target = dbs(pg_pair)
    report = run_validation(
        source,
        target,
        options(chunk_rows=50),
        executor="lambda-local",
        invoke=flaky,
        fanout_options=FanoutOptions(concurrency=1),
        sleep=sleeps.append,
    )
    assert report.exit_code == 0 and report.tables[0].status == "match"
    assert len(throttled) == 4 and len(sleeps) == 4
    assert sleeps[3] > sleeps[0]  # exponential back-off (jitter keeps it within [d/2, d])
    assert report.tables[0].retries == 4


def test_a_chunk_that_keeps_failing_fails_its_table_never_a_match(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE bad (id int PRIMARY KEY); INSERT INTO bad SELECT generate_series(1, 500);"
        "CREATE TABLE good (id int PRIMARY KEY); INSERT INTO good SELECT generate_series(1, 500);"
        "ANALYZE"
    )
    calls: list[dict[str, Any]] = []

    def broken(payload: dict[str, Any]) -> dict[str, Any]:
        buckets = payload.get("buckets") or {}
        if payload.get("plan", {}).get("table") == "bad" and buckets.get("lo") is None:
            calls.append(payload)  # the first span of `bad` on either side: always a timeout
            return {
                "version": V,
                "ok": False,
                "error": "canceling statement due to statement timeout",
            }
        return in_process(payload)

    source, target = dbs(pg_pair)
    report = run_validation(
        source,
        target,
        options(chunk_rows=50),
        executor="lambda-local",
        invoke=broken,
        fanout_options=FanoutOptions(concurrency=4, attempts=3),
        sleep=lambda _: None,
    )
    results = {t.table: t for t in report.tables}
    assert results["public.good"].status == "match"
    bad = results["public.bad"]
    assert bad.status == "error" and not bad.ok
    assert "checksum invocation failed 3 times" in (bad.error or "")
    assert "statement timeout" in (bad.error or "")
    assert report.exit_code == 3
    assert len(calls) >= 3


def test_handler_plan_count_narrow_and_sequences_actions(pg_pair: Any) -> None:
    pg_pair.execute_both(
        "CREATE TABLE p (id bigserial PRIMARY KEY, v text);"
        "INSERT INTO p (v) SELECT 'v' || g FROM generate_series(1, 1000) g; ANALYZE p"
    )
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE p SET v = 'x' WHERE id IN (10, 900); DELETE FROM p WHERE id = 500")
        conn.execute("SELECT setval('p_id_seq', 5)")
    sides = {"source_dsn": pg_pair.source_dsn, "target_dsn": pg_pair.target_dsn}
    plan = in_process(
        {"version": V, "action": "plan", "side": "source", "schemas": ["public"], **sides}
    )
    assert plan["ok"] is True, plan
    (table,) = plan["catalog"]["tables"]
    assert (table["name"], table["primary_key"], table["estimated_rows"]) == ("p", ["id"], 1000.0)
    assert plan["catalog"]["sequences"][0]["owned_by"] == ["public", "p", "id"]
    checksum_plan = {
        "schema": "public",
        "table": "p",
        "columns": [
            {"name": "id", "family": "int", "cast": None},
            {"name": "v", "family": "text", "cast": None},
        ],
        "key": ["id"],
    }
    bounds = in_process(
        {
            "version": V,
            "action": "plan",
            "side": "source",
            "bounds": [{"plan": checksum_plan, "count": 4, "percent": 100}],
            **sides,
        }
    )
    assert bounds["bounds"] == [[250, 500, 750]]  # percentile_disc of 1..1000
    count = in_process(
        {
            "version": V,
            "action": "count",
            "side": "target",
            "schema": "public",
            "table": "p",
            **sides,
        }
    )
    assert count["rows"] == 999
    narrow = in_process(
        {
            "version": V,
            "action": "narrow",
            "plan": checksum_plan,
            "method": "range",
            "max_keys": 10,
            "leaf_rows": 50,
            "stream_rows": 1000,
            "chunks": [{"lo": None, "hi": None, "counts": [1000, 999]}],
            **sides,
        }
    )
    assert narrow["ok"] is True, narrow
    tally = narrow["tally"]
    assert (tally["changed"], tally["missing_in_target"], tally["changed_count"]) == (
        [[10], [900]],
        [[500]],
        2,
    )
    sequences = in_process({"version": V, "action": "sequences", "schemas": ["public"], **sides})
    assert [(s["name"], s["status"]) for s in sequences["sequences"]] == [
        (["public", "p_id_seq"], "behind")
    ]


class ShortContext:
    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def test_each_invocation_keeps_inside_the_function_timeout(pg_pair: Any) -> None:
    event = {
        "version": V,
        "action": "count",
        "side": "source",
        "dsn": pg_pair.source_dsn,
        "schema": "public",
        "table": "x",
    }
    answer = handle(event, ShortContext())  # 10 s left, 15 s margin: refuse rather than be killed
    assert answer["ok"] is False and "no time left" in answer["error"]
    assert handle({**event, "version": 0}, None)["error"].startswith(
        "unsupported payload version 0"
    )


def test_many_differing_chunks_are_narrowed_in_groups_with_the_local_answer(pg_pair: Any) -> None:
    """More differing chunks than the concurrency: consecutive groups, narrowed together."""
    from migctl.validate.narrow import BATCH_RANGES

    pg_pair.execute_both(
        "CREATE TABLE dense (id int PRIMARY KEY, v int);"
        "INSERT INTO dense SELECT g, g FROM generate_series(1, 20000) g; ANALYZE dense"
    )
    with pg_pair.target_conn() as conn:
        conn.execute("UPDATE dense SET v = -v WHERE v % 97 = 0")  # one or two in every chunk
    source, target = dbs(pg_pair)
    opts = options(chunk_rows=100, max_keys=3)
    local = run_validation(source, target, opts)
    groups: list[int] = []

    def counting(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["action"] == "narrow":
            groups.append(len(payload["chunks"]))
        return in_process(payload)

    fanned = run_validation(
        source,
        target,
        opts,
        executor="lambda-local",
        invoke=counting,
        fanout_options=FanoutOptions(concurrency=4),
    )
    assert comparable(fanned) == comparable(local)
    (dense,) = fanned.tables
    assert (dense.changed_count, dense.changed) == (206, ((97,), (194,), (291,)))
    assert sum(groups) == dense.differing_chunks > 4 * BATCH_RANGES
    assert max(groups) == BATCH_RANGES and len(groups) == -(-sum(groups) // BATCH_RANGES)
