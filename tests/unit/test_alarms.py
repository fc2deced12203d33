"""`migctl alarms` against moto: states, pagination, waiting, throttling, JSON shape."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from migctl.alarms import AlarmSelector, check_alarms, wait_for_ok
from migctl.aws import AwsClients
from migctl.config import ProjectSettings
from migctl.errors import UsageError
from tests.cli_support import Cli

pytestmark = pytest.mark.usefixtures("aws")


def cloudwatch() -> Any:
    return boto3.client("cloudwatch", region_name="us-east-1")


def put_alarm(name: str, *, state: str | None = None, dims: dict[str, str] | None = None) -> None:
    cw = cloudwatch()
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HealthyHostCount",
        Dimensions=[{"Name": k, "Value": v} for k, v in (dims or {}).items()],
        Statistic="Minimum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=2,
        ComparisonOperator="LessThanThreshold",
    )
    if state:
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"test set {state}")


def test_all_ok_exits_0_with_the_documented_json(cli: Cli) -> None:
    put_alarm(
        "payments-test-healthy",
        dims={"LoadBalancer": "app/alb/1", "TargetGroup": "targetgroup/tg/2"},
    )
    put_alarm("payments-test-5xx")
    put_alarm("other-alarm", state="ALARM")
    result = cli("--output", "json", "alarms", "--prefix", "payments-test-")
    assert result.code == 0, result.stderr
    payload = result.json()
    assert payload["ok"] is True
    assert [a["name"] for a in payload["alarms"]] == ["payments-test-5xx", "payments-test-healthy"]
    alarm = payload["alarms"][1]
    assert set(alarm) >= {
        "name",
        "state",
        "reason",
        "updated_at",
        "namespace",
        "metric",
        "dimensions",
    }
    assert alarm["state"] == "OK" and alarm["namespace"] == "AWS/ApplicationELB"
    assert alarm["metric"] == "HealthyHostCount"
    assert alarm["dimensions"] == {"LoadBalancer": "app/alb/1", "TargetGroup": "targetgroup/tg/2"}
    assert alarm["updated_at"].endswith("+00:00")


@pytest.mark.parametrize("state", ["ALARM", "INSUFFICIENT_DATA"])
def test_alarm_or_insufficient_data_exits_1(cli: Cli, state: str) -> None:
    put_alarm("payments-test-ok")
    put_alarm("payments-test-bad", state=state)
    result = cli("--output", "json", "alarms", "--prefix", "payments-test-")
    assert result.code == 1
    payload = result.json()
    assert payload["ok"] is False
    bad = next(a for a in payload["alarms"] if a["name"] == "payments-test-bad")
    assert bad["state"] == state and bad["reason"] == f"test set {state}"


def test_allow_insufficient_data_counts_it_as_ok(cli: Cli) -> None:
    put_alarm("payments-test-new", state="INSUFFICIENT_DATA")
    assert cli("alarms", "--prefix", "payments-test-", "--allow-insufficient-data").code == 0
    put_alarm("payments-test-fire", state="ALARM")
    assert cli("alarms", "--prefix", "payments-test-", "--allow-insufficient-data").code == 1


def test_table_output_names_the_alarms_and_states(cli: Cli) -> None:
    put_alarm("payments-test-fire", state="ALARM")
    result = cli("alarms", "--name", "payments-test-fire")
    assert result.code == 1
    assert "payments-test-fire" in result.stdout and "ALARM" in result.stdout
    assert "1 of 1 alarm(s) not OK" in result.stderr


def test_more_than_100_alarms_are_all_paginated(cli: Cli) -> None:
    for i in range(130):
        put_alarm(f"payments-test-{i:03d}")
    put_alarm("payments-test-129", state="ALARM")
    result = cli("--output", "json", "alarms", "--prefix", "payments-test-")
    payload = result.json()
    assert len(payload["alarms"]) == 130
    assert result.code == 1 and [a["name"] for a in payload["alarms"] if a["state"] == "ALARM"] == [
        "payments-test-129"
    ]


def test_names_beyond_one_page_are_fetched_in_batches() -> None:
    names = tuple(f"gate-{i:03d}" for i in range(150))
    for name in names:
        put_alarm(name)
    report = check_alarms(cloudwatch(), AlarmSelector(names=names))
    assert len(report.alarms) == 150 and report.ok


def test_prefix_and_names_are_united() -> None:
    put_alarm("payments-test-a")
    put_alarm("standalone")
    report = check_alarms(
        cloudwatch(), AlarmSelector(prefix="payments-test-", names=("standalone",))
    )
    assert [a.name for a in report.alarms] == ["payments-test-a", "standalone"]


def test_composite_alarms_are_included() -> None:
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    put_alarm("payments-test-a")
    # moto's JSON-protocol front end lacks PutCompositeAlarm; create it in the backend.
    cloudwatch_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].put_metric_alarm(
        name="payments-test-all",
        namespace="",
        metric_name="",
        comparison_operator="",
        evaluation_periods=0,
        period=0,
        threshold=0,
        statistic="",
        description="",
        dimensions=[],
        alarm_actions=[],
        rule='ALARM("payments-test-a")',
    )
    report = check_alarms(cloudwatch(), AlarmSelector(prefix="payments-test-"))
    kinds = {a.name: a.kind for a in report.alarms}
    assert kinds == {"payments-test-a": "metric", "payments-test-all": "composite"}


def test_no_match_exits_2_and_names_the_filter(cli: Cli) -> None:
    put_alarm("payments-test-a")
    result = cli("alarms", "--prefix", "payments-prod-")
    assert result.code == 2
    assert (
        result.stderr.strip()
        == "migctl: error: no CloudWatch alarm matches --prefix 'payments-prod-'"
    )


def test_a_missing_named_alarm_exits_2(cli: Cli) -> None:
    put_alarm("payments-test-a")
    result = cli("alarms", "--prefix", "payments-test-", "--name", "ghost")
    assert result.code == 2 and "'ghost'" in result.stderr


def test_a_prefix_that_matches_nothing_is_exit_2_even_beside_a_matching_name(cli: Cli) -> None:
    """A typo in the prefix must not shrink the gate to the named alarms (here in ALARM)."""
    put_alarm("payments-prod-db", state="ALARM")
    result = cli("alarms", "--prefix", "payment-prod-", "--name", "payments-prod-db")
    assert result.code == 2 and "'payment-prod-'" in result.stderr


def test_names_and_reasons_with_brackets_are_printed_as_they_are(cli: Cli) -> None:
    """Text from AWS is never read as rich markup: no MarkupError, nothing swallowed."""
    put_alarm("payments-[prod]-5xx", state="ALARM")
    cloudwatch().set_alarm_state(
        AlarmName="payments-[prod]-5xx", StateValue="ALARM", StateReason="[/bold] over [2]"
    )
    result = cli("alarms", "--prefix", "payments-[prod]")
    assert result.code == 1, result.stderr
    flat = " ".join(result.stdout.split())
    assert "payments-[prod]-5xx" in flat.replace(" ", "")  # the table may fold a long cell
    assert "[/bold]over[2]" in flat.replace(" ", "")


def test_no_filter_at_all_exits_2(cli: Cli) -> None:
    result = cli("alarms")
    assert result.code == 2 and "--prefix" in result.stderr


def test_filter_from_config(cli: Cli, tmp_path) -> None:
    put_alarm("payments-test-a", state="ALARM")
    (tmp_path / "migctl.toml").write_text('[alarms]\nprefix = "payments-test-"\n')
    assert cli("alarms").code == 1


def test_wait_ok_returns_after_the_alarm_flips(cli: Cli) -> None:
    put_alarm("payments-test-a", state="ALARM")
    flip = threading.Timer(
        0.4,
        lambda: cloudwatch().set_alarm_state(
            AlarmName="payments-test-a", StateValue="OK", StateReason="recovered"
        ),
    )
    flip.start()
    try:
        result = cli(
            "--output", "json", "alarms", "--prefix", "payments-test-",
            "--wait-ok", "--timeout", "60", "--interval", "0.05",
        )  # fmt: skip
    finally:
        flip.cancel()
    assert result.code == 0, result.stderr
    lines = result.json_lines()
    assert all(line["event"] == "poll" for line in lines[:-1])
    assert lines[-1]["event"] == "result" and lines[-1]["ok"] is True
    assert lines[-1]["alarms"][0]["reason"] == "recovered"


def test_wait_for_ok_returns_once_the_alarm_flips_between_polls() -> None:
    put_alarm("payments-test-a", state="ALARM")
    polls: list[bool] = []

    def flip(_seconds: float) -> None:
        cloudwatch().set_alarm_state(
            AlarmName="payments-test-a", StateValue="OK", StateReason="fixed"
        )

    report = wait_for_ok(
        cloudwatch(),
        AlarmSelector(prefix="payments-test-"),
        timeout=60,
        interval=5,
        on_poll=lambda r: polls.append(r.ok),
        sleep=flip,
    )
    assert report.ok and polls == [False, True]


def test_wait_ok_times_out_with_the_alarms_still_not_ok(cli: Cli) -> None:
    put_alarm("payments-test-a", state="ALARM")
    put_alarm("payments-test-b")
    result = cli(
        "--output",
        "json",
        "alarms",
        "--prefix",
        "payments-test-",
        "--wait-ok",
        "--timeout",
        "0.2",
        "--interval",
        "0.05",
    )
    assert result.code == 1
    final = result.json_lines()[-1]
    assert final["event"] == "result" and final["ok"] is False and final["timed_out"] is True
    assert [a["name"] for a in final["alarms"] if a["state"] != "OK"] == ["payments-test-a"]


def test_wait_for_ok_uses_the_injected_clock_and_sleep() -> None:
    put_alarm("payments-test-a", state="ALARM")
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    report = wait_for_ok(
        cloudwatch(),
        AlarmSelector(prefix="payments-test-"),
        timeout=25,
        interval=10,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert report.timed_out and not report.ok
    assert sleeps == [10, 10, 5]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kw: object) -> Any:
        yield self.body


def test_a_throttled_call_is_retried_by_botocore_standard_mode() -> None:
    put_alarm("payments-test-a")
    client = AwsClients(ProjectSettings(region="us-east-1")).client("cloudwatch")
    attempts: list[str] = []

    def throttle_once(request: Any, **_kw: object) -> AWSResponse | None:
        attempts.append(request.headers.get("amz-sdk-request", b"").decode())
        if len(attempts) > 1:
            return None
        body = b'{"__type": "Throttling", "message": "Rate exceeded"}'
        return AWSResponse(
            request.url, 400, {"content-type": "application/x-amz-json-1.0"}, _Raw(body)
        )

    client.meta.events.register_first("before-send.cloudwatch.DescribeAlarms", throttle_once)
    report = check_alarms(client, AlarmSelector(prefix="payments-test-"))
    assert [a.name for a in report.alarms] == ["payments-test-a"]
    assert len(attempts) == 2 and attempts[1].startswith("attempt=2")


def test_empty_selector_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        check_alarms(cloudwatch(), AlarmSelector())
