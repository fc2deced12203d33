"""Step 4, validate: the full ``migctl validate`` of the frozen source against the target.

Any data or schema difference, a missing table, or a table that could not
be compared stops the cutover (and rolls back the freeze). Sequences are
expected to be behind here, DMS does not carry them: they are recorded, and
step 6 brings them forward and checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.validate.local import validate as run_validation
from migctl.validate.report import Progress
from migctl.validate.runner import ValidateOptions

if TYPE_CHECKING:
    from migctl.validate.runner import ValidateOptions


def validate_options(ctx: CutoverContext) -> ValidateOptions:
    """``[validate]`` as the cutover runs it (the preflight checks the same selection)."""
    return ValidateOptions.from_settings(ctx.settings.validate)


def validate(ctx: CutoverContext, _memo: StepMemo) -> Facts:

    options = validate_options(ctx)

    def progress(event: Progress) -> None:
        if event.phase == "done" and event.result is not None:
            ctx.report(f"{event.table}: {event.result.status}", {})

    report = run_validation(ctx.source, ctx.target, options, progress=progress)
    differing = [t for t in report.tables if not t.ok]
    facts = {
        "tables": len(report.tables),
        "rows": sum(t.source_rows or 0 for t in report.tables),
        "duration_seconds": report.duration_seconds,
        "sequences_behind": sum(not s.ok for s in report.sequences),
        "sequences": len(report.sequences),
    }
    if differing:
        shown = [
            {
                "table": t.table,
                "schema": t.name[0],
                "name": t.name[1],
                "status": t.status,
                "source_rows": t.source_rows,
                "target_rows": t.target_rows,
                "missing_in_target": t.missing_in_target_count,
                "missing_in_source": t.missing_in_source_count,
                "changed": t.changed_count,
                "schema_differences": list(t.schema_differences),
                "error": t.error,
            }
            for t in differing
        ]
        raise StepFailed(
            f"{len(differing)} table(s) differ between source and target: "
            + ", ".join(f"{t.table} ({t.status})" for t in differing[:10]),
            details={**facts, "differences": shown},
            hint="run 'migctl validate' for the keys",
        )
    return facts
