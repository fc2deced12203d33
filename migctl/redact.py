"""Keep passwords out of output, logs and JSON.

Two layers: DSNs are rewritten to ``postgresql://user:***@host:port/db`` when
shown, and every secret value migctl reads at run time (for example from
Secrets Manager) is registered here so that :func:`redact_text` scrubs it from
any message, whatever its shape. The log handler installed by the CLI runs
every record through :func:`redact_text`.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote

MASK = "***"

_lock = threading.Lock()
_known_secrets: set[str] = set()

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@", re.I
)
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<q>'?)(?P<pw>(?:\\.|[^'\s])*)(?P=q)", re.I)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it later appears."""
    if value and len(value) >= 4:
        with _lock:
            _known_secrets.add(value)


def redact_text(text: str) -> str:
    """Mask URL and key=value passwords, and every registered secret, in free text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['key']}{m['q']}{MASK}{m['q']}", text)
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


#: Loggers that write HTTP bodies at DEBUG: botocore's request parameters and response bodies
#: (a GetSecretValue answer or a CreateSecret request holds a password in clear).
BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers")


class HideBodies(logging.Filter):
    """Replace the HTTP bodies in botocore's DEBUG records with their size.

    A body may hold a secret that migctl has not read yet, so masking known
    secrets is not enough: the body is not logged at all. Headers, URLs and
    status lines still are, for ``-vv`` bug reports.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_hide_body(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = _hide_body(record.args)
        return True


def _hide_body(value: Any) -> Any:
    """A response body (bytes), or a request's parameters with their body (of any shape), hidden."""
    if isinstance(value, bytes | bytearray):
        return _hidden(len(value))
    if isinstance(value, dict) and value.get("body"):
        body = value["body"]
        return {**value, "body": _hidden(len(body) if isinstance(body, bytes | str) else None)}
    return value


def _hidden(size: int | None) -> str:
    what = f"body of {size} bytes" if size is not None else "body"
    return f"<{what}, not logged: it may hold secrets>"


def hide_http_bodies() -> None:
    """Install :class:`HideBodies` on the loggers that would write bodies (idempotent)."""
    for name in BODY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideBodies) for f in logger.filters):
            logger.addFilter(HideBodies())


def redact_dsn(dsn: str) -> str:
    """Show a DSN as ``scheme://user:***@host:port/db``, whatever form it came in; never raises.

    URLs are split as libpq splits them (user information ends at the first
    ``@`` before any ``/``), not as ``urllib`` does: a ``#`` or a stray ``@``
    in a password cannot move the password into the host, port or path shown.
    """
    match = re.match(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.*)\Z", dsn, re.I | re.S)
    if match:
        scheme, rest = match["scheme"].lower(), match["rest"]
        stop = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, tail = rest[:stop], rest[stop:]
        user = ""
        if "@" in authority:
            userinfo, authority = authority.split("@", 1)
            user = userinfo.split(":", 1)[0]
            if "@" in authority:  # an unencoded @ in the password: show no part of it
                authority = authority.rsplit("@", 1)[1]
        path = tail.split("?", 1)[0] if tail.startswith("/") else ""
        query = dict(_query_pairs(tail.split("?", 1)[1])) if "?" in tail else {}
        host = authority or query.get("host", "")
        if "port" in query and host and not host.endswith("]") and ":" not in host:
            host = f"{host}:{query['port']}"
        if "dbname" in query and not path:
            path = f"/{query['dbname']}"
        cred = f"{user}:{MASK}@" if user else ""
        return f"{scheme}://{cred}{host}{path}"
    fields = _parse_keyword_dsn(dsn)
    user = fields.get("user", "")
    host = fields.get("host", fields.get("hostaddr", ""))
    port = f":{fields['port']}" if "port" in fields else ""
    db = fields.get("dbname", "")
    cred = f"{user}:{MASK}@" if user else ""
    return f"postgresql://{cred}{host}{port}/{db}"


def _query_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return []


def dsn_password(dsn: str) -> str | None:
    """The password a DSN seems to hold, even one libpq cannot parse: to register it early."""
    if "://" in dsn:
        match = re.match(r"[a-z][a-z0-9+.-]*://([^/?@]*:)([^/?]*)@", dsn, re.I)
        if match:
            return unquote(match[2])
        return dict(_query_pairs(dsn.split("?", 1)[1])).get("password") if "?" in dsn else None
    return _parse_keyword_dsn(dsn).get("password")


def _parse_keyword_dsn(dsn: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for match in re.finditer(r"(\w+)\s*=\s*('(?:\\.|[^'])*'|\S+)", dsn):
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        fields[match.group(1)] = value
    return fields
