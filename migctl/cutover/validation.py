"""Step 5, validate: the frozen, drained source against the target.

After a baseline (step 2, ``[cutover] validate = "incremental"``), one round
of ``validate.incremental``: the rows changed on either side since the
baseline caught up, read from each side's WAL, and the rows still differing
then, are compared again; the answer is the one a full comparison would give
now, in time that grows with the changes, not with the data. Otherwise (or
when the baseline step did not run in this cutover) the full ``migctl
validate``. Any data or schema difference, a missing table, or a table that
could not be compared stops the cutover (and rolls back the freeze).
Sequences are expected to be behind here, DMS does not carry them: the full
comparison records them, and step 7 brings them forward and checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.validate import incremental
from migctl.validate.local import validate as run_validation
from migctl.validate.report import Progress, TableResult
from migctl.validate.runner import ValidateOptions

if TYPE_CHECKING:
    from migctl.validate.runner import ValidateOptions

JOURNAL_KEYS = 20  # differing keys journaled per table (the counts are always whole)


def validate_options(ctx: CutoverContext) -> ValidateOptions:
    """``[validate]`` as the cutover runs it (the preflight checks the same selection)."""
    return ValidateOptions.from_settings(ctx.settings.validate)


def validate(ctx: CutoverContext, _memo: StepMemo) -> Facts:

    options = validate_options(ctx)
    state = ctx.done.get("baseline", {}).get("state")
    if state:
        round_ = incremental.recheck(
            ctx.source, ctx.target, options, incremental.IncrementalState.from_dict(state)
        )
        tables = round_.tables
        facts: dict[str, Any] = {
            "mode": "incremental",
            "tables": len(tables),
            **round_facts(round_),
            "duration_seconds": round_.duration_seconds,
        }
    else:

        def progress(event: Progress) -> None:
            if event.phase == "done" and event.result is not None:
                ctx.report(f"{event.table}: {event.result.status}", {})

        report = run_validation(ctx.source, ctx.target, options, progress=progress)
        tables = report.tables
        facts = {
            "mode": "full",
            "tables": len(tables),
            "rows": sum(t.source_rows or 0 for t in tables),
            "duration_seconds": report.duration_seconds,
            "sequences_behind": sum(not s.ok for s in report.sequences),
            "sequences": len(report.sequences),
            "server_versions": {"source": report.source_version, "target": report.target_version},
            "sequence_values": [
                {"sequence": q.sequence, "source": q.source_last_value,
                 "target": q.target_last_value, "status": q.status}
                for q in report.sequences
            ],
        }  # fmt: skip
    facts["compared"] = table_facts(tables)
    differing = [t for t in tables if not t.ok]
    if differing:
        raise StepFailed(
            f"{len(differing)} table(s) differ between source and target: "
            + ", ".join(f"{t.table} ({t.status}{_first_keys(t)})" for t in differing[:10]),
            details={**facts, "differences": table_facts(differing)},
            hint="run 'migctl validate' for the keys",
        )
    return facts


def table_facts(tables: Sequence[TableResult]) -> list[dict[str, Any]]:
    """Each table's verdict as the journal keeps it (and the cutover report shows it): the
    rows (None in a round of incremental validation, which counts none), the digests, and at
    most ``JOURNAL_KEYS`` of the differing keys."""
    return [
        {
            "table": t.table,
            "schema": t.name[0],
            "name": t.name[1],
            "status": t.status,
            "source_rows": t.source_rows,
            "target_rows": t.target_rows,
            "method": t.method,
            "key_columns": list(t.key_columns),
            "source_digest": t.source_digest,
            "target_digest": t.target_digest,
            "missing_in_target": t.missing_in_target_count,
            "missing_in_source": t.missing_in_source_count,
            "changed": t.changed_count,
            "keys": [list(k) for k in (*t.missing_in_target, *t.missing_in_source, *t.changed)][
                :JOURNAL_KEYS
            ],
            "schema_differences": list(t.schema_differences),
            "error": t.error,
        }
        for t in tables
    ]


def round_facts(round_: incremental.Round) -> Facts:
    """A round of incremental validation, as the journal keeps it: what it read, up to which
    LSN on each side, and the servers' versions."""
    return {
        "changes_read": dict(round_.changed),
        "rechecked": round_.rechecked,
        "compared_in_full": dict(round_.whole),
        "still_differing": round_.state.pending_keys,
        "seconds": round_.duration_seconds,
        "read_up_to": dict(round_.state.positions),
        "server_versions": dict(round_.server_versions),
    }


def _first_keys(t: TableResult) -> str:
    keys = (*t.missing_in_target, *t.missing_in_source, *t.changed)[:3]
    shown = ", ".join(str(k[0]) if len(k) == 1 else str(k) for k in keys)
    return f": {shown}" if shown else ""
