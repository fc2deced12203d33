"""Watch a DMS task until its full load is done or CDC is ready, cheaply, and say why it ended.

Each poll makes one describe_replication_tasks call and one get_metric_data
call. Table statistics (paginated, so possibly many calls) are read on the
first poll, every ``table_stats_every`` polls, and whenever the task's table
counts change, and always again before the watch says "reached". Throttling
(after botocore's own retries) doubles the delay between polls instead of
failing the watch; a good poll restores it.

Whatever ``dms status`` calls a problem fails the watch at once: a table in
error or in a bad state (whatever the task's ``TablesErrored`` counter says),
failed or suspended validation, a task stopped on an error.

``cdc-ready`` means: phase ``cdc``, no such problem, and for ``stable_for``
consecutive periods (the newest starting no more than 3 periods ago)
CDCLatencyTarget <= ``max_latency_seconds`` and CDCIncomingChanges == 0.
CDCLatencySource is not part of it: it reads 0 whenever the source is idle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from migctl.dms.metrics import CdcMetrics, fetch_cdc_metrics, stable_datapoints
from migctl.dms.task import (
    CDC,
    FAILED,
    STOPPED,
    TableStats,
    TaskRef,
    TaskSnapshot,
    describe_task,
    find_problems,
    table_statistics_or_reason,
)
from migctl.errors import UsageError, is_throttling
from migctl.poll import Clock, Done, Pending, Round, poll

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dms import DatabaseMigrationServiceClient

UNTIL_FULL_LOAD = "full-load"
UNTIL_CDC_READY = "cdc-ready"
UNTIL = (UNTIL_FULL_LOAD, UNTIL_CDC_READY)
# The newest datapoint's period must have started within this many periods of now: a period
# or two, plus CloudWatch's publishing delay. Older, the metrics prove nothing about now.
STALE_AFTER_PERIODS = 3


@dataclass(frozen=True)
class Readiness:
    ready: bool
    stable_datapoints: int
    needed: int
    reason: str


@dataclass(frozen=True)
class WatchState:
    """What the watch knows after a poll."""

    task: TaskSnapshot
    tables: tuple[TableStats, ...] | None
    cdc: CdcMetrics | None
    readiness: Readiness
    polls: int
    elapsed_seconds: float
    next_poll_seconds: float
    throttled: int  # throttled calls so far
    # The way back's reverse task, watched beside: its state and what is wrong with it.
    reverse: TaskSnapshot | None = None
    reverse_problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class WatchUpdate:
    kind: str  # "state" after a poll, "throttled" when AWS throttled a call
    changed: bool  # the state differs from the last one reported (always True for "throttled")
    state: WatchState | None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class WatchResult:
    until: str
    outcome: Literal["reached", "failed", "timed-out"]
    reason: str
    state: WatchState | None  # None only when every describe was throttled

    @property
    def reached(self) -> bool:
        return self.outcome == "reached"


def cdc_readiness(
    task: TaskSnapshot,
    cdc: CdcMetrics | None,
    *,
    max_latency_seconds: float,
    stable_for: int,
    now: dt.datetime,
) -> Readiness:
    run = stable_datapoints(cdc, max_latency_seconds=max_latency_seconds) if cdc else 0

    def waiting(reason: str) -> Readiness:
        return Readiness(False, run, stable_for, reason)

    if task.phase != CDC:
        return waiting(f"not in CDC: phase {task.phase} (status {task.status})")
    if task.stats.tables_errored:
        return waiting(f"{task.stats.tables_errored} table(s) errored")
    if cdc is None:
        return waiting("no CDC metrics read yet")
    newest = cdc.newest_at()
    if newest is None:
        since = cdc.window_start.strftime("%H:%M:%SZ")
        return waiting(f"no CDCLatencyTarget/CDCIncomingChanges datapoints since {since}")
    age = (now - newest).total_seconds()
    if age > STALE_AFTER_PERIODS * cdc.period_seconds:
        return waiting(f"newest CDC datapoint is {age:.0f}s old")
    if run < stable_for:
        latency, incoming = cdc.latency_target.latest, cdc.incoming_changes.latest
        return waiting(
            f"{run} of {stable_for} consecutive datapoints within limits "
            f"(latest CDCLatencyTarget {_num(latency)}s, CDCIncomingChanges {_num(incoming)})"
        )
    return Readiness(
        True,
        run,
        stable_for,
        f"CDCLatencyTarget <= {max_latency_seconds:g}s and CDCIncomingChanges = 0 "
        f"for {run} consecutive datapoints",
    )


def _num(value: float | None) -> str:
    return "no data" if value is None else f"{value:g}"


def verdict(
    until: str,
    task: TaskSnapshot,
    readiness: Readiness,
    tables: tuple[TableStats, ...] | None = None,
) -> tuple[Literal["reached", "failed"], str] | None:
    """("reached" | "failed", reason) when the watch is over, else None.

    Whatever ``dms status`` calls a problem (``find_problems``: a table in error or in a bad
    state, failed validation, a task stopped on an error) fails the watch, whatever the
    task's own counters say."""
    if task.phase == FAILED:
        return "failed", f"task failed: {task.failure}"
    problems = find_problems(task, tables)
    if problems:
        return "failed", "; ".join(problems)
    if until == UNTIL_FULL_LOAD:
        stats = task.stats
        if stats.full_load_finished:
            if stats.tables_errored:
                return "failed", f"full load finished with {stats.tables_errored} table(s) errored"
            return "reached", f"full load finished: {stats.tables_loaded} table(s) loaded"
        if task.phase == STOPPED:
            return "failed", f"task stopped before its full load finished: {task.failure}"
        return None
    if task.phase == STOPPED:
        return "failed", f"task stopped: {task.failure}"
    return ("reached", readiness.reason) if readiness.ready else None


def _check_until(until: str, ref: TaskRef) -> None:
    if until not in UNTIL:
        raise UsageError(f"--until must be one of {', '.join(UNTIL)}, not {until!r}")
    if until == UNTIL_FULL_LOAD and ref.migration_type == "cdc":
        raise UsageError(f"DMS task {ref.identifier} is CDC-only: it has no full load to wait for")
    if until == UNTIL_CDC_READY and ref.migration_type == "full-load":
        raise UsageError(f"DMS task {ref.identifier} is full-load only: it never reaches CDC")


def _fingerprint(state: WatchState) -> Hashable:
    task, stats, cdc = state.task, state.task.stats, state.cdc
    metrics = tuple((s.latest, s.latest_at) for s in cdc.series()) if cdc else ()
    tables = tuple((t.schema, t.table, t.state, t.validation_state) for t in state.tables or ())
    return (
        task.status,
        task.phase,
        task.stop_reason,
        task.last_failure_message,
        stats.full_load_percent,
        (stats.tables_loaded, stats.tables_loading, stats.tables_queued, stats.tables_errored),
        metrics,
        tables,
        state.readiness.ready,
        state.readiness.stable_datapoints,
        state.reverse.status if state.reverse else None,
        state.reverse_problems,
    )


def watch_task(
    dms: DatabaseMigrationServiceClient,
    cloudwatch: CloudWatchClient,
    ref: TaskRef,
    *,
    until: str,
    timeout: float,
    interval: float,
    max_latency_seconds: float,
    stable_for: int,
    period_seconds: int,
    table_stats_every: int = 5,
    reverse: TaskRef | None = None,
    on_update: Callable[[WatchUpdate], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] | None = None,
) -> WatchResult:
    """Poll until ``until`` is reached, the task fails or stops, or time runs out.

    ``reverse``: the way back's task, watched beside (described and its tables read each
    poll): a problem there fails the watch too, as it makes ``dms status`` exit 1."""
    _check_until(until, ref)
    wall = now or (lambda: dt.datetime.now(dt.UTC))
    lookback = period_seconds * max(stable_for + 2, 10)
    Watched = WatchResult | WatchState  # a final result, or the state so far
    state: WatchState | None = None
    cdc: CdcMetrics | None = None
    tables: tuple[TableStats, ...] | None = None
    tables_read_at_poll = 0
    last_counts: tuple[int, ...] | None = None
    last_fingerprint: Hashable = None

    def probe(round_: Round) -> Done[Watched] | Pending[Watched]:
        nonlocal state, cdc, tables, tables_read_at_poll, last_counts, last_fingerprint
        task = describe_task(dms, ref.arn)  # throttled: the poll backs off
        polls = round_.polls + 1
        throttled: str | None = None
        try:
            cdc = fetch_cdc_metrics(
                cloudwatch,
                instance_identifier=ref.instance_identifier,
                task_resource_id=ref.resource_id,
                lookback_seconds=lookback,
                period_seconds=period_seconds,
                now=wall,
            )
        except Exception as exc:
            if not is_throttling(exc):
                raise
            throttled = "get_metric_data throttled by AWS"  # the previous metrics stay, dated
        stats = task.stats
        counts = (
            stats.tables_loaded,
            stats.tables_loading,
            stats.tables_queued,
            stats.tables_errored,
        )
        if (
            tables_read_at_poll == 0
            or polls - tables_read_at_poll >= table_stats_every
            or counts != last_counts
        ):
            try:
                tables = table_statistics_or_reason(dms, ref.arn)[0]
                tables_read_at_poll = polls
            except Exception as exc:
                if not is_throttling(exc):
                    raise
                throttled = "describe_table_statistics throttled by AWS"
        last_counts = counts
        readiness = cdc_readiness(
            task, cdc, max_latency_seconds=max_latency_seconds, stable_for=stable_for, now=wall()
        )
        back: TaskSnapshot | None = None
        back_problems: tuple[str, ...] = ()
        if reverse is not None:  # read whole every poll: never judged on stale tables
            back = describe_task(dms, reverse.arn)
            back_tables = table_statistics_or_reason(dms, reverse.arn)[0]
            back_problems = find_problems(back, back_tables)
        state = WatchState(
            task,
            tables,
            cdc,
            readiness,
            polls,
            round_.elapsed,
            round_.next_delay(throttled is not None),
            round_.throttled + (throttled is not None),
            back,
            back_problems,
        )
        fingerprint = _fingerprint(state)
        if on_update:
            on_update(WatchUpdate("state", fingerprint != last_fingerprint, state))
        last_fingerprint = fingerprint
        ended = verdict(until, task, readiness, tables)
        if back_problems:
            assert reverse is not None
            ended = (
                "failed",
                f"the way back's task {reverse.identifier}: " + "; ".join(back_problems),
            )
        if ended is not None and ended[0] == "reached" and tables_read_at_poll != polls:
            # Never "reached" on table statistics from an earlier poll: read them now.
            tables = table_statistics_or_reason(dms, ref.arn)[0]
            tables_read_at_poll = polls
            state = dataclasses.replace(state, tables=tables)
            ended = verdict(until, task, readiness, tables)
        if ended is not None:
            return Done(WatchResult(until=until, outcome=ended[0], reason=ended[1], state=state))
        return Pending(state, throttled, reason=f"task {task.status}: {readiness.reason}")

    def backed_off(what: str, delay: float) -> None:
        if on_update:
            on_update(WatchUpdate("throttled", True, state, f"{what}; next poll in {delay:g}s"))

    result = poll(
        probe,
        timeout=timeout,
        interval=interval,
        clock=Clock(clock, sleep),
        on_backoff=backed_off,
        what=f"DMS task {ref.identifier} (until {until})",
    )
    if result.done and isinstance(result.value, WatchResult):
        return result.value
    waiting_for = (
        state.readiness.reason if state else "every describe_replication_tasks was throttled"
    )
    if state and until == UNTIL_FULL_LOAD:
        percent = _num(state.task.stats.full_load_percent)
        waiting_for = f"full load at {percent}% (status {state.task.status})"
    return WatchResult(
        until=until,
        outcome="timed-out",
        reason=f"timed out after {timeout:g}s waiting for {until}: {waiting_for}",
        state=state,
    )
