"""The sandbox's seed on a real cluster: past the old int4 limit, with every key as it was.

`schema.seed` used to overflow `g * 7919` (int4) at 271,183 payments. It now
generates bigint ids, loads without the keys no foreign key needs and makes
them again afterwards; as a superuser it keeps the foreign keys and skips
their triggers, otherwise it drops and validates them. These tests check the
rows it reports against the tables, that the schema comes out exactly as
`create_schema` made it (also after a failed seed), and that the DMS
stand-in reports the seeded rows as its full load, again after a reload.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg
import pytest

from migctl.sandbox import schema
from migctl.sandbox.replication import Replication
from tests.conftest import PgPair

PAST_THE_OLD_LIMIT = 300_000  # g * 7919 > 2^31 - 1 from g = 271,183

# Every key and constraint of the seeded tables, and the sequences' state.
CATALOG = """
SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid), convalidated
FROM pg_constraint WHERE conrelid = ANY(%(tables)s::regclass[])
UNION ALL
SELECT indrelid::regclass::text, indexrelid::regclass::text, 'index', pg_get_indexdef(indexrelid),
       indisvalid
FROM pg_index WHERE indrelid = ANY(%(tables)s::regclass[])
UNION ALL
SELECT relname, relreplident::text, 'replica identity', '', true
FROM pg_class WHERE oid = ANY(%(tables)s::regclass[])
ORDER BY 1, 2, 3
"""

# Rows whose references do not resolve, and ledger entries that disagree with their payment.
ORPHANS = """
SELECT (SELECT count(*) FROM accounts a LEFT JOIN customers c ON c.id = a.customer_id
        WHERE c.id IS NULL),
       (SELECT count(*) FROM payments p LEFT JOIN accounts a ON a.id = p.account_id
        WHERE a.id IS NULL),
       (SELECT count(*) FROM ledger_entries l LEFT JOIN payments p ON p.id = l.payment_id
        WHERE p.id IS NULL),
       (SELECT count(*) FROM ledger_entries l LEFT JOIN accounts a ON a.id = l.account_id
        WHERE a.id IS NULL),
       (SELECT count(*) FROM ledger_entries l JOIN payments p ON p.id = l.payment_id
        WHERE (l.account_id, l.amount, l.booked_at) IS DISTINCT FROM
              (p.account_id, p.amount, p.created_at))
"""


def catalog(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(CATALOG, {"tables": list(schema.TABLES)}).fetchall()


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {
        t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
        for t in schema.TABLES
    }


def test_seed_passes_the_old_int4_limit_with_every_key_as_it_was(pg_pair: PgPair) -> None:
    with pg_pair.source_conn() as conn:
        schema.create_schema(conn)
        before = catalog(conn)
        started = time.monotonic()
        reported = schema.seed(conn, PAST_THE_OLD_LIMIT)
        elapsed = time.monotonic() - started

        sizes = schema.seed_sizes(PAST_THE_OLD_LIMIT)
        expected = {
            "customers": sizes["customers"],
            "accounts": sizes["accounts"],
            "payments": PAST_THE_OLD_LIMIT,
            "ledger_entries": PAST_THE_OLD_LIMIT,  # a debit and a credit per even payment
            "audit_log": sizes["audit"],
        }
        assert reported == counts(conn) == expected
        # Ids run 1..count, and each sequence is where nextval() would have left it.
        for table in ("customers", "accounts", "payments", "ledger_entries"):
            row = conn.execute(
                f"SELECT min(id), max(id), count(DISTINCT id) FROM {table}"  # type: ignore[arg-type]
            ).fetchone()
            assert row == (1, expected[table], expected[table]), table
            seq = conn.execute(
                f"SELECT last_value, is_called FROM {table}_id_seq"  # type: ignore[arg-type]
            ).fetchone()
            assert seq == (expected[table], True), table
        # Past g = 271,183 the account ids still cover every account, no more.
        spread = conn.execute(
            "SELECT min(account_id), max(account_id), count(DISTINCT account_id) FROM payments "
            "WHERE id > 271182"
        ).fetchone()
        assert spread == (1, sizes["accounts"], sizes["accounts"])
        assert conn.execute(ORPHANS).fetchone() == (0, 0, 0, 0, 0)
        # Generated uuids are distinct (customers.external_id is UNIQUE, payment_ref is not).
        refs = conn.execute("SELECT count(DISTINCT payment_ref) FROM payments").fetchone()
        assert refs == (PAST_THE_OLD_LIMIT,)
        # The keys were made again as create_schema made them: same names, definitions,
        # validated foreign keys, replica identities.
        assert catalog(conn) == before
        # The next rows take the next ids.
        row = conn.execute(
            "INSERT INTO payments (account_id, payment_ref, amount, currency, status) "
            "VALUES (1, gen_random_uuid(), 1, 'EUR', 'pending') RETURNING id"
        ).fetchone()
        assert row == (PAST_THE_OLD_LIMIT + 1,)
    assert elapsed < 30, f"seeding {PAST_THE_OLD_LIMIT:,} payments took {elapsed:.1f}s"


def test_seed_as_the_tables_owner_drops_and_validates_the_foreign_keys(pg_pair: PgPair) -> None:
    """Not a superuser: no trigger can be skipped, so the foreign keys go for the load and
    come back validated; the rows are the same. (Building an index takes CREATE on the
    schema, which the role that made the tables has.)"""
    role = f"seeder_{secrets.token_hex(4)}"
    with pg_pair.source_conn() as admin:
        schema.create_schema(admin)
        before = catalog(admin)
        admin.execute(f"CREATE ROLE {role} LOGIN")  # type: ignore[arg-type]
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")  # type: ignore[arg-type]
        for table in schema.TABLES:
            admin.execute(f"ALTER TABLE {table} OWNER TO {role}")  # type: ignore[arg-type]
    try:
        dsn = pg_pair.source_dsn.replace("user=postgres", f"user={role}")
        with psycopg.connect(dsn) as conn:
            assert conn.info.parameter_status("is_superuser") == "off"
            reported = schema.seed(conn, 20_001)
        with pg_pair.source_conn() as admin:
            assert reported == counts(admin)
            assert reported["payments"] == 20_001 and reported["ledger_entries"] == 20_000
            assert admin.execute(ORPHANS).fetchone() == (0, 0, 0, 0, 0)
            assert catalog(admin) == before
    finally:
        with pg_pair.source_conn() as admin:
            admin.execute(f"REASSIGN OWNED BY {role} TO postgres")  # type: ignore[arg-type]
            admin.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            admin.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]


def test_seed_fires_a_trigger_of_a_seeded_table(pg_pair: PgPair) -> None:
    """A superuser's seed skips the foreign keys' triggers only: with a trigger of its own
    on a table, every trigger fires (and the foreign keys are validated instead)."""
    with pg_pair.source_conn() as conn:
        schema.create_schema(conn)
        conn.execute(
            "CREATE TABLE audited (n bigint NOT NULL);"
            "CREATE FUNCTION count_audit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO audited VALUES (1); RETURN NEW; END $$;"
            "CREATE TRIGGER counted AFTER INSERT ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION count_audit()"
        )
        before = catalog(conn)
        reported = schema.seed(conn, 20_000)
        assert conn.execute("SELECT count(*) FROM audited").fetchone() == (reported["audit_log"],)
        assert conn.execute(ORPHANS).fetchone() == (0, 0, 0, 0, 0)
        assert catalog(conn) == before


def test_a_failed_seed_leaves_empty_tables_with_their_keys(pg_pair: PgPair) -> None:
    with pg_pair.source_conn() as conn:
        schema.create_schema(conn)
        conn.execute("ALTER TABLE ledger_entries ADD CONSTRAINT stop_early CHECK (id < 5000)")
        before = catalog(conn)
        with pytest.raises(psycopg.errors.CheckViolation, match="stop_early"):
            schema.seed(conn, 20_000)
        assert counts(conn) == dict.fromkeys(schema.TABLES, 0)
        assert catalog(conn) == before


def test_the_full_load_reports_the_seeded_rows_again_after_a_reload(pg_pair: PgPair) -> None:
    """The DMS stand-in's FullLoadRows: each table's copied rows once its sync worker has
    reported them, not the target's counters since it was created (a reload adds to those)."""
    with pg_pair.source_conn() as src, pg_pair.target_conn() as tgt:
        schema.create_schema(src)
        schema.create_schema(tgt)
        seeded = schema.seed(src, 20_000)
    replication = Replication(pg_pair.source_dsn, pg_pair.target_dsn)

    def full_load() -> dict[str, int]:
        deadline = time.monotonic() + 60
        while not (snap := replication.snapshot()).full_load_done:
            assert time.monotonic() < deadline, snap
            time.sleep(0.2)
        return {t.table: t.full_load_rows for t in snap.tables if t.schema == "public"}

    try:
        replication.start()
        assert full_load() == seeded
        with pg_pair.source_conn() as src:
            src.execute("INSERT INTO audit_log (actor, action) VALUES ('test', 'between')")
        replication.start(reload=True)
        assert full_load() == {**seeded, "audit_log": seeded["audit_log"] + 1}
        with pg_pair.target_conn() as tgt:
            assert counts(tgt) == {**seeded, "audit_log": seeded["audit_log"] + 1}
    finally:
        drop_subscription(pg_pair, "migctl_dms")


def drop_subscription(pg_pair: PgPair, name: str) -> None:
    """A database with a subscription cannot be dropped, nor one with an active slot: drop
    the subscription and wait for the source's slots to be idle (the fixture drops them)."""
    with pg_pair.target_conn() as tgt:
        if tgt.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,)).fetchone():
            tgt.execute(f"ALTER SUBSCRIPTION {name} DISABLE")  # type: ignore[arg-type]
            tgt.execute(f"ALTER SUBSCRIPTION {name} SET (slot_name = NONE)")  # type: ignore[arg-type]
            tgt.execute(f"DROP SUBSCRIPTION {name}")  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    with pg_pair.source_conn() as src:
        while src.execute(
            "SELECT 1 FROM pg_replication_slots WHERE database = %s AND active", (pg_pair.dbname,)
        ).fetchone():
            assert time.monotonic() < deadline, "the source's slots stayed active"
            time.sleep(0.1)
