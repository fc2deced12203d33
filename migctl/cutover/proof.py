"""Step 7, prove the freeze, and the same proof again in the post-checks.

With replication stopped, read the source's WAL through the freeze's slot
(``decoding.py``) from the fence's start mark to now: a change to any table
in the fence's scope means a write got past the fence (a superuser, a role
that owns a table without the DDL guard) and may be missing on the target.
The step fails naming the tables and the count of changes, so the cutover
rolls back before the rollout. The post-checks read again up to the end of
the cutover. The LSN range read is in the step's facts (the journal).
"""

from __future__ import annotations

from migctl.cutover import decoding
from migctl.cutover.context import CutoverContext
from migctl.cutover.fence import FenceNames
from migctl.cutover.model import Facts, StepFailed, StepMemo


def prove(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    names = FenceNames.of(ctx.cutover_id)
    with ctx.source_conn() as conn:
        if decoding.slot_of(conn, names) is None:
            raise StepFailed(
                f"the freeze's replication slot {names.trigger} is gone: nothing proves that "
                "the source took no write since the fence went up"
            )
        changes = decoding.read(conn, names)
    facts = changes.facts()
    if changes.from_lsn is None:
        raise StepFailed(
            f"the fence's start mark is not in slot {names.trigger}: the proof has no start",
            details={"proof": facts},
        )
    breaches = changes.in_scope()
    if breaches:
        total = sum(sum(c.values()) for c in breaches.values())
        raise StepFailed(
            f"{total} change(s) reached the source after the fence went up (LSN "
            f"{changes.from_lsn} to {changes.to_lsn}): {decoding.describe(breaches)}",
            details={"proof": facts},
            hint="a superuser, or a role that got past the fence, wrote to the source; "
            "those rows may be missing on the target",
        )
    ctx.report(
        f"no change reached the fenced tables from LSN {changes.from_lsn} to {changes.to_lsn}",
        {},
    )
    return {"proof": facts}
