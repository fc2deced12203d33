"""The only place that builds boto3 sessions and clients.

Core functions take the clients built here as arguments; tests hand them moto
clients instead. boto3 is imported inside the functions so that ``migctl
--help`` never loads it. boto3's own ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` keep working: nothing here sets an endpoint, so
botocore reads them as usual.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal, overload

from migctl import __version__
from migctl.config import ProjectSettings
from migctl.errors import endpoint_error, looks_like_html

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dms import DatabaseMigrationServiceClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sts import STSClient

USER_AGENT = f"migctl/{__version__}"
# Per-service client settings. `validate --executor lambda` keeps up to 50
# synchronous invocations in flight (botocore pools 10 connections by default),
# and an invocation may run up to the function's timeout (botocore reads for 60 s).
SERVICE_CONFIG: dict[str, dict[str, Any]] = {
    "lambda": {"max_pool_connections": 64, "read_timeout": 900},
}


class AwsClients:
    """A boto3 session from profile and region, and cached clients built from it.

    Clients use botocore's ``standard`` retry mode, which backs off on
    throttling; migctl adds no retry layer of its own on top of it.
    """

    def __init__(self, project: ProjectSettings, *, max_attempts: int = 8) -> None:
        self._project = project
        self._max_attempts = max_attempts
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            import boto3

            self._session = boto3.Session(
                profile_name=self._project.profile, region_name=self._project.region
            )
        return self._session

    @overload
    def client(self, service: Literal["cloudwatch"]) -> CloudWatchClient: ...
    @overload
    def client(self, service: Literal["dms"]) -> DatabaseMigrationServiceClient: ...
    @overload
    def client(self, service: Literal["ecs"]) -> ECSClient: ...
    @overload
    def client(self, service: Literal["elbv2"]) -> ElasticLoadBalancingv2Client: ...
    @overload
    def client(self, service: Literal["lambda"]) -> LambdaClient: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
    @overload
    def client(self, service: Literal["sns"]) -> SNSClient: ...
    @overload
    def client(self, service: Literal["sts"]) -> STSClient: ...
    @overload
    def client(self, service: str) -> Any: ...
    def client(self, service: str) -> Any:
        """A cached client, typed by its service name; pass it on to core functions."""
        with self._lock:
            if service not in self._clients:
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": self._max_attempts},
                    user_agent_extra=USER_AGENT,
                    **SERVICE_CONFIG.get(service, {}),
                )
                client = self.session.client(service, config=config)  # type: ignore[call-overload]
                client.meta.events.register("before-parse", _refuse_web_pages(client))
                self._clients[service] = client
            return self._clients[service]


def _refuse_web_pages(client: Any) -> Any:
    """A ``before-parse`` hook: an HTML answer (a wrong region or endpoint URL: a proxy, a web
    server) is one :class:`~migctl.errors.AwsError`, never the page itself or an empty
    result that botocore would parse out of it."""

    def check(response_dict: dict[str, Any], **_: Any) -> None:
        body = response_dict.get("body")
        if isinstance(body, bytes) and looks_like_html(body):
            raise endpoint_error(
                client.meta.endpoint_url, client.meta.region_name, response_dict["status_code"]
            )

    return check
