"""How each column is hashed, identically on both sides, whatever the servers' settings.

Row hashes are computed from the values, never from how a server prints
them, so TimeZone, DateStyle and friends cannot create differences. Each
type uses its own extended hash function (the ones hash partitioning relies
on, stable across versions): integers of any width hash alike (int4 against
int8), numeric ignores trailing zeros (numeric(18,4) against numeric(20,6)),
varchar is text.

Where those hashes are too weak, a discriminator is added:
``hash_numeric_extended`` ignores the sign and hashes NaN and ±Infinity all
to the seed; ``hash_array_extended`` ignores dimensions and lower bounds;
float ±0 hashes to the seed, so every hash is seeded with a non-zero value
(NULL counts as 0). Types whose hash depends on the server (enum hashes the
label's OID), that have no hash (json, xml, point), whose hash is too weak
(jsonb: number signs are lost, array elements 32 apart can swap) or whose
equality is too loose (interval: '1 day' = '24 hours') are hashed in their
text form under the pinned session settings; jsonb's text form is canonical
(key order and whitespace of the input do not matter).

Two algorithms combine the columns:

- ``record`` (both servers PostgreSQL 14+): ``hash_record_extended(ROW(...))``.
- ``concat`` (either server 11-13): the decimal per-column hashes (``N`` for
  NULL) joined by commas and hashed with ``hashtextextended``.

Type names reach SQL only from the fixed allow-lists below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from migctl.errors import UsageError
from migctl.validate.catalog import PgType

ALGORITHMS = ("record", "concat")
RECORD_MIN_VERSION = 140000  # hash_record_extended
MIN_SERVER_VERSION = 110000  # the *extended(value, seed) hash functions

# Every hash is seeded: with seed 0, float ±0 (and numeric NaN/±Infinity) hash to 0, which is
# also what hash_record_extended uses for NULL. Numeric zero hashes to seed - 1, so not 1 either.
SEED = 104729

FAMILIES = (
    "int",
    "float",
    "numeric",
    "text",
    "bpchar",
    "uuid",
    "jsonb",
    "array",
    "scalar",
    "as_text",
)
CASTS = ("int8", "float8", "numeric", "text", "jsonb")

_INT = {"int2", "int4", "int8"}
_FLOAT = {"float4", "float8"}
_TEXT = {"text", "varchar", "name"}
_SCALAR = {"bool", "char", "bytea", "date", "time", "timetz", "timestamp", "timestamptz"}
_ARRAY_ELEMENTS = (
    _INT
    | _FLOAT
    | {"text", "varchar", "bpchar", "bool", "bytea", "date", "time", "timestamp"}
    | {
        "timestamptz",
        "uuid",
    }
)
# In the concat algorithm these families use their own extended hash; the rest hash their text.
_CONCAT_FUNCTIONS = {
    "int": ("hashint8extended", "int8"),
    "float": ("hashfloat8extended", "float8"),
    "numeric": ("hash_numeric_extended", None),
    "text": ("hashtextextended", "text"),
    "bpchar": ("hashbpcharextended", None),
    "uuid": ("uuid_hash_extended", None),
    "array": ("hash_array_extended", None),
}


def choose_algorithm(*server_versions: int) -> str:
    """``record`` when every server is 14+, else ``concat``; below 11 is unsupported."""
    oldest = min(server_versions)
    if oldest < MIN_SERVER_VERSION:
        raise UsageError(
            f"PostgreSQL {oldest // 10000} is not supported: validate needs 11 or later"
        )
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
        if self.cast:
            ident = sql.SQL("{}::{}").format(ident, sql.SQL(self.cast))
        if self.family in ("as_text", "jsonb"):
            return sql.SQL("{}::text").format(ident)
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


def _discriminator(c: ColumnHash) -> sql.Composable | None:
    """Text that tells apart values the native hash cannot: NULL when it has nothing to add."""
    v = c.value()
    if c.family == "numeric":  # the hash ignores the sign; NaN and ±Infinity all hash to the seed
        return sql.SQL(
            "CASE WHEN scale({v}) IS NULL THEN {v}::text WHEN {v} < 0 THEN '-' END"
        ).format(v=v)
    if c.family == "array":  # the hash ignores dimensions and lower bounds
        return sql.SQL(
            "CASE WHEN array_ndims({v}) > 1 OR array_lower({v}, 1) <> 1 THEN array_dims({v}) END"
        ).format(v=v)
    return None


def _record_elements(columns: Sequence[ColumnHash]) -> list[sql.Composable]:
    elements: list[sql.Composable] = []
    for c in columns:
        elements.append(c.value())
        extra = _discriminator(c)
        if extra is not None:
            elements.append(extra)
    return elements


def _concat_token(c: ColumnHash) -> sql.Composable:
    value = c.value()
    fn, cast = _CONCAT_FUNCTIONS.get(c.family, ("hashtextextended", "text"))
    arg = sql.SQL("{}::{}").format(value, sql.SQL(cast)) if cast else value
    token: sql.Composable = sql.SQL("{}({}, {})::text").format(sql.SQL(fn), arg, sql.Literal(SEED))
    extra = _discriminator(c)
    if extra is not None:
        token = sql.SQL("{} || coalesce({}, '')").format(token, extra)
    return sql.SQL("coalesce({}, 'N')").format(token)


def hash_columns(
    columns: Sequence[ColumnHash], algorithm: str, seed: sql.Composable | None = None
) -> sql.Composable:
    """64-bit hash of the listed columns; ``record`` combines the column hashes linearly."""
    if algorithm == "record":
        elements = sql.SQL(", ").join(_record_elements(columns))
        return sql.SQL("hash_record_extended(ROW({}), {})").format(
            elements, seed or sql.Literal(SEED)
        )
    tokens = (
        sql.SQL(" || ',' || ").join([_concat_token(c) for c in columns])
        if columns
        else sql.SQL("''")
    )
    return sql.SQL("hashtextextended({}, 0)").format(tokens)
