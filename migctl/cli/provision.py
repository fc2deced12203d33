"""`migctl up | preview | destroy | refresh | outputs`: the environment's resources, via Pulumi.

Exit codes: 0 done; 1 you declined the confirmation (nothing changed);
2 usage or config (no terminal to confirm on and no --yes, production destroy
without --allow-prod, no passphrase, no such stack); 3 the Pulumi CLI is
missing, the stack is locked by another update, or pulumi failed;
130 interrupted with Ctrl-C (see docs/deploy.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from migctl.cli.prompt import interactive
from migctl.cli.state import state
from migctl.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from migctl.infra.provision import OperationResult
    from migctl.render import Output
    from migctl.render.provision import ProvisionProgress


PulumiRoot = Annotated[
    Path | None,
    typer.Option(
        "--pulumi-root",
        help="Directory holding bin/pulumi, for a Pulumi CLI outside PATH "
        "[env MIGCTL_PULUMI_ROOT; config pulumi.root].",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)
    app.command("up")(up)
    app.command("destroy")(destroy)
    app.command("refresh")(refresh)
    app.command("outputs")(outputs)


def preview(ctx: typer.Context, pulumi_root: PulumiRoot = None) -> None:
    """Show what 'migctl up' would create, update or delete; changes nothing.

    Creates the (empty) stack on first use and writes the stack config from
    migctl.toml.

    Example: migctl preview --output json
    """
    from migctl.infra import provision

    app_state = state(ctx)
    with _progress(app_state.out) as progress:
        result = provision.preview(
            app_state.settings, pulumi_root=pulumi_root, on_progress=progress, aws=app_state.aws
        )
    _finish(app_state.out, result)


def up(ctx: typer.Context, yes: Yes = False, pulumi_root: PulumiRoot = None) -> None:
    """Create or update the environment: show the preview, ask, then apply.

    Without --yes it needs a terminal to ask on (exit 2 otherwise). Caches the
    stack outputs for the other commands.

    Example: migctl up --yes
    """
    from migctl.infra import provision

    app_state = state(ctx)
    settings = app_state.settings
    out = app_state.out
    if not yes and not interactive():
        raise UsageError(
            "'migctl up' asks before applying, and there is no terminal to ask on",
            hint="pass --yes",
        )
    with _progress(out) as progress:

        def confirm(previewed: OperationResult) -> bool:
            progress.stop()
            return typer.confirm(
                f"Apply these changes to stack {previewed.stack!r}?", default=False, err=True
            )

        result = provision.up(
            settings,
            pulumi_root=pulumi_root,
            on_progress=progress,
            confirm=None if yes else confirm,
            aws=app_state.aws,
        )
    _finish(out, result)


def destroy(
    ctx: typer.Context,
    yes: Yes = False,
    allow_prod: Annotated[
        bool, typer.Option("--allow-prod", help="Allow destroying a production environment.")
    ] = False,
    pulumi_root: PulumiRoot = None,
) -> None:
    """Delete every resource of the environment's stack.

    Shows what would be deleted and asks you to type the stack name, unless
    --yes. Refuses a production environment without --allow-prod (exit 2).

    Example: migctl destroy --yes
    """
    from migctl.infra import provision

    app_state = state(ctx)
    settings = app_state.settings
    out = app_state.out
    if not yes and not interactive():
        raise UsageError(
            "'migctl destroy' asks for the stack name, and there is no terminal", hint="pass --yes"
        )
    with _progress(out) as progress:

        def confirm(previewed: OperationResult) -> bool:
            progress.stop()
            typed = typer.prompt(
                f"Type the stack name ({previewed.stack}) to destroy it", default="", err=True
            )
            return bool(typed.strip() == previewed.stack)

        result = provision.destroy(
            settings,
            pulumi_root=pulumi_root,
            on_progress=progress,
            confirm=None if yes else confirm,
            allow_prod=allow_prod,
        )
    _finish(out, result)


def refresh(ctx: typer.Context, pulumi_root: PulumiRoot = None) -> None:
    """Read the real state of the stack's resources into the Pulumi state.

    Changes no resource; run it after an interrupted update or a change made
    outside Pulumi.

    Example: migctl refresh
    """
    from migctl.infra import provision

    app_state = state(ctx)
    with _progress(app_state.out) as progress:
        result = provision.refresh(
            app_state.settings, pulumi_root=pulumi_root, on_progress=progress
        )
    _finish(app_state.out, result)


def outputs(
    ctx: typer.Context,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Print secret outputs in clear.")
    ] = False,
    pulumi_root: PulumiRoot = None,
) -> None:
    """Print the stack outputs and cache them for the other commands (.migctl/outputs-<stack>.json).

    Secret outputs are masked unless --show-secrets; the cache always masks them.

    Example: migctl outputs --output json
    """
    from migctl.infra import provision
    from migctl.render.provision import render_outputs

    app_state = state(ctx)
    values = provision.outputs(app_state.settings, pulumi_root=pulumi_root)
    render_outputs(app_state.out, values, show_secrets=show_secrets)
    raise typer.Exit(0)


def _progress(out: Output) -> ProvisionProgress:
    from migctl.render.provision import ProvisionProgress

    return ProvisionProgress(out)


def _finish(out: Output, result: OperationResult) -> None:
    from migctl.render.provision import render_operation

    render_operation(out, result)
    if result.cancelled:
        if result.error is not None:
            out.err.print(result.error.one_line(), markup=False, highlight=False)
        raise typer.Exit(ExitCode.INTERRUPTED)
    if result.error is not None:
        raise result.error
    raise typer.Exit(0 if result.ok else 1)
