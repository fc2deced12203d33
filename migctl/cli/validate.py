"""`migctl validate`: does the target hold exactly the source's data? The cutover gate."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from migctl.cli.options import at_least
from migctl.cli.state import state


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    ctx: typer.Context,
    source: Annotated[
        str | None, typer.Option("--source", help="Source DSN [config: source].")
    ] = None,
    source_secret: Annotated[
        str | None,
        typer.Option("--source-secret", help="Secrets Manager ARN holding the source credentials."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Target DSN [config: target].")
    ] = None,
    target_secret: Annotated[
        str | None,
        typer.Option(
            "--target-secret",
            help="Secrets Manager ARN holding the target credentials [default: stack output auroraSecretArn].",
        ),
    ] = None,
    schema: Annotated[
        list[str] | None,
        typer.Option("--schema", help="Schema to compare; repeatable [config: validate.schemas]."),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            help="Table glob such as 'public.pay*' (quote a literal part: 'a.\"b.c\"');"
            " repeatable [config: validate.tables].",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", help="Table glob to skip; repeatable [config: validate.exclude]."
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=at_least("validate", "jobs"),
            help="Parallel queries per side [config: validate.jobs].",
        ),
    ] = None,
    max_keys: Annotated[
        int | None,
        typer.Option(
            "--max-keys",
            min=at_least("validate", "max_keys"),
            help="Keys listed per kind and table; counts stay exact [default 100].",
        ),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            min=at_least("validate", "chunk_rows"),
            help="Rows per first-pass chunk [config: validate.chunk_rows].",
        ),
    ] = None,
    parallel_workers: Annotated[
        int | None,
        typer.Option(
            "--parallel-workers",
            min=at_least("validate", "parallel_workers"),
            help="PostgreSQL parallel workers per query, so each server runs at most jobs x (1 +"
            " this) processes for migctl [config: validate.parallel_workers; default 0].",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="local | lambda (the deployed validation function) | lambda-local (its handler in"
            " local worker processes) [config: validate.executor].",
        ),
    ] = None,
    function: Annotated[
        str | None,
        typer.Option(
            "--function",
            help="Validation function for --executor lambda [default: stack output validationFunctionName].",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=at_least("validate", "concurrency"),
            help="Invocations in flight [default: 50; lambda-local: 2 x CPUs worker processes].",
        ),
    ] = None,
) -> None:
    """Prove that the target holds exactly the source's data: tables, rows and sequences.

    Checksums are computed inside both databases (one scan per side, in
    parallel); only differing chunks are narrowed down to exact keys. Every
    transaction is READ ONLY with one snapshot per table.

    Exit 0 when everything matches, 1 on any difference (data, schema, missing
    table, sequence behind), 2 for a selection that selects nothing (a schema or
    table pattern that matches nothing) or a bad DSN, 3 when a database is
    unreachable or a table could not be compared.

    With --executor lambda the checksums run in the deployed validation
    Lambda (inside the VPC, credentials from Secrets Manager), --concurrency
    invocations at a time; same report, JSON and exit codes. A chunk whose
    invocation keeps failing makes its table an error (exit 3).

    Example: migctl validate --table 'public.pay*' --jobs 4 --output json
    """
    import os

    from migctl.config import overridden
    from migctl.db import resolve_database
    from migctl.infra.outputs import load_cached_outputs, resolve
    from migctl.render.validate import ValidationProgress, render_validation
    from migctl.validate.lambda_invoke import LocalInvoker, lambda_invoker
    from migctl.validate.lambda_table import FanoutOptions, RemoteSide
    from migctl.validate.run import run_validation
    from migctl.validate.runner import ValidateOptions

    app_state = state(ctx)
    settings = overridden(
        app_state.settings,
        "validate",
        schemas=schema,
        tables=table,
        exclude=exclude,
        jobs=jobs,
        max_keys=max_keys,
        chunk_rows=chunk_rows,
        parallel_workers=parallel_workers,
        executor=executor,
        function=function,
        concurrency=concurrency,
    )
    conf = settings.validate
    kind = conf.executor
    options = ValidateOptions.from_settings(conf)
    invoke: Any = None
    if kind == "lambda":
        # The function reaches both databases from inside the VPC: only secret ARNs travel.
        source_side: Any = RemoteSide(
            "source", secret_arn=source_secret or settings.source.secret_arn
        )
        target_side: Any = RemoteSide(
            "target", secret_arn=target_secret or settings.target.secret_arn
        )
        name = resolve(
            settings,
            conf.function,
            "validationFunctionName",
            what="validation function",
            flag="--function",
        )
        invoke = lambda_invoker(app_state.aws.client("lambda"), name)
        workers = conf.concurrency or 50
    else:
        source_side = resolve_database(
            settings.source, label="source", aws=app_state.aws, dsn=source, secret_arn=source_secret
        )
        t = settings.target
        if not (target or target_secret or t.dsn or t.dsn_env or t.secret_arn):
            cached = load_cached_outputs(settings).get("auroraSecretArn")
            target_secret = cached if isinstance(cached, str) and cached else None
        target_side = resolve_database(
            t, label="target", aws=app_state.aws, dsn=target, secret_arn=target_secret
        )
        workers = conf.concurrency or 2 * (os.cpu_count() or 1)
        if kind == "lambda-local":
            invoke = LocalInvoker(workers)
    out = app_state.out
    try:
        with ValidationProgress(out) as progress:
            report = run_validation(
                source_side,
                target_side,
                options,
                executor=kind,
                invoke=invoke,
                fanout_options=FanoutOptions(concurrency=workers),
                progress=progress,
            )
    finally:
        if isinstance(invoke, LocalInvoker):
            invoke.close()
    render_validation(out, report)
    raise typer.Exit(report.exit_code)
