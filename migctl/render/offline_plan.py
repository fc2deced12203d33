"""Render a PlanResult: resources by component, counts by type, the monthly cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migctl.render import Output

if TYPE_CHECKING:
    from pathlib import Path

    from migctl.infra.lambda_build import LambdaPackage
    from migctl.infra.offline_plan import PlanResult


def plan_json(result: PlanResult) -> dict[str, Any]:
    """The documented JSON shape of ``migctl plan -o json``."""
    cost = result.monthly_cost_usd
    return {
        "environment": result.environment,
        "stack": result.stack,
        "resources": [
            {"type": r.type, "name": r.name, "component": r.component} for r in result.resources
        ],
        "counts": dict(result.counts),
        "monthly_cost_usd": {
            "total": cost.total,
            "items": [
                {
                    "item": i.item,
                    "component": i.component,
                    "quantity": i.quantity,
                    "unit": i.unit,
                    "unit_price_usd": i.unit_price_usd,
                    "monthly_usd": i.monthly_usd,
                }
                for i in cost.items
            ],
            "region": cost.region,
            "prices_taken_on": cost.taken_on,
            "excluded": cost.excluded,
            "unpriced": list(cost.unpriced),
        },
        "warnings": list(result.warnings),
    }


def render_plan(out: Output, result: PlanResult) -> None:
    """JSON on stdout with ``-o json``; otherwise tables on stdout and warnings on stderr."""
    for warning in result.warnings:
        out.warn(warning)
    if out.json:
        out.emit(plan_json(result))
        return
    from rich.table import Table

    title = f"migctl plan: environment {result.environment} (stack {result.stack})"
    by_component = Table(title=title, title_justify="left")
    for column in ("component", "type", "name"):
        by_component.add_column(column)
    for component, resources in result.by_component().items():
        for index, res in enumerate(resources):
            by_component.add_row(component if index == 0 else "", res.type, res.name)
    out.out.print(by_component)

    counts = Table(title="resources by type", title_justify="left")
    counts.add_column("type")
    counts.add_column("count", justify="right")
    for token, count in result.counts.items():
        counts.add_row(token, str(count))
    counts.add_row("total", str(len(result.resources)), style="bold")
    out.out.print(counts)

    cost = result.monthly_cost_usd
    money = Table(
        title=f"monthly cost estimate, {cost.currency} ({cost.region} prices of {cost.taken_on})",
        title_justify="left",
    )
    for column, justify in (
        ("item", "left"),
        ("component", "left"),
        ("quantity", "right"),
        ("unit price", "right"),
        ("per month", "right"),
    ):
        money.add_column(column, justify=justify)  # type: ignore[arg-type]
    for item in cost.items:
        money.add_row(
            item.item,
            item.component,
            f"{item.quantity:g} {item.unit}",
            f"{item.unit_price_usd:g}",
            f"{item.monthly_usd:,.2f}",
        )
    money.add_row("total", "", "", "", f"{cost.total:,.2f}", style="bold")
    out.out.print(money)
    out.note(f"not included: {cost.excluded}")


def render_lambda_package(
    out: Output, package: LambdaPackage, *, stack_reads: Path | None = None
) -> None:
    """The zip written; a warning when the stack reads another path (``stack_reads``)."""
    if stack_reads is not None and stack_reads != package.path:
        out.warn(
            f"migctl up reads the package from {stack_reads}, not this one: build without "
            f"--out from the folder of migctl.toml, or set [pulumi.config] lambdaPackage"
        )
    if out.json:
        out.emit(
            {
                "path": str(package.path),
                "sha256": package.sha256,
                "size_bytes": package.size_bytes,
                "entries": package.entries,
            }
        )
        return
    out.out.print(
        f"{package.path}  sha256 {package.sha256}  {package.size_bytes} bytes, "
        f"{package.entries} entries",
        markup=False,
        highlight=False,
    )
