"""`migctl dms lint` against the real source cluster and a DMS task in moto: each case gives
exactly the expected finding, a clean source none, the sandbox's schema no error, and
`dms start` refuses on an error finding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import psycopg
import pytest

from migctl.dms.lint import LintOptions, LintReport, lint_task
from migctl.dms.task import describe_task, resolve_task
from migctl.sandbox import moto_dms, schema
from tests.cli_support import Cli
from tests.conftest import PgPair

LIMITED_32KB = {
    "TargetMetadata": {
        "SupportLobs": True,
        "FullLobMode": False,
        "LimitedSizeLobMode": True,
        "LobMaxSize": 32,
    }
}


def rule(n: int, schema_name: str, table: str, action: str = "include") -> dict[str, Any]:
    return {
        "rule-type": "selection",
        "rule-id": str(n),
        "rule-name": str(n),
        "object-locator": {"schema-name": schema_name, "table-name": table},
        "rule-action": action,
    }


PUBLIC_AND_MARKER = [rule(1, "public", "%"), rule(2, "migctl", "cutover_marker")]


def make_task(
    name: str,
    *,
    rules: list[dict[str, Any]],
    settings: dict[str, Any] | None = None,
    endpoint: dict[str, Any] | None = None,
    attributes: str | None = None,
) -> str:
    """An instance, a postgres source endpoint and a full-load-and-cdc task in moto."""
    moto_dms.install()
    dms = boto3.client("dms", region_name="us-east-1")
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier=f"{name}-ri", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    arns = []
    for kind in ("source", "target"):
        extra: dict[str, Any] = {}
        if kind == "source" and endpoint:
            extra["PostgreSQLSettings"] = endpoint
        if kind == "source" and attributes:
            extra["ExtraConnectionAttributes"] = attributes
        arns.append(
            dms.create_endpoint(
                EndpointIdentifier=f"{name}-{kind}",
                EndpointType=kind,
                EngineName="postgres",
                ServerName="db.invalid",
                Port=5432,
                DatabaseName="payments",
                Username="dms",
                **extra,
            )["Endpoint"]["EndpointArn"]
        )
    task: dict[str, Any] = {
        "ReplicationTaskIdentifier": name,
        "SourceEndpointArn": arns[0],
        "TargetEndpointArn": arns[1],
        "ReplicationInstanceArn": instance["ReplicationInstanceArn"],
        "MigrationType": "full-load-and-cdc",
        "TableMappings": json.dumps({"rules": rules}),
    }
    if settings is not None:
        task["ReplicationTaskSettings"] = json.dumps(settings)
    dms.create_replication_task(**task)
    dms.describe_replication_tasks()  # creating -> ready
    return name


def run_lint(pg_pair: PgPair, name: str, **options: Any) -> LintReport:
    dms = boto3.client("dms", region_name="us-east-1")
    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        return lint_task(dms, conn, resolve_task(dms, name), LintOptions(**options))


def found(report: LintReport) -> set[tuple[str, str, str | None, str | None]]:
    return {(f.check, f.severity, f.table, f.column) for f in report.findings}


EVERY_CASE_DDL = """
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE amounts (id int PRIMARY KEY, rounded numeric, fits numeric, kept numeric(18,4));
INSERT INTO amounts VALUES (1, 1.12345678, 12.5, 1.5), (2, 3, 1.50000000, 2);
CREATE TABLE docs (id int PRIMARY KEY, body text, blob bytea, small jsonb);
INSERT INTO docs VALUES (1, repeat('x', 40000), '\\x00ff', '{}'), (2, 'short', NULL, NULL);
CREATE TABLE odd (id int PRIMARY KEY, m mood, addr inet, mac macaddr, r int4range, tags mood[],
                  at timestamptz, span interval);
CREATE TABLE nokey (a int, b text);
CREATE TABLE fullid (a int, b text);
ALTER TABLE fullid REPLICA IDENTITY FULL;
CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
CREATE TABLE arr_nokey (vals int[]);
CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE SCHEMA archive;
CREATE TABLE archive.old (id int PRIMARY KEY);
"""


@contextmanager
def held(pg_pair: PgPair) -> Iterator[None]:
    """A write transaction left open, and a prepared one, on the source."""
    with psycopg.connect(pg_pair.source_dsn) as holder:
        holder.execute("INSERT INTO nokey VALUES (0, 'held')")
        with psycopg.connect(pg_pair.source_dsn, autocommit=True) as prep:
            prep.execute("BEGIN")
            prep.execute("INSERT INTO fullid VALUES (0, 'prepared')")
            prep.execute(f"PREPARE TRANSACTION 'lint-{pg_pair.dbname}'")  # type: ignore[arg-type]
        try:
            yield
        finally:
            holder.rollback()


@pytest.mark.usefixtures("aws")
def test_every_case_gives_exactly_its_finding(pg_pair: PgPair) -> None:
    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        conn.execute(EVERY_CASE_DDL)  # type: ignore[arg-type]
    name = make_task("every-case", rules=[rule(1, "public", "%")], settings=LIMITED_32KB)
    with held(pg_pair):
        report = run_lint(pg_pair, name, transaction_age_seconds=0.0)
    assert found(report) == {
        ("array-without-key", "error", "public.arr_nokey", "vals"),
        ("lob-truncated", "error", "public.docs", "body"),
        ("marker-not-selected", "error", "migctl.cutover_marker", None),
        ("no-key", "error", "public.arr_nokey", None),
        ("no-key", "error", "public.nokey", None),
        ("numeric-unbounded", "error", "public.amounts", "rounded"),
        ("partition-duplicated", "error", "public.events", None),
        ("prepared-transactions", "error", None, None),
        ("type-unsupported", "error", "public.odd", "m"),
        ("type-unsupported", "error", "public.odd", "addr"),
        ("type-unsupported", "error", "public.odd", "mac"),
        ("type-unsupported", "error", "public.odd", "r"),
        ("type-unsupported", "error", "public.odd", "tags"),
        ("unlogged", "error", "public.scratch", None),
        ("lob-truncation-silent", "warning", None, None),
        ("long-transaction", "warning", None, None),
        ("no-key-full-identity", "warning", "public.fullid", None),
        ("not-selected", "warning", "archive.old", None),
        ("numeric-unbounded", "warning", "public.amounts", "fits"),
        ("type-partial", "warning", None, None),
    }
    assert len(report.findings) == 20 and report.exit_code == 1
    by_key = {(f.check, f.column): f for f in report.findings}
    rounded = by_key[("numeric-unbounded", "rounded")]
    assert "largest scale 8" in rounded.evidence and rounded.scan == "full scan of 2 rows"
    fits = by_key[("numeric-unbounded", "fits")]  # 1.50000000 needs one decimal, not eight
    assert "largest scale 1, integer digits 2" in fits.evidence
    body = by_key[("lob-truncated", "body")]
    assert "40,000 bytes" in body.evidence and "truncates it silently" in body.evidence
    assert "LobMaxSize to at least 40 KB" in body.fix
    partial = by_key[("type-partial", None)].evidence
    assert "interval: public.odd.span" in partial and "timestamptz: public.odd.at" in partial
    assert report.tables_checked == 9  # public's tables and partitions; not archive.old


CLEAN_DDL = """
CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric(18,4), memo text, sig bytea);
INSERT INTO payments SELECT g, g * 1.25, 'memo ' || g, '\\x01' FROM generate_series(1, 50) g;
CREATE SCHEMA migctl;
CREATE TABLE migctl.cutover_marker (id uuid PRIMARY KEY, cutover_id text NOT NULL);
"""


@pytest.mark.usefixtures("aws")
def test_a_clean_source_gives_no_finding(pg_pair: PgPair, cli: Cli) -> None:
    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        conn.execute(CLEAN_DDL)  # type: ignore[arg-type]
    name = make_task(
        "clean",
        rules=PUBLIC_AND_MARKER,
        settings=LIMITED_32KB,
        endpoint={"FailTasksOnLobTruncation": True},
    )
    result = cli("--output", "json", "dms", "lint", "--task", name, "--source", pg_pair.source_dsn)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert payload["findings"] == [] and payload["ok"] is True
    assert payload["task"]["fail_tasks_on_lob_truncation"] is True
    assert payload["task"]["settings_from"]["FailTasksOnLobTruncation"] == (
        "source endpoint PostgreSQLSettings"
    )
    assert payload["tables_checked"] == 2


@pytest.mark.usefixtures("aws")
def test_settings_from_extra_connection_attributes(pg_pair: PgPair) -> None:
    """MapUnboundedNumericAsString keeps 8 decimals in the full load: within CDC's precision
    cap of 28 it is a warning; truncation that fails the task is said so."""
    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, x numeric, body text);"
            "INSERT INTO t VALUES (1, 1.12345678, repeat('y', 2048))"
        )
    name = make_task(
        "attrs",
        rules=PUBLIC_AND_MARKER,
        settings={"TargetMetadata": {"LobMaxSize": 1}},
        attributes="mapUnboundedNumericAsString=TRUE;FAILTASKSONLOBTRUNCATION=true",
    )
    report = run_lint(pg_pair, name)
    assert found(report) == {
        ("numeric-unbounded", "warning", "public.t", "x"),
        ("lob-truncated", "error", "public.t", "body"),
    }
    lob = next(f for f in report.findings if f.check == "lob-truncated")
    assert "the task fails mid-load" in lob.evidence
    assert report.task.origins["LobMaxSize"] == "task settings"
    assert report.task.origins["FullLobMode"] == "DMS default"


@pytest.mark.usefixtures("aws")
def test_a_large_table_is_sampled_and_says_so(pg_pair: PgPair) -> None:
    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE big (id int PRIMARY KEY, x numeric);"
            "INSERT INTO big SELECT g, g / 8.0 FROM generate_series(1, 20000) g; ANALYZE big"
        )
    name = make_task("sampled", rules=PUBLIC_AND_MARKER)
    report = run_lint(pg_pair, name, max_rows=500)
    (finding,) = report.findings
    assert finding.check == "numeric-unbounded" and finding.severity == "warning"
    assert finding.scan is not None and finding.scan.startswith("sample of ")
    assert "rows outside the sample were not read" in finding.evidence


@pytest.mark.usefixtures("aws")
def test_the_sandbox_schema_has_no_error_finding(pg_pair: PgPair) -> None:
    """The sandbox's tables and its task's settings (limited LOB mode, truncation fails the
    task): `make demo` starts DMS through the lint."""
    with psycopg.connect(pg_pair.source_dsn) as conn:
        schema.create_schema(conn)
        schema.seed(conn, 2_000, jobs=1)
    name = make_task(
        "sandbox",
        rules=PUBLIC_AND_MARKER,
        settings=LIMITED_32KB,
        endpoint={"FailTasksOnLobTruncation": True},
    )
    report = run_lint(pg_pair, name)
    assert report.errors == ()
    assert found(report) == {
        ("no-key-full-identity", "warning", "public.audit_log", None),
        ("type-partial", "warning", None, None),
    }


@pytest.mark.usefixtures("aws")
def test_dms_start_refuses_on_an_error_finding(pg_pair: PgPair, cli: Cli) -> None:
    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE nokey (a int)")
    name = make_task("refused", rules=PUBLIC_AND_MARKER)
    dsn = pg_pair.source_dsn
    refused = cli("dms", "start", "--task", name, "--source", dsn, "--yes", "--interval", "0")
    assert refused.code == 1
    assert "refusing to start refused: the lint found 1 error finding(s): no-key public.nokey" in (
        refused.stderr
    )
    dms = boto3.client("dms", region_name="us-east-1")
    assert describe_task(dms, resolve_task(dms, name).arn).status == "ready"  # never started
    accepted = cli(
        "dms", "start", "--task", name, "--source", dsn, "--yes", "--interval", "0",
        "--accept-lint-risks",
    )  # fmt: skip
    assert accepted.code == 0, accepted.stderr
    assert "starting despite 1 error finding(s)" in accepted.stderr
    assert describe_task(dms, resolve_task(dms, name).arn).status == "running"


@pytest.mark.usefixtures("aws")
def test_bad_input_is_one_line(pg_pair: PgPair, cli: Cli) -> None:
    name = make_task("inputs", rules=PUBLIC_AND_MARKER)
    unknown = cli("dms", "lint", "--task", "no-such-task", "--source", pg_pair.source_dsn)
    assert unknown.code == 2
    assert unknown.stderr.startswith("migctl: error: no DMS replication task 'no-such-task'")
    unreachable = cli("dms", "lint", "--task", name, "--source", "postgresql://u@127.0.0.1:1/x")
    assert unreachable.code == 3 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.startswith("migctl: error: cannot connect to")
    no_source = cli("dms", "start", "--task", name, "--yes")
    assert no_source.code == 2
    assert "dms start lints the source first: no source database given" in no_source.stderr


class _Clients:
    """What a cutover context asks for its clients: in-process moto's."""

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1")


@pytest.mark.usefixtures("aws")
def test_the_cutover_preflight_fails_on_an_error_finding(pg_pair: PgPair) -> None:
    """Before anything is frozen: the evidence is in the failure, the warnings are reported."""
    import dataclasses

    from migctl.config import DmsSettings, EcsSettings, Settings
    from migctl.cutover.context import CutoverContext
    from migctl.cutover.model import StepFailed, StepMemo
    from migctl.cutover.preflight import preflight
    from migctl.db import Database

    with psycopg.connect(pg_pair.source_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE nokey (a int); CREATE TABLE fullid (a int);"
            "ALTER TABLE fullid REPLICA IDENTITY FULL"
        )
    name = make_task("preflight", rules=PUBLIC_AND_MARKER)
    settings = dataclasses.replace(
        Settings(), dms=DmsSettings(task=name), ecs=EcsSettings(gate_alarms=("gate",))
    )
    notes: list[tuple[str, Any]] = []
    ctx = CutoverContext(
        settings,
        _Clients(),  # type: ignore[arg-type]
        Database(pg_pair.source_dsn, "source"),
        Database(pg_pair.target_dsn, "target"),
        report=lambda message, details: notes.append((message, details)),
    )
    with pytest.raises(StepFailed) as failed:
        preflight(ctx, StepMemo())
    assert failed.value.message.startswith(
        "dms lint: 1 error finding(s): no-key public.nokey. no-key public.nokey: no primary key "
        "and REPLICA IDENTITY DEFAULT"
    )
    assert [f["check"] for f in failed.value.details["lint_errors"]] == ["no-key"]
    assert [m for m, d in notes if d.get("warning")] == [
        "lint no-key-full-identity public.fullid: no primary key; REPLICA IDENTITY FULL lets "
        "updates and deletes reach DMS, which matches them on every column (LOB columns make "
        "this unpredictable, and DMS validation skips tables without a primary key)"
    ]
