"""`migctl dms start` and `stop`: refusals, confirmation, waiting by polling, the checkpoint."""

from __future__ import annotations

from typing import Any

import pytest
from dms_support import DmsWorld, make_task, start_running

from migctl.dms.control import ControlPlan, start_task, stop_task
from migctl.errors import UsageError
from migctl.sandbox import moto_dms
from tests.cli_support import Cli

pytestmark = pytest.mark.usefixtures("aws")
CHECKPOINT = "checkpoint:V1#34#00000132/0F000E48#0#0#*#0#121"


class Ticks:
    """A clock that moves only when the code under test sleeps (at least 1 s a sleep)."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.now = 0.0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1.0)
        if self.on_sleep:
            self.on_sleep()


def ran_before(world: DmsWorld) -> None:
    start_running(world)
    world.dms.stop_replication_task(ReplicationTaskArn=world.task_arn)
    moto_dms.set_task(world.task_arn, status="stopped")


def test_start_refuses_a_task_that_ran_before_and_points_to_resume(cli: Cli) -> None:
    world = make_task()
    ran_before(world)
    result = cli("dms", "start", "--task", world.task_name, "--yes")
    assert result.code == 2 and result.stdout == ""
    assert "has run before" in result.stderr and "--type resume" in result.stderr
    assert len(moto_dms.task_extras(world.task_arn).start_calls) == 1  # only the first run


def test_resume_or_reload_on_a_task_that_never_ran_is_refused(cli: Cli) -> None:
    world = make_task()
    for kind in ("resume", "reload"):
        result = cli("dms", "start", "--task", world.task_name, "--type", kind, "--yes")
        assert (
            result.code == 2
            and "has never run" in result.stderr
            and "--type start" in result.stderr
        )
    assert moto_dms.task_extras(world.task_arn).start_calls == []


@pytest.mark.parametrize(
    ("position", "said"),
    [
        ("garbage", "'garbage' is not a CDC position"),
        ("server_time:yesterday", "'server_time:yesterday' is not a CDC position"),
        ("commit_time:2024-13-40T25:00:00", "2024-13-40T25:00:00 is no date and time"),
        ("0/XYZ", "'0/XYZ' is not a CDC position"),
    ],
)
def test_a_cdc_stop_position_in_no_form_aws_accepts_is_exit_2(
    cli: Cli, position: str, said: str
) -> None:
    world = make_task()
    result = cli(
        "dms", "start", "--task", world.task_name, "--yes", "--cdc-stop-position", position
    )
    assert result.code == 2, result.stderr
    assert said in result.stderr
    assert moto_dms.task_extras(world.task_arn).start_calls == []


@pytest.mark.parametrize(
    "position",
    [
        "server_time:2030-05-01T12:00:00",
        "commit_time:2030-05-01T12:00:00",
        "checkpoint:V1#27#mysql-bin-changelog.157832:1975:-1:2002:677883278264080#0#0#*#0#93",
        "0/16B3748",
    ],
)
def test_the_cdc_positions_aws_accepts_pass(position: str) -> None:
    from migctl.dms.control import check_position

    assert check_position(position) == position


def test_start_yes_waits_until_running(cli: Cli) -> None:
    world = make_task()
    moto_dms.set_task(world.task_arn, after_start=["starting", "starting", "running"])
    result = cli(
        "--output", "json", "dms", "start", "--task", world.task_name, "--yes", "--interval", "0",
        "--cdc-stop-position", "server_time:2030-05-01T12:00:00", "--accept-lint-risks",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    lines = result.json_lines()
    assert [(e["event"], e.get("status")) for e in lines] == [
        ("status", "starting"),
        ("status", "running"),
        ("result", None),
    ]
    final = lines[-1]
    assert (final["action"], final["outcome"], final["ok"]) == ("start", "running", True)
    assert (final["start_type"], final["previous_status"], final["polls"]) == (
        "start-replication",
        "ready",
        3,
    )
    assert final["task"]["status"] == "running"
    assert moto_dms.task_extras(world.task_arn).start_calls == [
        {
            "StartReplicationTaskType": "start-replication",
            "CdcStopPosition": "server_time:2030-05-01T12:00:00",
            "CdcStartPosition": None,
        }
    ]


def test_resume_sends_resume_processing(cli: Cli) -> None:
    world = make_task()
    ran_before(world)
    result = cli(
        "dms", "start", "--task", world.task_name, "--type", "resume", "-y", "--interval", "0"
    )
    assert result.code == 0, result.stderr
    assert "running" in result.stdout
    calls = moto_dms.task_extras(world.task_arn).start_calls
    assert calls[-1]["StartReplicationTaskType"] == "resume-processing"


def test_start_without_yes_and_without_a_terminal_refuses(cli: Cli) -> None:
    world = make_task()
    result = cli("dms", "start", "--task", world.task_name, "--accept-lint-risks")
    assert result.code == 2 and "without confirmation" in result.stderr and "--yes" in result.stderr
    assert moto_dms.task_extras(world.task_arn).start_calls == []


def test_declined_confirmation_does_nothing() -> None:
    world = make_task()
    asked: list[ControlPlan] = []

    def decline(plan: ControlPlan) -> bool:
        asked.append(plan)
        return False

    result = start_task(
        world.dms, world.ref(), kind="start", confirm=decline, timeout=10, interval=0
    )
    assert (result.outcome, result.ok) == ("declined", False)
    assert asked[0].describe() == "start-replication DMS task payments-cdc (now ready)"
    assert moto_dms.task_extras(world.task_arn).start_calls == []


def test_full_load_only_task_that_finishes_before_we_look_counts_as_started() -> None:
    world = make_task(migration_type="full-load")
    moto_dms.set_task(world.task_arn, after_start=["starting"])

    def finish() -> None:
        moto_dms.set_task(
            world.task_arn, status="stopped", stop_reason="Stop Reason FULL_LOAD_ONLY_FINISHED"
        )

    ticks = Ticks(on_sleep=finish)
    result = start_task(
        world.dms, world.ref(), kind="start", confirm=lambda p: True, timeout=60, interval=5,
        clock=ticks.clock, sleep=ticks.sleep,
    )  # fmt: skip
    assert (result.outcome, result.ok) == ("finished", True)
    assert "FULL_LOAD_ONLY_FINISHED" in result.reason


def test_start_that_fails_reports_why_and_a_stuck_start_times_out() -> None:
    world = make_task()
    moto_dms.set_task(world.task_arn, after_start=["starting"])

    def fail() -> None:
        moto_dms.set_task(
            world.task_arn,
            status="failed",
            stop_reason="Stop Reason FATAL_ERROR",
            last_failure_message="Error: could not connect to source",
        )

    ticks = Ticks(on_sleep=fail)
    ref = world.ref()
    result = start_task(
        world.dms, ref, kind="start", confirm=lambda p: True, timeout=60, interval=5,
        clock=ticks.clock, sleep=ticks.sleep,
    )  # fmt: skip
    assert (result.outcome, result.ok) == ("failed", False)
    assert (
        result.reason == "task failed: Stop Reason FATAL_ERROR; Error: could not connect to source"
    )

    moto_dms.set_task(world.task_arn, after_start=["starting"] * 50)
    ticks = Ticks()
    result = start_task(
        world.dms, ref, kind="resume", confirm=lambda p: True, timeout=30, interval=10,
        clock=ticks.clock, sleep=ticks.sleep,
    )  # fmt: skip
    assert (result.outcome, result.ok, result.polls) == ("timed-out", False, 4)
    assert result.reason == "timed out after 30s waiting for running; task is starting"


def test_stop_waits_for_stopped_and_prints_the_checkpoint(cli: Cli) -> None:
    world = make_task()
    start_running(world)
    moto_dms.set_task(
        world.task_arn, recovery_checkpoint=CHECKPOINT, after_stop=["stopping", "stopped"]
    )
    result = cli("dms", "stop", "--task", world.task_name, "--yes", "--interval", "0")
    assert result.code == 0, result.stderr
    assert f"RecoveryCheckpoint: {CHECKPOINT}" in result.stdout
    assert moto_dms.task_extras(world.task_arn).stop_calls == 1
    again = cli(
        "--output", "json", "dms", "stop", "--task", world.task_name
    )  # no --yes needed: no action
    assert again.code == 0
    final = again.json_lines()[-1]
    assert (final["event"], final["outcome"], final["recovery_checkpoint"]) == (
        "result",
        "already-stopped",
        CHECKPOINT,
    )
    assert moto_dms.task_extras(world.task_arn).stop_calls == 1


def test_stop_json_shape(cli: Cli) -> None:
    world = make_task()
    start_running(world)
    result = cli(
        "--output", "json", "dms", "stop", "--task", world.task_name, "-y", "--interval", "0"
    )
    assert result.code == 0
    final = result.json_lines()[-1]
    assert set(final) == {
        "event", "action", "outcome", "ok", "reason", "start_type", "previous_status",
        "recovery_checkpoint", "polls", "elapsed_seconds", "task",
    }  # fmt: skip
    assert (final["action"], final["outcome"], final["previous_status"]) == (
        "stop",
        "stopped",
        "running",
    )
    assert final["recovery_checkpoint"].startswith("checkpoint:V1#")


def test_stop_refusals(cli: Cli) -> None:
    world = make_task()
    not_running = cli("dms", "stop", "--task", world.task_name, "--yes")
    assert not_running.code == 2 and "only a running task can be stopped" in not_running.stderr
    start_running(world)
    no_tty = cli("dms", "stop", "--task", world.task_name)
    assert no_tty.code == 2 and "without confirmation" in no_tty.stderr
    moto_dms.set_task(world.task_arn, status="failed", stop_reason="Stop Reason FATAL_ERROR")
    failed = cli("dms", "stop", "--task", world.task_name, "--yes")
    assert failed.code == 1 and "FATAL_ERROR" in failed.stdout
    assert moto_dms.task_extras(world.task_arn).stop_calls == 0


def test_throttled_polls_slow_the_wait_instead_of_failing_it() -> None:
    world = make_task()
    start_running(world)

    def confirm_then_throttle(plan: ControlPlan) -> bool:
        moto_dms.throttle("DescribeReplicationTasks", 2)
        return True

    sleeps: list[float] = []
    result = stop_task(
        world.dms, world.ref(), confirm=confirm_then_throttle, timeout=600, interval=5,
        sleep=sleeps.append, clock=lambda: 0.0,
    )  # fmt: skip
    assert (result.outcome, result.polls) == ("stopped", 1)
    assert sleeps == [10.0, 20.0]


def test_a_cdc_only_task_starts_again_from_a_position_a_full_load_task_does_not() -> None:
    """The way back starts its CDC-only task afresh at every cutover, from the slot's position
    (nothing is reloaded); a full-load task that ran before is still refused a fresh start."""
    reverse = make_task("payments-reverse", migration_type="cdc")
    ran_before(reverse)
    ticks = Ticks(on_sleep=lambda: moto_dms.set_task(reverse.task_arn, status="running"))
    result = start_task(
        reverse.dms,
        reverse.ref(),
        kind="start",
        confirm=lambda _plan: True,
        cdc_start_position="0/1A2B3C4",
        timeout=30,
        interval=1,
        clock=ticks.clock,
        sleep=ticks.sleep,
    )
    assert result.ok, result.reason
    assert moto_dms.task_extras(reverse.task_arn).start_calls[-1] == {
        "StartReplicationTaskType": "start-replication",
        "CdcStopPosition": None,
        "CdcStartPosition": "0/1A2B3C4",
    }
    forward = make_task("payments-forward")
    ran_before(forward)
    with pytest.raises(UsageError, match="has run before"):
        start_task(
            forward.dms,
            forward.ref(),
            kind="start",
            confirm=lambda _plan: True,
            cdc_start_position="0/1A2B3C4",
            timeout=30,
            interval=1,
        )
