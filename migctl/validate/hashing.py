"""How a row is hashed, identically on both sides, whatever the servers' settings: every bit counts.

Row hashes are computed from the values, never from how a server prints
them, so TimeZone, DateStyle and friends cannot create differences. Values
that PostgreSQL calls equal hash alike: integers of any width (int4 against
int8), numerics with different trailing zeros (numeric(18,4) against
numeric(20,6)), ``-0.0`` and ``0.0``, varchar and text; jsonb numbers with
different trailing zeros are told apart only by the strict pass and found
equal when the rows are compared (see :func:`hash_columns`).

**The chain** threads one 64-bit state through the columns; each column's
step takes the state and the value and returns the next state, and a final
mix makes row hashes unrelated to one another (a chunk's *sum* of row hashes
cannot then cancel a value swapped between two rows). A step comes in one of
two forms, and every step is a real mix of the state (never the identity, so
a value's column position always counts):

- *seeded*: the type's own extended hash, seeded with the state, where that
  hash takes every bit of the value and mixes its seed for every value:
  ``hashint8extended(v, s # (v >> 32))`` (the function folds 64 bits into 32:
  the high half goes into the seed), ``hashtextextended`` (text byte for byte,
  ``COLLATE "C"``), ``hashbpcharextended``, ``uuid_hash_extended``, ``bool`` and
  ``"char"``; dates as whole days from 2000-01-01 (``hashint4extended``, their
  full 32 bits); ``timestamp``, ``timestamptz``, ``time`` and ``timetz`` as the
  hex text of their binary form (``timestamp_send(v)::text``: the full 8 or 12
  bytes; the types' own hash functions fold 64 bits into 32); bytea as its hex text.
- *mixed*: ``M(h(v) # s)``, where ``h`` is the type's hash with a seed that
  does not depend on the state and ``M(u) = hashint8extended(0, u)`` mixes all
  64 bits of ``u``. For hashes that ignore their seed for some values:
  ``hashfloat8extended`` returns its seed for ±0; ``hash_numeric_extended``
  returns its seed for NaN and ±Infinity and ignores the sign (both go into
  its seed: a negative sign, NaN), and ``hash_array_extended`` returns a fixed
  number for ``'{}'`` and arrays of NULLs and ignores dimensions and lower
  bounds (they go into its seed). Arrays are hashed this way only when their
  element hash takes every bit (int2, int4, float, text, bpchar, bool, bytea,
  date, uuid elements); arrays of 8-byte integers and times are hashed as text.

NULL is a fixed value of the type with its own seed (``NULL_SEED``), in
columns that may hold NULL on either side.

Types whose hash depends on the server (enum hashes the label's OID), that
have no hash (json, xml, point), whose hash is too weak (jsonb: number signs
are lost, nesting is ambiguous) or whose equality is too loose (interval:
'1 day' = '24 hours') are hashed in their text form under the pinned session
settings; jsonb's text form is canonical (key order and whitespace of the
input do not matter).

**Wide tables.** The chain is an expression nested once per column; past
``GROUP_COLUMNS`` columns, groups of that many are chained separately (each
from its own seed) and the groups' states are chained with ``M(s # g)``, so
the nesting stays shallow (PostgreSQL refuses an expression nested ~1,600
deep) up to PostgreSQL's limit of 1,600 columns.

**Collision bound.** A changed row goes unseen only if its 64-bit row hash,
or a chunk's sum, collides by chance: about 2^-64 per changed row, for
data nobody chose to collide (lookup3, PostgreSQL's hash, is not a
cryptographic hash). docs/performance.md has the measurement.

The SQL is built as flat text (no nested composition objects, so 1,600
columns do not reach Python's recursion limit), from quoted identifiers and
from the fixed tables below only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from psycopg import sql

from migctl.errors import UsageError
from migctl.pgnames import quote_ident
from migctl.validate.catalog import PgType

ALGORITHMS = ("chain64",)
MIN_SERVER_VERSION = 110000  # the *extended(value, seed) hash functions

# The chain's starting state, and what a seed is XORed with to tell apart what a hash cannot.
SEED = 104729
NULL_SEED = 0x2545F4914F6CDD1D
NEGATIVE_SEED = 0x5851F42D4C957F2D
NAN_SEED = 0x14057B7EF767814F
GROUP_SEED = 0x61C8864680B583EB  # group g of a wide table starts from SEED # g * GROUP_SEED
GROUP_COLUMNS = 32

_INT = {"int2", "int4", "int8"}
_FLOAT = {"float4", "float8"}
_TEXT = {"text", "varchar", "name"}
_SCALAR = {"bool", "char", "bytea", "date", "time", "timetz", "timestamp", "timestamptz"}
# Element types whose hash takes every bit and calls equal what PostgreSQL calls equal.
_ARRAY_ELEMENTS = {"int2", "int4", "float4", "float8", "bool", "bytea", "date", "uuid"}
_TEXT_ELEMENTS = {"text", "varchar", "bpchar"}  # collatable: hashed under COLLATE "C"

CASTS = ("int8", "float8", "numeric", "text", "jsonb")

# jsonb's text form with the trailing zeros of every number's fraction removed (strings kept
# as they are): the form in which jsonb values PostgreSQL calls equal are equal text.
_JSONB_CANONICAL = (
    'regexp_replace({}, \'("(?:[^"\\\\]|\\\\.)*")|(\\.[0-9]*[1-9])0+(?![0-9])|\\.0+(?![0-9])\','
    " '\\1\\2', 'g')"
)


@dataclass(frozen=True)
class _Step:
    """One family's step: ``function(value, seed)``, the value's conversion, NULL's stand-in."""

    function: str
    template: str = "{}"  # the value, converted: "{}::int4", "encode(time_send({}), 'hex')"
    null_value: str = "0"
    mixed: bool = False  # M(function(value, inner_seed) # state) instead of function(value, state)


_STEPS: dict[str, _Step] = {
    "int": _Step("hashint8extended", "{}::int8"),
    "float": _Step("hashfloat8extended", "{}::float8", mixed=True),
    "numeric": _Step("hash_numeric_extended", mixed=True),
    "numeric_finite": _Step("hash_numeric_extended", mixed=True),  # numeric(p, s): no ±Infinity
    "text": _Step("hashtextextended", '{} COLLATE "C"', "''"),
    "bpchar": _Step("hashbpcharextended", '{} COLLATE "C"', "''"),
    "uuid": _Step("uuid_hash_extended", null_value="'00000000-0000-0000-0000-000000000000'"),
    "jsonb": _Step("hashtextextended", '{} COLLATE "C"', "''"),
    "as_text": _Step("hashtextextended", '{} COLLATE "C"', "''"),
    "bytea": _Step("hashtextextended", '{}::text COLLATE "C"', "''"),  # hex: bytea_output pinned
    "array": _Step("hash_array_extended", null_value="'{}'", mixed=True),
    "text_array": _Step("hash_array_extended", '{} COLLATE "C"', "'{}'", mixed=True),
    "bool": _Step("hashint4extended", "{}::int4", "false"),
    "char": _Step("hashcharextended", null_value="''"),
    "date": _Step(
        "hashint4extended",
        "CASE WHEN isfinite({0}) THEN {0} - DATE '2000-01-01' WHEN {0} > DATE '2000-01-01'"
        " THEN 2147483647 ELSE '-2147483648'::int4 END",
        "'epoch'",
    ),
    # the full 8 (12 for timetz) bytes of the binary form, as hex text (bytea_output is pinned;
    # cheaper than encode()); the session's TimeZone does not enter
    "time": _Step("hashtextextended", "time_send({})::text", "'allballs'"),
    "timetz": _Step("hashtextextended", "timetz_send({})::text", "'00:00+00'"),
    "timestamp": _Step("hashtextextended", "timestamp_send({})::text", "'epoch'"),
    "timestamptz": _Step("hashtextextended", "timestamptz_send({})::text", "'epoch'"),
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
    if name.startswith("_") and t.element in _TEXT_ELEMENTS:
        return "text_array"
    if name.startswith("_") and t.element in _ARRAY_ELEMENTS:
        return "array"
    return "as_text"  # json, xml, interval, money, int8[], timestamp[], numeric[] ...


@dataclass(frozen=True)
class ColumnHash:
    """How one shared column is hashed, identically on both sides.

    ``nullable``: either side may hold NULL in it (NULL then gets its own seed).
    """

    name: str
    family: str
    cast: str | None = None
    nullable: bool = True

    def value_sql(self) -> str:
        """The column, cast as both sides need, as SQL text (``%`` doubled)."""
        text = quote_ident(self.name)
        if self.cast:
            text = f"{text}::{self.cast}"
        if self.family in ("as_text", "jsonb"):
            text = f"{text}::text"
        return text

    def value(self) -> sql.Composable:
        return sql.SQL(self.value_sql())

    @property
    def is_integer(self) -> bool:
        return self.family == "int"


def column_hash(name: str, source: PgType, target: PgType, *, nullable: bool = True) -> ColumnHash:
    """The common hashing for a column whose type may differ between the sides."""
    fs, ft = family(source), family(target)
    same = source.name == target.name
    if fs == ft:
        if fs in ("array", "text_array") and not same:
            return ColumnHash(name, "as_text", nullable=nullable)  # int4[] against float8[]
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


def _int8(value: int) -> str:
    """A 64-bit constant as an int8 literal (two's complement for the upper half)."""
    value &= (1 << 64) - 1
    return str(value - (1 << 64) if value >= 1 << 63 else value) + "::int8"


def _mix(state: str) -> str:
    """All 64 bits of ``state`` mixed into a new 64-bit state."""
    return f"hashint8extended(0, {state})"


def _step(c: ColumnHash, state: str, *, canonical: bool) -> str:
    """The chain state after column ``c``, given the state before it (used once: no blow-up)."""
    step = _STEPS[c.family]
    col = c.value_sql()
    v = f"coalesce({col}, {step.null_value})" if c.nullable else col
    if c.family == "jsonb" and canonical:
        v = _JSONB_CANONICAL.format(v)
    x = step.template.format(v)
    # what the seed takes besides the state: NULL's own seed, and what the hash cannot see
    extra: list[str] = []
    if c.nullable:
        extra.append(f"CASE WHEN {quote_ident(c.name)} IS NULL THEN {_int8(NULL_SEED)} ELSE 0 END")
    if c.family == "int":  # the hash folds 64 bits into 32: the high half goes into the seed
        extra.append(f"({x} >> 32)")
    if not step.mixed:
        seed = " # ".join([state, *extra])
        return f"{step.function}({x}, {seed})"
    inner = "0"
    if c.family == "numeric":  # the sign, and NaN against +Infinity (both return the seed)
        inner = (
            f"CASE WHEN {x} < 0 THEN {_int8(NEGATIVE_SEED)}"
            f" WHEN {x} = 'NaN' THEN {_int8(NAN_SEED)} ELSE 0 END"
        )
    elif c.family == "numeric_finite":  # the sign (NaN returns the seed 0; no ±Infinity here)
        inner = f"CASE WHEN {x} < 0 THEN {_int8(NEGATIVE_SEED)} ELSE 0 END"
    elif c.family in ("array", "text_array"):  # dimensions and lower bounds are not hashed
        inner = (
            f"CASE WHEN array_ndims({v}) > 1 OR array_lower({v}, 1) <> 1"
            f" THEN hashtextextended(array_dims({v}), 0) ELSE 0 END"
        )
    return _mix(" # ".join([f"{step.function}({x}, {inner})", *extra, state]))


def _chain(columns: tuple[ColumnHash, ...], seed: int, *, canonical: bool) -> str:
    state = _int8(seed)
    for c in columns:
        state = _step(c, state, canonical=canonical)
    return state


def hash_columns_sql(columns: tuple[ColumnHash, ...], *, canonical: bool = False) -> str:
    """A 64-bit hash of the listed columns, as SQL text: the chain, then a final mix.

    ``canonical``: jsonb numbers lose their fraction's trailing zeros first, so
    jsonb values PostgreSQL calls equal hash alike. The regular expression costs
    microseconds per value: only narrowing's leaves use it, never the full pass.
    """
    if len(columns) <= GROUP_COLUMNS:
        return _mix(_chain(columns, SEED, canonical=canonical))
    state = _int8(SEED)
    for g, start in enumerate(range(0, len(columns), GROUP_COLUMNS), start=1):
        group = _chain(
            columns[start : start + GROUP_COLUMNS], SEED ^ (g * GROUP_SEED), canonical=canonical
        )
        state = _mix(f"{state} # {group}")
    return _mix(state)


@functools.lru_cache(maxsize=64)
def hash_columns(columns: tuple[ColumnHash, ...], *, canonical: bool = False) -> sql.Composable:
    """:func:`hash_columns_sql` for psycopg's composition.

    Composed once per column list (narrowing puts it in every statement, up to
    ``BATCH_RANGES`` times each): the result is immutable.
    """
    return sql.SQL(hash_columns_sql(columns, canonical=canonical))


def key_text_sql(c: ColumnHash) -> str:
    """A key column's text, to order keys alike on both servers (jsonb in its canonical form)."""
    text = f"coalesce({quote_ident(c.name)}::text, '')"
    if c.family == "jsonb":
        text = _JSONB_CANONICAL.format(text)
    return f'{text} COLLATE "C"'


def has_loose_equality(columns: tuple[ColumnHash, ...]) -> bool:
    """Do some of these columns hold values PostgreSQL calls equal whose strict hashes differ?"""
    return any(c.family == "jsonb" for c in columns)
