"""The validation Lambda's entry point: the same ``migctl.validate`` code, run next to the database.

``infra_pulumi/lambdas/validation/handler.py`` calls ``handle(event, context)``;
``--executor lambda-local`` calls it in worker processes. The payload schema
(version 1) is described in ``payloads.py``; every answer carries
``"version"`` and ``"ok"``. An unknown version or action, a bad plan or a
database failure all become an error payload, never an exception, so the
caller always gets JSON back::

    {"version": 1, "action": "checksum", "side": "source" | "target",
     "secret_arn": "arn:...",     # or env SOURCE_SECRET_ARN / TARGET_SECRET_ARN
     "plan": ChecksumPlan.to_dict(), "buckets": Buckets.to_dict(), "deadline_seconds": 60}
    -> {"version": 1, "ok": true, "action": "checksum", "side": ..., "algorithm": ...,
        "server_version": 150004, "rows": 123,
        "buckets": [{"bucket": 0, "rows": 100, "checksum": "123..."}]}

Credentials are read from Secrets Manager at run time (``secret_arn``,
``source_secret_arn``/``target_secret_arn`` or the function's environment);
``dsn`` / ``source_dsn`` / ``target_dsn`` are accepted instead for local runs.
Each invocation has a deadline: the payload's ``deadline_seconds``, cut to
what the Lambda has left minus a margin; it becomes the statement timeout and
narrowing stops between steps once it has passed.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from migctl.errors import MigctlError, translate
from migctl.pgnames import ident
from migctl.redact import redact_text
from migctl.secrets import read_db_credentials
from migctl.validate.catalog import read_catalog
from migctl.validate.checksum import Buckets, ChecksumPlan, bucket_checksums, chunk_bounds
from migctl.validate.narrow import Tally, resolve_hash, resolve_ranges
from migctl.validate.payloads import (
    ACTIONS,
    PAYLOAD_VERSION,
    catalog_to_dict,
    sequence_to_dict,
    tally_to_dict,
)
from migctl.validate.sequences import compare_sequences, select_sequences
from migctl.validate.session import Pair, SessionOptions, Side, on_both_sides
from migctl.validate.table import estimate_rows

DEFAULT_DEADLINE_SECONDS = 600
MARGIN_SECONDS = 15  # kept back from the function timeout: answer with an error, not a kill


class DeadlineExceeded(MigctlError):
    """The invocation ran out of its time before finishing its unit of work."""


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
        deadline = Deadline.of(event, context)
        answer = _ACTIONS[action](event, deadline)
    except Exception as exc:
        err = translate(exc)
        message = err.one_line() if err else f"{type(exc).__name__}: {exc}"
        return _error(message, action=action)
    return {"version": PAYLOAD_VERSION, "ok": True, "action": action, **answer}


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"version": PAYLOAD_VERSION, "ok": False, **extra, "error": redact_text(message)}


class Deadline:
    """When this invocation must have answered (monotonic clock)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    @classmethod
    def of(cls, event: dict[str, Any], context: Any) -> Deadline:
        seconds = float(event.get("deadline_seconds", DEFAULT_DEADLINE_SECONDS))
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            seconds = min(seconds, remaining() / 1000 - MARGIN_SECONDS)
        if seconds < 1:
            raise DeadlineExceeded(f"no time left to work ({seconds:.1f} s)")
        return cls(seconds)

    @property
    def left(self) -> float:
        return self._at - time.monotonic()

    def check(self) -> None:
        if self.left <= 0:
            raise DeadlineExceeded(f"deadline of {self.seconds:.0f} s passed")

    def session(self) -> Any:

        # One try per query: the caller retries the whole invocation.
        return SessionOptions(statement_timeout_seconds=max(1, int(self.left)), retry_attempts=1)


def _dsn(event: dict[str, Any], side: str, *, single: bool) -> str:
    dsn = event.get(f"{side}_dsn") or (event.get("dsn") if single else None)
    if dsn:
        return str(dsn)
    arn = (
        event.get(f"{side}_secret_arn")
        or (event.get("secret_arn") if single else None)
        or os.environ.get(f"{side.upper()}_SECRET_ARN")
    )
    if not arn:
        raise MigctlError(
            f"no secret for the {side}: give secret_arn or set {side.upper()}_SECRET_ARN"
        )
    import boto3

    return read_db_credentials(boto3.client("secretsmanager"), str(arn)).dsn()


def _side_name(event: dict[str, Any]) -> str:
    side_name = event.get("side")
    if side_name not in ("source", "target"):
        raise MigctlError(f"side must be 'source' or 'target', not {side_name!r}")
    return str(side_name)


def _one_side(event: dict[str, Any], deadline: Deadline) -> Any:

    name = _side_name(event)
    return Side(_dsn(event, name, single=True), name, deadline.session())


def _pair(event: dict[str, Any], deadline: Deadline) -> Any:

    options = deadline.session()
    return Pair(
        Side(_dsn(event, "source", single=False), "source", options),
        Side(_dsn(event, "target", single=False), "target", options),
    )


def _checksum(event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:

    plan = ChecksumPlan.from_dict(event.get("plan") or {})
    buckets = Buckets.from_dict(event.get("buckets") or {})
    side = _one_side(event, deadline)
    try:
        sums = bucket_checksums(side.execute, plan, buckets)
        version = side.server_version
    finally:
        side.close()
    return {
        "side": side.label,
        "algorithm": plan.algorithm,
        "server_version": version,
        "rows": sum(s.rows for s in sums.values()),
        "buckets": [
            {"bucket": s.bucket, "rows": s.rows, "checksum": str(s.checksum)} for s in sums.values()
        ],
    }


def _plan(event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
    """Cheap metadata: the catalog with a row estimate per table; key bounds when asked."""

    side = _one_side(event, deadline)
    try:
        answer: dict[str, Any] = {"side": side.label}
        schemas = event.get("schemas")
        if schemas:
            catalog = read_catalog(side.conn, [str(s) for s in schemas])
            for name, table in list(catalog.tables.items()):
                if table.estimated_rows < 0:  # never vacuumed nor analyzed: guess from the size
                    estimate = estimate_rows(side, table)
                    catalog.tables[name] = replace(table, estimated_rows=estimate)
            answer["catalog"] = catalog_to_dict(catalog)
        bounds = []
        for request in event.get("bounds") or ():
            deadline.check()
            plan = ChecksumPlan.from_dict(request["plan"])
            count, percent = int(request["count"]), float(request["percent"])
            rows = float(request.get("rows", 0))  # absent from older callers: sample
            bounds.append(list(chunk_bounds(side.execute, plan, count, percent, rows)))
        answer["bounds"] = bounds
        side.new_snapshot()
    finally:
        side.close()
    return answer


def _count(event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
    from psycopg import sql

    side = _one_side(event, deadline)
    try:
        query = sql.SQL("SELECT count(*) FROM {}").format(
            ident(str(event["schema"]), str(event["table"]))
        )
        return {"side": side.label, "rows": int(side.execute(query)[0][0])}
    finally:
        side.close()


def _narrow(event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
    """Exact differing keys inside differing chunks: both sides, one snapshot each."""

    plan = ChecksumPlan.from_dict(event.get("plan") or {})
    max_keys = int(event.get("max_keys", 100))
    pair = _pair(event, deadline)
    tally = Tally(max_keys)
    try:
        with ThreadPoolExecutor(1, "narrow-side") as pool:

            def both(on_source: Any, on_target: Any) -> tuple[Any, Any]:
                deadline.check()
                return on_both_sides(pool, on_source, on_target)

            requests = list(event.get("chunks") or ())
            tallies = [Tally(max_keys) for _ in requests]
            if event.get("method") == "range":  # all together, as the local executor does
                chunks = [
                    (_chunk_range(chunk), _chunk_counts(chunk), found)
                    for chunk, found in zip(requests, tallies, strict=True)
                ]
                resolve_ranges(pair, plan, chunks, both, int(event["leaf_rows"]))
            else:
                for chunk, found in zip(requests, tallies, strict=True):
                    buckets = {int(b): (int(c[0]), int(c[1])) for b, c in chunk["buckets"]}
                    resolve_hash(
                        pair,
                        plan,
                        buckets,
                        int(chunk["bits"]),
                        found,
                        both,
                        int(event["stream_rows"]),
                    )
            for found in tallies:
                if not found.explained:
                    raise MigctlError("chunk checksums differ but no differing row was found")
                tally.absorb(found)
            deadline.check()
    finally:
        pair.close()
    return {"tally": tally_to_dict(tally)}


def _chunk_range(chunk: dict[str, Any]) -> tuple[int | None, int | None]:
    lo, hi = chunk.get("lo"), chunk.get("hi")
    return (None if lo is None else int(lo)), (None if hi is None else int(hi))


def _chunk_counts(chunk: dict[str, Any]) -> tuple[int, int]:
    return int(chunk["counts"][0]), int(chunk["counts"][1])


def _sequences(event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:

    schemas = [str(s) for s in event.get("schemas") or ()]
    pair = _pair(event, deadline)
    try:
        source_catalog = read_catalog(pair.source.conn, schemas)
        target_catalog = read_catalog(pair.target.conn, schemas)
        chosen = select_sequences(
            source_catalog,
            [(str(n[0]), str(n[1])) for n in event.get("names") or ()],
            [str(t) for t in event.get("tables") or ()],
            [str(x) for x in event.get("exclude") or ()],
        )
        results = compare_sequences(
            pair.source, pair.target, source_catalog, target_catalog, chosen
        )
    finally:
        pair.close()
    return {"sequences": [sequence_to_dict(s) for s in results]}


_ACTIONS = {
    "plan": _plan,
    "count": _count,
    "checksum": _checksum,
    "narrow": _narrow,
    "sequences": _sequences,
}
