"""What ``migctl validate`` found: frozen result dataclasses, rendered by ``migctl.render.validate``.

A key is a tuple of the key columns' values in key order: integers as ``int``,
every other type as its PostgreSQL text form under the pinned session
settings (see ``session.PINNED_SETTINGS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from migctl.pgnames import TableName, show, show_part

Key = tuple[int | str, ...]

TableStatus = Literal["match", "mismatch", "missing_in_target", "missing_in_source", "error"]
SequenceStatus = Literal["match", "ahead", "behind", "missing_in_target"]
Method = Literal["range", "hash", "multiset"]

#: How data is compared when both sides have the table: by integer key ranges,
#: by key-hash buckets (text, uuid, composite keys), or as a multiset (no key).
METHODS: tuple[Method, ...] = ("range", "hash", "multiset")


@dataclass(frozen=True, kw_only=True)
class TableResult:
    """One table's verdict. ``name`` is its (schema, table) pair; ``table`` the text form."""

    name: TableName
    status: TableStatus
    source_rows: int | None = None
    target_rows: int | None = None
    missing_in_target_count: int = 0
    missing_in_source_count: int = 0
    changed_count: int = 0
    missing_in_target: tuple[Key, ...] = ()
    missing_in_source: tuple[Key, ...] = ()
    changed: tuple[Key, ...] = ()
    schema_differences: tuple[str, ...] = ()
    method: Method | None = None
    key_columns: tuple[str, ...] = ()
    chunks: int = 0
    differing_chunks: int = 0
    queries: int = 0
    retries: int = 0
    duration_seconds: float = 0.0
    error: str | None = None
    # rows whose stored forms differ but whose values PostgreSQL calls equal (jsonb 1.0 and 1.00)
    equal_by_value_count: int = 0
    # Each side's table_digest (rows:sum of row hashes), where the whole table was hashed
    source_digest: str | None = None
    target_digest: str | None = None

    @property
    def table(self) -> str:
        """``schema.table``, each part quoted when needed (``a."b.c"``)."""
        return show(self.name)

    @property
    def data_match(self) -> bool:
        """Rows equal on the shared columns (a schema difference alone does not clear this)."""
        return (
            self.status in ("match", "mismatch")
            and self.error is None
            and self.source_rows == self.target_rows
            and self.missing_in_target_count == 0
            and self.missing_in_source_count == 0
            and self.changed_count == 0
        )

    @property
    def ok(self) -> bool:
        return self.status == "match"


@dataclass(frozen=True, kw_only=True)
class SequenceResult:
    """One source sequence against the target's.

    ``*_last_value`` are the raw ``last_value`` of each side; whether it was
    handed out yet is in ``*_is_called``. ``column_max`` is the largest value
    (smallest for descending sequences) of the owning column on either side.
    ``name`` is the (schema, sequence) pair, ``owner`` the owning (schema, table)
    and ``owner_column`` its column.
    """

    name: TableName
    status: SequenceStatus
    source_last_value: int | None
    target_last_value: int | None
    source_is_called: bool = False
    target_is_called: bool = False
    owner: TableName | None = None
    owner_column: str | None = None
    column_max: int | None = None
    increment: int = 1

    @property
    def sequence(self) -> str:
        return show(self.name)

    @property
    def owned_by(self) -> str | None:
        """``schema.table.column`` of the owning column, parts quoted when needed."""
        if self.owner is None or self.owner_column is None:
            return None
        return f"{show(self.owner)}.{show_part(self.owner_column)}"

    @property
    def ok(self) -> bool:
        return self.status in ("match", "ahead")


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    source: str  # redacted DSN
    target: str  # redacted DSN
    duration_seconds: float
    tables: tuple[TableResult, ...]
    sequences: tuple[SequenceResult, ...] = ()
    algorithm: str = "chain64"
    source_version: int | None = None
    target_version: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables) and all(s.ok for s in self.sequences)

    @property
    def errored(self) -> tuple[TableResult, ...]:
        return tuple(t for t in self.tables if t.status == "error")

    @property
    def exit_code(self) -> int:
        """0 all match, 1 any difference, 3 when a comparison could not complete."""
        if self.errored:
            return 3
        return 0 if self.ok else 1


Phase = Literal["start", "checksumming", "scanned", "narrowing", "done"]


@dataclass(frozen=True)
class Progress:
    """One step of one table, for a progress display; ``result`` is set when ``phase == "done"``."""

    table: str
    phase: Phase
    source_rows: int | None = None
    target_rows: int | None = None
    chunks: int = 0
    differing_chunks: int = 0
    chunks_done: int = 0
    elapsed_seconds: float = 0.0
    result: TableResult | None = None
    in_flight: int | None = None  # invocations in flight (lambda executors only)

    @classmethod
    def done(cls, result: TableResult, elapsed_seconds: float) -> Progress:
        """The last step of a table, carrying its result."""
        return cls(
            result.table,
            "done",
            result.source_rows,
            result.target_rows,
            result.chunks,
            result.differing_chunks,
            result.differing_chunks,
            elapsed_seconds,
            result,
        )
