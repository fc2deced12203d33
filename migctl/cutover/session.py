"""One invocation of the cutover: the lock held, the journal written first, notices, the result.

:class:`Session` is what ``runbook.py`` (run, resume) and ``rollback.py``
share: every record goes to the journal, then to the state (``state.apply``,
the same function that replays the journal), then to the display. A record
that could not be journaled stops the run: nothing happens unrecorded.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from migctl.cutover.context import CutoverContext
from migctl.cutover.journal import Journal
from migctl.cutover.lock import Lock, LockHolder, break_lock, me
from migctl.cutover.model import Step, StepMemo
from migctl.cutover.notify import Notifier
from migctl.cutover.result import EXIT_CODES, CutoverResult, summarize
from migctl.cutover.state import CutoverState, apply, replay
from migctl.cutover.steps import STEPS
from migctl.errors import MigctlError, OperationalError, translate

log = logging.getLogger(__name__)
Confirm = Callable[[str], bool]
OnEvent = Callable[[Mapping[str, Any]], None]


def cutover_status(journal: Journal, steps: Sequence[Step] = STEPS) -> CutoverState:
    return replay(journal.read(), [s.name for s in steps])


class Session:
    def __init__(
        self,
        ctx: CutoverContext,
        journal: Journal,
        lock: Lock,
        *,
        steps: Sequence[Step] = STEPS,
        notifier: Notifier | None = None,
        on_event: OnEvent | None = None,
        confirm: Confirm | None = None,
        interactive: bool = True,
        environ: Mapping[str, str] | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.ctx = ctx
        self.journal = journal
        self.lock = lock
        self.steps = tuple(steps)
        self.names = [s.name for s in self.steps]
        self.notifier = notifier
        self.on_event = on_event
        self.confirm = confirm  # None: do not ask (--yes)
        self.interactive = interactive
        self.environ = os.environ if environ is None else environ
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.state = replay((), self.names)
        self.warnings: list[str] = []

    def record(self, event: str, **fields: Any) -> None:
        record = {
            "ts": self.now().isoformat(),
            "cutover_id": self.state.cutover_id,
            "event": event,
            **fields,
        }
        self.journal.append(record)
        self.state = apply(self.state, record)
        if self.on_event is not None:
            try:
                self.on_event(record)
            except Exception:
                log.warning("could not show cutover event %r", event, exc_info=True)

    def reporter(self, step: str) -> Callable[[str, Mapping[str, Any]], None]:
        """The ``ctx.report`` of one step: each note is journaled; warnings are kept for the end."""

        def report(message: str, details: Mapping[str, Any]) -> None:
            if details.get("warning"):
                self.warnings.append(message)
            extra = {"details": dict(details)} if details else {}
            self.record("note", step=step, message=message, **extra)

        return report

    def memo(self, step: Step) -> StepMemo:
        current = self.state.step(step.name)
        return StepMemo(current.before, current.details)

    @contextmanager
    def locked(self, command: str, *, breaking: bool) -> Iterator[None]:
        """Hold the lock (breaking a dead holder's first when asked) with the journal replayed."""
        broken: LockHolder | None = break_lock(self.lock) if breaking else None
        self.lock.acquire(me(command))
        try:
            self.state = replay(self.journal.read(), self.names)
            if broken is not None and self.state.cutover_id is not None:
                self.record("lock_broken", holder=asdict(broken))
            yield
        finally:
            self.lock.release()

    def notify(self, what: str, message: str) -> None:
        if self.notifier is None:
            return
        env = self.ctx.settings.project.environment
        subject = f"migctl cutover {env} {self.state.cutover_id}: {what}"
        body = f"{subject}\n{message}\njournal: {self.journal.location}"
        failure = self.notifier.send(subject, body)
        if failure:
            self.record("note", message=f"SNS notice not sent: {failure}")

    def finish(
        self,
        outcome: str,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        manual_steps: Sequence[str] = (),
        state: Sequence[str] = (),
    ) -> CutoverResult:
        code = exit_code if exit_code is not None else int(EXIT_CODES[outcome])
        freeze_seconds, freeze_open = self.state.write_freeze(self.now())
        self.record(
            "run_finished",
            outcome=outcome,
            exit_code=code,
            reason=reason,
            write_freeze_seconds=freeze_seconds,
            write_freeze_open=freeze_open,
        )
        if outcome == "completed":
            self.notify("completed", f"write freeze {freeze_seconds}s")
        next_steps: tuple[str, ...] = ()
        if outcome in ("paused", "aborted"):
            next_steps = (
                "continue: migctl cutover --resume",
                "or undo what was done: migctl cutover rollback",
            )
        return summarize(
            self.state,
            self.steps,
            outcome=outcome,
            exit_code=code,
            journal=self.journal.location,
            write_freeze=(freeze_seconds, freeze_open),
            reason=reason,
            next_steps=next_steps,
            manual_steps=tuple(manual_steps),
            state=tuple(state),
            warnings=tuple(dict.fromkeys(self.warnings)),
        )


def as_error(exc: BaseException) -> MigctlError:
    err = translate(exc)
    if err is None:
        log.warning("unexpected error in a cutover step", exc_info=exc)
        return OperationalError(f"{type(exc).__name__}: {exc}")
    return err
