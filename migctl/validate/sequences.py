"""Sequences: DMS does not carry them over, so after cutover the target's must not hand out used values.

For every source sequence the target's must stand at least at the source's
last value and at least at the largest value of the column that owns it
(``pg_depend``: serial and identity columns), on either side. ``last_value``
is read from the sequence itself with ``is_called``: a sequence that was
never called has handed out nothing yet, its next value is ``last_value``.
Descending sequences are compared the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from migctl.pgnames import TableName, ident, matches
from migctl.validate.catalog import Catalog, SequenceInfo
from migctl.validate.report import SequenceResult, SequenceStatus
from migctl.validate.session import Side, retry_unit


@dataclass(frozen=True)
class SequenceState:
    last_value: int
    is_called: bool
    increment: int

    @property
    def used(self) -> int:
        """The last value handed out, or the one just before the next value when never called."""
        return self.last_value if self.is_called else self.last_value - self.increment


def read_sequence(side: Side, schema: str, name: str, increment: int) -> SequenceState:
    query = sql.SQL("SELECT last_value, is_called FROM {}").format(ident(schema, name))
    last_value, is_called = retry_unit(lambda: side.execute(query)[0], side)
    return SequenceState(int(last_value), bool(is_called), increment)


def column_extreme(
    side: Side, owner: tuple[str, str, str], catalog: Catalog, descending: bool
) -> int | None:
    """max (min for descending sequences) of the owning column, when that side has it."""
    schema, table, column = owner
    info = catalog.tables.get((schema, table))
    if info is None or info.column(column) is None:
        return None
    query = sql.SQL("SELECT {}({}) FROM {}").format(
        sql.SQL("min" if descending else "max"),
        ident(column),
        ident(schema, table),
    )
    value = retry_unit(lambda: side.execute(query)[0][0], side)
    return int(value) if isinstance(value, int) else None


def sequence_status(
    source: SequenceState, target: SequenceState | None, column: int | None
) -> SequenceStatus:
    if target is None:
        return "missing_in_target"
    sign = 1 if source.increment > 0 else -1
    required = max(sign * source.used, sign * column) if column is not None else sign * source.used
    have = sign * target.used
    if have < required:
        return "behind"
    return "ahead" if have > sign * source.used else "match"


def select_sequences(
    catalog: Catalog, tables: Sequence[TableName], include: Sequence[str], exclude: Sequence[str]
) -> list[SequenceInfo]:
    """Sequences of the selected tables; with no --table filter, every sequence in the schemas."""
    chosen = set(tables)
    picked = []
    for seq in catalog.sequences.values():
        owner = seq.owner
        if include and owner not in chosen and not any(matches(seq.key, p) for p in include):
            continue
        if any(matches(seq.key, p) or (owner and matches(owner, p)) for p in exclude):
            continue
        picked.append(seq)
    return sorted(picked, key=lambda s: s.key)


def compare_sequences(
    source: Side,
    target: Side,
    source_catalog: Catalog,
    target_catalog: Catalog,
    sequences: Sequence[SequenceInfo],
) -> tuple[SequenceResult, ...]:
    results = []
    for seq in sequences:
        src = read_sequence(source, seq.schema, seq.name, seq.increment)
        other = target_catalog.sequences.get(seq.key)
        tgt = read_sequence(target, other.schema, other.name, other.increment) if other else None
        column = None
        if seq.owned_by:
            descending = seq.increment < 0
            values = [
                column_extreme(side, seq.owned_by, catalog, descending)
                for side, catalog in ((source, source_catalog), (target, target_catalog))
            ]
            present = [v for v in values if v is not None]
            if present:
                column = min(present) if descending else max(present)
        results.append(
            SequenceResult(
                name=seq.key,
                status=sequence_status(src, tgt, column),
                source_last_value=src.last_value,
                target_last_value=tgt.last_value if tgt else None,
                source_is_called=src.is_called,
                target_is_called=tgt.is_called if tgt else False,
                owner=seq.owner,
                owner_column=seq.owned_by[2] if seq.owned_by else None,
                column_max=column,
                increment=seq.increment,
            )
        )
    source.new_snapshot()
    target.new_snapshot()
    return tuple(results)
