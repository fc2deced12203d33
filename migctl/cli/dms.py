"""`migctl dms lint | start | status | watch | stop`: check, run DMS and watch its cutover gates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from migctl.cli.options import at_least
from migctl.cli.prompt import confirm_or_refuse
from migctl.cli.state import AppState, state

if TYPE_CHECKING:
    from migctl.dms.control import ControlPlan
    from migctl.dms.lint import LintReport
    from migctl.dms.task import TaskRef

dms_app = typer.Typer(
    name="dms",
    help="Start, inspect, watch and stop the DMS replication task (see docs/dms.md).",
    no_args_is_help=True,
)

TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="Task name, ARN or ARN resource id "
        "[config: dms.task; else stack output dmsReplicationTaskArn].",
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="Source DSN, to lint [config: source].")
]
SourceSecretOption = Annotated[
    str | None,
    typer.Option("--source-secret", help="Secrets Manager ARN holding the source credentials."),
]
MaxRowsOption = Annotated[
    int | None,
    typer.Option(
        "--max-rows",
        min=at_least("dms", "lint_max_rows"),
        help="Rows the lint reads per table at most; a larger table is sampled "
        "[config: dms.lint_max_rows; 1000000].",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(dms_app)


def _resolve(ctx: typer.Context, task: str | None) -> tuple[AppState, TaskRef]:
    from migctl.config import overridden
    from migctl.dms.task import resolve_task
    from migctl.infra.outputs import resolve

    app_state = state(ctx)
    settings = overridden(app_state.settings, "dms", task=task)
    value = resolve(
        settings,
        settings.dms.task,
        "dmsReplicationTaskArn",
        what="DMS replication task",
        flag="--task",
    )
    ref = resolve_task(
        app_state.aws.client("dms"), value, instance_identifier=settings.dms.instance
    )
    return app_state, ref


def _reverse(app_state: AppState) -> TaskRef | None:
    """The way back's task, when one is defined ([cutover] reverse_task or the stack output
    dmsReverseTaskArn) and the cutover uses it; None otherwise."""
    from migctl.dms.task import resolve_task
    from migctl.infra.outputs import load_cached_outputs

    conf = app_state.settings.cutover
    if conf.fallback != "reverse-replication":
        return None
    value = conf.reverse_task or load_cached_outputs(app_state.settings).get("dmsReverseTaskArn")
    if not isinstance(value, str) or not value:
        return None
    return resolve_task(app_state.aws.client("dms"), value)


def _confirmer(yes: bool) -> Callable[[ControlPlan], bool]:
    def confirm(plan: ControlPlan) -> bool:
        if yes:
            return True
        return confirm_or_refuse(
            f"{plan.describe()}?",
            refusal=f"refusing to {plan.describe()} without confirmation",
        )

    return confirm


def _run_lint(
    app_state: AppState,
    ref: TaskRef,
    *,
    source: str | None,
    source_secret: str | None,
    max_rows: int | None,
) -> LintReport:
    """Resolve the source like `validate` does, and lint the task against it."""
    from migctl.config import overridden
    from migctl.db import connect, resolve_database
    from migctl.dms.lint import LintOptions, lint_task

    settings = overridden(app_state.settings, "dms", lint_max_rows=max_rows)
    database = resolve_database(
        settings.source, label="source", aws=app_state.aws, dsn=source, secret_arn=source_secret
    )
    conf = settings.dms
    options = LintOptions(
        max_rows=conf.lint_max_rows,
        statement_timeout_seconds=conf.lint_statement_timeout_seconds,
        transaction_age_seconds=conf.lint_transaction_age_seconds,
    )
    with connect(database, application_name="migctl-lint", autocommit=True) as conn:
        return lint_task(app_state.aws.client("dms"), conn, ref, options)


@dms_app.command("lint")
def lint(
    ctx: typer.Context,
    task: TaskOption = None,
    source: SourceOption = None,
    source_secret: SourceSecretOption = None,
    max_rows: MaxRowsOption = None,
) -> None:
    """What DMS would lose or change, PostgreSQL to PostgreSQL, found before it runs.

    Reads the task's LOB settings and table mappings, its source endpoint's
    FailTasksOnLobTruncation and MapUnboundedNumericAsString, the source's
    catalog and replication readiness, and (bounded by --max-rows per table)
    the data of unbounded numeric and LOB columns. Each finding has a
    severity (error: data would be lost or changed; warning: a decision to
    make), the table and column, the evidence, the fix and the AWS page it
    rests on (docs/dms.md lists the checks). Read-only.

    Exit 0 without an error finding (warnings allowed), 1 with one, 2 for an
    unknown task or a bad DSN, 3 when the source or AWS cannot be reached.
    JSON: {"ok", "errors", "warnings", "tables_checked", "task" {...},
    "source" {...}, "max_rows", "findings" [{"check", "severity", "table",
    "column", "evidence", "fix", "scan", "reference"}]}.

    Example: migctl dms lint --source postgresql://dms@db.internal/payments --output json
    """
    from migctl.render.lint import render_lint

    app_state, ref = _resolve(ctx, task)
    report = _run_lint(
        app_state, ref, source=source, source_secret=source_secret, max_rows=max_rows
    )
    render_lint(app_state.out, report)
    raise typer.Exit(report.exit_code)


def _lint_gate(
    app_state: AppState,
    ref: TaskRef,
    *,
    accept: bool,
    source: str | None,
    source_secret: str | None,
    max_rows: int | None,
) -> None:
    """`dms start`'s gate: refuse (exit 1) on an error finding unless the risks are accepted."""
    from migctl.errors import CheckFailed, ConfigError
    from migctl.render.lint import finding_json, print_findings

    out = app_state.out
    try:
        report = _run_lint(
            app_state, ref, source=source, source_secret=source_secret, max_rows=max_rows
        )
    except ConfigError as exc:
        if not accept:
            raise ConfigError(
                f"dms start lints the source first: {exc.message}",
                hint="give --source, --source-secret or [source]; or --accept-lint-risks to "
                "start without the lint",
            ) from None
        out.warn(f"not linted ({exc.message}): starting anyway (--accept-lint-risks)")
        return
    if out.json:
        out.event("lint", ok=report.ok, findings=[finding_json(f) for f in report.findings])
    elif report.findings:
        print_findings(out, report, console=out.progress)
    if report.ok:
        out.note(f"lint: {report.summary()}")
        return
    if not accept:
        raise CheckFailed(
            f"refusing to start {ref.identifier}: the lint found {report.summary()}",
            hint="fix them (migctl dms lint), or pass --accept-lint-risks",
        )
    out.warn(f"starting despite {report.summary()} (--accept-lint-risks)")


@dms_app.command("start")
def start(
    ctx: typer.Context,
    task: TaskOption = None,
    start_type: Annotated[
        str,
        typer.Option(
            "--type",
            help="start (first run: start-replication), resume (resume-processing) "
            "or reload (reload-target).",
        ),
    ] = "start",
    cdc_stop_position: Annotated[
        str | None,
        typer.Option(
            "--cdc-stop-position",
            help="Stop CDC here: 'server_time:2024-01-01T12:00:00', 'commit_time:...', a DMS "
            "checkpoint ('checkpoint:V1#...') or a PostgreSQL LSN ('0/16B3748').",
        ),
    ] = None,
    yes: YesOption = False,
    accept_lint_risks: Annotated[
        bool,
        typer.Option(
            "--accept-lint-risks",
            help="Start even when `dms lint` finds errors (or cannot reach the source).",
        ),
    ] = False,
    source: SourceOption = None,
    source_secret: SourceSecretOption = None,
    max_rows: MaxRowsOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for 'running'.")
    ] = 600.0,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds between polls.")
    ] = 10.0,
) -> None:
    """Start the task and wait until it is running (polling; not the botocore waiter).

    --type start and reload run `migctl dms lint` first and refuse (exit 1)
    on an error finding unless --accept-lint-risks (exit 2 when no source is
    given: --source, --source-secret or [source]). resume is not linted: the
    data was loaded already.
    Refuses (exit 2) --type start on a task that has run before (use resume),
    resume/reload on a task that never ran, and any start without --yes when
    there is no terminal to ask on. Exit 0 when running (or a full-load-only
    task finished), 1 when it failed, timed out or was not confirmed.
    JSON: lines {"event":"lint", "ok", "findings"} (start and reload),
    {"event":"status",...}, then {"event":"result", "action",
    "outcome", "ok", "reason", "start_type", "previous_status",
    "recovery_checkpoint", "polls", "elapsed_seconds", "task"}.

    Example: migctl dms start --type resume --yes --timeout 900
    """
    from migctl.dms.control import check_position, start_task
    from migctl.render.dms import ControlProgress

    if cdc_stop_position is not None:  # bad input is said before AWS is asked anything
        cdc_stop_position = check_position(cdc_stop_position)
    app_state, ref = _resolve(ctx, task)
    if start_type in ("start", "reload"):
        from migctl.dms.control import plan_start
        from migctl.dms.task import describe_task

        # What start_task would refuse (exit 2) is refused before the lint reads anything.
        plan_start(describe_task(app_state.aws.client("dms"), ref.arn), start_type)
        _lint_gate(
            app_state,
            ref,
            accept=accept_lint_risks,
            source=source,
            source_secret=source_secret,
            max_rows=max_rows,
        )
    progress = ControlProgress(app_state.out)
    result = start_task(
        app_state.aws.client("dms"),
        ref,
        kind=start_type,
        cdc_stop_position=cdc_stop_position,
        confirm=_confirmer(yes),
        timeout=timeout,
        interval=interval,
        on_poll=progress,
    )
    progress.result(ref, result)
    raise typer.Exit(0 if result.ok else 1)


@dms_app.command("status")
def status(
    ctx: typer.Context,
    task: TaskOption = None,
    minutes: Annotated[
        float, typer.Option("--minutes", min=1, help="CDC metrics over the last N minutes.")
    ] = 15.0,
) -> None:
    """Snapshot of the task, every table's statistics and the CDC metrics.

    Without --task it shows the way back's reverse task too, when one is
    defined ([cutover] reverse_task or the stack output dmsReverseTaskArn),
    under the JSON key "reverse" (the same shape; null when none). Exit 0
    when healthy; 1 when a task failed, a table is in error, or validation
    has failed or suspended records, in either direction. Phases: not-running,
    starting, full-load, cdc, stopped, failed. A metric with no datapoints is
    reported as such (JSON null with "datapoints": 0), never as 0.
    JSON keys: healthy, problems[], task {arn, identifier, resource_id,
    instance_identifier, migration_type, status, phase, stop_reason,
    last_failure_message, recovery_checkpoint, cdc_stop_position, started_at,
    full_load_percent, tables_loaded, tables_loading, tables_queued,
    tables_errored, elapsed_seconds, fresh_start_date, start_date, stop_date,
    full_load_start_date, full_load_finish_date}, tables[] {schema, table,
    state, full_load_rows, full_load_error_rows, inserts, updates, deletes,
    ddls, validation_state, validation_failed_records,
    validation_pending_records, validation_suspended_records,
    last_updated_at} (null when unavailable, see tables_error), cdc
    {window_start, window_end, period_seconds, statistic, dimensions,
    datapoints, latency_source_seconds, latency_target_seconds,
    incoming_changes: {latest, latest_at, maximum, datapoints}}.

    Example: migctl --output json dms status --minutes 30
    """
    from migctl.dms.task import task_status
    from migctl.render.dms import render_status

    app_state, ref = _resolve(ctx, task)
    dms, cloudwatch = app_state.aws.client("dms"), app_state.aws.client("cloudwatch")
    period = app_state.settings.dms.metric_period_seconds
    report = task_status(dms, cloudwatch, ref, minutes=minutes, period_seconds=period)
    back = None if task else _reverse(app_state)
    if back is not None and back.arn != ref.arn:
        reverse = task_status(dms, cloudwatch, back, minutes=minutes, period_seconds=period)
        report = dataclasses.replace(report, reverse=reverse)
    render_status(app_state.out, report)
    raise typer.Exit(0 if report.healthy else 1)


@dms_app.command("watch")
def watch(
    ctx: typer.Context,
    task: TaskOption = None,
    until: Annotated[str, typer.Option("--until", help="full-load or cdc-ready.")] = "cdc-ready",
    max_latency: Annotated[
        float | None,
        typer.Option(
            "--max-latency",
            min=at_least("dms", "max_latency_seconds"),
            help="cdc-ready: CDCLatencyTarget ceiling, s [config: dms.max_latency_seconds; 5].",
        ),
    ] = None,
    stable_for: Annotated[
        int | None,
        typer.Option(
            "--stable-for",
            min=at_least("dms", "stable_for"),
            help="cdc-ready: consecutive datapoints needed [config: dms.stable_for; 3].",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds before giving up.")
    ] = 3600.0,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds between polls.")
    ] = 15.0,
    table_stats_every: Annotated[
        int,
        typer.Option(
            "--table-stats-every",
            min=1,
            help="Read table statistics every N polls (and on count changes).",
        ),
    ] = 5,
) -> None:
    """Live view until the full load is done or CDC is ready; exit 0 reached, 1 failed or timed out.

    cdc-ready: phase cdc, no problem `dms status` would report, and
    CDCLatencyTarget <= --max-latency and CDCIncomingChanges = 0 for
    --stable-for consecutive datapoints (the newest starting at most 3 periods
    ago). Without --task, the way back's reverse task is watched beside when
    one is defined (JSON key "reverse"); a problem there fails the watch
    too. Each poll costs one
    describe_replication_tasks and one get_metric_data call; throttling slows
    the polls down instead of failing. JSON: {"event":"state", polls,
    elapsed_seconds, next_poll_seconds, throttled, ready, stable_datapoints,
    needed, waiting_for, task, table_states, cdc} on each change,
    {"event":"throttled", message, polls}, and last {"event":"result", until,
    reached, outcome (reached|failed|timed-out), reason, ..., tables}.

    Example: migctl dms watch --until cdc-ready --max-latency 5 --stable-for 3 --timeout 7200
    """
    from migctl.config import overridden
    from migctl.dms.watch import watch_task
    from migctl.render.dms import WatchView

    app_state, ref = _resolve(ctx, task)
    dms = overridden(
        app_state.settings, "dms", max_latency_seconds=max_latency, stable_for=stable_for
    ).dms
    with WatchView(app_state.out, ref, until) as view:
        result = watch_task(
            app_state.aws.client("dms"),
            app_state.aws.client("cloudwatch"),
            ref,
            until=until,
            timeout=timeout,
            interval=interval,
            max_latency_seconds=dms.max_latency_seconds,
            stable_for=dms.stable_for,
            period_seconds=dms.metric_period_seconds,
            table_stats_every=table_stats_every,
            reverse=None if task else _reverse(app_state),
            on_update=view.update,
        )
    view.result(result)
    raise typer.Exit(0 if result.reached else 1)


@dms_app.command("stop")
def stop(
    ctx: typer.Context,
    task: TaskOption = None,
    yes: YesOption = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for 'stopped'.")
    ] = 600.0,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds between polls.")
    ] = 10.0,
) -> None:
    """Stop the task, wait until it is stopped, and print its RecoveryCheckpoint.

    A task already stopped is reported (exit 0) without a call. Exit 1 when the
    task is failed, the wait timed out or the stop was not confirmed; 2 when
    the task is not running or there is no terminal and no --yes. JSON: as for
    start; "recovery_checkpoint" holds the checkpoint (null when DMS reports none).

    Example: migctl dms stop --yes
    """
    from migctl.dms.control import stop_task
    from migctl.render.dms import ControlProgress

    app_state, ref = _resolve(ctx, task)
    progress = ControlProgress(app_state.out)
    result = stop_task(
        app_state.aws.client("dms"),
        ref,
        confirm=_confirmer(yes),
        timeout=timeout,
        interval=interval,
        on_poll=progress,
    )
    progress.result(ref, result)
    raise typer.Exit(0 if result.ok else 1)
