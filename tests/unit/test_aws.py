"""aws.py: how boto3 clients are configured."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import botocore.exceptions
import pytest

from migctl.aws import USER_AGENT, AwsClients
from migctl.config import ProjectSettings
from migctl.errors import AwsError, translate
from tests.cli_support import Cli
from tests.conftest import AWS_TEST_ENV


def test_lambda_client_can_hold_many_long_invocations(aws: None) -> None:
    config = AwsClients(ProjectSettings(region="us-east-1")).client("lambda").meta.config
    assert config.max_pool_connections >= 50 and config.read_timeout >= 900
    assert config.retries["mode"] == "standard"


def test_every_client_uses_standard_retries_and_the_migctl_user_agent(aws: None) -> None:
    clients = AwsClients(ProjectSettings(region="us-east-1"))
    config = clients.client("cloudwatch").meta.config
    assert config.retries["mode"] == "standard" and USER_AGENT in config.user_agent_extra
    assert clients.client("cloudwatch") is clients.client("cloudwatch")


class _WebPage(http.server.BaseHTTPRequestHandler):
    """What a wrong endpoint answers with: a proxy's or web server's page, not an AWS API."""

    status = 404

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head><body>nope</body></html>"
        )
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(params=[404, 200])
def web_page_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers every request with an HTML page; stopped after."""
    handler = type("Handler", (_WebPage,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("command", [["alarms", "--prefix", "x"], ["dms", "status", "--task", "t"]])
def test_an_endpoint_that_answers_a_web_page_is_one_line_and_exit_3(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, web_page_endpoint: str, command: list[str]
) -> None:
    """A 404 page is not shown; a 200 page is not read as an empty answer ("no alarm")."""
    for key, value in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": web_page_endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    result = cli("--region", "mars-1", *command)
    assert result.code == 3, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"migctl: error: the AWS endpoint {web_page_endpoint} (region mars-1)"
    )
    assert "web page" in lines[0] and "--region" in lines[0]
    assert "<" not in lines[0] and "Traceback" not in result.stderr


def test_a_region_that_does_not_exist_is_named() -> None:
    exc = botocore.exceptions.EndpointConnectionError(
        endpoint_url="https://monitoring.mars-1.amazonaws.com/"
    )
    err = translate(exc)
    assert isinstance(err, AwsError) and err.exit_code == 3
    assert err.one_line().startswith(
        "'mars-1' is not an AWS region: could not reach https://monitoring.mars-1.amazonaws.com/"
    )
    known = translate(
        botocore.exceptions.EndpointConnectionError(
            endpoint_url="https://monitoring.eu-west-1.amazonaws.com/"
        )
    )
    assert known is not None and "not an AWS region" not in known.one_line()
    assert "could not reach the AWS endpoint" in known.one_line()
