"""CloudWatch alarm gates: select metric and composite alarms, report their state, wait for OK.

INSUFFICIENT_DATA is "not proven OK" unless the caller says otherwise
(docs/field-notes.md, "Gating on alarms").
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.errors import AwsError, UsageError
from migctl.poll import Clock, Done, Pending, Round, poll

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
_NAMES_PER_CALL = 100  # DescribeAlarms accepts at most 100 AlarmNames
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlarmSelector:
    """Which alarms to look at: every alarm whose name starts with prefix, plus the named ones."""

    prefix: str | None = None
    names: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.prefix:
            parts.append(f"--prefix {self.prefix!r}")
        parts.extend(f"--name {n!r}" for n in self.names)
        return " ".join(parts) or "(no filter)"


@dataclass(frozen=True)
class AlarmStatus:
    name: str
    kind: str  # "metric" or "composite"
    state: str
    reason: str
    updated_at: dt.datetime | None
    namespace: str | None = None
    metric: str | None = None
    dimensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AlarmReport:
    alarms: tuple[AlarmStatus, ...]
    allow_insufficient_data: bool = False
    timed_out: bool = False

    def is_ok(self, alarm: AlarmStatus) -> bool:
        return alarm.state == OK or (
            self.allow_insufficient_data and alarm.state == INSUFFICIENT_DATA
        )

    @property
    def not_ok(self) -> tuple[AlarmStatus, ...]:
        return tuple(a for a in self.alarms if not self.is_ok(a))

    @property
    def ok(self) -> bool:
        return not self.not_ok and not self.timed_out


def fetch_alarms(cloudwatch: CloudWatchClient, selector: AlarmSelector) -> list[AlarmStatus]:
    """Every metric and composite alarm the selector matches, following every page."""
    if not selector.prefix and not selector.names:
        raise UsageError("select alarms with --prefix and/or --name (or [alarms] in migctl.toml)")
    found: dict[str, AlarmStatus] = {}
    if selector.prefix:
        for alarm in _describe(cloudwatch, AlarmNamePrefix=selector.prefix):
            found[alarm.name] = alarm
        if not found:  # every part of a selection must match: a typo must not shrink the gate
            raise UsageError(f"no CloudWatch alarm matches --prefix {selector.prefix!r}")
    names = sorted(set(selector.names) - set(found))
    for start in range(0, len(names), _NAMES_PER_CALL):
        for alarm in _describe(cloudwatch, AlarmNames=names[start : start + _NAMES_PER_CALL]):
            found[alarm.name] = alarm
    missing = [n for n in selector.names if n not in found]
    if not found:
        raise UsageError(f"no CloudWatch alarm matches {selector.describe()}")
    if missing:
        raise UsageError(f"no CloudWatch alarm named {', '.join(map(repr, missing))}")
    return sorted(found.values(), key=lambda a: a.name)


def _describe(cloudwatch: CloudWatchClient, **filters: Any) -> Iterable[AlarmStatus]:
    paginator = cloudwatch.get_paginator("describe_alarms")
    pages = paginator.paginate(AlarmTypes=["MetricAlarm", "CompositeAlarm"], **filters)
    for page in pages:
        for metric in page.get("MetricAlarms", []):
            yield _metric_alarm(metric)
        for composite in page.get("CompositeAlarms", []):
            yield _status(composite, "composite")


def _status(raw: Mapping[str, Any], kind: str, **extra: Any) -> AlarmStatus:
    return AlarmStatus(
        name=raw["AlarmName"],
        kind=kind,
        state=raw.get("StateValue", INSUFFICIENT_DATA),
        reason=raw.get("StateReason", ""),
        updated_at=raw.get("StateUpdatedTimestamp"),
        **extra,
    )


def _metric_alarm(raw: Mapping[str, Any]) -> AlarmStatus:
    namespace = raw.get("Namespace")
    metric = raw.get("MetricName")
    dims = {d["Name"]: d["Value"] for d in raw.get("Dimensions", [])}
    if metric is None and raw.get("Metrics"):
        # A metric-math alarm: show the metric its expression returns.
        for query in raw["Metrics"]:
            stat = query.get("MetricStat")
            if stat and query.get("ReturnData", True):
                namespace = stat["Metric"].get("Namespace")
                metric = stat["Metric"].get("MetricName")
                dims = {d["Name"]: d["Value"] for d in stat["Metric"].get("Dimensions", [])}
                break
            if query.get("Expression") and query.get("ReturnData", True):
                metric = query["Expression"]
    return _status(raw, "metric", namespace=namespace, metric=metric, dimensions=dims)


def check_alarms(
    cloudwatch: CloudWatchClient, selector: AlarmSelector, *, allow_insufficient_data: bool = False
) -> AlarmReport:
    """One snapshot of the selected alarms (each alarm and its state logged at INFO: ``-v``)."""
    report = AlarmReport(
        alarms=tuple(fetch_alarms(cloudwatch, selector)),
        allow_insufficient_data=allow_insufficient_data,
    )
    bad = len(report.not_ok)
    log.info(
        "alarm gate %s: %s",
        f"{bad} of {len(report.alarms)} not OK" if bad else f"all {len(report.alarms)} OK",
        ", ".join(f"{a.name}={a.state}" for a in report.alarms),
    )
    return report


def wait_for_ok(
    cloudwatch: CloudWatchClient,
    selector: AlarmSelector,
    *,
    timeout: float,
    interval: float,
    allow_insufficient_data: bool = False,
    on_poll: Callable[[AlarmReport], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AlarmReport:
    """Poll until every selected alarm is OK, or until timeout (then ``timed_out`` is set)."""

    def probe(_: Round) -> Done[AlarmReport] | Pending[AlarmReport]:
        report = check_alarms(cloudwatch, selector, allow_insufficient_data=allow_insufficient_data)
        if on_poll:
            on_poll(report)
        if report.ok:
            return Done(report)
        shown = ", ".join(f"{a.name}={a.state}" for a in report.not_ok[:5])
        more = f" (+{len(report.not_ok) - 5} more)" if len(report.not_ok) > 5 else ""
        return Pending(report, reason=f"not OK: {shown}{more}")

    result = poll(
        probe,
        timeout=timeout,
        interval=interval,
        clock=Clock(clock, sleep),
        what=f"alarms {selector.describe()} to be OK",
    )
    if result.done and result.value is not None:
        return result.value
    if result.value is None:
        raise AwsError(f"every describe_alarms was throttled by AWS for {timeout:g}s")
    return AlarmReport(
        alarms=result.value.alarms, allow_insufficient_data=allow_insufficient_data, timed_out=True
    )
