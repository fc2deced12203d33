"""The cutover's database steps against real PostgreSQL: freeze and unfreeze, sequences, marker.

The sandbox tests run them end to end; these pin down the details on the
harness's two clusters: which sessions end, what a new session may do, the
margin added once, descending sequences, and the marker that never arrives.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from migctl.config import CutoverSettings, Settings
from migctl.cutover import freeze, marker, sequences
from migctl.cutover.context import CutoverContext, Timing
from migctl.cutover.model import StepFailed, StepMemo
from migctl.db import Database
from migctl.errors import CheckFailed


class NoAws:
    def client(self, service: str) -> Any:
        raise AssertionError(f"no AWS call expected ({service})")


@pytest.fixture
def app_role(pg_pair: Any) -> Iterator[str]:
    role = f"app_{secrets.token_hex(4)}"
    with pg_pair.source_conn() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text)")
        conn.execute(f"GRANT ALL ON ledger, ledger_id_seq TO {role}")
    yield role
    with pg_pair.source_conn() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        conn.execute(f"ALTER DATABASE {pg_pair.dbname} RESET ALL")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def context(pg_pair: Any, role: str = "nobody", **cutover: Any) -> CutoverContext:
    settings = Settings(cutover=CutoverSettings(app_roles=(role,), **cutover))
    timing = Timing(interval=0.05, wait_timeout=3, marker_timeout=1)
    return CutoverContext(
        settings,
        NoAws(),
        Database(pg_pair.source_dsn),
        Database(pg_pair.target_dsn),
        timing=timing,
        cutover_id="unit",
    )


def as_role(pg_pair: Any, role: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        pg_pair.source_dsn.replace("user=postgres", f"user={role}"), autocommit=True
    )


def can_write(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("INSERT INTO ledger (note) VALUES ('probe')")
    except psycopg.errors.ReadOnlySqlTransaction:
        return False
    return True


def run_freeze(ctx: CutoverContext) -> StepMemo:
    before = freeze.prepare(ctx, StepMemo())
    facts = dict(freeze.gate(ctx, StepMemo(before)))
    facts.update(freeze.freeze(ctx, StepMemo(before, facts)))
    facts.update(freeze.check(ctx, StepMemo(before, facts)))
    return StepMemo(before, facts)


def test_freeze_ends_the_app_sessions_and_new_ones_are_read_only_until_unfrozen(
    pg_pair: Any, app_role: str
) -> None:
    ctx = context(pg_pair, app_role)
    idle = as_role(pg_pair, app_role)
    writing = as_role(pg_pair, app_role)
    writing.autocommit = False
    writing.execute("INSERT INTO ledger (note) VALUES ('in flight')")  # holds an xid
    with pg_pair.source_conn() as admin:
        memo = run_freeze(ctx)
        assert memo.before["previous_setting"] is None
        for ended in (idle, writing):
            with pytest.raises(psycopg.OperationalError):
                ended.execute("SELECT 1")
        others = memo.details["remaining_sessions"]
        assert admin.info.backend_pid in [s["pid"] for s in others]  # admins may stay
        assert run_freeze(ctx).details["frozen_at"]  # a rerun is harmless
        during = as_role(pg_pair, app_role)
        assert not can_write(during)

        undone = freeze.unfreeze(ctx, memo)
        assert [s["user"] for s in undone["ended_read_only_sessions"]] == [app_role]
        with pytest.raises(psycopg.OperationalError):
            during.execute("SELECT 1")  # it would have stayed read-only: ended, to reconnect
        with as_role(pg_pair, app_role) as after:
            assert can_write(after)
        count = admin.execute("SELECT count(*) FROM ledger WHERE note = 'in flight'").fetchone()
        assert count == (0,)  # the in-flight write was rolled back, never half-applied


def test_a_writer_outside_the_app_roles_holds_the_gate(pg_pair: Any, app_role: str) -> None:
    ctx = context(pg_pair, app_role)
    with pg_pair.source_conn() as writer:
        writer.autocommit = False
        writer.execute("INSERT INTO ledger (note) VALUES ('batch job')")
        before = freeze.prepare(ctx, StepMemo())
        with pytest.raises(CheckFailed, match="write transaction"):
            freeze.freeze(ctx, StepMemo(before, {}))
        writer.rollback()
    freeze.unfreeze(ctx, StepMemo(before, {}))
    with as_role(pg_pair, app_role) as conn:
        assert can_write(conn)


def test_a_role_level_override_would_beat_the_freeze_and_is_refused(
    pg_pair: Any, app_role: str
) -> None:
    with pg_pair.source_conn() as conn:
        conn.execute(f"ALTER ROLE {app_role} SET default_transaction_read_only = off")
    with pytest.raises(StepFailed, match="beats the database setting"):
        freeze.gate(context(pg_pair, app_role), StepMemo())


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
    assert row == (failed.value.details["marker_id"], "unit", True)
