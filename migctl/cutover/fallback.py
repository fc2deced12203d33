"""The way back after go-live: reverse replication, target to source, prepared during the freeze.

``[cutover] fallback = "reverse-replication"`` (the default) adds two steps
(docs/fallback.md):

- **prepare_fallback**, while the source is frozen and forward replication
  stopped, before the rollout: a logical replication slot on the target
  (``[cutover] reverse_slot``, the ``SlotName`` of the reverse task's source
  endpoint, with ``reverse_plugin``), whose position is where the target
  stands before the new image writes anything. A DMS task cannot start from a
  position older than its slot, so the slot is made first and its position
  recorded.
- **start_fallback**, after the post-checks: the source's fence is opened to
  ``[cutover] reverse_role`` only (the role the reverse task writes as; every
  application stays refused), and the reverse DMS task (CDC only, ``[cutover]
  reverse_task`` or the stack output ``dmsReverseTaskArn``) starts from the
  recorded position. From then on every write the new image makes on the
  target is carried to the source.

Undoing them is the rollback after go-live, in the rollback's reverse order:

- start_fallback's undo **carries everything back**: fence the target against
  the applications (as the source was fenced), drain (a marker written on the
  target must arrive on the source; a failed reverse task fails the undo with
  its reason, never a silent loss), count what was carried per table (the
  reverse task's table statistics), move the source's sequences past the
  target's (with ``sequence_margin``), stop the reverse task. Each part is
  journaled as it is done, so a rerun after a crash goes on from there.
- the rollout's undo then puts ECS back on the revision before the cutover;
- prepare_fallback's undo takes the target's fence down and drops the slot;
- forward replication resumes from the source's position once the reverse
  task stopped (``forward_from``, as ``CdcStartPosition``), not from its
  checkpoint: replaying the source's WAL from the checkpoint would apply the
  carried rows to the target a second time. At that position source and
  target hold the same rows, so nothing conflicts;
- the freeze's undo opens the source to the applications again.

``migctl cutover finalize`` (``finalize.py``) ends the window instead: the
reverse task stops, the slot goes, the source stays fenced for good.
"""

from __future__ import annotations

from typing import Any

from migctl.cutover import decoding, fence, marker, sequences
from migctl.cutover.context import CutoverContext
from migctl.cutover.fence import FenceNames
from migctl.cutover.freeze import fenced_oids, until_locked
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.dms.control import start_task, stop_task
from migctl.dms.task import FAILED, describe_task, fetch_table_statistics
from migctl.errors import CheckFailed
from migctl.poll import Clock, Done, Pending, Round, poll

REVERSE = "reverse-replication"
_CREATE_SLOT_SQL = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)"
_SLOT_SQL = """
SELECT active, coalesce(confirmed_flush_lsn, restart_lsn)::text, plugin
FROM pg_replication_slots WHERE slot_name = %s
"""


def enabled(ctx: CutoverContext, memo: StepMemo | None = None) -> bool:
    """As recorded before the step's first attempt (a resume keeps it), else from the config."""
    recorded = memo.before.get("fallback") if memo is not None else None
    return (recorded or ctx.settings.cutover.fallback) == REVERSE


def target_fence(ctx: CutoverContext) -> FenceNames:
    """The fence the rollback puts on the target (its own names, apart from the source's)."""
    return FenceNames.of(f"{ctx.cutover_id}_target")


def _slot(memo: StepMemo) -> str:
    return str(memo.before["slot"])


# --- prepare_fallback ------------------------------------------------------------


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    conf = ctx.settings.cutover
    if conf.fallback != REVERSE:
        return {"fallback": conf.fallback}
    return {
        "fallback": REVERSE,
        "reverse_task": ctx.reverse_task_ref().arn,
        "slot": conf.reverse_slot,
        "plugin": conf.reverse_plugin,
        "reverse_role": conf.reverse_role,
    }


def gate(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {"fallback": "none"}
    task = describe_task(ctx.aws.client("dms"), memo.before["reverse_task"])
    if task.migration_type != "cdc":
        raise StepFailed(
            f"reverse DMS task {task.identifier} is {task.migration_type}, not CDC only: it "
            "would copy the target over the source"
        )
    if task.status in ("running", "starting", "stopping"):
        raise StepFailed(
            f"reverse DMS task {task.identifier} is {task.status}: an earlier cutover's way "
            "back is still open",
            hint="end it with 'migctl cutover finalize' (or roll that cutover back)",
        )
    with ctx.target_conn() as conn:
        missing = decoding.check_privileges(conn)
        found = conn.execute(_SLOT_SQL, (_slot(memo),)).fetchone()
    if missing:
        raise StepFailed(
            "the way back needs a logical replication slot on the target: "
            + "; ".join(m.replace("source", "target") for m in missing),
            hint="on Aurora set rds.logical_replication = 1 in the cluster parameter group "
            "(infra_pulumi does) and grant rds_replication",
        )
    if found is not None and not memo.progress.get("slot_created"):
        raise StepFailed(
            f"replication slot {_slot(memo)} already exists on the target (an earlier "
            "cutover's way back?): starting from it would replay old changes onto the source",
            hint="finish that cutover ('migctl cutover finalize') or drop the slot: "
            f"SELECT pg_drop_replication_slot('{_slot(memo)}')",
        )
    return {"reverse_task_status": task.status}


def create_slot(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {"fallback": "none"}
    slot = _slot(memo)
    with ctx.target_conn() as conn:
        found = conn.execute(_SLOT_SQL, (slot,)).fetchone()
        if found is None:
            row = conn.execute(_CREATE_SLOT_SQL, (slot, memo.before["plugin"])).fetchone()
            assert row is not None
            position = str(row[0])
            ctx.report(
                f"slot {slot} created on the target at LSN {position}: the way back starts there",
                {"progress": {"slot_created": True, "position": position}},
            )
        else:  # an earlier attempt of this cutover made it (the gate checked)
            position = str(memo.progress.get("position") or found[1])
    return {"slot": slot, "position": position}


def slot_check(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {}
    with ctx.target_conn() as conn:
        if conn.execute(_SLOT_SQL, (_slot(memo),)).fetchone() is None:
            raise StepFailed(f"replication slot {_slot(memo)} is not on the target")
    return {"slot_checked": True}


def drop_slot(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """Undo: the target's fence down (ECS is back on the old revision by now), the slot gone."""
    if not enabled(ctx, memo):
        return {"note": "no way back was prepared (fallback = none)"}
    removed = unfence_target(ctx)
    return {"target_fence_removed": removed, **drop_reverse_slot(ctx, _slot(memo))}


def lift_target_fence(ctx: CutoverContext) -> bool:
    """Let every role write on the target at once, without a table lock (the triggers stay
    until :func:`unfence_target`); False when no fence of this cutover is there."""
    names = target_fence(ctx)
    with ctx.target_conn() as conn:
        if not fence.state(conn).tables(names):
            return False
        fence.lift(conn, names)
    return True


def unfence_target(ctx: CutoverContext) -> dict[str, Any]:
    """Take the target's fence down (whatever of it is up; idempotent)."""
    names = target_fence(ctx)
    removed: dict[str, Any] = until_locked(
        ctx,
        "the target's fence to come down",
        fenced_oids(ctx, names, on_target=True),
        lambda conn, ms: fence.remove(conn, names, lock_timeout_ms=ms, batch=1),
        on_target=True,
    )
    return removed


def drop_reverse_slot(ctx: CutoverContext, slot: str) -> Facts:
    with ctx.target_conn() as conn:
        found = conn.execute(_SLOT_SQL, (slot,)).fetchone()
        if found is None:
            return {"slot_dropped": False, "slot": slot}
        if found[0]:
            raise StepFailed(
                f"slot {slot} on the target is still read (the reverse task runs?)",
                hint="stop the reverse DMS task first",
            )
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return {"slot_dropped": True, "slot": slot}


def manual_drop_slot(ctx: CutoverContext, memo: StepMemo) -> str:
    slot = memo.before.get("slot", ctx.settings.cutover.reverse_slot)
    return (
        f"On the target, as a superuser (rds_superuser on Aurora): "
        f"{fence.manual_removal(target_fence(ctx))}; then SELECT "
        f"pg_drop_replication_slot('{slot}') once no reverse task reads it"
    )


# --- start_fallback --------------------------------------------------------------


def start(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {"fallback": "none"}
    opened = _open_source(ctx, (memo.before["reverse_role"],))
    position = _run_reverse(ctx, str(memo.before["slot"]), fresh=True)
    return {
        "reverse_task": ctx.reverse_task_ref().identifier,
        "from_position": position,
        "source_open_to": opened,
    }


def _run_reverse(ctx: CutoverContext, slot: str, *, fresh: bool) -> str | None:
    """The reverse task running: left alone when it runs; ``fresh`` (not started yet by this
    cutover, whatever an earlier one left) started from the slot's position, unread until then
    so where prepare_fallback made it; else resumed from its own checkpoint. Returns the
    position it started from, if it started afresh."""
    dms, ref = ctx.aws.client("dms"), ctx.reverse_task_ref()
    task = describe_task(dms, ref.arn)
    if task.status in ("running", "starting"):
        return None
    position = None
    if fresh:
        with ctx.target_conn() as conn:
            found = conn.execute(_SLOT_SQL, (slot,)).fetchone()
        if found is None:
            raise StepFailed(
                f"slot {slot} is not on the target: the way back has no position to start from"
            )
        position = str(found[1])
    say = ctx.reporter()
    result = start_task(
        dms,
        ref,
        kind="resume" if position is None else "start",
        confirm=lambda _plan: True,
        cdc_start_position=position,
        timeout=ctx.timing.wait_timeout,
        interval=ctx.timing.interval,
        on_poll=lambda t: say(f"reverse DMS task {t.identifier}: {t.status}"),
        clock=ctx.timing.clock,
        sleep=ctx.timing.sleep,
    )
    if not result.ok:
        raise StepFailed(f"starting the reverse DMS task: {result.reason}")
    if position is not None:
        ctx.report(
            f"reverse DMS task {ref.identifier} started from {position}",
            {"progress": {"reverse_started_from": position}},
        )
    return position


def running(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if not enabled(ctx, memo):
        return {}
    task = describe_task(ctx.aws.client("dms"), ctx.reverse_task_ref().arn)
    if task.status != "running":
        raise StepFailed(f"reverse DMS task {task.identifier} is {task.status}: {task.failure}")
    return {"reverse_task_status": task.status}


def carry_back(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """Undo after go-live: everything the new image wrote on the target goes to the source."""
    if not enabled(ctx, memo):
        return {"note": "no reverse replication (fallback = none)"}
    done = dict(memo.progress)
    dms, ref = ctx.aws.client("dms"), ctx.reverse_task_ref()
    facts: dict[str, Any] = {}
    task = describe_task(dms, ref.arn)
    if task.phase == FAILED:  # before the fence: the application keeps serving meanwhile
        raise StepFailed(
            f"reverse DMS task {ref.identifier} failed ({task.failure}): what the new image "
            "wrote on the target since is not all on the source",
            hint=f"fix the cause (migctl dms status --task {ref.identifier}), resume the task "
            f"(migctl dms start --type resume --task {ref.identifier} --yes), then rerun "
            "'migctl cutover rollback'",
        )
    facts["target_fenced"] = fence_target(ctx)
    if "drained" not in done or task.status != "stopped":
        # Not running (stopped by someone, or never started: start_fallback failed half-way):
        # whatever the new image wrote is still behind the slot, so run it, then drain.
        _run_reverse(ctx, str(memo.before["slot"]), fresh="reverse_started_from" not in done)
        drained = marker.carry(
            ctx,
            ctx.target_conn,
            ctx.source_conn,
            ("target", "source"),
            hint="is the reverse DMS task applying changes (migctl dms status --task "
            f"{ref.identifier})?",
            failed=lambda: _failure(ctx),
        )
        carried = _carried(ctx)
        done["drained"], done["carried_back"] = drained, carried
        ctx.report(
            f"drained: {_rows(carried)} row change(s) carried back to the source",
            {"progress": {"drained": drained, "carried_back": carried}},
        )
    if "sequences" not in done:
        done["sequences"] = sequences.move(ctx, reverse=True)
        ctx.report("source sequences moved past the target's", {"progress": done})
    facts["reverse_task"] = stop_reverse(ctx)
    with ctx.source_conn() as conn:  # nothing but the reverse task wrote to the fenced source
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    carried = done["carried_back"]
    return {
        **facts,
        "forward_from": str(row[0]),
        "drained": done["drained"],
        "carried_back": carried,
        "carried_back_rows": _rows(carried),
        "sequences": done["sequences"],
    }


def carry_back_unstarted(ctx: CutoverContext, way_back: Facts, memo: StepMemo) -> Facts:
    """The rollout's undo, when the way back was never started (the post-checks failed, the
    bake failed, a kill): the new image may have written on the target all the same, so open
    the source to the reverse role and carry everything back from the slot, as
    :func:`carry_back` does. Progress notes go to the rollout step (``memo.progress``)."""
    if way_back.get("fallback") != REVERSE:
        return {}
    _open_source(ctx, (str(way_back["reverse_role"]),))
    return carry_back(ctx, StepMemo(before=way_back, progress=memo.progress))


def manual_carry_back(ctx: CutoverContext, _memo: StepMemo) -> str:
    try:
        name = ctx.reverse_task_ref().identifier
    except Exception:
        name = "<reverse task>"
    return (
        "Stop the application's writes on the target, make sure the reverse DMS task "
        f"{name} has applied everything (a row written on the target is on the source), move "
        "the source's sequences past the target's, then stop the task: migctl dms stop --task "
        f"{name} --yes. Until then keep ECS on the new image and the source fenced"
    )


def reverse_state(ctx: CutoverContext) -> str:
    if ctx.settings.cutover.fallback != REVERSE:
        return "no way back prepared (fallback = none)"
    task = describe_task(ctx.aws.client("dms"), ctx.reverse_task_ref().arn)
    return f"reverse DMS task {task.identifier}: {task.status} (phase {task.phase})"


def _open_source(ctx: CutoverContext, roles: tuple[str, ...]) -> list[str]:
    """Let the reverse task's role through the source's fence; [] when no fence is up."""
    names = FenceNames.of(ctx.cutover_id)
    with ctx.source_conn() as conn:
        if not fence.state(conn).tables(names):
            return []
        fence.open_to(conn, names, roles)
        return fence.opened_to(conn, names)


def fence_target(ctx: CutoverContext, open_to: tuple[str, ...] = ()) -> int:
    """Fence the target against every role but ``open_to`` (none: all of them). One table per
    transaction, here and in :func:`unfence_target`: replication may be applying a transaction
    that writes several tables, and a fence holding one table's lock while it waits for
    another's could deadlock with it (PostgreSQL would then abort one, maybe the apply)."""
    names = target_fence(ctx)
    with ctx.target_conn() as conn:
        tables = fence.scope(conn)
        guard = fence.may_guard(conn)
    until_locked(
        ctx,
        "the target's fence to go up",
        [t.oid for t in tables],
        lambda conn, ms: fence.install(
            conn, names, tables, guard=guard, lock_timeout_ms=ms, last=lambda _c: "", batch=1
        ),
        on_target=True,
    )
    with ctx.target_conn() as conn:  # a fence left from the standby's staging may be open
        fence.open_to(conn, names, open_to)
    but = f" but {', '.join(open_to)}" if open_to else ""
    ctx.report(f"the target is fenced ({len(tables)} table(s)): every role's writes{but} stop", {})
    return len(tables)


def _failure(ctx: CutoverContext) -> str | None:
    task = describe_task(ctx.aws.client("dms"), ctx.reverse_task_ref().arn)
    if task.phase == FAILED or task.status == "stopped":
        return f"reverse DMS task {task.identifier} is {task.status}: {task.failure}"
    return None


def _carried(ctx: CutoverContext) -> dict[str, dict[str, int]]:
    """Per table, the changes the reverse task applied: its table statistics, read until two
    reads a poll apart agree, for at most ten polls (DMS updates them with a delay; the
    marker, not this count, is the proof that everything arrived). Throttled reads back off
    as every wait does (:func:`migctl.poll.poll`)."""
    reads: list[dict[str, dict[str, int]]] = []

    def settled(_: Round) -> Done[dict[str, dict[str, int]]] | Pending[dict[str, dict[str, int]]]:
        reads.append(_statistics(ctx))
        if len(reads) > 1 and reads[-1] == reads[-2]:
            return Done(reads[-1])
        return Pending(reads[-1], reason="two reads a poll apart differ")

    interval = max(ctx.timing.interval, 1.0)
    result = poll(
        settled,
        timeout=10 * interval,
        interval=interval,
        clock=Clock(ctx.timing.clock, ctx.timing.sleep),
        what="the reverse task's table statistics to settle",
    )
    if result.value is None:
        raise CheckFailed(
            "the reverse task's table statistics: every read was throttled by AWS; "
            "rerun migctl cutover rollback"
        )
    return result.value


def _statistics(ctx: CutoverContext) -> dict[str, dict[str, int]]:
    tables = fetch_table_statistics(ctx.aws.client("dms"), ctx.reverse_task_ref().arn)
    return {
        f"{t.schema}.{t.table}": {"inserts": t.inserts, "updates": t.updates, "deletes": t.deletes}
        for t in tables
        if (t.schema, t.table) != (marker.SCHEMA, marker.TABLE)
        and (t.inserts or t.updates or t.deletes)
    }


def _rows(carried: dict[str, dict[str, int]]) -> int:
    return sum(sum(counts.values()) for counts in carried.values())


def stop_reverse(ctx: CutoverContext) -> str:
    """Stop the reverse task and wait for ``stopped``; one that is not running (stopped, never
    started, failed) is left as it is. Returns its status."""
    status = describe_task(ctx.aws.client("dms"), ctx.reverse_task_ref().arn).status
    if status in ("stopped", "ready", "failed"):
        return status
    result = stop_task(
        ctx.aws.client("dms"),
        ctx.reverse_task_ref(),
        confirm=lambda _plan: True,
        timeout=ctx.timing.wait_timeout,
        interval=ctx.timing.interval,
        clock=ctx.timing.clock,
        sleep=ctx.timing.sleep,
    )
    if not result.ok:
        raise StepFailed(f"stopping the reverse DMS task: {result.reason}")
    return result.task.status
