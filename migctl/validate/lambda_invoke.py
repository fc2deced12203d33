"""Invoking the validation function: over AWS Lambda, or in local worker processes, with retries.

An ``Invoker`` sends one JSON payload and returns the decoded answer. Two exist:

- :func:`lambda_invoker`: ``lambda:Invoke`` (``RequestResponse``) on the
  deployed function. ``TooManyRequestsException`` (throttling that outlived
  botocore's own retries) raises :class:`Throttled`; a ``FunctionError``
  (an exception, a timeout, an out-of-memory kill) raises
  :class:`InvocationFailed`.
- :class:`LocalInvoker`: the same handler in worker processes
  (``--executor lambda-local``); payload and answer cross the process
  boundary as JSON text, so whatever does not survive ``json`` fails here
  the way it would on AWS.

:class:`Fanout` runs invocations with at most ``concurrency`` in flight,
backs off on throttles, retries a failed invocation ``attempts`` times in all,
then raises :class:`ChunkFailed`, which fails the table: never a match.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migctl.errors import OperationalError, aws_error_code, is_throttling, translate
from migctl.redact import redact_text
from migctl.validate.lambda_handler import handle
from migctl.validate.payloads import check_answer

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

Invoker = Callable[[dict[str, Any]], dict[str, Any]]


class Throttled(Exception):
    """The service refused the invocation for now (``TooManyRequestsException``)."""


class InvocationFailed(Exception):
    """The invocation ran but did not answer ``ok``: a function error, a timeout, a database error."""


class ChunkFailed(OperationalError):
    """An invocation still failed after its retries."""


def lambda_invoker(client: LambdaClient, function_name: str) -> Invoker:
    """Invoke ``function_name`` synchronously with a boto3 ``lambda`` client."""
    from botocore.exceptions import ClientError

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = client.invoke(
                FunctionName=function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
        except ClientError as exc:
            if is_throttling(exc):
                raise Throttled(aws_error_code(exc) or "throttled") from None
            raise
        body = response["Payload"].read()
        if response.get("FunctionError"):
            try:
                detail = json.loads(body)
                message = f"{detail.get('errorType', 'Error')}: {detail.get('errorMessage', '')}"
            except (ValueError, AttributeError):
                message = body.decode(errors="replace")[:500]
            raise InvocationFailed(f"function error ({response['FunctionError']}): {message}")
        return check_answer(json.loads(body))

    return invoke


def _run_handler(payload_text: str) -> str:
    """In a worker process: the Lambda's own code path, JSON text in and out."""

    return json.dumps(handle(json.loads(payload_text), None))


class LocalInvoker:
    """The handler in ``workers`` local processes (forkserver: no threads or sockets inherited)."""

    def __init__(self, workers: int) -> None:

        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("forkserver")
        )

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:

        try:
            text = self._pool.submit(_run_handler, json.dumps(payload)).result()
        except BrokenProcessPool as exc:
            raise InvocationFailed(f"worker process died: {exc}") from None
        return check_answer(json.loads(text))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class CallStats:
    """Invocations and retries spent on one table."""

    invocations: int = 0
    retries: int = 0


class Fanout:
    """At most ``concurrency`` invocations in flight; throttles back off, failures retry."""

    def __init__(
        self,
        invoke: Invoker,
        concurrency: int,
        *,
        attempts: int = 3,
        max_throttles: int = 10,
        backoff_seconds: float = 0.25,
        max_backoff_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._invoke = invoke
        self._pool = ThreadPoolExecutor(max(1, concurrency), "invoke")
        self._lock = threading.Lock()
        self.attempts = max(1, attempts)
        self.max_throttles = max_throttles
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self.in_flight = 0
        self.throttles = 0

    def submit(self, payload: dict[str, Any], stats: CallStats) -> Future[dict[str, Any]]:
        return self._pool.submit(self.call, payload, stats)

    def call(self, payload: dict[str, Any], stats: CallStats) -> dict[str, Any]:
        """One logical invocation: retried until it answers ``ok`` or its attempts run out."""
        failures = throttles = 0
        while True:
            with self._lock:
                self.in_flight += 1
                stats.invocations += 1
            try:
                answer = self._invoke(payload)
                if answer.get("ok") is not True:
                    raise InvocationFailed(str(answer.get("error", "no error message")))
                return answer
            except Throttled:
                throttles += 1
                with self._lock:
                    self.throttles += 1
                if throttles > self.max_throttles:
                    raise ChunkFailed(
                        f"{payload.get('action')} invocation throttled {throttles} times"
                    ) from None
                delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (throttles - 1))
                self._sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
            except Exception as exc:
                failures += 1
                if failures >= self.attempts:
                    raise ChunkFailed(
                        redact_text(
                            f"{payload.get('action')} invocation failed {failures} times: "
                            f"{_describe(exc)}"
                        )
                    ) from None
                self._sleep(
                    min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (failures - 1))
                )
            finally:
                with self._lock:
                    self.in_flight -= 1
            with self._lock:
                stats.retries += 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvocationFailed | Throttled):
        return str(exc)

    err = translate(exc)
    return err.one_line() if err else f"{type(exc).__name__}: {exc}"
