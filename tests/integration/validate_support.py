"""What the validate integration tests share: running a validation, reading it, the corpus."""

from __future__ import annotations

from typing import Any

from migctl.db import Database
from migctl.validate.local import validate
from migctl.validate.report import TableResult, ValidationReport
from migctl.validate.runner import ValidateOptions
from migctl.validate.session import SessionOptions


def run(pg_pair: Any, **options: Any) -> ValidationReport:
    options.setdefault("session", SessionOptions(retry_wait_seconds=0))
    return validate(
        Database(pg_pair.source_dsn, "source"),
        Database(pg_pair.target_dsn, "target"),
        ValidateOptions(**options),
    )


def table(report: ValidationReport, name: str) -> TableResult:
    (found,) = [t for t in report.tables if t.table == name]
    return found


def on_target(pg_pair: Any, *statements: str) -> None:
    with pg_pair.target_conn() as conn:
        for statement in statements:
            conn.execute(statement)


ALL_TYPES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
CREATE TABLE everything (
    id int PRIMARY KEY, i2 smallint, i8 bigint, f4 real, f8 double precision, n numeric, n4 numeric(18,4),
    p positive, m money, t text, v varchar(20), c char(5), b bool, by bytea, d date, tm time, ttz timetz,
    ts timestamp, tz timestamptz, iv interval, u uuid, j json, jb jsonb, ia int[], ta text[], tza timestamptz[],
    e mood, ea mood[], cp pair, r int4range, tr tstzrange, ip inet, mac macaddr, x xml
);
INSERT INTO everything VALUES
 (1, 1, 9000000000000, 1.5, 0.1, 1.10, 2.5000, 3, 12.34, 'text', 'varchar', 'ab', true, '\\x00ff10',
  '2024-03-04', '13:14:15.123456', '13:14:15+05:30', '2024-03-04 05:06:07.000001',
  '2024-03-04 05:06:07.000001+02', '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": [1, 2.50]}', '{1,NULL,3}', '{"a,b","c"}',
  '{"2024-01-01 00:00:00+00","2024-06-01 12:00:00.5+03"}', 'happy', '{sad,happy}', '(1,"x y")', '[1,10)',
  '["2024-01-01 00:00+00","2024-02-01 00:00+05")', '10.1.2.3/32', '08:00:2b:01:02:03', '<a>1</a>'),
 (2, -32768, -9223372036854775808, 'NaN', 'Infinity', 'NaN', 0.0001, 0.5, -1.00, '', '', '', false, '\\x',
  '0001-01-01', '00:00', '00:00+00', '-infinity', 'infinity', '-1 day +00:00:01', '00000000-0000-0000-0000-000000000000',
  '[]', '{}', '{}', '{}', '{}', 'sad', '{}', '(,)', 'empty', 'empty', '::1', '00:00:00:00:00:00', ''),
 (3, NULL, NULL, '-Infinity', '-Infinity', 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null', 'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL),
 (4, 7, 7, 1e-30, 1e-300, '-Infinity', 12345678901234.1234, 1e-20, 0, 'é ü 中', 'Z', 'z', NULL,
  '\\xdeadbeef', '2099-12-31', '23:59:59.999999', '23:59:59.999999-12', '1999-01-01', '1999-01-01 00:00+14',
  '-178000000 years', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '"x"', '"x"', '{-1}', '{NULL}', '{NULL}',
  'ok', '{ok,NULL}', '(-1,"")', '(,5]', '(,)', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', NULL);
"""


DETECT = """
CREATE TABLE detect (
    id int PRIMARY KEY, a text, b text, tz timestamptz, by bytea, ia int[], jb jsonb, s numeric(12,4),
    n numeric, f float8, iv interval, i8 bigint
);
INSERT INTO detect
SELECT g, 'a' || g, 'b' || g, '2024-01-01 00:00+00'::timestamptz + g * interval '1 min', int4send(g),
       ARRAY[g, g + 1, g + 2], jsonb_build_object('k', g, 'nested', jsonb_build_object('v', g)), g / 3.0, g / 3.0,
       g / 7.0, g * interval '1 hour', g
FROM generate_series(1, 400) g;
UPDATE detect SET a = NULL WHERE id = 1;
UPDATE detect SET a = 'a|b', b = 'c' WHERE id = 2;
UPDATE detect SET n = 'NaN' WHERE id IN (8, 9);
UPDATE detect SET f = 'Infinity' WHERE id = 10;
UPDATE detect SET iv = '1 day' WHERE id = 11;
UPDATE detect SET f = 'NaN' WHERE id = 12;
UPDATE detect SET f = 0 WHERE id = 302;
UPDATE detect SET ia = '{302,303,304}' WHERE id = 303;
UPDATE detect SET ia = '{303,304,305,306}' WHERE id = 304;
UPDATE detect SET i8 = 1 WHERE id = 305;
UPDATE detect SET ia = '{}' WHERE id = 306;
UPDATE detect SET ia = '{NULL,NULL}' WHERE id = 307;
UPDATE detect SET s = 'NaN' WHERE id IN (309, 310);
"""

CHANGES = {
    1: "UPDATE detect SET a = '' WHERE id = 1",  # NULL -> ''
    2: "UPDATE detect SET a = 'a', b = 'b|c' WHERE id = 2",  # column boundaries
    3: "UPDATE detect SET tz = tz + interval '1 microsecond' WHERE id = 3",
    4: "UPDATE detect SET by = set_byte(by, 3, get_byte(by, 3) # 1) WHERE id = 4",
    5: "UPDATE detect SET ia[2] = ia[2] + 1 WHERE id = 5",
    6: "UPDATE detect SET jb = jsonb_set(jb, '{nested,v}', '0') WHERE id = 6",
    7: "UPDATE detect SET s = s + 0.0001 WHERE id = 7",  # last scale digit of numeric(12,4)
    8: "UPDATE detect SET n = 'Infinity' WHERE id = 8",  # NaN -> Infinity
    9: "UPDATE detect SET n = NULL WHERE id = 9",  # NaN -> NULL
    10: "UPDATE detect SET f = '-Infinity' WHERE id = 10",
    11: "UPDATE detect SET iv = '24 hours' WHERE id = 11",  # equal for PostgreSQL, not the same value
    12: "UPDATE detect SET f = NULL WHERE id = 12",
    13: "UPDATE detect SET n = -n WHERE id = 300",  # hash_numeric_extended alone ignores the sign
    14: "UPDATE detect SET jb = jsonb_set(jb, '{k}', to_jsonb(-id)) WHERE id = 301",  # and so does jsonb's hash
    15: "UPDATE detect SET f = NULL WHERE id = 302",  # 0.0 -> NULL: float zero hashes to the seed
    16: "UPDATE detect SET ia = '[0:2]={302,303,304}' WHERE id = 303",  # lower bound only
    17: "UPDATE detect SET ia = '{{303,304},{305,306}}' WHERE id = 304",  # dimensions only
    18: "UPDATE detect SET i8 = 4294967296 WHERE id = 305",  # hashint8extended folds 2^32 onto 1
    # hash_array_extended ignores its seed for '{}' and all-NULL arrays: earlier columns must count
    19: "UPDATE detect SET a = 'x' WHERE id = 306",
    20: "UPDATE detect SET b = 'x' WHERE id = 307",
    # numeric(12,4) cannot hold ±Infinity: only the sign is tested, NaN alone hashes to the seed
    21: "UPDATE detect SET s = -s WHERE id = 308",
    22: "UPDATE detect SET s = 0 WHERE id = 309",  # NaN -> 0
    23: "UPDATE detect SET s = NULL WHERE id = 310",  # NaN -> NULL
}


COLLATION_SENSITIVE = ["a", "B", "_x", "é", "Z", "aa", "A", "ä", "e", "0", " lead", "zz", "Å"]
