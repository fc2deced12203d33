"""A small writer that keeps inserting, updating and deleting payments, so CDC has work to do.

Runs as its own process (``python -m migctl.sandbox.traffic DSN``) so that
``migctl sandbox traffic start|stop`` can control it by PID. Each iteration
is one short transaction; the loop is bounded by ``--max-seconds`` and stops
on SIGTERM after finishing the transaction in flight.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

INSERT = """
WITH p AS (
  INSERT INTO payments (account_id, payment_ref, amount, currency, status, memo, metadata, signature)
  SELECT a.id, gen_random_uuid(), round((random() * 500)::numeric, 4), a.currency, 'pending',
         'traffic', jsonb_build_object('channel', 'card'), decode(md5(random()::text), 'hex')
  FROM accounts a WHERE a.id = (SELECT 1 + floor(random() * (SELECT max(id) FROM accounts))::bigint)
  RETURNING id, account_id, amount)
INSERT INTO ledger_entries (payment_id, account_id, direction, amount)
SELECT id, account_id, 'D', amount FROM p
"""
UPDATE = """
UPDATE payments SET status = 'settled', updated_at = now(),
       metadata = metadata || jsonb_build_object('settled_by', 'traffic')
WHERE id = (SELECT id FROM payments WHERE status = 'pending' ORDER BY id DESC LIMIT 1)
"""
DELETE = """
DELETE FROM payments WHERE id = (SELECT max(id) FROM payments WHERE memo = 'traffic' AND status = 'pending')
"""
AUDIT = "INSERT INTO audit_log (actor, action, detail) VALUES ('traffic', %s, NULL)"


@dataclass
class TrafficCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0


def run(
    conn: Any, *, interval: float, max_seconds: float, stop: list[bool], seed: int | None = None
) -> TrafficCounts:
    """Write until ``stop[0]`` is set or ``max_seconds`` pass; returns what was done."""
    rng = random.Random(seed)  # noqa: S311 - a load generator, not cryptography
    counts = TrafficCounts()
    deadline = time.monotonic() + max_seconds
    while not stop[0] and time.monotonic() < deadline:
        roll = rng.random()
        with conn.transaction():
            if roll < 0.6:
                conn.execute(INSERT)
                counts.inserts += 1
            elif roll < 0.9:
                conn.execute(UPDATE)
                counts.updates += 1
            else:
                conn.execute(DELETE)
                counts.deletes += 1
            conn.execute(AUDIT, ("write",))
        time.sleep(interval)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="migctl-sandbox-traffic")
    parser.add_argument("dsn")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--max-seconds", type=float, default=6 * 3600)
    args = parser.parse_args(argv)
    import psycopg

    stop = [False]

    def on_term(_sig: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        with psycopg.connect(args.dsn, application_name="migctl-sandbox-traffic") as conn:
            counts = run(conn, interval=args.interval, max_seconds=args.max_seconds, stop=stop)
    except psycopg.Error as exc:
        # The source went read-only (a cutover froze it) or away: stop quietly, say why.
        print(f"traffic stopped: {exc}".strip(), file=sys.stderr)
        return 1
    print(f"traffic done: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
