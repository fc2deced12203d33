"""The one wait loop: deadline, interval, throttle back-off, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from migctl.poll import Clock, Done, Pending, Round, poll


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> Clock:
        return Clock(lambda: self.now, self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def throttled(operation: str = "DescribeServices") -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation
    )


def test_done_at_once_returns_the_value_without_sleeping() -> None:
    fake = FakeClock()
    result = poll(lambda _: Done("ok"), timeout=10, interval=2, clock=fake.clock())
    assert (result.done, result.value, result.polls, result.throttled) == (True, "ok", 1, 0)
    assert fake.sleeps == []


def test_pending_until_the_deadline_keeps_the_last_value_and_never_oversleeps() -> None:
    fake = FakeClock()
    seen: list[int] = []

    def probe(round_: Round) -> Pending[int]:
        seen.append(round_.polls)
        return Pending(round_.polls)

    result = poll(probe, timeout=7, interval=3, clock=fake.clock())
    assert (result.done, result.value, result.polls) == (False, 3, 4)
    assert fake.sleeps == [3, 3, 1]  # the last sleep ends at the deadline
    assert seen == [0, 1, 2, 3] and result.elapsed == 7


def test_throttling_doubles_the_delay_up_to_a_cap_and_a_good_poll_restores_it() -> None:
    fake = FakeClock()
    answers: list[Any] = [throttled()] * 6 + ["pending", "done"]
    backoffs: list[tuple[str, float]] = []

    def probe(_: Round) -> Done[str] | Pending[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Done(answer) if answer == "done" else Pending(answer)

    result = poll(
        probe,
        timeout=1000,
        interval=5,
        clock=fake.clock(),
        on_backoff=lambda what, delay: backoffs.append((what, delay)),
    )
    assert result.done and result.value == "done" and result.throttled == 6
    assert fake.sleeps == [10, 20, 40, 60, 60, 60, 5]  # capped at max(8 x 5, 60) s
    assert backoffs[0] == ("DescribeServices throttled by AWS", 10)


def test_a_probe_that_keeps_partial_results_can_ask_to_slow_down() -> None:
    fake = FakeClock()
    answers = [Pending("stale metrics", throttled="get_metric_data throttled"), Done("fresh")]
    delays: list[float] = []

    def probe(round_: Round) -> Done[str] | Pending[str]:
        delays.append(round_.next_delay(round_.polls == 0))
        return answers.pop(0)

    result = poll(probe, timeout=100, interval=2, clock=fake.clock())
    assert result.done and result.throttled == 1 and result.polls == 2
    assert fake.sleeps == [4] and delays == [4, 2]  # what the probe was told is what happened


def test_every_poll_throttled_ends_at_the_deadline_with_no_value() -> None:
    fake = FakeClock()

    def probe(_: Round) -> Done[str]:
        raise throttled("DescribeAlarms")

    result = poll(probe, timeout=30, interval=5, clock=fake.clock())
    assert (result.done, result.value, result.polls, result.throttled) == (False, None, 0, 3)
    assert fake.sleeps == [10, 20]


def test_any_other_error_is_the_callers() -> None:
    def probe(_: Round) -> Done[str]:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DescribeAlarms")

    with pytest.raises(ClientError, match="AccessDenied"):
        poll(probe, timeout=30, interval=5, clock=FakeClock().clock())
