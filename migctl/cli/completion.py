"""Tab completion: ``--show-completion SHELL`` prints the script, ``--install-completion SHELL``
installs it, for bash, zsh or fish; ``auto`` (or no value) detects the shell.

typer's own pair of options (``add_completion``) guesses the shell and ignores a shell
named after them, so ``--show-completion fish`` run from bash printed bash's script.
These take the shell as given, and say in one line when it cannot be guessed. The
scripts, the install locations and the completion protocol are typer's.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from migctl.errors import UsageError

PROG_NAME = "migctl"
COMPLETE_VAR = "_MIGCTL_COMPLETE"  # what the scripts set when the shell asks for completions
SHELLS = ("bash", "zsh", "fish")
AUTO = "auto"
OPTIONS = ("--install-completion", "--show-completion")


def bare_means_auto(args: Sequence[str]) -> list[str]:
    """``migctl --install-completion`` as ``migctl --install-completion auto``: the option's
    value may be left out, as with typer's own option of the same name."""
    given = list(args)
    if given and given[0] in OPTIONS and (len(given) == 1 or given[1].startswith("-")):
        given.insert(1, AUTO)
    return given


def _shell(value: str) -> str:
    if value in SHELLS:
        return value
    choices = f"{', '.join(SHELLS[:-1])} or {SHELLS[-1]}"
    if value != AUTO:
        raise UsageError(f"no completion for the shell {value!r}: {choices} (or {AUTO})")
    from typer._completion_shared import _get_shell_name  # typer's detection (shellingham)

    found = _get_shell_name()
    if found not in SHELLS:
        seen = f" (found {found!r})" if found else ""
        raise UsageError(
            f"cannot tell which shell this is{seen}: name it, as in --show-completion bash "
            f"({choices})"
        )
    return found


def show_completion(value: str | None) -> None:
    """Print the completion script for the shell and exit 0."""
    if value is None:
        return
    from typer._completion_shared import get_completion_script

    script = get_completion_script(
        prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=_shell(value)
    )
    typer.echo(script)
    raise typer.Exit(0)


def install_completion(value: str | None) -> None:
    """Write the completion script where the shell reads it (typer's places) and exit 0."""
    if value is None:
        return
    from typer._completion_shared import install

    shell, path = install(shell=_shell(value), prog_name=PROG_NAME, complete_var=COMPLETE_VAR)
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell")
    raise typer.Exit(0)


def prepare() -> None:
    """Register typer's completion classes, which answer the scripts' requests."""
    from typer._completion_classes import completion_init

    completion_init()
