"""Rollout steps, results and service status: lines and tables for people, JSON for machines."""

from __future__ import annotations

from typing import Any

from migctl.render import Output, fmt_time, ident, plain, state_style, to_jsonable
from migctl.rollout.deploy import RolloutResult
from migctl.rollout.deployments import Deployment, RolloutStep
from migctl.rollout.status import ServiceStatus
from migctl.rollout.taskdef import short_name

_STEP_STYLES = {
    "failure": "bold red",
    "rollback": "bold yellow",
    "rollback_failed": "bold red",
    "interrupted": "bold red",
    "completed": "green",
    "rolled_back": "yellow",
    "service_event": "cyan",
}


def render_step(out: Output, step: RolloutStep) -> None:
    """One JSON line per state change, or one line on stderr (the plan's diff goes to stdout)."""
    if out.json:
        if not out.quiet or step.event == "interrupted":  # -q: the result (and an interruption)
            out.emit(
                {"event": step.event, "message": step.message, **to_jsonable(dict(step.details))}
            )
        return
    if step.event == "plan":
        out.progress.print(f"[bold]{plain(step.message)}[/]", highlight=False)
        diff = step.details.get("diff") or []
        if diff:
            render_diff(out, diff)
        else:
            out.note("no difference in the task definition")
        return
    style = _STEP_STYLES.get(step.event, "dim")
    prefix = "event: " if step.event == "service_event" else ""
    # An interruption says where things stand even with -q: its manual steps are shown only here.
    console = out.err if step.event == "interrupted" else out.progress
    console.print(f"{prefix}{step.message}", style=style, markup=False, highlight=False)
    if step.event == "interrupted":
        for number, line in enumerate(step.details.get("manual_steps", []), start=1):
            out.err.print(f"  {number}. {line}", markup=False, highlight=False)


def render_diff(out: Output, lines: list[str]) -> None:
    from rich.text import Text

    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        if line.startswith(("@@", "+++", "---")):
            style = "cyan"
        out.out.print(Text(line, style=style), soft_wrap=True)


def result_json(result: RolloutResult) -> dict[str, Any]:
    """``{"outcome", "task_definition", "previous_task_definition", ...}`` (documented shape)."""
    return {
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "cluster": result.cluster,
        "service": result.service,
        "task_definition": result.task_definition,
        "previous_task_definition": result.previous_task_definition,
        "reason": result.reason,
        "deployment_id": result.deployment_id,
        "rollback_deployment_id": result.rollback_deployment_id,
        "final_deployments": to_jsonable(list(result.final_deployments)),
        "manual_steps": list(result.manual_steps),
    }


def render_result(out: Output, result: RolloutResult) -> None:
    if out.json:
        out.event("result", **result_json(result))
        return
    color = state_style(
        {"completed": "completed", "dry_run": "completed", "rolled_back": "rolling"}.get(
            result.outcome, "failed"
        )
    )
    target = short_name(result.task_definition) if result.task_definition else "(not registered)"
    head = (
        f"[{color}]{result.outcome}[/]: {result.cluster}/{result.service} "
        f"{short_name(result.previous_task_definition)} -> {target}"
    )
    out.err.print(head, highlight=False)
    if result.outcome == "dry_run":
        out.note("dry run: nothing was registered or updated")
    if result.reason:
        out.err.print(f"reason: {result.reason}", markup=False, highlight=False)
    if result.outcome == "rolled_back":
        out.err.print(
            f"the service is back on {short_name(result.previous_task_definition)}; "
            f"{target} stays registered for the investigation",
            markup=False,
            highlight=False,
        )
    if result.final_deployments:
        out.err.print("state of the service now:", style="bold", highlight=False)
        out.err.print(deployments_table(result.final_deployments))
    if result.manual_steps:
        out.err.print("manual steps:", style="bold red", highlight=False)
        for number, line in enumerate(result.manual_steps, start=1):
            out.err.print(f"  {number}. {line}", markup=False, highlight=False)


def deployments_table(deployments: tuple[Deployment, ...]) -> Any:
    from rich.table import Table

    table = Table(title="deployments", title_justify="left")
    table.add_column("id", no_wrap=True)
    for column in ("status", "task definition", "rollout", "running", "pending", "failed"):
        table.add_column(column, overflow="fold")
    table.add_column("updated", no_wrap=True)
    for d in deployments:
        state = d.rollout_state or "-"
        table.add_row(
            ident(d.id),
            d.status,
            ident(short_name(d.task_definition)),
            f"[{state_style(state)}]{state}[/]",
            f"{d.running_count}/{d.desired_count}",
            str(d.pending_count),
            str(d.failed_tasks),
            fmt_time(d.updated_at),
        )
    return table


def status_json(status: ServiceStatus) -> dict[str, Any]:
    payload: dict[str, Any] = to_jsonable(status)
    payload["steady"] = status.steady
    return payload


def render_status(out: Output, status: ServiceStatus) -> None:
    if out.json:
        out.emit(status_json(status))
        return
    from rich.table import Table

    breaker = status.circuit_breaker
    breaker_text = (
        f"circuit breaker enable={breaker.get('enable')} rollback={breaker.get('rollback')}"
        if breaker
        else "circuit breaker not set"
    )
    out.out.print(
        f"[bold]{status.cluster}/{status.service}[/]: {short_name(status.task_definition)}, "
        f"running {status.running_count}/{status.desired_count}, pending {status.pending_count}, "
        f"{'steady' if status.steady else '[yellow]not steady[/]'}; "
        f"{status.deployment_controller} controller, "
        f"{breaker_text}",
        highlight=False,
    )
    out.out.print(deployments_table(status.deployments))
    revisions = Table(title="revisions (newest first)", title_justify="left")
    for column in ("revision", "images", "running as"):
        revisions.add_column(column, overflow="fold")
    for r in status.revisions:
        images = ", ".join(f"{name}={image}" for name, image in r.images.items())
        marks = [m for m in (r.in_deployment, "current" if r.current else None) if m]
        if r.outcome:  # why undo goes, or never goes, there
            marks.append("rolled back by migctl" if r.outcome == "rolled-back" else r.outcome)
        if r.task_definition == status.undo_target:
            marks.append("undo target")
        revisions.add_row(ident(short_name(r.task_definition)), images, ", ".join(marks) or "-")
    out.out.print(revisions)
    events = Table(title="recent service events (newest first)", title_justify="left")
    events.add_column("at")
    events.add_column("message", overflow="fold")
    for e in status.events:
        events.add_row(fmt_time(e.created_at), plain(e.message))
    out.out.print(events)
