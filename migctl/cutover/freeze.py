"""Step 2, freeze writes on the source; undone by unfreezing it.

``read-only``: ``ALTER DATABASE ... SET default_transaction_read_only = on``,
then end the sessions of ``[cutover] app_roles`` that started before it (new
sessions start read-only). The gate holds when no such session remains and
no other client session holds a write transaction (``backend_xid``).
Replication (walsender) and other sessions may stay; they are listed.

It is a guard against the application, not a wall: a session can still say
``BEGIN READ WRITE``. A role-level ``default_transaction_read_only = off`` on
an application role would beat the database setting, so the gate refuses it.

``none``: the operator froze writes by other means (maintenance mode) and
said so with ``--yes``; the step only checks that nobody is writing, and the
rollback cannot unfreeze what it did not freeze.

Undo: reset the setting (or put back the value it had before), then end the
application's sessions that started during the freeze, which are read-only,
so that the pools reconnect writable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo

_OFF = frozenset({"off", "false", "0", "no"})

_DB_SETTING_SQL = """
SELECT split_part(c, '=', 2)
FROM pg_db_role_setting s, unnest(s.setconfig) c
WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND split_part(c, '=', 1) = 'default_transaction_read_only'
"""
_ROLE_OVERRIDES_SQL = """
SELECT r.rolname, split_part(c, '=', 2)
FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
WHERE s.setrole <> 0 AND r.rolname = ANY(%s)
  AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND split_part(c, '=', 1) = 'default_transaction_read_only'
"""
_SESSIONS_SQL = """
SELECT pid, usename, application_name, backend_start, backend_xid IS NOT NULL
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY pid
"""
# MATERIALIZED: the filter runs before pg_terminate_backend, whatever the planner prefers.
_TERMINATE_SQL = """
WITH chosen AS MATERIALIZED (
  SELECT pid, usename FROM pg_stat_activity
  WHERE datname = current_database() AND backend_type = 'client backend'
    AND pid <> pg_backend_pid() AND usename = ANY(%s) AND backend_start < %s AND backend_start >= %s)
SELECT pid, usename FROM chosen WHERE pg_terminate_backend(pid)
"""
_PRIVILEGES_SQL = """
SELECT r.rolsuper OR d.datdba = r.oid, r.rolsuper OR pg_has_role(r.oid, 'pg_signal_backend', 'MEMBER')
FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()
"""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _strategy(ctx: CutoverContext, memo: StepMemo | None = None) -> str:
    """As recorded before the first attempt (a resume keeps it), else from the config."""
    recorded = memo.before.get("strategy") if memo is not None else None
    return str(recorded) if recorded else ctx.settings.cutover.freeze_strategy


def _roles(ctx: CutoverContext) -> list[str]:
    return list(ctx.settings.cutover.app_roles)


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    with ctx.source_conn() as conn:
        database, server_time = conn.execute(
            "SELECT current_database(), clock_timestamp()"
        ).fetchone()  # type: ignore[misc]
        row = conn.execute(_DB_SETTING_SQL).fetchone()
    return {
        "database": database,
        "previous_setting": row[0] if row else None,
        "strategy": _strategy(ctx),
        # Before the first attempt: sessions opened after it are read-only or already ended.
        "server_time": server_time.isoformat(),
    }


def gate(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if _strategy(ctx, memo) == "none":
        return {"strategy": "none"}
    roles = _roles(ctx)
    with ctx.source_conn() as conn:
        can_alter, can_signal = conn.execute(_PRIVILEGES_SQL).fetchone()  # type: ignore[misc]
        overrides = conn.execute(_ROLE_OVERRIDES_SQL, (roles,)).fetchall()
    missing = [
        what
        for what, granted in (
            ("ALTER DATABASE (owner or superuser)", can_alter),
            ("end other sessions (pg_signal_backend or superuser)", can_signal),
        )
        if not granted
    ]
    if missing:
        raise StepFailed(
            f"the source user may not {' nor '.join(missing)}: the read-only freeze needs both",
            hint="connect as the database owner with pg_signal_backend, or use "
            "freeze_strategy = 'none'",
        )
    writable = [role for role, value in overrides if value.lower() in _OFF]
    if writable:
        raise StepFailed(
            f"role(s) {', '.join(writable)} have default_transaction_read_only = off set on the "
            "role, which beats the database setting: the freeze would not hold for them",
            hint="ALTER ROLE ... RESET default_transaction_read_only first",
        )
    return {"strategy": "read-only", "app_roles": roles}


def freeze(ctx: CutoverContext, memo: StepMemo) -> Facts:
    from psycopg import sql

    if _strategy(ctx, memo) == "none":
        frozen_at = _now()
        _wait_quiet(ctx, since=None, stage="frozen by the operator")
        return {"frozen_at": frozen_at, "by": "operator"}
    database = memo.before["database"]
    with ctx.source_conn() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(database)
            )
        )
        server_frozen_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    frozen_at = _now()
    ctx.report(f"database {database} is read-only for new sessions", {})
    remaining = _wait_quiet(ctx, since=server_frozen_at, stage="freeze")
    return {
        "frozen_at": frozen_at,
        "server_frozen_at": server_frozen_at.isoformat(),
        "remaining_sessions": remaining,
    }


def check(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if _strategy(ctx, memo) == "none":
        return {}
    with ctx.source_conn() as conn:
        row = conn.execute(_DB_SETTING_SQL).fetchone()
    # The gate refused role-level overrides of the app roles, so this setting applies to them.
    if not row or row[0].lower() in _OFF:
        raise StepFailed(
            "the source is not read-only for new sessions: the database's "
            f"default_transaction_read_only is {row[0] if row else 'not set'}"
        )
    return {"new_sessions_read_only": True}


def unfreeze(ctx: CutoverContext, memo: StepMemo) -> Facts:
    if _strategy(ctx, memo) == "none":
        return {
            "warning": "writes were frozen by the operator (freeze_strategy = none): unfreeze them"
        }
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
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        since = memo.before.get("server_time") or memo.details.get("server_frozen_at")
        start = dt.datetime.fromisoformat(since) if since else _EPOCH
        ended = conn.execute(_TERMINATE_SQL, (_roles(ctx), now, start)).fetchall()
        seen = conn.execute(_DB_SETTING_SQL).fetchone()
    if previous is None and seen is not None:
        raise StepFailed(f"database {database} still has default_transaction_read_only = {seen[0]}")
    return {
        "setting": previous or "reset",
        "ended_read_only_sessions": [{"pid": pid, "user": user} for pid, user in ended],
    }


def manual_unfreeze(ctx: CutoverContext, memo: StepMemo) -> str:
    database = memo.before.get("database", "<database>")
    return (
        f'Unfreeze the source as its owner or a superuser: ALTER DATABASE "{database}" RESET '
        "default_transaction_read_only; then end the application's sessions that started "
        "during the freeze (they stay read-only until they reconnect): SELECT "
        "pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN "
        f"({', '.join(repr(r) for r in _roles(ctx)) or '<app roles>'})"
    )


def source_state(ctx: CutoverContext) -> str:
    with ctx.source_conn() as conn:
        row = conn.execute(_DB_SETTING_SQL).fetchone()
    value = row[0] if row else "not set (writable)"
    return f"source database default_transaction_read_only: {value}"


def _wait_quiet(
    ctx: CutoverContext, *, since: dt.datetime | None, stage: str
) -> list[dict[str, Any]]:
    """End (read-only) the app roles' sessions older than ``since``, until none is left
    and nobody holds a write transaction; returns the sessions that may stay."""
    roles = _roles(ctx)
    remaining: list[dict[str, Any]] = []

    def probe() -> tuple[bool, str]:
        with ctx.source_conn() as conn:
            if since is not None:
                ended = conn.execute(_TERMINATE_SQL, (roles, since, _EPOCH)).fetchall()
                if ended:
                    ctx.report(
                        f"ended {len(ended)} session(s) of {', '.join(sorted({u for _, u in ended}))}",
                        {"pids": [pid for pid, _ in ended]},
                    )
            rows = conn.execute(_SESSIONS_SQL).fetchall()
        old_app = [r for r in rows if r[1] in roles and (since is None or r[3] < since)]
        writers = [r for r in rows if r[4]]
        remaining[:] = [
            {"pid": r[0], "user": r[1], "application": r[2], "writing": r[4]} for r in rows
        ]
        if since is not None and old_app:
            return False, f"{len(old_app)} session(s) of {', '.join(roles)} still open"
        if writers:
            who = ", ".join(f"{r[1]} pid {r[0]} ({r[2] or 'no application_name'})" for r in writers)
            return False, f"write transaction(s) still open: {who}"
        return True, "no application session, no open write transaction"

    ctx.wait_until(f"the sessions to end ({stage})", probe)
    return remaining


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
