"""`migctl dms watch`: cdc-ready, full-load, timeouts, failures, throttling, cheap polling."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from dms_support import (
    DmsWorld,
    FakeTime,
    in_cdc,
    make_task,
    put_cdc_metrics,
    set_full_load,
    start_running,
)

from migctl.dms.watch import WatchResult, WatchUpdate, watch_task
from migctl.errors import UsageError
from migctl.sandbox import moto_dms
from tests.cli_support import Cli

pytestmark = pytest.mark.usefixtures("aws")


def watch(
    world: DmsWorld, fake: FakeTime, **overrides: Any
) -> tuple[WatchResult, list[WatchUpdate]]:
    updates: list[WatchUpdate] = []
    options: dict[str, Any] = {
        "until": "cdc-ready",
        "timeout": 300.0,
        "interval": 15.0,
        "max_latency_seconds": 5.0,
        "stable_for": 3,
        "period_seconds": 60,
        "table_stats_every": 5,
    }
    options.update(overrides)
    result = watch_task(
        world.dms,
        world.cloudwatch,
        world.ref(),
        on_update=updates.append,
        clock=fake.clock,
        sleep=fake.sleep,
        now=fake.wall,
        **options,
    )
    return result, updates


def test_reaches_cdc_ready_once_stable_with_one_describe_and_one_metric_call_per_poll() -> None:
    world = make_task()
    start_running(world)
    set_full_load(world, percent=60, loaded=2, loading=1, queued=0)
    base = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    # A datapoint a minute, the last at base+2m59s: CDC catches up as the watch polls each minute.
    put_cdc_metrics(
        world,
        latency_target=[30, 30, 4, 2, 1, 1],
        incoming=[900, 900, 0, 0, 0, 0],
        now=base + dt.timedelta(minutes=3),
    )

    def between_polls(n: int) -> None:
        if n == 1:
            set_full_load(world, percent=100, loaded=3, loading=0, queued=0, finished=True)

    fake = FakeTime(between_polls, base)
    world.calls.clear()
    result, updates = watch(world, fake, interval=60.0)
    assert result.outcome == "reached" and result.reached
    assert "for 3 consecutive datapoints" in result.reason
    assert result.state is not None and result.state.polls == 3
    assert world.count("DescribeReplicationTasks") == 3 + 1  # + the one resolve_task makes
    assert world.count("GetMetricData") == 3
    phases = [(u.state.task.phase, u.state.readiness.stable_datapoints) for u in updates if u.state]
    assert phases == [("full-load", 1), ("cdc", 2), ("cdc", 3)]
    assert all(u.changed for u in updates)
    assert "not in CDC: phase full-load" in updates[0].state.readiness.reason  # type: ignore[union-attr]
    assert "2 of 3 consecutive" in updates[1].state.readiness.reason  # type: ignore[union-attr]
    assert fake.sleeps == [60.0, 60.0]


def test_times_out_with_the_reason_when_latency_stays_high() -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[40, 35, 30], incoming=[12, 10, 8])
    fake = FakeTime()
    result, updates = watch(world, fake, timeout=60.0)
    assert result.outcome == "timed-out" and not result.reached
    assert result.reason.startswith("timed out after 60s waiting for cdc-ready: 0 of 3 consecutive")
    assert "CDCLatencyTarget 30s" in result.reason and "CDCIncomingChanges 8" in result.reason
    assert result.state is not None and result.state.polls == 5  # t=0, 15, 30, 45, 60
    assert sum(u.changed for u in updates) == 1  # nothing changed after the first poll


def test_stops_on_failure_with_stop_reason_and_message() -> None:
    world = make_task()
    in_cdc(world)

    def between_polls(n: int) -> None:
        moto_dms.set_task(
            world.task_arn,
            status="failed",
            stop_reason="Stop Reason RECOVERABLE_ERROR",
            last_failure_message="Error CDC source: replication slot dropped",
        )

    result, _ = watch(world, FakeTime(between_polls))
    assert result.outcome == "failed"
    assert result.reason == (
        "task failed: Stop Reason RECOVERABLE_ERROR; Error CDC source: replication slot dropped"
    )


def test_stopped_task_ends_a_cdc_ready_watch() -> None:
    world = make_task()
    in_cdc(world)
    moto_dms.set_task(world.task_arn, status="stopped", stop_reason="Stop Reason NORMAL")
    result, _ = watch(world, FakeTime())
    assert (result.outcome, result.reason) == ("failed", "task stopped: Stop Reason NORMAL")


def test_metrics_under_the_task_name_never_make_it_ready() -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(
        world, latency_target=[1, 1, 1, 1], incoming=[0, 0, 0, 0], task_dimension=world.task_name
    )
    result, _ = watch(world, FakeTime(), timeout=30.0)
    assert result.outcome == "timed-out"
    assert "no CDCLatencyTarget/CDCIncomingChanges datapoints since" in result.reason


def test_stale_datapoints_do_not_count() -> None:
    world = make_task()
    in_cdc(world)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=7)
    put_cdc_metrics(world, latency_target=[1, 1, 1], incoming=[0, 0, 0], now=old)
    result, _ = watch(world, FakeTime(), timeout=0.0)
    assert result.outcome == "timed-out" and "newest CDC datapoint is" in result.reason


def test_gap_in_datapoints_breaks_the_run() -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[1, 1], incoming=[0, 0])
    put_cdc_metrics(
        world,
        latency_target=[1],
        incoming=[0],
        now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3),
    )
    result, _ = watch(world, FakeTime(), timeout=0.0)
    assert result.state is not None and result.state.readiness.stable_datapoints == 2


def test_errored_table_fails_cdc_ready() -> None:
    world = make_task()
    in_cdc(world)
    set_full_load(world, percent=100, loaded=2, loading=0, queued=0, errored=1, finished=True)
    put_cdc_metrics(world, latency_target=[1, 1, 1], incoming=[0, 0, 0])
    result, _ = watch(world, FakeTime(), timeout=0.0)
    assert result.outcome == "failed" and "1 table(s) errored" in result.reason


@pytest.mark.parametrize("until", ["cdc-ready", "full-load"])
@pytest.mark.parametrize("state", ["Table error", "Table cancelled", "Table does not exist"])
def test_a_table_in_a_bad_state_fails_the_watch_whatever_the_task_counters_say(
    until: str, state: str
) -> None:
    """The table statistics say it, the task's TablesErrored says 0, and the table goes bad
    on the very poll the watch would end: never "reached". For cdc-ready the task's counts
    do not change, so no table read is due: the watch must read them before it ends."""
    world = make_task()
    start_running(world)
    loading = 1 if until == "full-load" else 0
    set_full_load(world, percent=90, loaded=2 - loading, loading=loading, queued=0, finished=True)
    moto_dms.set_table_statistics(
        world.task_arn, [moto_dms.table_row("public", t) for t in ("payments", "ledger")]
    )
    fake = FakeTime()
    put_cdc_metrics(world, latency_target=[9, 9, 9], incoming=[0, 0, 0], now=fake.wall())

    def between_polls(n: int) -> None:
        set_full_load(world, percent=100, loaded=2, loading=0, queued=0, finished=True)
        moto_dms.set_table_statistics(
            world.task_arn,
            [
                moto_dms.table_row("public", "payments"),
                moto_dms.table_row("public", "ledger", TableState=state),
            ],
        )
        put_cdc_metrics(world, latency_target=[1, 1, 1], incoming=[0, 0, 0], now=fake.wall())

    fake.between_polls = between_polls
    result, _ = watch(world, fake, until=until, table_stats_every=100)
    assert result.outcome == "failed", result.reason
    assert f"public.ledger ({state})" in result.reason or "1 table(s) in error" in result.reason
    assert result.state is not None and result.state.task.stats.tables_errored == 0


def test_datapoints_minutes_old_and_nothing_since_never_make_it_ready() -> None:
    world = make_task()
    in_cdc(world)
    four_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4)
    put_cdc_metrics(world, latency_target=[1, 1, 1], incoming=[0, 0, 0], now=four_minutes_ago)
    result, _ = watch(world, FakeTime(), timeout=0.0)
    assert result.outcome == "timed-out" and "newest CDC datapoint is" in result.reason


def test_until_full_load_reached_and_failed_with_errored_tables() -> None:
    world = make_task()
    start_running(world)
    set_full_load(world, percent=70, loaded=7, loading=3, queued=0)

    def between_polls(n: int) -> None:
        set_full_load(world, percent=100, loaded=10, loading=0, queued=0, finished=True)

    result, _ = watch(world, FakeTime(between_polls), until="full-load")
    assert (result.outcome, result.reason) == ("reached", "full load finished: 10 table(s) loaded")
    set_full_load(world, percent=100, loaded=9, loading=0, queued=0, errored=1, finished=True)
    result, _ = watch(world, FakeTime(), until="full-load")
    assert result.outcome == "failed" and "1 table(s) errored" in result.reason


def test_full_load_only_task_that_finished_reaches_full_load() -> None:
    world = make_task(migration_type="full-load")
    start_running(world)
    set_full_load(world, percent=100, loaded=4, loading=0, queued=0, finished=True)
    moto_dms.set_task(
        world.task_arn, status="stopped", stop_reason="Stop Reason FULL_LOAD_ONLY_FINISHED"
    )
    result, _ = watch(world, FakeTime(), until="full-load")
    assert result.outcome == "reached"
    with pytest.raises(UsageError, match="never reaches CDC"):
        watch(world, FakeTime(), until="cdc-ready")


def test_throttling_slows_the_loop_instead_of_failing() -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[1, 1, 1], incoming=[0, 0, 0])
    ref = world.ref()
    moto_dms.throttle("DescribeReplicationTasks", 3)
    fake = FakeTime()
    updates: list[WatchUpdate] = []
    result = watch_task(
        world.dms, world.cloudwatch, ref, until="cdc-ready", timeout=600, interval=10,
        max_latency_seconds=5, stable_for=3, period_seconds=60, on_update=updates.append,
        clock=fake.clock, sleep=fake.sleep,
    )  # fmt: skip
    assert result.outcome == "reached"
    assert fake.sleeps == [20.0, 40.0, 80.0]  # doubled each time, then a good poll ends it
    assert [u.kind for u in updates] == ["throttled", "throttled", "throttled", "state"]
    assert result.state is not None and result.state.throttled == 3


def test_table_statistics_every_nth_poll_or_when_counts_change() -> None:
    world = make_task()
    in_cdc(world, tables=3)
    put_cdc_metrics(world, latency_target=[50], incoming=[5])

    def between_polls(n: int) -> None:
        if n == 5:  # a table is reloaded: the counts change, nothing is wrong
            set_full_load(world, percent=100, loaded=2, loading=1, queued=0, finished=True)

    fake = FakeTime(between_polls)
    world.calls.clear()
    result, _ = watch(world, fake, timeout=90.0, interval=10.0, table_stats_every=3)
    assert result.state is not None and result.state.polls == 10
    # polls 1, 4, 6 (counts changed), 9 (3 after 6)
    assert world.count("DescribeTableStatistics") == 4
    assert world.count("GetMetricData") == 10


def test_cli_watch_json_streams_states_and_ends_with_result(cli: Cli) -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[3, 2, 1], incoming=[0, 0, 0])
    result = cli(
        "--output",
        "json",
        "dms",
        "watch",
        "--task",
        world.task_name,
        "--interval",
        "0",
        "--timeout",
        "5",
    )
    assert result.code == 0, result.stderr
    lines = result.json_lines()
    assert [line["event"] for line in lines] == ["state", "result"]
    state = lines[0]
    assert (
        state["ready"] is True and state["stable_datapoints"] == 3 and state["waiting_for"] is None
    )
    assert set(state) == {
        "event", "polls", "elapsed_seconds", "next_poll_seconds", "throttled", "ready",
        "stable_datapoints", "needed", "waiting_for", "task", "table_states", "cdc", "reverse",
    }  # fmt: skip
    assert state["reverse"] is None  # --task names one task: no reverse task beside it
    final = lines[-1]
    assert (final["until"], final["reached"], final["outcome"]) == ("cdc-ready", True, "reached")
    assert final["task"]["phase"] == "cdc" and final["tables"] == []


def test_cli_watch_times_out_with_exit_1_and_reason(cli: Cli) -> None:
    world = make_task()
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[9, 9, 9], incoming=[0, 0, 0])
    args = (
        "dms",
        "watch",
        "--task",
        world.task_name,
        "--interval",
        "0",
        "--timeout",
        "0",
        "--max-latency",
        "5",
    )
    result = cli("--output", "json", *args)
    assert result.code == 1
    final = result.json_lines()[-1]
    assert final["outcome"] == "timed-out" and "0 of 3 consecutive" in final["reason"]
    table = cli(*args, "--stable-for", "2")
    assert table.code == 1 and "timed-out" in table.stdout and "0 of 2 consecutive" in table.stdout
    assert cli(*args[:-2], "--max-latency", "10").code == 0


def test_cli_watch_rejects_bad_until(cli: Cli) -> None:
    world = make_task()
    result = cli("dms", "watch", "--task", world.task_name, "--until", "forever")
    assert result.code == 2 and "--until must be one of full-load, cdc-ready" in result.stderr


@pytest.mark.parametrize("task_fails", [True, False])
def test_the_reverse_task_is_watched_beside_and_its_failure_fails_the_watch(
    task_fails: bool,
) -> None:
    """The way back's task, watched beside the forward one: it runs, then its apply fails on
    a table (a duplicate key on the source), the task failing with it or (a suspended table)
    still running, on the poll the forward task becomes ready: the watch fails naming it,
    never "reached"."""
    world = make_task()
    in_cdc(world)
    fake = FakeTime()
    put_cdc_metrics(world, latency_target=[9, 9, 9], incoming=[0, 0, 0], now=fake.wall())
    back = make_task("payments-reverse", migration_type="cdc")
    start_running(back)

    def between_polls(n: int) -> None:
        put_cdc_metrics(world, latency_target=[1, 1, 1], incoming=[0, 0, 0], now=fake.wall())
        moto_dms.set_table_statistics(
            back.task_arn, [moto_dms.table_row("public", "payments", TableState="Table error")]
        )
        if task_fails:
            moto_dms.set_task(
                back.task_arn,
                status="failed",
                stop_reason="Stop Reason FATAL_ERROR",
                last_failure_message="duplicate key value violates unique constraint",
            )

    fake.between_polls = between_polls
    updates: list[WatchUpdate] = []
    result = watch_task(
        world.dms, world.cloudwatch, world.ref(), until="cdc-ready", timeout=300, interval=15,
        max_latency_seconds=5, stable_for=3, period_seconds=60, reverse=back.ref(),
        table_stats_every=100, on_update=updates.append, clock=fake.clock, sleep=fake.sleep,
        now=fake.wall,
    )  # fmt: skip
    assert result.outcome == "failed", result.reason
    assert "the way back's task payments-reverse" in result.reason
    assert "public.payments" in result.reason
    assert ("duplicate key" in result.reason) is task_fails
    first = updates[0].state
    assert first is not None and first.reverse is not None and first.reverse.status == "running"


def test_cli_watch_without_a_terminal_writes_one_whole_line_per_change(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI, `| tee`, a log file: no live view to redraw, no escape codes, no line cut at 80."""
    monkeypatch.delenv("COLUMNS", raising=False)
    world = make_task("payments-cdc-with-a-name-long-enough-to-pass-eighty-columns")
    in_cdc(world)
    put_cdc_metrics(world, latency_target=[3, 2, 1], incoming=[0, 0, 0])
    result = cli("dms", "watch", "--task", world.task_name, "--interval", "0", "--timeout", "5")
    assert result.code == 0, result.stderr
    assert "\x1b[" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.startswith(world.task_name)]
    assert len(line) > 80 and line.endswith("until cdc-ready: ready [poll 1]")
    assert "running (phase cdc" in line
