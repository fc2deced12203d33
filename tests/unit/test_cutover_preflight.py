"""Preflight's pure judgements: the CDC latency window, and whether DMS replicates the marker."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from migctl.cutover.preflight import latency_held, marker_replicated
from migctl.dms.metrics import CdcMetrics, Datapoint, MetricSeries

NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def metrics(*values: float | None, newest_age: int = 60, period: int = 60) -> CdcMetrics:
    """CDCLatencyTarget per period, newest first; None is a missing period."""
    newest = NOW - dt.timedelta(seconds=newest_age)
    points = tuple(
        Datapoint(newest - dt.timedelta(seconds=period * i), v)
        for i, v in enumerate(values)
        if v is not None
    )
    empty = MetricSeries("x", ())
    return CdcMetrics(
        window_start=NOW - dt.timedelta(hours=1),
        window_end=NOW,
        period_seconds=period,
        dimensions={"ReplicationTaskIdentifier": "ABC"},
        latency_source=empty,
        latency_target=MetricSeries("CDCLatencyTarget", points),
        incoming_changes=empty,
    )


@pytest.mark.parametrize(
    ("cdc", "held", "why"),
    [
        (metrics(), False, "no CDCLatencyTarget datapoints yet (ReplicationTaskIdentifier=ABC)"),
        (
            metrics(1, 1, 1, newest_age=600),
            False,
            "the newest CDCLatencyTarget datapoint is 600s old",
        ),
        (metrics(1, 2, 9, 1), True, "CDCLatencyTarget <= 5s for the last 2 periods"),
        (metrics(1, None, 1, 1), False, "CDCLatencyTarget <= 5s for 1 of 2 periods"),
        (metrics(7, 1, 1), False, "CDCLatencyTarget <= 5s for 0 of 2 periods, now over 5s"),
    ],
)
def test_the_latency_window(cdc: CdcMetrics, held: bool, why: str) -> None:
    assert latency_held(cdc, max_latency=5, periods=2, now=NOW) == (held, why)


def mappings(*rules: tuple[str, str, str]) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rule-type": "selection",
                    "rule-id": str(i),
                    "rule-name": str(i),
                    "object-locator": {"schema-name": schema, "table-name": table},
                    "rule-action": action,
                }
                for i, (schema, table, action) in enumerate(rules, start=1)
            ]
        }
    )


@pytest.mark.parametrize(
    ("table_mappings", "covered"),
    [
        (mappings(("public", "%", "include")), False),
        (mappings(("public", "%", "include"), ("migctl", "%", "include")), True),
        (mappings(("%", "%", "include")), True),
        (mappings(("mig%", "cutover_marker", "explicit")), True),
        (mappings(("%", "%", "include"), ("migctl", "cutover_%", "exclude")), False),
        (None, None),
        ("not json", None),
    ],
)
def test_whether_the_task_replicates_the_marker(
    table_mappings: str | None, covered: bool | None
) -> None:
    assert marker_replicated(table_mappings) is covered


@pytest.mark.usefixtures("aws")
def test_preflight_stops_before_any_change_when_the_task_does_not_replicate_the_marker() -> None:
    from dms_support import in_cdc, make_task

    from migctl.aws import AwsClients
    from migctl.config import AlarmSettings, DmsSettings, ProjectSettings, Settings
    from migctl.cutover.context import CutoverContext
    from migctl.cutover.model import StepFailed, StepMemo
    from migctl.cutover.preflight import preflight
    from migctl.db import Database

    world = make_task()  # its mappings select public.% only
    in_cdc(world)
    settings = Settings(
        project=ProjectSettings(region="us-east-1"),
        dms=DmsSettings(task=world.task_arn),
        alarms=AlarmSettings(prefix="payments-test-"),
    )
    ctx = CutoverContext(
        settings=settings,
        aws=AwsClients(settings.project),
        source=Database("host=127.0.0.1 dbname=unused"),
        target=Database("host=127.0.0.1 dbname=unused"),
    )
    with pytest.raises(StepFailed, match=r"do not select migctl\.cutover_marker"):
        preflight(ctx, StepMemo())
