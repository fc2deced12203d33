"""Asking before acting: on a terminal ask, without one refuse (exit 2) rather than hang."""

from __future__ import annotations

import sys

import typer

from migctl.errors import UsageError


def interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def confirm_or_refuse(question: str, *, refusal: str) -> bool:
    """The operator's answer to ``question``; with no terminal, a UsageError naming ``--yes``."""
    if not interactive():
        raise UsageError(refusal, hint="no terminal to ask on: pass --yes")
    return typer.confirm(question, default=False, err=True)
