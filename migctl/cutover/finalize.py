"""``migctl cutover finalize``: end the way back once the business is satisfied with the target.

Only a completed cutover is finalized. With ``fallback = reverse-replication``
it stops the reverse DMS task (nothing is drained: the source will not take
traffic again), drops its slot on the target, and closes the source's fence to
the reverse task's role, so the source stays fenced, read-only for good,
against every role. Each part is idempotent, so a rerun after a crash reaches
the same end; the journal records ``finalized`` and the cutover is closed:
``rollback`` refuses it from then on, and a new cutover needs no ``--new``.
Outcome ``finalized``, exit 0.

The reverse task itself stays defined (infra_pulumi manages it), stopped and
holding nothing; the next cutover starts it from a new slot.
"""

from __future__ import annotations

from typing import Any

from migctl.cutover import fallback, fence
from migctl.cutover.context import CutoverContext
from migctl.cutover.fence import FenceNames
from migctl.cutover.journal import Journal
from migctl.cutover.lock import Lock
from migctl.cutover.provenance import run_facts
from migctl.cutover.result import CutoverResult
from migctl.cutover.session import Session
from migctl.errors import UsageError


def finalize_cutover(
    ctx: CutoverContext, journal: Journal, lock: Lock, *, break_lock: bool = False, **kwargs: Any
) -> CutoverResult:
    session = Session(ctx, journal, lock, **kwargs)
    with session.locked("migctl cutover finalize", breaking=break_lock):
        state = session.state
        if state.cutover_id is None:
            raise UsageError("no cutover to finalize: the journal holds none")
        if state.phase != "completed":
            ended = f" (it ended {state.outcome})" if state.outcome else ""
            raise UsageError(
                f"cutover {state.cutover_id} is {state.phase.replace('_', ' ')}{ended}: only "
                "a completed cutover is finalized"
            )
        ctx.cutover_id = state.cutover_id
        prepared = (
            state.step("prepare_fallback").before if "prepare_fallback" in session.names else {}
        )
        reverse = prepared.get("fallback") == fallback.REVERSE
        if session.confirm is not None:
            if not session.interactive:
                raise UsageError("finalize asks first and there is no terminal", hint="pass --yes")
            what = "stop the reverse replication and drop its slot: " if reverse else ""
            if not session.confirm(
                f"Finalize cutover {state.cutover_id}: {what}there is no way back to the source "
                "after this. Proceed?"
            ):
                raise UsageError("finalize not confirmed; nothing was changed")
        session.record("run_started", mode="finalize", **run_facts(session.ctx.settings))
        facts = _close(ctx, str(prepared.get("slot") or "")) if reverse else {"fallback": "none"}
        session.record("note", message="the way back is closed", details=facts)
        session.notify("finalized", "the source stays fenced; the way back is closed")
        return session.finish("finalized")


def _close(ctx: CutoverContext, slot: str) -> dict[str, Any]:
    stopped = fallback.stop_reverse(ctx)
    dropped = fallback.drop_reverse_slot(ctx, slot)
    names = FenceNames.of(ctx.cutover_id)
    with ctx.source_conn() as conn:
        fenced = len(fence.state(conn).tables(names))
        if fenced:
            fence.open_to(conn, names, ())
    return {
        "reverse_task": ctx.reverse_task_ref().identifier,
        "reverse_task_status": stopped,
        **dropped,
        "source_fenced_tables": fenced,
    }
