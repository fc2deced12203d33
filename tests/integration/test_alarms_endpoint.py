"""`migctl alarms --output json` against a moto server reached through AWS_ENDPOINT_URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3

from migctl.sandbox.motoserver import MotoServer


def alarms_json(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`migctl --output json alarms --prefix payments-test-` as its own process."""
    argv = [
        sys.executable,
        "-m",
        "migctl",
        "--output",
        "json",
        "alarms",
        "--prefix",
        "payments-test-",
    ]
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_alarms_json_through_aws_endpoint_url(
    moto_server: MotoServer, moto_server_env: dict[str, str], tmp_path: Path
) -> None:
    env = moto_server_env
    cw = boto3.client(
        "cloudwatch",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # moto dummy values
    cw.put_metric_alarm(
        AlarmName="payments-test-cpu",
        Namespace="AWS/ECS",
        MetricName="CPUUtilization",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=80,
        ComparisonOperator="GreaterThanThreshold",
    )
    out = alarms_json(env, tmp_path)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["ok"] is True
    assert [(a["name"], a["state"], a["metric"]) for a in payload["alarms"]] == [
        ("payments-test-cpu", "OK", "CPUUtilization")
    ]
    cw.set_alarm_state(AlarmName="payments-test-cpu", StateValue="ALARM", StateReason="cpu high")
    out = alarms_json(env, tmp_path)
    assert out.returncode == 1 and json.loads(out.stdout)["alarms"][0]["reason"] == "cpu high"
