"""`migctl dms` as a subprocess against `python -m migctl.sandbox.moto_dms` (patched moto server).

What moto does not model is driven from inside the server process only in the
in-process unit tests; here the server's own transitions (ready -> starting ->
running -> stopping -> stopped) are enough to run start, status and stop end to
end over HTTP through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from migctl.sandbox.postgres import free_port

FAKE = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto's dummy values


@pytest.fixture(scope="module")
def dms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto-dms") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "migctl.sandbox.moto_dms", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"moto DMS server exited with {proc.returncode}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, "moto DMS server did not listen within 30s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
        log.close()


def migctl(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # moto's dummy value
        AWS_REGION="us-east-1",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    return subprocess.run(
        [sys.executable, "-m", "migctl", "--output", "json", "dms", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create_task(url: str, name: str) -> dict[str, Any]:
    dms = boto3.client("dms", endpoint_url=url, region_name="us-east-1", **FAKE)
    instance = dms.create_replication_instance(
        ReplicationInstanceIdentifier=f"{name}-ri", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]
    arns = [
        dms.create_endpoint(
            EndpointIdentifier=f"{name}-{kind}",
            EndpointType=kind,
            EngineName="postgres",
            ServerName="db.invalid",
            Port=5432,
            DatabaseName="payments",
            Username="dms",
        )["Endpoint"]["EndpointArn"]
        for kind in ("source", "target")
    ]
    task: dict[str, Any] = dms.create_replication_task(
        ReplicationTaskIdentifier=name,
        SourceEndpointArn=arns[0],
        TargetEndpointArn=arns[1],
        ReplicationInstanceArn=instance["ReplicationInstanceArn"],
        MigrationType="full-load-and-cdc",
        TableMappings="{}",
    )["ReplicationTask"]
    return task


def test_start_status_stop_through_aws_endpoint_url(dms_server: str, tmp_path: Path) -> None:
    task = create_task(dms_server, "e2e-task")
    assert not task["ReplicationTaskArn"].endswith(":e2e-task")

    status = migctl(dms_server, tmp_path, "status", "--task", "e2e-task")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert (doc["task"]["status"], doc["task"]["phase"], doc["tables"]) == (
        "ready",
        "not-running",
        [],
    )
    assert (
        doc["cdc"]["dimensions"]["ReplicationTaskIdentifier"]
        == task["ReplicationTaskArn"].rsplit(":", 1)[1]
    )
    assert doc["cdc"]["dimensions"]["ReplicationInstanceIdentifier"] == "e2e-task-ri"
    assert doc["cdc"]["latency_target_seconds"] == {
        "latest": None,
        "latest_at": None,
        "maximum": None,
        "datapoints": 0,
    }

    refused = migctl(  # no TTY, no --yes
        dms_server, tmp_path, "start", "--task", "e2e-task", "--accept-lint-risks"
    )
    assert refused.returncode == 2 and refused.stdout == "" and "--yes" in refused.stderr

    unlinted = migctl(dms_server, tmp_path, "start", "--task", "e2e-task", "--yes")
    assert unlinted.returncode == 2 and "lints the source first" in unlinted.stderr

    started = migctl(
        dms_server,
        tmp_path,
        "start",
        "--task",
        task["ReplicationTaskArn"],
        "--yes",
        "--interval",
        "0",
        "--accept-lint-risks",  # no source database here: it starts unlinted, and says so
    )
    assert started.returncode == 0, started.stderr
    final = [json.loads(line) for line in started.stdout.splitlines()][-1]
    assert (final["event"], final["outcome"], final["task"]["status"]) == (
        "result",
        "running",
        "running",
    )

    again = migctl(dms_server, tmp_path, "start", "--task", "e2e-task", "--yes")
    assert again.returncode == 2 and "already running" in again.stderr

    stopped = migctl(dms_server, tmp_path, "stop", "--task", "e2e-task", "--yes", "--interval", "0")
    assert stopped.returncode == 0, stopped.stderr
    final = [json.loads(line) for line in stopped.stdout.splitlines()][-1]
    assert final["outcome"] == "stopped" and final["recovery_checkpoint"].startswith(
        "checkpoint:V1#"
    )

    fresh = migctl(dms_server, tmp_path, "start", "--task", "e2e-task", "--yes")
    assert fresh.returncode == 2 and "--type resume" in fresh.stderr
