"""The one wait loop: poll until done or a deadline, with an injectable clock and sleep.

Every wait in migctl (alarms, a DMS task starting or stopping, a DMS watch, an
ECS deployment and its bake, the cutover's gates) is a probe called by
:func:`poll`. A probe returns :class:`Done` or :class:`Pending`. When AWS
throttles a call (:func:`migctl.errors.is_throttling`, after botocore's own
``standard`` retries), the poll counts it and the next one waits twice as
long, up to ``max(8 x interval, 60 s)``; the first poll that is not throttled
goes back to ``interval``. A probe that keeps partial results when one of its
calls is throttled returns ``Pending(value, throttled="...")`` to slow down the
same way. Any other error is the probe's caller's to handle: it propagates.
Tests pass a fake clock and sleep, so a wait of minutes runs in no time.

Each poll is logged at INFO (``-v``): what is awaited, why it is not done yet
(the probe's ``Pending(reason=...)``) and the delay before the next poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from migctl.errors import aws_error_code, is_throttling

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Done(Generic[T]):
    """The wait is over: ``value`` is the answer."""

    value: T


@dataclass(frozen=True)
class Pending(Generic[T]):
    """Not yet. ``throttled`` names the call AWS throttled in this poll, if one was;
    ``reason`` says why the wait is not over, for the log."""

    value: T
    throttled: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class PollResult(Generic[T]):
    """How the wait ended.

    ``done`` is False when the deadline passed first; ``value`` is then the last
    poll's (None if every poll was throttled). ``polls`` counts the polls that
    produced a value, ``throttled`` those AWS throttled; ``ended_throttled`` says
    that the last one before the deadline was throttled: what happened since the
    last value was not seen.
    """

    done: bool
    value: T | None
    polls: int
    throttled: int
    elapsed: float
    ended_throttled: bool = False


@dataclass(frozen=True)
class Round:
    """What a probe may want to know about the wait it is part of (most need none of it)."""

    polls: int  # polls so far that produced a value
    throttled: int  # polls so far that AWS throttled
    delay: float  # the wait before this poll
    interval: float
    elapsed: float

    def next_delay(self, throttled: bool) -> float:
        """The wait after this poll: back to ``interval``, or longer if it was throttled."""
        return backoff(self.delay, self.interval) if throttled else self.interval


@dataclass(frozen=True)
class Clock:
    """What a wait reads the time with, and sleeps with (fakes in tests)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def backoff(delay: float, interval: float) -> float:
    """The delay after a throttled poll: doubled, capped at ``max(8 x interval, 60 s)``."""
    return min(max(delay, 1.0) * 2, max(interval * 8, 60.0))


def poll(
    probe: Callable[[Round], Done[T] | Pending[T]],
    *,
    timeout: float,
    interval: float,
    clock: Clock | None = None,
    on_backoff: Callable[[str, float], None] | None = None,
    what: str = "a condition",
) -> PollResult[T]:
    """Call ``probe`` every ``interval`` seconds until it is :class:`Done` or ``timeout`` passes.

    The probe gets the :class:`Round` it is called in. ``on_backoff(what, delay)``
    hears of each throttled poll and the delay before the next. ``what`` names
    what is awaited in the log (``-v``).
    """
    clock = clock or Clock()
    started = clock.now()
    deadline = started + timeout
    delay = interval
    polls = throttled = 0
    value: T | None = None
    while True:
        throttle: str | None
        reason: str | None = None
        try:
            answer = probe(Round(polls, throttled, delay, interval, clock.now() - started))
        except Exception as exc:
            if not is_throttling(exc):
                raise
            operation = getattr(exc, "operation_name", None) or aws_error_code(exc) or "a call"
            throttle = f"{operation} throttled by AWS"
        else:
            polls += 1
            value = answer.value
            if isinstance(answer, Done):
                elapsed = clock.now() - started
                log.info("%s: done after %d poll(s), %.1fs", what, polls, elapsed)
                return PollResult(
                    done=True, value=value, polls=polls, throttled=throttled, elapsed=elapsed
                )
            throttle, reason = answer.throttled, answer.reason
        delay = interval if throttle is None else backoff(delay, interval)
        if throttle is not None:
            throttled += 1
            if on_backoff is not None:
                on_backoff(throttle, delay)
        remaining = deadline - clock.now()
        why = "; ".join(r for r in (reason, throttle) if r) or "not done yet"
        if remaining <= 0:
            elapsed = clock.now() - started
            log.info("%s: %s; gave up after %d poll(s), %.1fs", what, why, polls, elapsed)
            return PollResult(
                done=False,
                value=value,
                polls=polls,
                throttled=throttled,
                elapsed=elapsed,
                ended_throttled=throttle is not None,
            )
        log.info("waiting for %s: %s; next poll in %.3gs", what, why, min(delay, remaining))
        clock.sleep(min(delay, remaining))
