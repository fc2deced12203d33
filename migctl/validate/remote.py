"""The validation Lambda's entry point: the same checksum SQL, run next to the database in the VPC.

``infra_pulumi/lambdas/validation/handler.py`` calls ``handle(event, context)``.
Payloads are versioned; an unknown version or action gets an error payload,
never an exception, so the caller always gets JSON back::

    {"version": 1, "action": "checksum", "side": "source" | "target",
     "secret_arn": "arn:...",            # or env SOURCE_SECRET_ARN / TARGET_SECRET_ARN
     "plan": ChecksumPlan.to_dict(), "buckets": Buckets.to_dict(),
     "statement_timeout_seconds": 600}
    -> {"version": 1, "ok": true, "action": "checksum", "side": ..., "algorithm": ...,
        "server_version": 150004, "rows": 123,
        "buckets": [{"bucket": 0, "rows": 100, "checksum": "123..."}]}

Checksums are strings: they exceed what a JSON number holds exactly. A
``dsn`` field is accepted instead of a secret for local tests.
"""

from __future__ import annotations

import os
from typing import Any

from migctl.errors import MigctlError, translate
from migctl.redact import redact_text

PAYLOAD_VERSION = 1
ACTIONS = ("checksum",)


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Dispatch one payload; every failure becomes ``{"ok": false, "error": ...}``."""
    if not isinstance(event, dict) or event.get("version") != PAYLOAD_VERSION:
        version = event.get("version") if isinstance(event, dict) else None
        return _error(
            f"unsupported payload version {version!r}; this handler speaks version {PAYLOAD_VERSION}"
        )
    action = event.get("action")
    if action not in ACTIONS:
        return _error(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    try:
        return _checksum(event)
    except Exception as exc:
        err = translate(exc)
        message = err.one_line() if err else f"{type(exc).__name__}: {exc}"
        return _error(message, action=action)


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"version": PAYLOAD_VERSION, "ok": False, **extra, "error": redact_text(message)}


def _dsn(event: dict[str, Any], side: str) -> str:
    if event.get("dsn"):
        return str(event["dsn"])
    arn = event.get("secret_arn") or os.environ.get(f"{side.upper()}_SECRET_ARN")
    if not arn:
        raise MigctlError(
            f"no secret for the {side}: give secret_arn or set {side.upper()}_SECRET_ARN"
        )
    import boto3

    from migctl.secrets import read_db_credentials

    return read_db_credentials(boto3.client("secretsmanager"), str(arn)).dsn()


def _checksum(event: dict[str, Any]) -> dict[str, Any]:
    from migctl.validate.checksum import Buckets, ChecksumPlan, bucket_checksums
    from migctl.validate.session import SessionOptions, Side

    side_name = event.get("side")
    if side_name not in ("source", "target"):
        raise MigctlError(f"side must be 'source' or 'target', not {side_name!r}")
    plan = ChecksumPlan.from_dict(event.get("plan") or {})
    buckets = Buckets.from_dict(event.get("buckets") or {})
    timeout = int(event.get("statement_timeout_seconds", 600))
    side = Side(
        _dsn(event, side_name), side_name, SessionOptions(statement_timeout_seconds=timeout)
    )
    try:
        sums = bucket_checksums(side.execute, plan, buckets)
        version = side.server_version
    finally:
        side.close()
    return {
        "version": PAYLOAD_VERSION,
        "ok": True,
        "action": "checksum",
        "side": side_name,
        "algorithm": plan.algorithm,
        "server_version": version,
        "rows": sum(s.rows for s in sums.values()),
        "buckets": [
            {"bucket": s.bucket, "rows": s.rows, "checksum": str(s.checksum)} for s in sums.values()
        ],
    }
