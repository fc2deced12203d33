"""Compare given rows of one table, by key, on both sides: what an incremental round rechecks.

The keys come as text (the type's output, as logical decoding prints them and
``::text`` gives them); each side casts them back to its own key types and
reads those rows' hashes, the same hashes the full comparison's narrowing
compares (``checksum.leaf_hashes_sql``), so a row counts as changed here
exactly when the full comparison would call it changed. Keys go in batches
of ``BATCH_KEYS`` per statement.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import islice
from typing import Any

from psycopg import sql

from migctl.pgnames import ident
from migctl.validate.catalog import TableInfo
from migctl.validate.checksum import ChecksumPlan, leaf_hashes_sql
from migctl.validate.narrow import Both, Tally
from migctl.validate.report import Key
from migctl.validate.session import Pair, Side, retry_unit

BATCH_KEYS = 5_000
TextKey = tuple[str, ...]
Hashes = tuple[Any, ...]


def compare_keys(
    pair: Pair,
    plan: ChecksumPlan,
    source: TableInfo,
    target: TableInfo,
    keys: Collection[TextKey],
    both: Both[Any, Any],
    tally: Tally,
) -> None:
    """Add to ``tally`` every difference among the rows with these keys."""
    integer = tuple(c.is_integer for c in plan.key_columns)
    for batch in _batches(sorted(keys), BATCH_KEYS):
        found_source, found_target = both(
            lambda b=batch: _rows(pair.source, plan, source, b),  # type: ignore[misc]
            lambda b=batch: _rows(pair.target, plan, target, b),  # type: ignore[misc]
        )
        for text in sorted(set(found_source) | set(found_target)):
            key: Key = tuple(int(v) if i else v for v, i in zip(text, integer, strict=True))
            a, b = found_source.get(text), found_target.get(text)
            if b is None:
                tally.add("missing_in_target", key)
            elif a is None:
                tally.add("missing_in_source", key)
            elif a[0] != b[0]:
                tally.add("changed", key)
            elif a != b:
                tally.equal_by_value_count += 1


def _rows(
    side: Side, plan: ChecksumPlan, info: TableInfo, keys: list[TextKey]
) -> dict[TextKey, Hashes]:
    """The rows of ``keys`` on one side: key text -> (canonical hash[, strict hash])."""
    types = [_type_of(info, k) for k in plan.key]
    names = [sql.Identifier(f"k{i}") for i in range(len(plan.key))]
    query = sql.SQL(
        "SELECT {keys}, {hashes} FROM {rel} WHERE ({columns}) IN "
        "(SELECT {casts} FROM unnest({arrays}) AS u({names}))"
    ).format(
        keys=sql.SQL(", ").join(sql.SQL("{}::text").format(ident(k)) for k in plan.key),
        hashes=leaf_hashes_sql(plan),
        rel=plan.relation,
        columns=sql.SQL(", ").join(ident(k) for k in plan.key),
        casts=sql.SQL(", ").join(
            sql.SQL("u.{}::{}").format(n, sql.SQL(t)) for n, t in zip(names, types, strict=True)
        ),
        arrays=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in plan.key),
        names=sql.SQL(", ").join(names),
    )
    params = [[k[i] for k in keys] for i in range(len(plan.key))]
    width = len(plan.key)
    rows = retry_unit(lambda: side.execute(query, params), side)
    return {tuple(r[:width]): tuple(r[width:]) for r in rows}


def _type_of(info: TableInfo, column: str) -> str:
    found = info.column(column)
    if found is None:  # plan_table keys only on columns both sides have
        raise ValueError(f"{info.schema}.{info.name} has no column {column!r}")
    return found.type_sql.replace("%", "%%")


def _batches(items: list[TextKey], size: int) -> Iterator[list[TextKey]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
