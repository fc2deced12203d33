"""Database credentials from a Secrets Manager secret.

The secret is the JSON form RDS writes for a managed master password
(``{"username", "password", ...}``), optionally with ``host``, ``port`` and
``dbname`` (the DMS and hand-made forms). The password is registered with
:mod:`migctl.redact` the moment it is read, and never shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.errors import AwsError, ConfigError, translate
from migctl.redact import register_secret

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@dataclass(frozen=True)
class DbCredentials:
    username: str
    password: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None

    def dsn(self) -> str:
        from psycopg.conninfo import make_conninfo

        params: dict[str, Any] = {"user": self.username, "password": self.password}
        if self.host:
            params["host"] = self.host
        if self.port:
            params["port"] = self.port
        if self.dbname:
            params["dbname"] = self.dbname
        return make_conninfo("", **params)


def read_db_credentials(secretsmanager: SecretsManagerClient, secret_arn: str) -> DbCredentials:
    """Read and parse one secret; a malformed secret is a ConfigError (exit 2)."""
    try:
        response = secretsmanager.get_secret_value(SecretId=secret_arn)
    except Exception as exc:
        err = translate(exc)
        if err is None:
            raise
        raise AwsError(f"cannot read secret {secret_arn}: {err.message}") from None
    text = response.get("SecretString")
    if not text:
        raise ConfigError(f"secret {secret_arn} has no SecretString")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"secret {secret_arn} is not JSON") from None
    if not isinstance(data, dict) or not data.get("username") or "password" not in data:
        raise ConfigError(f"secret {secret_arn} lacks 'username' and 'password'")
    register_secret(str(data["password"]))
    port = data.get("port")
    return DbCredentials(
        username=str(data["username"]),
        password=str(data["password"]),
        host=data.get("host"),
        port=int(port) if port else None,
        dbname=data.get("dbname") or data.get("dbName"),
    )
