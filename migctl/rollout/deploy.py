"""Ship a new image to an ECS service safely: follow the deployment, gate on alarms, roll back.

:func:`rollout` reads the service and its task definition, registers a copy
with one container's image swapped (keeping the tags), updates the service,
follows the PRIMARY deployment that ``update_service`` returned (see
``deployments.py``), bakes under the gate alarms, and on any failure puts the
previous task definition back and follows *that* deployment too.
:func:`undo` does the same towards the previous revision (no register, no bake).

Outcomes and exit codes: ``completed`` 0, ``dry_run`` 0, ``failed`` 1 (with
``rollback=False``), ``aborted`` 1 (the operator said no; nothing changed),
``rolled_back`` 4, ``rollback_failed`` 5 (the result carries the exact state
and the manual steps). No task definition is ever deregistered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from migctl.alarms import ALARM, AlarmStatus, check_alarms
from migctl.errors import CheckFailed, ExitCode, OperationalError, is_throttling, translate
from migctl.rollout.deployments import (
    Deployment,
    FollowResult,
    RolloutStep,
    ServiceWatcher,
    deployments_of,
    describe_service,
    primary_for,
    primary_of,
)
from migctl.rollout.plan import (
    RolloutOptions,
    RolloutPlan,
    check_deployment_controller,
    check_steady,
    manual_steps,
    plan_rollout,
    plan_undo,
)
from migctl.rollout.taskdef import OUTCOME_TAG

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ecs import ECSClient

Outcome = Literal["completed", "failed", "rolled_back", "rollback_failed", "dry_run", "aborted"]
EXIT_CODES: Mapping[str, int] = {
    "completed": ExitCode.OK,
    "dry_run": ExitCode.OK,
    "failed": ExitCode.CHECK_FAILED,
    "aborted": ExitCode.CHECK_FAILED,
    "rolled_back": ExitCode.ROLLED_BACK,
    "rollback_failed": ExitCode.ROLLBACK_FAILED,
}

log = logging.getLogger(__name__)

__all__ = [
    "RolloutOptions",
    "RolloutPlan",
    "RolloutResult",
    "RolloutStep",
    "finish",
    "rollout",
    "undo",
]


@dataclass(frozen=True, kw_only=True)
class RolloutResult:
    outcome: Outcome
    cluster: str
    service: str
    task_definition: str | None  # what was (or would be) deployed; None in a dry run
    previous_task_definition: str  # what ran before, and what a rollback puts back
    reason: str | None = None
    deployment_id: str | None = None
    rollback_deployment_id: str | None = None
    plan: RolloutPlan | None = None
    steps: tuple[RolloutStep, ...] = ()
    final_deployments: tuple[Deployment, ...] = ()  # the service's state when a person must act
    manual_steps: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES[self.outcome])


Confirm = Callable[[RolloutPlan], bool]
OnStep = Callable[[RolloutStep], None]


class _Run:
    """What one rollout or undo carries around: clients, options, the steps so far."""

    def __init__(
        self,
        ecs: ECSClient,
        cloudwatch: CloudWatchClient,
        options: RolloutOptions,
        on_step: OnStep | None,
        clock: Callable[[], float] | None,
        sleep: Callable[[float], None] | None,
    ) -> None:
        self.ecs = ecs
        self.cloudwatch = cloudwatch
        self.options = options
        self.steps: list[RolloutStep] = []
        self._on_step = on_step
        # Looked up at call time so tests can swap this module's ``time``.
        self.watcher = ServiceWatcher(
            ecs,
            options.cluster,
            options.service,
            emit=self.emit,
            clock=clock or time.monotonic,
            sleep=sleep or time.sleep,
        )

    def emit(self, step: RolloutStep) -> None:
        self.steps.append(step)
        if self._on_step is None:
            return
        try:
            self._on_step(step)
        except Exception:
            # Showing progress must never decide a deployment's fate.
            log.warning("could not report rollout step %r", step.event, exc_info=True)

    def result(self, outcome: Outcome, plan: RolloutPlan, **fields: Any) -> RolloutResult:
        return RolloutResult(
            outcome=outcome,
            cluster=self.options.cluster,
            service=self.options.service,
            task_definition=plan.task_definition,
            previous_task_definition=plan.previous_task_definition,
            plan=plan,
            steps=tuple(self.steps),
            **fields,
        )


def rollout(
    ecs: ECSClient,
    cloudwatch: CloudWatchClient,
    options: RolloutOptions,
    *,
    confirm: Confirm | None = None,
    on_step: OnStep | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> RolloutResult:
    """Deploy ``options.image`` into ``options.container`` of the service; see the module doc."""
    run = _Run(ecs, cloudwatch, options, on_step, clock, sleep)
    service = describe_service(ecs, options.cluster, options.service)
    check_deployment_controller(service)
    check_steady(service)
    if int(service.get("desiredCount", 0)) < 1:
        raise CheckFailed(
            f"service {options.service} has desiredCount 0: no task would run "
            f"{options.image}, so nothing could prove it works. Nothing was changed",
            hint="scale the service up first (aws ecs update-service --desired-count N)",
        )
    plan, new_copy = plan_rollout(ecs, service, options)
    if plan.gate is not None:
        plan = replace(plan, gate_states=_gate_states(cloudwatch, options))
    run.emit(RolloutStep("plan", plan.summary(), plan.details()))
    _refuse_firing(plan.gate_states)  # after the plan, so that a dry run still shows it
    if options.dry_run:
        return run.result("dry_run", plan)
    if confirm is not None and not confirm(plan):
        return run.result("aborted", plan, reason="not confirmed; nothing was changed")
    registered = ecs.register_task_definition(**new_copy.register_kwargs())["taskDefinition"]
    new_arn: str = registered["taskDefinitionArn"]
    plan = replace(plan, task_definition=new_arn)
    run.emit(
        RolloutStep(
            "registered",
            f"registered {new_arn} ({plan.container}: {plan.new_image})",
            {"task_definition": new_arn, "tags": list(new_copy.tags)},
        )
    )
    return _deploy(run, plan, service)


def undo(
    ecs: ECSClient,
    cloudwatch: CloudWatchClient,
    options: RolloutOptions,
    *,
    to: str | None = None,
    confirm: Confirm | None = None,
    on_step: OnStep | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> RolloutResult:
    """Go back to the previous revision (or ``to``), followed like a rollout; no bake.

    Undo is the way out when the gate alarms already fire, so it neither checks
    nor bakes on them: they would hold it back or bounce it to the bad revision.
    """
    options = replace(options, gate=None, bake_seconds=0)
    run = _Run(ecs, cloudwatch, options, on_step, clock, sleep)
    service = describe_service(ecs, options.cluster, options.service)
    check_deployment_controller(service)
    plan = plan_undo(ecs, service, options, to=to)
    run.emit(RolloutStep("plan", plan.summary(), plan.details()))
    if options.dry_run:
        return run.result("dry_run", plan)
    if confirm is not None and not confirm(plan):
        return run.result("aborted", plan, reason="not confirmed; nothing was changed")
    return _deploy(run, plan, service)


def finish(
    ecs: ECSClient,
    cloudwatch: CloudWatchClient,
    options: RolloutOptions,
    *,
    bake_seconds: float,
    on_step: OnStep | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> FollowResult:
    """Pick up a rollout that was interrupted: follow the service's PRIMARY deployment to its
    end, then bake ``bake_seconds`` (what was left of the bake). No rollback: the caller's."""
    run = _Run(ecs, cloudwatch, options, on_step, clock, sleep)
    service = describe_service(ecs, options.cluster, options.service)
    run.watcher.mark_seen(service)
    primary = primary_of(service)
    if primary is None:
        return FollowResult(
            ok=False, reason="the service has no PRIMARY deployment", deployment=None
        )
    outcome = run.watcher.follow(primary.id, timeout=options.timeout, interval=options.interval)
    if outcome.ok and options.gate is not None and bake_seconds > 0:
        outcome = run.watcher.bake(
            cloudwatch,
            options.gate,
            primary.id,
            seconds=bake_seconds,
            interval=options.interval,
            allow_insufficient_data=options.allow_insufficient_data,
        )
    return outcome


def _gate_states(cloudwatch: CloudWatchClient, options: RolloutOptions) -> tuple[AlarmStatus, ...]:
    """The gate alarms as they are before the rollout (every part of the selection must match)."""
    assert options.gate is not None
    report = check_alarms(
        cloudwatch, options.gate, allow_insufficient_data=options.allow_insufficient_data
    )
    return report.alarms


def _refuse_firing(states: tuple[AlarmStatus, ...]) -> None:
    """None may fire already: the bake could not judge the new image then."""
    firing = [a.name for a in states if a.state == ALARM]
    if firing:
        raise CheckFailed(
            f"gate alarm(s) already in ALARM before the rollout: {', '.join(firing)}; "
            "the bake could not judge the new image. Nothing was changed",
            hint="fix or silence them first, or use 'migctl rollout undo' to go back",
        )


class _NotApplied(OperationalError):
    """update_service failed and the service, as described afterwards, did not change."""


def _deploy(run: _Run, plan: RolloutPlan, service_before: Mapping[str, Any]) -> RolloutResult:
    """Update the service to ``plan.task_definition``, follow, bake, and roll back on failure."""
    options = run.options
    target = plan.task_definition
    assert target is not None
    run.watcher.mark_seen(service_before)
    deployment_id: str | None = None
    try:
        deployment_id = _update(run, target, plan.previous_task_definition).id
        outcome = run.watcher.follow(
            deployment_id, timeout=options.timeout, interval=options.interval
        )
        if outcome.ok and options.gate is not None:
            outcome = run.watcher.bake(
                run.cloudwatch,
                options.gate,
                deployment_id,
                seconds=options.bake_seconds,
                interval=options.interval,
                allow_insufficient_data=options.allow_insufficient_data,
            )
    except _NotApplied:
        raise  # nothing changed: an operational error (exit 3), no rollback needed
    except KeyboardInterrupt:
        _interrupted(run, plan)
        raise
    except Exception as exc:
        # Lost track of a deployment that may be live: a failure, never a success; and when
        # AWS only throttled us, not a failure seen either (no rollback for it).
        what = f"deployment {deployment_id}" if deployment_id else f"the update to {target}"
        outcome = FollowResult(
            ok=False,
            reason=f"lost track of {what}: {_describe_error(exc)}",
            deployment=None,
            observed=not is_throttling(exc),
        )
    if outcome.ok:
        if plan.action == "rollout":
            _mark(run, target, "baked")
        run.emit(RolloutStep("completed", f"{target} is deployed", {"task_definition": target}))
        return run.result("completed", plan, deployment_id=deployment_id)
    reason = outcome.reason or "unknown failure"
    run.emit(RolloutStep("failure", reason, {"reason": reason, "deployment_id": deployment_id}))
    if not options.rollback or not outcome.observed:
        # Not observed: AWS throttled every look up to the deadline. The deployment may be
        # healthy; rolling it back for not having seen it would be damage, so a person looks.
        why = "--no-rollback" if outcome.observed else "not rolled back: its end was not seen"
        return run.result(
            "failed",
            plan,
            reason=reason,
            deployment_id=deployment_id,
            final_deployments=_final_state(run),
            manual_steps=manual_steps(options, plan, rollback_attempted=False, why_left=why),
        )
    other = _someone_elses(run, plan, deployment_id)
    if other is not None:
        return _not_over(run, plan, deployment_id, reason, other)
    return _roll_back(run, plan, deployment_id, reason)


def _someone_elses(run: _Run, plan: RolloutPlan, deployment_id: str | None) -> Deployment | None:
    """The service's PRIMARY deployment when another actor started it (not ours, not the
    revision we would go back to): a rollback would silently replace their deployment."""
    try:
        service = describe_service(run.ecs, run.options.cluster, run.options.service)
    except Exception:
        return None  # the rollback's own calls will say what AWS answers
    primary = primary_of(service)
    if primary is None or primary.id == deployment_id:
        return None
    if primary.task_definition in (plan.task_definition, plan.previous_task_definition):
        return None  # ECS's circuit breaker, or our own revision: ours to handle
    return primary


def _not_over(
    run: _Run, plan: RolloutPlan, deployment_id: str | None, reason: str, other: Deployment
) -> RolloutResult:
    full = (
        f"{reason}; deployment {other.id} of {other.task_definition}, which migctl did not "
        f"start, is now the service's PRIMARY: migctl does not roll back over it"
    )
    run.emit(RolloutStep("rollback_failed", full, {"reason": full}))
    c, s = run.options.cluster, run.options.service
    return run.result(
        "rollback_failed",
        plan,
        reason=full,
        deployment_id=deployment_id,
        final_deployments=_final_state(run),
        manual_steps=(
            f"Find out who deployed {other.task_definition} (deployment {other.id}) and "
            f"whether it should stay: migctl rollout status --cluster {c} --service {s}",
            f"To keep it, do nothing: {plan.task_definition} is no longer deployed. To go back "
            f"to the revision before this rollout instead: migctl rollout undo --cluster {c} "
            f"--service {s} --to {plan.previous_task_definition} --yes",
        ),
    )


def _update(run: _Run, target: str, previous: str) -> Deployment:
    """``update_service`` to ``target``; the PRIMARY deployment it answered with."""
    options = run.options
    try:
        answer = run.ecs.update_service(
            cluster=options.cluster, service=options.service, taskDefinition=target
        )
        service: Mapping[str, Any] = answer["service"]
    except Exception as exc:
        # A lost answer may still have been applied: look before claiming nothing changed.
        service = describe_service(run.ecs, options.cluster, options.service)
        if service.get("taskDefinition") != target:
            raise _NotApplied(
                f"update_service to {target} failed: {_describe_error(exc)}; "
                f"the service still runs {service.get('taskDefinition', previous)}"
            ) from exc
    deployment = primary_for(service, target)
    run.emit(
        RolloutStep(
            "updated",
            f"service updated to {target}; following deployment {deployment.id}",
            {"task_definition": target, "deployment_id": deployment.id},
        )
    )
    return deployment


def _roll_back(
    run: _Run, plan: RolloutPlan, failed_deployment: str | None, reason: str
) -> RolloutResult:
    options = run.options
    previous = plan.previous_task_definition
    if plan.action == "rollout" and plan.task_definition:
        _mark(run, plan.task_definition, "rolled-back")  # an undo must never go back to it
    run.emit(RolloutStep("rollback", f"rolling back to {previous}", {"task_definition": previous}))
    rollback_id: str | None = None
    try:
        deployment = _update(run, previous, plan.task_definition or previous)
        rollback_id = deployment.id
        outcome = run.watcher.follow(
            deployment.id, timeout=options.timeout, interval=options.interval
        )
    except KeyboardInterrupt:
        _interrupted(run, plan)
        raise
    except Exception as exc:
        outcome = FollowResult(ok=False, reason=_describe_error(exc), deployment=None)
    if outcome.ok:
        run.emit(RolloutStep("rolled_back", f"back on {previous}", {"task_definition": previous}))
        return run.result(
            "rolled_back",
            plan,
            reason=reason,
            deployment_id=failed_deployment,
            rollback_deployment_id=rollback_id,
        )
    full = f"{reason}; the rollback to {previous} failed too: {outcome.reason}"
    run.emit(RolloutStep("rollback_failed", full, {"reason": full}))
    return run.result(
        "rollback_failed",
        plan,
        reason=full,
        deployment_id=failed_deployment,
        rollback_deployment_id=rollback_id,
        final_deployments=_final_state(run),
        manual_steps=manual_steps(options, plan, rollback_attempted=True),
    )


def _mark(run: _Run, task_definition: str, outcome: str) -> None:
    """Tag the revision with what became of it (``OUTCOME_TAG``), for ``undo`` to read.
    Best effort: a refused tag is said, and the rollout's own outcome stands."""
    try:
        run.ecs.tag_resource(
            resourceArn=task_definition, tags=[{"key": OUTCOME_TAG, "value": outcome}]
        )
    except Exception as exc:
        run.emit(
            RolloutStep(
                "warning",
                f"could not tag {task_definition} {OUTCOME_TAG}={outcome} ({_describe_error(exc)})"
                ": 'rollout undo' may not know what became of it",
                {"task_definition": task_definition},
            )
        )


def _interrupted(run: _Run, plan: RolloutPlan) -> None:
    steps = manual_steps(run.options, plan, rollback_attempted=False, why_left="interrupted")
    run.emit(
        RolloutStep(
            "interrupted",
            f"interrupted while the service moves to {plan.task_definition}; "
            "it may be half-deployed",
            {"manual_steps": list(steps)},
        )
    )


def _final_state(run: _Run) -> tuple[Deployment, ...]:
    """The service's deployments right now, best effort (AWS may be what is failing)."""
    try:
        service = describe_service(run.ecs, run.options.cluster, run.options.service)
    except Exception:
        return ()
    return tuple(deployments_of(service))


def _describe_error(exc: BaseException) -> str:
    err = translate(exc)
    return err.one_line() if err is not None else f"{type(exc).__name__}: {exc}"
