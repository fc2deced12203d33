"""Alarm reports as a table, or as the documented JSON shape."""

from __future__ import annotations

from typing import Any

from migctl.alarms import AlarmReport
from migctl.render import Output, fmt_time, ident, plain, state_style


def alarm_report_json(report: AlarmReport) -> dict[str, Any]:
    """The documented shape: ``{"ok": bool, "alarms": [{"name", "state", "reason",
    "updated_at", "namespace", "metric", "dimensions"}]}`` (plus each alarm's ``type``)."""
    payload: dict[str, Any] = {
        "ok": report.ok,
        "alarms": [
            {
                "name": a.name,
                "type": a.kind,
                "state": a.state,
                "reason": a.reason,
                "updated_at": a.updated_at,
                "namespace": a.namespace,
                "metric": a.metric,
                "dimensions": a.dimensions,
            }
            for a in report.alarms
        ],
    }
    if report.timed_out:
        payload["timed_out"] = True
    return payload


def render_alarm_report(out: Output, report: AlarmReport) -> None:
    if out.json:
        out.emit(alarm_report_json(report))
        return
    from rich.table import Table

    table = Table(title="CloudWatch alarms", title_justify="left")
    for column in ("name", "state", "updated", "metric", "dimensions", "reason"):
        table.add_column(column, overflow="fold")  # names shortened with … (ident), prose wraps
    for a in report.alarms:
        metric = f"{a.namespace}/{a.metric}" if a.namespace else (a.metric or a.kind)
        dims = "\n".join(f"{k}={v}" for k, v in sorted(a.dimensions.items()))
        table.add_row(  # names and reasons come from AWS: never read as rich markup
            ident(a.name),
            f"[{state_style(a.state)}]{plain(a.state)}[/]",
            fmt_time(a.updated_at),
            ident(metric),
            ident(dims or "-"),  # one dimension a line, each shortened rather than folded
            plain(a.reason or ""),
        )
    out.out.print(table)
    bad = report.not_ok
    if report.timed_out:
        out.err.print(f"[bold red]timed out[/] waiting for OK; {len(bad)} alarm(s) still not OK")
    elif bad:
        out.err.print(f"[bold red]{len(bad)} of {len(report.alarms)} alarm(s) not OK[/]")
    else:
        out.err.print(f"[green]all {len(report.alarms)} alarm(s) OK[/]")


def render_alarm_poll(out: Output, report: AlarmReport) -> None:
    """One line per poll while waiting: on stderr for people, a JSON line for machines."""
    bad = report.not_ok
    if out.json:
        out.event("poll", ok=report.ok, not_ok=[{"name": a.name, "state": a.state} for a in bad])
    elif bad:
        names = ", ".join(f"{a.name}={a.state}" for a in bad[:5])
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        out.note(f"waiting for OK: {names}{more}")
