"""``dms lint`` reports: a table of findings for people, or the documented JSON shape."""

from __future__ import annotations

from typing import Any

from migctl.dms.lint import LintReport
from migctl.render import Output, ident, plain


def lint_json(report: LintReport) -> dict[str, Any]:
    """``{"ok", "errors", "warnings", "tables_checked", "task": {...}, "source": {...},
    "findings": [{"check", "severity", "table", "column", "evidence", "fix", "scan",
    "reference"}]}`` (docs/dms.md)."""
    task, source = report.task, report.source
    return {
        "ok": report.ok,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "tables_checked": report.tables_checked,
        "task": {
            "identifier": task.identifier,
            "arn": task.arn,
            "migration_type": task.migration_type,
            "status": task.status,
            "lob_mode": task.lob_mode,
            "lob_max_size_kb": task.lob_max_size_kb,
            "fail_tasks_on_lob_truncation": task.fail_on_lob_truncation,
            "map_unbounded_numeric_as_string": task.map_unbounded_numeric_as_string,
            "source_endpoint": task.source_endpoint,
            "settings_from": dict(task.origins),
            "selection_rules": task.table_mappings_rules,
        },
        "source": {
            "server_version": source.server_version,
            "wal_level": source.wal_level,
            "max_replication_slots": source.max_replication_slots,
            "replication_slots_used": source.replication_slots_used,
            "max_wal_senders": source.max_wal_senders,
            "wal_senders_used": source.wal_senders_used,
            "max_prepared_transactions": source.max_prepared_transactions,
            "prepared_transactions": source.prepared_transactions,
            "oldest_transaction_seconds": source.oldest_transaction_seconds,
        },
        "max_rows": report.options.max_rows,
        "findings": [finding_json(f) for f in report.findings],
    }


def finding_json(finding: Any) -> dict[str, Any]:
    return {
        "check": finding.check,
        "severity": finding.severity,
        "table": finding.table,
        "column": finding.column,
        "evidence": finding.evidence,
        "fix": finding.fix,
        "scan": finding.scan,
        "reference": finding.reference,
    }


def render_lint(out: Output, report: LintReport) -> None:
    if out.json:
        out.emit(lint_json(report))
        return
    print_findings(out, report)
    if report.ok:
        out.err.print(
            f"[green]no error finding[/] ({len(report.warnings)} warning(s), "
            f"{report.tables_checked} table(s) checked)"
        )
    else:
        out.err.print(
            f"[bold red]{len(report.errors)} error finding(s)[/]: DMS would lose or change "
            f"data; {len(report.warnings)} warning(s)"
        )


def print_findings(out: Output, report: LintReport, *, console: Any = None) -> None:
    """The settings line and the findings table (on stdout, or on ``console``)."""
    from rich.table import Table

    target = console or out.out
    task = report.task
    lob = f"{task.lob_mode} LOB mode"
    if task.lob_mode == "limited":
        lob += f", LobMaxSize {task.lob_max_size_kb} KB"
    target.print(
        f"task {plain(task.identifier)} ({task.migration_type}): {lob}, "
        f"FailTasksOnLobTruncation {str(task.fail_on_lob_truncation).lower()}, "
        f"MapUnboundedNumericAsString {str(task.map_unbounded_numeric_as_string).lower()}; "
        f"source PostgreSQL {report.source.server_version}, wal_level "
        f"{plain(report.source.wal_level)}",
        highlight=False,
    )
    if not report.findings:
        return
    table = Table(title="DMS lint findings", title_justify="left")
    for name in ("severity", "check", "table", "column", "evidence", "fix"):
        table.add_column(name, overflow="fold")
    for f in report.findings:
        style = "bold red" if f.severity == "error" else "yellow"
        table.add_row(
            f"[{style}]{f.severity}[/]",
            f.check,
            ident(f.table or "-"),
            plain(f.column or "-"),
            plain(f.evidence),
            plain(f.fix),
        )
    target.print(table)
