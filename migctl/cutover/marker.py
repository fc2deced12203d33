"""Step 3, the marker: a row written on the frozen source and read back on the target.

``CDCLatencySource`` reads 0 on an idle source and metrics come a minute
late, so the proof that CDC has drained is a fresh row: once the marker,
written after the freeze, is on the target, so is everything committed
before it (DMS applies in commit order; with batch apply it may not, which
is one reason step 5 validates every changed row, or everything, anyway).

The table ``migctl.cutover_marker`` must be replicated: the DMS task's table
mappings must select the ``migctl`` schema (preflight fails when they do
not), and with ``TargetTablePrepMode = DO_NOTHING`` it must exist on the
target too. The freeze creates it on either side when it is missing (before
its DDL guard goes up). Marker rows stay: they are the audit trail of every
attempt.

The gate: no write transaction open on the source but migctl's, and no
prepared transaction (``freeze.quiet``); it waits, then fails naming them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from migctl.cutover import fence
from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.errors import CheckFailed

SCHEMA = "migctl"
TABLE = "cutover_marker"
MARKER_DDL = """
CREATE SCHEMA IF NOT EXISTS migctl;
CREATE TABLE IF NOT EXISTS migctl.cutover_marker (
    id          uuid PRIMARY KEY,
    cutover_id  text NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    source_lsn  pg_lsn NOT NULL
);
"""
Connect = Callable[[], AbstractContextManager[Any]]
_EXISTS_SQL = "SELECT to_regclass('migctl.cutover_marker') IS NOT NULL"


def ensure_table(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    created = []
    for side, open_conn in (("source", ctx.source_conn), ("target", ctx.target_conn)):
        with open_conn() as conn:
            if not conn.execute(_EXISTS_SQL).fetchone()[0]:  # type: ignore[index]
                with conn.transaction():
                    conn.execute(MARKER_DDL)
                created.append(side)
    if created:
        ctx.report(
            f"created {SCHEMA}.{TABLE} on the {' and '.join(created)}; the DMS task must "
            "replicate it (a table created after the task started may need a task reload)",
            {"warning": True},
        )
    return {"table_created_on": created}


def gate(ctx: CutoverContext, memo: StepMemo) -> Facts:
    return {**quiet(ctx, memo), **ensure_table(ctx, memo)}


def quiet(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    """No write transaction open on the source but ours, and no prepared transaction."""

    def probe() -> tuple[bool, str]:
        with ctx.source_conn() as conn:
            writers = fence.writers(conn)
            prepared = fence.prepared(conn)
        if prepared:
            return False, "prepared transaction(s) " + ", ".join(p.show() for p in prepared)
        if writers:
            return False, "write transaction(s) open: " + ", ".join(w.show() for w in writers)
        return True, "no open write transaction, no prepared transaction"

    try:
        return {"quiet": ctx.wait_until("the source to be quiet", probe)}
    except CheckFailed as exc:
        raise StepFailed(
            exc.message, hint="end them, or COMMIT/ROLLBACK PREPARED them, then --resume"
        ) from None


def write_and_wait(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    """A marker on the source, waited for on the target: forward replication has drained."""
    return carry(ctx, ctx.source_conn, ctx.target_conn, ("source", "target"), hint=_FORWARD_HINT)


_FORWARD_HINT = (
    "is the migctl schema in the DMS task's table mappings, and is the task applying changes "
    "(migctl dms status)?"
)


def carry(
    ctx: CutoverContext,
    write: Connect,
    read: Connect,
    sides: tuple[str, str],
    *,
    hint: str,
    failed: Callable[[], str | None] = lambda: None,
) -> Facts:
    """Write a marker through ``write`` and wait until ``read`` sees it (``marker_timeout``).

    ``failed`` is asked on every poll: a replication that has failed will never bring the
    marker, so its reason fails the wait at once.
    """
    marker_id = str(uuid.uuid4())
    written_on, read_on = sides
    with write() as conn:
        row = conn.execute(
            "INSERT INTO migctl.cutover_marker (id, cutover_id, source_lsn) "
            "VALUES (%s, %s, pg_current_wal_lsn()) RETURNING source_lsn::text, written_at",
            (marker_id, ctx.cutover_id),
        ).fetchone()
    assert row is not None
    source_lsn, written_at = row
    ctx.report(f"marker {marker_id} written on the {written_on} at LSN {source_lsn}", {})
    started = ctx.timing.clock()

    def probe() -> tuple[bool, str]:
        with read() as conn:
            found = conn.execute(
                "SELECT 1 FROM migctl.cutover_marker WHERE id = %s", (marker_id,)
            ).fetchone()
        if found:
            return True, f"the marker is on the {read_on}"
        broken = failed()
        if broken:
            raise StepFailed(
                f"the marker cannot reach the {read_on}: {broken}",
                details={"marker_id": marker_id, "source_lsn": source_lsn},
            )
        return False, f"not on the {read_on} yet"

    try:
        ctx.wait_until(f"the marker row on the {read_on}", probe, timeout=ctx.timing.marker_timeout)
    except CheckFailed as exc:
        if isinstance(exc, StepFailed):
            raise
        raise StepFailed(
            exc.message, details={"marker_id": marker_id, "source_lsn": source_lsn}, hint=hint
        ) from None
    return {
        "marker_id": marker_id,
        "source_lsn": source_lsn,
        "written_at": written_at.astimezone(dt.UTC).isoformat(),
        "drain_seconds": round(ctx.timing.clock() - started, 3),
    }
