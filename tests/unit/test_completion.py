"""Tab completion: the script for the shell that is named, installed where the shell reads it,
and the answers the script asks migctl for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import Cli

#: A line only each shell's script has.
MARKERS = {
    "bash": "complete -o default -F _migctl_completion migctl",
    "zsh": "#compdef migctl",
    "fish": "complete --command migctl",
}


@pytest.fixture
def detected(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """What shell detection finds (set by the test); a named shell never asks it."""
    import typer._completion_shared

    found: list[str | None] = ["bash"]
    monkeypatch.setattr(typer._completion_shared, "_get_shell_name", lambda: found[0])
    return found


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_script_of_the_shell_named(
    cli: Cli, detected: list[str | None], shell: str
) -> None:
    detected[0] = None  # detection would fail: the named shell is used as it is
    result = cli("--show-completion", shell)
    assert result.code == 0, result.stderr
    assert MARKERS[shell] in result.stdout and "_MIGCTL_COMPLETE" in result.stdout
    assert all(marker not in result.stdout for name, marker in MARKERS.items() if name != shell)


def test_show_completion_bash_in_a_subprocess_without_a_shell_to_detect() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHELL"}
    out = subprocess.run(
        [sys.executable, "-m", "migctl", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stderr
    assert MARKERS["bash"] in out.stdout and out.stderr == ""


def test_no_shell_named_detects_it(cli: Cli, detected: list[str | None]) -> None:
    detected[0] = "zsh"
    result = cli("--show-completion")
    assert result.code == 0 and MARKERS["zsh"] in result.stdout


@pytest.mark.parametrize(
    ("args", "found", "said"),
    [
        (("--show-completion",), None, "cannot tell which shell this is: name it"),
        (("--show-completion", "auto"), "tcsh", "cannot tell which shell this is (found 'tcsh')"),
        (("--install-completion", "tcsh"), "bash", "no completion for the shell 'tcsh'"),
    ],
)
def test_a_shell_without_completion_is_one_line_and_exit_2(
    cli: Cli, detected: list[str | None], args: tuple[str, ...], found: str | None, said: str
) -> None:
    detected[0] = found
    result = cli(*args)
    assert result.code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("migctl: error: ") and said in lines[0]


def test_install_completion_writes_where_the_shell_reads_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result = cli("--install-completion", "fish")
    assert result.code == 0, result.stderr
    installed = tmp_path / ".config" / "fish" / "completions" / "migctl.fish"
    assert f"fish completion installed in {installed}" in result.stdout
    assert MARKERS["fish"] in installed.read_text()


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [("migctl val", 1, {"validate"}), ("migctl dms st", 2, {"start", "status", "stop"})],
)
def test_the_script_gets_commands_from_migctl(words: str, cword: int, expected: set[str]) -> None:
    """What bash's script runs on <TAB>: migctl answers with the matching words."""
    env = {**os.environ, "_MIGCTL_COMPLETE": "complete_bash", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(cword)
    out = subprocess.run(
        [sys.executable, "-m", "migctl"], capture_output=True, text=True, check=False, env=env
    )
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == expected


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["--show-completion", "bash"], ["--show-completion", "bash"]),
        (["--show-completion", "zsh", "-v"], ["--show-completion", "zsh", "-v"]),
        (["validate", "--show-completion", "fish"], ["--show-completion", "fish", "validate"]),
        (["--install-completion"], ["--install-completion", "auto"]),
        (["--show-completion", "-v"], ["--show-completion", "auto", "-v"]),
    ],
)
def test_completion_options_are_global(given: list[str], parsed: list[str]) -> None:
    from migctl.cli import completion, hoist_globals

    assert completion.bare_means_auto(hoist_globals(given)) == parsed
