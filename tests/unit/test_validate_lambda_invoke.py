"""The boto3 ``lambda:Invoke`` calls, checked against the Lambda service model with botocore's Stubber."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from migctl.errors import OperationalError
from migctl.validate.lambda_invoke import (
    CallStats,
    ChunkFailed,
    Fanout,
    InvocationFailed,
    Throttled,
    lambda_invoker,
)
from migctl.validate.payloads import PAYLOAD_VERSION as V
from tests.cli_support import Cli

FUNCTION = "migctl-validate-staging"
PAYLOAD = {"version": V, "action": "count", "side": "source", "schema": "public", "table": "t"}


def client_and_stubber() -> tuple[Any, Stubber]:
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    return client, Stubber(client)


def body(doc: Any) -> StreamingBody:
    data = json.dumps(doc).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def expected() -> dict[str, Any]:
    return {
        "FunctionName": FUNCTION,
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(PAYLOAD).encode(),
    }


def answer_ok() -> dict[str, Any]:
    return {"StatusCode": 200, "Payload": body({"version": V, "ok": True, "rows": 7})}


def unhandled() -> dict[str, Any]:
    error = {"errorMessage": "Task timed out after 900.00 seconds", "errorType": "Sandbox.Timedout"}
    return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body(error)}


def test_invoke_sends_the_json_payload_synchronously_and_decodes_the_answer() -> None:
    client, stubber = client_and_stubber()
    stubber.add_response("invoke", answer_ok(), expected())
    with stubber:
        assert lambda_invoker(client, FUNCTION)(PAYLOAD) == {"version": V, "ok": True, "rows": 7}
    stubber.assert_no_pending_responses()


def test_function_errors_and_throttles_are_told_apart() -> None:
    client, stubber = client_and_stubber()
    stubber.add_response("invoke", unhandled(), expected())
    stubber.add_client_error(
        "invoke", "TooManyRequestsException", "Rate exceeded", 429, expected_params=expected()
    )
    stubber.add_response(
        "invoke", {"StatusCode": 200, "Payload": body({"version": 9, "ok": True})}, expected()
    )
    invoke = lambda_invoker(client, FUNCTION)
    with stubber:
        with pytest.raises(InvocationFailed, match=r"Unhandled.*Sandbox\.Timedout: Task timed out"):
            invoke(PAYLOAD)
        with pytest.raises(Throttled):
            invoke(PAYLOAD)
        with pytest.raises(OperationalError, match="payload version 9"):
            invoke(PAYLOAD)


def test_fanout_backs_off_on_throttles_and_retries_a_timed_out_invocation() -> None:
    client, stubber = client_and_stubber()
    for _ in range(3):
        stubber.add_client_error(
            "invoke", "TooManyRequestsException", "Rate exceeded", 429, expected_params=expected()
        )
    stubber.add_response("invoke", unhandled(), expected())
    stubber.add_response("invoke", answer_ok(), expected())
    sleeps: list[float] = []
    fanout = Fanout(lambda_invoker(client, FUNCTION), 4, attempts=3, sleep=sleeps.append)
    stats = CallStats()
    with stubber:
        assert fanout.submit(PAYLOAD, stats).result()["rows"] == 7
    fanout.close()
    stubber.assert_no_pending_responses()
    assert (stats.invocations, stats.retries, fanout.throttles) == (5, 4, 3)
    assert 0.125 <= sleeps[0] <= 0.25 and 0.5 <= sleeps[2] <= 1.0  # 0.25 s doubling, with jitter
    assert fanout.in_flight == 0


def test_an_invocation_that_keeps_failing_raises_chunk_failed_after_its_attempts() -> None:
    client, stubber = client_and_stubber()
    for _ in range(3):
        stubber.add_response("invoke", unhandled(), expected())
    fanout = Fanout(lambda_invoker(client, FUNCTION), 2, attempts=3, sleep=lambda _: None)
    stats = CallStats()
    with stubber, pytest.raises(ChunkFailed, match="count invocation failed 3 times") as failed:
        fanout.call(PAYLOAD, stats)
    assert failed.value.exit_code == 3
    assert (stats.invocations, stats.retries) == (3, 2)
    stubber.assert_no_pending_responses()


def test_endless_throttling_gives_up_instead_of_hanging() -> None:
    def always_throttled(_: dict[str, Any]) -> dict[str, Any]:
        raise Throttled("TooManyRequestsException")

    sleeps: list[float] = []
    fanout = Fanout(always_throttled, 1, max_throttles=5, sleep=sleeps.append)
    with pytest.raises(ChunkFailed, match="throttled 6 times"):
        fanout.call(PAYLOAD, CallStats())
    assert len(sleeps) == 5 and max(sleeps) <= fanout.max_backoff_seconds


def test_cli_lambda_needs_a_function_and_a_known_executor(cli: Cli) -> None:
    missing = cli("validate", "--executor", "lambda")
    assert missing.code == 2
    assert "no validation function given" in missing.stderr
    assert "validationFunctionName" in missing.stderr
    unknown = cli("validate", "--executor", "spark")
    assert (
        unknown.code == 2
        and "--executor must be one of local | lambda | lambda-local, not 'spark'" in unknown.stderr
    )
