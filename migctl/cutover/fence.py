"""The write fence: triggers that refuse every write to the source's tables, and a DDL guard.

What it is, on the source database (names carry the cutover's id, so one
cutover's fence is never mistaken for another's):

- ``migctl.fence_<id>()``, a trigger function that raises
  ``read_only_sql_transaction`` (SQLSTATE 25006, what an application already
  sees from a read-only database) naming the table;
- on every table in scope, a statement-level trigger ``migctl_fence_<id>``
  ``BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE``, enabled ``ALWAYS`` so
  that ``session_replication_role = replica`` does not skip it. It fires for
  every role, the table's owner and superusers included, whatever the
  session's settings (``BEGIN READ WRITE``, ``default_transaction_read_only``
  and the like change nothing), for ``COPY``, ``MERGE``, ``ON CONFLICT`` and
  foreign-key cascades alike;
- ``migctl.fence_ddl_<id>()`` behind the event trigger ``migctl_fence_<id>``
  (``ddl_command_end`` and ``sql_drop``, also ``ALWAYS``): it refuses every
  DDL on a non-temporary object, so a table's owner cannot disable or drop
  the fence, and nothing reshapes a table mid-cutover. Creating it takes a
  superuser, or ``rds_superuser`` on RDS and Aurora; without it the fence
  still holds against every role that owns no table (the gate checks).

Scope: every ordinary and partitioned table (partitions too: a statement
trigger on a parent does not fire for a write to a partition) outside the
system schemas, the ``migctl`` schema (the marker row must be written) and
the tables DMS keeps on the source (``awsdms_*``). The current user must act
as every one's owner: only an owner may enable a trigger ALWAYS or drop it.

What a superuser can still do (``DROP EVENT TRIGGER``, then disable a
trigger; or edit ``pg_trigger``), the proof of the freeze catches
(``decoding.py``). Removing the fence drops exactly these objects, event
trigger first; nothing else on the source (ACLs, login flags, settings) is
touched by it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migctl.pgnames import TableName, ident, show

if TYPE_CHECKING:
    import psycopg

PREFIX = "migctl_fence_"
SCHEMA = "migctl"
BATCH = 500  # tables per transaction: one CREATE TRIGGER holds a lock until its commit
WRITE_REFUSED = "read_only_sql_transaction"

# The scope, which decoding.in_scope mirrors: a change to any of these tables is a breach.
SCOPE_SQL = """
SELECT c.oid, n.nspname, c.relname, pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'migctl')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND c.relname NOT LIKE 'awsdms\\_%%'
ORDER BY n.nspname, c.relname
"""
_FENCED_SQL = """
SELECT t.tgname, n.nspname, c.relname, t.tgenabled
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgname LIKE 'migctl\\_fence\\_%%'
ORDER BY 1, 2, 3
"""
_GUARDS_SQL = """
SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'migctl\\_fence\\_%%' ORDER BY 1
"""
_PRIVILEGES_SQL = """
SELECT r.rolsuper
    OR (to_regrole('rds_superuser') IS NOT NULL
        AND pg_has_role(r.oid, to_regrole('rds_superuser'), 'MEMBER'))
FROM pg_roles r WHERE r.rolname = current_user
"""
# Login roles, besides the current user and superusers, that act as a fenced table's owner.
_OWNERS_SQL = """
SELECT DISTINCT r.rolname
FROM pg_roles r, (SELECT DISTINCT relowner FROM pg_class WHERE oid = ANY(%s::oid[])) o
WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
  AND pg_has_role(r.oid, o.relowner, 'USAGE')
ORDER BY 1
"""
# The sessions holding a lock that CREATE/DROP TRIGGER waits for, on the given tables.
BLOCKERS_SQL = """
SELECT DISTINCT a.pid, a.usename, coalesce(a.application_name, ''), coalesce(a.state, ''),
       a.xact_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.locktype = 'relation' AND l.relation = ANY(%s::oid[])
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.pid <> pg_backend_pid()
ORDER BY 1
"""

# Sessions of this database (or of the cluster) that hold a transaction id: writers.
_WRITERS_SQL = """
SELECT pid, usename, coalesce(application_name, ''), coalesce(state, ''), xact_start
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND (%s OR datname = current_database())
ORDER BY pid
"""
_PREPARED_SQL = """
SELECT gid, owner, database, prepared FROM pg_prepared_xacts
WHERE %s OR database = current_database() ORDER BY prepared
"""

# plpgsql bodies: run without parameters, so "%" is RAISE's own placeholder.
_TRIGGER_BODY = """
BEGIN
  IF session_user = ANY({open_to}) THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'migctl cutover %: writes to %.% are frozen', {cutover}, TG_TABLE_SCHEMA,
        TG_TABLE_NAME
    USING ERRCODE = '{code}',
          HINT = 'the database is being cut over to its new home; write there once it is live';
END
"""
_LIFTED_TRIGGER_BODY = "BEGIN RETURN NULL; END"  # a statement trigger: the write goes on
_LIFTED_GUARD_BODY = "BEGIN RETURN; END"
_GUARD_BODY = """
DECLARE
  r record;
BEGIN
  IF session_user = ANY({open_to}) THEN
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' THEN
    FOR r IN SELECT object_identity FROM pg_event_trigger_dropped_objects()
             WHERE NOT is_temporary LOOP
      RAISE EXCEPTION 'migctl cutover %: the source is frozen: % % refused', {cutover}, TG_TAG,
            r.object_identity USING ERRCODE = '{code}';
    END LOOP;
  ELSE
    FOR r IN SELECT object_identity FROM pg_event_trigger_ddl_commands()
             WHERE schema_name IS DISTINCT FROM 'pg_temp' LOOP
      RAISE EXCEPTION 'migctl cutover %: the source is frozen: % % refused', {cutover}, TG_TAG,
            r.object_identity USING ERRCODE = '{code}';
    END LOOP;
  END IF;
END
"""


@dataclass(frozen=True)
class FenceNames:
    """Every object one cutover's fence creates, derived from its id."""

    cutover_id: str
    suffix: str

    @classmethod
    def of(cls, cutover_id: str) -> FenceNames:
        return cls(cutover_id, re.sub(r"[^a-z0-9_]", "_", cutover_id.lower())[:48])

    @property
    def trigger(self) -> str:  # also the event trigger's name, and the slot's
        return PREFIX + self.suffix

    @property
    def function(self) -> str:
        return "fence_" + self.suffix

    @property
    def guard_function(self) -> str:
        return "fence_ddl_" + self.suffix


@dataclass(frozen=True)
class ScopeTable:
    oid: int
    name: TableName
    owner: str
    owned: bool  # the current user acts as its owner: may create, enable ALWAYS and drop triggers


@dataclass(frozen=True, kw_only=True)
class FenceState:
    """What the source carries now: per trigger name, its tables; the guards (event triggers)."""

    triggers: dict[str, list[tuple[TableName, str]]]  # name -> [(table, tgenabled)]
    guards: dict[str, str]  # event trigger name -> evtenabled

    def tables(self, names: FenceNames) -> list[TableName]:
        return [t for t, _ in self.triggers.get(names.trigger, [])]

    def disabled(self, names: FenceNames) -> list[TableName]:
        """Tables where this fence's trigger is not enabled ALWAYS."""
        return [t for t, enabled in self.triggers.get(names.trigger, []) if enabled != "A"]

    def guarded(self, names: FenceNames) -> bool:
        return bool(self.guards) and all(
            self.guards.get(g) == "A" for g in (names.trigger, names.trigger + "_drop")
        )

    def others(self, names: FenceNames) -> list[str]:
        """The fences of other cutovers (trigger or guard names)."""
        found = set(self.triggers) | {g.removesuffix("_drop") for g in self.guards}
        return sorted(found - {names.trigger})


@dataclass(frozen=True)
class Blocker:
    pid: int
    user: str
    application: str
    state: str
    since: str | None

    @classmethod
    def of(cls, row: Sequence[Any]) -> Blocker:
        """From (pid, user, application, state, since): a pg_stat_activity row."""
        pid, user, application, state, since = row
        return cls(int(pid), str(user), str(application), str(state), since and since.isoformat())

    def show(self) -> str:
        app = f", {self.application}" if self.application else ""
        since = f" since {self.since}" if self.since else ""
        return f"pid {self.pid} ({self.user}{app}, {self.state or 'unknown state'}{since})"


@dataclass(frozen=True)
class Prepared:
    gid: str
    owner: str
    database: str
    since: str

    def show(self) -> str:
        return f"{self.gid!r} of {self.owner} in {self.database} since {self.since}"


def writers(conn: psycopg.Connection[Any], *, everywhere: bool = False) -> list[Blocker]:
    """Sessions with an open write transaction, in this database or (``everywhere``) any."""
    return [Blocker.of(row) for row in conn.execute(_WRITERS_SQL, (everywhere,)).fetchall()]


def prepared(conn: psycopg.Connection[Any], *, everywhere: bool = False) -> list[Prepared]:
    rows = conn.execute(_PREPARED_SQL, (everywhere,)).fetchall()
    return [Prepared(str(g), str(o), str(d), at.isoformat()) for g, o, d, at in rows]


def scope(conn: psycopg.Connection[Any]) -> list[ScopeTable]:
    rows = conn.execute(SCOPE_SQL, []).fetchall()
    return [ScopeTable(int(oid), (s, t), owner, bool(own)) for oid, s, t, owner, own in rows]


def state(conn: psycopg.Connection[Any]) -> FenceState:
    triggers: dict[str, list[tuple[TableName, str]]] = {}
    for name, schema, table, enabled in conn.execute(_FENCED_SQL, []).fetchall():
        triggers.setdefault(name, []).append(((schema, table), enabled))
    guards = {str(n): str(e) for n, e in conn.execute(_GUARDS_SQL, []).fetchall()}
    return FenceState(triggers=triggers, guards=guards)


def may_guard(conn: psycopg.Connection[Any]) -> bool:
    """Whether the current user may create the DDL guard: superuser, or rds_superuser."""
    row = conn.execute(_PRIVILEGES_SQL, []).fetchone()
    return bool(row and row[0])


def other_owners(conn: psycopg.Connection[Any], tables: Sequence[ScopeTable]) -> list[str]:
    """Login roles that could disable a trigger on these tables (they act as an owner)."""
    rows = conn.execute(_OWNERS_SQL, ([t.oid for t in tables],)).fetchall()
    return [str(r[0]) for r in rows]


def blockers(conn: psycopg.Connection[Any], oids: Sequence[int]) -> list[Blocker]:
    return [Blocker.of(row) for row in conn.execute(BLOCKERS_SQL, (list(oids),)).fetchall()]


def install(
    conn: psycopg.Connection[Any],
    names: FenceNames,
    tables: Sequence[ScopeTable],
    *,
    guard: bool,
    lock_timeout_ms: int,
    last: Callable[[psycopg.Connection[Any]], str],
    on_batch: Callable[[int], None] = lambda _n: None,
    batch: int = BATCH,
) -> str:
    """Put the fence up on ``tables`` (those without it yet), then the guard.

    ``conn`` is in autocommit. Each batch of triggers (``batch`` tables) is one
    transaction under ``lock_timeout``: psycopg's ``LockNotAvailable`` tells the caller to deal
    with the blockers and call again; batches done stay done. The last
    transaction creates the guard (after it no DDL passes, ours included; an
    earlier attempt's guard is left as it is) and runs ``last`` (the proof's
    start mark), so both happen or neither; its result is returned.
    """
    with conn.transaction():
        if conn.execute(
            "SELECT to_regprocedure(%s) IS NULL", (_qualified(names.function) + "()",)
        ).fetchone() == (True,):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(_function_sql(names, names.function, "trigger", _TRIGGER_BODY))
    done = set(state(conn).tables(names))
    todo = [t for t in tables if t.name not in done]
    for start in range(0, len(todo), batch):
        with conn.transaction():
            _set_lock_timeout(conn, lock_timeout_ms)
            for table in todo[start : start + batch]:
                _execute(conn, _CREATE_TRIGGER, names, table.name)
                _execute(conn, _ENABLE_ALWAYS, names, table.name)
        on_batch(min(start + batch, len(todo)))
    with conn.transaction():
        if guard and not state(conn).guards.keys() & {names.trigger, names.trigger + "_drop"}:
            conn.execute(_function_sql(names, names.guard_function, "event_trigger", _GUARD_BODY))
            for event, name in (
                ("ddl_command_end", names.trigger),
                ("sql_drop", names.trigger + "_drop"),
            ):
                conn.execute(
                    f"CREATE EVENT TRIGGER {_q(name)} ON {event} "
                    f"EXECUTE FUNCTION {_qualified(names.guard_function)}()"
                )
                conn.execute(f"ALTER EVENT TRIGGER {_q(name)} ENABLE ALWAYS")
        return last(conn)


def remove(
    conn: psycopg.Connection[Any], names: FenceNames, *, lock_timeout_ms: int, batch: int = BATCH
) -> dict[str, Any]:
    """Drop this cutover's guard, triggers and functions, whatever of them exists; idempotent.

    ``conn`` is in autocommit. The guard goes first (it would refuse the DROP
    TRIGGERs). ``LockNotAvailable`` as for :func:`install`: DROP TRIGGER waits
    for the table's readers too.
    """
    found = state(conn)
    guards = [g for g in found.guards if g.removesuffix("_drop") == names.trigger]
    with conn.transaction():
        for guard in guards:
            conn.execute(f"DROP EVENT TRIGGER IF EXISTS {_q(guard)}")
    tables = found.tables(names)
    for start in range(0, len(tables), batch):
        with conn.transaction():
            _set_lock_timeout(conn, lock_timeout_ms)
            for table in tables[start : start + batch]:
                _execute(conn, _DROP_TRIGGER, names, table)
    with conn.transaction():
        for function in (names.guard_function, names.function):
            conn.execute(f"DROP FUNCTION IF EXISTS {_qualified(function)}()")
    return {"guards_dropped": guards, "triggers_dropped": len(tables)}


def manual_removal(names: FenceNames) -> str:
    """The SQL a person runs (as a superuser, or rds_superuser) to take the fence down by hand."""
    return (
        f"DROP EVENT TRIGGER IF EXISTS {names.trigger}; "
        f"DROP EVENT TRIGGER IF EXISTS {names.trigger}_drop; "
        "DO $$DECLARE r record; BEGIN FOR r IN SELECT tgrelid::regclass AS t FROM pg_trigger "
        f"WHERE tgname = '{names.trigger}' LOOP EXECUTE format('DROP TRIGGER {names.trigger} "
        "ON %s', r.t); END LOOP; END$$; "
        f"DROP FUNCTION IF EXISTS {_qualified(names.guard_function)}(), "
        f"{_qualified(names.function)}()"
    )


def show_tables(tables: Iterable[TableName], limit: int = 5) -> str:
    listed = sorted(tables)
    shown = ", ".join(show(t) for t in listed[:limit])
    return shown + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


_CREATE_TRIGGER = (
    "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
)
_ENABLE_ALWAYS = "ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}"
_DROP_TRIGGER = "DROP TRIGGER IF EXISTS {trigger} ON {table}"


def _execute(
    conn: psycopg.Connection[Any], template: str, names: FenceNames, table: TableName
) -> None:
    from psycopg import sql

    query = sql.SQL(template).format(
        trigger=ident(names.trigger), table=ident(*table), function=ident(SCHEMA, names.function)
    )
    conn.execute(query, [])  # with parameters: ident() doubled any "%" in a name


def open_to(conn: psycopg.Connection[Any], names: FenceNames, roles: Sequence[str]) -> None:
    """Let ``roles`` (the reverse replication's) through the fence and its guard; every other
    role stays refused. ``()`` closes it again. One transaction: the guard is disabled for it
    (it would refuse the functions' replacement) and enabled ALWAYS again before the commit."""
    _replace_functions(conn, names, roles, _TRIGGER_BODY, _GUARD_BODY)


def lift(conn: psycopg.Connection[Any], names: FenceNames) -> None:
    """Let every role through at once: the functions become no-ops and the triggers stay, so
    no table lock is taken (a reader of any table would hold a DROP TRIGGER back).
    :func:`remove` drops them later; :func:`open_to` makes the fence refuse again."""
    _replace_functions(conn, names, (), _LIFTED_TRIGGER_BODY, _LIFTED_GUARD_BODY)


def _replace_functions(
    conn: psycopg.Connection[Any],
    names: FenceNames,
    roles: Sequence[str],
    trigger_body: str,
    guard_body: str,
) -> None:
    found = state(conn)
    guards = [g for g in found.guards if g.removesuffix("_drop") == names.trigger]
    with conn.transaction():
        for guard in guards:
            conn.execute(f"ALTER EVENT TRIGGER {_q(guard)} DISABLE")
        conn.execute(_function_sql(names, names.function, "trigger", trigger_body, roles))
        if guards:
            conn.execute(
                _function_sql(names, names.guard_function, "event_trigger", guard_body, roles)
            )
        for guard in guards:
            conn.execute(f"ALTER EVENT TRIGGER {_q(guard)} ENABLE ALWAYS")


def opened_to(conn: psycopg.Connection[Any], names: FenceNames) -> list[str]:
    """The roles this fence lets through (its trigger function's list); [] when none or gone."""
    row = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(%s)",
        (_qualified(names.function) + "()",),
    ).fetchone()
    found = (
        re.search(r"session_user = ANY\(ARRAY\[(.*?)\]::text\[\]\)", str(row[0])) if row else None
    )
    quoted = re.findall(r"'((?:[^']|'')*)'", found.group(1)) if found else []
    return [q.replace("''", "'") for q in quoted]


def _function_sql(
    names: FenceNames, function: str, returns: str, body: str, open_to: Sequence[str] = ()
) -> str:
    roles = "ARRAY[" + ", ".join(_literal(r) for r in open_to) + "]::text[]"
    text = body.format(cutover=_literal(names.cutover_id), code=WRITE_REFUSED, open_to=roles)
    return (
        f"CREATE OR REPLACE FUNCTION {_qualified(function)}() RETURNS {returns} "
        f"LANGUAGE plpgsql AS {_literal(text)}"
    )


def _q(name: str) -> str:
    """Our own names only (lowercase letters, digits, underscores): safe without parameters."""
    assert re.fullmatch(r"[a-z0-9_]+", name), name
    return name


def _qualified(function: str) -> str:
    return f"{SCHEMA}.{_q(function)}"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _set_lock_timeout(conn: psycopg.Connection[Any], ms: int) -> None:
    conn.execute(f"SET LOCAL lock_timeout = {int(ms)}")
