"""Sandbox results for people and for machines."""

from __future__ import annotations

from migctl.render import Output, count, ident, plain
from migctl.sandbox.bootstrap import SandboxUp
from migctl.sandbox.environment import DownReport, SandboxStatus


def render_up(out: Output, result: SandboxUp) -> None:
    if out.json:
        out.event("result", **_up_payload(result))
        return
    rows = plain(", ".join(f"{t} {count(n)}" for t, n in result.rows.items()))
    out.out.print(f"[green]sandbox up[/] in {plain(result.dir)}")
    out.out.print(f"  source rows: {rows}")
    out.out.print(f"  local AWS:   {plain(result.aws_url)}")
    out.out.print(f"  config:      {plain(result.config_path)}")
    out.out.print(
        f"  traffic:     {'pid ' + str(result.traffic_pid) if result.traffic_pid else 'off'}"
    )
    out.out.print(
        f"\nUse it:  set -a; . {plain(result.env_path)}; set +a   then   migctl dms start --yes"
    )


def _up_payload(result: SandboxUp) -> dict[str, object]:
    return {
        "dir": result.dir,
        "config": result.config_path,
        "env_file": result.env_path,
        "aws_endpoint_url": result.aws_url,
        "rows": result.rows,
        "traffic_pid": result.traffic_pid,
    }


def render_status(out: Output, status: SandboxStatus) -> None:
    if out.json:
        out.emit(
            {
                "dir": status.dir,
                "exists": status.exists,
                "healthy": status.healthy,
                "aws_endpoint_url": status.aws_url or None,
                "config": status.config_path or None,
                "source": status.source or None,
                "target": status.target or None,
                "processes": [
                    {"name": p.name, "pid": p.pid, "running": p.running, "port": p.port}
                    for p in status.processes
                ],
            }
        )
        return
    if not status.exists:
        out.out.print(f"no sandbox in {plain(status.dir)}")
        return
    from rich.table import Table

    table = Table(title=f"sandbox in {plain(status.dir)}", title_justify="left")
    for column in ("process", "pid", "port", "state"):
        table.add_column(column)
    for p in status.processes:
        state = "[green]running[/]" if p.running else "[bold red]not running[/]"
        table.add_row(ident(p.name), str(p.pid), str(p.port or "-"), state)
    out.out.print(table)
    out.out.print(
        f"source {plain(status.source)}\ntarget {plain(status.target)}\nAWS    {plain(status.aws_url)}"
    )
    out.out.print(f"config {plain(status.config_path)}")


def render_down(out: Output, report: DownReport) -> None:
    if out.json:
        out.emit(
            {
                "dir": report.dir,
                "stopped": list(report.stopped),
                "already_gone": list(report.already_gone),
                "removed": report.removed,
                "exists": report.exists,
            }
        )
        return
    if not report.exists:
        out.out.print(f"no sandbox in {plain(report.dir)}: nothing to stop")
        return
    stopped = ", ".join(report.stopped) or "nothing"
    out.out.print(f"sandbox down: stopped {stopped}")
    if report.already_gone:
        out.out.print(f"  already gone: {', '.join(report.already_gone)}")
    out.out.print(f"  {plain(report.dir)} {'removed' if report.removed else 'kept'}")
