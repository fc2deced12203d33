"""The only place that builds PostgreSQL connections, and where DSNs are read and resolved.

Core functions take the connections (or the :class:`Database` to open them
from) as arguments; tests hand them the harness's clusters. psycopg is
imported inside the functions so that ``migctl --help`` never loads it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.config import DatabaseSettings
from migctl.errors import ConfigError, DatabaseError, translate
from migctl.redact import dsn_password, redact_dsn, register_secret
from migctl.secrets import read_db_credentials

if TYPE_CHECKING:
    import psycopg

    from migctl.aws import AwsClients

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Database:
    """A resolved database: the DSN to connect with and the form that is safe to show."""

    dsn: str = field(repr=False)
    label: str = "database"

    @property
    def display(self) -> str:
        return redact_dsn(self.dsn)

    def __str__(self) -> str:
        return self.display


def resolve_database(
    db: DatabaseSettings,
    *,
    label: str,
    aws: AwsClients | None = None,
    dsn: str | None = None,
    secret_arn: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Database:
    """Find a database from flags (``dsn``/``secret_arn``), then config.

    Exactly one source is used, in this order: the ``dsn`` flag, the
    ``secret_arn`` flag, ``[label] dsn``, ``dsn_env``, ``secret_arn``.
    """
    env = os.environ if environ is None else environ
    if dsn:
        return Database(_with_overrides(dsn, db), label)
    arn = secret_arn
    if not arn:
        if db.dsn:
            return Database(_with_overrides(db.dsn, db), label)
        if db.dsn_env:
            value = env.get(db.dsn_env)
            if not value:
                raise ConfigError(f"[{label}] dsn_env names {db.dsn_env}, which is not set")
            return Database(_with_overrides(value, db), label)
        arn = db.secret_arn
    if not arn:
        raise ConfigError(
            f"no {label} database given",
            hint=f"use --{label} DSN, --{label}-secret ARN or [{label}] in migctl.toml",
        )
    if aws is None:
        raise ConfigError(f"{label}: a secret ARN needs AWS access")

    creds = read_db_credentials(aws.client("secretsmanager"), arn)
    return Database(_with_overrides(creds.dsn(), db), label)


def _with_overrides(dsn: str, db: DatabaseSettings) -> str:
    """The DSN, checked (a malformed or non-PostgreSQL one is exit 2 before anything connects),
    with ``[source]``/``[target]`` host, port, dbname and sslmode over it."""
    parse_dsn(dsn)
    overrides = {
        "host": db.host,
        "port": str(db.port) if db.port else None,
        "dbname": db.dbname,
        "sslmode": db.sslmode,
    }
    extra = {k: v for k, v in overrides.items() if v}
    if not extra:
        return dsn
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, **extra)


def is_loopback(host: str | None) -> bool:
    if not host or host.startswith("/"):
        return True  # Unix socket
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# libpq's words for a DSN it cannot parse, and what to say instead: its messages quote the
# offending token, which may be (part of) the password.
_DSN_PROBLEMS = (
    ("percent-encoded", "a %-escape is not % followed by two hex digits (write % as %25)"),
    ('missing "="', "a keyword has no '=' (quote a value holding spaces: password='a b')"),
    ("unterminated quoted string", "a quoted value has no closing quote"),
    ("IPv6", "an IPv6 host has no closing ']'"),
    ("invalid connection option", "it names an unknown keyword"),
    ("invalid URI query parameter", "it names an unknown query parameter"),
)
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def parse_dsn(dsn: str) -> dict[str, Any]:
    """libpq's reading of a DSN; a malformed one is a ConfigError (exit 2) that shows no value.

    The password is registered for masking first, even in a DSN libpq cannot
    parse, and no message quotes a piece of the DSN that could hold it.
    """
    from psycopg.conninfo import conninfo_to_dict

    register_secret(dsn_password(dsn))
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else None
    if scheme is not None and scheme not in _POSTGRES_SCHEMES:
        raise ConfigError(
            f"bad DSN {redact_dsn(dsn)}: {scheme}:// is not PostgreSQL",
            hint="use postgresql://user@host:port/db or host=... dbname=... keywords",
        )
    authority = dsn.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0] if scheme else ""
    if authority.count("@") > 1:
        raise ConfigError(
            f"bad DSN {redact_dsn(dsn)}: its user information holds an unencoded @ (write %40)"
        )
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError: its message may quote the password
        message = str(exc)
        why = next((say for key, say in _DSN_PROBLEMS if key in message), "libpq cannot read it")
        raise ConfigError(f"bad DSN {redact_dsn(dsn)}: {why}") from None
    register_secret(params.get("password"))
    ports = str(params.get("port") or "").split(",")
    if any(p.strip() and not p.strip().isdigit() for p in ports):
        raise ConfigError(f"bad DSN {redact_dsn(dsn)}: the port is not a number")
    return params


def connection_kwargs(dsn: str, *, application_name: str = "migctl") -> dict[str, Any]:
    """Parse a DSN and add migctl's defaults: application name, timeout, TLS off loopback."""
    params = parse_dsn(dsn)
    params.setdefault("application_name", application_name)
    params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    if "sslmode" not in params and not all(is_loopback(h.strip()) for h in hosts):
        params["sslmode"] = "require"
    return params


def connect(
    dsn: str | Database, *, application_name: str = "migctl", autocommit: bool = False
) -> psycopg.Connection[Any]:
    """Open a psycopg connection; failures become a one-line DatabaseError (exit 3)."""
    import psycopg

    raw = dsn.dsn if isinstance(dsn, Database) else dsn
    params = connection_kwargs(raw, application_name=application_name)
    log.info(  # the parts of the DSN that may be shown: never the password
        "connecting to %s port %s database %s as %s (sslmode %s)",
        params.get("host") or params.get("hostaddr") or "the local socket",
        params.get("port") or 5432,
        params.get("dbname") or "(the user's)",
        params.get("user") or "(the OS user)",
        params.get("sslmode") or "prefer",
    )
    try:
        return psycopg.connect(autocommit=autocommit, **params)
    except psycopg.Error as exc:
        err = translate(exc)
        message = err.message if err else str(exc)
        raise DatabaseError(f"cannot connect to {redact_dsn(raw)}: {message}") from None
