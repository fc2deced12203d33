"""The only place that builds boto3 sessions and clients.

Core functions take the clients built here as arguments; tests hand them moto
clients instead. boto3 is imported inside the functions so that ``migctl
--help`` never loads it. boto3's own ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` keep working: nothing here sets an endpoint, so
botocore reads them as usual.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from migctl import __version__
from migctl.config import ProjectSettings

if TYPE_CHECKING:
    import boto3

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

    def client(self, service: str) -> Any:
        """A cached client; pass it on to core functions."""
        with self._lock:
            if service not in self._clients:
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": self._max_attempts},
                    user_agent_extra=USER_AGENT,
                    **SERVICE_CONFIG.get(service, {}),
                )
                self._clients[service] = self.session.client(service, config=config)  # type: ignore[call-overload]
            return self._clients[service]
