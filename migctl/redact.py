"""Keep passwords out of output, logs and JSON.

Two layers: DSNs are rewritten to ``postgresql://user:***@host:port/db`` when
shown, and every secret value migctl reads at run time (for example from
Secrets Manager) is registered here so that :func:`redact_text` scrubs it from
any message, whatever its shape. The log handler installed by the CLI runs
every record through :func:`redact_text`.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlsplit

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


def redact_dsn(dsn: str) -> str:
    """Show a DSN as ``postgresql://user:***@host:port/db``, whatever form it came in."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        user = parts.username or ""
        host = parts.hostname or ""
        if host and ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        query = dict(parse_qsl(parts.query))
        host = host or query.get("host", "")
        if not port and "port" in query:
            port = f":{query['port']}"
        cred = f"{user}:{MASK}@" if user else ""
        return f"postgresql://{cred}{host}{port}{parts.path}"
    fields = _parse_keyword_dsn(dsn)
    user = fields.get("user", "")
    host = fields.get("host", fields.get("hostaddr", ""))
    port = f":{fields['port']}" if "port" in fields else ""
    db = fields.get("dbname", "")
    cred = f"{user}:{MASK}@" if user else ""
    return f"postgresql://{cred}{host}{port}/{db}"


def _parse_keyword_dsn(dsn: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for match in re.finditer(r"(\w+)\s*=\s*('(?:\\.|[^'])*'|\S+)", dsn):
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        fields[match.group(1)] = value
    return fields
