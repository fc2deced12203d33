"""`migctl alarms`: are the gate alarms OK?"""

from __future__ import annotations

from typing import Annotated

import typer

from migctl.cli.state import state


def register(app: typer.Typer) -> None:
    app.command("alarms")(alarms)


def alarms(
    ctx: typer.Context,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Alarm name prefix [config: alarms.prefix].")
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option("--name", help="An alarm name; repeatable [config: alarms.names]."),
    ] = None,
    allow_insufficient_data: Annotated[
        bool,
        typer.Option("--allow-insufficient-data", help="Count INSUFFICIENT_DATA as OK."),
    ] = False,
    wait_ok: Annotated[
        bool, typer.Option("--wait-ok", help="Wait until every alarm is OK.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait with --wait-ok.")
    ] = 600.0,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds between polls.")
    ] = 15.0,
) -> None:
    """Show CloudWatch metric and composite alarms and whether they are all OK.

    Exit 0 when all are OK, 1 when any is in ALARM or INSUFFICIENT_DATA (or
    the wait timed out), 2 when any part of the filter matches nothing (a
    --prefix with no alarm is exit 2 even beside names that match).

    Example: migctl alarms --prefix payments-prod- --wait-ok --timeout 300
    """
    from migctl.alarms import AlarmSelector, check_alarms, wait_for_ok
    from migctl.config import overridden
    from migctl.render.alarms import alarm_report_json, render_alarm_poll, render_alarm_report

    app_state = state(ctx)
    settings = overridden(
        app_state.settings, "alarms", allow_insufficient_data=allow_insufficient_data or None
    )
    if prefix is None and not name:
        selector = AlarmSelector(settings.alarms.prefix, settings.alarms.names)
    else:
        selector = AlarmSelector(prefix, tuple(name or ()))
    allow = settings.alarms.allow_insufficient_data
    cloudwatch = app_state.aws.client("cloudwatch")
    out = app_state.out
    if wait_ok:
        report = wait_for_ok(
            cloudwatch,
            selector,
            timeout=timeout,
            interval=interval,
            allow_insufficient_data=allow,
            on_poll=lambda r: render_alarm_poll(out, r),
        )
        if out.json:
            out.event("result", **alarm_report_json(report))
        else:
            render_alarm_report(out, report)
    else:
        report = check_alarms(cloudwatch, selector, allow_insufficient_data=allow)
        render_alarm_report(out, report)
    raise typer.Exit(0 if report.ok else 1)
