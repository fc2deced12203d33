"""Step 1, preflight: nothing changes unless identity, DMS, CDC latency, alarms and ECS are fit.

It waits (up to ``[cutover] wait_timeout_seconds``) for what may still come
right: CDC latency under ``[dms] max_latency_seconds`` for ``[dms] stable_for``
consecutive periods, alarms leaving INSUFFICIENT_DATA, a deployment finishing.
It fails at once on what will not: a DMS task that is not running or has
errored tables, a gate alarm in ALARM, an error finding of ``dms lint``
(data DMS would lose or change: docs/dms.md; its warnings are reported).

It checks the way back's prerequisites (``fallback.gate``: the reverse task,
the target's slot) before anything is frozen. It reports (a warning, not a
failure) a replication slot that an earlier
cutover's freeze left on the source, with the WAL it holds back.

The latency gate reads ``CDCLatencyTarget`` only. ``CDCIncomingChanges`` is
not 0 while the application still writes (it is, until step 3 freezes it),
and ``CDCLatencySource`` reads 0 on an idle source (docs/dms.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from migctl.alarms import ALARM, check_alarms
from migctl.cutover import decoding, fallback
from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Facts, StepFailed, StepMemo
from migctl.cutover.validation import validate_options
from migctl.dms.lint import LintOptions, lint_task
from migctl.dms.mappings import parse_selection
from migctl.dms.metrics import CdcMetrics, fetch_cdc_metrics
from migctl.dms.task import CDC, describe_task, find_problems, table_statistics_or_reason
from migctl.dms.watch import STALE_AFTER_PERIODS
from migctl.rollout.deployments import COMPLETED, PRIMARY, deployments_of, describe_service
from migctl.validate.local import selected_tables

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

    from migctl.dms.task import TaskRef

MARKER_SCHEMA = "migctl"
MARKER_TABLE = "cutover_marker"


def preflight(ctx: CutoverContext, _memo: StepMemo) -> Facts:
    identity = ctx.aws.client("sts").get_caller_identity()
    ref = ctx.task_ref()
    gate = ctx.gate_alarms()
    settings = ctx.settings
    dms, cloudwatch = ctx.aws.client("dms"), ctx.aws.client("cloudwatch")
    rollout = ctx.rollout_options() if ctx.image else None
    facts: dict[str, Any] = {
        "identity": {"account": identity.get("Account"), "arn": identity.get("Arn")},
        "dms_task": ref.identifier,
        "gate_alarms": gate.describe(),
    }

    def probe() -> tuple[bool, str]:
        task = describe_task(dms, ref.arn)
        tables, _ = table_statistics_or_reason(dms, ref.arn)
        problems = find_problems(task, tables)
        if problems:
            raise StepFailed(f"DMS task {ref.identifier} is not healthy: {'; '.join(problems)}")
        if task.phase != CDC:
            raise StepFailed(
                f"DMS task {ref.identifier} is not in CDC: phase {task.phase} (status {task.status})",
                hint="start it and wait for CDC: migctl dms start, migctl dms watch",
            )
        metrics = fetch_cdc_metrics(
            cloudwatch,
            instance_identifier=ref.instance_identifier,
            task_resource_id=ref.resource_id,
            lookback_seconds=settings.dms.metric_period_seconds
            * (settings.dms.stable_for + STALE_AFTER_PERIODS + 1),
            period_seconds=settings.dms.metric_period_seconds,
        )
        held, why = latency_held(
            metrics,
            max_latency=settings.dms.max_latency_seconds,
            periods=settings.dms.stable_for,
            now=dt.datetime.now(dt.UTC),
        )
        if not held:
            return False, why
        facts["cdc_latency_target_seconds"] = metrics.latency_target.latest
        report = check_alarms(
            cloudwatch, gate, allow_insufficient_data=settings.alarms.allow_insufficient_data
        )
        firing = [a.name for a in report.alarms if a.state == ALARM]
        if firing:
            raise StepFailed(f"gate alarm(s) in ALARM: {', '.join(firing)}")
        if not report.ok:
            waiting = ", ".join(f"{a.name} {a.state}" for a in report.not_ok)
            return False, f"gate alarms not proven OK: {waiting}"
        facts["alarms"] = {a.name: a.state for a in report.alarms}
        if rollout is not None:
            busy = _service_busy(ctx, rollout.cluster, rollout.service)
            if busy:
                return False, busy
            facts["ecs_service"] = f"{rollout.cluster}/{rollout.service}"
        return True, why

    covered = marker_replicated(_table_mappings(dms, ref.arn))
    facts["marker_in_task_mappings"] = covered
    if covered is False:
        # Without the marker there is no proof that CDC drained: stop before freezing.
        raise StepFailed(
            f"the DMS task's table mappings do not select {MARKER_SCHEMA}.{MARKER_TABLE}",
            hint="add a selection rule for it (infra_pulumi always does) and restart the task",
        )
    # What DMS would lose or change (`migctl dms lint`): an error finding stops the cutover
    # before anything is frozen; warnings are reported.
    facts["lint"] = _lint(ctx, dms, ref)
    # The validate step's selection, checked before anything is frozen: a selection that
    # selects nothing (a typo in [validate]) would otherwise fail the cutover mid-freeze.

    facts["validate_tables"] = len(selected_tables(ctx.source, ctx.target, validate_options(ctx)))
    # The way back's prerequisites too: found missing after the freeze, they cost a rollback.
    facts["way_back"] = dict(fallback.gate(ctx, StepMemo(before=fallback.prepare(ctx, StepMemo()))))
    facts["leftover_slots"] = _leftover_slots(ctx)
    facts["server_versions"] = _server_versions(ctx)  # for the report
    facts["cdc"] = ctx.wait_until("the preflight gate", probe)
    return facts


def _server_versions(ctx: CutoverContext) -> dict[str, int]:
    """Each side's ``server_version_num`` (150004 is 15.4)."""
    versions = {}
    for side, connect in (("source", ctx.source_conn), ("target", ctx.target_conn)):
        with connect() as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
        versions[side] = int(row[0]) if row else 0
    return versions


def _lint(ctx: CutoverContext, dms: DatabaseMigrationServiceClient, ref: TaskRef) -> Facts:
    """``dms lint`` of the task against the source; StepFailed with the evidence on an error."""
    conf = ctx.settings.dms
    options = LintOptions(
        max_rows=conf.lint_max_rows,
        statement_timeout_seconds=conf.lint_statement_timeout_seconds,
        transaction_age_seconds=conf.lint_transaction_age_seconds,
    )
    with ctx.source_conn() as conn:
        report = lint_task(dms, conn, ref, options)
    for finding in report.warnings:
        where = f" {finding.table}" if finding.table else ""
        ctx.report(f"lint {finding.check}{where}: {finding.evidence}", {"warning": True})
    if not report.ok:
        evidence = "; ".join(
            f"{f.check} {f.table or 'task/server'}{'.' + f.column if f.column else ''}: "
            f"{f.evidence}"
            for f in report.errors[:5]
        )
        raise StepFailed(
            f"dms lint: {report.summary()}. {evidence}",
            details={"lint_errors": [dataclasses.asdict(f) for f in report.errors]},
            hint="fix them (migctl dms lint lists each with its fix) before the cutover",
        )
    return {"errors": 0, "warnings": len(report.warnings), "tables_checked": report.tables_checked}


def _leftover_slots(ctx: CutoverContext) -> list[dict[str, Any]]:
    """Slots an earlier cutover's freeze or baseline left behind: they hold WAL."""
    found = []
    for side, connect in (("source", ctx.source_conn), ("target", ctx.target_conn)):
        with connect() as conn:
            slots = decoding.slots(conn)
        for slot in slots:
            ctx.report(
                f"an earlier cutover left {slot.show()} on the {side}; once that cutover is "
                f"over, drop it: SELECT pg_drop_replication_slot('{slot.name}')",
                {"warning": True},
            )
            found.append(
                {
                    "side": side,
                    "slot": slot.name,
                    "retained_wal_bytes": slot.retained_bytes,
                    "active": slot.active,
                }
            )
    return found


def latency_held(
    cdc: CdcMetrics, *, max_latency: float, periods: int, now: dt.datetime
) -> tuple[bool, str]:
    """CDCLatencyTarget <= max for the newest ``periods`` consecutive periods, and fresh."""
    points = cdc.latency_target.datapoints
    if not points:
        dims = ", ".join(f"{k}={v}" for k, v in cdc.dimensions.items())
        return False, f"no CDCLatencyTarget datapoints yet ({dims})"
    age = (now - points[0].at).total_seconds()
    if age > STALE_AFTER_PERIODS * cdc.period_seconds:
        return False, f"the newest CDCLatencyTarget datapoint is {age:.0f}s old"
    step = dt.timedelta(seconds=cdc.period_seconds)
    run = 0
    for index, point in enumerate(points):
        if index and points[index - 1].at - point.at != step:
            break
        if point.value > max_latency:
            break
        run += 1
    if run < periods:  # no changing number here: each new reason is a journal note
        over = "" if points[0].value <= max_latency else f", now over {max_latency:g}s"
        return False, f"CDCLatencyTarget <= {max_latency:g}s for {run} of {periods} periods{over}"
    return True, f"CDCLatencyTarget <= {max_latency:g}s for the last {run} periods"


def _service_busy(ctx: CutoverContext, cluster: str, service: str) -> str | None:

    found = describe_service(ctx.aws.client("ecs"), cluster, service)
    deployments = deployments_of(found)
    busy = [
        d for d in deployments if d.status != PRIMARY or d.rollout_state not in (COMPLETED, None)
    ]
    if busy:
        return f"ECS service {service} is mid-deployment: " + "; ".join(
            d.summary() for d in deployments
        )
    return None


def _table_mappings(dms: DatabaseMigrationServiceClient, arn: str) -> str | None:
    tasks = dms.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [arn]}]
    ).get("ReplicationTasks", [])
    mappings = tasks[0].get("TableMappings") if tasks else None
    return str(mappings) if mappings else None


def marker_replicated(table_mappings: str | None) -> bool | None:
    """Whether the task's selection rules include migctl.cutover_marker; None when unknown."""
    selection = parse_selection(table_mappings)
    return None if selection is None else selection.selects(MARKER_SCHEMA, MARKER_TABLE)
