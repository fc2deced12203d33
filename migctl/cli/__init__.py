"""The root app: global options, sub-commands, and the error -> exit-code mapping.

Commands are thin: parse options, build clients through :class:`AppState`,
call one core function, render the result, exit with the documented code.
Nothing here imports boto3, psycopg or pulumi at module level, so ``--help``
stays fast (a test checks it). Only the invoked command is built (see
:class:`LazyCommands`), and start-up's objects are frozen before exit.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from migctl import __version__
from migctl.cli import completion
from migctl.cli.logs import close_handlers, to_log_file
from migctl.cli.state import AppState
from migctl.errors import ExitCode, MigctlError, translate

if TYPE_CHECKING:
    from typer._click import Command, Context  # typer's own copy of click

_log = logging.getLogger("migctl.cli")

#: Each top-level command and the module of ``migctl.cli`` whose ``register(app)`` adds it
#: (a test checks that they agree), modules in --help order.
COMMANDS = {
    "alarms": "alarms",
    "cutover": "cutover",
    "dms": "dms",
    "plan": "infra",
    "lambda": "infra",
    "preview": "provision",
    "up": "provision",
    "destroy": "provision",
    "refresh": "provision",
    "outputs": "provision",
    "rollout": "rollout",
    "sandbox": "sandbox",
    "validate": "validate",
}
MODULES = tuple(dict.fromkeys(COMMANDS.values()))

_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
}


def build_commands(*modules: str) -> dict[str, Command]:
    """The click commands that these modules register, as the root app would build them."""
    scratch = typer.Typer(**_SETTINGS)
    for module in modules:
        importlib.import_module(f"migctl.cli.{module}").register(scratch)
    return dict(typer.main.get_group(scratch).commands)


class LazyCommands(TyperGroup):
    """The root group: builds only the command that is invoked.

    Building every command's options is a cost on every run (docs/performance.md);
    help, the generated reference and an unknown name (for its "did you mean")
    still build all.
    """

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands:
            module = COMMANDS.get(cmd_name)
            self.commands.update(build_commands(module) if module else build_commands(*MODULES))
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        self.commands = build_commands(*MODULES)
        return list(self.commands)

    def _main_shell_completion(
        self, ctx_args: MutableMapping[str, Any], prog_name: str, complete_var: str | None = None
    ) -> None:
        if os.environ.get(complete_var or completion.COMPLETE_VAR):  # a shell asks for words
            completion.prepare()
        super()._main_shell_completion(ctx_args, prog_name, complete_var)


app = typer.Typer(
    name="migctl",
    help=(
        "Cut a PostgreSQL payment service over to AWS (Aurora, ECS Fargate, DMS) "
        "without losing a row.\n\nExit codes: 0 ok, 1 check failed, 2 usage or config error, "
        "3 operational error, 4 failed and rolled back, 5 rollback failed."
    ),
    cls=LazyCommands,
    no_args_is_help=True,
    **_SETTINGS,
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
            "--config",
            help="Path to migctl.toml [env MIGCTL_CONFIG; default: the nearest migctl.toml "
            "from the current folder up].",
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
            "--verbose",
            "-v",
            count=True,
            help="-v: migctl's decisions (polls, alarm gates, queries, connects) on stderr; "
            "-vv: also the libraries' debug and tracebacks.",
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Only the result: no progress, live views or notes (warnings and errors "
            "still go to stderr).",
        ),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            metavar="PATH",
            help="Append every log record as a JSON line (migctl's at DEBUG, the libraries' "
            "at INFO, passwords masked), whatever -q or -v say.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    install_completion: Annotated[
        str | None,
        typer.Option(
            "--install-completion",
            metavar="SHELL",
            callback=completion.install_completion,
            is_eager=True,
            help="Install tab completion for bash, zsh or fish (auto, or no value: this shell).",
        ),
    ] = None,
    show_completion: Annotated[
        str | None,
        typer.Option(
            "--show-completion",
            metavar="SHELL",
            callback=completion.show_completion,
            is_eager=True,
            help="Print the tab completion script for bash, zsh or fish, to install it by hand.",
        ),
    ] = None,
) -> None:
    """Global options apply to every command."""
    from migctl.cli.logs import setup_logging

    setup_logging(verbose, quiet=quiet, log_file=log_file)
    ctx.obj = AppState(
        config=config, output=output, profile=profile, region=region, verbose=verbose, quiet=quiet
    )
    _log.debug("migctl %s: %s", __version__, ctx.invoked_subcommand)


#: The global options (the root callback's), and whether each takes a value. No command
#: defines an option of these names, so one given after the command is moved before it.
GLOBAL_OPTIONS = {
    "--config": True,
    "--output": True,
    "-o": True,
    "--profile": True,
    "--region": True,
    "--verbose": False,
    "-v": False,
    "-vv": False,
    "--quiet": False,
    "-q": False,
    "--log-file": True,
    "--install-completion": True,
    "--show-completion": True,
}


def hoist_globals(args: Sequence[str]) -> list[str]:
    """``migctl validate -o json`` as ``migctl -o json validate``: global options given after
    the command (as with aws, kubectl and gh) move in front of it; nothing after ``--``."""
    first = 0
    while first < len(args) and args[first].startswith("-"):  # the options before the command
        takes_value = GLOBAL_OPTIONS.get(args[first]) is True
        first += 2 if takes_value else 1
    if first >= len(args):
        return list(args)
    front, rest, moved = list(args[:first]), list[str](), list[str]()
    i = first
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, _ = arg.partition("=")
        takes = GLOBAL_OPTIONS.get(name)
        if takes is None and arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            moved.append(arg)  # -ojson
        elif takes is None or (eq and not takes):
            rest.append(arg)
        elif takes and not eq:
            moved.extend(args[i : i + 2])
            i += 1
        else:
            moved.append(arg)
        i += 1
    return [*front, *moved, *rest]


def run(argv: Sequence[str] | None = None) -> int:
    """Run the app and return the exit code; errors become one line on stderr."""
    command = typer.main.get_command(app)
    args = completion.bare_means_auto(hoist_globals(sys.argv[1:] if argv is None else argv))
    verbose = sum(a in ("-v", "--verbose") for a in args) + 2 * sum(a == "-vv" for a in args)
    # SIGTERM (a runbook's timeout, kill, systemd) is handled as Ctrl-C: every command that
    # says where things stand when interrupted says it then too, instead of dying silently.
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        previous = None
    code: int = ExitCode.OK
    try:
        command.main(args=args, prog_name="migctl", standalone_mode=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        sys.stderr.write("migctl: interrupted\n")
        code = ExitCode.INTERRUPTED
    except Exception as exc:
        code = _report(exc, verbose)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    to_log_file(logging.DEBUG, f"exit {code}")
    close_handlers()
    return code


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt("SIGTERM")


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
    # The log file (if any) keeps the failure and, when it was not foreseen, its traceback.
    failure = err.one_line() if err is not None else f"internal error: {type(exc).__name__}"
    to_log_file(logging.ERROR, failure, exc if err is None else None)
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
    code = run()
    # What is still alive now is mostly what start-up built (modules, classes, commands); the
    # interpreter's collections at exit would walk all of it (docs/performance.md). Frozen,
    # they skip it; objects are still released, and atexit handlers still run.
    gc.freeze()
    sys.exit(code)
