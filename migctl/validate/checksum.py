"""THE chunk checksum: SQL that both databases (and the validation Lambda) run to hash rows.

A chunk's checksum is ``(count(*), sum(row_hash))`` grouped by a bucket of
the key; it does not depend on row order, and the sum is numeric, so it never
overflows. Equal chunks send only these aggregates over the wire.

Row hashes are computed from the values, never from how a server prints
them, so TimeZone, DateStyle and friends cannot create differences:

- ``record`` (both servers PostgreSQL 14+): ``hash_record_extended(ROW(...), 0)``
  with each column's own extended hash function (the ones hash partitioning
  relies on, stable across versions), then mixed through
  ``hash_numeric_extended`` so that sums over rows are not linear in the
  column hashes (a value swapped between two rows must change the sum).
- ``concat`` (either server 11-13): the decimal per-column hashes (or ``N``
  for NULL) joined by commas and hashed with ``hashtextextended``.

Per type: integers of any width hash alike (int4 against int8), numeric
ignores trailing zeros (numeric(18,4) against numeric(20,6)), varchar is
text, jsonb hashes by value. NaN/±Infinity all hash to the seed in
``hash_numeric_extended``, so numeric columns carry a discriminator.
Types whose hash depends on the server (enum hashes the label's OID),
that have no hash (json, xml, point) or whose equality is too loose
(interval: '1 day' = '24 hours') are hashed in their text form under the
pinned session settings.

Everything here is JSON-serialisable (``to_dict``/``from_dict``) for the Lambda;
nothing imports rich or the CLI. Identifiers only reach SQL through
``psycopg.sql.Identifier``; type names only from fixed allow-lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import sql

from migctl.errors import UsageError
from migctl.validate.catalog import PgType

Runner = Callable[[Any, Any], list[tuple[Any, ...]]]

ALGORITHMS = ("record", "concat")
RECORD_MIN_VERSION = 140000  # hash_record_extended
MIN_SERVER_VERSION = 110000  # the *extended(value, seed) hash functions

FAMILIES = ("int", "float", "numeric", "text", "bpchar", "uuid", "jsonb", "array", "scalar", "as_text")
CASTS = ("int8", "float8", "numeric", "text", "jsonb")

_INT = {"int2", "int4", "int8"}
_FLOAT = {"float4", "float8"}
_TEXT = {"text", "varchar", "name"}
_SCALAR = {"bool", "char", "bytea", "date", "time", "timetz", "timestamp", "timestamptz", "inet", "macaddr", "macaddr8"}
_ARRAY_ELEMENTS = _INT | _FLOAT | {"text", "varchar", "bpchar", "bool", "bytea", "date", "time"} | {
    "timestamp",
    "timestamptz",
    "uuid",
    "jsonb",
}
# In the concat algorithm these families use their own extended hash; the rest hash their text.
_CONCAT_FUNCTIONS = {
    "int": ("hashint8extended", "int8"),
    "float": ("hashfloat8extended", "float8"),
    "numeric": ("hash_numeric_extended", None),
    "text": ("hashtextextended", "text"),
    "bpchar": ("hashbpcharextended", None),
    "uuid": ("uuid_hash_extended", None),
    "jsonb": ("jsonb_hash_extended", None),
    "array": ("hash_array_extended", None),
}


def choose_algorithm(*server_versions: int) -> str:
    """``record`` when every server is 14+, else ``concat``; below 11 is unsupported."""
    oldest = min(server_versions)
    if oldest < MIN_SERVER_VERSION:
        raise UsageError(f"PostgreSQL {oldest // 10000} is not supported: validate needs 11 or later")
    return "record" if oldest >= RECORD_MIN_VERSION else "concat"


def family(t: PgType) -> str:
    """How a column of this (base) type is hashed."""
    if not t.builtin or t.kind != "b":
        return "as_text"  # enums (OID-based hash), composites, ranges, extension types
    name = t.name
    for members, fam in ((_INT, "int"), (_FLOAT, "float"), (_TEXT, "text"), (_SCALAR, "scalar")):
        if name in members:
            return fam
    if name in ("numeric", "bpchar", "uuid", "jsonb"):
        return name
    if name.startswith("_") and t.element in _ARRAY_ELEMENTS:
        return "array"
    return "as_text"  # json, xml, interval, money, geometric types, numeric[] ...


@dataclass(frozen=True)
class ColumnHash:
    """How one shared column is hashed, identically on both sides."""

    name: str
    family: str
    cast: str | None = None

    def value(self) -> sql.Composable:
        ident: sql.Composable = sql.Identifier(self.name)
        if self.family == "as_text":
            return sql.SQL("{}::text").format(ident)
        if self.cast:
            return sql.SQL("{}::{}").format(ident, sql.SQL(self.cast))
        return ident

    @property
    def is_integer(self) -> bool:
        return self.family == "int"


def column_hash(name: str, source: PgType, target: PgType) -> ColumnHash:
    """The common hashing for a column whose type may differ between the sides."""
    fs, ft = family(source), family(target)
    same = source.name == target.name
    if fs == ft:
        if fs in ("scalar", "array") and not same:
            return ColumnHash(name, "as_text")  # e.g. timestamp against timestamptz
        if fs == "int" and not same:
            return ColumnHash(name, "int", "int8")
        if fs == "float" and not same:
            return ColumnHash(name, "float", "float8")
        return ColumnHash(name, fs)
    pair = {fs, ft}
    if pair == {"int", "numeric"}:
        return ColumnHash(name, "numeric", "numeric")
    if pair == {"text", "bpchar"}:
        return ColumnHash(name, "text", "text")
    if "jsonb" in pair and "json" in (source.name, target.name):
        return ColumnHash(name, "jsonb", "jsonb")
    return ColumnHash(name, "as_text")


@dataclass(frozen=True)
class ChecksumPlan:
    """What to hash in one table: the shared columns, the key (empty: multiset) and the algorithm."""

    schema: str
    table: str
    columns: tuple[ColumnHash, ...]
    key: tuple[str, ...]
    algorithm: str = "record"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "table": self.table,
            "columns": [{"name": c.name, "family": c.family, "cast": c.cast} for c in self.columns],
            "key": list(self.key),
            "algorithm": self.algorithm,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChecksumPlan:
        """Parse and check a plan that may come from a Lambda payload."""
        try:
            columns = tuple(ColumnHash(str(c["name"]), str(c["family"]), c.get("cast")) for c in data["columns"])
            plan = cls(str(data["schema"]), str(data["table"]), columns, tuple(map(str, data["key"])),
                       str(data.get("algorithm", "record")))
        except (KeyError, TypeError) as exc:
            raise UsageError(f"bad checksum plan: missing or malformed {exc}") from None
        if plan.algorithm not in ALGORITHMS:
            raise UsageError(f"bad checksum plan: unknown algorithm {plan.algorithm!r}")
        for c in plan.columns:
            if c.family not in FAMILIES or (c.cast is not None and c.cast not in CASTS):
                raise UsageError(f"bad checksum plan: column {c.name!r} has family {c.family!r}, cast {c.cast!r}")
        names = {c.name for c in plan.columns}
        if any(k not in names for k in plan.key):
            raise UsageError("bad checksum plan: a key column is not among the columns")
        return plan

    @property
    def relation(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table)

    @property
    def key_columns(self) -> tuple[ColumnHash, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.key)

    @property
    def integer_key(self) -> bool:
        """A single integer key: chunks are key ranges that an index can scan."""
        return len(self.key) == 1 and self.key_columns[0].is_integer


def _record_elements(columns: Sequence[ColumnHash]) -> list[sql.Composable]:
    elements: list[sql.Composable] = []
    for c in columns:
        value = c.value()
        elements.append(value)
        if c.family == "numeric":
            elements.append(sql.SQL("CASE WHEN scale({v}) IS NULL THEN {v}::text END").format(v=value))
    return elements


def _concat_token(c: ColumnHash) -> sql.Composable:
    value = c.value()
    fn, cast = _CONCAT_FUNCTIONS.get(c.family, ("hashtextextended", "text"))
    arg = sql.SQL("{}::{}").format(value, sql.SQL(cast)) if cast else value
    token: sql.Composable = sql.SQL("{}({}, 0)::text").format(sql.SQL(fn), arg)
    if c.family == "numeric":  # NaN and ±Infinity all hash to the seed: say which one it was
        token = sql.SQL("{} || CASE WHEN scale({v}) IS NULL THEN {v}::text ELSE '' END").format(token, v=value)
    return sql.SQL("coalesce({}, 'N')").format(token)


def _hash_columns(columns: Sequence[ColumnHash], algorithm: str) -> sql.Composable:
    """64-bit hash of the listed columns (linear combination in ``record``: mix before summing)."""
    if algorithm == "record":
        return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(_record_elements(columns)))
    tokens = sql.SQL(" || ',' || ").join([_concat_token(c) for c in columns]) if columns else sql.SQL("''")
    return sql.SQL("hashtextextended({}, 0)").format(tokens)


def row_hash_sql(plan: ChecksumPlan) -> sql.Composable:
    inner = _hash_columns(plan.columns, plan.algorithm)
    if plan.algorithm == "record":
        return sql.SQL("hash_numeric_extended({}::numeric, 0)").format(inner)
    return inner


def key_hash_sql(plan: ChecksumPlan) -> sql.Composable:
    """What hash buckets split on: the key's hash, or the row's hash when there is no key."""
    return _hash_columns(plan.key_columns, plan.algorithm) if plan.key else row_hash_sql(plan)


def key_int_sql(plan: ChecksumPlan) -> sql.Composable:
    return sql.SQL("{}::int8").format(plan.key_columns[0].value())


def key_output_sql(plan: ChecksumPlan) -> list[sql.Composable]:
    """The key as reported: integers as numbers, everything else in its (pinned) text form."""
    return [
        sql.SQL("{}::int8").format(c.value()) if c.is_integer else sql.SQL("{}::text").format(sql.Identifier(c.name))
        for c in plan.key_columns
    ]


@dataclass(frozen=True)
class Buckets:
    """How to split a table into chunks, and which part of it to look at.

    ``range``: bucket = ``width_bucket(key, bounds)``, restricted to ``lo <= key < hi``.
    ``hash``: bucket = ``key_hash & (2^bits - 1)``, restricted to rows whose
    ``key_hash & (2^restrict_bits - 1)`` is in ``restrict``.
    """

    kind: Literal["range", "hash"]
    bounds: tuple[int, ...] = ()
    lo: int | None = None
    hi: int | None = None
    bits: int = 0
    restrict_bits: int = 0
    restrict: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bounds": list(self.bounds),
            "lo": self.lo,
            "hi": self.hi,
            "bits": self.bits,
            "restrict_bits": self.restrict_bits,
            "restrict": list(self.restrict),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Buckets:
        kind = data.get("kind")
        if kind not in ("range", "hash"):
            raise UsageError(f"bad buckets: kind must be 'range' or 'hash', not {kind!r}")
        try:
            lo, hi = data.get("lo"), data.get("hi")
            buckets = cls(
                kind,
                tuple(int(b) for b in data.get("bounds", ())),
                int(lo) if lo is not None else None,
                int(hi) if hi is not None else None,
                int(data.get("bits", 0)),
                int(data.get("restrict_bits", 0)),
                tuple(int(v) for v in data.get("restrict", ())),
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad buckets: {exc}") from None
        if not 0 <= buckets.bits <= 62 or not 0 <= buckets.restrict_bits <= buckets.bits:
            raise UsageError("bad buckets: bits must be within 0..62 and restrict_bits <= bits")
        return buckets


def mask(bits: int) -> int:
    return (1 << bits) - 1


def bucket_filter(plan: ChecksumPlan, buckets: Buckets) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause (possibly ``TRUE``) and its parameters."""
    conds: list[sql.Composable] = []
    params: list[Any] = []
    if buckets.kind == "range":
        key = sql.Identifier(plan.key[0])  # the bare column, so that its index serves the range
        if buckets.lo is not None:
            conds.append(sql.SQL("{} >= %s::int8").format(key))
            params.append(buckets.lo)
        if buckets.hi is not None:
            conds.append(sql.SQL("{} < %s::int8").format(key))
            params.append(buckets.hi)
    elif buckets.restrict_bits:
        conds.append(sql.SQL("({} & %s) = ANY(%s::int8[])").format(key_hash_sql(plan)))
        params += [mask(buckets.restrict_bits), list(buckets.restrict)]
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    return where, params


def bucket_sql(plan: ChecksumPlan, buckets: Buckets) -> tuple[sql.Composable, list[Any]]:
    if buckets.kind == "range":
        if not buckets.bounds:
            return sql.SQL("0"), []
        return sql.SQL("width_bucket({}, %s::int8[])").format(key_int_sql(plan)), [list(buckets.bounds)]
    return sql.SQL("({} & %s)").format(key_hash_sql(plan)), [mask(buckets.bits)]


@dataclass(frozen=True)
class BucketSum:
    bucket: int
    rows: int
    checksum: int


def bucket_checksums(run: Runner, plan: ChecksumPlan, buckets: Buckets) -> dict[int, BucketSum]:
    """``count(*)`` and ``sum(row_hash)`` per bucket, in one scan; empty buckets are absent."""
    bucket, bucket_params = bucket_sql(plan, buckets)
    where, where_params = bucket_filter(plan, buckets)
    query = sql.SQL("SELECT {} AS bucket, count(*), sum({}) FROM {} WHERE {} GROUP BY 1").format(
        bucket, row_hash_sql(plan), plan.relation, where
    )
    rows = run(query, [*bucket_params, *where_params])
    return {int(b): BucketSum(int(b), int(n), int(s)) for b, n, s in rows}


def sample_bounds(run: Runner, plan: ChecksumPlan, buckets: int, percent: float) -> tuple[int, ...]:
    """Bucket boundaries at the key quantiles of a block sample: even chunks however sparse the keys."""
    if buckets <= 1:
        return ()
    fractions = [i / buckets for i in range(1, buckets)]
    sample = sql.SQL("TABLESAMPLE SYSTEM (%s) REPEATABLE (7)") if percent < 100 else sql.SQL("")
    query = sql.SQL("SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {k}) FROM {t} {s}").format(
        k=key_int_sql(plan), t=plan.relation, s=sample
    )
    params: list[Any] = [fractions] + ([percent] if percent < 100 else [])
    rows = run(query, params)
    values = rows[0][0] if rows and rows[0][0] else []
    return tuple(sorted({int(v) for v in values if v is not None}))
