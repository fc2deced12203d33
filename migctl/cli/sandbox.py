"""`migctl sandbox`: rehearse the whole migration on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migctl.cli.state import state

sandbox_app = typer.Typer(
    name="sandbox",
    help="A local rehearsal: two PostgreSQL clusters and a local AWS endpoint on 127.0.0.1.",
    no_args_is_help=True,
)
traffic_app = typer.Typer(
    name="traffic", help="Start or stop the writer that feeds CDC.", no_args_is_help=True
)
fault_app = typer.Typer(name="fault", help="Inject faults into the sandbox.", no_args_is_help=True)
sandbox_app.add_typer(traffic_app)
sandbox_app.add_typer(fault_app)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Where the sandbox lives [env MIGCTL_SANDBOX_DIR, which sandbox.env sets; config "
        "sandbox.dir; default .migctl/sandbox].",
    ),
]


def _dir(ctx: typer.Context, directory: Path | None) -> Path:
    return (directory or Path(state(ctx).settings.sandbox.dir)).resolve()


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app)


@sandbox_app.command("up")
def up(
    ctx: typer.Context,
    rows: Annotated[
        int, typer.Option("--rows", min=10, help="Payments to seed on the source.")
    ] = 100_000,
    directory: DirOption = None,
    traffic: Annotated[
        bool, typer.Option("--traffic", help="Keep writing payments so CDC has work.")
    ] = False,
) -> None:
    """Start the sandbox and write <dir>/migctl.toml and <dir>/sandbox.env.

    Source and target PostgreSQL clusters, a local AWS endpoint preloaded with
    what infra_pulumi creates, and a controller that turns DMS into real
    logical replication and moves ECS deployments (each takes [sandbox]
    task_start_seconds). Exit 3 when the PostgreSQL binaries are missing.

    Example: migctl sandbox up --rows 100000 --traffic
    """
    from migctl.render.sandbox import render_up
    from migctl.sandbox.bootstrap import up as sandbox_up

    app_state = state(ctx)
    out = app_state.out
    result = sandbox_up(
        _dir(ctx, directory),
        rows=rows,
        traffic=traffic,
        progress=out.note,
        task_start_seconds=app_state.settings.sandbox.task_start_seconds,
    )
    render_up(out, result)


@sandbox_app.command("status")
def status(ctx: typer.Context, directory: DirOption = None) -> None:
    """Report what runs and where. Exit 0 when every process runs, 1 otherwise.

    Example: migctl sandbox status --output json
    """
    from migctl.render.sandbox import render_status
    from migctl.sandbox.environment import status as sandbox_status

    result = sandbox_status(_dir(ctx, directory))
    render_status(state(ctx).out, result)
    raise typer.Exit(0 if result.healthy else 1)


@sandbox_app.command("down")
def down(
    ctx: typer.Context,
    directory: DirOption = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the folder (data, logs).")] = False,
) -> None:
    """Stop exactly the recorded processes and remove the folder; also cleans up after a crash.

    Example: migctl sandbox down --keep
    """
    from migctl.render.sandbox import render_down
    from migctl.sandbox.environment import down as sandbox_down

    render_down(state(ctx).out, sandbox_down(_dir(ctx, directory), keep=keep))


@traffic_app.command("start")
def traffic_start(
    ctx: typer.Context,
    directory: DirOption = None,
    ecs: Annotated[
        bool,
        typer.Option(
            "--ecs/--no-ecs",
            help="Also play the application on ECS: while the service runs an image built for "
            "Aurora, write to the database its task definition names.",
        ),
    ] = True,
) -> None:
    """Start the applications' writers: the on-premises one on the source, and the one on ECS.

    The on-premises writer rides out the cutover's freeze (refused writes,
    ended sessions) and writes again once the source is open. The writer on
    ECS writes while the service runs an image built for Aurora (after the
    cutover's rollout). Each records the payments it committed in
    logs/traffic.keys and logs/ecs.keys. It waits up to 3 s for the first
    payment committed on the source: a writer that exits at once is exit 3
    (with its log's last line); one whose writes are refused (a frozen source)
    keeps running, and the result says so ("writing": false).

    Example: migctl sandbox traffic start
    """
    from migctl.sandbox.environment import start_traffic

    started = start_traffic(_dir(ctx, directory), ecs=ecs)
    text = f"traffic started (pid {started.pid})" + (
        ": writing payments on the source" if started.writing else f"; {started.note}"
    )
    _say(
        ctx,
        {
            "traffic": "started",
            "pid": started.pid,
            "writing": started.writing,
            "note": started.note,
        },
        text,
    )


@traffic_app.command("stop")
def traffic_stop(ctx: typer.Context, directory: DirOption = None) -> None:
    """Stop the applications' writers (the one on ECS within a second).

    Example: migctl sandbox traffic stop
    """
    from migctl.sandbox.environment import stop_traffic

    was_running = stop_traffic(_dir(ctx, directory))
    _say(
        ctx,
        {"traffic": "stopped", "was_running": was_running},
        "traffic stopped" if was_running else "traffic was not running",
    )


@fault_app.command("alarm")
def fault_alarm(ctx: typer.Context, name: str, directory: DirOption = None) -> None:
    """Put one alarm into ALARM.

    Example: migctl sandbox fault alarm payments-sandbox-alb-5xx
    """
    from migctl.sandbox.environment import set_alarm

    set_alarm(_dir(ctx, directory), name, "ALARM", "sandbox: fault injected")
    _say(ctx, {"alarm": name, "state": "ALARM"}, f"{name} -> ALARM")


@fault_app.command("clear")
def fault_clear(ctx: typer.Context, directory: DirOption = None) -> None:
    """Set every gate alarm of the sandbox back to OK.

    Example: migctl sandbox fault clear
    """
    from migctl.sandbox.environment import clear_faults

    names = clear_faults(_dir(ctx, directory))
    _say(ctx, {"cleared": names}, f"{len(names)} alarm(s) -> OK")


def _say(ctx: typer.Context, payload: dict[str, object], text: str) -> None:
    out = state(ctx).out
    if out.json:
        out.emit(payload)
    else:
        out.out.print(text)
