"""PostgreSQL names: quoted for SQL, shown for people, matched by globs. Always (schema, name) pairs.

A table is identified by its schema and name, never by a joined string:
schema ``a`` with table ``"b.c"`` and schema ``"a.b"`` with table ``c`` are
two tables. Their text form quotes a part when PostgreSQL would need it
(``a."b.c"``, ``"a.b".c``), so the text form is unambiguous too.

SQL built from names goes through :func:`ident`, which also doubles ``%``:
psycopg reads ``%`` as a placeholder in any query executed with parameters,
so every query that embeds a name must be executed with parameters (an empty
list when it has none). Nothing here imports psycopg at module level.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from migctl.errors import UsageError

if TYPE_CHECKING:
    from psycopg import sql

TableName = tuple[str, str]  # (schema, name)

_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*\Z")
_GLOB_CHARS = frozenset("*?[")


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier, ``%`` doubled for a query run with parameters."""
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


def ident(*parts: str) -> sql.Composable:
    """A (possibly qualified) identifier for psycopg's ``sql`` composition, safe with ``%``."""
    from psycopg import sql

    return sql.SQL(".".join(quote_ident(p) for p in parts))


def show_part(part: str) -> str:
    """One name as people read it: bare when PostgreSQL would not need quotes, else quoted."""
    if _PLAIN.match(part):
        return part
    return '"' + part.replace('"', '""') + '"'


def show(name: TableName) -> str:
    """``schema.table``, each part quoted only when needed: ``public.payments``, ``a."b.c"``."""
    return f"{show_part(name[0])}.{show_part(name[1])}"


def split_pattern(pattern: str) -> tuple[str | None, str]:
    """A table pattern as (schema glob or None, table glob), split at its first unquoted dot.

    Double quotes make a part literal (``"a.b".c``, ``public."pay*"``), with
    ``""`` for a quote inside; outside quotes, ``*``, ``?`` and ``[...]`` are
    globs. A pattern without an unquoted dot names tables in any schema.
    """
    parts: list[str] = [""]
    i, quoted = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if quoted and pattern[i + 1 : i + 2] == '"':
                parts[-1] += _literal('"')
                i += 2
                continue
            quoted = not quoted
        elif quoted:
            parts[-1] += _literal(ch)
        elif ch == "." and len(parts) == 1:
            parts.append("")
        else:
            parts[-1] += ch
        i += 1
    if quoted:
        raise UsageError(f"table pattern {pattern!r} has an unclosed double quote")
    if any(not p for p in parts):
        raise UsageError(f"table pattern {pattern!r} has an empty part")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _literal(ch: str) -> str:
    """One character that matches only itself in an fnmatch pattern."""
    return f"[{ch}]" if ch in "*?[]" else ch


def is_glob(pattern: str) -> bool:
    """Does the pattern hold a wildcard outside double quotes?"""
    quoted = False
    for ch in pattern:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in _GLOB_CHARS:
            return True
    return False


def matches(name: TableName, pattern: str) -> bool:
    """``public.pay*`` matches schema and table; ``pay*`` (no unquoted dot) the table in any schema."""
    schema_glob, table_glob = split_pattern(pattern)
    if schema_glob is not None and not fnmatch.fnmatchcase(name[0], schema_glob):
        return False
    return fnmatch.fnmatchcase(name[1], table_glob)
