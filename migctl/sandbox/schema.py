"""The sandbox's payments schema, and seed data generated inside the source server.

Customers, accounts, payments and ledger entries, with sequences and foreign
keys; a no-PK audit table; numeric, timestamptz, uuid, jsonb, text and bytea
columns. Rows are generated with ``generate_series`` inside PostgreSQL, so no
data moves over the wire.

Seeding scales to tens of millions of payments (bench/sandbox_seed):

- ids are bigint and explicit (the sequences are set afterwards), and every
  value is derived from its row's id with integer arithmetic and hashes, not
  per-row ``gen_random_uuid()``, ``random()`` or ``md5()``: the same data on
  every run, and a ledger entry needs only its payment's id, so the ledger
  loads beside the payments instead of reading them back;
- the tables load in chunks on a few connections at once;
- the keys are made after the load, under their own names and definitions
  (read from the catalog, as ``create_schema`` made them): the primary keys,
  unique constraints and indexes that no foreign key needs are dropped first.
  As a superuser (the sandbox's case), the foreign keys and the keys they
  reference stay, and the loading sessions skip the foreign-key triggers
  (``session_replication_role = replica``, as a data-only restore does): the
  generated rows reference existing rows by construction. Otherwise (or when
  a seeded table has a trigger of its own, or a foreign key to a table the
  seed does not fill) the foreign keys are dropped too, then added again and
  validated.

The tables stay logged: logical decoding must see every row.
"""

from __future__ import annotations

import os
import string
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

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

SEED_JOBS_MAX = 4  # sessions that load and index at once (default: the cores, up to this)
CHUNK_ROWS = 1_000_000  # the ids one statement of the load covers
# The loading sessions' settings: commits need not wait for their WAL to be flushed, and
# an index build sorts 10M keys in memory (ALTER TABLE ... VALIDATE CONSTRAINT joins with
# this as its work_mem).
SESSION_SETTINGS = ("SET synchronous_commit = off", "SET maintenance_work_mem = '1GB'")
TRUSTED_SETTINGS = ("SET session_replication_role = replica",)  # no foreign-key triggers

_SIGN_BIT = "(-9223372036854775807 - 1)"


def _uuid(n: str, salt: int) -> str:
    """A version-4-shaped uuid from the bigint ``n``: 64 hashed bits (with the version
    nibble), then ``n`` itself in the low 62 bits (variant 10), so that distinct ``n`` give
    distinct uuids. Integer arithmetic and one cast: a third of ``gen_random_uuid()``."""
    return (
        f"(to_hex((hashint8extended({n}, {salt}) & -61441) | 16384 | {_SIGN_BIT})"
        f" || to_hex({n} | {_SIGN_BIT}))::uuid"
    )


# What a payment and its ledger entries share, as functions of the payment's id.
def _account_of(p: str) -> str:
    return f"1 + ({p} * 7919) % $accounts"


def _amount_of(p: str) -> str:  # 0.0000 to 9999.9999, spread by a hash of the id
    return f"abs(hashint8extended({p}, 3) % 100000000) * 0.0001"


def _created_of(p: str) -> str:
    return f"timestamptz '2025-01-01 00:00:00+00' + {p} * interval '977 milliseconds'"


# One statement per table for the ids $lo..$hi (ledger_entries: for the payments $lo..$hi),
# with seed_sizes() for $customers and $accounts. Everything is bigint from the series on:
# g * 7919 passes 2^31 at g = 271,183.
SEED_SQL = {
    "customers": f"""
INSERT INTO customers (id, external_id, name, email, created_at)
SELECT g, {_uuid("g", 1)}, 'customer ' || g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || g || '@example.test' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '13 minutes'
FROM generate_series($lo::bigint, $hi::bigint) g""",
    "accounts": """
INSERT INTO accounts (id, customer_id, iban, currency, balance, opened_at)
SELECT g, 1 + (g - 1) % $customers, 'XX' || lpad(g::text, 20, '0'),
       (ARRAY['EUR','USD','GBP'])[1 + g % 3], (g * 37.1234)::numeric(18,4),
       timestamptz '2024-01-02 00:00:00+00' + g * interval '17 minutes'
FROM generate_series($lo::bigint, $hi::bigint) g""",
    # metadata is {"n": g, "channel": ...}, set into the channel's object (cheaper than
    # jsonb_build_object, which looks up its arguments' types row by row).
    "payments": f"""
INSERT INTO payments (id, account_id, payment_ref, amount, currency, status, memo, metadata,
                      signature, created_at, updated_at)
SELECT g, {_account_of("g")}, {_uuid("g", 2)}, {_amount_of("g")},
       (ARRAY['EUR','USD','GBP'])[1 + g % 3],
       (ARRAY['pending','settled','settled','settled','refunded'])[1 + g % 5],
       CASE WHEN g % 11 = 0 THEN NULL WHEN g % 13 = 0 THEN '' ELSE 'invoice ' || g END,
       jsonb_set((ARRAY['{{"channel": "card"}}', '{{"channel": "sepa"}}',
                        '{{"channel": "wire"}}']::jsonb[])[1 + g % 3], '{{n}}', to_jsonb(g)),
       CASE WHEN g % 5 = 0 THEN NULL
            ELSE int8send(hashint8extended(g, 5)) || int8send(hashint8extended(g, 6)) END,
       ts, ts + interval '1 second' * (g % 600)
FROM generate_series($lo::bigint, $hi::bigint) g,
     LATERAL (SELECT {_created_of("g")}) t(ts)""",
    # Every even payment p has a debit (id p - 1) and a credit (id p) of its amount.
    "ledger_entries": f"""
INSERT INTO ledger_entries (id, payment_id, account_id, direction, amount, booked_at)
SELECT p - d.back, p, {_account_of("p")}, d.direction, {_amount_of("p")}, {_created_of("p")}
FROM generate_series($lo::bigint + $lo % 2, $hi::bigint, 2) p
     CROSS JOIN (VALUES ('D', 1), ('C', 0)) d(direction, back)""",
    "audit_log": """
INSERT INTO audit_log (logged_at, actor, action, detail)
SELECT timestamptz '2025-01-01 00:00:00+00' + g * interval '1 minute',
       'batch', 'seed', jsonb_build_object('step', g)
FROM generate_series($lo::bigint, $hi::bigint) g""",
}


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


def seed(
    conn: Any,
    payments: int,
    *,
    jobs: int | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, int]:
    """Fill the source's empty tables with generated rows; returns the row count of each table
    (the rows its statements inserted: the tables must be empty).

    ``jobs``: sessions working at once, connected as ``conn`` is (default: the machine's
    cores, at most SEED_JOBS_MAX: the server is local). When ``conn`` is in a transaction,
    everything runs in it instead, on ``conn`` alone. ``timings``, when given, receives the
    seconds of each phase: ``load`` (until the last row is in), ``keys`` (from then until
    every key is made) and ``analyze``. On a failure the tables are emptied and their keys
    made again before the error propagates.
    """
    sizes = seed_sizes(payments)
    inside = conn.info.transaction_status != TransactionStatus.IDLE
    started = time.perf_counter()
    # Each transaction on conn ends before the sessions start: conn then holds no lock that
    # they would wait for (in the caller's transaction, these are savepoints).
    with conn.transaction():
        _require_empty(conn)
        trusted = (
            not inside
            and conn.info.parameter_status("is_superuser") == "on"
            and conn.execute(_TRUSTED_SQL, {"tables": list(TABLES)}).fetchone()[0]
        )
        keys = _keys(conn)
        plan = _plan(keys, sizes, trusted=trusted)
        for key in keys.dropped(trusted):
            conn.execute(key.drop())
    try:
        with _sessions(conn, jobs, inside, trusted) as sessions:
            finished, counts = _run_jobs(sessions, plan)
    except BaseException:
        _restore(conn, keys)
        raise
    loaded = max(at for name, at in finished.items() if name.startswith("load"))
    marks = {"load": loaded - started, "keys": max(finished.values()) - loaded}
    start = time.perf_counter()
    with conn.transaction():
        last_id = {
            "customers": sizes["customers"],
            "accounts": sizes["accounts"],
            "payments": payments,
            "ledger_entries": payments // 2 * 2,
        }
        for table, last in last_id.items():  # where nextval() would have left them
            conn.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (table, last))
        conn.execute("ANALYZE")
    marks["analyze"] = time.perf_counter() - start
    if timings is not None:
        timings.update(marks)
    return {table: counts.get(table, 0) for table in TABLES}


@dataclass(frozen=True)
class _Key:
    """A primary key or unique constraint ("c"), another index ("i") or a foreign key ("f")
    of or to a seeded table, as the catalog defines it."""

    kind: str
    table: str
    name: str
    definition: str  # the constraint's definition, or the index's CREATE INDEX statement
    referenced: bool  # a foreign key's referenced key ("c" only)

    def drop(self) -> str:
        if self.kind == "i":
            return f"DROP INDEX {self.name}"
        return f"ALTER TABLE {self.table} DROP CONSTRAINT {self.name}"

    def create(self, *, valid: bool = True) -> str:
        if self.kind == "i":
            return self.definition
        later = "" if valid else " NOT VALID"  # checked later, by validate()
        return f"ALTER TABLE {self.table} ADD CONSTRAINT {self.name} {self.definition}{later}"

    def validate(self) -> str:
        return f"ALTER TABLE {self.table} VALIDATE CONSTRAINT {self.name}"


@dataclass(frozen=True)
class _Keys:
    keys: tuple[_Key, ...]

    def dropped(self, trusted: bool) -> list[_Key]:
        """What the load goes without, foreign keys first (they need the keys they
        reference); trusted, the foreign keys and what they reference stay."""
        if trusted:
            return [k for k in self.keys if k.kind == "i" or (k.kind == "c" and not k.referenced)]
        order = {"f": 0, "c": 1, "i": 2}
        return sorted(self.keys, key=lambda k: order[k.kind])


_KEYS_SQL = """
WITH seeded AS (SELECT to_regclass(t) AS oid FROM unnest(%(tables)s::text[]) t)
SELECT 'c', c.conrelid::regclass::text, quote_ident(c.conname), pg_get_constraintdef(c.oid),
       EXISTS (SELECT FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)
FROM pg_constraint c
WHERE c.contype IN ('p', 'u') AND c.conrelid IN (SELECT oid FROM seeded)
UNION ALL
SELECT 'i', i.indrelid::regclass::text, i.indexrelid::regclass::text,
       pg_get_indexdef(i.indexrelid), false
FROM pg_index i
WHERE i.indrelid IN (SELECT oid FROM seeded) AND NOT i.indisreplident
  AND NOT EXISTS (SELECT FROM pg_constraint c
                  WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x', 'f'))
UNION ALL
SELECT 'f', c.conrelid::regclass::text, quote_ident(c.conname), pg_get_constraintdef(c.oid),
       false
FROM pg_constraint c
WHERE c.contype = 'f'
  AND (c.conrelid IN (SELECT oid FROM seeded) OR c.confrelid IN (SELECT oid FROM seeded))
ORDER BY 1, 2, 3
"""
# Skipping the triggers is safe when they are the foreign keys' alone, and each foreign key
# of a seeded table references a seeded table (whose rows the generator references).
_TRUSTED_SQL = """
SELECT NOT EXISTS (SELECT FROM pg_trigger
                   WHERE tgrelid = ANY(%(tables)s::regclass[]) AND NOT tgisinternal)
   AND NOT EXISTS (SELECT FROM pg_constraint
                   WHERE contype = 'f' AND conrelid = ANY(%(tables)s::regclass[])
                     AND confrelid <> ALL(%(tables)s::regclass[]))
"""
_PRESENT_SQL = """
SELECT quote_ident(conname) FROM pg_constraint WHERE conrelid = ANY(%(tables)s::regclass[])
UNION ALL
SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = ANY(%(tables)s::regclass[])
"""


def _keys(conn: Any) -> _Keys:
    rows = conn.execute(_KEYS_SQL, {"tables": list(TABLES)}).fetchall()
    return _Keys(tuple(_Key(str(k), str(t), str(n), str(d), bool(r)) for k, t, n, d, r in rows))


@dataclass(frozen=True)
class _Job:
    """Statements one session runs in order, once the jobs ``after`` names are done; a load
    job's statements insert into ``table``."""

    name: str
    statements: tuple[str, ...]
    after: frozenset[str] = frozenset()
    table: str | None = None


# Largest first: a session takes the first job that is ready.
_BY_SIZE = ("payments", "ledger_entries", "accounts", "customers", "audit_log")


def _plan(keys: _Keys, sizes: dict[str, int], *, trusted: bool) -> list[_Job]:
    """The load in chunks of CHUNK_ROWS ids, then each table's dropped keys once it is in,
    then (when they were dropped) the foreign keys. A table that keeps a key (one a foreign
    key references) loads in one job, in id order: its index then grows at its right end."""
    dropped = keys.dropped(trusted)
    kept = {_bare(k.table) for k in keys.keys if k.kind == "c" and k not in dropped}
    rows = {
        "customers": sizes["customers"],
        "accounts": sizes["accounts"],
        "payments": sizes["payments"],
        "ledger_entries": sizes["payments"],  # the payments whose entries a chunk makes
        "audit_log": sizes["audit"],
    }
    loads: dict[str, list[_Job]] = {}
    for table in sorted(TABLES, key=_BY_SIZE.index):
        chunks = [
            string.Template(SEED_SQL[table]).substitute(
                lo=lo, hi=min(rows[table], lo + CHUNK_ROWS - 1), **sizes
            )
            for lo in range(1, rows[table] + 1, CHUNK_ROWS)
        ]
        if table in kept:
            loads[table] = [_Job(f"load {table}", tuple(chunks), table=table)]
        else:
            loads[table] = [
                _Job(f"load {table} {i}", (chunk,), table=table) for i, chunk in enumerate(chunks)
            ]
    plan = [job for table in loads for job in loads[table]]
    builds: list[_Job] = []
    for table in sorted({k.table for k in dropped if k.kind != "f"}, key=_rank):
        made = [k.create() for k in dropped if k.table == table and k.kind == "c"]
        made += [k.create() for k in dropped if k.table == table and k.kind == "i"]
        after = frozenset(j.name for j in loads.get(_bare(table), []))
        builds.append(_Job(f"keys {table}", tuple(made), after))
    plan += builds
    foreign = [k for k in dropped if k.kind == "f"]
    if foreign:  # added unchecked (quick), then checked table by table, side by side
        ready = frozenset(j.name for j in plan)
        plan.append(_Job("foreign keys", tuple(k.create(valid=False) for k in foreign), ready))
        for table in sorted({k.table for k in foreign}, key=_rank):
            checks = tuple(k.validate() for k in foreign if k.table == table)
            plan.append(_Job(f"validate {table}", checks, frozenset({"foreign keys"})))
    return plan


def _rank(table: str) -> int:
    name = _bare(table)
    return _BY_SIZE.index(name) if name in _BY_SIZE else len(_BY_SIZE)


def _bare(table: str) -> str:
    """A seeded table's name as TABLES has it (the catalog qualifies it off the search path)."""
    return table.rsplit(".", 1)[-1].strip('"')


def _run_jobs(
    sessions: Sequence[Any], plan: Sequence[_Job]
) -> tuple[dict[str, float], dict[str, int]]:
    """Run the plan on the sessions; returns when each job finished (perf_counter) and the
    rows inserted into each table. The first failure cancels the statements in flight,
    stops every session and is raised."""
    pending = list(plan)
    done: dict[str, float] = {}
    inserted: dict[str, int] = {}
    running = [0]
    failures: list[BaseException] = []
    ready = threading.Condition()

    def take() -> _Job | None:
        with ready:
            while not failures and pending:
                job = next((j for j in pending if j.after <= done.keys()), None)
                if job is not None:
                    pending.remove(job)
                    running[0] += 1
                    return job
                if not running[0]:
                    raise RuntimeError(f"seed plan stuck: {[j.name for j in pending]}")
                ready.wait()
            return None

    def work(session: Any) -> None:
        while (job := take()) is not None:
            rows = 0
            try:
                for statement in job.statements:
                    with session.transaction():
                        rows += max(0, session.execute(statement).rowcount)
            except BaseException as exc:
                with ready:
                    failures.append(exc)
                    running[0] -= 1
                    ready.notify_all()
                for other in sessions:
                    if other is not session:
                        with suppress(psycopg.Error):
                            other.cancel_safe()
                return
            with ready:
                done[job.name] = time.perf_counter()
                if job.table is not None:
                    inserted[job.table] = inserted.get(job.table, 0) + rows
                running[0] -= 1
                ready.notify_all()

    if len(sessions) == 1:
        work(sessions[0])
    else:
        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            futures = [pool.submit(work, s) for s in sessions]
            try:
                for future in futures:
                    future.result()
            except BaseException as exc:  # Ctrl-C: the sessions stop too, not after the plan
                with ready:
                    failures.append(exc)
                    ready.notify_all()
                for session in sessions:
                    with suppress(psycopg.Error):
                        session.cancel_safe()
                raise
    if failures:  # the failure itself rather than the cancellations it caused
        failures.sort(key=lambda e: isinstance(e, psycopg.errors.QueryCanceled))
        raise failures[0]
    return done, inserted


@contextmanager
def _sessions(conn: Any, jobs: int | None, inside: bool, trusted: bool) -> Iterator[list[Any]]:
    """The sessions that run the plan: ``jobs`` new ones connected as ``conn`` is, with
    SESSION_SETTINGS (and TRUSTED_SETTINGS), or ``conn`` alone when it is in a transaction."""
    if inside:
        yield [conn]
        return
    count = max(1, jobs if jobs is not None else min(SEED_JOBS_MAX, os.cpu_count() or 1))
    password = conn.info.password  # in memory only, as libpq keeps it
    dsn = make_conninfo(conn.info.dsn, password=password) if password else conn.info.dsn
    settings = SESSION_SETTINGS + (TRUSTED_SETTINGS if trusted else ())
    sessions: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(count):
            session = psycopg.connect(dsn, autocommit=True, application_name="migctl-sandbox-seed")
            sessions.append(session)
            for setting in settings:
                session.execute(setting)
        yield sessions
    finally:
        for session in sessions:
            session.close()


def _require_empty(conn: Any) -> None:
    for table in TABLES:
        if conn.execute(f"SELECT EXISTS (SELECT FROM {table})").fetchone()[0]:
            raise ValueError(f"seed fills empty tables, and {table} has rows")


def _restore(conn: Any, keys: _Keys) -> None:
    """After a failed seed: empty the tables and make again whatever key is missing."""
    if conn.broken or conn.info.transaction_status == TransactionStatus.INERROR:
        return  # the caller's transaction is lost, and the drops with it
    with suppress(psycopg.Error), conn.transaction():
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        present = {str(row[0]) for row in conn.execute(_PRESENT_SQL, {"tables": list(TABLES)})}
        for key in sorted(keys.keys, key=lambda k: "cif".index(k.kind)):
            if key.name not in present:
                conn.execute(key.create())
