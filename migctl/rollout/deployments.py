"""Follow one ECS deployment to its end, and bake it under the gate alarms.

The ``services_stable`` waiter alone is wrong for a rollout: it also succeeds
after the circuit breaker has rolled the service back to the old revision
(fabfuel/ecs-deploy #185). So we keep the id of the PRIMARY deployment that
``update_service`` returned and watch that deployment only:

- success: its ``rolloutState`` is ``COMPLETED`` and ``runningCount == desiredCount``;
- failure: ``rolloutState`` is ``FAILED``, it vanished, it is no longer PRIMARY,
  or the timeout passed.

Service events that appear while we wait are passed to the step callback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migctl.alarms import ALARM, OK, AlarmSelector, check_alarms
from migctl.errors import OperationalError, UsageError, aws_error_code
from migctl.poll import Clock, Done, Pending, PollResult, Round, poll

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ecs import ECSClient

PRIMARY = "PRIMARY"
COMPLETED = "COMPLETED"
FAILED = "FAILED"


@dataclass(frozen=True)
class Deployment:
    id: str
    status: str  # PRIMARY, ACTIVE, INACTIVE
    task_definition: str
    rollout_state: (
        str | None
    )  # IN_PROGRESS, COMPLETED, FAILED; None without the ECS rolling controller
    rollout_state_reason: str | None
    desired_count: int
    running_count: int
    pending_count: int
    failed_tasks: int
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Deployment:
        return cls(
            id=raw["id"],
            status=raw.get("status", "?"),
            task_definition=raw.get("taskDefinition", ""),
            rollout_state=raw.get("rolloutState"),
            rollout_state_reason=raw.get("rolloutStateReason"),
            desired_count=int(raw.get("desiredCount", 0)),
            running_count=int(raw.get("runningCount", 0)),
            pending_count=int(raw.get("pendingCount", 0)),
            failed_tasks=int(raw.get("failedTasks", 0)),
            created_at=raw.get("createdAt"),
            updated_at=raw.get("updatedAt"),
        )

    def summary(self) -> str:
        state = self.rollout_state or "no rolloutState"
        return (
            f"{self.id} {self.status} {state} running {self.running_count}/{self.desired_count}"
            f" pending {self.pending_count} failed tasks {self.failed_tasks}"
        )


@dataclass(frozen=True)
class ServiceEvent:
    id: str
    created_at: dt.datetime | None
    message: str


@dataclass(frozen=True)
class RolloutStep:
    """One state change for the step callback: an event name, a line for people, JSON details."""

    event: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FollowResult:
    ok: bool
    reason: str | None
    deployment: Deployment | None  # the last state seen of the deployment followed
    # False when AWS throttled the look at it up to the deadline: its end was not seen, so
    # it is not known to have failed (and must not be rolled back for it).
    observed: bool = True


def deployments_of(service: Mapping[str, Any]) -> list[Deployment]:
    return [Deployment.from_api(d) for d in service.get("deployments", [])]


def primary_of(service: Mapping[str, Any]) -> Deployment | None:
    return next((d for d in deployments_of(service) if d.status == PRIMARY), None)


def describe_service(ecs: ECSClient, cluster: str, service: str) -> dict[str, Any]:
    """The service as ``describe_services`` returns it; UsageError (exit 2) when missing."""
    try:
        answer = ecs.describe_services(cluster=cluster, services=[service])
    except Exception as exc:
        code = aws_error_code(exc)
        if code == "ClusterNotFoundException":
            raise UsageError(f"ECS cluster {cluster!r} not found") from None
        raise
    for found in answer.get("services", []):
        if found.get("status") != "INACTIVE":
            return dict(found)
    raise UsageError(f"ECS service {service!r} not found in cluster {cluster!r}")


class ServiceWatcher:
    """Polls one service; remembers which service events it has already passed on."""

    def __init__(
        self,
        ecs: ECSClient,
        cluster: str,
        service: str,
        *,
        emit: Callable[[RolloutStep], None],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.ecs = ecs
        self.cluster = cluster
        self.service = service
        self.emit = emit
        self.timing = Clock(clock, sleep)
        self._seen_events: set[str] = set()

    def mark_seen(self, service: Mapping[str, Any]) -> None:
        """Events already there before we acted are history, not news."""
        self._seen_events.update(e["id"] for e in service.get("events", []))

    def poll(self) -> dict[str, Any]:
        service = describe_service(self.ecs, self.cluster, self.service)
        fresh = [e for e in service.get("events", []) if e["id"] not in self._seen_events]
        fresh.sort(key=lambda e: e.get("createdAt") or dt.datetime.min.replace(tzinfo=dt.UTC))
        for raw in fresh:
            self._seen_events.add(raw["id"])
            event = ServiceEvent(raw["id"], raw.get("createdAt"), raw.get("message", ""))
            self.emit(
                RolloutStep(
                    "service_event",
                    event.message,
                    {"id": event.id, "created_at": event.created_at},
                )
            )
        return service

    def follow(self, deployment_id: str, *, timeout: float, interval: float) -> FollowResult:
        """Poll until the deployment completes, fails, vanishes, is replaced, or time runs out."""
        last_key: tuple[Any, ...] | None = None
        last: Deployment | None = None

        def probe(_: Round) -> Done[FollowResult] | Pending[FollowResult]:
            nonlocal last_key, last
            service = self.poll()
            deployments = deployments_of(service)
            mine = next((d for d in deployments if d.id == deployment_id), None)
            if mine is None:
                primary = next((d for d in deployments if d.status == PRIMARY), None)
                now = (
                    f"; PRIMARY is now {primary.summary()} ({primary.task_definition})"
                    if primary
                    else ""
                )
                return Done(
                    FollowResult(
                        ok=False,
                        reason=f"deployment {deployment_id} vanished{now}",
                        deployment=last,
                    )
                )
            last = mine
            key = (
                mine.status,
                mine.rollout_state,
                mine.running_count,
                mine.desired_count,
                mine.pending_count,
                mine.failed_tasks,
            )
            if key != last_key:
                last_key = key
                self.emit(RolloutStep("deployment", mine.summary(), _deployment_details(mine)))
            if mine.rollout_state == FAILED:
                why = (mine.rollout_state_reason or "no reason given").rstrip(".")
                demoted = (
                    "" if mine.status == PRIMARY else f" (now {mine.status}: ECS rolled it back)"
                )
                return Done(
                    FollowResult(
                        ok=False,
                        reason=f"deployment {deployment_id} FAILED{demoted}: {why}",
                        deployment=mine,
                    )
                )
            if mine.status != PRIMARY:
                primary = next((d for d in deployments if d.status == PRIMARY), None)
                other = f" {primary.id} ({primary.task_definition}) is" if primary else " none is"
                return Done(
                    FollowResult(
                        ok=False,
                        reason=f"deployment {deployment_id} is no longer PRIMARY ({mine.status});"
                        f"{other} PRIMARY now",
                        deployment=mine,
                    )
                )
            if _completed(mine, deployments):
                return Done(FollowResult(ok=True, reason=None, deployment=mine))
            return Pending(
                FollowResult(
                    ok=False,
                    reason=f"timed out after {timeout:g}s following deployment: {mine.summary()}",
                    deployment=mine,
                ),
                reason=mine.summary(),
            )

        result = poll(
            probe,
            timeout=timeout,
            interval=interval,
            clock=self.timing,
            what=f"deployment {deployment_id} to complete",
        )
        return _unseen(result, f"following deployment {deployment_id}", timeout)

    def bake(
        self,
        cloudwatch: CloudWatchClient,
        selector: AlarmSelector,
        deployment_id: str,
        *,
        seconds: float,
        interval: float,
        allow_insufficient_data: bool = False,
    ) -> FollowResult:
        """Watch the gate alarms and our deployment's health for ``seconds``.

        The gate is the set of alarms the selector matches when the bake starts: an
        alarm deleted during the bake fails it (a prefix would silently shrink). Any
        ALARM fails at once. INSUFFICIENT_DATA is tolerated during the bake but fails
        it if still there at the end ("not proven OK"), unless allowed. Our deployment
        must stay PRIMARY with running >= desired and no new failed task: a bake does
        not pass while the tasks die under quiet alarms.
        """
        states: dict[str, str] = {}
        gate: list[AlarmSelector] = []  # fixed at the first poll (a throttled one retries)
        ok_since: dict[str, Any] = {}  # alarm -> its state's timestamp while it is seen OK
        failed_before: list[int] = []
        self.emit(
            RolloutStep(
                "bake", f"baking {seconds:g}s on {selector.describe()}", {"seconds": seconds}
            )
        )

        def probe(_: Round) -> Done[FollowResult] | Pending[FollowResult]:
            selection = gate[0] if gate else selector
            report = check_alarms(
                cloudwatch, selection, allow_insufficient_data=allow_insufficient_data
            )
            if not gate:
                gate.append(AlarmSelector(names=tuple(a.name for a in report.alarms)))
            for alarm in report.alarms:
                if alarm.state != OK:
                    ok_since.pop(alarm.name, None)
                elif ok_since.setdefault(alarm.name, alarm.updated_at) != alarm.updated_at:
                    # OK when last seen and OK now, yet its state changed in between: an
                    # excursion between two polls (CloudWatch stamps every state change).
                    return Done(
                        FollowResult(
                            ok=False,
                            reason=f"gate alarm {alarm.name} left OK during the bake and came "
                            f"back between two polls (state changed at {alarm.updated_at})",
                            deployment=None,
                        )
                    )
                if states.get(alarm.name) != alarm.state:
                    states[alarm.name] = alarm.state
                    self.emit(
                        RolloutStep(
                            "alarm",
                            f"{alarm.name} is {alarm.state}",
                            {"name": alarm.name, "state": alarm.state, "reason": alarm.reason},
                        )
                    )
            firing = [a for a in report.alarms if a.state == ALARM]
            if firing:
                names = ", ".join(f"{a.name} ({a.reason})" if a.reason else a.name for a in firing)
                return Done(
                    FollowResult(
                        ok=False,
                        reason=f"gate alarm in ALARM during the bake: {names}",
                        deployment=None,
                    )
                )
            service = self.poll()
            mine = next((d for d in deployments_of(service) if d.id == deployment_id), None)
            if mine is None or mine.status != PRIMARY:
                state = mine.status if mine else "vanished"
                return Done(
                    FollowResult(
                        ok=False,
                        reason=f"deployment {deployment_id} stopped being PRIMARY during the bake"
                        f" ({state})",
                        deployment=mine,
                    )
                )
            failed_before[:] = failed_before or [mine.failed_tasks]
            if mine.running_count < mine.desired_count or mine.failed_tasks > failed_before[0]:
                return Done(
                    FollowResult(
                        ok=False,
                        reason=f"deployment {deployment_id} lost tasks during the bake: running "
                        f"{mine.running_count}/{mine.desired_count}, failed tasks "
                        f"{mine.failed_tasks} (was {failed_before[0]})",
                        deployment=mine,
                    )
                )
            if report.not_ok:  # the bake ends; what it is judged by is the last poll
                names = ", ".join(f"{a.name}={a.state}" for a in report.not_ok)
                return Pending(
                    FollowResult(
                        ok=False,
                        reason=f"gate alarms not proven OK after the bake: {names}",
                        deployment=mine,
                    ),
                    reason=f"baking; not proven OK: {names}",
                )
            return Pending(
                FollowResult(ok=True, reason=None, deployment=mine),
                reason="baking; every gate alarm OK",
            )

        result = poll(
            probe,
            timeout=seconds,
            interval=interval,
            clock=self.timing,
            what=f"the bake of deployment {deployment_id}",
        )
        return _unseen(result, "the bake", seconds)


def _unseen(result: PollResult[FollowResult], what: str, seconds: float) -> FollowResult:
    """The wait's result; when AWS throttled it up to the deadline, not a failure seen but an
    end unseen (``observed=False``)."""
    if result.done and result.value is not None:
        return result.value
    if result.value is None or result.ended_throttled:
        last = result.value.deployment if result.value is not None else None
        seen = f"; last seen: {last.summary()}" if last else ""
        return FollowResult(
            ok=False,
            reason=f"AWS throttled {what} up to its deadline ({seconds:g}s): its end was not "
            f"seen{seen}",
            deployment=last,
            observed=False,
        )
    return result.value


def _completed(mine: Deployment, deployments: list[Deployment]) -> bool:
    if mine.running_count != mine.desired_count:
        return False
    if mine.rollout_state is not None:
        return mine.rollout_state == COMPLETED
    # No rolloutState (Classic Load Balancer): steady once ours is the only deployment left.
    return len(deployments) == 1


def _deployment_details(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "status": d.status,
        "task_definition": d.task_definition,
        "rollout_state": d.rollout_state,
        "rollout_state_reason": d.rollout_state_reason,
        "running_count": d.running_count,
        "desired_count": d.desired_count,
        "pending_count": d.pending_count,
        "failed_tasks": d.failed_tasks,
    }


def primary_for(service: Mapping[str, Any], task_definition: str) -> Deployment:
    """The PRIMARY deployment ``update_service`` answered with; it must run ``task_definition``."""
    primary = primary_of(service)
    if primary is None:
        raise OperationalError("update_service answered with no PRIMARY deployment")
    if primary.task_definition != task_definition:
        raise OperationalError(
            f"after update_service the PRIMARY deployment {primary.id} runs "
            f"{primary.task_definition}, not {task_definition}"
        )
    return primary
