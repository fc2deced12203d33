"""`migctl dms status`: phases, full-load progress, failures, tables and CDC metrics, via moto."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from dms_support import in_cdc, make_task, put_cdc_metrics, set_full_load, start_running

from migctl.dms.task import TaskStats, derive_phase, task_status
from migctl.sandbox import moto_dms
from tests.cli_support import Cli

pytestmark = pytest.mark.usefixtures("aws")

NOW = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)
TASK_KEYS = {
    "arn", "identifier", "resource_id", "instance_identifier", "migration_type", "status", "phase",
    "stop_reason", "last_failure_message", "recovery_checkpoint", "cdc_stop_position", "started_at",
    "full_load_percent", "tables_loaded", "tables_loading", "tables_queued", "tables_errored",
    "elapsed_seconds", "fresh_start_date", "start_date", "stop_date", "full_load_start_date",
    "full_load_finish_date",
}  # fmt: skip
TABLE_KEYS = {
    "schema", "table", "state", "full_load_rows", "full_load_error_rows", "inserts", "updates",
    "deletes", "ddls", "validation_state", "validation_failed_records",
    "validation_pending_records", "validation_suspended_records", "last_updated_at",
}  # fmt: skip
SERIES_KEYS = {"latest", "latest_at", "maximum", "datapoints"}


def stats(
    *,
    finish: dt.datetime | None = None,
    start: dt.datetime | None = NOW,
    loading: int = 0,
    queued: int = 0,
) -> TaskStats:
    return TaskStats(50, 1, loading, queued, 0, 1.0, start, start, None, start, finish)


@pytest.mark.parametrize(
    ("status", "migration_type", "task_stats", "phase"),
    [
        ("ready", "full-load-and-cdc", stats(start=None), "not-running"),
        ("creating", "full-load-and-cdc", stats(start=None), "not-running"),
        ("starting", "full-load-and-cdc", stats(), "starting"),
        ("running", "full-load-and-cdc", stats(), "full-load"),
        ("running", "full-load-and-cdc", stats(finish=NOW), "cdc"),
        ("running", "full-load-and-cdc", stats(finish=NOW, loading=1), "full-load"),
        ("running", "full-load-and-cdc", stats(finish=NOW, queued=2), "full-load"),
        # A finish date older than the last full-load start is left over from an earlier run.
        ("running", "full-load-and-cdc", stats(finish=NOW - dt.timedelta(days=1)), "full-load"),
        ("running", "cdc", stats(start=None), "cdc"),
        ("running", "full-load", stats(finish=NOW), "full-load"),
        ("stopping", "full-load-and-cdc", stats(finish=NOW), "stopped"),
        ("stopped", "full-load-and-cdc", stats(finish=NOW), "stopped"),
        ("failed", "full-load-and-cdc", stats(), "failed"),
    ],
)
def test_phase_is_derived_as_the_reference_defines(
    status: str, migration_type: str, task_stats: TaskStats, phase: str
) -> None:
    assert derive_phase(status, migration_type, task_stats) == phase


def test_full_load_progress_is_reported(cli: Cli) -> None:
    world = make_task()
    start_running(world)
    set_full_load(world, percent=42, loaded=3, loading=2, queued=5)
    result = cli("--output", "json", "dms", "status", "--task", world.task_name)
    assert result.code == 0, result.stderr
    doc = result.json()
    assert set(doc) == {"healthy", "problems", "task", "tables", "tables_error", "cdc", "reverse"}
    assert doc["reverse"] is None  # --task names one task: no reverse task beside it
    task = doc["task"]
    assert set(task) == TASK_KEYS
    assert (task["status"], task["phase"], task["full_load_percent"]) == (
        "running",
        "full-load",
        42,
    )
    assert (
        task["tables_loaded"],
        task["tables_loading"],
        task["tables_queued"],
        task["tables_errored"],
    ) == (3, 2, 5, 0)
    assert task["elapsed_seconds"] == 754.0
    assert (
        task["resource_id"] == world.resource_id and task["instance_identifier"] == "migctl-test-ri"
    )
    assert doc["healthy"] is True and doc["problems"] == []


def test_running_then_failed_with_stop_reason_exits_1(cli: Cli) -> None:
    world = make_task()
    start_running(world)
    assert cli("--output", "json", "dms", "status", "--task", world.task_name).code == 0
    moto_dms.set_task(
        world.task_arn,
        status="failed",
        stop_reason="Stop Reason FATAL_ERROR",
        last_failure_message="Last Error Replication task out of memory.",
    )
    result = cli("--output", "json", "dms", "status", "--task", world.task_name)
    assert result.code == 1
    doc = result.json()
    assert doc["task"]["phase"] == "failed"
    assert doc["task"]["stop_reason"] == "Stop Reason FATAL_ERROR"
    assert "out of memory" in doc["task"]["last_failure_message"]
    assert doc["healthy"] is False
    assert len(doc["problems"]) == 1 and "FATAL_ERROR" in doc["problems"][0]
    table = cli("dms", "status", "--task", world.task_name)
    assert table.code == 1
    assert "failed" in table.stdout and "FATAL_ERROR" in table.stdout and "problem:" in table.stderr


@pytest.mark.parametrize(
    ("reason", "healthy"),
    [
        ("Stop Reason FATAL_ERROR", False),
        ("Stop Reason RECOVERABLE_ERROR", False),
        ("Stop Reason STOPPED_DUE_TO_LOW_DISK", False),
        ("Stop Reason SOMETHING_NEW", False),  # a reason we do not know is not a clean stop
        ("Stop Reason NORMAL", True),
        ("Stop Reason STOPPED_AT_SERVER_TIME", True),
        (None, True),
    ],
)
def test_a_task_stopped_on_an_error_is_unhealthy_and_dms_stop_says_why(
    cli: Cli, reason: str | None, healthy: bool
) -> None:
    world = make_task()
    start_running(world)
    moto_dms.set_task(
        world.task_arn,
        status="stopped",
        stop_reason=reason,
        last_failure_message="Last Error Disk full." if not healthy else None,
    )
    result = cli("--output", "json", "dms", "status", "--task", world.task_name)
    assert (result.code, result.json()["healthy"]) == ((0, True) if healthy else (1, False))
    if not healthy:
        assert (
            "stopped on an error" in result.json()["problems"][0]
            and reason in (result.json()["problems"][0])
        )
    stop = cli("--output", "json", "dms", "stop", "--task", world.task_name, "--yes")
    assert stop.code == 0, stop.stderr
    said = json.dumps(stop.json())
    assert ("on an error" in said and "Disk full" in said) is (not healthy)


def test_table_statistics_errors_and_validation_failures_exit_1(cli: Cli) -> None:
    world = make_task()
    in_cdc(world)
    moto_dms.set_table_statistics(
        world.task_arn,
        [
            {
                "SchemaName": "public",
                "TableName": "payments",
                "FullLoadRows": 1200,
                "Inserts": 7,
                "Updates": 3,
            },
            {"SchemaName": "public", "TableName": "refunds", "TableState": "Table error"},
            {
                "SchemaName": "ledger",
                "TableName": "entries",
                "ValidationState": "Mismatched records",
                "ValidationFailedRecords": 2,
                "ValidationSuspendedRecords": 1,
                "ValidationPendingRecords": 5,
            },
        ],
    )
    result = cli("--output", "json", "dms", "status", "--task", world.task_name)
    assert result.code == 1
    doc = result.json()
    tables = {f"{t['schema']}.{t['table']}": t for t in doc["tables"]}
    assert list(tables) == ["ledger.entries", "public.payments", "public.refunds"]
    assert all(set(t) == TABLE_KEYS for t in doc["tables"])
    assert (tables["public.payments"]["full_load_rows"], tables["public.payments"]["inserts"]) == (
        1200,
        7,
    )
    entries = tables["ledger.entries"]
    assert (entries["validation_failed_records"], entries["validation_suspended_records"]) == (2, 1)
    assert entries["validation_pending_records"] == 5
    assert len(doc["problems"]) == 2
    assert "public.refunds" in doc["problems"][0] and "ledger.entries" in doc["problems"][1]


def test_pending_validation_alone_is_healthy(cli: Cli) -> None:
    world = make_task()
    in_cdc(world)
    moto_dms.set_table_statistics(
        world.task_arn,
        [
            {
                "SchemaName": "public",
                "TableName": "t",
                "ValidationState": "Pending records",
                "ValidationPendingRecords": 9,
            }
        ],
    )
    assert cli("--output", "json", "dms", "status", "--task", world.task_name).code == 0


def test_every_page_of_table_statistics_is_read() -> None:
    world = make_task()
    in_cdc(world)
    moto_dms.set_table_statistics(
        world.task_arn, [{"SchemaName": "s", "TableName": f"t{i:03d}"} for i in range(230)]
    )
    report = task_status(world.dms, world.cloudwatch, world.ref(), minutes=15, period_seconds=60)
    assert report.tables is not None and len(report.tables) == 230
    assert world.count("DescribeTableStatistics") == 3  # 100 + 100 + 30


def test_metrics_under_the_arn_resource_id_are_picked_up_in_one_call(cli: Cli) -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[8, 3, 2], incoming=[40, 0, 0], latency_source=[0, 0, 0])
    calls_before = world.count("GetMetricData")
    report = task_status(world.dms, world.cloudwatch, world.ref(), minutes=15, period_seconds=60)
    assert world.count("GetMetricData") == calls_before + 1
    assert report.cdc.latency_target.latest == 2 and report.cdc.latency_target.maximum == 8
    assert report.cdc.incoming_changes.latest == 0 and report.cdc.incoming_changes.count == 3
    doc = cli("--output", "json", "dms", "status", "--task", world.task_name).json()
    cdc = doc["cdc"]
    assert cdc["dimensions"] == {
        "ReplicationInstanceIdentifier": "migctl-test-ri",
        "ReplicationTaskIdentifier": world.resource_id,
    }
    assert set(cdc["latency_target_seconds"]) == SERIES_KEYS
    assert (
        cdc["latency_target_seconds"]["latest"] == 2
        and cdc["latency_target_seconds"]["datapoints"] == 3
    )
    assert cdc["incoming_changes"]["maximum"] == 40
    assert cdc["statistic"] == "Maximum" and cdc["datapoints"] == 9


def test_metrics_under_the_task_name_are_not_picked_up_and_say_so(cli: Cli) -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(
        world, latency_target=[1, 1, 1], incoming=[0, 0, 0], task_dimension=world.task_name
    )
    result = cli("--output", "json", "dms", "status", "--task", world.task_name)
    assert result.code == 0
    cdc = result.json()["cdc"]
    assert cdc["datapoints"] == 0
    for key in ("latency_source_seconds", "latency_target_seconds", "incoming_changes"):
        assert cdc[key] == {"latest": None, "latest_at": None, "maximum": None, "datapoints": 0}
    table = cli("dms", "status", "--task", world.task_name)
    assert "no datapoints" in table.stdout and "0s" not in table.stdout


def test_task_is_found_by_arn_resource_id_config_and_stack_output(cli: Cli, tmp_path: Path) -> None:
    world = make_task("orders-task")
    for value in (world.task_arn, world.resource_id):
        result = cli("--output", "json", "dms", "status", "--task", value)
        assert result.code == 0 and result.json()["task"]["identifier"] == "orders-task"
    (tmp_path / ".migctl").mkdir()
    (tmp_path / ".migctl" / "outputs-test.json").write_text(
        json.dumps({"dmsReplicationTaskArn": world.task_arn})
    )
    result = cli("--output", "json", "dms", "status")
    assert result.code == 0 and result.json()["task"]["arn"] == world.task_arn
    config = tmp_path / "migctl.toml"
    config.write_text('[dms]\ntask = "orders-task"\ninstance = "ri-from-config"\n')
    doc = cli("--output", "json", "dms", "status").json()
    assert doc["cdc"]["dimensions"]["ReplicationInstanceIdentifier"] == "ri-from-config"


def test_unknown_or_missing_task_is_one_line_exit_2(cli: Cli) -> None:
    make_task()
    result = cli("dms", "status", "--task", "no-such-task")
    assert result.code == 2 and result.stdout == ""
    assert (
        result.stderr.count("\n") == 1 and "no DMS replication task 'no-such-task'" in result.stderr
    )
    missing = cli("dms", "status")
    assert (
        missing.code == 2
        and "--task" in missing.stderr
        and "dmsReplicationTaskArn" in missing.stderr
    )


def test_never_started_task_is_not_running_and_healthy(cli: Cli) -> None:
    world = make_task()
    result = cli("--output", "json", "dms", "status", "--task", world.task_name)
    assert result.code == 0
    doc = result.json()
    assert (doc["task"]["status"], doc["task"]["phase"]) == ("ready", "not-running")
    assert doc["tables"] == [] and doc["task"]["started_at"] is None


@pytest.mark.parametrize("command", ["start", "status", "watch", "stop"])
def test_dms_help_loads_no_aws_sdk_or_live_view(command: str) -> None:
    import subprocess
    import sys

    code = (
        "import sys, runpy\n"
        f"sys.argv = ['migctl', 'dms', {command!r}, '--help']\n"
        "try:\n    runpy.run_module('migctl', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = ('boto3', 'botocore', 'moto', 'rich.live', 'migctl.dms.task')\n"
        "print('LOADED=' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED=\n" in out.stdout and "Example: migctl" in out.stdout
