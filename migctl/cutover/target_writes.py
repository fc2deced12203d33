"""What the application wrote on the target after go-live, counted per table.

Without reverse replication (docs/fallback.md), a rollback after go-live
leaves those writes on the target only. The rollout step records the
target's write counters (``pg_stat_user_tables``: rows inserted, updated,
deleted) before it deploys, while the source is frozen and replication
stopped; the rollback reads them again once ECS is back and reports the
difference per table. These are PostgreSQL's statistics: exact for a running
server, lost by a crash or a ``pg_stat_reset`` (then the count is said to be
unknown, never 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migctl.pgnames import show

if TYPE_CHECKING:
    import psycopg

_COUNTERS_SQL = """
SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables
WHERE schemaname NOT IN ('migctl') AND relname NOT LIKE 'awsdms\\_%%'
ORDER BY 1, 2
"""
Counters = dict[str, list[int]]  # "schema\x1ftable" -> [inserted, updated, deleted]
_SEP = "\x1f"


@dataclass(frozen=True, kw_only=True)
class TargetWrites:
    """Rows written per table since the mark; ``unknown`` lists tables whose counters fell."""

    tables: dict[tuple[str, str], tuple[int, int, int]]
    unknown: tuple[tuple[str, str], ...]

    @property
    def rows(self) -> int:
        return sum(sum(c) for c in self.tables.values())

    def describe(self) -> str:
        parts = [
            f"{show(t)} "
            + ", ".join(
                f"{n} {what}"
                for n, what in zip(c, ("inserted", "updated", "deleted"), strict=True)
                if n
            )
            for t, c in sorted(self.tables.items())
        ]
        if self.unknown:
            parts.append(
                f"unknown for {', '.join(show(t) for t in self.unknown)} (statistics reset)"
            )
        return "; ".join(parts)

    def facts(self) -> list[dict[str, Any]]:
        return [
            {"schema": s, "name": n, "inserted": i, "updated": u, "deleted": d}
            for (s, n), (i, u, d) in sorted(self.tables.items())
        ]


def mark(conn: psycopg.Connection[Any]) -> Counters:
    """The target's write counters now, JSON-ready for the journal."""
    rows = conn.execute(_COUNTERS_SQL, []).fetchall()
    return {f"{s}{_SEP}{t}": [int(i), int(u), int(d)] for s, t, i, u, d in rows}


def since(conn: psycopg.Connection[Any], before: Counters) -> TargetWrites:
    """What was written after ``before`` (a table created since counts from zero)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    tables: dict[tuple[str, str], tuple[int, int, int]] = {}
    unknown: list[tuple[str, str]] = []
    for key, now in mark(conn).items():
        schema, _, table = key.partition(_SEP)
        then = before.get(key, [0, 0, 0])
        delta = tuple(a - b for a, b in zip(now, then, strict=True))
        if any(d < 0 for d in delta):
            unknown.append((schema, table))
        elif any(delta):
            tables[(schema, table)] = (delta[0], delta[1], delta[2])
    return TargetWrites(tables=tables, unknown=tuple(unknown))
