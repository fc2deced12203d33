"""The sandbox's payments schema, and seed data generated inside the source server.

Customers, accounts, payments and ledger entries, with sequences and foreign
keys; a no-PK audit table; numeric, timestamptz, uuid, jsonb, text and bytea
columns. Rows are generated with ``generate_series`` inside PostgreSQL, so
seeding 100k payments takes a second or two and moves no data over the wire.
"""

from __future__ import annotations

from typing import Any

from migctl.cutover.marker import MARKER_DDL

SCHEMA_DDL = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE customers (
    id          bigserial PRIMARY KEY,
    external_id uuid NOT NULL UNIQUE,
    name        text NOT NULL,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    iban        text NOT NULL,
    currency    char(3) NOT NULL,
    balance     numeric(18,4) NOT NULL DEFAULT 0,
    opened_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts(id),
    payment_ref uuid NOT NULL,
    amount      numeric(18,4) NOT NULL,
    currency    char(3) NOT NULL,
    status      text NOT NULL,
    memo        text,
    metadata    jsonb NOT NULL DEFAULT '{}',
    signature   bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_account_idx ON payments(account_id);

CREATE TABLE ledger_entries (
    id          bigserial PRIMARY KEY,
    payment_id  bigint NOT NULL REFERENCES payments(id) ON DELETE CASCADE,
    account_id  bigint NOT NULL REFERENCES accounts(id),
    direction   char(1) NOT NULL CHECK (direction IN ('D', 'C')),
    amount      numeric(18,4) NOT NULL,
    booked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_payment_idx ON ledger_entries(payment_id);

-- No primary key: compared as a multiset by `migctl validate`, and replicated
-- with REPLICA IDENTITY FULL.
CREATE TABLE audit_log (
    logged_at   timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb
);
ALTER TABLE audit_log REPLICA IDENTITY FULL;
"""

TABLES = ("customers", "accounts", "payments", "ledger_entries", "audit_log")

SEED_SQL = """
INSERT INTO customers (external_id, name, email, created_at)
SELECT gen_random_uuid(), 'customer ' || g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || g || '@example.test' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '13 minutes'
FROM generate_series(1, {customers}) g;

INSERT INTO accounts (customer_id, iban, currency, balance, opened_at)
SELECT 1 + (g - 1) % {customers}, 'XX' || lpad(g::text, 20, '0'),
       (ARRAY['EUR','USD','GBP'])[1 + g % 3], (g * 37.1234)::numeric(18,4),
       timestamptz '2024-01-02 00:00:00+00' + g * interval '17 minutes'
FROM generate_series(1, {accounts}) g;

INSERT INTO payments (account_id, payment_ref, amount, currency, status, memo, metadata,
                      signature, created_at, updated_at)
SELECT 1 + (g * 7919) % {accounts}, gen_random_uuid(),
       round((random() * 10000)::numeric, 4), (ARRAY['EUR','USD','GBP'])[1 + g % 3],
       (ARRAY['pending','settled','settled','settled','refunded'])[1 + g % 5],
       CASE WHEN g % 11 = 0 THEN NULL WHEN g % 13 = 0 THEN '' ELSE 'invoice ' || g END,
       jsonb_build_object('channel', (ARRAY['card','sepa','wire'])[1 + g % 3], 'n', g),
       CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
       ts, ts + interval '1 second' * (g % 600)
FROM generate_series(1, {payments}) g,
     LATERAL (SELECT timestamptz '2025-01-01 00:00:00+00' + g * interval '977 milliseconds') t(ts);

INSERT INTO ledger_entries (payment_id, account_id, direction, amount, booked_at)
SELECT p.id, p.account_id, d.direction, p.amount, p.created_at
FROM payments p CROSS JOIN (VALUES ('D'), ('C')) d(direction)
WHERE p.id % 2 = 0;

INSERT INTO audit_log (logged_at, actor, action, detail)
SELECT timestamptz '2025-01-01 00:00:00+00' + g * interval '1 minute',
       'batch', 'seed', jsonb_build_object('step', g)
FROM generate_series(1, {audit}) g;
"""


def seed_sizes(payments: int) -> dict[str, int]:
    """Row counts per table for a sandbox with ``payments`` payments."""
    customers = max(10, payments // 20)
    return {
        "customers": customers,
        "accounts": max(10, customers * 3 // 2),
        "payments": payments,
        "audit": max(10, payments // 100),
    }


def create_schema(conn: Any) -> None:
    """Create the payments schema on an empty database (source and target alike)."""

    with conn.transaction():
        conn.execute(SCHEMA_DDL)
        # The cutover's marker table, on both sides and replicated (the publication
        # includes the migctl schema), as the DMS task's table mappings should have it.
        conn.execute(MARKER_DDL)


def seed(conn: Any, payments: int) -> dict[str, int]:
    """Fill the source with generated rows; returns the row count of each table."""
    sizes = seed_sizes(payments)
    with conn.transaction():
        conn.execute(SEED_SQL.format(**sizes))
        conn.execute("ANALYZE")
    counts = {}
    for table in TABLES:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        counts[table] = int(row[0])
    return counts
