"""The sandbox's emulated DMS changes values in transit as DMS does (migctl.sandbox.transit).

Two real clusters, real logical replication (migctl.sandbox.replication), no sandbox
around them: the table sync's COPY and the apply both go through the triggers; the
target's own writes do not. A LOB limit of 1 KB keeps the values small.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from migctl.sandbox import transit
from migctl.sandbox.replication import Replication
from migctl.sandbox.transit import TransitRules
from tests.conftest import PgPair

LIMIT = 1024
TABLE = """
CREATE TABLE probe (
    id int PRIMARY KEY,
    amount numeric,
    exact numeric(18,4),
    memo text,
    label varchar,
    code varchar(4000),
    blob bytea,
    doc jsonb
)
"""
ROW = "INSERT INTO probe VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"


@pytest.fixture
def replication(pg_pair: PgPair) -> Iterator[Replication]:
    pg_pair.execute_both(TABLE)
    pg_pair.execute_both("CREATE TABLE plain (id int PRIMARY KEY, amount numeric(18,4))")
    repl = Replication(pg_pair.source_dsn, pg_pair.target_dsn)
    try:
        yield repl
    finally:
        repl.teardown()


def wait_for(probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return found


def row(conn: psycopg.Connection[Any], key: int) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT amount, exact, octet_length(memo), octet_length(label), octet_length(code), "
        "octet_length(blob), memo FROM probe WHERE id = %s",
        (key,),
    ).fetchone()


def test_copy_and_apply_round_and_truncate_but_the_targets_own_writes_pass_whole(
    pg_pair: PgPair, replication: Replication
) -> None:
    long_memo = "é" * 1000  # 2,000 bytes: the cut falls on a character boundary
    with pg_pair.source_conn() as src:
        src.execute(
            ROW,
            (
                1,
                Decimal("1.12345678"),
                Decimal("1.1234"),
                long_memo,
                "a",
                "c" * 3000,
                b"\x01" * 2000,
                "{}",
            ),
        )
        src.execute(ROW, (2, Decimal(5), None, "short", None, None, None, None))
    replication.start(rules=TransitRules(LIMIT, fail_on_lob_truncation=False))
    with pg_pair.target_conn() as tgt:
        copied = wait_for(lambda: row(tgt, 1))
        # numeric(28,6) rounds; the bounded numeric and varchar(4000) are no LOBs: untouched
        assert copied[:2] == (Decimal("1.123457"), Decimal("1.1234"))
        assert copied[2:6] == (1024, 1, 3000, 1024)
        assert copied[6] == "é" * 512
        assert row(tgt, 2)[:3] == (Decimal(5), None, 5)  # type: ignore[index]

    with pg_pair.source_conn() as src:  # changes, through the apply
        src.execute(ROW, (3, Decimal("2.1234567891"), None, None, "b" * 3000, None, None, None))
        src.execute("UPDATE probe SET memo = repeat('m', 5000) WHERE id = 2")
    with pg_pair.target_conn() as tgt:
        applied = wait_for(lambda: row(tgt, 3))
        assert applied[0] == Decimal("2.123457") and applied[3] == 1024
        wait_for(lambda: row(tgt, 2)[2] == 1024)  # type: ignore[index]
        # The application on the target after go-live: its writes are its own, whole.
        tgt.execute(ROW, (100, Decimal("1.123456789"), None, "x" * 5000, None, None, None, None))
        assert row(tgt, 100)[:3] == (Decimal("1.123456789"), None, 5000)  # type: ignore[index]
        triggers = tgt.execute(
            "SELECT c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s",
            (transit.TRIGGER,),
        ).fetchall()
    assert triggers == [("probe", "R")]  # plain has nothing DMS changes: no trigger

    # A resume with the same rules runs no DDL (the cutover's fence could refuse it).
    replication.stop()
    with pg_pair.target_conn() as tgt:
        assert transit.install(tgt, TransitRules(LIMIT, False), replication.schemas) is False

    # FailTasksOnLobTruncation: the apply refuses the row, naming the table.
    replication.start(rules=TransitRules(LIMIT, fail_on_lob_truncation=True))
    with pg_pair.source_conn() as src:
        src.execute(ROW, (4, None, None, "y" * 5000, None, None, None, None))
    snap = wait_for(lambda: (s := replication.snapshot()).apply_errors and s)
    assert snap.last_error is not None and snap.last_error.table == ("public", "probe")
    assert "over LobMaxSize (1 KB)" in snap.last_error.message
    assert "FailTasksOnLobTruncation" in snap.last_error.message
    with pg_pair.target_conn() as tgt:
        assert row(tgt, 4) is None

    replication.teardown()
    with pg_pair.target_conn() as tgt:
        left = tgt.execute(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = %s), "
            "(SELECT count(*) FROM pg_namespace WHERE nspname = %s)",
            (transit.TRIGGER, transit.SCHEMA),
        ).fetchone()
    assert left == (0, 0)


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("amount", Decimal("1" * 23), "does not fit numeric(28,6)"),
        ("doc", '{"k": "' + "z" * 2000 + '"}', "no longer a document"),
    ],
)
def test_what_cannot_be_carried_is_refused_not_invented(
    pg_pair: PgPair, column: str, value: Any, error: str
) -> None:
    """A session as the apply is (session_replication_role = replica) meets the triggers."""
    pg_pair.execute_both(TABLE)
    with pg_pair.target_conn() as tgt:
        transit.install(tgt, TransitRules(LIMIT, False), ("public",))
        tgt.execute("SET session_replication_role = replica")
        fits = Decimal("1" * 22 + ".1234567")
        tgt.execute("INSERT INTO probe (id, amount) VALUES (1, %s)", (fits,))
        assert row(tgt, 1)[0] == Decimal("1" * 22 + ".123457")  # type: ignore[index]
        with pytest.raises(psycopg.Error, match=re.escape(error)):
            tgt.execute(f"INSERT INTO probe (id, {column}) VALUES (2, %s)", (value,))
        transit.remove(tgt)
