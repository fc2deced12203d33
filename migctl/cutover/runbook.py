"""Run or resume the cutover: one operator at a time, every move journaled before it is made.

:func:`run_cutover` takes the lock, replays the journal, and runs the steps
from the first unfinished one (``resume``) or from the start of a new
cutover. Each step is journaled when it starts, with the state to go back to
(``prepare``, recorded once: a rerun keeps the first attempt's), then its
gate, action and check run, then its end is journaled with what it found.
``until`` stops after a step (``paused``). Before the point of no return it
asks ``confirm`` unless that is None (``--yes``). On a failure the steps that
changed something are undone in reverse (``rollback.py``); when nothing had
changed yet the run just stops (``stopped``). Once every step is done, each
step's ``release`` frees what it held (the freeze's slot), then ``completed``.
A completed cutover is not followed by another one unless ``--new`` says so.
Ctrl-C ends the run ``interrupted`` (exit 130) with the interrupted step
journaled as such and where the systems stand. Outcomes: ``result.py``.

Test hook: ``MIGCTL_CUTOVER_CRASH_AFTER=STEP`` makes the process SIGKILL
itself right after journaling STEP's end; ``STEP:action`` right after its
action and check, before its end is journaled (the step reruns on resume);
``STEP:started`` right after its start is journaled; ``undo:STEP`` right after
a rollback journals STEP's undo end, ``undo:STEP:started`` right after its
undo's start. ``Session.crash`` is the one place that reads them.
``MIGCTL_CUTOVER_CRASH_SIGNAL=INT`` sends SIGINT (Ctrl-C) instead of SIGKILL, ``TERM``
SIGTERM (handled as Ctrl-C).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from migctl.cutover.context import CutoverContext
from migctl.cutover.journal import Journal
from migctl.cutover.lock import Lock
from migctl.cutover.model import Step, StepMemo
from migctl.cutover.provenance import run_facts
from migctl.cutover.result import CutoverResult, RunOptions
from migctl.cutover.rollback import roll_back, to_undo
from migctl.cutover.session import Session, as_error
from migctl.errors import MigctlError, UsageError
from migctl.rollout.plan import require_image


def run_cutover(
    ctx: CutoverContext, journal: Journal, lock: Lock, options: RunOptions, **kwargs: Any
) -> CutoverResult:
    """Run (or resume) the cutover; ``kwargs`` go to :class:`Session` (callbacks, steps)."""
    session = Session(ctx, journal, lock, **kwargs)
    if options.until is not None and options.until not in session.names:
        raise UsageError(
            f"--until {options.until!r}: no such step", hint=f"steps: {', '.join(session.names)}"
        )
    command = "migctl cutover" + (" --resume" if options.resume else "")
    with session.locked(command, breaking=options.break_lock):
        pending, image = _admit(session, options)
        try:
            return _run(session, options, pending, image)
        except KeyboardInterrupt:
            if session.state.cutover_id is None or not session.state.run_open:
                raise  # nothing started: nothing to say but "interrupted"
            return session.interrupted()


def _run(
    session: Session, options: RunOptions, pending: list[Step], image: str | None
) -> CutoverResult:
    ctx = session.ctx
    ctx.image = image
    if not options.resume:
        session.record(
            "cutover_started",
            cutover_id=_new_id(session.now()),
            image=image,
            until=options.until,
            freeze_strategy=ctx.settings.cutover.freeze_strategy,
            environment=ctx.settings.project.environment,
        )
    ctx.cutover_id = session.state.cutover_id or ""
    session.record(
        "run_started",
        mode="resume" if options.resume else "run",
        image=image,
        until=options.until,
        **run_facts(ctx.settings),
        steps=[{"name": s.name, "status": s.status} for s in session.state.steps],
    )
    session.notify("resumed" if options.resume else "started", f"image {image}")
    for step in pending:
        if step.point_of_no_return and not _confirmed(session, step):
            return session.finish("aborted", reason=f"not confirmed before {step.name}")
        failure = _run_step(session, step)
        if failure is not None:
            return _failed(session, step, failure)
        if step.name == options.until and step is not session.steps[-1]:
            return session.finish("paused", reason=f"stopped after {step.name} (--until)")
    if options.until is not None and options.until != session.names[-1]:
        return session.finish("paused", reason=f"{options.until} was already done (--until)")
    _release(session)
    return session.finish("completed")


def _admit(session: Session, options: RunOptions) -> tuple[list[Step], str | None]:
    """Refuse (exit 2) what must not start; return the steps to run and the image."""
    state = session.state
    settings = session.ctx.settings.cutover
    if state.phase == "rolling_back":
        raise UsageError(
            f"cutover {state.cutover_id} was being rolled back and that did not finish",
            hint="finish it with 'migctl cutover rollback'",
        )
    if options.resume:
        if state.phase != "in_progress":
            last = f" (the last one ended {state.outcome})" if state.outcome else ""
            raise UsageError(f"no cutover to resume{last}", hint="start one with 'migctl cutover'")
        if options.image and state.image and options.image != state.image:
            raise UsageError(
                f"--image {options.image}: cutover {state.cutover_id} was started with {state.image}"
            )
        image = state.image or options.image or settings.image
        start = state.first_unfinished() or 0
    else:
        if state.phase == "in_progress":
            raise UsageError(
                f"cutover {state.cutover_id} is in progress",
                hint="continue it with 'migctl cutover --resume' or undo it with "
                "'migctl cutover rollback'",
            )
        if state.phase == "completed" and not options.new:
            raise UsageError(
                f"cutover {state.cutover_id} completed (started {state.started_at}, image "
                f"{state.image}): the application runs on the target",
                hint="to go back, 'migctl cutover rollback'; to start another cutover anyway, "
                "'migctl cutover --new'",
            )
        image = options.image or settings.image
        start = 0
    end = session.names.index(options.until) if options.until else len(session.steps) - 1
    pending = list(session.steps[start : end + 1])
    if options.resume:  # a fresh run starts from scratch, whatever the last cutover did
        pending = [s for s in pending if state.step(s.name).status != "done"]
    asks = any(s.point_of_no_return for s in pending)
    freezing = any(s.name == "freeze_writes" for s in pending)
    if asks and not image:
        raise UsageError("no image to roll out", hint="use --image or set [cutover] image")
    if asks and image:
        require_image(image)  # a reference that is none is exit 2 now, not at the rollout
    if asks and session.confirm is not None and not session.interactive:
        raise UsageError(
            "the cutover asks before the rollout and there is no terminal to ask on",
            hint="pass --yes, or stop earlier with --until",
        )
    if freezing and settings.freeze_strategy == "none" and not options.yes:
        raise UsageError(
            "freeze_strategy = 'none': migctl does not freeze writes itself",
            hint="freeze them (maintenance mode), then confirm with --yes",
        )
    return pending, image


def _confirmed(session: Session, step: Step) -> bool:
    if session.confirm is None:
        return True
    ctx = session.ctx
    options = ctx.rollout_options()
    return session.confirm(
        f"{step.title}: deploy {ctx.image} to {options.cluster}/{options.service}. This is the "
        "point of no return: the application will write to the target. Proceed?"
    )


def _run_step(session: Session, step: Step) -> MigctlError | None:
    ctx = session.ctx
    current = session.state.step(step.name)
    ctx.report = session.reporter(step.name)
    ctx.done = {s.name: s.details for s in session.state.steps if s.status == "done"}
    started = time.monotonic()
    memo = StepMemo(before=current.before, progress=current.progress)  # earlier attempts'
    attempt = current.attempts + 1
    if not current.before:
        try:
            memo = StepMemo(before=dict(step.prepare(ctx, memo)), progress=current.progress)
        except Exception as exc:
            session.record("step_started", step=step.name, attempt=attempt, before={})
            return _step_failed(session, step, exc, started, changed=False)
    session.record("step_started", step=step.name, attempt=attempt, before=dict(memo.before))
    session.crash(step.name, "started")
    changed = False
    try:
        facts = dict(step.gate(ctx, memo))
        changed = True
        facts.update(step.action(ctx, StepMemo(memo.before, facts, memo.progress)))
        facts.update(step.check(ctx, StepMemo(memo.before, facts, memo.progress)))
    except Exception as exc:
        return _step_failed(session, step, exc, started, changed=changed)
    session.crash(step.name, "action")
    session.record(
        "step_finished",
        step=step.name,
        status="done",
        changed=True,
        details=facts,
        duration_seconds=round(time.monotonic() - started, 3),
    )
    session.crash(step.name, None)
    return None


def _step_failed(
    session: Session, step: Step, exc: Exception, started: float, *, changed: bool
) -> MigctlError:
    err = as_error(exc)
    session.record(
        "step_finished",
        step=step.name,
        status="failed",
        changed=changed,
        error=err.one_line(),
        details=dict(getattr(exc, "details", {}) or {}),
        duration_seconds=round(time.monotonic() - started, 3),
    )
    return err


def _failed(session: Session, step: Step, err: MigctlError) -> CutoverResult:
    reason = f"{step.name} failed: {err.one_line()}"
    session.notify("FAILED", reason)
    steps = to_undo(session)
    if not steps:
        return session.finish("stopped", reason=reason, exit_code=int(err.exit_code))
    return roll_back(session, steps, reason)


def _release(session: Session) -> None:
    """Each step's ``release``, once all are done; a failure is a warning (what is left over)."""
    for step in session.steps:
        if step.release is None:
            continue
        session.ctx.report = session.reporter(step.name)
        try:
            facts = dict(step.release(session.ctx, session.memo(step)))
        except Exception as exc:
            message = f"{step.name}: could not release what it holds: {as_error(exc).one_line()}"
            session.warnings.append(message)
            session.record("note", step=step.name, message=message, details={"warning": True})
            continue
        session.record("note", step=step.name, message="released", details=facts)


def _new_id(now: dt.datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
