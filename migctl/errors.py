"""Typed errors, each carrying the exit code documented in the README.

Core code raises these; the root CLI maps them to one line on stderr and the
exit code. Library exceptions (botocore, psycopg, tomllib) are translated at
the client boundary with :func:`translate`, so no traceback reaches a user.
"""

from __future__ import annotations

import re
import sys
from enum import IntEnum

from migctl.redact import redact_text


class ExitCode(IntEnum):
    """The exit-code table every command follows (README, "Exit codes")."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    OPERATIONAL = 3
    ROLLED_BACK = 4
    ROLLBACK_FAILED = 5
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class MigctlError(Exception):
    """Base class: a message for people and the exit code for scripts."""

    exit_code: ExitCode = ExitCode.OPERATIONAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        return f"{text} ({self.hint})" if self.hint else text


class CheckFailed(MigctlError):
    """Checked and found wanting: data differs, an alarm is in ALARM, a gate was not met."""

    exit_code = ExitCode.CHECK_FAILED


class UsageError(MigctlError):
    """Bad flags, arguments or input that the user must change."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """migctl.toml or the environment is missing, invalid or inconsistent."""


class OperationalError(MigctlError):
    """AWS or a database unreachable or refusing, a tool missing, an unexpected answer."""

    exit_code = ExitCode.OPERATIONAL


class AwsError(OperationalError):
    """An AWS API call failed after botocore's own retries."""


class DatabaseError(OperationalError):
    """A PostgreSQL connection or query failed."""


class ToolMissingError(OperationalError):
    """A required executable (pulumi, initdb, ...) is not installed."""


#: The error codes AWS answers with when it throttles a caller (after botocore's own retries).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
    }
)


def aws_error_code(exc: BaseException) -> str | None:
    """The ``Error.Code`` of a botocore ClientError (or anything shaped like one), else None.

    The one place that reads a botocore error's code: callers compare it with the
    codes they expect, and never look into ``exc.response`` themselves.
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def aws_error_message(exc: BaseException) -> str:
    """The ``Error.Message`` of a botocore ClientError, or ``""``."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Message", "") or "")


#: What to check when the AWS endpoint is not one: said by each error about it.
ENDPOINT_HINT = "check --region, AWS_REGION or [project] region, and AWS_ENDPOINT_URL if it is set"


def looks_like_html(body: bytes | str) -> bool:
    """A web page (a proxy's, a captive portal's, a wrong URL's), which no AWS API answers with."""
    head = body[:200].decode("utf-8", "replace") if isinstance(body, bytes) else body[:200]
    return head.lstrip().lower().startswith(("<!doctype html", "<html"))


def endpoint_error(endpoint_url: str, region: str | None, status: int) -> AwsError:
    """An endpoint that answered with a web page: one line naming it, never the page."""
    where = f" (region {region})" if region else ""
    return AwsError(
        f"the AWS endpoint {endpoint_url}{where} answered HTTP {status} with a web page,"
        " not an AWS API response",
        hint=ENDPOINT_HINT,
    )


def _unreachable(endpoint_url: str) -> AwsError:
    """An endpoint that did not answer: a region that does not exist is said so."""
    found = re.match(
        r"[a-z]+://[^/]*?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?:[:/]|$)", endpoint_url
    )
    region = found[1] if found else None
    if region and region not in _known_regions():
        return AwsError(
            f"{region!r} is not an AWS region: could not reach {endpoint_url}", hint=ENDPOINT_HINT
        )
    return AwsError(f"could not reach the AWS endpoint {endpoint_url}", hint=ENDPOINT_HINT)


def _known_regions() -> set[str]:
    """The regions botocore's endpoint data lists, in every partition (only read on an error)."""
    from botocore.session import get_session

    session = get_session()
    return {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition)
    }


def is_throttling(exc: BaseException) -> bool:
    """An AWS error that says "slow down" (one of :data:`THROTTLING_CODES`)."""
    return aws_error_code(exc) in THROTTLING_CODES


def translate(exc: BaseException) -> MigctlError | None:
    """Map a library exception to a MigctlError, or None when it is not one we know.

    botocore and psycopg are looked up in ``sys.modules`` rather than imported,
    so this module stays import-free and ``migctl --help`` stays fast.
    """
    if isinstance(exc, MigctlError):
        return exc
    botocore_exc = sys.modules.get("botocore.exceptions")
    if botocore_exc is not None:
        if isinstance(exc, botocore_exc.ClientError):
            code = aws_error_code(exc) or "Unknown"
            op = getattr(exc, "operation_name", "call")
            message = aws_error_message(exc)
            if looks_like_html(message):  # a client built without the check of migctl.aws
                message = "the endpoint answered with a web page, not an AWS error"
                return AwsError(f"AWS {op} failed: {code}: {message}", hint=ENDPOINT_HINT)
            return AwsError(f"AWS {op} failed: {code}: {message}".strip())
        if isinstance(exc, botocore_exc.NoCredentialsError):
            return AwsError(
                "no AWS credentials found",
                hint="set --profile, AWS_PROFILE or the AWS_ACCESS_KEY_ID pair",
            )
        if isinstance(exc, botocore_exc.NoRegionError):
            return ConfigError("no AWS region set", hint="use --region or [project] region")
        if isinstance(exc, botocore_exc.ProfileNotFound):
            return ConfigError(str(exc))
        if isinstance(exc, botocore_exc.EndpointConnectionError):
            return _unreachable(str(exc.kwargs.get("endpoint_url", "")))
        if isinstance(exc, botocore_exc.BotoCoreError):
            return AwsError(f"AWS call failed: {exc}")
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return DatabaseError(f"database error: {redact_text(str(exc))}")
    return None
