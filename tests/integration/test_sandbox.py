"""`migctl sandbox`: the whole system on one machine, driven by the ordinary migctl commands.

One sandbox is shared by the module (it takes a few seconds to start); the
crash test starts its own small one. A test that changes the DMS task puts it back
replicating. Every test ends with no process left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migctl.sandbox.environment import SandboxState, aws_session, is_alive


def migctl(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sandbox_env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MIGCTL_"))}
    for line in (directory / "sandbox.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env


def alive_pids(directory: Path, state: SandboxState) -> list[str]:
    return [r.name for r in state.processes.values() if is_alive(r)]


def fresh_dir(name: str) -> Path:
    # Not under pytest's basetemp: every pytest session resets it to mode 0700, which
    # would lock out the postgres user that runs the clusters when tests run as root.
    return Path(tempfile.mkdtemp(prefix="migctl-sbx-")) / name


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Path, dict[str, str], SandboxState]]:
    directory = fresh_dir("sandbox")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MIGCTL_"))}
    up = migctl(
        env,
        "--output",
        "json",
        "sandbox",
        "up",
        "--dir",
        str(directory),
        "--rows",
        "3000",
        "--traffic",
    )
    assert up.returncode == 0, up.stderr
    state = SandboxState.load(directory)
    assert state is not None
    try:
        yield directory, sandbox_env(directory), state
    finally:
        down = migctl(env, "--output", "json", "sandbox", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert not alive_pids(directory, state), "sandbox down left processes behind"
        assert not directory.exists()
        directory.parent.rmdir()


def source_conn(state: SandboxState) -> psycopg.Connection[Any]:
    return psycopg.connect(state.source_dsn(), autocommit=True)


def target_conn(state: SandboxState) -> psycopg.Connection[Any]:
    return psycopg.connect(state.target_dsn(), autocommit=True)


def table_fingerprint(conn: psycopg.Connection[Any], table: str) -> tuple[int, Any]:
    row = conn.execute(
        f"SELECT count(*), sum(hash_record_extended(t, 0)) FROM {table} t"
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def test_status_reports_every_process_on_loopback(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    directory, env, _ = sandbox
    result = migctl(env, "--output", "json", "sandbox", "status", "--dir", str(directory))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    names = {p["name"]: p for p in payload["processes"]}
    assert set(names) == {"source-postgres", "target-postgres", "aws", "traffic"}
    assert all(p["running"] for p in names.values())
    assert payload["aws_endpoint_url"].startswith("http://127.0.0.1:")
    config = (directory / "migctl.toml").read_text()
    assert "password" not in config.lower()


def test_every_command_finds_the_sandbox_from_its_config(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    _, env, _ = sandbox
    result = migctl(env, "--output", "json", "alarms")
    assert result.returncode == 0, result.stderr
    names = {a["name"] for a in json.loads(result.stdout)["alarms"]}
    assert {"payments-sandbox-healthy-hosts", "payments-sandbox-alb-5xx"} <= names


def test_after_sourcing_sandbox_env_every_sandbox_command_finds_it_without_dir(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    directory, env, _ = sandbox
    assert Path(env["MIGCTL_SANDBOX_DIR"]) == directory.resolve()
    status = migctl(env, "--output", "json", "sandbox", "status")  # run from elsewhere
    assert status.returncode == 0, status.stderr
    assert Path(json.loads(status.stdout)["dir"]) == directory.resolve()


def test_a_fault_on_an_alarm_that_does_not_exist_is_exit_2_naming_those_that_do(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    _, env, _ = sandbox
    result = migctl(env, "sandbox", "fault", "alarm", "NO-SUCH")
    assert result.returncode == 2, result.stderr
    assert "no alarm named 'NO-SUCH'" in result.stderr
    assert "payments-sandbox-alb-5xx" in result.stderr and "Traceback" not in result.stderr


def test_replication_carries_traffic_then_validate_matches(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    directory, env, state = sandbox
    assert migctl(env, "dms", "start", "--yes").returncode == 0
    full = migctl(
        env, "dms", "watch", "--until", "full-load", "--timeout", "120", "--interval", "1"
    )
    assert full.returncode == 0, full.stderr
    with source_conn(state) as conn:
        before = conn.execute("SELECT count(*) FROM payments").fetchone()
    time.sleep(3)  # the writer keeps inserting, updating and deleting while CDC runs
    assert migctl(env, "sandbox", "traffic", "stop", "--dir", str(directory)).returncode == 0
    ready = migctl(
        env, "dms", "watch", "--until", "cdc-ready", "--timeout", "120", "--interval", "1"
    )
    assert ready.returncode == 0, ready.stderr

    status = json.loads(migctl(env, "--output", "json", "dms", "status").stdout)
    payments = next(t for t in status["tables"] if t["table"] == "payments")
    assert payments["inserts"] > 0 and payments["updates"] > 0 and payments["deletes"] > 0
    with source_conn(state) as src, target_conn(state) as tgt:
        after = src.execute("SELECT count(*) FROM payments").fetchone()
        assert before != after
        for table in ("customers", "accounts", "payments", "ledger_entries", "audit_log"):
            assert table_fingerprint(src, table) == table_fingerprint(tgt, table), table

    result = migctl(env, "--output", "json", "validate")
    report = json.loads(result.stdout)
    assert {t["table"]: t["status"] for t in report["tables"]} == {
        f"public.{t}": "match"
        for t in ("customers", "accounts", "payments", "ledger_entries", "audit_log")
    }
    # DMS does not carry sequences: they are behind until cutover syncs them.
    assert result.returncode == 1
    assert {s["status"] for s in report["sequences"]} == {"behind"}


def ensure_replicating(env: dict[str, str]) -> None:
    status = json.loads(migctl(env, "--output", "json", "dms", "status").stdout)
    if status["task"]["status"] != "running":
        assert migctl(env, "dms", "start", "--yes").returncode == 0
    ready = migctl(
        env, "dms", "watch", "--until", "full-load", "--timeout", "120", "--interval", "1"
    )
    assert ready.returncode == 0, ready.stderr


def test_dms_stop_and_resume(sandbox: tuple[Path, dict[str, str], SandboxState]) -> None:
    directory, env, state = sandbox
    ensure_replicating(env)
    assert migctl(env, "sandbox", "traffic", "stop", "--dir", str(directory)).returncode == 0
    stopped = migctl(env, "--output", "json", "dms", "stop", "--yes")
    assert stopped.returncode == 0, stopped.stderr
    # The checkpoint is the source LSN the target has confirmed, as DMS records it.
    checkpoint = json.loads(stopped.stdout.splitlines()[-1])["recovery_checkpoint"]
    assert re.fullmatch(r"checkpoint:V1#\d+#[0-9A-F]+/[0-9A-F]+#0#0#\*#0#0", checkpoint), checkpoint
    with source_conn(state) as src:
        src.execute("INSERT INTO audit_log (actor, action) VALUES ('test', 'while-stopped')")
    time.sleep(2)
    with target_conn(state) as tgt:
        missing = tgt.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'while-stopped'"
        ).fetchone()
    assert missing == (0,)
    assert migctl(env, "dms", "start", "--type", "start", "--yes").returncode == 2  # it ran before
    assert migctl(env, "dms", "start", "--type", "resume", "--yes").returncode == 0
    ready = migctl(
        env, "dms", "watch", "--until", "cdc-ready", "--timeout", "120", "--interval", "1"
    )
    assert ready.returncode == 0, ready.stderr
    with target_conn(state) as tgt:
        arrived = tgt.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'while-stopped'"
        ).fetchone()
    assert arrived == (1,)


def test_a_change_the_target_refuses_fails_the_task_and_names_the_table(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    """A duplicate key on apply is never "healthy": the table is in error, the task failed,
    and `dms status` exits 1 saying so. Fixed and resumed, it applies the change."""
    _directory, env, state = sandbox
    ensure_replicating(env)
    with source_conn(state) as src, target_conn(state) as tgt:
        (next_id,) = src.execute("SELECT max(id) + 1000 FROM customers").fetchone()  # type: ignore[misc]
        planted = "INSERT INTO customers (id, external_id, name) VALUES (%s, gen_random_uuid(), %s)"
        tgt.execute(planted, (next_id, "planted on the target"))
        src.execute(planted, (next_id, "written on the source"))
    deadline = time.monotonic() + 60
    while True:
        status = migctl(env, "--output", "json", "dms", "status")
        if status.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status.returncode == 1, status.stdout
    report = json.loads(status.stdout)
    assert report["task"]["status"] == "failed"
    failure = report["task"]["last_failure_message"]
    assert "apply failed on public.customers" in failure and "duplicate key" in failure
    errored = [t for t in report["tables"] if t["state"] == "Table error"]
    assert [(t["schema"], t["table"]) for t in errored] == [("public", "customers")]
    assert any("public.customers" in p for p in report["problems"])

    with target_conn(state) as tgt:
        tgt.execute("DELETE FROM customers WHERE id = %s", (next_id,))
    assert migctl(env, "dms", "start", "--type", "resume", "--yes").returncode == 0
    deadline = time.monotonic() + 60
    with target_conn(state) as tgt:
        while (
            name := tgt.execute("SELECT name FROM customers WHERE id = %s", (next_id,)).fetchone()
        ) is None and time.monotonic() < deadline:
            time.sleep(0.5)
    assert name == ("written on the source",)
    healthy = migctl(env, "--output", "json", "dms", "status")
    assert healthy.returncode == 0, healthy.stdout
    assert json.loads(healthy.stdout)["task"]["status"] == "running"


# `dms start` refuses a task whose lint finds errors (an unbounded numeric, LOBs over the
# limit) without this flag: the test below means to run such a task.
ACCEPT_LINT = ("--accept-lint-risks",)
PROBE = "CREATE TABLE transit_probe (id int PRIMARY KEY, amount numeric, note text)"


def wait_until(probe: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return found


def test_dms_rounds_unbounded_numerics_and_truncates_lobs_and_validate_names_those_keys(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    """As DMS does: an unbounded numeric travels as numeric(28,6), a LOB over LobMaxSize (32
    KB) is cut when the source endpoint does not say FailTasksOnLobTruncation, in the full
    load and in CDC; `migctl validate` names exactly those rows. With it, the task fails."""
    _directory, env, state = sandbox
    ensure_replicating(env)
    dms = aws_session(state).client("dms")
    task = dms.describe_replication_tasks(
        Filters=[
            {"Name": "replication-task-arn", "Values": [state.outputs["dmsReplicationTaskArn"]]}
        ]
    )["ReplicationTasks"][0]
    endpoint = task["SourceEndpointArn"]
    described = dms.describe_endpoints(Filters=[{"Name": "endpoint-arn", "Values": [endpoint]}])
    assert described["Endpoints"][0]["PostgreSQLSettings"] == {"FailTasksOnLobTruncation": True}
    assert json.loads(task["ReplicationTaskSettings"])["TargetMetadata"]["LobMaxSize"] == 32
    dms.modify_endpoint(
        EndpointArn=endpoint, PostgreSQLSettings={"FailTasksOnLobTruncation": False}
    )
    with source_conn(state) as src, target_conn(state) as tgt:
        for conn in (src, tgt):  # the target's tables are pre-created (DO_NOTHING)
            conn.execute(PROBE)
        src.execute(
            "INSERT INTO transit_probe VALUES (1, 1.12345678, 'short'), "
            "(2, 2.5, repeat('x', 102400)), (3, 3.25, 'fits'), (4, 4.5, repeat('z', 32768))"
        )
    try:
        # A table created after the task started is in its next reload's full load.
        assert migctl(env, "dms", "stop", "--yes").returncode == 0
        reload = migctl(env, "dms", "start", "--type", "reload", "--yes", *ACCEPT_LINT)
        assert reload.returncode == 0, reload.stderr
        loaded = migctl(
            env, "dms", "watch", "--until", "full-load", "--timeout", "120", "--interval", "1"
        )
        assert loaded.returncode == 0, loaded.stderr
        with source_conn(state) as src, target_conn(state) as tgt:
            src.execute("INSERT INTO transit_probe VALUES (5, 5.123456789, repeat('y', 102400))")
            arrived = wait_until(
                lambda: tgt.execute(
                    "SELECT amount, octet_length(note) FROM transit_probe WHERE id = 5"
                ).fetchone()
            )
            assert arrived == (Decimal("5.123457"), 32768)  # in CDC as in the full load
            copied = tgt.execute(
                "SELECT id, amount, octet_length(note) FROM transit_probe ORDER BY id"
            ).fetchall()
        assert copied == [
            (1, Decimal("1.123457"), 5),
            (2, Decimal("2.5"), 32768),
            (3, Decimal("3.25"), 4),
            (4, Decimal("4.5"), 32768),  # exactly LobMaxSize: whole
            (5, Decimal("5.123457"), 32768),
        ]
        result = migctl(env, "--output", "json", "validate", "--table", "public.transit_probe")
        assert result.returncode == 1, result.stderr
        (table,) = json.loads(result.stdout)["tables"]
        assert table["status"] != "match"
        assert (table["missing_in_target_count"], table["missing_in_source_count"]) == (0, 0)
        assert table["changed"] == [[1], [2], [5]] and table["changed_count"] == 3

        # FailTasksOnLobTruncation (the sandbox's own setting, as infra_pulumi's): the task
        # fails on the next LOB over the limit, naming the table.
        dms.modify_endpoint(
            EndpointArn=endpoint, PostgreSQLSettings={"FailTasksOnLobTruncation": True}
        )
        assert migctl(env, "dms", "stop", "--yes").returncode == 0
        resumed = migctl(env, "dms", "start", "--type", "resume", "--yes", *ACCEPT_LINT)
        assert resumed.returncode == 0, resumed.stderr
        with source_conn(state) as src:
            src.execute("INSERT INTO transit_probe VALUES (6, 6, repeat('w', 102400))")
        status = wait_until(
            lambda: (s := migctl(env, "--output", "json", "dms", "status")).returncode and s
        )
        assert status.returncode == 1, status.stdout
        report = json.loads(status.stdout)
        assert report["task"]["status"] == "failed"
        failure = report["task"]["last_failure_message"]
        assert "apply failed on public.transit_probe" in failure
        assert "over LobMaxSize (32 KB)" in failure and "FailTasksOnLobTruncation" in failure
        errored = [
            (t["schema"], t["table"]) for t in report["tables"] if t["state"] == "Table error"
        ]
        assert errored == [("public", "transit_probe")]
        with target_conn(state) as tgt:
            assert tgt.execute("SELECT 1 FROM transit_probe WHERE id = 6").fetchone() is None
    finally:
        # Without the table, a reload starts from a clean slot: the task is healthy again.
        with source_conn(state) as src, target_conn(state) as tgt:
            for conn in (src, tgt):
                conn.execute("DROP TABLE IF EXISTS transit_probe")
        dms.modify_endpoint(
            EndpointArn=endpoint, PostgreSQLSettings={"FailTasksOnLobTruncation": True}
        )
        migctl(env, "dms", "stop", "--yes")
        again = migctl(env, "dms", "start", "--type", "reload", "--yes", *ACCEPT_LINT)
        assert again.returncode == 0, again.stderr
        ensure_replicating(env)


def test_rollout_completes_and_a_broken_image_rolls_back(
    sandbox: tuple[Path, dict[str, str], SandboxState],
) -> None:
    _, env, _ = sandbox
    ok = migctl(
        env,
        "--output",
        "json",
        "rollout",
        "--image",
        "payments-app:2.0.0-aurora",
        "--bake",
        "1",
        "--yes",
    )
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout.splitlines()[-1])
    assert result["event"] == "result" and result["outcome"] == "completed"
    bad = migctl(
        env,
        "--output",
        "json",
        "rollout",
        "--image",
        "payments-app:2.0.1-broken",
        "--bake",
        "1",
        "--yes",
    )
    assert bad.returncode == 4, bad.stderr
    final = json.loads(bad.stdout.splitlines()[-1])
    assert final["outcome"] == "rolled_back"
    assert final["previous_task_definition"] == result["task_definition"]


def test_up_refuses_a_running_sandbox(sandbox: tuple[Path, dict[str, str], SandboxState]) -> None:
    directory, env, _ = sandbox
    again = migctl(env, "sandbox", "up", "--dir", str(directory), "--rows", "10")
    assert again.returncode == 2
    assert "already runs" in again.stderr and "Traceback" not in again.stderr


def test_down_cleans_up_after_a_crash() -> None:
    directory = fresh_dir("crashy")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MIGCTL_"))}
    assert migctl(env, "sandbox", "up", "--dir", str(directory), "--rows", "10").returncode == 0
    state = SandboxState.load(directory)
    assert state is not None
    os.kill(state.processes["aws"].pid, signal.SIGKILL)
    os.kill(state.processes["source-postgres"].pid, signal.SIGKILL)
    time.sleep(0.5)
    status = migctl(env, "--output", "json", "sandbox", "status", "--dir", str(directory))
    assert status.returncode == 1
    running = {p["name"]: p["running"] for p in json.loads(status.stdout)["processes"]}
    assert running == {"source-postgres": False, "target-postgres": True, "aws": False}
    down = migctl(env, "--output", "json", "sandbox", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    report = json.loads(down.stdout)
    assert report["stopped"] == ["target-postgres"] and set(report["already_gone"]) == {
        "aws",
        "source-postgres",
    }
    assert not directory.exists()
    # The killed postmaster leaves its children to exit on their own; none may linger.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive_pids(directory, state):
        time.sleep(0.1)
    assert not alive_pids(directory, state)
    directory.parent.rmdir()  # fresh_dir's temporary parent: empty once the sandbox is down


def test_missing_postgres_binaries_exit_3(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import migctl.sandbox.postgres as pg

    monkeypatch.setattr(pg.glob, "glob", lambda _pattern: [])
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("MIGCTL_PG_BIN", raising=False)
    result = cli("sandbox", "up", "--dir", str(tmp_path / "s"), "--rows", "10")
    assert result.code == 3
    assert "apt-get install postgresql" in result.stderr and "Traceback" not in result.stderr
