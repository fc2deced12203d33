"""Step 2, freeze writes on the source; undone by taking the fence down.

``fence`` (the default): create the proof's logical decoding slot
(``decoding.py``), then put the fence up (``fence.py``): a trigger on every
table that refuses every write, whoever writes and whatever their session
says, and a guard against the DDL that would lift it. Sessions of
``[cutover] app_roles`` that hold a lock the fence waits for are ended (their
uncommitted work rolls back, nothing committed is lost); anyone else is
waited for, then named. Nothing else changes: no ACL, no login flag, no
setting. The gate refuses when the source user does not act as the owner of
every table, may not create a slot, or when another cutover's fence is up.

``none``: the operator froze writes by other means (maintenance mode) and
said so with ``--yes``. The slot and the proof still apply.

Undo: drop exactly what the freeze created (the guard first), then the slot.
``read-only``, the strategy of earlier versions, is only ever undone here
(a cutover such a version started): reset ``default_transaction_read_only``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from migctl.cutover import decoding, fence, marker
from migctl.cutover.context import CutoverContext
from migctl.cutover.fence import FenceNames
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.errors import CheckFailed

# The filter runs first (OFFSET 0 keeps the subquery apart): SQL does not order the
# conditions of one WHERE, and pg_terminate_backend must never see another role's session.
_TERMINATE_SQL = """
SELECT pid FROM (
  SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND usename = ANY(%s) OFFSET 0
) app
WHERE pg_terminate_backend(pid)
"""
_DB_SETTING_SQL = """
SELECT split_part(c, '=', 2)
FROM pg_db_role_setting s, unnest(s.setconfig) c
WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND split_part(c, '=', 1) = 'default_transaction_read_only'
"""


def _strategy(ctx: CutoverContext, memo: StepMemo | None = None) -> str:
    """As recorded before the first attempt (a resume keeps it), else from the config."""
    recorded = memo.before.get("strategy") if memo is not None else None
    return str(recorded) if recorded else ctx.settings.cutover.freeze_strategy


def _names(ctx: CutoverContext, memo: StepMemo | None = None) -> FenceNames:
    recorded = memo.before.get("fence_of") if memo is not None else None
    return FenceNames.of(str(recorded or ctx.cutover_id))


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    """What the fence will create, and on which tables, journaled before it is created."""
    strategy = _strategy(ctx)
    names = _names(ctx)
    with ctx.source_conn() as conn:
        database = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        tables = fence.scope(conn) if strategy == "fence" else []
    return {
        "database": database,
        "strategy": strategy,
        "fence_of": names.cutover_id,
        "creates": {
            "triggers": names.trigger,
            "trigger_function": f"{fence.SCHEMA}.{names.function}",
            "event_triggers": [names.trigger, names.trigger + "_drop"],
            "guard_function": f"{fence.SCHEMA}.{names.guard_function}",
            "replication_slot": names.trigger,
        },
        "tables": [list(t.name) for t in tables],
    }


def gate(ctx: CutoverContext, memo: StepMemo) -> Facts:
    strategy = _strategy(ctx, memo)
    names = _names(ctx, memo)
    with ctx.source_conn() as conn:
        missing = decoding.check_privileges(conn)
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        if strategy == "fence":
            tables = fence.scope(conn)
            others = fence.state(conn).others(names)
            guard = fence.may_guard(conn)
            owners = [] if guard else fence.other_owners(conn, tables)
    if missing:
        raise StepFailed(
            f"the proof of the freeze needs a logical decoding slot: {'; '.join(missing)}",
            hint="on RDS/Aurora set rds.logical_replication = 1 (DMS needs it too); grant the "
            "source user REPLICATION (rds_replication on RDS)",
        )
    if strategy == "none":
        return {"strategy": "none"}
    if strategy != "fence":
        raise StepFailed(f"freeze strategy {strategy!r} is not supported any more: use 'fence'")
    if others:
        raise StepFailed(
            f"the source still carries another cutover's fence ({', '.join(others)})",
            hint="roll that cutover back ('migctl cutover status' lists them), or take its fence "
            "down by hand",
        )
    if not tables:
        raise StepFailed("the source database has no table to fence")
    foreign = [t for t in tables if not t.owned]
    if foreign:
        owners_of = sorted({t.owner for t in foreign})
        raise StepFailed(
            f"the source user {user} does not act as the owner of {len(foreign)} table(s) "
            f"({fence.show_tables(t.name for t in foreign)}): the fence must enable its "
            "triggers ALWAYS and drop them, which only an owner may",
            hint=f"GRANT {', '.join(owners_of)} TO {user} (the RDS master user may), or "
            "connect as the tables' owner",
        )
    if owners:
        raise StepFailed(
            f"role(s) {', '.join(owners)} act as owners of fenced tables and could disable "
            "the fence; the DDL guard that stops them needs a superuser (rds_superuser on "
            "RDS/Aurora)",
            hint="run the cutover as a superuser or the RDS master user",
        )
    return {"strategy": "fence", "tables_in_scope": len(tables), "ddl_guard": guard}


def freeze(ctx: CutoverContext, memo: StepMemo) -> Facts:
    names = _names(ctx, memo)
    strategy = _strategy(ctx, memo)
    marker.ensure_table(ctx, memo)  # before the guard, which refuses every DDL, ours too
    slot_lsn = _create_slot(ctx, names)
    if strategy == "none":
        marker.quiet(ctx, memo)
        with ctx.source_conn() as conn, conn.transaction():
            start = decoding.write_start(conn, names)
        return {"frozen_at": _now(), "by": "operator", "slot": names.trigger, "start_lsn": start}
    with ctx.source_conn() as conn:
        tables = fence.scope(conn)

    def attempt(conn: Any, ms: int) -> str | None:
        if decoding.start_written(conn, names):
            return None  # an earlier attempt put it all up
        return fence.install(
            conn,
            names,
            tables,
            guard=bool(memo.details.get("ddl_guard")),
            lock_timeout_ms=ms,
            last=lambda c: decoding.write_start(c, names),
            on_batch=lambda n: ctx.report(f"fence up on {n} of {len(tables)} table(s)", {}),
        )

    start = until_locked(ctx, "the fence to go up", [t.oid for t in tables], attempt)
    ctx.report(
        f"fence up on {len(tables)} table(s); the proof starts at LSN {start}"
        if start
        else f"the fence was already up on {len(tables)} table(s) (an earlier attempt)",
        {},
    )
    return {
        "frozen_at": _now(),
        "tables_fenced": len(tables),
        "slot": names.trigger,
        "slot_lsn": slot_lsn,
        "start_lsn": start,
    }


def check(ctx: CutoverContext, memo: StepMemo) -> Facts:
    names = _names(ctx, memo)
    fenced = _strategy(ctx, memo) == "fence"
    with ctx.source_conn() as conn:
        written = decoding.start_written(conn, names)
        if fenced:
            tables = {t.name for t in fence.scope(conn)}
            found = fence.state(conn)
    if not written:
        raise StepFailed(f"the proof's start mark is not in slot {names.trigger}")
    if not fenced:
        return {}
    unfenced = tables - set(found.tables(names))
    disabled = set(found.disabled(names))
    if unfenced or disabled:
        raise StepFailed(
            "the fence is not up everywhere: "
            + "; ".join(
                f"{what}: {fence.show_tables(where)}"
                for what, where in (("no trigger", unfenced), ("trigger not ALWAYS", disabled))
                if where
            )
        )
    if memo.details.get("ddl_guard") and not found.guarded(names):
        raise StepFailed(f"the DDL guard {names.trigger} is not enabled ALWAYS")
    return {"fence_checked": len(tables)}


def unfreeze(ctx: CutoverContext, memo: StepMemo) -> Facts:
    names = _names(ctx, memo)
    strategy = _strategy(ctx, memo)
    if strategy == "read-only":
        return _reset_read_only(ctx, memo)
    facts: dict[str, Any] = {}
    if strategy == "fence":
        facts["removed"] = until_locked(
            ctx,
            "the fence to come down",
            fenced_oids(ctx, names),
            lambda conn, ms: fence.remove(conn, names, lock_timeout_ms=ms),
        )
    with ctx.source_conn() as conn:
        facts["slot_dropped"] = decoding.drop_slot(conn, names)
        left = fence.state(conn)
    if left.tables(names) or any(g.startswith(names.trigger) for g in left.guards):
        raise StepFailed(f"the fence {names.trigger} is still on the source after its removal")
    if strategy == "none":
        facts["warning"] = (
            "writes were frozen by the operator (freeze_strategy = none): unfreeze them"
        )
    return facts


def release(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """When the cutover completed: drop the proof's slot (it holds WAL). The fence stays up."""
    names = _names(ctx, memo)
    with ctx.source_conn() as conn:
        return {"slot_dropped": decoding.drop_slot(conn, names), "slot": names.trigger}


def manual_unfreeze(ctx: CutoverContext, memo: StepMemo) -> str:
    names = _names(ctx, memo)
    database = memo.before.get("database", "<database>")
    slot = f"SELECT pg_drop_replication_slot('{names.trigger}')"
    if _strategy(ctx, memo) == "read-only":
        return f'As the owner: ALTER DATABASE "{database}" RESET default_transaction_read_only'
    return (
        f"Take the fence down on database {database} as a superuser (rds_superuser on RDS): "
        f"{fence.manual_removal(names)}; then drop the proof's slot: {slot}"
    )


def source_state(ctx: CutoverContext) -> str:
    names = _names(ctx)
    with ctx.source_conn() as conn:
        found = fence.state(conn)
        held = decoding.slot_of(conn, names)
    tables = found.tables(names)
    fenced = (
        f"the fence of cutover {names.cutover_id} is up on {len(tables)} table(s)"
        + (" with its DDL guard" if found.guarded(names) else "")
        if tables
        else "no fence of this cutover on the source"
    )
    return f"source: {fenced}; " + (held.show() if held else "no proof slot")


def _create_slot(ctx: CutoverContext, names: FenceNames) -> str | None:
    """The proof's slot; it waits for every open transaction (``statement_timeout`` per try)."""
    created: list[str | None] = []
    timeout = _attempt_ms(ctx)

    def probe() -> tuple[bool, str]:
        import psycopg

        with ctx.source_conn() as conn:
            prepared = fence.prepared(conn, everywhere=True)
            if prepared:
                return False, "prepared transaction(s) hold the slot back: " + ", ".join(
                    p.show() for p in prepared
                )
            conn.execute(f"SET statement_timeout = {timeout}")
            try:
                created.append(decoding.create_slot(conn, names))
                return True, f"slot {names.trigger} ready"
            except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
                conn.execute("SET statement_timeout = 0")
                return False, _end_or_name(ctx, conn, fence.writers(conn, everywhere=True))

    _wait(ctx, f"replication slot {names.trigger}", probe)
    return created[-1] if created else None


def until_locked(
    ctx: CutoverContext,
    what: str,
    oids: list[int],
    attempt: Callable[[Any, int], Any],
    *,
    on_target: bool = False,
) -> Any:
    """Run ``attempt(conn, lock_timeout_ms)`` on the source (or the target) until it gets its
    locks; end app-role blockers."""
    done: list[Any] = []
    timeout = _attempt_ms(ctx)

    def probe() -> tuple[bool, str]:
        import psycopg

        with ctx.target_conn() if on_target else ctx.source_conn() as conn:
            try:
                done.append(attempt(conn, timeout))
                return True, "done"
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                return False, _end_or_name(ctx, conn, fence.blockers(conn, oids))

    _wait(ctx, what, probe)
    return done[-1]


def _end_or_name(ctx: CutoverContext, conn: Any, found: list[fence.Blocker]) -> str:
    """End the sessions of the app roles among ``found``; say who is left to wait for."""
    roles = list(ctx.settings.cutover.app_roles)
    pids = [b.pid for b in found]
    ended = [int(r[0]) for r in conn.execute(_TERMINATE_SQL, (pids, roles))] if roles else []
    if ended:
        users = sorted({b.user for b in found if b.pid in ended})
        ctx.report(
            f"ended {len(ended)} session(s) of {', '.join(users)} that held the freeze back",
            {"pids": ended},
        )
    waiting = [b.show() for b in found if b.pid not in ended]
    return "waiting for " + (", ".join(waiting) if waiting else "the ended sessions to go")


def _wait(ctx: CutoverContext, what: str, probe: Callable[[], tuple[bool, str]]) -> str:
    try:
        return ctx.wait_until(what, probe)
    except CheckFailed as exc:
        raise StepFailed(
            exc.message,
            hint="end those sessions (or add their role to [cutover] app_roles), then --resume",
        ) from None


def fenced_oids(ctx: CutoverContext, names: FenceNames, *, on_target: bool = False) -> list[int]:
    with ctx.target_conn() if on_target else ctx.source_conn() as conn:
        rows = conn.execute(
            "SELECT tgrelid::oid FROM pg_trigger WHERE tgname = %s", (names.trigger,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def _attempt_ms(ctx: CutoverContext) -> int:
    """How long one try waits for a lock: short, so that blockers are named while we wait."""
    return int(1000 * max(0.2, min(3.0, ctx.timing.wait_timeout / 4)))


def _reset_read_only(ctx: CutoverContext, memo: StepMemo) -> Facts:
    from psycopg import sql

    database = memo.before["database"]
    previous = memo.before.get("previous_setting")
    ident = sql.Identifier(database)
    with ctx.source_conn() as conn:
        if previous is None:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(ident)
            )
        else:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
                    ident, sql.Literal(previous)
                )
            )
        seen = conn.execute(_DB_SETTING_SQL).fetchone()
    if previous is None and seen is not None:
        raise StepFailed(f"database {database} still has default_transaction_read_only = {seen[0]}")
    return {
        "setting": previous or "reset",
        "warning": "sessions the read-only freeze of an earlier migctl opened stay read-only "
        "until they reconnect: restart the application's pools",
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
