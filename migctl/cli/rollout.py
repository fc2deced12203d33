"""`migctl rollout`: ship an image to the ECS service; `rollout status`; `rollout undo`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from migctl.cli.options import at_least
from migctl.cli.prompt import confirm_or_refuse
from migctl.cli.state import state
from migctl.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from migctl.rollout.plan import RolloutPlan

# The group's help is the callback's docstring (the default invocation's), so no help= here.
rollout_app = typer.Typer(no_args_is_help=False)


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")


ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster", help="ECS cluster [config: ecs.cluster; stack output ecsClusterName]."
    ),
]
ServiceOpt = Annotated[
    str | None,
    typer.Option(
        "--service", help="ECS service [config: ecs.service; stack output ecsServiceName]."
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=at_least("ecs", "timeout_seconds"),
        help="Seconds to follow each deployment [config: ecs.timeout_seconds; 900].",
    ),
]
IntervalOpt = Annotated[
    float | None,
    typer.Option("--interval", help="Seconds between polls [config: ecs.interval_seconds; 10]."),
]
NoRollbackOpt = Annotated[
    bool, typer.Option("--no-rollback", help="On failure, stop and exit 1 instead of rolling back.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show the task definition diff and stop.")
]


@rollout_app.callback(invoke_without_command=True)
def rollout(
    ctx: typer.Context,
    image: Annotated[
        str | None, typer.Option("--image", help="The new image, e.g. REPO:TAG (required).")
    ] = None,
    container: Annotated[
        str | None,
        typer.Option(
            "--container", help="Container to update [config: ecs.container]; needed with several."
        ),
    ] = None,
    cluster: ClusterOpt = None,
    service: ServiceOpt = None,
    bake: Annotated[
        float | None,
        typer.Option(
            "--bake",
            min=at_least("ecs", "bake_seconds"),
            help="Seconds to watch the gate alarms after the deployment [config: "
            "ecs.bake_seconds; 300].",
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    interval: IntervalOpt = None,
    alarm: Annotated[
        list[str] | None,
        typer.Option(
            "--alarm", help="A gate alarm; repeatable [config: ecs.gate_alarms, [alarms]]."
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    no_rollback: NoRollbackOpt = False,
    yes: YesOpt = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Roll out the image the container already runs (restarts its tasks)."
        ),
    ] = False,
) -> None:
    """Deploy a new image: register, follow the deployment, bake on alarms, roll back on failure.

    Exit 0 completed (or --dry-run), 1 failed with --no-rollback, not
    confirmed, or refused before any change (service mid-deployment, a gate
    alarm already in ALARM), 2 bad input, 3 AWS error before the service
    changed, 4 failed and rolled back, 5 the rollback failed too (the exact
    state and the manual steps are printed). See docs/rollout.md.

    Example: migctl rollout --image repo/payments:v42 --alarm payments-prod-5xx --yes
    """
    if ctx.invoked_subcommand is not None:
        given = [
            name
            for name, value in (
                ("--image", image),
                ("--container", container),
                ("--alarm", alarm),
                ("--bake", bake),
                ("--dry-run", dry_run),
                ("--force", force),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)}: options of 'migctl rollout', "
                f"not of 'rollout {ctx.invoked_subcommand}'"
            )
        return
    from migctl.config import overridden
    from migctl.render.rollout import render_result, render_step
    from migctl.rollout.deploy import rollout as run_rollout
    from migctl.rollout.plan import RolloutOptions, require_image, resolve_gate, resolve_target

    app_state = state(ctx)
    settings = overridden(
        app_state.settings,
        "ecs",
        bake_seconds=bake,
        timeout_seconds=timeout,
        interval_seconds=interval,
    )
    new_image = require_image(image)
    target = resolve_target(settings, cluster=cluster, service=service, container=container)
    options = RolloutOptions(
        cluster=target.cluster,
        service=target.service,
        image=new_image,
        container=target.container,
        bake_seconds=settings.ecs.bake_seconds,
        timeout=settings.ecs.timeout_seconds,
        interval=settings.ecs.interval_seconds,
        gate=resolve_gate(settings, tuple(alarm or ())),
        allow_insufficient_data=settings.alarms.allow_insufficient_data,
        dry_run=dry_run,
        rollback=not no_rollback,
        force=force,
    )
    out = app_state.out
    result = run_rollout(
        app_state.aws.client("ecs"),
        app_state.aws.client("cloudwatch"),
        options,
        confirm=_confirmer(yes),
        on_step=lambda step: render_step(out, step),
    )
    render_result(out, result)
    raise typer.Exit(result.exit_code)


@rollout_app.command("status")
def status(
    ctx: typer.Context,
    cluster: ClusterOpt = None,
    service: ServiceOpt = None,
    revisions: Annotated[
        int, typer.Option("--revisions", min=1, help="How many recent revisions to list.")
    ] = 5,
    events: Annotated[
        int, typer.Option("--events", min=0, help="How many recent service events to list.")
    ] = 10,
) -> None:
    """Show the service's deployments, its recent task definition revisions and service events.

    Exit 0 when the service is steady (one COMPLETED deployment, running equals
    desired), 1 while a deployment is in flight or has failed.

    Example: migctl rollout status --cluster payments-prod --service payments
    """
    from migctl.render.rollout import render_status
    from migctl.rollout.plan import resolve_target
    from migctl.rollout.status import service_status

    app_state = state(ctx)
    target = resolve_target(app_state.settings, cluster=cluster, service=service, container=None)
    result = service_status(
        app_state.aws.client("ecs"),
        target.cluster,
        target.service,
        revisions=revisions,
        events=events,
    )
    render_status(app_state.out, result)
    raise typer.Exit(0 if result.steady else 1)


@rollout_app.command("undo")
def undo(
    ctx: typer.Context,
    cluster: ClusterOpt = None,
    service: ServiceOpt = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Go to this revision (family:N or ARN) instead of the previous one."
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    interval: IntervalOpt = None,
    dry_run: DryRunOpt = False,
    no_rollback: NoRollbackOpt = False,
    yes: YesOpt = False,
) -> None:
    """Go back to the previous revision and follow that deployment (no alarm gate, no bake).

    The previous revision is the task definition of the most recent older
    deployment that did not fail, else the previous ACTIVE revision of the
    family. Same exit codes as 'migctl rollout'.

    Example: migctl rollout undo --cluster payments-prod --service payments --yes
    """
    from migctl.config import overridden
    from migctl.render.rollout import render_result, render_step
    from migctl.rollout.deploy import undo as run_undo
    from migctl.rollout.plan import RolloutOptions, resolve_target

    app_state = state(ctx)
    settings = overridden(
        app_state.settings, "ecs", timeout_seconds=timeout, interval_seconds=interval
    )
    target = resolve_target(settings, cluster=cluster, service=service, container=None)
    options = RolloutOptions(
        cluster=target.cluster,
        service=target.service,
        timeout=settings.ecs.timeout_seconds,
        interval=settings.ecs.interval_seconds,
        dry_run=dry_run,
        rollback=not no_rollback,
        bake_seconds=0,
    )
    out = app_state.out
    result = run_undo(
        app_state.aws.client("ecs"),
        app_state.aws.client("cloudwatch"),
        options,
        to=to,
        confirm=_confirmer(yes),
        on_step=lambda step: render_step(out, step),
    )
    render_result(out, result)
    raise typer.Exit(result.exit_code)


def _confirmer(yes: bool) -> Callable[[RolloutPlan], bool] | None:
    """None with --yes; otherwise ask on the terminal, and refuse (exit 2) when there is none."""
    if yes:
        return None

    def confirm(plan: RolloutPlan) -> bool:
        return confirm_or_refuse(
            f"{plan.summary()}. Proceed?",
            refusal=f"not confirmed: {plan.summary()}; nothing was changed",
        )

    return confirm
