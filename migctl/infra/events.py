"""Pulumi engine events -> a progress model, and the thread that runs an operation.

The Automation API calls ``on_event`` on its own threads (the gRPC server's
workers for CLI > 3.205, a log-file watcher before). Those threads only put the
event on a :class:`queue.SimpleQueue`; the caller's thread takes them off,
folds them into a :class:`ProgressTracker` and hands :class:`ProgressEvent`
values to the ``on_progress`` callback, so a renderer never sees two threads.

Ctrl-C (see docs/deploy.md, "Interrupting an update"): the operation runs on a
worker thread and the main thread waits, so SIGINT lands in the main thread
while ``pulumi`` keeps running. The first Ctrl-C asks pulumi to cancel: it
stops starting operations, lets in-flight ones finish, saves the state and
releases the lock. In a terminal the pulumi process got the same SIGINT from
the terminal; otherwise migctl forwards it. A second Ctrl-C forces: SIGTERM to
pulumi, a bounded wait, and the caller then runs ``stack.cancel()`` to release
a lock the killed process left behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from migctl.redact import redact_text

T = TypeVar("T")
STACK_TYPE = "pulumi:pulumi:Stack"
SHOWN_SEVERITIES = frozenset({"error", "warning"})


@dataclass(frozen=True)
class ResourceProgress:
    """One resource the engine is working on, as shown in the live table."""

    urn: str
    type: str
    name: str
    op: str  # create, update, delete, replace, refresh, read, ...
    state: str  # running | done | planned | failed | unfinished
    started_at: float  # clock() when the step started
    seconds: float | None = None  # set once the step finished or failed


@dataclass(frozen=True)
class ProgressEvent:
    """What the renderer is told; ``kind`` says which fields are set."""

    kind: str  # resource | diagnostic | summary | cancelling | note
    phase: str  # preview | up | destroy | refresh
    resource: ResourceProgress | None = None
    severity: str | None = None
    message: str | None = None
    changes: Mapping[str, int] | None = None
    duration_seconds: float | None = None
    forced: bool = False


OnProgress = Callable[[ProgressEvent], None]


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class ProgressTracker:
    """Folds engine events into resource rows, errors and the change summary (one thread only)."""

    def __init__(
        self, phase: str, *, clock: Callable[[], float] = time.monotonic, verbose: bool = False
    ) -> None:
        self.phase = phase
        self.clock = clock
        self.verbose = verbose
        self.rows: dict[str, ResourceProgress] = {}
        self.errors: list[str] = []
        self.changes: dict[str, int] | None = None
        self.duration_seconds: float | None = None

    def apply(self, event: Any) -> list[ProgressEvent]:
        """Update the model with one ``pulumi.automation.EngineEvent``; return what to show."""
        if event.resource_pre_event is not None:
            return self._started(event.resource_pre_event.metadata)
        if event.res_outputs_event is not None:
            planning = bool(event.res_outputs_event.planning)
            return self._finished(
                event.res_outputs_event.metadata, "planned" if planning else "done"
            )
        if event.res_op_failed_event is not None:
            return self._finished(event.res_op_failed_event.metadata, "failed")
        if event.diagnostic_event is not None:
            return self._diagnostic(event.diagnostic_event)
        if event.summary_event is not None:
            summary = event.summary_event
            self.changes = {
                str(getattr(k, "value", k)): int(v) for k, v in summary.resource_changes.items()
            }
            self.duration_seconds = float(summary.duration_seconds)
            return [
                ProgressEvent(
                    "summary",
                    self.phase,
                    changes=dict(self.changes),
                    duration_seconds=self.duration_seconds,
                )
            ]
        return []

    def finish(self) -> list[ProgressEvent]:
        """Mark the steps that never reported an end (killed, aborted) as ``unfinished``."""
        unfinished = [row for row in self.rows.values() if row.state == "running"]
        return [event for row in unfinished for event in self._finished(row, "unfinished")]

    def _started(self, meta: Any) -> list[ProgressEvent]:
        op = str(getattr(meta.op, "value", meta.op))
        if meta.type == STACK_TYPE or op == "same":
            return []
        row = ResourceProgress(
            meta.urn, meta.type, resource_name(meta.urn), op, "running", self.clock()
        )
        self.rows[meta.urn] = row
        return [ProgressEvent("resource", self.phase, resource=row)]

    def _finished(self, meta: Any, state: str) -> list[ProgressEvent]:
        row = self.rows.get(meta.urn)
        if row is None:  # a step we did not show (same, the stack itself)
            return []
        done = ResourceProgress(
            row.urn,
            row.type,
            row.name,
            row.op,
            state,
            row.started_at,
            round(self.clock() - row.started_at, 1),
        )
        self.rows[meta.urn] = done
        return [ProgressEvent("resource", self.phase, resource=done)]

    def _diagnostic(self, diag: Any) -> list[ProgressEvent]:
        severity = diag.severity or "info"
        if diag.ephemeral or (severity not in SHOWN_SEVERITIES and not self.verbose):
            return []
        message = redact_text(str(diag.message or "").strip())
        if not message:
            return []
        if severity == "error" and message not in self.errors:
            self.errors.append(message)
        return [
            ProgressEvent(
                "diagnostic",
                self.phase,
                severity=severity,
                message=message,
                resource=self._row(diag),
            )
        ]

    def _row(self, diag: Any) -> ResourceProgress | None:
        return self.rows.get(diag.urn) if diag.urn else None


@dataclass
class StreamOutcome(Generic[T]):
    """How an operation on the worker thread ended."""

    result: T | None = None
    error: BaseException | None = None
    interrupts: int = 0  # Ctrl-C presses seen while it ran
    finished: bool = True  # False when a forced cancel gave up waiting for pulumi
    signalled: list[int] = field(default_factory=list)  # pulumi pids migctl signalled

    @property
    def cancelled(self) -> bool:
        return self.interrupts > 0

    @property
    def forced(self) -> bool:
        return self.interrupts > 1


def run_with_events(
    call: Callable[[Callable[[Any], None]], T],
    tracker: ProgressTracker,
    on_progress: OnProgress | None,
    *,
    poll_seconds: float = 0.1,
    kill_grace_seconds: float = 10.0,
) -> StreamOutcome[T]:
    """Run ``call(on_event)`` on a worker thread; feed its events to ``on_progress`` here.

    Returns when the call returns or raises, or when a forced cancel has waited
    ``kill_grace_seconds`` for pulumi to exit.
    """
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outcome: StreamOutcome[T] = StreamOutcome()

    def work() -> None:
        try:
            outcome.result = call(events.put)
        except BaseException as exc:  # handed to the caller's thread
            outcome.error = exc

    worker = threading.Thread(target=work, name=f"pulumi-{tracker.phase}", daemon=True)
    worker.start()
    give_up_at: float | None = None
    while True:
        try:
            _drain(events, tracker, on_progress, poll_seconds)
            if not worker.is_alive():
                _drain(events, tracker, on_progress, 0)
                break
            if give_up_at is not None and tracker.clock() >= give_up_at:
                outcome.finished = False
                break
        except KeyboardInterrupt:
            outcome.interrupts += 1
            forced = outcome.interrupts > 1
            if on_progress is not None:
                on_progress(ProgressEvent("cancelling", tracker.phase, forced=forced))
            outcome.signalled.extend(interrupt_pulumi(forced=forced))
            if forced and give_up_at is None:
                give_up_at = tracker.clock() + kill_grace_seconds
    for update in tracker.finish():
        if on_progress is not None:
            on_progress(update)
    return outcome


def _drain(
    events: queue.SimpleQueue[Any],
    tracker: ProgressTracker,
    on_progress: OnProgress | None,
    wait: float,
) -> None:
    try:
        event = events.get(timeout=wait) if wait else events.get_nowait()
    except queue.Empty:
        return
    while True:
        for update in tracker.apply(event):
            if on_progress is not None:
                on_progress(update)
        try:
            event = events.get_nowait()
        except queue.Empty:
            return


def interrupt_pulumi(*, forced: bool) -> list[int]:
    """Signal the pulumi processes this process started: SIGINT to cancel, SIGTERM to force.

    A Ctrl-C typed in a terminal already reached pulumi (same foreground process
    group); sending a second SIGINT would make pulumi abandon in-flight
    operations, so the first cancel only forwards when no terminal delivered it.
    """
    if not forced and _terminal_delivered_sigint():
        return []
    sig = signal.SIGTERM if forced else signal.SIGINT
    sent = []
    for pid in pulumi_children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            sent.append(pid)
    return sent


def _terminal_delivered_sigint() -> bool:
    try:
        fd = sys.stdin.fileno()
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def pulumi_children(parent: int | None = None) -> list[int]:
    """PIDs of the direct children of ``parent`` (default: this process) that run ``pulumi``."""
    parent = os.getpid() if parent is None else parent
    proc = Path("/proc")
    found: list[int] = []
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and _is_pulumi([a.decode(errors="replace") for a in argv[:2]]):
                found.append(int(entry.name))
        return found
    listing = subprocess.run(
        ["ps", "-A", "-o", "pid=,ppid=,command="], capture_output=True, text=True, check=False
    )
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == str(parent) and _is_pulumi(parts[2:4]):
            found.append(int(parts[0]))
    return found


def _is_pulumi(argv: list[str]) -> bool:
    return any(os.path.basename(arg) == "pulumi" for arg in argv)
