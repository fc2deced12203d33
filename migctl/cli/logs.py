"""Where log records go: stderr by ``-q``/``-v``/``-vv``, and ``--log-file`` as JSON lines.

Two handlers on the root logger, each with its own threshold for migctl's own
loggers (``migctl.*``) and for the libraries' (botocore, psycopg, urllib3, ...):

========== ================= ==================
            migctl            libraries
========== ================= ==================
``-q``      ERROR             ERROR
(default)   WARNING           WARNING
``-v``      INFO              WARNING
``-vv``     DEBUG             DEBUG
log file    DEBUG             INFO
========== ================= ==================

The log file's threshold does not depend on ``-q`` or ``-v``. Every line of
both goes through :func:`migctl.redact.redact_text`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import IO

from migctl.errors import UsageError

OWN = "migctl"
_installed: list[logging.Handler] = []  # the handlers set up here, to close the log file


def _is_own(name: str) -> bool:
    return name == OWN or name.startswith(OWN + ".")


class Threshold(logging.Filter):
    """Pass a record at or above its threshold: one for migctl's loggers, one for the rest."""

    def __init__(self, own: int, libraries: int) -> None:
        super().__init__()
        self.own, self.libraries = own, libraries

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= (self.own if _is_own(record.name) else self.libraries)


class Redacting(logging.Formatter):
    """``LEVEL logger: message`` on stderr, with passwords and registered secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        from migctl.redact import redact_text

        return redact_text(super().format(record))


class JsonLines(logging.Formatter):
    """One JSON object a line: ``ts`` (ISO-8601, UTC), ``level``, ``logger``, ``message`` and,
    when the record carries one, ``exception``; every value and the line itself redacted."""

    def format(self, record: logging.LogRecord) -> str:
        from migctl.redact import redact_text

        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return redact_text(json.dumps(entry, ensure_ascii=False))


def stderr_thresholds(verbose: int, quiet: bool) -> tuple[int, int]:
    """(migctl's, the libraries') threshold on stderr."""
    if quiet:
        return logging.ERROR, logging.ERROR
    if verbose >= 2:
        return logging.DEBUG, logging.DEBUG
    if verbose == 1:
        return logging.INFO, logging.WARNING
    return logging.WARNING, logging.WARNING


def open_log_file(path: Path) -> IO[str]:
    """Open ``path`` for appending (created 0600); an unwritable path is a UsageError (exit 2)."""
    target = path.expanduser()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise UsageError(
            f"--log-file {path}: cannot write it: {exc.strerror or exc}",
            hint="name a file in a folder that exists and that you may write to",
        ) from None
    return os.fdopen(fd, "a", encoding="utf-8")


def setup_logging(verbose: int, *, quiet: bool = False, log_file: Path | None = None) -> None:
    """Install the stderr handler and, with ``log_file``, the JSON-lines file handler."""
    from migctl.redact import hide_http_bodies

    if quiet and verbose:
        raise UsageError("-q/--quiet and -v/--verbose cannot be used together")
    stream: IO[str] | None = open_log_file(log_file) if log_file is not None else None
    close_handlers()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(Redacting("%(levelname)s %(name)s: %(message)s"))
    own, libraries = stderr_thresholds(verbose, quiet)
    console.addFilter(Threshold(own, libraries))
    handlers: list[logging.Handler] = [console]
    if stream is not None:
        file_handler = logging.StreamHandler(stream)
        file_handler.setFormatter(JsonLines())
        file_handler.addFilter(Threshold(logging.DEBUG, logging.INFO))
        handlers.append(file_handler)
        own, libraries = logging.DEBUG, min(libraries, logging.INFO)
    if libraries <= logging.DEBUG:
        hide_http_bodies()  # before any AWS call: a body can hold a secret not yet read
    root_logger = logging.getLogger()
    root_logger.handlers[:] = handlers
    root_logger.setLevel(libraries)
    logging.getLogger(OWN).setLevel(own)
    _installed[:] = handlers


def to_log_file(level: int, message: str, exc: BaseException | None = None) -> None:
    """A record for the log file only (if one is open): what stderr already says another way,
    such as the one-line error and the exit code."""
    for handler in _installed:
        if isinstance(handler.formatter, JsonLines):
            exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
            record = logging.LogRecord(
                "migctl.cli", level, __file__, 0, message, None, exc_info, "run"
            )
            handler.handle(record)


def close_handlers() -> None:
    """Take the handlers installed here off the root logger, and close the log file."""
    root_logger = logging.getLogger()
    for handler in _installed:
        root_logger.removeHandler(handler)
        handler.close()
        if isinstance(handler.formatter, JsonLines):  # the log file; stderr stays open
            stream = getattr(handler, "stream", None)
            if stream is not None:
                stream.close()
    _installed.clear()
