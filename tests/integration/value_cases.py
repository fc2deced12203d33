"""Values of every column type validate hashes, as SQL, and their nearest different neighbours.

For the property suite (``test_validate_properties.py``). A value is an SQL
expression built from a text parameter, so that any value PostgreSQL can hold
(a timestamp in 294276 AD, a float's every bit pattern) is written exactly:
``Case.sql(v)`` returns ``(expression, params)``. ``neighbours(v)`` lists
values that differ from ``v`` in one bit or one unit at every position of its
representation; for 8-byte types also the values whose 64 bits fold onto the
same 32 (``hashint8extended`` XORs the high half into the low half), which
PostgreSQL's own hash functions cannot tell apart.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

INT64 = (-(2**63), 2**63 - 1)
# timestamp's range in microseconds from 2000-01-01: 4714-11-24 BC to 294276-12-31 23:59:59.999999
TIMESTAMP_US = (-211813488000000000, 9223371331199999999)
DAY_US = 86_400_000_000
DATE_DAYS = (-2451545, 2145031948)  # 4714-11-24 BC .. 5874897-12-31, in days from 2000-01-01


def flips(v: int, bits: int) -> list[int]:
    """``v`` with each of its ``bits`` bits flipped in turn (two's complement)."""
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    out = []
    for i in range(bits):
        w = (v & mask) ^ (1 << i)
        out.append(w - (1 << bits) if w & sign else w)
    return out


def fold(v: int) -> int:
    """What ``hashint8extended`` hashes of a 64-bit value: the low half XOR the (complemented) high."""
    lo, hi = v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF
    return lo ^ (hi if v >= 0 else ~hi & 0xFFFFFFFF)


def fold_twins(v: int) -> list[int]:
    """Other 64-bit values with the same fold as ``v``: another high half, the low half to match."""
    hi = v >> 32
    twins = []
    for other in {hi + 1, hi - 1, hi ^ 1, hi ^ (1 << 20), -hi - 1, 0, -1}:
        if not -(2**31) <= other < 2**31 or other == hi:
            continue
        mask_other = other & 0xFFFFFFFF if other >= 0 else ~other & 0xFFFFFFFF
        lo = fold(v) ^ mask_other
        twin = (other << 32) | lo
        assert fold(twin) == fold(v)
        twins.append(twin)
    return twins


def int64_neighbours(v: int, lo: int, hi: int) -> list[int]:
    near = [*flips(v, 64), *fold_twins(v), v + 1, v - 1, v + 2**32 + 1, v - 2**32 - 1]
    return sorted({w for w in near if lo <= w <= hi and w != v})


@dataclass(frozen=True)
class Case:
    """One column type: how to write a value, what values to start from, and their neighbours."""

    type_sql: str
    values: st.SearchStrategy[Any]
    neighbours: Callable[[Any], Iterable[Any]]
    expression: str | Callable[[Any], str] = "%s::{type}"  # SQL from text parameters
    params: Callable[[Any], tuple[Any, ...]] = lambda v: (str(v),)
    key: bool = True  # tested as a primary key too

    def sql(self, value: Any) -> tuple[str, tuple[Any, ...]]:
        """An SQL expression of this type holding ``value``, and its parameters."""
        if value is None:
            return f"NULL::{self.type_sql}", ()
        expression = self.expression(value) if callable(self.expression) else self.expression
        return f"({expression.format(type=self.type_sql)})::{self.type_sql}", self.params(value)


def _us_params(v: int) -> tuple[str, str]:
    seconds, micros = divmod(v, 1_000_000)
    return str(seconds), str(micros)


_FROM_US = "{base} + (%s || ' seconds')::interval + (%s || ' microseconds')::interval"


def _float8_text(bits: int) -> str:
    f = struct.unpack(">d", struct.pack(">q", bits))[0]
    return repr(f)  # 'nan', 'inf', '-0.0': PostgreSQL reads them all


def _float4_text(bits: int) -> str:
    f = struct.unpack(">f", struct.pack(">i", bits))[0]
    return repr(f)


def _float8_neighbours(bits: int) -> list[int]:
    values = {_float8_text(b) for b in flips(bits, 64)} - {_float8_text(bits)}
    # one NaN for all NaN patterns, and -0.0 is 0.0: neither is a different value
    nan = _float8_text(bits) == "nan"
    zero = _float8_text(bits) in ("0.0", "-0.0")
    return [
        b
        for b in flips(bits, 64)
        if _float8_text(b) in values
        and not (nan and _float8_text(b) == "nan")
        and not (zero and _float8_text(b) in ("0.0", "-0.0"))
    ]


def _float4_neighbours(bits: int) -> list[int]:
    own = _float4_text(bits)
    out = []
    for b in flips(bits, 32):
        text = _float4_text(b)
        if text == own or (own == "nan" and text == "nan"):
            continue
        if own in ("0.0", "-0.0") and text in ("0.0", "-0.0"):
            continue
        out.append(b)
    return out


def _numeric_neighbours(d: Decimal) -> list[str]:
    if not d.is_finite():
        return ["0", "1", "-1", *(x for x in ("NaN", "Infinity", "-Infinity") if x != _num(d))]
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    out = {_num(-d) if d != 0 else "1", "NaN", "Infinity", "-Infinity"}
    for i in range(len(digits)):
        for delta in (1, -1):
            changed = list(digits)
            changed[i] = (changed[i] + delta) % 10
            out.add(_num(Decimal((sign, tuple(changed), exponent))))
    out.add(_num(d + Decimal((0, (1,), exponent - 1))))  # one more digit at the end
    return sorted(x for x in out if x != _num(d) and Decimal(x) != d)


def _num(d: Decimal) -> str:
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    return format(d, "f")


def _text_neighbours(s: str) -> list[str]:
    out = {s + "x", s + " ", " " + s}
    for i, ch in enumerate(s):
        for other in (chr(ord(ch) ^ 1), ch.swapcase(), ""):
            if len(other) > 1 or (other and (other == "\x00" or 0xD800 <= ord(other) <= 0xDFFF)):
                continue
            out.add(s[:i] + other + s[i + 1 :])
    return sorted(x for x in out if x != s)


def _bytes_neighbours(b: bytes) -> list[bytes]:
    out = {b + b"\x00", b[:-1]} if b else {b"\x00"}
    for i in range(len(b)):
        for bit in range(8):
            out.add(b[:i] + bytes([b[i] ^ (1 << bit)]) + b[i + 1 :])
    return sorted(x for x in out if x != b)


def _uuid_text(v: int) -> str:
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _array_text(items: list[int | None]) -> str:
    return "{" + ",".join("NULL" if x is None else str(x) for x in items) + "}"


def _int8_array_neighbours(items: list[int | None]) -> list[list[int | None]]:
    out: list[list[int | None]] = [[], [None], [*items, None], [None, *items], items[:-1]]
    for i, x in enumerate(items):
        if x is None:
            out.append([*items[:i], 0, *items[i + 1 :]])
            continue
        for w in int64_neighbours(x, *INT64)[:80]:
            out.append([*items[:i], w, *items[i + 1 :]])
        out.append([*items[:i], None, *items[i + 1 :]])
    if len(items) > 1:
        out.append(list(reversed(items)))
    return [o for o in out if o != items]


class JsonNull:
    """JSON's null, which is not SQL's NULL (``None``)."""

    def __repr__(self) -> str:
        return "JSON_NULL"


JSON_NULL = JsonNull()

TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8)

JSONB_VALUES = st.recursive(
    st.just(JSON_NULL)
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=8,
)


def jsonb_text(value: Any) -> str:
    """JSON text with every number written as its exact digits (Decimals keep their zeros)."""
    import json

    if value is JSON_NULL:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return _num(Decimal(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    return (
        "{"
        + ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: {jsonb_text(v)}" for k, v in value.items()
        )
        + "}"
    )


def with_more_zeros(value: Any, zeros: int = 2) -> Any:
    """The same JSON value with every number written with ``zeros`` more fractional zeros."""
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        text = _num(Decimal(value))
        return Decimal(text + ("" if "." in text else ".") + "0" * zeros)
    if isinstance(value, list):
        return [with_more_zeros(v, zeros) for v in value]
    if isinstance(value, dict):
        return {k: with_more_zeros(v, zeros) for k, v in value.items()}
    return value


def _jsonb_neighbours(value: Any) -> list[Any]:
    """Values that PostgreSQL calls different from ``value``: one change at each place."""
    out: list[Any] = [[value], {"k": value}, JSON_NULL if value is not JSON_NULL else 0]
    if isinstance(value, bool):
        out.append(not value)
    elif isinstance(value, int | Decimal):
        out += [-value if value else 1, value + 1, str(value), [value]]
    elif isinstance(value, str):
        out += _text_neighbours(value)[:6]
    elif isinstance(value, list):
        out += [value[:-1], [*value, JSON_NULL], [value]]
        if len(value) > 1 and value[0] != value[-1]:
            out.append(list(reversed(value)))
        out.append({str(i): v for i, v in enumerate(value)})
        for i, v in enumerate(value):
            out += [[*value[:i], n, *value[i + 1 :]] for n in _jsonb_neighbours(v)[:3]]
    elif isinstance(value, dict):
        out += [list(value.keys()), list(value.values())]
        for k, v in value.items():
            out.append({kk: vv for kk, vv in value.items() if kk != k})
            out.append({**{kk: vv for kk, vv in value.items() if kk != k}, k + "x": v})
            out += [{**value, k: n} for n in _jsonb_neighbours(v)[:3]]
    return out


CASES: dict[str, Case] = {
    "int2": Case("int2", st.integers(-(2**15), 2**15 - 1), lambda v: flips(v, 16)),
    "int4": Case("int4", st.integers(-(2**31), 2**31 - 1), lambda v: flips(v, 32)),
    "int8": Case("int8", st.integers(*INT64), lambda v: int64_neighbours(v, *INT64)),
    "float4": Case(
        "float4",
        st.integers(-(2**31), 2**31 - 1),
        _float4_neighbours,
        params=lambda v: (_float4_text(v),),
    ),
    "float8": Case(
        "float8", st.integers(*INT64), _float8_neighbours, params=lambda v: (_float8_text(v),)
    ),
    "numeric": Case(
        "numeric",
        st.decimals(allow_nan=True, allow_infinity=True, places=None)
        .filter(lambda d: not d.is_finite() or abs(d.adjusted()) < 60)
        .filter(lambda d: not d.is_snan()),
        _numeric_neighbours,
        params=lambda v: (_num(v) if isinstance(v, Decimal) else v,),
        key=False,  # NaN keys aside, numeric keys work: covered by the random tables
    ),
    "numeric(18,4)": Case(
        "numeric(18,4)",
        st.decimals(min_value=-(10**13), max_value=10**13, places=4, allow_nan=False),
        lambda d: [x for x in _numeric_neighbours(d) if "Inf" not in x and _fits(x, 14, 4)],
        params=lambda v: (_num(v) if isinstance(v, Decimal) else v,),
    ),
    "text": Case("text", TEXT, _text_neighbours),
    "char(4)": Case(
        "char(4)",
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=4),
        # char(n) ignores trailing blanks: 'a' and 'a ' are one value
        lambda s: sorted({x[:4].rstrip(" ") for x in _text_neighbours(s)} - {s.rstrip(" ")}),
    ),
    "bytea": Case(
        "bytea", st.binary(max_size=6), _bytes_neighbours, params=lambda b: ("\\x" + b.hex(),)
    ),
    "uuid": Case(
        "uuid",
        st.integers(0, 2**128 - 1),
        lambda v: flips(v, 128),
        params=lambda v: (_uuid_text(v % 2**128),),
    ),
    "bool": Case("bool", st.booleans(), lambda v: [not v]),
    "date": Case(
        "date",
        st.integers(*DATE_DAYS) | st.sampled_from(["infinity", "-infinity"]),
        lambda v: (
            [0, 1, -1, DATE_DAYS[1]] + (["-infinity"] if v == "infinity" else ["infinity"])
            if isinstance(v, str)
            else [w for w in {*flips(v, 32), v + 1, v - 1, "infinity", "-infinity"} if _date_ok(w)]
        ),
        expression=lambda v: "%s::date" if isinstance(v, str) else "date '2000-01-01' + %s::int4",
    ),
    "timestamp": Case(
        "timestamp",
        st.integers(*TIMESTAMP_US),
        lambda v: int64_neighbours(v, *TIMESTAMP_US),
        expression=_FROM_US.format(base="timestamp '2000-01-01'"),
        params=_us_params,
    ),
    "timestamptz": Case(
        "timestamptz",
        st.integers(*TIMESTAMP_US),
        lambda v: int64_neighbours(v, *TIMESTAMP_US),
        expression=_FROM_US.format(base="timestamptz '2000-01-01 00:00:00+00'"),
        params=_us_params,
    ),
    "time": Case(
        "time",
        st.integers(0, DAY_US - 1),
        lambda v: int64_neighbours(v, 0, DAY_US - 1),
        expression=_FROM_US.format(base="time '00:00'"),
        params=_us_params,
    ),
    "timetz": Case(
        "timetz",
        st.tuples(st.integers(0, DAY_US - 1), st.integers(-57599, 57599)),
        lambda v: (
            [(w, v[1]) for w in int64_neighbours(v[0], 0, DAY_US - 1)]
            + [
                (v[0], z)
                for z in {v[1] + 1, v[1] - 1, -v[1], v[1] ^ 1}
                if -57599 <= z <= 57599 and z != v[1]
            ]
        ),
        expression="((" + _FROM_US.format(base="time '00:00'") + ")::text || %s)::timetz",
        params=lambda v: (*_us_params(v[0]), _zone(v[1])),
    ),
    "money": Case(
        "money",
        st.integers(*INT64),
        lambda v: int64_neighbours(v, *INT64),
        expression="(%s::numeric * 0.01)::money",  # a product is exact; a quotient is rounded
    ),
    "jsonb": Case(
        "jsonb", JSONB_VALUES, _jsonb_neighbours, params=lambda v: (jsonb_text(v),), key=False
    ),
    "int8[]": Case(
        "int8[]",
        st.lists(st.integers(*INT64) | st.none(), max_size=3),
        _int8_array_neighbours,
        params=lambda v: (_array_text(v),),
        key=False,
    ),
    "int4[]": Case(
        "int4[]",
        st.lists(st.integers(-(2**31), 2**31 - 1) | st.none(), max_size=3),
        lambda items: [
            o
            for o in (
                [],
                [None],
                [*items, None],
                items[:-1],
                *(
                    [*items[:i], w, *items[i + 1 :]]
                    for i, x in enumerate(items)
                    if x is not None
                    for w in flips(x, 32)
                ),
            )
            if o != items
        ],
        params=lambda v: (_array_text(v),),
        key=False,
    ),
    "interval": Case(
        "interval",
        st.tuples(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-(2**40), 2**40)),
        lambda v: (
            [
                (v[0] + dm, v[1] + dd, v[2] + du)
                for dm, dd, du in (
                    (1, 0, 0),
                    (0, 1, 0),
                    (0, 0, 1),
                    (0, 0, -1),
                    (-1, 0, 0),
                    (0, -1, 0),
                )
            ]
            + [(v[0], v[1], w) for w in flips(v[2], 64) if abs(w) < 2**62]
        ),
        expression="make_interval(months => %s::int4, days => %s::int4) + (%s || ' microseconds')::interval",
        params=lambda v: (str(v[0]), str(v[1]), str(v[2])),
    ),
}


def _fits(text: str, digits: int, scale: int) -> bool:
    d = Decimal(text)
    return (
        d.is_finite()
        and abs(d) < Decimal(10) ** (digits - scale)
        and -d.as_tuple().exponent <= scale
    )  # type: ignore[operator]


def _date_ok(v: object) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and DATE_DAYS[0] <= v <= DATE_DAYS[1])


def _zone(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    s = abs(seconds)
    return f"{sign}{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
