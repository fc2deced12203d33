"""Validate once in full while the application writes, then recheck only what changed since.

:func:`begin` creates a logical replication slot on each side (named ``slot``)
*before* it compares everything (``local.validate``): every transaction that
commits after a slot is ready is in that slot, and everything committed
before is in the comparison's snapshots, which come later. The comparison
runs while the application writes and replication lags, so some rows differ
that will converge: they are kept (all of them, up to ``PENDING_KEYS`` per
table; beyond, the table is compared in full again next round), never judged
here.

:func:`recheck` is one round. It takes a position on each side
(``changes.mark``), reads from each slot the keys changed before it (on the
source: the application, and any writer replication never carries; on the
target: replication, and any stray writer), and compares the rows of those
keys and of the keys still differing, on both sides, with the full
comparison's hashes (``keyed``). A row that is equal after the round was
either compared in it or has not changed on either side since a round (or
the baseline) found it equal. So when nothing differs, a full comparison at
the same moment would find nothing either. Tables are compared in full
instead when a round cannot know their changed keys: truncated, without a
primary key, a key the change did not carry, a change of columns or key
since the baseline on either side, or too many differing keys to keep.

:class:`IncrementalState` is plain data (``to_dict``/``from_dict``) for a
journal. The caller journals a round's state, then moves the slots on
(:func:`advance`): a crash in between reads the same changes again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from migctl.db import Database, connect
from migctl.pgnames import TableName, show
from migctl.validate.catalog import Catalog, TableInfo
from migctl.validate.changes import (
    TableChanges,
    create_slot,
    drop_slot,
    mark,
    partition_roots,
    read_changes,
)
from migctl.validate.changes import advance as advance_slot
from migctl.validate.comparison import plan_table
from migctl.validate.hashing import choose_algorithm
from migctl.validate.local import LocalExecutor
from migctl.validate.local import validate as full_validation
from migctl.validate.narrow import Tally
from migctl.validate.report import TableResult
from migctl.validate.runner import ValidateOptions, check_options, select
from migctl.validate.table import table_result

SIDES = ("source", "target")
PENDING_KEYS = 20_000  # differing keys kept per table; more, and the table is read in full again
APPLICATION_NAME = "migctl-validate-incremental"


@dataclass(frozen=True)
class IncrementalState:
    """Where the next round reads from on each side, and what it must look at again."""

    slot: str
    positions: Mapping[str, str]  # side -> WAL position the next read starts after
    pending: Mapping[str, tuple[tuple[str, ...], ...]]  # table (show) -> keys still differing
    whole: Mapping[str, str]  # table (show) -> why the next round compares it in full
    shapes: Mapping[str, str]  # table (show) -> digest of both sides' columns and key

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "positions": dict(self.positions),
            "pending": {t: [list(k) for k in keys] for t, keys in self.pending.items()},
            "whole": dict(self.whole),
            "shapes": dict(self.shapes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IncrementalState:
        return cls(
            slot=str(data["slot"]),
            positions={str(k): str(v) for k, v in data["positions"].items()},
            pending={
                str(t): tuple(tuple(str(v) for v in k) for k in keys)
                for t, keys in data["pending"].items()
            },
            whole={str(k): str(v) for k, v in data["whole"].items()},
            shapes={str(k): str(v) for k, v in data["shapes"].items()},
        )

    @property
    def pending_keys(self) -> int:
        return sum(len(k) for k in self.pending.values())


@dataclass(frozen=True, kw_only=True)
class Round:
    """What a baseline or a round found, and the state the next round starts from."""

    state: IncrementalState
    tables: tuple[TableResult, ...]
    changed: Mapping[str, int] = field(default_factory=dict)  # side -> changes read
    rechecked: int = 0  # keys compared (changed since, and still differing before)
    whole: Mapping[str, str] = field(default_factory=dict)  # tables compared in full, and why
    duration_seconds: float = 0.0
    server_versions: Mapping[str, int | None] = field(default_factory=dict)  # side -> version_num

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)


def begin(
    source: Database,
    target: Database,
    slot: str,
    options: ValidateOptions,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Round:
    """Create (or keep) the slots, then compare everything: the baseline."""
    check_options(options)
    started = clock()
    positions = {
        side: _on(db, lambda c: create_slot(c, slot)) for side, db in _sides(source, target)
    }
    # The shapes before the comparison: a change of columns during it shows as a change since.
    catalogs = _catalogs(source, target, options)
    trees = _trees(source, target)
    wide = replace(options, max_keys=PENDING_KEYS, sequences=False)
    report = full_validation(source, target, wide, clock=clock)
    state = IncrementalState(
        slot=slot,
        positions=positions,
        pending=_pending(report.tables),
        whole=_whole(report.tables),
        shapes=_shapes(*catalogs, trees, [t.name for t in report.tables]),
    )
    return Round(
        state=state,
        tables=report.tables,
        duration_seconds=round(clock() - started, 3),
        server_versions={"source": report.source_version, "target": report.target_version},
    )


def recheck(
    source: Database,
    target: Database,
    options: ValidateOptions,
    state: IncrementalState,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Round:
    """One round: the rows changed on either side since ``state``, and those still differing."""
    check_options(options)
    started = clock()
    with LocalExecutor(source, target, options) as executor:
        source_catalog, target_catalog = executor.catalogs()
        algorithm = choose_algorithm(source_catalog.server_version, target_catalog.server_version)
        names = select(options, source_catalog, target_catalog)
        shapes = _shapes(source_catalog, target_catalog, _trees(source, target), names)
        chosen = set(names)
        upto: dict[str, str] = {}
        read: dict[str, dict[TableName, TableChanges]] = {}
        for (side, db), catalog in zip(
            _sides(source, target), (source_catalog, target_catalog), strict=True
        ):
            keys = {n: t.primary_key for n, t in catalog.tables.items() if n in chosen}
            upto[side] = _on(db, mark)
            read[side] = _on(db, partial(read_changes, slot=state.slot, upto=upto[side], keys=keys))
        whole: dict[str, str] = {}
        results: list[TableResult] = []
        rechecked = 0
        for name in names:
            shown = show(name)
            src, tgt = source_catalog.tables.get(name), target_catalog.tables.get(name)
            why = _why_whole(shown, state, shapes, read, name)
            if why is not None or src is None or tgt is None:
                whole[shown] = why or "it is missing on one side"
                results.append(executor.compare(name, src, tgt, algorithm))
                continue
            wanted = set(state.pending.get(shown, ()))
            for side in SIDES:
                found = read[side].get(name)
                if found is not None:
                    wanted |= found.keys
            rechecked += len(wanted)
            results.append(_keyed(executor, name, src, tgt, algorithm, wanted, options.max_keys))
    tables = tuple(results)
    next_state = IncrementalState(
        slot=state.slot,
        positions=upto,
        pending=_pending(tables),
        whole=_whole(tables),
        shapes={**state.shapes, **{t: d for t, d in shapes.items() if t in whole}},
    )
    return Round(
        state=next_state,
        tables=tables,
        changed={side: sum(c.changes for c in read[side].values()) for side in SIDES},
        rechecked=rechecked,
        whole=whole,
        duration_seconds=round(clock() - started, 3),
        server_versions={
            "source": source_catalog.server_version,
            "target": target_catalog.server_version,
        },
    )


def advance(source: Database, target: Database, state: IncrementalState) -> None:
    """Move each slot on to the state's position (after the state was journaled)."""
    for side, db in _sides(source, target):
        _on(db, partial(advance_slot, name=state.slot, upto=state.positions[side]))


def drop(source: Database, target: Database, slot: str) -> dict[str, bool]:
    """Drop the slot on each side where it exists (it holds WAL); which sides had one."""
    return {side: _on(db, lambda c: drop_slot(c, slot)) for side, db in _sides(source, target)}


def _keyed(
    executor: LocalExecutor,
    name: TableName,
    source: TableInfo,
    target: TableInfo,
    algorithm: str,
    keys: set[tuple[str, ...]],
    max_keys: int,
) -> TableResult:
    table_plan = plan_table(source, target, algorithm)
    tally = Tally(max(max_keys, PENDING_KEYS))
    if keys:
        executor.compare_keys(table_plan.plan, source, target, keys, tally)
    return table_result(name, table_plan, tally, source_rows=None, target_rows=None)


def _why_whole(
    shown: str,
    state: IncrementalState,
    shapes: Mapping[str, str],
    read: Mapping[str, Mapping[TableName, TableChanges]],
    name: TableName,
) -> str | None:
    if shown in state.whole:
        return state.whole[shown]
    if state.shapes.get(shown) != shapes.get(shown):
        return "its columns or key changed since the baseline"
    for side in SIDES:
        found = read[side].get(name)
        if found is not None and found.whole is not None:
            return f"on the {side}, {found.whole}"
    return None


def _pending(tables: tuple[TableResult, ...]) -> dict[str, tuple[tuple[str, ...], ...]]:
    out = {}
    for t in tables:
        keys = (*t.missing_in_target, *t.missing_in_source, *t.changed)
        if keys:
            out[t.table] = tuple(tuple(str(v) for v in k) for k in keys)
    return out


def _whole(tables: tuple[TableResult, ...]) -> dict[str, str]:
    """Tables the next round must compare in full: not compared, or not every key kept."""
    out = {}
    for t in tables:
        kept = len(t.missing_in_target) + len(t.missing_in_source) + len(t.changed)
        total = t.missing_in_target_count + t.missing_in_source_count + t.changed_count
        if t.status in ("error", "missing_in_target", "missing_in_source"):
            out[t.table] = f"it was {t.status.replace('_', ' ')} in the last round"
        elif not t.key_columns and total:
            out[t.table] = "it has no primary key and differed"
        elif total > kept:
            out[t.table] = f"{total:,} rows differed, more than the {kept:,} keys kept"
    return out


def _shapes(
    source: Catalog,
    target: Catalog,
    trees: tuple[dict[TableName, list[TableName]], ...],
    names: list[TableName] | tuple[TableName, ...],
) -> dict[str, str]:
    """Per table, a digest of both sides' columns (name, type, nullability), key and
    partitions: a partition attached with its rows brings them in without a change to read."""
    out = {}
    for name in names:
        parts = []
        for catalog, tree in zip((source, target), trees, strict=True):
            info = catalog.tables.get(name)
            parts.append(
                None
                if info is None
                else [[c.name, c.type_sql, c.not_null] for c in info.columns]
                + [list(info.primary_key), sorted(tree.get(name, []))]
            )
        digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
        out[show(name)] = digest
    return out


def _trees(source: Database, target: Database) -> tuple[dict[TableName, list[TableName]], ...]:
    """Per side, each partitioned table's partitions."""
    trees = []
    for _, db in _sides(source, target):
        tree: dict[TableName, list[TableName]] = {}
        for partition, root in _on(db, partition_roots).items():
            tree.setdefault(root, []).append(partition)
        trees.append(tree)
    return tuple(trees)


def _catalogs(
    source: Database, target: Database, options: ValidateOptions
) -> tuple[Catalog, Catalog]:
    with LocalExecutor(source, target, options) as executor:
        return executor.catalogs()


def _sides(source: Database, target: Database) -> tuple[tuple[str, Database], ...]:
    return (("source", source), ("target", target))


def _on(db: Database, work: Callable[[Any], Any]) -> Any:
    with connect(db, application_name=APPLICATION_NAME, autocommit=True) as conn:
        return work(conn)
