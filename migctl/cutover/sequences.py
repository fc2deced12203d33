"""Step 6, sync sequences: DMS does not carry them, so the target's would hand out used values.

Each target sequence is set to ``max(source last value, max(owning column))
+ margin`` (``[cutover] sequence_margin``; descending sequences the other
way). It never moves a sequence back: one already at or past that value stays, so
running the step twice adds the margin once. The check is validate's own
sequence comparison: no target sequence may be behind or missing.

Which sequences: those ``migctl validate`` compares (``[validate]`` schemas,
tables and exclude), read through validate's catalog and sequence code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.validate.catalog import SequenceInfo, read_catalog, select_tables
from migctl.validate.report import SequenceResult
from migctl.validate.sequences import compare_sequences, select_sequences
from migctl.validate.session import Side


def compare(
    ctx: CutoverContext, *, reverse: bool = False
) -> list[tuple[SequenceInfo, SequenceResult]]:
    """Every selected sequence with validate's verdict on it (match, ahead, behind, missing).

    ``reverse``: the target is the side to follow and the source the side to move (the
    way back after go-live, ``fallback.py``)."""

    conf = ctx.settings.validate
    source = Side(ctx.source.dsn, "source")
    target = Side(ctx.target.dsn, "target")
    if reverse:
        source, target = Side(ctx.target.dsn, "target"), Side(ctx.source.dsn, "source")
    try:
        source_catalog = read_catalog(source.conn, conf.schemas)
        target_catalog = read_catalog(target.conn, conf.schemas)
        names = select_tables(
            source_catalog, target_catalog, conf.schemas, conf.tables, conf.exclude
        )
        chosen = select_sequences(source_catalog, names, conf.tables, conf.exclude)
        results = compare_sequences(source, target, source_catalog, target_catalog, chosen)
    finally:
        source.close()
        target.close()
    return list(zip(chosen, results, strict=True))


def used(last_value: int, is_called: bool, increment: int) -> int:
    """The last value handed out (validate's rule: an uncalled sequence hands out last_value next)."""
    return last_value if is_called else last_value - increment


def wanted_value(result: SequenceResult, margin: int) -> int:
    """max(source used, column extreme) + margin, in the sequence's direction."""
    assert result.source_last_value is not None
    sign = 1 if result.increment > 0 else -1
    required = sign * used(result.source_last_value, result.source_is_called, result.increment)
    if result.column_max is not None:
        required = max(required, sign * result.column_max)
    return sign * (required + margin)


def sync(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    return move(ctx)


def move(ctx: CutoverContext, *, reverse: bool = False) -> Facts:
    """Move the followed side's sequences past the other's (the target's, or with ``reverse``
    the source's), never back."""
    from psycopg import sql

    margin = ctx.settings.cutover.sequence_margin
    pairs = compare(ctx, reverse=reverse)
    moved = "source" if reverse else "target"
    missing = [r.sequence for _, r in pairs if r.target_last_value is None]
    if missing:
        raise StepFailed(
            f"{len(missing)} sequence(s) missing on the {moved}: {', '.join(missing[:10])}",
            details={"missing": missing},
        )
    synced: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []  # every pair, before and after (the report shows them)
    with ctx.source_conn() if reverse else ctx.target_conn() as conn:
        for info, result in pairs:
            assert result.target_last_value is not None
            sign = 1 if result.increment > 0 else -1
            wanted = wanted_value(result, margin)
            have = used(result.target_last_value, result.target_is_called, result.increment)
            leader = used(result.source_last_value or 0, result.source_is_called, result.increment)
            values.append({"sequence": result.sequence, "leader": leader, "before": have,
                           "after": max(have, wanted, key=lambda v: sign * v)})  # fmt: skip
            if sign * have >= sign * wanted:
                continue
            name = sql.Identifier(info.schema, info.name).as_string(conn)
            conn.execute("SELECT setval(%s::regclass, %s, true)", (name, wanted))
            synced.append({"sequence": result.sequence, "from": have, "to": wanted})
    if synced:
        ctx.report(f"set {len(synced)} {moved} sequence(s) to their high-water mark + {margin}", {})
    return {"margin": margin, "sequences": len(pairs), "synced": synced, "values": values}


def check(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    return {"sequences_ahead": ensure_none_behind(compare(ctx))}


def ensure_none_behind(pairs: Sequence[tuple[SequenceInfo, SequenceResult]]) -> int:
    behind = [r for _, r in pairs if not r.ok]
    if behind:
        raise StepFailed(
            f"{len(behind)} target sequence(s) still behind: "
            + ", ".join(f"{r.sequence} ({r.status})" for r in behind[:10]),
            details={"behind": [r.sequence for r in behind]},
        )
    return len(pairs)
