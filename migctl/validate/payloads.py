"""The validation Lambda's payload schema, version 2: what goes over the wire, to and from JSON.

Every request and answer carries ``"version": 2``; the handler refuses any
other version with an error payload, and the caller refuses an answer in
another version. Checksums and 64-bit values travel as strings or plain JSON
integers (Python's ``json`` keeps integers exact). Results travel as their
dataclass fields, so the report built from invocations is the one a local run
builds; table and sequence names travel as ``[schema, name]`` pairs. Version 2
(the ``chain64`` row hash, name pairs, the catalog's ``schemas``, the tally's
``equal_by_value_count``) replaced version 1. Requests (``action``):

- ``plan``: one side's catalog with a row estimate per table, and on request
  the first-pass key bounds of range-chunked tables (aligned for dense keys,
  block-sample quantiles otherwise; a request without `"rows"` is sampled);
- ``count``: ``count(*)`` of a table present on one side only;
- ``checksum``: ``(rows, checksum)`` per bucket for a span of chunks, one side;
- ``narrow``: the exact differing keys inside differing chunks (both sides);
- ``sequences``: the sequence comparison (both sides).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from migctl.errors import OperationalError
from migctl.validate.catalog import Catalog, Column, PgType, SequenceInfo, TableInfo
from migctl.validate.narrow import Tally
from migctl.validate.report import Key, SequenceResult

PAYLOAD_VERSION = 2
ACTIONS = ("plan", "count", "checksum", "narrow", "sequences")


def check_answer(answer: Any) -> dict[str, Any]:
    """An answer this caller can read: a dict in our version (``ok`` may still be false)."""
    if not isinstance(answer, dict):
        raise OperationalError(
            f"validation function answered {type(answer).__name__}, not an object"
        )
    if answer.get("version") != PAYLOAD_VERSION:
        raise OperationalError(
            f"validation function speaks payload version {answer.get('version')!r},"
            f" this migctl speaks {PAYLOAD_VERSION}: deploy the matching Lambda (migctl lambda build)"
        )
    return answer


def table_to_dict(table: TableInfo) -> dict[str, Any]:
    return asdict(table)


def table_from_dict(data: dict[str, Any]) -> TableInfo:
    columns = tuple(
        Column(
            str(c["name"]),
            str(c["type_sql"]),
            PgType(**c["type"]),
            bool(c["not_null"]),
            int(c["position"]),
        )
        for c in data["columns"]
    )
    return TableInfo(
        str(data["schema"]),
        str(data["name"]),
        columns,
        tuple(map(str, data["primary_key"])),
        float(data["estimated_rows"]),
    )


def catalog_to_dict(catalog: Catalog) -> dict[str, Any]:
    return {
        "server_version": catalog.server_version,
        "tables": [table_to_dict(t) for t in catalog.tables.values()],
        "sequences": [asdict(s) for s in catalog.sequences.values()],
        "schemas": list(catalog.schemas),
    }


def catalog_from_dict(data: dict[str, Any]) -> Catalog:
    tables = {t.key: t for t in map(table_from_dict, data["tables"])}
    sequences = {}
    for s in data["sequences"]:
        owner = s.get("owned_by")
        seq = SequenceInfo(
            str(s["schema"]),
            str(s["name"]),
            int(s["increment"]),
            (str(owner[0]), str(owner[1]), str(owner[2])) if owner else None,
        )
        sequences[seq.key] = seq
    schemas = tuple(str(s) for s in data.get("schemas", ()))
    return Catalog(int(data["server_version"]), tables, sequences, schemas)


def _keys(values: Any) -> list[Key]:
    return [tuple(k) for k in values]


def tally_to_dict(tally: Tally) -> dict[str, Any]:
    return {f.name: getattr(tally, f.name) for f in fields(tally)}


def tally_from_dict(data: dict[str, Any]) -> Tally:
    return Tally(
        int(data["max_keys"]),
        int(data["missing_in_target_count"]),
        int(data["missing_in_source_count"]),
        int(data["changed_count"]),
        _keys(data["missing_in_target"]),
        _keys(data["missing_in_source"]),
        _keys(data["changed"]),
        int(data.get("equal_by_value_count", 0)),
    )


def sequence_to_dict(result: SequenceResult) -> dict[str, Any]:
    return asdict(result)


def sequence_from_dict(data: dict[str, Any]) -> SequenceResult:
    owner = data.get("owner")
    name = data["name"]
    return SequenceResult(
        **{
            **data,
            "name": (str(name[0]), str(name[1])),
            "owner": (str(owner[0]), str(owner[1])) if owner else None,
        }
    )
