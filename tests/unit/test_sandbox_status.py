"""`migctl sandbox status`'s verdict: healthy only when every process it started runs."""

from __future__ import annotations

from migctl.sandbox.environment import ProcessStatus, SandboxStatus


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
