"""Step 2, baseline: validate everything before the freeze, so the freeze rechecks only changes.

First it ANALYZEs the target (DMS leaves it without planner statistics; they
describe how the data is spread, which the last seconds of writes before the
freeze do not change), outside the write freeze. Then, with ``[cutover]
validate = "incremental"`` (the default), it creates a
logical replication slot on each side (``migctl_validate_<id>``), compares
every selected table in full while the application still writes and DMS
replicates (``validate.incremental.begin``), then runs one round over what
changed meanwhile, so that the differences that were only replication lag
converge and the round under the freeze reads only the last seconds of
changes. Nothing is judged here: a difference that stays is the validate
step's to fail, under the freeze. The state the validate step starts from
(each slot's position, the keys still differing, the tables to compare in
full) is in this step's facts.

The slots hold WAL on both sides until they are dropped: by this step's undo
(a rollback), or once the cutover completes. With ``validate = "full"`` the
step does nothing and the validate step compares everything under the freeze.
"""

from __future__ import annotations

import time

from migctl.cutover import decoding
from migctl.cutover.context import CutoverContext
from migctl.cutover.fence import FenceNames
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.cutover.validation import round_facts, table_facts, validate_options
from migctl.validate import incremental

INCREMENTAL = "incremental"
SLOT_PREFIX = "migctl_validate_"


def slot_name(ctx: CutoverContext) -> str:
    return SLOT_PREFIX + FenceNames.of(ctx.cutover_id).suffix


def enabled(ctx: CutoverContext, memo: StepMemo | None = None) -> bool:
    """As recorded before the step's first attempt (a resume keeps it), else from the config."""
    recorded = memo.before.get("validate") if memo is not None else None
    return (recorded or ctx.settings.cutover.validate) == INCREMENTAL


def prepare(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    return {"validate": ctx.settings.cutover.validate, "slot": slot_name(ctx)}


def gate(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """Both sides decode their WAL and this user may make slots there."""
    if not enabled(ctx, memo):
        return {}
    missing = []
    for side, connect in (("source", ctx.source_conn), ("target", ctx.target_conn)):
        with connect() as conn:
            missing += [f"{side}: {m}" for m in decoding.check_privileges(conn)]
    if missing:
        raise StepFailed(
            "incremental validation reads both sides' WAL: " + "; ".join(missing),
            hint='fix it, or set [cutover] validate = "full" (the whole comparison then runs '
            "under the freeze)",
        )
    return {}


def take(ctx: CutoverContext, memo: StepMemo) -> Facts:
    analyzed = analyze(ctx)
    if not enabled(ctx, memo):
        return {"analyze_seconds": analyzed, "mode": "full",
                "note": "[cutover] validate = full: everything is compared under the freeze"}  # fmt: skip
    options = validate_options(ctx)
    slot = str(memo.before.get("slot") or slot_name(ctx))
    first = incremental.begin(ctx.source, ctx.target, slot, options)
    lag = first.state.pending_keys
    ctx.report(
        f"baseline: {len(first.tables)} table(s) compared in {first.duration_seconds:.1f}s "
        f"while the application writes; {lag} row(s) differ (replication lag, or not)",
        {},
    )
    caught_up = incremental.recheck(ctx.source, ctx.target, options, first.state)
    incremental.advance(ctx.source, ctx.target, caught_up.state)
    ctx.report(
        f"caught up: {caught_up.rechecked} row(s) changed since, compared again in "
        f"{caught_up.duration_seconds:.1f}s; {caught_up.state.pending_keys} still differ",
        {},
    )
    return {
        "analyze_seconds": analyzed,
        "mode": INCREMENTAL,
        "tables": len(first.tables),
        "baseline_seconds": first.duration_seconds,
        "differing_at_baseline": lag,
        "server_versions": dict(first.server_versions),
        "compared": table_facts(first.tables),  # in full, while the application wrote
        "caught_up": round_facts(caught_up),
        "state": caught_up.state.to_dict(),
    }


def analyze(ctx: CutoverContext) -> float:
    """ANALYZE the target, before the freeze: DMS leaves it without planner statistics, and
    they describe how the data is spread, which the last seconds of writes do not change."""
    started = time.monotonic()
    with ctx.target_conn() as conn:
        conn.execute("ANALYZE")
    return round(time.monotonic() - started, 3)


def drop_slots(ctx: CutoverContext, memo: StepMemo) -> Facts:
    """The undo, and the release once the cutover completed: the slots hold WAL."""
    slot = memo.before.get("slot")
    if not slot:
        return {"note": "no slot was made"}
    return {"slots_dropped": incremental.drop(ctx.source, ctx.target, str(slot))}


def manual_drop_slots(ctx: CutoverContext, memo: StepMemo) -> str:
    slot = memo.before.get("slot") or slot_name(ctx)
    return (
        f"drop the incremental validation's slot on both databases (it holds WAL): SELECT "
        f"pg_drop_replication_slot('{slot}')"
    )
