"""`migctl plan` and `migctl lambda build`: the Pulumi program offline, and its Lambda zip."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migctl.cli.state import state

lambda_app = typer.Typer(
    name="lambda",
    help="Package the validation Lambda.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    lambda_app.command("build")(build)
    app.add_typer(lambda_app, name="lambda")


def plan(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", help="Environment and stack to plan [default: the configured stack]."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A stack config value (migctl namespace unless KEY has one); repeatable.",
        ),
    ] = None,
) -> None:
    """Show what the Pulumi program would create, and what it costs per month.

    Runs the program offline under Pulumi mocks: no cloud credentials, no
    Pulumi CLI. Config comes from Pulumi.<stack>.yaml, then [pulumi] config in
    migctl.toml, then --set. Prints the resources by component, counts by
    type, and a monthly estimate from the price table in the repo.

    Example: migctl plan --env prod --set containerImage=registry.example/payments:2.14.0
    """
    from migctl.config import overridden
    from migctl.infra.offline_plan import gather_config
    from migctl.infra.offline_plan import plan as plan_stack
    from migctl.render.offline_plan import render_plan

    app_state = state(ctx)
    settings = overridden(app_state.settings, "project", environment=env)
    stack = settings.project.stack_name
    config, warnings = gather_config(
        stack,
        settings_config=settings.pulumi.config,
        secret_keys=settings.pulumi.secret_keys,
        overrides=tuple(set_ or ()),
        environment=settings.project.environment,
        region=settings.project.region,
        base_dir=settings.base_dir,
    )
    result = plan_stack(stack, config, warnings=warnings)
    render_plan(app_state.out, result)
    raise typer.Exit(0)


def build(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Zip to write, relative to the current folder "
            "[default: dist/validation-lambda.zip].",
        ),
    ] = None,
    requirements: Annotated[
        Path | None,
        typer.Option("--requirements", help="Pinned requirements [default: the handler's]."),
    ] = None,
    deps_dir: Annotated[
        Path | None,
        typer.Option(
            "--deps-dir",
            help="Use dependencies already installed for the Lambda platform (skips pip).",
        ),
    ] = None,
) -> None:
    """Build the validation Lambda's zip, byte for byte reproducible.

    Installs the pinned requirements with pip for manylinux2014_x86_64 and
    CPython 3.12 (wheels only), adds the handler and the migctl.validate code,
    and writes a zip with sorted entries and fixed timestamps; prints the
    absolute path it wrote. migctl up, preview and plan read lambdaPackage of
    [pulumi] config, relative to migctl.toml's folder (default
    dist/validation-lambda.zip there); a warning says when that is not the zip
    just written.

    Example: migctl lambda build --out dist/validation-lambda.zip
    """
    from migctl.infra.lambda_build import DEFAULT_PACKAGE, build_lambda_package, package_path
    from migctl.render.offline_plan import render_lambda_package

    app_state = state(ctx)
    settings = app_state.settings
    package = build_lambda_package(
        out or Path(DEFAULT_PACKAGE), requirements=requirements, deps_dir=deps_dir
    )
    stack_reads = package_path(settings.pulumi.config, settings.base_dir)
    render_lambda_package(app_state.out, package, stack_reads=stack_reads)
    raise typer.Exit(0)
