"""`migctl sandbox status`'s verdict: healthy only when every process it started runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cli_support import Cli

from migctl.sandbox.environment import ProcessStatus, SandboxState, SandboxStatus, is_alive


def test_sandbox_status_is_unhealthy_when_the_traffic_writer_died() -> None:
    """`sandbox status` exits 1 (not healthy) when any process it started is gone, the
    traffic writer included; a writer stopped with `traffic stop` is no longer listed."""
    core = tuple(
        ProcessStatus(name=n, pid=i, running=True, port=None)
        for i, n in enumerate(("source-postgres", "target-postgres", "aws"), start=1)
    )
    assert SandboxStatus(dir="/s", exists=True, processes=core).healthy
    died = ProcessStatus(name="traffic", pid=9, running=False, port=None)
    assert not SandboxStatus(dir="/s", exists=True, processes=(*core, died)).healthy


def _fake_sandbox(directory: Path) -> None:
    """A sandbox folder whose source is nowhere: a closed port on 127.0.0.1."""
    from migctl.sandbox.postgres import free_port

    (directory / "logs").mkdir(parents=True)
    SandboxState(
        dir=str(directory), rows=0, source_port=free_port(), target_port=free_port()
    ).save()


def _stop_writer(directory: Path) -> None:
    state = SandboxState.load(directory)
    assert state is not None
    record = state.processes.get("traffic")
    if record is not None and is_alive(record):
        os.kill(record.pid, signal.SIGTERM)


def test_traffic_start_says_when_no_write_gets_through(cli: Cli, tmp_path: Path) -> None:
    """A writer whose writes are all refused (a frozen source; here, no source at all) keeps
    running and trying, and the result says it is not writing rather than 'started'."""
    directory = tmp_path / "sbx"
    _fake_sandbox(directory)
    try:
        result = cli("--output", "json", "sandbox", "traffic", "start", "--dir", str(directory))
    finally:
        _stop_writer(directory)
    assert result.code == 0, result.stderr
    answer = result.json()
    assert answer["traffic"] == "started" and answer["writing"] is False
    assert "refuses its writes" in answer["note"]


def test_traffic_start_fails_when_the_writer_exits_at_once(cli: Cli, tmp_path: Path) -> None:
    """A writer that cannot run (here: its keys file cannot be opened) is exit 3 in one line
    naming its log, never a 'started' for a process already gone."""
    directory = tmp_path / "sbx"
    _fake_sandbox(directory)
    (directory / "logs" / "traffic.keys").mkdir()  # a folder where the writer appends its keys
    try:
        result = cli("sandbox", "traffic", "start", "--dir", str(directory))
    finally:
        _stop_writer(directory)
    assert result.code == 3, result.stdout
    assert "exited at once" in result.stderr and "traffic.log" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.stderr
    state = SandboxState.load(directory)
    assert state is not None and "traffic" not in state.processes  # not listed as running
