"""What an operator reads, pinned at a fixed width: the validate summary, `dms status`, the cutover.

Each test renders a fixed result through the real renderer into 100 columns, no
colour, and compares it with ``tests/snapshots/<name>.txt``. A change to what
people read is then a reviewed change to that file: rerun with
``MIGCTL_UPDATE_SNAPSHOTS=1`` to write the new text, and read the diff.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Callable
from pathlib import Path

from migctl.cutover.result import CutoverResult, StepSummary
from migctl.dms.metrics import CdcMetrics, Datapoint, MetricSeries
from migctl.dms.task import StatusReport, TableStats, TaskRef, TaskSnapshot, TaskStats
from migctl.render import Output
from migctl.render.cutover import render_result
from migctl.render.dms import render_status
from migctl.render.validate import render_validation
from migctl.validate.report import SequenceResult, TableResult, ValidationReport

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
WIDTH = 100
AT = dt.datetime(2026, 12, 5, 1, 0, tzinfo=dt.UTC)


def rendered(render: Callable[[Output], None]) -> str:
    stdout, stderr = io.StringIO(), io.StringIO()
    render(Output("table", stdout=stdout, stderr=stderr, width=WIDTH))
    return f"--- stdout\n{stdout.getvalue()}--- stderr\n{stderr.getvalue()}"


def matches_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("MIGCTL_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.is_file(), f"no snapshot {path}: rerun with MIGCTL_UPDATE_SNAPSHOTS=1, read it"
    assert text == path.read_text(), f"{name} changed: rerun with MIGCTL_UPDATE_SNAPSHOTS=1"


def test_the_validate_summary() -> None:
    report = ValidationReport(
        source="postgresql://app:***@onprem.example:5432/payments",
        target="postgresql://app:***@aurora.example:5432/payments",
        duration_seconds=12.4,
        tables=(
            TableResult(name=("public", "payments"), status="match", source_rows=2_000_000,
                        target_rows=2_000_000),
            TableResult(
                name=("public", "ledger_entries"), status="mismatch", source_rows=300_000,
                target_rows=300_001, missing_in_source_count=1, changed_count=2,
                missing_in_source=((300_001,),), changed=((11,), (123_456,)),
            ),
            TableResult(name=("billing", "invoice.v2"), status="match", source_rows=40,
                        target_rows=40, equal_by_value_count=3),
            TableResult(name=("audit", "events"), status="error",
                        error="DatabaseError: canceling statement due to statement timeout"),
            TableResult(name=("public", "refunds"), status="missing_in_target", source_rows=12),
        ),
        sequences=(
            SequenceResult(name=("public", "payments_id_seq"), status="behind",
                           source_last_value=2_000_000, target_last_value=1,
                           owner=("public", "payments"), owner_column="id",
                           column_max=2_000_000),
            SequenceResult(name=("public", "ledger_entries_id_seq"), status="match",
                           source_last_value=300_000, target_last_value=300_000),
        ),
    )  # fmt: skip
    matches_snapshot("validate_summary", rendered(lambda out: render_validation(out, report)))


def _series(name: str, *values: float) -> MetricSeries:
    return MetricSeries(
        name, tuple(Datapoint(AT - dt.timedelta(minutes=i), v) for i, v in enumerate(values))
    )


def test_the_dms_status_table() -> None:
    stats = TaskStats(100, 3, 0, 0, 1, 3_600.0, AT, AT, None, AT, AT)
    task = TaskSnapshot(
        "arn:aws:dms:us-east-1:123456789012:task:ABCDEFGHIJKLMNOP", "payments-prod-task",
        "full-load-and-cdc", "running", "cdc", None, None,
        "checkpoint:V1#27#0000000A/1B2C3D4E#0#0#*#0#0", None, AT, stats,
    )  # fmt: skip
    tables = (
        TableStats("public", "payments", "Table completed", 2_000_000, 0, 1200, 340, 2, 0,
                   "Validated", 0, 0, 0, AT),
        TableStats("public", "ledger_entries", "Table error", 300_000, 15, 80, 0, 0, 0,
                   "Mismatched records", 4, 0, 0, AT),
    )  # fmt: skip
    cdc = CdcMetrics(
        window_start=AT - dt.timedelta(minutes=15),
        window_end=AT,
        period_seconds=60,
        dimensions={"ReplicationInstanceIdentifier": "payments-prod-dms",
                    "ReplicationTaskIdentifier": "ABCDEFGHIJKLMNOP"},
        latency_source=_series("CDCLatencySource", 1.0, 2.0),
        latency_target=_series("CDCLatencyTarget", 3.0, 9.0, 4.0),
        incoming_changes=MetricSeries("CDCIncomingChanges", ()),
    )  # fmt: skip
    report = StatusReport(
        ref=TaskRef(task.arn, task.identifier, "arn:aws:dms:us-east-1:123456789012:rep:XYZ",
                    "payments-prod-dms", "full-load-and-cdc"),
        task=task,
        tables=tables,
        tables_error=None,
        cdc=cdc,
        problems=("1 table(s) in error: public.ledger_entries",),
    )  # fmt: skip
    matches_snapshot("dms_status", rendered(lambda out: render_status(out, report)))


def test_the_cutover_summary() -> None:
    def step(
        name: str, title: str, status: str, seconds: float | None, error: str | None = None
    ) -> StepSummary:
        return StepSummary(
            name, title, status, 1 if seconds is not None else 0, seconds, error, None, {}
        )

    result = CutoverResult(
        outcome="rolled_back",
        exit_code=4,
        cutover_id="20261205T010000Z-a1b2c3",
        journal=".migctl/cutover-prod.jsonl",
        steps=(
            step("preflight", "Preflight", "done", 4.2),
            step("freeze_writes", "Freeze writes on the source", "undone", 0.8),
            step("marker", "Marker row through CDC", "done", 3.1),
            step("validate", "Validate", "failed", 61.0,
                 "1 table(s) differ between source and target: public.ledger_entries (mismatch)"),
            step("stop_replication", "Stop replication", "pending", None),
            step("sync_sequences", "Sync sequences", "pending", None),
            step("rollout", "Roll out the new image", "pending", None),
            step("post_checks", "Post-checks", "pending", None),
        ),
        write_freeze_seconds=65.0,
        write_freeze_open=False,
        reason="validate failed: 1 table(s) differ between source and target",
        next_steps=("run 'migctl validate' for the keys",),
        report_command="migctl cutover report --cutover 20261205T010000Z-a1b2c3",
    )  # fmt: skip
    matches_snapshot("cutover_summary", rendered(lambda out: render_result(out, result)))
