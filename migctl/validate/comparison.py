"""Compare two tables' schemas and decide how to compare their data.

Data is compared on the columns both sides share, in the source's column
order. The key is the source's primary key when every key column exists on
the target; without one the table is compared as a multiset of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from migctl.validate.catalog import TableInfo
from migctl.validate.checksum import ChecksumPlan
from migctl.validate.hashing import column_hash
from migctl.validate.report import Method


@dataclass(frozen=True)
class TablePlan:
    plan: ChecksumPlan
    method: Method
    schema_differences: tuple[str, ...]


def schema_differences(source: TableInfo, target: TableInfo) -> tuple[str, ...]:
    """Columns (name, type, nullability) and primary key, as one sentence per difference."""
    found: list[str] = []
    source_names = {c.name for c in source.columns}
    for col in source.columns:
        other = target.column(col.name)
        if other is None:
            found.append(f"column {col.name} ({col.type_sql}) only on source")
            continue
        if col.type_sql != other.type_sql:
            found.append(
                f"column {col.name}: type {col.type_sql} on source, {other.type_sql} on target"
            )
        if col.not_null != other.not_null:
            found.append(
                f"column {col.name}: {_nullability(col.not_null)} on source, {_nullability(other.not_null)} on target"
            )
    found.extend(
        f"column {c.name} ({c.type_sql}) only on target"
        for c in target.columns
        if c.name not in source_names
    )
    if source.primary_key != target.primary_key:
        found.append(
            f"primary key {_key(source.primary_key)} on source, {_key(target.primary_key)} on target"
        )
    return tuple(found)


def _nullability(not_null: bool) -> str:
    return "NOT NULL" if not_null else "nullable"


def _key(columns: tuple[str, ...]) -> str:
    return f"({', '.join(columns)})" if columns else "none"


def plan_table(source: TableInfo, target: TableInfo, algorithm: str) -> TablePlan:
    """The checksum plan both sides will run, the comparison method, and the schema differences."""
    columns = []
    for col in source.columns:
        other = target.column(col.name)
        if other is not None:
            columns.append(
                column_hash(
                    col.name, col.type, other.type, nullable=not (col.not_null and other.not_null)
                )
            )
    shared = {c.name for c in columns}
    key = (
        source.primary_key
        if source.primary_key and all(k in shared for k in source.primary_key)
        else ()
    )
    plan = ChecksumPlan(source.schema, source.name, tuple(columns), tuple(key), algorithm)
    method: Method = "multiset" if not key else ("range" if plan.integer_key else "hash")
    return TablePlan(plan, method, schema_differences(source, target))
