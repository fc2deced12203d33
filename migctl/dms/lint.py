"""``migctl dms lint``: what AWS DMS would lose or change, PostgreSQL to PostgreSQL, found before
the full load instead of by validation hours later.

It reads the DMS task (LOB settings, table mappings, its source endpoint's
settings: ``dms/lint_task.py``), the source's catalog and replication
readiness, and, where it matters, the data (bounded: ``dms/lint_source.py``),
and applies the rules of ``dms/lint_checks.py``. Each finding has a severity:
an error is data DMS would lose or change, a warning a decision to make.
docs/dms.md lists every check with its source in AWS's documentation.

Only the tables the mappings select (a partition counts when it or its root
is selected) are checked for types, keys and data; the mappings themselves
are checked against every table of the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.dms.lint_checks import (
    ERROR,
    WARNING,
    Finding,
    is_unbounded_numeric,
    key_findings,
    lob_finding,
    lob_form,
    numeric_finding,
    partial_findings,
    readiness_findings,
    show,
    silent_truncation,
    type_findings,
)
from migctl.dms.lint_source import Readiness, SourceTable, measure, read_readiness, read_tables
from migctl.dms.lint_task import TaskLintSettings, read_task_settings
from migctl.dms.mappings import TableSelection
from migctl.pgnames import TableName

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

    from migctl.dms.task import TaskRef

MARKER: TableName = ("migctl", "cutover_marker")  # the cutover's proof of drain (cutover/marker.py)


@dataclass(frozen=True)
class LintOptions:
    max_rows: int = 1_000_000  # rows read per table at most ([dms] lint_max_rows)
    statement_timeout_seconds: float = 300.0  # per measuring query (0: none)
    transaction_age_seconds: float = 300.0  # an open write transaction older is a warning


@dataclass(frozen=True)
class LintReport:
    task: TaskLintSettings
    source: Readiness
    tables_checked: int
    findings: tuple[Finding, ...]
    options: LintOptions = field(default_factory=LintOptions)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == WARNING)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        """One line: ``2 error(s): no-key public.t; unlogged public.u``, or the warning count."""
        if self.ok:
            return f"no error finding, {len(self.warnings)} warning(s)"
        shown = "; ".join(f"{f.check} {f.table or 'task/server'}" for f in self.errors[:5])
        more = f"; ... ({len(self.errors)} in all)" if len(self.errors) > 5 else ""
        return f"{len(self.errors)} error finding(s): {shown}{more}"


def lint_task(
    dms: DatabaseMigrationServiceClient,
    conn: Any,
    ref: TaskRef,
    options: LintOptions | None = None,
) -> LintReport:
    """Lint one task against its source: ``conn`` is an autocommit connection to the source,
    which this leaves read-only with a statement timeout."""
    options = options or LintOptions()
    settings = read_task_settings(dms, ref)
    conn.execute("SET default_transaction_read_only = on")
    timeout_ms = int(options.statement_timeout_seconds * 1000)
    conn.execute(f"SET statement_timeout = {timeout_ms}")
    tables = read_tables(conn)
    ready = read_readiness(conn)
    findings: list[Finding] = []
    selection = settings.selection
    if selection is None:
        findings.append(
            Finding(
                "mappings-unreadable",
                ERROR,
                None,
                None,
                "the task's TableMappings are missing or not JSON: which tables DMS replicates "
                "is unknown",
                "fix the task's table mappings",
            )
        )
        selection = TableSelection(())
    findings += mapping_findings(tables, selection, settings)
    scope = in_scope(tables, selection)
    for table in scope:
        findings += type_findings(table)
        findings += key_findings(table, settings)
    findings += partial_findings(scope)
    findings += data_findings(conn, scope, settings, options, ready.server_version)
    findings += silent_truncation(settings, _lob_columns(scope))
    findings += readiness_findings(
        ready, settings, max_transaction_seconds=options.transaction_age_seconds
    )
    order = sorted(findings, key=lambda f: (f.severity != ERROR, f.check, f.table or "", f.column))
    return LintReport(settings, ready, len(scope), tuple(order), options)


def in_scope(tables: list[SourceTable], selection: TableSelection) -> list[SourceTable]:
    """The tables that hold rows DMS reads: selected ones, and partitions of a selected root."""
    return [
        t
        for t in tables
        if t.relkind == "r"
        and (
            selection.selects(t.schema, t.name)
            or (t.partition_of is not None and selection.selects(*t.partition_of))
        )
    ]


def mapping_findings(
    tables: list[SourceTable], selection: TableSelection, settings: TaskLintSettings
) -> list[Finding]:
    rules = settings.table_mappings_rules or "no selection rule"
    out = []
    if not selection.selects(*MARKER):
        out.append(
            Finding(
                "marker-not-selected",
                ERROR,
                show(MARKER),
                None,
                f"the mappings ({rules}) leave out {show(MARKER)}, the cutover's proof that CDC "
                "has drained",
                "add a selection rule that includes migctl.cutover_marker",
            )
        )
    partitions: dict[TableName, list[SourceTable]] = {}
    for t in tables:
        if t.partition_of is not None and t.relkind == "r":
            partitions.setdefault(t.partition_of, []).append(t)
    for t in tables:
        if t.partition_of is not None or t.key == MARKER:
            continue
        if t.relkind == "p":
            out += _partition_findings(t, partitions.get(t.key, []), selection, settings)
        elif not selection.selects(t.schema, t.name):
            out.append(_left_out(t, rules))
    return out


def _left_out(table: SourceTable, rules: str) -> Finding:
    return Finding(
        "not-selected",
        WARNING,
        show(table),
        None,
        f"the mappings ({rules}) leave this table out: it is not replicated",
        "add it to the mappings, or confirm it stays behind (validate excludes it too)",
    )


def _partition_findings(
    root: SourceTable,
    leaves: list[SourceTable],
    selection: TableSelection,
    settings: TaskLintSettings,
) -> list[Finding]:
    """AWS: select the partitions, not the parent (selecting both duplicates rows)."""
    parent = selection.selects(root.schema, root.name)
    chosen = [p for p in leaves if selection.selects(p.schema, p.name)]
    left = [show(p) for p in leaves if p not in chosen]
    if parent and chosen:
        return [
            Finding(
                "partition-duplicated",
                ERROR,
                show(root),
                None,
                f"the mappings select the partitioned table and {len(chosen)} of its "
                f"partition(s): DMS loads their rows twice (duplicates, or primary key errors)",
                "select the partitions only (exclude the parent), with the partitioned table "
                "created on the target beforehand",
            )
        ]
    if parent and settings.cdc:
        return [
            Finding(
                "partition-parent-only",
                ERROR,
                show(root),
                None,
                "the mappings select the partitioned table but none of its partitions: changes "
                "are logged against the partitions, so CDC replicates none of them",
                "select the partitions instead of the parent",
            )
        ]
    if chosen and left:
        return [
            Finding(
                "partition-left-out",
                WARNING,
                show(root),
                None,
                f"{len(chosen)} of {len(leaves)} partitions selected; left out: {', '.join(left)}",
                "select every partition, or confirm that those stay behind",
            )
        ]
    if not parent and not chosen:
        return [_left_out(root, settings.table_mappings_rules or "no selection rule")]
    return []


def data_findings(
    conn: Any,
    scope: list[SourceTable],
    settings: TaskLintSettings,
    options: LintOptions,
    server_version: int,
) -> list[Finding]:
    """Measure the tables with unbounded numeric or LOB columns, one bounded query each."""
    import psycopg

    out: list[Finding] = []
    measure_lobs = settings.lob_mode in ("limited", "none")
    for table in scope:
        numeric = [c.name for c in table.columns if is_unbounded_numeric(c)]
        lobs = []
        if measure_lobs:
            for column in table.columns:
                form = lob_form(column)
                if form is not None:
                    lobs.append((column.name, form))
        if not numeric and not lobs:
            continue
        try:
            measured = measure(
                conn,
                table,
                numeric,
                lobs,
                max_rows=options.max_rows,
                min_scale=server_version >= 130000,
            )
        except psycopg.errors.QueryCanceled:
            out.append(
                Finding(
                    "measure-failed",
                    WARNING,
                    show(table),
                    ", ".join([*numeric, *(n for n, _ in lobs)]),
                    f"not measured: the query ran past the statement timeout "
                    f"({options.statement_timeout_seconds:g}s)",
                    "raise [dms] lint_statement_timeout_seconds, or lower lint_max_rows",
                )
            )
            continue
        out += [numeric_finding(table, name, measured, settings) for name in numeric]
        for name, _ in lobs:
            found = lob_finding(table, name, measured, settings)
            if found is not None:
                out.append(found)
    return out


def _lob_columns(scope: list[SourceTable]) -> int:
    return sum(1 for t in scope for c in t.columns if lob_form(c) is not None)
