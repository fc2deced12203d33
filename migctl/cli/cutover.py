"""`migctl cutover`: run the runbook; `plan`; `status`; `rollback`; `finalize`."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from migctl.cli.prompt import interactive
from migctl.cli.state import AppState, state
from migctl.errors import OperationalError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from migctl.cutover.context import CutoverContext
    from migctl.cutover.journal import Journal
    from migctl.cutover.lock import Lock
    from migctl.render.cutover import CutoverView

# The group's help is the callback's docstring (the default invocation's), so no help= here.
cutover_app = typer.Typer(no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.add_typer(cutover_app, name="cutover")


YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Do not ask before the rollout; confirms freeze_strategy = 'none'."
    ),
]
YesRollbackOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask before undoing the cutover's steps.")
]
YesFinalizeOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask before closing the way back.")
]
BreakLockOpt = Annotated[
    bool,
    typer.Option(
        "--break-lock", help="Remove the lock of a cutover that died (it is shown first)."
    ),
]


@cutover_app.callback(invoke_without_command=True)
def cutover(
    ctx: typer.Context,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the cutover from its first unfinished step.")
    ] = False,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Stop after this step (e.g. validate), for staged cutovers."),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="The image to roll out [config: cutover.image].")
    ] = None,
    yes: YesOpt = False,
    break_lock: BreakLockOpt = False,
    new: Annotated[
        bool,
        typer.Option(
            "--new", help="Start a cutover even though the latest one completed (deliberately)."
        ),
    ] = False,
) -> None:
    """Run the cutover runbook: preflight, freeze, marker, validate, stop DMS, sequences, proof, way back, rollout, post-checks.

    Every step's start and end is journaled (.migctl/cutover-<env>.jsonl or
    [cutover] journal, s3:// too); one cutover per environment holds the lock.
    It asks before the rollout, the point of no return, unless --yes. On a
    failure the steps done are undone in reverse. After a completed cutover
    it refuses to start another unless --new. Exit 0 completed (or stopped
    by --until), 1 a gate not met before any change or not confirmed, 2 bad
    input or another cutover in the journal's way, 3 AWS or a database
    failed before any change, the lock is held or the journal unreadable, 4
    failed and rolled back, 5 the rollback failed too (state and manual
    steps printed), 130 interrupted by Ctrl-C (where things stand and the
    next command printed). See docs/runbook.md.

    Example: migctl cutover --until validate --yes
    """
    if ctx.invoked_subcommand is not None:
        given = [
            name
            for name, value in (
                ("--resume", resume),
                ("--until", until),
                ("--image", image),
                ("--yes", yes),
                ("--break-lock", break_lock),
                ("--new", new),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)}: options of 'migctl cutover', "
                f"not of 'cutover {ctx.invoked_subcommand}' (put them after it)"
            )
        return
    from migctl.cutover.result import RunOptions
    from migctl.cutover.runbook import run_cutover

    app_state = state(ctx)
    cut, journal, lock = _open(app_state)
    options = RunOptions(
        resume=resume, until=until, yes=yes, break_lock=break_lock, image=image, new=new
    )
    with _view(app_state) as view:
        result = run_cutover(cut, journal, lock, options, **_callbacks(app_state, view, yes=yes))
    _finish(app_state, result)


@cutover_app.command("plan")
def plan(
    ctx: typer.Context,
    details: Annotated[
        bool, typer.Option("--details", help="Each step's gate, action, check and undo in full.")
    ] = False,
) -> None:
    """Print the runbook's steps and where the journal stands; --details adds the gates.

    One line a step (it fits a screen); --details shows each step's gate,
    action, check and undo in full (JSON always has them). Reads the
    configuration, the journal and the lock; changes nothing. Exit 0.

    Example: migctl cutover plan
    """
    from migctl.cutover.overview import plan_cutover
    from migctl.cutover.store import open_store
    from migctl.render.cutover import render_plan

    app_state = state(ctx)
    journal, lock = open_store(app_state.settings, app_state.aws)
    render_plan(app_state.out, plan_cutover(app_state.settings, journal, lock), details=details)


@cutover_app.command("status")
def status(ctx: typer.Context) -> None:
    """Show the latest cutover (its steps, the write freeze) and every cutover the journal holds.

    Reads the journal and the lock; changes nothing. Exit 0, or 3 when the
    journal cannot be read (it is never taken for "no cutover yet").

    Example: migctl cutover status
    """
    from migctl.cutover.overview import cutover_overview
    from migctl.cutover.store import open_store
    from migctl.render.cutover import render_status

    app_state = state(ctx)
    journal, lock = open_store(app_state.settings, app_state.aws)
    render_status(app_state.out, cutover_overview(journal, lock))


@cutover_app.command("report")
def report(
    ctx: typer.Context,
    cutover_id: Annotated[
        str | None,
        typer.Option(
            "--cutover",
            help="The cutover to report (an id from 'cutover status'); default: the latest.",
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="html (one self-contained page), md (for a ticket) or json (the data)."
        ),
    ] = "html",
    out_path: Annotated[
        str | None,
        typer.Option(
            "--out", help="Where to write it; '-' for stdout. Default: ./cutover-<id>.<format>."
        ),
    ] = None,
    journal: Annotated[
        str | None,
        typer.Option(
            "--journal",
            help="Read this journal (a path or s3://BUCKET/KEY) instead of [cutover] journal.",
        ),
    ] = None,
) -> None:
    """Write the evidence of one cutover, from its journal alone: steps, freeze, validation, rollout.

    HTML (default) is one page with no request to anything (inline CSS and
    SVG: a timeline of the steps and undos with the write freeze shaded);
    md is the same facts for a ticket; json the report's data (docs/report.md).
    It reads only the journal, so it works after the fact and on another
    machine, for completed, rolled-back and failed cutovers alike. Exit 0
    written (whatever the cutover's outcome), 2 no such cutover in the
    journal, 3 the journal cannot be read or the file cannot be written.

    Example: migctl cutover report --format md --out cutover.md
    """
    from migctl.cutover.evidence import build
    from migctl.cutover.store import open_store
    from migctl.render.report import FORMATS, render_written, report_json, to_markdown
    from migctl.render.report_html import to_html

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    app_state = state(ctx)
    settings = app_state.settings
    if journal:
        settings = replace(settings, cutover=replace(settings.cutover, journal=journal))
    store, _ = open_store(settings, app_state.aws)
    evidence = build(store.read(), journal=store.location, cutover_id=cutover_id)
    text = {"html": to_html, "md": to_markdown, "json": report_json}[fmt](evidence)
    target = out_path or f"cutover-{evidence.cutover_id}.{fmt}"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        target = str(_write(Path(target), text))
    render_written(
        app_state.out,
        {"path": target, "format": fmt, "cutover_id": evidence.cutover_id,
         "outcome": evidence.outcome, "exit_code": evidence.exit_code},
    )  # fmt: skip


@cutover_app.command("rollback")
def rollback(
    ctx: typer.Context,
    yes: YesRollbackOpt = False,
    break_lock: BreakLockOpt = False,
    cutover_id: Annotated[
        str | None,
        typer.Option(
            "--cutover",
            help="The cutover to roll back (an id from 'cutover status'); default: the latest.",
        ),
    ] = None,
) -> None:
    """Undo a cutover's steps in reverse: writes carried back, ECS back, the source's fence down.

    The latest cutover, or --cutover ID (refused while a later one is open).
    Asks first unless --yes. Journaled like the run. Exit 4 when the rollback
    completes, 5 when it fails (the state and what a person must do are
    printed; run it again once that is done), 2 when there is nothing to roll
    back, 130 when interrupted by Ctrl-C.

    Example: migctl cutover rollback --yes
    """
    from migctl.cutover.rollback import rollback_cutover

    app_state = state(ctx)
    cut, journal, lock = _open(app_state)
    with _view(app_state) as view:
        result = rollback_cutover(
            cut,
            journal,
            lock,
            break_lock=break_lock,
            cutover_id=cutover_id,
            **_callbacks(app_state, view, yes=yes),
        )
    _finish(app_state, result)


@cutover_app.command("finalize")
def finalize(
    ctx: typer.Context, yes: YesFinalizeOpt = False, break_lock: BreakLockOpt = False
) -> None:
    """End the way back after a completed cutover: stop the reverse replication, drop its slot.

    The source stays fenced against every role, read-only for good; the
    cutover is closed (rollback refuses it from then on). Asks first unless
    --yes. Journaled. Exit 0 finalized, 1 when the reverse task does not
    stop, 2 when the latest cutover is not completed, 3 when AWS or a
    database failed (run it again: each part is idempotent). See
    docs/fallback.md.

    Example: migctl cutover finalize --yes
    """
    from migctl.cutover.finalize import finalize_cutover

    app_state = state(ctx)
    cut, journal, lock = _open(app_state)
    with _view(app_state) as view:
        result = finalize_cutover(
            cut, journal, lock, break_lock=break_lock, **_callbacks(app_state, view, yes=yes)
        )
    _finish(app_state, result)


def _open(app_state: AppState) -> tuple[CutoverContext, Journal, Lock]:
    from migctl.cutover.context import build_context
    from migctl.cutover.store import open_store

    journal, lock = open_store(app_state.settings, app_state.aws)
    return build_context(app_state.settings, app_state.aws), journal, lock


def _view(app_state: AppState) -> CutoverView:
    from migctl.cutover.steps import STEPS
    from migctl.render.cutover import CutoverView

    return CutoverView(app_state.out, STEPS)


def _callbacks(app_state: AppState, view: CutoverView, *, yes: bool) -> dict[str, Any]:
    from migctl.cutover.notify import Notifier, topic_for

    topic = topic_for(app_state.settings)
    return {
        "notifier": Notifier(app_state.aws.client("sns") if topic else None, topic),
        "on_event": view.event,
        "confirm": None if yes else _asker(view),
        "interactive": interactive(),
    }


def _asker(view: CutoverView) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        with view.paused():
            return typer.confirm(question, default=False, err=True)

    return ask


def _finish(app_state: AppState, result: object) -> None:
    from migctl.cutover.result import CutoverResult
    from migctl.render.cutover import render_result

    assert isinstance(result, CutoverResult)
    render_result(app_state.out, result)
    raise typer.Exit(result.exit_code)


def _write(path: Path, text: str) -> Path:
    """Write whole or not at all (a temporary file beside it, then renamed); the absolute path."""
    path = path.expanduser().absolute()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OperationalError(f"cannot write {path}: {exc.strerror}") from None
    return path
