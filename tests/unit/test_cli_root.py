"""The root app: version, help without heavy imports, config errors as one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from migctl import __version__
from tests.cli_support import Cli

HEAVY = ("boto3", "botocore", "psycopg", "pulumi", "pulumi_aws", "moto", "rich.live")


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.code == 0 and result.stdout.strip() == f"migctl {__version__}"


@pytest.mark.parametrize("args", [["--help"], ["alarms", "--help"]])
def test_help_does_not_import_boto3_psycopg_or_pulumi(args: list[str]) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['migctl', *{args!r}]\n"
        "try:\n    runpy.run_module('migctl', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('LOADED=' + ','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED=\n" in out.stdout, out.stdout[-300:]
    assert "Usage:" in out.stdout


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "migctl", "--version"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == f"migctl {__version__}"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "config file not found"),
        ("[project\n", "invalid TOML"),
        ('[alarms]\nprefixx = "a"\n', "unknown key 'prefixx' in [alarms]"),
        ("[alarms]\nprefix = 3\n", "[alarms] prefix must be str, not int"),
    ],
)
def test_config_errors_are_one_line_and_exit_2(
    cli, tmp_path: Path, content: str | None, fragment: str
) -> None:
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    result = cli("--config", str(path), "alarms", "--prefix", "x")
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("migctl: error:")
    assert "Traceback" not in result.stderr


def test_bad_output_value_exits_2(cli: Cli) -> None:
    result = cli("--output", "yaml", "alarms", "--prefix", "x")
    assert result.code == 2 and "--output must be" in result.stderr


def test_unknown_option_is_a_usage_error(cli: Cli) -> None:
    result = cli("alarms", "--no-such-flag")
    assert result.code == 2 and "Traceback" not in result.stderr


def test_help_works_even_with_a_broken_config(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "migctl.toml").write_text("[broken\n")
    assert cli("alarms", "--help").code == 0


def test_unexpected_exception_is_one_line_exit_3(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import migctl.alarms

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(migctl.alarms, "check_alarms", boom)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = cli("alarms", "--prefix", "x")
    assert result.code == 3
    assert (
        result.stderr.strip()
        == "migctl: internal error: RuntimeError: kaput (rerun with -vv for the traceback)"
    )


def test_cli_reference_is_current() -> None:
    from migctl.cli.reference import render_reference

    path = Path(__file__).parents[2] / "docs" / "cli-reference.md"
    assert path.read_text() == render_reference(), "docs/cli-reference.md is stale: run `make docs`"


def test_every_command_is_built_from_the_module_that_registers_it() -> None:
    from migctl.cli import COMMANDS, MODULES, build_commands

    assert list(build_commands(*MODULES)) == [
        "alarms", "plan", "preview", "up", "destroy", "refresh", "outputs", "validate",
        "cutover", "dms", "lambda", "rollout", "sandbox",
    ]  # fmt: skip
    assert set(COMMANDS) == set(build_commands(*MODULES))
    for name, module in COMMANDS.items():
        assert name in build_commands(module), (name, module)


def test_a_command_builds_only_its_own_module() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['migctl', 'validate', '--help']\n"
        "try:\n    runpy.run_module('migctl', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('CLI=' + ','.join(sorted(m for m in sys.modules if m.startswith('migctl.cli.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.rsplit("CLI=", 1)[1].strip().split(","))
    shared = {
        "migctl.cli.state",
        "migctl.cli.options",
        "migctl.cli.prompt",
        "migctl.cli.completion",
        "migctl.cli.logs",
    }
    assert loaded - shared == {"migctl.cli.validate"}, loaded


def test_unknown_command_suggests_the_nearest_one() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "migctl", "valdate"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 2 and out.stdout == ""
    assert "No such command 'valdate'. Did you mean 'validate'?" in out.stderr


def test_the_console_script_exits_with_the_documented_code() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "migctl", "--output", "yaml", "alarms"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("migctl: error:")


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["validate", "-o", "json"], ["-o", "json", "validate"]),
        (["--config", "x.toml", "validate", "-o", "json"], ["--config", "x.toml", "-o", "json", "validate"]),
        (["dms", "status", "--profile", "prod"], ["--profile", "prod", "dms", "status"]),
        (["validate", "--output=json", "--jobs", "2"], ["--output=json", "validate", "--jobs", "2"]),
        (["validate", "-ojson", "-vv"], ["-ojson", "-vv", "validate"]),
        (["cutover", "--", "-o"], ["cutover", "--", "-o"]),
        (["--version"], ["--version"]),
    ],
)  # fmt: skip
def test_global_options_after_the_command_move_before_it(
    given: list[str], parsed: list[str]
) -> None:
    from migctl.cli import hoist_globals

    assert hoist_globals(given) == parsed


def _examples() -> list[tuple[str, list[str]]]:
    """Every ``Example:`` line of every command's help, as migctl would parse its argv."""
    import shlex

    import typer

    from migctl.cli import app, hoist_globals

    root = typer.main.get_command(app)
    ctx = root.make_context("migctl", ["--help"], resilient_parsing=True)
    found = []
    pending: list[tuple[str, Any]] = [("migctl", root)]
    while pending:
        path, command = pending.pop()
        for line in (command.help or "").splitlines():
            if "Example:" in line:
                words = shlex.split(line.split("Example:", 1)[1])
                assert words[0] == "migctl", line
                found.append((path, hoist_globals(words[1:])))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                pending.append((f"{path} {name}", command.get_command(ctx, name)))
    return found


def test_every_example_in_the_help_parses_as_written() -> None:
    """Options, values and sub-commands of each Example line parse (no usage error, exit 2)."""
    import typer

    from migctl.cli import app

    examples = _examples()
    assert len(examples) >= 28, examples  # every command has one
    root = typer.main.get_command(app)
    for path, args in examples:
        ctx = root.make_context("migctl", list(args))
        command: Any = root
        rest = [*ctx._protected_args, *ctx.args]
        while hasattr(command, "resolve_command") and rest:
            name, command, rest = command.resolve_command(ctx, rest)
            ctx = command.make_context(name, rest, parent=ctx)
            rest = [*ctx._protected_args, *ctx.args] if hasattr(command, "resolve_command") else []
        assert not hasattr(command, "resolve_command") or not rest, (path, args)
        assert path.endswith(ctx.info_name or ""), (path, args)


def test_sandbox_down_on_a_folder_that_does_not_exist_says_so(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = cli("sandbox", "down", "--dir", str(missing))
    assert result.code == 0, result.stderr
    assert "".join(result.stdout.split()) == f"nosandboxin{missing}:nothingtostop"
    payload = cli("-o", "json", "sandbox", "down", "--dir", str(missing)).json()
    assert payload["exists"] is False and payload["stopped"] == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("cutover", "rollback", "--help"), "Do not ask before undoing the cutover's steps."),
        (("cutover", "finalize", "--help"), "Do not ask before closing the way back."),
        (("rollout", "--help"), "[config: ecs.bake_seconds; 300]"),
    ],
)
def test_help_describes_the_options_of_the_command_it_is_for(
    cli: Cli, args: tuple[str, ...], said: str
) -> None:
    result = cli(*args)
    assert result.code == 0
    assert said in " ".join(result.stdout.split())
    assert "before the rollout" not in result.stdout or args[0] == "rollout"


def test_a_dsn_that_is_not_postgresql_is_exit_2_before_anything_connects(cli: Cli) -> None:
    """Said as it was given (never rewritten to postgresql://), and before the other side,
    which is not reachable, is tried."""
    result = cli(
        "validate", "--source", "mysql://app@db.example/pay", "--target",
        "postgresql://app@127.0.0.1:1/pay",
    )  # fmt: skip
    assert result.code == 2, result.stderr
    assert "bad DSN mysql://app:***@db.example/pay: mysql:// is not PostgreSQL" in result.stderr
    assert "cannot connect" not in result.stderr
