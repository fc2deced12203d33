"""The root app: global options, sub-commands, and the error -> exit-code mapping.

Commands are thin: parse options, build clients through :class:`AppState`,
call one core function, render the result, exit with the documented code.
Nothing here imports boto3, psycopg or pulumi at module level, so ``--help``
stays fast (a test checks it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from migctl import __version__
from migctl.cli.state import AppState
from migctl.errors import ExitCode, MigctlError, translate

app = typer.Typer(
    name="migctl",
    help=(
        "Cut a PostgreSQL payment service over to AWS (Aurora, ECS Fargate, DMS) "
        "without losing a row.\n\nExit codes: 0 ok, 1 check failed, 2 usage or config error, "
        "3 operational error, 4 failed and rolled back, 5 rollback failed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"migctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Path to migctl.toml [env MIGCTL_CONFIG; default ./migctl.toml]."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="table or json [env MIGCTL_OUTPUT; default table]."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="AWS profile [env AWS_PROFILE].")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="AWS region [env AWS_REGION].")
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="More logs on stderr; -vv shows tracebacks."
        ),
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Global options apply to every command."""
    ctx.obj = AppState(
        config=config, output=output, profile=profile, region=region, verbose=verbose
    )
    _setup_logging(verbose)


def _setup_logging(verbose: int) -> None:
    from migctl.redact import redact_text

    class _Redacting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact_text(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Redacting("%(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [handler]
    root_logger.setLevel(logging.WARNING)
    logging.getLogger("migctl").setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose >= 2:
        root_logger.setLevel(logging.DEBUG)


def _register() -> None:
    from migctl.cli import alarms, cutover, dms, infra, provision, rollout, sandbox, validate

    alarms.register(app)
    cutover.register(app)
    dms.register(app)
    infra.register(app)
    provision.register(app)
    rollout.register(app)
    sandbox.register(app)
    validate.register(app)


_register()


def run(argv: Sequence[str] | None = None) -> int:
    """Run the app and return the exit code; errors become one line on stderr."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a in ("-v", "--verbose") for a in args) + 2 * sum(a == "-vv" for a in args)
    try:
        command.main(args=args, prog_name="migctl", standalone_mode=True)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        sys.stderr.write("migctl: interrupted\n")
        return 130
    except Exception as exc:
        return _report(exc, verbose)
    return ExitCode.OK


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _report(exc: Exception, verbose: int) -> int:
    from migctl.redact import redact_text

    err: MigctlError | None = translate(exc)
    if verbose >= 2:
        import traceback

        sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
    if err is None:
        detail = f"{type(exc).__name__}: {exc}"
        sys.stderr.write(
            redact_text(f"migctl: internal error: {detail} (rerun with -vv for the traceback)\n")
        )
        return ExitCode.OPERATIONAL
    sys.stderr.write(redact_text(f"migctl: error: {err.one_line()}\n"))
    return int(err.exit_code)


def main() -> None:
    sys.exit(run())
