"""DMS CDC metrics from CloudWatch: one get_metric_data call for the metrics a cutover gates on.

Dimensions are ``ReplicationInstanceIdentifier`` (the instance's name) and
``ReplicationTaskIdentifier`` = the resource id at the end of the task ARN. The
task's *name* there returns no datapoints, silently, so "no datapoints" is
reported as exactly that: never as a zero.

The statistic is ``Maximum`` per period: a gate must see the worst latency of
the minute, not its average. ``CDCLatencySource`` is shown but never gated on:
it drops to 0 when the source is idle, so a zero there proves nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDataQueryTypeDef

NAMESPACE = "AWS/DMS"
LATENCY_SOURCE = "CDCLatencySource"
LATENCY_TARGET = "CDCLatencyTarget"
INCOMING_CHANGES = "CDCIncomingChanges"
METRICS = (LATENCY_SOURCE, LATENCY_TARGET, INCOMING_CHANGES)
STATISTIC = "Maximum"
_QUERY_IDS = {
    LATENCY_SOURCE: "latency_source",
    LATENCY_TARGET: "latency_target",
    INCOMING_CHANGES: "incoming",
}


@dataclass(frozen=True)
class Datapoint:
    at: dt.datetime  # start of the period
    value: float


@dataclass(frozen=True)
class MetricSeries:
    metric: str
    datapoints: tuple[Datapoint, ...]  # newest first

    @property
    def count(self) -> int:
        return len(self.datapoints)

    @property
    def latest(self) -> float | None:
        return self.datapoints[0].value if self.datapoints else None

    @property
    def latest_at(self) -> dt.datetime | None:
        return self.datapoints[0].at if self.datapoints else None

    @property
    def maximum(self) -> float | None:
        return max(p.value for p in self.datapoints) if self.datapoints else None

    def by_time(self) -> dict[dt.datetime, float]:
        return {p.at: p.value for p in self.datapoints}


@dataclass(frozen=True)
class CdcMetrics:
    window_start: dt.datetime
    window_end: dt.datetime
    period_seconds: int
    dimensions: dict[str, str]
    latency_source: MetricSeries
    latency_target: MetricSeries
    incoming_changes: MetricSeries
    statistic: str = STATISTIC

    @property
    def datapoints(self) -> int:
        return self.latency_source.count + self.latency_target.count + self.incoming_changes.count

    def series(self) -> tuple[MetricSeries, MetricSeries, MetricSeries]:
        return (self.latency_source, self.latency_target, self.incoming_changes)

    def newest_at(self) -> dt.datetime | None:
        stamps = [s.latest_at for s in (self.latency_target, self.incoming_changes) if s.latest_at]
        return max(stamps) if stamps else None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def metric_queries(
    instance_identifier: str, task_resource_id: str, period_seconds: int
) -> list[MetricDataQueryTypeDef]:
    dimensions: list[DimensionTypeDef] = [
        {"Name": "ReplicationInstanceIdentifier", "Value": instance_identifier},
        {"Name": "ReplicationTaskIdentifier", "Value": task_resource_id},
    ]
    return [
        {
            "Id": _QUERY_IDS[name],
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
                "Period": period_seconds,
                "Stat": STATISTIC,
            },
            "ReturnData": True,
        }
        for name in METRICS
    ]


def fetch_cdc_metrics(
    cloudwatch: CloudWatchClient,
    *,
    instance_identifier: str,
    task_resource_id: str,
    lookback_seconds: float,
    period_seconds: int,
    now: Callable[[], dt.datetime] | None = None,
) -> CdcMetrics:
    """The three CDC metrics over the last ``lookback_seconds``, in ONE get_metric_data call."""
    end = _aware((now or _utcnow)()).replace(microsecond=0)
    # Align the window's start to the period, as CloudWatch aligns its buckets.
    start_epoch = int(end.timestamp() - max(lookback_seconds, period_seconds))
    start = dt.datetime.fromtimestamp(start_epoch - start_epoch % period_seconds, dt.UTC)
    response = cloudwatch.get_metric_data(
        MetricDataQueries=metric_queries(instance_identifier, task_resource_id, period_seconds),
        StartTime=start,
        EndTime=end,
        ScanBy="TimestampDescending",
    )
    found: dict[str, list[Datapoint]] = {name: [] for name in METRICS}
    by_id = {query_id: name for name, query_id in _QUERY_IDS.items()}
    for result in response.get("MetricDataResults", []):
        name = by_id.get(result.get("Id", ""))
        if name is None:
            continue
        points = zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
        found[name].extend(Datapoint(_aware(at), float(value)) for at, value in points)
    series = {
        name: MetricSeries(name, tuple(sorted(found[name], key=lambda p: p.at, reverse=True)))
        for name in METRICS
    }
    return CdcMetrics(
        window_start=start,
        window_end=end,
        period_seconds=period_seconds,
        dimensions={
            "ReplicationInstanceIdentifier": instance_identifier,
            "ReplicationTaskIdentifier": task_resource_id,
        },
        latency_source=series[LATENCY_SOURCE],
        latency_target=series[LATENCY_TARGET],
        incoming_changes=series[INCOMING_CHANGES],
    )


def stable_datapoints(metrics: CdcMetrics, *, max_latency_seconds: float) -> int:
    """How many newest consecutive periods have CDCLatencyTarget <= max and no incoming changes.

    A period counts only when both metrics have a datapoint for it; a gap in
    the data ends the run, because a missing minute proves nothing.
    """
    latency = metrics.latency_target.by_time()
    incoming = metrics.incoming_changes.by_time()
    stamps = sorted(set(latency) | set(incoming), reverse=True)
    step = dt.timedelta(seconds=metrics.period_seconds)
    run = 0
    previous: dt.datetime | None = None
    for at in stamps:
        if previous is not None and previous - at != step:
            break
        if at not in latency or at not in incoming:
            break
        if latency[at] > max_latency_seconds or incoming[at] != 0:
            break
        run += 1
        previous = at
    return run
