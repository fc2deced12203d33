"""The cutover's database steps against real PostgreSQL: the fence and its proof, sequences, marker.

The sandbox tests run them end to end; these pin down the details on the
harness's two clusters: every way around the fence (as the application's
role, a role nobody listed, a table's owner, a superuser), what the freeze
waits for and whom it ends, that taking the fence down restores the catalog
exactly, the margin added once to sequences, and the marker that never
arrives.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from migctl.config import CutoverSettings, Settings
from migctl.cutover import fence, freeze, marker, proof, sequences, target_writes
from migctl.cutover.context import CutoverContext, Timing
from migctl.cutover.fence import FenceNames
from migctl.cutover.model import StepFailed, StepMemo
from migctl.db import Database


class NoAws:
    def client(self, service: str) -> Any:
        raise AssertionError(f"no AWS call expected ({service})")


ODD_SCHEMA, ODD_TABLE = "we.ird", 'Odd: "name"'
ODD = '"we.ird"."Odd: ""name"""'
SOURCE_DDL = f"""
CREATE TABLE ledger (id bigserial PRIMARY KEY, note text UNIQUE);
CREATE TABLE events (id bigint, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE SCHEMA "we.ird";
CREATE TABLE {ODD} (id int PRIMARY KEY);
INSERT INTO ledger (note) VALUES ('before the freeze');
INSERT INTO events VALUES (1, '2026-06-01');
"""


@dataclass(frozen=True)
class Source:
    """The source database with three login roles besides the superuser that runs migctl."""

    pair: Any
    app: str  # the application: listed in [cutover] app_roles
    batch: str  # a batch job nobody listed
    owner: str  # owns the table "team" (and is not a superuser)

    def connect(self, role: str, options: str = "") -> psycopg.Connection[Any]:
        dsn = self.pair.source_dsn.replace("user=postgres", f"user={role}")
        return psycopg.connect(dsn + (f" options='{options}'" if options else ""), autocommit=True)

    def admin(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = self.pair.source_conn()
        return conn

    def rows(self) -> dict[str, int]:
        tables = ["ledger", "events", "team", ODD]
        with self.admin() as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


@pytest.fixture
def source(pg_pair: Any) -> Iterator[Source]:
    tag = secrets.token_hex(4)
    found = Source(pg_pair, f"app_{tag}", f"batch_{tag}", f"owner_{tag}")
    roles = (found.app, found.batch, found.owner)
    with pg_pair.source_conn() as conn:
        for role in roles:
            conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(SOURCE_DDL)
        conn.execute("CREATE TABLE team (id int PRIMARY KEY)")
        conn.execute(f"ALTER TABLE team OWNER TO {found.owner}")
        conn.execute(
            f"GRANT CREATE ON SCHEMA public TO {found.owner}"
        )  # DDL is the guard's to refuse
        for role in (found.app, found.batch):
            conn.execute(f'GRANT USAGE ON SCHEMA "we.ird" TO {role}')
            conn.execute(
                f'GRANT ALL ON ALL TABLES IN SCHEMA public, "we.ird" TO {role}; '
                f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
            )
    yield found
    with pg_pair.source_conn() as conn:
        for (guard,) in conn.execute(  # a test that failed may leave its fence up
            "SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 'migctl_fence_%'"
        ).fetchall():
            conn.execute(f"DROP EVENT TRIGGER {guard}")  # type: ignore[arg-type]
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
            (list(roles),),
        )
        for role in roles:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def context(pg_pair: Any, *roles: str, **cutover: Any) -> CutoverContext:
    settings = Settings(cutover=CutoverSettings(app_roles=roles, **cutover))
    timing = Timing(interval=0.05, wait_timeout=2, marker_timeout=1)
    return CutoverContext(
        settings,
        NoAws(),
        Database(pg_pair.source_dsn),
        Database(pg_pair.target_dsn),
        timing=timing,
        cutover_id=f"c-{secrets.token_hex(4)}",  # slots are named per cluster: one per test
    )


def run_freeze(ctx: CutoverContext) -> StepMemo:
    before = freeze.prepare(ctx, StepMemo())
    facts = dict(freeze.gate(ctx, StepMemo(before)))
    facts.update(freeze.freeze(ctx, StepMemo(before, facts)))
    facts.update(freeze.check(ctx, StepMemo(before, facts)))
    return StepMemo(before, facts)


def _in_transaction(*statements: str) -> Callable[[psycopg.Connection[Any]], None]:
    def attempt(conn: psycopg.Connection[Any]) -> None:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]

    return attempt


def _copy(conn: psycopg.Connection[Any]) -> None:
    with conn.cursor().copy("COPY ledger (note) FROM STDIN") as copy:
        copy.write_row(["copied"])


WRITES: dict[str, Callable[[psycopg.Connection[Any]], None]] = {
    "BEGIN READ WRITE": _in_transaction(
        "BEGIN READ WRITE", "INSERT INTO ledger (note) VALUES ('rw')", "COMMIT"
    ),
    "SET default_transaction_read_only = off": _in_transaction(
        "SET default_transaction_read_only = off", "INSERT INTO ledger (note) VALUES ('off')"
    ),
    "SET SESSION CHARACTERISTICS": _in_transaction(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "INSERT INTO ledger (note) VALUES ('chars')",
    ),
    "set_config": _in_transaction(
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "INSERT INTO ledger (note) VALUES ('set_config')",
    ),
    "session_replication_role = replica": _in_transaction(
        "SET session_replication_role = replica", "INSERT INTO ledger (note) VALUES ('replica')"
    ),
    "UPDATE": _in_transaction("UPDATE ledger SET note = note || '!'"),
    "DELETE": _in_transaction("DELETE FROM ledger"),
    "TRUNCATE": _in_transaction("TRUNCATE ledger CASCADE"),
    "COPY": _copy,
    "ON CONFLICT": _in_transaction(
        "INSERT INTO ledger (note) VALUES ('before the freeze') "
        "ON CONFLICT (note) DO UPDATE SET note = 'upserted'"
    ),
    "MERGE": _in_transaction(
        "MERGE INTO ledger l USING (VALUES ('merged')) v(n) ON l.note = v.n "
        "WHEN NOT MATCHED THEN INSERT (note) VALUES (v.n)"
    ),
    "a partition directly": _in_transaction("INSERT INTO events_2026 VALUES (2, '2026-07-01')"),
    "a partitioned table": _in_transaction("INSERT INTO events VALUES (3, '2026-08-01')"),
    "a quoted name": _in_transaction(f"INSERT INTO {ODD} VALUES (7)"),
    "a table of its own": _in_transaction("INSERT INTO team VALUES (1)"),
    "PREPARE TRANSACTION": _in_transaction(
        "BEGIN", "INSERT INTO ledger (note) VALUES ('xa')", "PREPARE TRANSACTION 'fenced-xa'"
    ),
}
# What a table's owner would try to lift the fence with: the DDL guard refuses each.
LIFTS = {
    "DISABLE TRIGGER": "ALTER TABLE team DISABLE TRIGGER {trigger}",
    "DISABLE TRIGGER ALL": "ALTER TABLE team DISABLE TRIGGER ALL",
    "DROP TRIGGER": "DROP TRIGGER {trigger} ON team",
    "ENABLE REPLICA": "ALTER TABLE team ENABLE REPLICA TRIGGER {trigger}",
    "RENAME": "ALTER TABLE team RENAME TO team_moved",
    "DROP TABLE": "DROP TABLE team",
    "CREATE TABLE": "CREATE TABLE team_copy AS SELECT * FROM team",
}


def refused(
    conn: psycopg.Connection[Any], attempt: Callable[[psycopg.Connection[Any]], None]
) -> str:
    """Run ``attempt``; it must fail. Return the SQLSTATE it failed with."""
    conn.execute("SET lock_timeout = '2s'")  # a write that got through must not hang the next
    try:
        attempt(conn)
    except psycopg.Error as exc:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        return str(exc.sqlstate)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    return "accepted"


def test_no_session_setting_and_no_role_gets_a_write_past_the_fence(source: Source) -> None:
    ctx = context(source.pair, source.app)
    opened_before = {role: source.connect(role) for role in (source.app, source.batch)}
    before = source.rows()
    memo = run_freeze(ctx)
    names = FenceNames.of(ctx.cutover_id)
    sessions = {
        "app, new session": source.connect(source.app),
        "app, -c default_transaction_read_only=off": source.connect(
            source.app, "-c default_transaction_read_only=off"
        ),
        "app, session opened before the freeze": opened_before[source.app],
        "unlisted role, new session": source.connect(source.batch),
        "unlisted role, session opened before the freeze": opened_before[source.batch],
        "a table's owner": source.connect(source.owner),
        "superuser": source.admin(),
    }
    outcomes = {
        (who, how): refused(conn, attempt)
        for who, conn in sessions.items()
        for how, attempt in WRITES.items()
    }
    lifts = {
        how: refused(
            sessions["a table's owner"], _in_transaction(sql.format(trigger=names.trigger))
        )
        for how, sql in LIFTS.items()
    }
    for conn in sessions.values():
        conn.close()

    assert {k: v for k, v in outcomes.items() if v == "accepted"} == {}
    assert source.rows() == before  # 0 rows landed
    # What each one saw: the fence's refusal (or, for a non-superuser, no right to replica mode).
    assert {v for (_, how), v in outcomes.items() if "replica" not in how} <= {"25006", "42501"}
    assert {v for (who, how), v in outcomes.items() if who == "superuser"} == {"25006"}
    assert set(lifts.values()) == {"25006"}, lifts  # the DDL guard refused each
    assert not FenceNames.of(ctx.cutover_id).trigger.startswith("x")
    with source.admin() as conn:
        assert conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
    facts = proof.prove(ctx, memo)["proof"]
    assert facts["breaches"] == [] and facts["from_lsn"] and facts["to_lsn"]
    freeze.unfreeze(ctx, memo)
    with source.connect(source.batch) as after:
        assert refused(after, WRITES["BEGIN READ WRITE"]) == "accepted"


def test_the_fence_opened_to_the_reverse_role_lets_it_alone_through(source: Source) -> None:
    """The way back writes to the fenced source as one role: that role passes the triggers and
    the DDL guard; every other role, superuser included, stays refused; closing it refuses it
    again. The roles are read back from the function itself, not assumed."""
    ctx = context(source.pair, source.app)
    memo = run_freeze(ctx)
    names = FenceNames.of(ctx.cutover_id)
    with source.admin() as conn:
        fence.open_to(conn, names, (source.batch,))
        assert fence.opened_to(conn, names) == [source.batch]
        assert fence.state(conn).guarded(names)  # the guard is back on, ALWAYS
    with source.connect(source.batch) as reverse:
        assert refused(reverse, WRITES["BEGIN READ WRITE"]) == "accepted"
        assert refused(reverse, WRITES["TRUNCATE"]) == "accepted"
    others = {who: source.connect(who) for who in (source.app, source.owner)}
    others["superuser"] = source.admin()
    outcomes = {
        who: refused(conn, WRITES["a table of its own" if who == source.owner else "UPDATE"])
        for who, conn in others.items()
    }
    lift = refused(
        others[source.owner], _in_transaction(LIFTS["DROP TRIGGER"].format(trigger=names.trigger))
    )
    for conn in others.values():
        conn.close()
    assert outcomes == dict.fromkeys(outcomes, "25006") and lift == "25006"
    with source.admin() as conn:
        fence.open_to(conn, names, ())
        assert fence.opened_to(conn, names) == []
    with source.connect(source.batch) as reverse:
        assert refused(reverse, WRITES["BEGIN READ WRITE"]) == "25006"
    freeze.unfreeze(ctx, memo)


def test_a_lifted_fence_lets_every_role_through_without_waiting_for_a_reader(
    source: Source,
) -> None:
    """The standby switch lifts the target's fence inside the window: it must not wait for a
    session that reads a fenced table (the new image's health checks), and afterwards every
    role writes; closing it again (a rollback's fence) refuses them all once more."""
    ctx = context(source.pair, source.app)
    memo = run_freeze(ctx)
    names = FenceNames.of(ctx.cutover_id)
    reader = source.connect(source.app)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM team")  # holds ACCESS SHARE until it ends
    try:
        with source.admin() as conn:
            conn.execute("SET lock_timeout = '1s'")  # a DROP TRIGGER would wait, then fail
            fence.lift(conn, names)
            assert fence.state(conn).tables(names)  # the triggers stay, doing nothing
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    writers = {who: source.connect(who) for who in (source.app, source.batch)}
    writers["superuser"] = source.admin()
    outcomes = {who: refused(conn, WRITES["UPDATE"]) for who, conn in writers.items()}
    with source.admin() as conn:
        fence.open_to(conn, names, ())
    closed = {who: refused(conn, WRITES["UPDATE"]) for who, conn in writers.items()}
    for conn in writers.values():
        conn.close()
    assert outcomes == dict.fromkeys(outcomes, "accepted")
    assert closed == dict.fromkeys(closed, "25006")
    freeze.unfreeze(ctx, memo)


def test_a_superuser_who_lifts_the_fence_is_caught_by_the_proof_naming_each_table(
    source: Source,
) -> None:
    ctx = context(source.pair, source.app)
    memo = run_freeze(ctx)
    names = FenceNames.of(ctx.cutover_id)
    with source.admin() as su:
        su.execute(
            "INSERT INTO migctl.cutover_marker (id, cutover_id, source_lsn) VALUES (gen_random_uuid(), 'x', '0/0')"
        )
        assert proof.prove(ctx, memo)["proof"]["outside_fence"] == [
            {"schema": "migctl", "name": "cutover_marker", "changes": {"INSERT": 1}}
        ]
        for guard in (names.trigger, names.trigger + "_drop"):
            su.execute(f"DROP EVENT TRIGGER {guard}")  # type: ignore[arg-type]
        su.execute(f"ALTER TABLE {ODD} DISABLE TRIGGER {names.trigger}")  # type: ignore[arg-type]
        su.execute(f"ALTER TABLE ledger DISABLE TRIGGER {names.trigger}")  # type: ignore[arg-type]
        su.execute(f"INSERT INTO {ODD} VALUES (1), (2)")  # type: ignore[arg-type]
        su.execute("UPDATE ledger SET note = 'changed behind the fence'")
    with pytest.raises(StepFailed) as caught:
        proof.prove(ctx, memo)
    assert "3 change(s) reached the source" in caught.value.message
    assert f"{ODD}: 2 INSERT" in caught.value.message
    assert "public.ledger: 1 UPDATE" in caught.value.message
    checked = caught.value.details["proof"]
    assert checked["from_lsn"] and checked["to_lsn"]
    assert checked["breaches"] == [
        {"schema": "public", "name": "ledger", "changes": {"UPDATE": 1}},
        {"schema": ODD_SCHEMA, "name": ODD_TABLE, "changes": {"INSERT": 2}},
    ]
    with pytest.raises(StepFailed, match="not up everywhere"):
        freeze.check(ctx, memo)
    freeze.unfreeze(ctx, memo)  # whatever is left of the fence comes down, the slot too
    with source.admin() as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = %s", (names.trigger,)
        ).fetchone() == (0,)


def test_prepared_and_open_write_transactions_hold_the_freeze_and_are_named(
    source: Source,
) -> None:
    ctx = context(source.pair, source.app)
    with source.connect(source.batch) as xa:
        xa.execute("BEGIN")
        xa.execute("INSERT INTO ledger (note) VALUES ('prepared before the freeze')")
        xa.execute("PREPARE TRANSACTION 'pay-42'")
    before = freeze.prepare(ctx, StepMemo())
    gate = freeze.gate(ctx, StepMemo(before))
    with pytest.raises(StepFailed, match="prepared transaction.*'pay-42' of " + source.batch):
        freeze.freeze(ctx, StepMemo(before, gate))
    with pytest.raises(StepFailed, match="'pay-42'"):
        marker.quiet(ctx, StepMemo())
    with source.admin() as conn:
        conn.execute("ROLLBACK PREPARED 'pay-42'")

    batch = source.connect(source.batch)
    batch.execute("BEGIN")
    batch.execute("INSERT INTO ledger (note) VALUES ('batch in flight')")
    with pytest.raises(StepFailed, match=f"waiting for pid .*{source.batch}"):
        freeze.freeze(ctx, StepMemo(before, gate))
    batch.execute("ROLLBACK")

    app = source.connect(source.app)
    app.execute("BEGIN")
    app.execute("INSERT INTO ledger (note) VALUES ('app in flight')")
    facts = freeze.freeze(ctx, StepMemo(before, gate))  # the app's session is ended
    with pytest.raises(psycopg.OperationalError):
        app.execute("SELECT 1")
    assert refused(batch, WRITES["BEGIN READ WRITE"]) == "25006"
    batch.close()
    memo = StepMemo(before, {**gate, **facts})
    assert marker.quiet(ctx, memo)["quiet"]
    with source.admin() as conn:
        notes = [r[0] for r in conn.execute("SELECT note FROM ledger").fetchall()]
    assert notes == ["before the freeze"]  # nothing in flight was half-applied
    freeze.unfreeze(ctx, memo)


CATALOG = {
    "relacl": "SELECT oid::regclass::text, relacl::text FROM pg_class ORDER BY oid",
    "rolcanlogin": "SELECT rolname, rolcanlogin, rolconfig::text FROM pg_roles ORDER BY 1",
    "triggers": "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger ORDER BY 1, 2",
    "event triggers": "SELECT evtname, evtenabled FROM pg_event_trigger ORDER BY 1",
    "settings": "SELECT setdatabase, setrole, setconfig::text FROM pg_db_role_setting ORDER BY 1, 2",
    "slots": "SELECT slot_name FROM pg_replication_slots ORDER BY 1",
    "functions": "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = "
    "'migctl'::regnamespace ORDER BY 1",
}


def catalog(source: Source) -> dict[str, list[tuple[Any, ...]]]:
    with source.admin() as conn:
        return {k: conn.execute(q).fetchall() for k, q in CATALOG.items()}  # type: ignore[arg-type]


def test_the_fence_changes_only_what_it_journals_and_its_removal_restores_the_catalog(
    source: Source,
) -> None:
    ctx = context(source.pair, source.app)
    marker.ensure_table(ctx, StepMemo())  # the marker table stays: the audit trail
    reader = source.connect(source.app)
    untouched = catalog(source)
    memo = run_freeze(ctx)
    names = FenceNames.of(ctx.cutover_id)
    during = catalog(source)
    fenced = {row[0] for row in during["triggers"] if row[1] == names.trigger}
    with source.admin() as conn:
        journaled = {
            conn.execute(
                "SELECT format('%%I.%%I', %s::text, %s::text)::regclass::text", t
            ).fetchone()[0]  # type: ignore[index]
            for t in memo.before["tables"]
        }
    assert fenced == journaled  # each table the journal listed before the change, no other
    assert {r[1] for r in during["triggers"]} - {r[1] for r in untouched["triggers"]} == {
        memo.before["creates"]["triggers"]
    }
    assert {r[0] for r in during["event triggers"]} == set(memo.before["creates"]["event_triggers"])
    assert [r[0] for r in during["slots"]] == [memo.before["creates"]["replication_slot"]]
    assert {k for k in CATALOG if during[k] != untouched[k]} == {
        "triggers",
        "event triggers",
        "slots",
        "functions",
    }  # no ACL, login flag or setting changed

    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM ledger")  # a reader holds what DROP TRIGGER waits for
    freeze.unfreeze(ctx, memo)  # the app's reader is ended
    with pytest.raises(psycopg.OperationalError):
        reader.execute("SELECT 1")
    assert catalog(source) == untouched
    freeze.unfreeze(ctx, memo)  # again: nothing left to do, no error
    assert catalog(source) == untouched


def test_the_gate_refuses_what_the_fence_could_not_hold(source: Source) -> None:
    ctx = context(source.pair, source.app)
    with source.admin() as conn:
        conn.execute(f"ALTER ROLE {source.batch} REPLICATION")
    user = source.pair.source_dsn.replace("user=postgres", f"user={source.batch}")
    as_batch = CutoverContext(
        ctx.settings, NoAws(), Database(user), ctx.target, timing=ctx.timing, cutover_id="c-gate"
    )
    with pytest.raises(StepFailed, match="does not act as the owner of 5 table") as foreign:
        freeze.gate(as_batch, StepMemo())
    assert f"GRANT {source.owner}, postgres TO {source.batch}" in (foreign.value.hint or "")

    other = run_freeze(ctx)
    with pytest.raises(StepFailed, match="another cutover's fence"):
        freeze.gate(context(source.pair, source.app), StepMemo())
    freeze.unfreeze(ctx, other)


def test_a_read_only_freeze_of_an_earlier_version_is_still_undone(source: Source) -> None:
    """A cutover an earlier migctl froze with default_transaction_read_only: its undo resets
    the setting (this version never sets it)."""
    ctx = context(source.pair, source.app)
    db = source.pair.dbname
    with source.admin() as conn:
        conn.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')  # type: ignore[arg-type]
    memo = StepMemo({"strategy": "read-only", "database": db, "previous_setting": None}, {})
    assert "RESET default_transaction_read_only" in freeze.manual_unfreeze(ctx, memo)
    facts = freeze.unfreeze(ctx, memo)
    assert facts["setting"] == "reset" and "restart the application's pools" in facts["warning"]
    with source.connect(source.batch) as after:
        assert refused(after, WRITES["BEGIN READ WRITE"]) == "accepted"
        assert after.execute("SHOW default_transaction_read_only").fetchone() == ("off",)


def test_the_rows_written_on_the_target_since_a_mark_are_counted_per_table(pg_pair: Any) -> None:
    pg_pair.execute_both("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with pg_pair.target_conn() as tgt:
        tgt.execute("INSERT INTO orders SELECT g, 'replicated' FROM generate_series(1, 10) g")
    with pg_pair.target_conn() as tgt:
        before = target_writes.mark(tgt)
    with pg_pair.target_conn() as app:  # the new image, writing on the target after go-live
        app.execute("INSERT INTO orders VALUES (11, 'new'), (12, 'new'), (13, 'new')")
        app.execute("UPDATE orders SET note = 'changed' WHERE id = 1")
        app.execute("DELETE FROM orders WHERE id = 2")
    with pg_pair.target_conn() as tgt:
        written = target_writes.since(tgt, before)
        assert written.facts() == [
            {"schema": "public", "name": "orders", "inserted": 3, "updated": 1, "deleted": 1}
        ]
        assert written.rows == 5
        assert written.describe() == "public.orders 3 inserted, 1 updated, 1 deleted"
        tgt.execute("SELECT pg_stat_reset()")
        reset = target_writes.since(tgt, before)
    assert reset.rows == 0 and reset.unknown == (("public", "orders"),)  # never "0 written"
    assert "unknown for public.orders" in reset.describe()


SEQUENCE_DDL = """
CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
CREATE SEQUENCE refund_seq INCREMENT -1 START -1 MAXVALUE -1;
CREATE TABLE refunds (id bigint PRIMARY KEY DEFAULT nextval('refund_seq'), note text);
ALTER SEQUENCE refund_seq OWNED BY refunds.id;
"""


def test_sequences_move_to_the_high_water_mark_plus_margin_once(pg_pair: Any) -> None:
    pg_pair.execute_both(SEQUENCE_DDL)
    with pg_pair.source_conn() as src, pg_pair.target_conn() as tgt:
        src.execute("INSERT INTO orders (note) SELECT 'o' FROM generate_series(1, 40)")
        src.execute("INSERT INTO refunds (note) SELECT 'r' FROM generate_series(1, 7)")
        src.execute("SELECT setval('orders_id_seq', 55)")  # ids handed out and rolled back
        # What DMS leaves: the rows, with their ids, and the sequences where they started.
        tgt.execute("INSERT INTO orders (id, note) SELECT g, 'o' FROM generate_series(1, 40) g")
        tgt.execute("INSERT INTO refunds (id, note) SELECT -g, 'r' FROM generate_series(1, 7) g")
        ctx = context(pg_pair, sequence_margin=100)
        assert {r.status for _, r in sequences.compare(ctx)} == {"behind"}
        with pytest.raises(StepFailed, match="behind"):
            sequences.check(ctx, StepMemo())

        synced = sequences.sync(ctx, StepMemo())
        assert sorted((s["sequence"], s["to"]) for s in synced["synced"]) == [
            ("public.orders_id_seq", 155),
            ("public.refund_seq", -107),
        ]
        assert sequences.sync(ctx, StepMemo())["synced"] == []  # a rerun adds nothing
        assert sequences.check(ctx, StepMemo()) == {"sequences_ahead": 2}
        assert tgt.execute("SELECT nextval('orders_id_seq'), nextval('refund_seq')").fetchone() == (
            156,
            -108,
        )


def test_a_sequence_missing_on_the_target_fails_the_sync(pg_pair: Any) -> None:
    with pg_pair.source_conn() as src:
        src.execute("CREATE TABLE lonely (id serial PRIMARY KEY)")
    with pg_pair.target_conn() as tgt:
        tgt.execute("CREATE TABLE lonely (id int PRIMARY KEY)")
    with pytest.raises(StepFailed, match="missing on the target"):
        sequences.sync(context(pg_pair), StepMemo())


def test_the_marker_table_is_created_where_missing_and_a_marker_that_never_arrives_fails(
    pg_pair: Any,
) -> None:
    ctx = context(pg_pair)
    notes: list[str] = []
    ctx.report = lambda message, _details: notes.append(message)
    assert marker.ensure_table(ctx, StepMemo()) == {"table_created_on": ["source", "target"]}
    assert any("must replicate it" in n for n in notes)
    assert marker.ensure_table(ctx, StepMemo()) == {"table_created_on": []}
    with pytest.raises(StepFailed, match="marker row on the target") as failed:
        marker.write_and_wait(ctx, StepMemo())  # nothing replicates between these clusters
    assert "table mappings" in (failed.value.hint or "")
    with pg_pair.source_conn() as src:
        row = src.execute(
            "SELECT id::text, cutover_id, source_lsn IS NOT NULL FROM migctl.cutover_marker"
        ).fetchone()
    assert row == (failed.value.details["marker_id"], ctx.cutover_id, True)


def test_the_baseline_step_leaves_its_slots_to_the_state_and_its_undo_drops_them(
    pg_pair: Any,
) -> None:
    """Step 2 on real clusters: ANALYZE, a slot on each side, the catch-up round's state in its
    facts; a slot left behind is reported by a later preflight, on its side; the undo drops
    both."""
    from migctl.cutover import baseline, preflight

    pg_pair.execute_both("CREATE TABLE pay (id int PRIMARY KEY, v text)")
    with pg_pair.source_conn() as conn:
        conn.execute("INSERT INTO pay VALUES (1, 'lag')")  # replication has not carried it yet
    ctx = context(pg_pair)
    before = baseline.prepare(ctx, StepMemo())
    assert before == {"validate": "incremental", "slot": baseline.slot_name(ctx)}
    memo = StepMemo(before)
    baseline.gate(ctx, memo)
    facts = baseline.take(ctx, memo)
    assert facts["mode"] == "incremental" and facts["differing_at_baseline"] == 1
    assert facts["state"]["pending"] == {"public.pay": [["1"]]}
    with pg_pair.target_conn() as conn:
        analyzed = conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'pay'"
        ).fetchone()
    assert analyzed == (True,)
    later = context(pg_pair)
    assert [(s["side"], s["slot"]) for s in preflight._leftover_slots(later)] == [
        ("source", before["slot"]),
        ("target", before["slot"]),
    ]
    assert baseline.drop_slots(ctx, memo) == {"slots_dropped": {"source": True, "target": True}}
    assert preflight._leftover_slots(later) == []


def test_with_validate_full_the_baseline_only_analyzes(pg_pair: Any) -> None:
    from migctl.cutover import baseline

    pg_pair.execute_both("CREATE TABLE pay (id int PRIMARY KEY)")
    ctx = context(pg_pair, validate="full")
    memo = StepMemo(baseline.prepare(ctx, StepMemo()))
    facts = baseline.take(ctx, memo)
    assert facts["mode"] == "full" and "state" not in facts
    assert baseline.drop_slots(ctx, memo) == {"slots_dropped": {"source": False, "target": False}}
