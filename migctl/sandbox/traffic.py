"""A small writer that keeps inserting, updating and deleting payments, so CDC has work to do.

It plays an application: the on-premises one (its own process, ``python -m
migctl.sandbox.traffic DSN``, which ``migctl sandbox traffic start|stop``
controls by PID) and, in the controller, the application on ECS
(``writer.py``). Each iteration is one short transaction. Like an
application with a connection pool, it rides out a frozen database (the
cutover's fence refuses its writes with SQLSTATE 25006), a session the
freeze ended, and a database that is away for a while: it counts the
refusals, reconnects and goes on. Every committed payment is written to the
keys file (``+ID`` inserted, ``-ID`` deleted) after its commit, so a test can
tell which rows an application really committed. The loop is bounded by
``--max-seconds`` and stops on SIGTERM after the transaction in flight.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

INSERT = """
WITH p AS (
  INSERT INTO payments (account_id, payment_ref, amount, currency, status, memo, metadata, signature)
  SELECT a.id, gen_random_uuid(), round((random() * 500)::numeric, 4), a.currency, 'pending',
         %s, jsonb_build_object('channel', 'card'), decode(md5(random()::text), 'hex')
  FROM accounts a WHERE a.id = (SELECT 1 + floor(random() * (SELECT max(id) FROM accounts))::bigint)
  RETURNING id, account_id, amount),
l AS (INSERT INTO ledger_entries (payment_id, account_id, direction, amount)
      SELECT id, account_id, 'D', amount FROM p)
SELECT id FROM p
"""
UPDATE = """
UPDATE payments SET status = 'settled', updated_at = now(),
       metadata = metadata || jsonb_build_object('settled_by', %s::text)
WHERE id = (SELECT id FROM payments WHERE status = 'pending' ORDER BY id DESC LIMIT 1)
"""
DELETE = """
DELETE FROM payments
WHERE id = (SELECT max(id) FROM payments WHERE memo = %s AND status = 'pending')
RETURNING id
"""
AUDIT = "INSERT INTO audit_log (actor, action, detail) VALUES (%s, 'write', NULL)"


@dataclass
class TrafficCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    refused: int = 0  # transactions the database refused or lost (frozen, ended, away)


def run(
    connect: Callable[[], Any],
    *,
    interval: float,
    max_seconds: float,
    stop: Callable[[], bool],
    name: str = "traffic",
    keys: TextIO | None = None,
    seed: int | None = None,
) -> TrafficCounts:
    """Write as ``name`` (its memo and actor) until ``stop()`` or ``max_seconds``."""
    import psycopg

    rng = random.Random(seed)  # noqa: S311 - a load generator, not cryptography
    counts = TrafficCounts()
    deadline = time.monotonic() + max_seconds
    conn: Any = None
    while not stop() and time.monotonic() < deadline:
        try:
            if conn is None or conn.closed:
                conn = connect()
            done = _one(conn, rng.random(), name, counts)
        except psycopg.Error:
            counts.refused += 1
            if conn is not None and (conn.closed or conn.broken):
                conn = None
            time.sleep(max(interval, 0.2))
            continue
        if keys is not None and done:
            keys.write(done + "\n")
            keys.flush()
        time.sleep(interval)
    if conn is not None:
        conn.close()
    return counts


def _one(conn: Any, roll: float, name: str, counts: TrafficCounts) -> str | None:
    """One transaction; what it committed, as a keys-file line (None: no payment changed)."""
    line = None
    with conn.transaction():
        if roll < 0.6:
            row = conn.execute(INSERT, (name,)).fetchone()
            line = f"+{row[0]}" if row else None
        elif roll < 0.9:
            conn.execute(UPDATE, (name,))
        else:
            row = conn.execute(DELETE, (name,)).fetchone()
            line = f"-{row[0]}" if row else None
        conn.execute(AUDIT, (name,))
    if roll < 0.6:
        counts.inserts += 1
    elif roll < 0.9:
        counts.updates += 1
    else:
        counts.deletes += 1
    return line


def committed(keys: Path) -> set[int]:
    """The payments a writer committed and did not delete, from its keys file."""
    alive: set[int] = set()
    if not keys.exists():
        return alive
    for line in keys.read_text().split():
        (alive.add if line[0] == "+" else alive.discard)(int(line[1:]))
    return alive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="migctl-sandbox-traffic")
    parser.add_argument("dsn")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--max-seconds", type=float, default=6 * 3600)
    parser.add_argument("--keys", type=Path, help="append each committed payment id here")
    args = parser.parse_args(argv)
    import psycopg

    stopping = [False]

    def on_term(_sig: int, _frame: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def connect() -> Any:
        return psycopg.connect(args.dsn, application_name="migctl-sandbox-traffic")

    keys = open(args.keys, "a") if args.keys else None  # noqa: SIM115 - closed below
    try:
        counts = run(
            connect,
            interval=args.interval,
            max_seconds=args.max_seconds,
            stop=lambda: stopping[0],
            keys=keys,
        )
    finally:
        if keys is not None:
            keys.close()
    print(f"traffic done: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
