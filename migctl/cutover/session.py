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
import signal
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
from migctl.cutover.state import CutoverState, apply, history, replay
from migctl.cutover.steps import STEPS, standing
from migctl.errors import MigctlError, OperationalError, UsageError, translate

log = logging.getLogger(__name__)
CRASH_ENV = "MIGCTL_CUTOVER_CRASH_AFTER"
CRASH_SIGNAL_ENV = "MIGCTL_CUTOVER_CRASH_SIGNAL"
Confirm = Callable[[str], bool]
OnEvent = Callable[[Mapping[str, Any]], None]


def cutover_status(journal: Journal, steps: Sequence[Step] = STEPS) -> CutoverState:
    return replay(journal.read(), [s.name for s in steps])


def cutover_history(journal: Journal, steps: Sequence[Step] = STEPS) -> list[CutoverState]:
    return history(journal.read(), [s.name for s in steps])


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
        cutover_id: str | None = None,
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
        self.cutover_id = cutover_id  # a given cutover, not the latest (rollback --cutover)
        self.state = replay((), self.names)
        self.history: list[CutoverState] = []  # every cutover of the journal, oldest first
        self.later: list[CutoverState] = []  # the cutovers after the given one
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
        return StepMemo(current.before, current.details, current.progress)

    @contextmanager
    def locked(self, command: str, *, breaking: bool) -> Iterator[None]:
        """Hold the lock (breaking a dead holder's first when asked) with the journal replayed."""
        broken: LockHolder | None = break_lock(self.lock) if breaking else None
        self.lock.acquire(me(command))
        try:
            records = self.journal.read()
            self.state = replay(records, self.names, self.cutover_id)
            self.history = history(records, self.names)
            if self.cutover_id is not None:
                ids = [c.cutover_id for c in self.history]
                if self.cutover_id not in ids:
                    shown = ", ".join(str(i) for i in ids[-5:]) or "none"
                    raise UsageError(
                        f"no cutover {self.cutover_id} in the journal {self.journal.location}",
                        hint=f"the latest: {shown} (migctl cutover status)",
                    )
                self.later = self.history[ids.index(self.cutover_id) + 1 :]
            if broken is not None and self.state.cutover_id is not None:
                self.record("lock_broken", holder=asdict(broken))
            yield
        finally:
            self.lock.release()

    def crash(self, step: str, phase: str | None) -> None:
        """Test hook (``runbook.py``): die here when ``MIGCTL_CUTOVER_CRASH_AFTER`` says so."""
        wanted = self.environ.get(CRASH_ENV)
        if wanted and wanted == (step if phase is None else f"{step}:{phase}"):
            how = self.environ.get(CRASH_SIGNAL_ENV, "KILL")
            sent = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}.get(how, signal.SIGKILL)
            os.kill(os.getpid(), sent)

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
            # What the report shows of this run's end (the journal alone makes it)
            manual_steps=list(manual_steps),
            state=list(state),
            warnings=list(dict.fromkeys(self.warnings)),
        )
        if outcome == "completed":
            self.notify("completed", f"write freeze {freeze_seconds}s")
        next_steps: tuple[str, ...] = ()
        chosen = f" --cutover {self.cutover_id}" if self.cutover_id else ""
        if self.state.phase == "rolling_back":
            next_steps = (f"finish the rollback: migctl cutover rollback{chosen}",)
        elif outcome in ("paused", "aborted", "interrupted"):
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

    def interrupted(self) -> CutoverResult:
        """Ctrl-C (or SIGTERM): journal the step it stopped, say where the systems stand and
        what to run next. A second one while this is written is ignored: it takes a moment."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        terminate = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # handled as Ctrl-C too
        try:
            for current in self.state.steps:
                if current.status == "running":
                    self.record(
                        "step_finished",
                        step=current.name,
                        status="interrupted",
                        changed=True,
                        error="interrupted (Ctrl-C)",
                    )
                elif current.status == "undoing":
                    self.record(
                        "undo_finished",
                        step=current.name,
                        status="failed",
                        error="interrupted (Ctrl-C)",
                    )
            return self.finish(
                "interrupted", reason="interrupted (Ctrl-C)", state=standing(self.state)
            )
        finally:
            signal.signal(signal.SIGTERM, terminate)
            signal.signal(signal.SIGINT, previous)


def as_error(exc: BaseException) -> MigctlError:
    err = translate(exc)
    if err is None:
        log.warning("unexpected error in a cutover step", exc_info=exc)
        return OperationalError(f"{type(exc).__name__}: {exc}")
    return err
