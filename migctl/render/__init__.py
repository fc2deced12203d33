"""Rendering lives here: result dataclasses -> rich tables for people, or JSON for machines.

One submodule per capability (``render/alarms.py``, ``render/validate.py``,
...) turns that capability's results into tables; this module holds what they
share. Rules:

- stdout carries data only: one JSON object for a snapshot, or JSON lines for
  a long-running command whose last line has ``"event": "result"``;
- progress, logs and errors go to stderr;
- progress (lines, live views, progress bars, notes, and the JSON lines before the result)
  goes through :attr:`Output.progress` and :meth:`Output.event`, the one place ``-q`` silences;
- no core module imports this package.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

#: The width of output that goes to a pipe or a file (CI, ``| tee``, a log) when ``COLUMNS``
#: does not say: wide enough that names are not folded at 80 columns.
PIPE_WIDTH = 200


def console_width(stream: IO[str], fixed: int | None = None) -> int | None:
    """The width to render at: a fixed one (tests), else ``COLUMNS``, else the terminal's
    (``None``: rich measures it), else :data:`PIPE_WIDTH` in a pipe or a file."""
    if fixed:
        return fixed
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    return None if isatty is not None and isatty() else PIPE_WIDTH


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, datetimes, decimals, enums, sets and paths to JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr
        }
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return (
            int(value) if value == value.to_integral_value() and value.is_finite() else str(value)
        )
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), separators=(",", ":"), ensure_ascii=False)


class Output:
    """Where a command writes: JSON or tables on stdout, everything else on stderr."""

    def __init__(
        self,
        fmt: str = "table",
        *,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        width: int | None = None,
        quiet: bool = False,
    ):
        self.json = fmt == "json"
        self.quiet = quiet  # -q: the result, warnings and errors only
        self._stdout = stdout
        self._stderr = stderr
        self._width = width  # fixed (tests' snapshots); else the terminal's, or 200 in a pipe
        self._out: Console | None = None
        self._err: Console | None = None
        self._silent: Console | None = None

    @property
    def out(self) -> Console:
        """Console on stdout, for tables (only used when not in JSON mode)."""
        if self._out is None:
            from rich.console import Console

            stream = self._stdout or sys.stdout
            width = console_width(stream, self._width)
            self._out = Console(file=stream, soft_wrap=False, width=width)
        return self._out

    @property
    def err(self) -> Console:
        """Console on stderr, for progress, notes and errors."""
        if self._err is None:
            from rich.console import Console

            stream = self._stderr or sys.stderr
            width = console_width(stream, self._width)
            self._err = Console(file=stream, soft_wrap=True, width=width)
        return self._err

    @property
    def progress(self) -> Console:
        """Console for progress: step lines, live views, progress bars and notes. With ``-q``
        it writes nowhere (and is no terminal, so no live view starts)."""
        if not self.quiet:
            return self.err
        if self._silent is None:
            import io

            from rich.console import Console

            self._silent = Console(file=io.StringIO(), quiet=True)
        return self._silent

    def emit(self, payload: Any) -> None:
        """Write one JSON document (a snapshot, or one line of a stream) to stdout."""
        stream = self._stdout or sys.stdout
        stream.write(dumps(payload) + "\n")
        stream.flush()

    def event(self, event: str, **fields: Any) -> None:
        """One JSON line of a long-running command; the last one is ``event="result"``.

        With ``-q`` only the result line is written."""
        if self.quiet and event != "result":
            return
        self.emit({"event": event, **fields})

    def note(self, message: str, *, style: str = "dim") -> None:
        """A progress note on stderr (not with ``-q``)."""
        self.progress.print(message, style=style, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {message}", style="yellow", markup=False, highlight=False)


def plain(text: str | None) -> str:
    """Text from AWS or a database, made safe for a rich markup string: ``[...]`` in it is
    printed as it is, never read as markup (a MarkupError, or words swallowed)."""
    from rich.markup import escape

    return escape(text or "")


def count(value: int | None) -> str:
    """A count for people: ``1,234,567`` (``-`` when unknown). JSON keeps the plain integer."""
    return "-" if value is None else f"{value:,}"


def fit_names(console: Console, table: Table, column: int = 0, least: int = 16) -> Table:
    """A table wider than the console gives up the width of its names column first (down to
    ``least``; the names are then shortened with …), before rich wraps the other columns."""
    from rich.measure import Measurement

    unbounded = console.options.update_width(1_000_000)  # the widths it would take, uncut
    excess = Measurement.get(console, unbounded, table).maximum - console.width
    if excess > 0:
        names = table.columns[column]
        widest = max(
            (Measurement.get(console, unbounded, cell).maximum for cell in names.cells),
            default=0,
        )
        names.max_width = max(least, widest - excess)
    return table


def ident(text: str | None, style: str = "") -> Text:
    """An identifier, a name or an ARN in a table cell: never folded in the middle, shortened
    with an ellipsis when the column is too narrow (the full value is in ``--output json``)."""
    from rich.text import Text

    return Text(text or "", style=style, no_wrap=True, overflow="ellipsis")


def state_style(state: str) -> str:
    """Colour a state word the same way in every table."""
    good = {"OK", "ok", "match", "completed", "COMPLETED", "running", "ahead", "done", "passed"}
    bad = {
        "ALARM",
        "mismatch",
        "failed",
        "FAILED",
        "behind",
        "errored",
        "missing_in_target",
        "missing_in_source",
    }
    if state in good:
        return "green"
    if state in bad:
        return "bold red"
    return "yellow"


def fmt_time(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
