"""How a row is hashed, identically on both sides, whatever the servers' settings.

Row hashes are computed from the values, never from how a server prints
them, so TimeZone, DateStyle and friends cannot create differences. Each
type uses its own extended hash function (the ones hash partitioning relies
on, in every PostgreSQL since 11): integers of any width hash alike (int4
against int8), numeric ignores trailing zeros (numeric(18,4) against
numeric(20,6)), varchar is text, text is hashed byte for byte (``COLLATE "C"``,
so a case-insensitive collation cannot hide a difference).

The ``chain`` algorithm threads one 64-bit state through the columns: each
column's hash function is seeded with the state the previous columns left,
so a column's position, and every earlier value, change every later hash.
A final mix makes row hashes unrelated to one another, so that a chunk's sum
of row hashes cannot cancel out a value swapped between two rows.

Where a hash function is too weak, the seed carries what it misses:

- ``hash_numeric_extended`` ignores the sign and returns the seed itself for
  NaN and ±Infinity: negative values and NaN get their own seed (a numeric
  with a declared precision cannot hold ±Infinity, so there only the sign is
  tested: NaN is then the one value whose hash is the seed);
- ``hash_array_extended`` ignores dimensions and lower bounds (they go into
  the seed), and returns the same value for every empty array whatever the
  seed (the state is XORed back in, so the chain never restarts); arrays of
  text are hashed under ``COLLATE "C"`` too, element by element;
- ``hashint8extended`` folds 64 bits into 32: the high half goes into the seed;
- NULL is hashed as a fixed value of the type with its own seed, in columns
  that may hold NULL on either side.

Types whose hash depends on the server (enum hashes the label's OID), that
have no hash (json, xml, point), whose hash is too weak (jsonb: number signs
are lost, array elements 32 apart can swap) or whose equality is too loose
(interval: '1 day' = '24 hours') are hashed in their text form under the
pinned session settings; jsonb's text form is canonical (key order and
whitespace of the input do not matter).

Known limit: a timestamp's hash folds its 64-bit value into 32 bits, so two
timestamps more than 71 minutes apart collide with probability 2^-32 (a
change of 1 µs never does).

Type names and function names reach SQL only from the fixed tables below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from psycopg import sql

from migctl.errors import UsageError
from migctl.validate.catalog import PgType

ALGORITHMS = ("chain",)
MIN_SERVER_VERSION = 110000  # the *extended(value, seed) hash functions

# The chain's starting state, and what the seed is XORed with to tell apart what a hash cannot.
SEED = 104729
NULL_SEED = 0x2545F4914F6CDD1D
NEGATIVE_SEED = 0x5851F42D4C957F2D
NAN_SEED = 0x14057B7EF767814F

_INT = {"int2", "int4", "int8"}
_FLOAT = {"float4", "float8"}
_TEXT = {"text", "varchar", "name"}
_SCALAR = {"bool", "char", "bytea", "date", "time", "timetz", "timestamp", "timestamptz"}
_ARRAY_ELEMENTS = (
    _INT
    | _FLOAT
    | {"text", "varchar", "bpchar", "bool", "bytea", "date", "time", "timestamp"}
    | {"timestamptz", "uuid"}
)

_TEXT_ELEMENTS = {"text", "varchar", "bpchar"}  # collatable: hashed under their collation

CASTS = ("int8", "float8", "numeric", "text", "jsonb")

# family -> (hash function, what the value is cast to first, the value that stands in for NULL)
_STEPS: dict[str, tuple[str, str, str]] = {
    "int": ("hashint8extended", "::int8", "0"),
    "float": ("hashfloat8extended", "::float8", "0"),
    "numeric": ("hash_numeric_extended", "", "0"),
    "numeric_finite": ("hash_numeric_extended", "", "0"),  # numeric(p, s): no ±Infinity
    "text": ("hashtextextended", ' COLLATE "C"', "''"),
    "bpchar": ("hashbpcharextended", ' COLLATE "C"', "''"),
    "uuid": ("uuid_hash_extended", "", "'00000000-0000-0000-0000-000000000000'"),
    "jsonb": ("hashtextextended", ' COLLATE "C"', "''"),
    "as_text": ("hashtextextended", ' COLLATE "C"', "''"),
    "bytea": ("hashtextextended", '::text COLLATE "C"', "''"),  # hex under the pinned bytea_output
    "array": ("hash_array_extended", "", "'{}'"),
    "text_array": ("hash_array_extended", ' COLLATE "C"', "'{}'"),  # elements byte for byte
    "bool": ("hashint4extended", "::int4", "false"),
    "char": ("hashcharextended", "", "''"),
    "date": ("timestamp_hash_extended", "::timestamp", "'epoch'"),
    "time": ("time_hash_extended", "", "'allballs'"),
    "timetz": ("timetz_hash_extended", "", "'00:00+00'"),
    "timestamp": ("timestamp_hash_extended", "", "'epoch'"),
    # exact: the session's TimeZone is pinned to UTC, which has no daylight saving time
    "timestamptz": ("timestamp_hash_extended", "::timestamp", "'epoch'"),
}
FAMILIES = tuple(_STEPS)


def choose_algorithm(*server_versions: int) -> str:
    """The checksum algorithm for these servers; below PostgreSQL 11 is unsupported."""
    oldest = min(server_versions)
    if oldest < MIN_SERVER_VERSION:
        raise UsageError(
            f"PostgreSQL {oldest // 10000} is not supported: validate needs 11 or later"
        )
    return ALGORITHMS[0]


def family(t: PgType) -> str:
    """How a column of this (base) type is hashed."""
    if not t.builtin or t.kind != "b":
        return "as_text"  # enums (OID-based hash), composites, ranges, extension types
    name = t.name
    for members, fam in ((_INT, "int"), (_FLOAT, "float"), (_TEXT, "text")):
        if name in members:
            return fam
    if name == "numeric":
        return "numeric_finite" if t.finite else name
    if name in _SCALAR or name in ("bpchar", "uuid", "jsonb"):
        return name
    if name.startswith("_") and t.element in _ARRAY_ELEMENTS:
        return "text_array" if t.element in _TEXT_ELEMENTS else "array"
    return "as_text"  # json, xml, interval, money, geometric types, numeric[] ...


@dataclass(frozen=True)
class ColumnHash:
    """How one shared column is hashed, identically on both sides.

    ``nullable``: either side may hold NULL in it (NULL then gets its own seed).
    """

    name: str
    family: str
    cast: str | None = None
    nullable: bool = True

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


def column_hash(name: str, source: PgType, target: PgType, *, nullable: bool = True) -> ColumnHash:
    """The common hashing for a column whose type may differ between the sides."""
    fs, ft = family(source), family(target)
    same = source.name == target.name
    if fs == ft:
        if fs in ("array", "text_array") and not same:
            return ColumnHash(name, "as_text", nullable=nullable)  # int4[] against int8[]
        if fs == "int" and not same:
            return ColumnHash(name, "int", "int8", nullable)
        if fs == "float" and not same:
            return ColumnHash(name, "float", "float8", nullable)
        return ColumnHash(name, fs, nullable=nullable)
    pair = {fs, ft}
    if pair == {"numeric", "numeric_finite"}:  # numeric against numeric(p, s)
        return ColumnHash(name, "numeric", nullable=nullable)
    if pair in ({"int", "numeric"}, {"int", "numeric_finite"}):
        return ColumnHash(name, (pair - {"int"}).pop(), "numeric", nullable)
    if pair == {"text", "bpchar"}:
        return ColumnHash(name, "text", "text", nullable)
    if "jsonb" in pair and "json" in (source.name, target.name):
        return ColumnHash(name, "jsonb", "jsonb", nullable)
    return ColumnHash(name, "as_text", nullable=nullable)  # e.g. timestamp against timestamptz


def _step(c: ColumnHash, state: sql.Composable) -> sql.Composable:
    """The chain state after column ``c``, given the state before it."""
    function, conversion, null_value = _STEPS[c.family]
    v = c.value()
    seed = state
    if c.nullable:
        seed = sql.SQL("({} # CASE WHEN {} IS NULL THEN {} ELSE 0 END)").format(
            seed, sql.Identifier(c.name), sql.Literal(NULL_SEED)
        )
        v = sql.SQL("coalesce({}, {})").format(v, sql.SQL(null_value))
    x = sql.SQL("{}{}").format(v, sql.SQL(conversion))
    if c.family == "int":  # the hash folds 64 bits into 32: the high half goes into the seed
        seed = sql.SQL("{} # ({} >> 32)").format(seed, x)
    elif c.family in ("numeric", "numeric_finite"):  # the hash ignores the sign and returns
        # the seed for NaN and ±Infinity; without ±Infinity (numeric(p, s)) NaN alone does
        nan: sql.Composable = sql.SQL("")
        if c.family == "numeric":
            nan = sql.SQL(" WHEN {x} = 'NaN' THEN {v}").format(x=x, v=sql.Literal(NAN_SEED))
        seed = sql.SQL("{} # CASE WHEN {x} < 0 THEN {n}{nan} ELSE 0 END").format(
            seed, x=x, n=sql.Literal(NEGATIVE_SEED), nan=nan
        )
    elif c.family in ("array", "text_array"):  # dimensions are not hashed; '{}' ignores the seed
        seed = sql.SQL(
            "{} # CASE WHEN array_ndims({x}) > 1 OR array_lower({x}, 1) <> 1"
            " THEN hashtextextended(array_dims({x}), 0) ELSE 0 END"
        ).format(seed, x=x)
        return sql.SQL("({f}({x}, {s}) # {h})").format(f=sql.SQL(function), x=x, s=seed, h=state)
    return sql.SQL("{}({}, {})").format(sql.SQL(function), x, seed)


@functools.lru_cache(maxsize=64)
def hash_columns(columns: tuple[ColumnHash, ...]) -> sql.Composable:
    """A 64-bit hash of the listed columns: the chain, then a final mix of the whole state.

    Composed once per column list (narrowing puts it in every statement, up to
    ``BATCH_RANGES`` times each): the result is immutable.
    """
    state: sql.Composable = sql.Literal(SEED)
    for c in columns:
        state = _step(c, state)
    return sql.SQL("hashint8extended(0, {})").format(state)
