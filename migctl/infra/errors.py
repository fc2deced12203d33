"""Pulumi Automation API errors -> migctl errors with the documented exit codes.

======================================  ====  ============================================
Automation API raises                   exit  migctl says
======================================  ====  ============================================
FileNotFoundError / PermissionError     3     the CLI is missing: how to install, --pulumi-root
InvalidVersionError                     3     the CLI is too old
StackNotFoundError                      2     no such stack in that backend (a config problem)
ConcurrentUpdateError                   3     another update holds the lock: wait, or pulumi cancel
InlineSourceRuntimeError                3     the Pulumi program raised
CommandError (any other non-zero exit)  3     pulumi <cmd> failed (exit N): the error lines
======================================  ====  ============================================

``CommandError`` keeps only ``str(CommandResult)``; :func:`command_failure`
reads the exit code and the ``error:`` lines back out of it. Every message
goes through :func:`migctl.redact.redact_text`, which knows the stack's secret
config values.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from migctl.errors import ConfigError, MigctlError, OperationalError, ToolMissingError
from migctl.redact import redact_text

INSTALL_CLI = (
    "install it with 'curl -fsSL https://get.pulumi.com | sh' (offline: docs/deploy.md); "
    "for a CLI outside PATH pass --pulumi-root DIR (DIR/bin/pulumi) "
    "or set MIGCTL_PULUMI_ROOT or [pulumi] root"
)

if TYPE_CHECKING:
    from migctl.infra.stack import StackSpec

_RESULT = re.compile(
    r"\A\s*code: (?P<code>-?\d+)\n stdout: (?P<stdout>.*)\n stderr: (?P<stderr>.*)\Z", re.S
)
MAX_MESSAGE = 400


@dataclass(frozen=True)
class CommandFailure:
    code: int | None
    stdout: str
    stderr: str

    @property
    def summary(self) -> str:
        """The ``error:`` lines of stderr (else its last line, else stdout's), redacted."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        errors = [ln.removeprefix("error:").strip() for ln in lines if ln.startswith("error:")]
        if not errors:
            out = [ln.strip() for ln in self.stdout.splitlines() if ln.strip()]
            errors = lines[-1:] or out[-1:] or ["no error message"]
        text = redact_text("; ".join(errors))
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def command_failure(exc: BaseException) -> CommandFailure:
    match = _RESULT.match(str(exc))
    if match is None:
        return CommandFailure(None, "", str(exc))
    return CommandFailure(int(match["code"]), match["stdout"], match["stderr"])


def translate_pulumi_error(
    exc: BaseException, spec: StackSpec, action: str, engine_errors: Sequence[str] = ()
) -> MigctlError | None:
    """The MigctlError for an Automation API failure, or None when ``exc`` is not one.

    ``engine_errors`` (error diagnostics seen in the engine events) say more than
    pulumi's closing ``error: update failed`` line, so they lead the message.
    """
    from pulumi import automation as auto

    stack = spec.stack
    if isinstance(exc, MigctlError):
        return exc
    if isinstance(exc, FileNotFoundError | PermissionError):
        return ToolMissingError(
            f"could not run the Pulumi CLI: {exc.filename or exc}: {exc.strerror}", hint=INSTALL_CLI
        )
    if isinstance(exc, auto.InvalidVersionError):
        return ToolMissingError(f"the Pulumi CLI cannot run 'pulumi {action}': {exc}")
    if not isinstance(exc, auto.CommandError):
        if isinstance(exc, builtins.RuntimeError) and "summary event" in str(exc):
            return OperationalError(
                f"pulumi {action} ended without a summary of changes; see the output above"
            )
        return None
    failure = command_failure(exc)
    if isinstance(exc, auto.StackNotFoundError):
        return ConfigError(
            f"no stack named {stack!r} in the Pulumi backend {redact_text(spec.backend_url)}",
            hint="check [project] stack / environment and PULUMI_BACKEND_URL or [pulumi] backend; "
            "'migctl up' creates the stack",
        )
    if isinstance(exc, auto.ConcurrentUpdateError):
        return OperationalError(
            f"another update of stack {stack!r} is in progress, so it is locked "
            f"({failure.summary})",
            hint="wait for it to finish; if no update is running (a killed run left the lock), "
            f"release it with 'pulumi cancel --yes --stack {stack}' and then run 'migctl refresh'",
        )
    if isinstance(exc, auto.InlineSourceRuntimeError):
        return OperationalError(
            f"the Pulumi program (infra_pulumi) failed during {action}: {failure.summary}"
        )
    code = f"exit {failure.code}" if failure.code is not None else "failed"
    detail = "; ".join(engine_errors[:3]) or failure.summary
    if len(engine_errors) > 3:
        detail += f" (+{len(engine_errors) - 3} more errors)"
    return OperationalError(f"pulumi {action} failed ({code}): {detail}")
