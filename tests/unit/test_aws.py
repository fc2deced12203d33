"""aws.py: how boto3 clients are configured."""

from __future__ import annotations

from migctl.aws import USER_AGENT, AwsClients
from migctl.config import ProjectSettings


def test_lambda_client_can_hold_many_long_invocations(aws: None) -> None:
    config = AwsClients(ProjectSettings(region="us-east-1")).client("lambda").meta.config
    assert config.max_pool_connections >= 50 and config.read_timeout >= 900
    assert config.retries["mode"] == "standard"


def test_every_client_uses_standard_retries_and_the_migctl_user_agent(aws: None) -> None:
    clients = AwsClients(ProjectSettings(region="us-east-1"))
    config = clients.client("cloudwatch").meta.config
    assert config.retries["mode"] == "standard" and USER_AGENT in config.user_agent_extra
    assert clients.client("cloudwatch") is clients.client("cloudwatch")
