"""Tables fit COLUMNS (or the terminal), never fold a name or an ARN in the middle, and show
counts with thousands separators; JSON keeps the plain integers."""

from __future__ import annotations

import io

import pytest
from dms_support import in_cdc, make_task

from migctl.render import Output, console_width
from migctl.render.validate import render_validation
from migctl.sandbox import moto_dms
from migctl.validate.report import TableResult, ValidationReport
from tests.cli_support import Cli

LONG = "settlement_batches_archive_2024_q4_reconciled"


@pytest.mark.usefixtures("aws")
def test_dms_status_fits_columns_and_never_folds_a_name_or_an_arn(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_task()
    in_cdc(world)
    moto_dms.set_table_statistics(
        world.task_arn,
        [{"SchemaName": "public", "TableName": LONG, "FullLoadRows": 1234567, "Inserts": 12345}],
    )
    monkeypatch.setenv("COLUMNS", "70")
    narrow = cli("dms", "status", "--task", world.task_name)
    assert narrow.code == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(map(len, lines)) <= 70
    assert "1,234,567" in narrow.stdout and "12,345 / 0 / 0" in narrow.stdout
    (name_line,) = [line for line in lines if "public.settle" in line]
    assert "…" in name_line and "reconciled" not in narrow.stdout  # shortened, not continued
    arn_at = next(i for i, line in enumerate(lines) if line.startswith("arn "))
    assert lines[arn_at + 1].startswith("instance ")  # the ARN is on one line
    assert world.task_arn[:20] in lines[arn_at]

    monkeypatch.setenv("COLUMNS", "200")
    wide = cli("dms", "status", "--task", world.task_name)
    assert f"public.{LONG}" in wide.stdout and world.task_arn in wide.stdout

    doc = cli("--output", "json", "dms", "status", "--task", world.task_name).json()
    assert doc["tables"][0]["full_load_rows"] == 1234567 and doc["tables"][0]["inserts"] == 12345


def test_validate_summary_keeps_names_and_counts_whole_at_any_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = ValidationReport(
        source="postgresql://app:***@src:5432/pay",
        target="postgresql://app:***@dst:5432/pay",
        duration_seconds=1.0,
        tables=(
            TableResult(
                name=("public", LONG),
                status="error",
                source_rows=1234567,
                target_rows=None,
                error="DatabaseError: canceling statement due to statement timeout",
            ),
        ),
    )
    for columns in ("80", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        stdout = io.StringIO()
        render_validation(Output("table", stdout=stdout, stderr=io.StringIO()), report)
        lines = stdout.getvalue().splitlines()
        assert max(map(len, lines[:-1])) <= int(columns)  # the table; its note follows whole
        assert "1,234,567" in stdout.getvalue()
        assert lines[-1] == f"public.{LONG}: {report.tables[0].error}"
        in_table = [line for line in lines[:-1] if "public.sett" in line or "reconciled" in line]
        assert len(in_table) == 1  # one line: whole, or shortened with …


def test_the_width_comes_from_columns_then_the_terminal_then_a_wide_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("COLUMNS", raising=False)
    assert console_width(io.StringIO()) == 200  # a pipe, a file, CI: names are not folded at 80
    assert console_width(Tty()) is None  # a terminal: rich measures it
    assert console_width(Tty(), 100) == 100
    monkeypatch.setenv("COLUMNS", "90")
    assert console_width(io.StringIO()) == 90 and console_width(Tty()) == 90


def test_alarms_never_fold_a_name_or_a_dimension_at_any_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The alarms table at 80 and 200 columns: each alarm name and each dimension value on
    one line (whole, or shortened with …), never continued on the next line."""
    from migctl.alarms import AlarmReport, AlarmStatus
    from migctl.render.alarms import render_alarm_report

    group = "targetgroup/payments-production-standby/0123456789abcdef"
    alarm = AlarmStatus(
        name=f"payments-production-{LONG}-healthy-hosts",
        kind="metric",
        state="OK",
        reason="Threshold Crossed: 1 datapoint [2.0] was not less than the threshold (2.0).",
        updated_at=None,
        namespace="AWS/ApplicationELB",
        metric="HealthyHostCount",
        dimensions={
            "LoadBalancer": "app/payments-production-alb/0123456789abcdef",
            "TargetGroup": group,
        },
    )
    for columns in ("80", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        stdout = io.StringIO()
        render_alarm_report(
            Output("table", stdout=stdout, stderr=io.StringIO()), AlarmReport(alarms=(alarm,))
        )
        text = stdout.getvalue()
        assert max(map(len, text.splitlines())) <= int(columns), text
        rows = [
            [cell.strip() for cell in line.split("│")[1:-1]]
            for line in text.splitlines()
            if line.startswith("│")
        ]
        names = [row[0] for row in rows if row[0]]
        dimensions = [row[4] for row in rows if row[4]]
        assert len(names) == 1 and alarm.name.startswith(names[0].rstrip("…")), text
        wanted = [f"{k}={v}" for k, v in sorted(alarm.dimensions.items())]
        assert len(dimensions) == len(wanted), text  # one line each, none continued
        for shown, whole in zip(dimensions, wanted, strict=True):
            assert whole.startswith(shown.rstrip("…")) and len(shown) > 4, text
        reason = " ".join(row[5] for row in rows if row[5])
        assert reason == alarm.reason, text  # the prose wraps, whole, at any width
