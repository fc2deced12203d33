"""Ctrl-C during `migctl up`: a clean cancel, and a forced one that releases the lock.

The test sends SIGINT to its own process, as a terminal would to migctl; since
stdin is not a terminal here, migctl must forward the signal to the pulumi
process itself (the stand-in records what it receives).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from pulumi_standin import StandIn, standin_fixture, write_config  # noqa: F401

from tests.cli_support import Cli


def _interrupt_when(standin: StandIn, *steps: tuple[str, int]) -> threading.Thread:
    """Send SIGINT to this process each time the stand-in reaches the next step."""

    def run() -> None:
        for key, count in steps:
            if key == "hanging":
                standin.wait_for(lambda r: r.get("hanging") == "up")
            else:
                standin.wait_for(lambda r, c=count: r.get("signal") == key and r.get("count") == c)
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_cancels_the_update_cleanly(cli: Cli, standin: StandIn, tmp_path: Path) -> None:
    write_config(tmp_path)
    standin.set_env(hang="up")
    thread = _interrupt_when(standin, ("hanging", 0))

    result = cli("--output", "json", "up", "--yes")
    thread.join(5)

    assert result.code == 130
    signals = [r["signal"] for r in standin.records() if "signal" in r]
    assert signals == ["SIGINT"]  # forwarded once: pulumi finishes what is in flight
    lines = result.json_lines()
    assert {"event": "cancelling", "phase": "up", "forced": False} in lines
    done = [ln["name"] for ln in lines if ln["event"] == "resource" and ln["state"] == "done"]
    assert done == ["net"]  # the in-flight resource completed, nothing new started
    assert lines[-1] == {**lines[-1], "event": "result", "ok": False, "cancelled": True}
    assert "was cancelled (Ctrl-C)" in result.stderr
    assert "cancel" not in standin.commands()  # pulumi released its own lock
    assert not standin.lock_file().exists()


def test_second_ctrl_c_stops_pulumi_and_releases_the_lock(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path)
    standin.set_env(hang="up", inflight="stuck")
    thread = _interrupt_when(standin, ("hanging", 0), ("SIGINT", 1))

    result = cli("up", "--yes")
    thread.join(5)

    assert result.code == 130
    signals = [r["signal"] for r in standin.records() if "signal" in r]
    assert signals == ["SIGINT", "SIGTERM"]
    assert standin.commands()[-1] == "cancel"
    assert standin.call("cancel") == ["cancel", "--yes", "--stack", "test"]
    assert not standin.lock_file().exists()
    assert "forcing" in result.stderr and "stack lock released" in result.stderr
    net_rows = [line for line in result.stderr.splitlines() if " net: " in line]
    net_row = net_rows[-1]  # no terminal: one line per state, the last one is the end
    assert "unfinished" in net_row  # killed mid-operation: its real state is unknown
    assert "migctl refresh" in result.stderr
