"""Undo a cutover: every step that changed something, in reverse, each undo journaled.

Runs after a failed step (from ``runbook.py``) or on request
(:func:`rollback_cutover`, ``migctl cutover rollback``), also after a
completed cutover. Steps already undone are skipped, so a rollback that
failed can simply be run again once a person has fixed what it reported.

An undo that fails is journaled and the rollback goes on with the steps
before it, except after a step marked ``undo_failure_halts``: when ECS could
not be put back, the source stays frozen and replication stopped, because
the new image may still be writing to the target. Outcome ``rolled_back``
(exit 4) or ``rollback_failed`` (exit 5, with the state of each system and
the manual steps).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from migctl.cutover.context import CutoverContext
from migctl.cutover.journal import Journal
from migctl.cutover.lock import Lock
from migctl.cutover.model import Step, StepMemo
from migctl.cutover.provenance import run_facts
from migctl.cutover.result import CutoverResult
from migctl.cutover.session import Session, as_error
from migctl.cutover.steps import observe
from migctl.errors import UsageError


def rollback_cutover(
    ctx: CutoverContext,
    journal: Journal,
    lock: Lock,
    *,
    break_lock: bool = False,
    cutover_id: str | None = None,
    **kwargs: Any,
) -> CutoverResult:
    """Undo, in reverse, every step of the latest cutover (or ``cutover_id``) that changed
    something."""
    session = Session(ctx, journal, lock, cutover_id=cutover_id, **kwargs)
    with session.locked("migctl cutover rollback", breaking=break_lock):
        try:
            return _rollback(session)
        except KeyboardInterrupt:
            if not session.state.run_open:
                raise
            return session.interrupted()


def _rollback(session: Session) -> CutoverResult:
    ctx = session.ctx
    state = session.state
    if state.cutover_id is None:
        raise UsageError("no cutover to roll back: the journal holds none")
    if state.outcome == "finalized":
        raise UsageError(
            f"cutover {state.cutover_id} was finalized: its way back is closed and the source "
            "stays fenced",
            hint="to move back now, plan a cutover the other way",
        )
    if state.phase in ("none", "closed"):
        last = f" (it ended {state.outcome})" if state.outcome else ""
        which = f"cutover {state.cutover_id}" if session.cutover_id else "the latest cutover"
        raise UsageError(f"nothing to roll back in {which}{last}", hint=_earlier(session))
    active = [c for c in session.later if c.phase not in ("none", "closed")]
    if active:
        raise UsageError(
            f"cutover {active[-1].cutover_id} came after {state.cutover_id} and is "
            f"{active[-1].phase.replace('_', ' ')}: roll that one back first",
            hint=f"migctl cutover rollback --cutover {active[-1].cutover_id}",
        )
    ctx.image = state.image
    ctx.cutover_id = state.cutover_id or ""
    steps = to_undo(session)
    if session.confirm is not None:
        if not session.interactive:
            raise UsageError("rollback asks first and there is no terminal", hint="pass --yes")
        undoing = ", ".join(s.name for s in steps) or "nothing"
        if not session.confirm(f"Roll back cutover {state.cutover_id}: undo {undoing}. Proceed?"):
            raise UsageError("rollback not confirmed; nothing was changed")
    session.record("run_started", mode="rollback", **run_facts(session.ctx.settings))
    return roll_back(session, steps, "rollback requested")


def _earlier(session: Session) -> str | None:
    """A hint naming the cutovers before that may still be rolled back."""
    current = session.state.cutover_id
    open_ones = [
        c for c in session.history if c.cutover_id != current and c.phase not in ("none", "closed")
    ]
    if not open_ones:
        return None
    last = open_ones[-1]
    return (
        f"cutover {last.cutover_id} {last.phase.replace('_', ' ')} before it: "
        f"migctl cutover rollback --cutover {last.cutover_id}"
    )


def to_undo(session: Session) -> list[Step]:
    return [s for s in reversed(session.steps) if s.undo and session.state.step(s.name).needs_undo]


def roll_back(session: Session, steps: Sequence[Step], reason: str) -> CutoverResult:
    ctx = session.ctx
    session.record("rollback_started", reason=reason, steps=[s.name for s in steps])
    failed: list[str] = []
    manual: list[str] = []
    ctx.undone = {s.name: s.undo_details for s in session.state.steps if s.status == "undone"}
    for index, step in enumerate(steps):
        assert step.undo is not None
        memo = session.memo(step)
        ctx.report = session.reporter(step.name)
        started = time.monotonic()
        session.record("undo_started", step=step.name)
        session.crash(f"undo:{step.name}", "started")
        try:
            facts = dict(step.undo(ctx, memo))
        except Exception as exc:
            err = as_error(exc)
            details = dict(getattr(exc, "details", {}) or {})
            session.record(
                "undo_finished",
                step=step.name,
                status="failed",
                error=err.one_line(),
                details=details,
                duration_seconds=round(time.monotonic() - started, 3),
            )
            failed.append(f"{step.name} ({err.one_line()})")
            manual.extend(_manual(ctx, step, memo))
            manual.extend(str(s) for s in details.get("manual_steps", []))
            if step.undo_failure_halts:
                for later in steps[index + 1 :]:
                    manual.extend(_manual(ctx, later, session.memo(later)))
                break
            continue
        ctx.undone[step.name] = facts
        if facts.get("warning"):
            session.warnings.append(str(facts["warning"]))
        session.record(
            "undo_finished",
            step=step.name,
            status="undone",
            details=facts,
            duration_seconds=round(time.monotonic() - started, 3),
        )
        session.crash(f"undo:{step.name}", None)
    if failed:
        manual.append("Then run 'migctl cutover rollback' again: it retries what is not undone yet")
        why = f"{reason}; the rollback failed: {'; '.join(failed)}"
        session.notify("ROLLBACK FAILED", why)
        return session.finish(
            "rollback_failed", reason=why, manual_steps=manual, state=observe(ctx)
        )
    session.notify("rolled back", reason)
    return session.finish("rolled_back", reason=reason)


def _manual(ctx: CutoverContext, step: Step, memo: StepMemo) -> list[str]:
    if step.manual_undo is None:
        return []
    try:
        return [step.manual_undo(ctx, memo)]
    except Exception:
        return [f"Undo {step.name} by hand: {step.undo_text}"]
