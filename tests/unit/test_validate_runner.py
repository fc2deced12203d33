"""The one validation loop, with a fake executor: what it asks, in which order, and the report."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from migctl.errors import UsageError
from migctl.pgnames import TableName
from migctl.validate.catalog import Catalog, TableInfo
from migctl.validate.report import SequenceResult, TableResult
from migctl.validate.runner import ValidateOptions, run


def catalog(version: int, *names: TableName) -> Catalog:
    tables = {n: TableInfo(n[0], n[1], (), (), 10.0) for n in names}
    return Catalog(version, tables, {}, ("public", "audit"))


class FakeExecutor:
    source_display = "postgresql://src/db"
    target_display = "postgresql://tgt/db"

    def __init__(self, source: Catalog, target: Catalog) -> None:
        self._catalogs = (source, target)
        self.calls: list[tuple[object, ...]] = []

    def catalogs(self) -> tuple[Catalog, Catalog]:
        self.calls.append(("catalogs",))
        return self._catalogs

    def table_workers(self, tables: int) -> int:
        self.calls.append(("workers", tables))
        return 2

    def compare(
        self, name: TableName, source: TableInfo | None, target: TableInfo | None, algorithm: str
    ) -> TableResult:
        self.calls.append(("compare", name, source is not None, target is not None, algorithm))
        status = "match" if source and target else "missing_in_target"
        return TableResult(name=name, status=status)  # type: ignore[arg-type]

    def sequences(
        self, names: Sequence[TableName], source: Catalog, target: Catalog
    ) -> tuple[SequenceResult, ...]:
        self.calls.append(("sequences", tuple(names)))
        return (
            SequenceResult(
                name=("public", "s"), status="behind", source_last_value=5, target_last_value=1
            ),
        )


def test_the_loop_reads_catalogs_selects_compares_then_sequences() -> None:
    fake = FakeExecutor(
        catalog(150004, ("public", "b"), ("public", "a"), ("audit", "x")),
        catalog(180001, ("public", "a"), ("public", "b")),
    )
    report = run(
        fake, ValidateOptions(schemas=("public", "audit")), clock=iter(range(100)).__next__
    )
    assert fake.calls[0] == ("catalogs",) and fake.calls[1] == ("workers", 3)
    compared = [c for c in fake.calls if c[0] == "compare"]
    assert {c[1] for c in compared} == {("audit", "x"), ("public", "a"), ("public", "b")}
    assert all(c[4] == "chain64" for c in compared)
    assert fake.calls[-1][0] == "sequences"
    assert [t.name for t in report.tables] == [("audit", "x"), ("public", "a"), ("public", "b")]
    assert report.tables[0].status == "missing_in_target"
    assert (report.source_version, report.target_version) == (150004, 180001)
    assert (report.source, report.target) == ("postgresql://src/db", "postgresql://tgt/db")
    assert report.exit_code == 1 and report.duration_seconds == 1


def test_a_selection_of_nothing_stops_before_any_table_is_compared() -> None:
    fake = FakeExecutor(catalog(150004, ("public", "a")), catalog(150004))
    with pytest.raises(UsageError, match="matched no table"):
        run(fake, ValidateOptions(tables=("public.nope*",)))
    assert [c[0] for c in fake.calls] == ["catalogs"]


def test_sequences_are_skipped_when_not_asked_for() -> None:
    fake = FakeExecutor(catalog(150004, ("public", "a")), catalog(150004, ("public", "a")))
    report = run(fake, ValidateOptions(sequences=False))
    assert report.sequences == () and "sequences" not in [c[0] for c in fake.calls]
    assert report.ok


def test_an_old_server_is_refused_before_any_table_is_compared() -> None:
    fake = FakeExecutor(catalog(100023, ("public", "a")), catalog(150004, ("public", "a")))
    with pytest.raises(UsageError, match="PostgreSQL 10 is not supported"):
        run(fake, ValidateOptions())
    assert [c[0] for c in fake.calls] == ["catalogs"]
