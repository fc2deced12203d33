"""The documented JSON shape and exit codes of a validation report (no database)."""

from __future__ import annotations

import io
import json

from migctl.render import Output
from migctl.render.validate import render_validation, validation_json
from migctl.validate.report import SequenceResult, TableResult, ValidationReport

MISMATCH = TableResult(
    name=("public", "ledger"),
    status="mismatch",
    source_rows=300000,
    target_rows=300001,
    missing_in_target_count=0,
    missing_in_source_count=1,
    changed_count=4,
    missing_in_target=(),
    missing_in_source=((300001,),),
    changed=((11,), (123456,)),
    schema_differences=(),
    method="range",
    key_columns=("id",),
)
BEHIND = SequenceResult(
    name=("public", "orders_id_seq"),
    status="behind",
    source_last_value=5000,
    target_last_value=1,
    source_is_called=True,
    target_is_called=False,
    owner=("public", "orders"),
    owner_column="id",
    column_max=5000,
)


def report(*tables: TableResult, sequences: tuple[SequenceResult, ...] = ()) -> ValidationReport:
    return ValidationReport(
        source="postgresql://app:***@src:5432/pay",
        target="postgresql://app:***@tgt:5432/pay",
        duration_seconds=1.2,
        tables=tables,
        sequences=sequences,
    )


def test_json_has_the_issue_shape() -> None:
    payload = validation_json(report(MISMATCH, sequences=(BEHIND,)))
    assert payload["ok"] is False
    assert (payload["source"], payload["target"], payload["duration_seconds"]) == (
        "postgresql://app:***@src:5432/pay",
        "postgresql://app:***@tgt:5432/pay",
        1.2,
    )
    (table,) = payload["tables"]
    assert {
        k: table[k]
        for k in (
            "table",
            "status",
            "source_rows",
            "target_rows",
            "missing_in_target_count",
            "missing_in_source_count",
            "changed_count",
            "missing_in_target",
            "missing_in_source",
            "changed",
            "schema_differences",
        )
    } == {
        "table": "public.ledger",
        "status": "mismatch",
        "source_rows": 300000,
        "target_rows": 300001,
        "missing_in_target_count": 0,
        "missing_in_source_count": 1,
        "changed_count": 4,
        "missing_in_target": [],
        "missing_in_source": [[300001]],
        "changed": [[11], [123456]],
        "schema_differences": [],
    }
    (sequence,) = payload["sequences"]
    assert {
        k: sequence[k] for k in ("sequence", "source_last_value", "target_last_value", "status")
    } == {
        "sequence": "public.orders_id_seq",
        "source_last_value": 5000,
        "target_last_value": 1,
        "status": "behind",
    }


def test_exit_codes() -> None:
    match = TableResult(name=("public", "a"), status="match", source_rows=1, target_rows=1)
    assert report(match).exit_code == 0
    assert report(match, MISMATCH).exit_code == 1
    assert report(match, sequences=(BEHIND,)).exit_code == 1
    assert (
        report(
            match, TableResult(name=("public", "b"), status="error", error="LockNotAvailable")
        ).exit_code
        == 3
    )
    assert (
        report(
            TableResult(name=("public", "c"), status="missing_in_target", source_rows=5)
        ).exit_code
        == 1
    )


def test_json_output_is_one_document_on_stdout() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    render_validation(Output("json", stdout=stdout, stderr=stderr), report(MISMATCH))
    assert json.loads(stdout.getvalue())["tables"][0]["changed"] == [[11], [123456]]
    assert stderr.getvalue() == ""


def test_names_are_pairs_in_the_json_and_quoted_when_needed() -> None:
    from dataclasses import replace

    dotted = replace(MISMATCH, name=("a", "b.c"))
    (table,) = validation_json(report(dotted, sequences=(BEHIND,)))["tables"]
    assert (table["table"], table["schema"], table["name"]) == ('a."b.c"', "a", "b.c")
    (seq,) = validation_json(report(MISMATCH, sequences=(BEHIND,)))["sequences"]
    assert (seq["sequence"], seq["schema"], seq["name"]) == (
        "public.orders_id_seq",
        "public",
        "orders_id_seq",
    )
    assert seq["owned_by"] == "public.orders.id"
    weird = replace(BEHIND, name=("A b", "s%"), owner=("x.y", "T"), owner_column="id")
    assert (weird.sequence, weird.owned_by) == ('"A b"."s%"', '"x.y"."T".id')


def test_table_output_names_the_keys() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    render_validation(
        Output("table", stdout=stdout, stderr=stderr), report(MISMATCH, sequences=(BEHIND,))
    )
    assert "public.ledger" in stdout.getvalue() and "11, 123456" in stdout.getvalue()
    assert "behind" in stdout.getvalue()
    assert "1 table(s) and 1 sequence(s) differ" in stderr.getvalue()
