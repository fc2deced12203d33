"""The runbook as code: the steps, in order, each with its gate, action, check and undo.

This is the list ``migctl cutover plan`` prints and ``migctl cutover`` runs
(docs/field-notes.md, "Cutover runbook"; docs/runbook.md). The functions
live in one module per step; this module only wires them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from migctl.cutover import (
    baseline,
    fallback,
    freeze,
    marker,
    preflight,
    proof,
    release,
    replication,
    sequences,
    standby,
    validation,
)
from migctl.cutover.context import CutoverContext
from migctl.cutover.model import Step
from migctl.cutover.state import CutoverState

STEPS: tuple[Step, ...] = (
    Step(
        name="preflight",
        title="Preflight",
        gate_text="AWS identity answers (sts get-caller-identity)",
        action_text="wait until: DMS task in CDC with no errored table, CDCLatencyTarget under "
        "[dms] max_latency_seconds for [dms] stable_for periods, gate alarms OK, ECS service "
        "steady",
        check_text="all of the above hold at once",
        undo_text=None,
        action=preflight.preflight,
    ),
    Step(
        name="stage",
        title="Stage the new image",
        gate_text="switch = standby (else nothing to do): the listener forwards to the "
        "service's target group",
        action_text="fence the target against every role but DMS's and prove a marker still "
        "reaches it; start the new revision on the standby service at the service's desired "
        "count, while the application writes",
        check_text="the standby runs the new revision, steady, every task a healthy target",
        undo_text="scale the standby to 0; once it runs no task, take the target's fence down",
        prepare=standby.prepare,
        gate=standby.gate,
        action=standby.stage,
        check=standby.check,
        undo=standby.unstage,
        manual_undo=standby.manual_unstage,
    ),
    Step(
        name="baseline",
        title="Validation baseline",
        gate_text="validate = incremental (else nothing to do): both sides run wal_level = "
        "logical and the user may create a logical replication slot on each",
        action_text="ANALYZE the target; with validate = incremental, create a slot on each "
        "side, then compare every selected table in full while the application writes, then "
        "compare again the rows changed since (lag converges)",
        check_text="nothing is judged here: what still differs is rechecked under the freeze",
        undo_text="drop the two slots",
        prepare=baseline.prepare,
        gate=baseline.gate,
        action=baseline.take,
        undo=baseline.drop_slots,
        manual_undo=baseline.manual_drop_slots,
        release=baseline.drop_slots,
    ),
    Step(
        name="freeze_writes",
        title="Freeze writes",
        gate_text="fence: the source user acts as the owner of every table and may create a "
        "logical replication slot (and, when another role owns tables, the DDL guard: superuser "
        "or rds_superuser); no other cutover's fence is up. none: the operator said --yes",
        action_text="create the proof's slot (test_decoding); put the fence up: on every table a "
        "trigger that refuses every write, enabled ALWAYS, and a guard refusing DDL; end the "
        "[cutover] app_roles sessions that hold it back",
        check_text="the fence is on every table and the proof's start mark is in the slot",
        undo_text="drop the guard, the triggers, their functions and the slot; nothing else was "
        "changed",
        prepare=freeze.prepare,
        gate=freeze.gate,
        action=freeze.freeze,
        check=freeze.check,
        undo=freeze.unfreeze,
        manual_undo=freeze.manual_unfreeze,
        release=freeze.release,
    ),
    Step(
        name="marker",
        title="Marker row",
        gate_text="no write transaction open on the source but migctl's, no prepared transaction",
        action_text="insert a marker row (uuid, pg_current_wal_lsn()) on the source",
        check_text="the marker row is visible on the target: CDC has drained",
        undo_text=None,
        gate=marker.gate,
        action=marker.write_and_wait,
    ),
    Step(
        name="validate",
        title="Validate",
        gate_text="the source is frozen and drained",
        action_text="after a baseline: the rows changed on either side since it (read from "
        "each side's WAL) and those still differing, compared again; else migctl validate of "
        "every selected table (counts, checksums, keys)",
        check_text="no data or schema difference (sequences may be behind)",
        undo_text=None,
        action=validation.validate,
    ),
    Step(
        name="stop_replication",
        title="Stop replication",
        gate_text="the DMS task is in CDC (or already stopped)",
        action_text="stop the DMS task and wait for stopped; record its RecoveryCheckpoint",
        check_text="the task is stopped",
        undo_text="resume the task from its checkpoint (resume-processing)",
        gate=replication.gate,
        action=replication.stop,
        check=replication.check,
        undo=replication.resume,
        manual_undo=replication.manual_resume,
    ),
    Step(
        name="sync_sequences",
        title="Sync sequences",
        gate_text="replication is stopped",
        action_text="setval every target sequence to max(source last value, max(column)) + "
        "[cutover] sequence_margin",
        check_text="no target sequence is behind the source",
        undo_text=None,
        action=sequences.sync,
        check=sequences.check,
    ),
    Step(
        name="prove_freeze",
        title="Prove the freeze",
        gate_text="replication is stopped",
        action_text="read the source's WAL through the freeze's slot, from the fence's start "
        "mark to now",
        check_text="no change to a fenced table (only migctl's marker and DMS's own tables)",
        undo_text=None,
        action=proof.prove,
    ),
    Step(
        name="prepare_fallback",
        title="Prepare the way back",
        gate_text="fallback = reverse-replication (else nothing to do): the reverse DMS task is "
        "CDC only and not running, the target may create a logical slot, and no slot of that "
        "name is left from an earlier cutover",
        action_text="create the reverse task's slot on the target ([cutover] reverse_slot) and "
        "record its position: where the target stands before the new image writes",
        check_text="the slot is on the target",
        undo_text="take the target's fence down (the rollback put it up) and drop the slot",
        prepare=fallback.prepare,
        gate=fallback.gate,
        action=fallback.create_slot,
        check=fallback.slot_check,
        undo=fallback.drop_slot,
        manual_undo=fallback.manual_drop_slot,
    ),
    Step(
        name="rollout",
        title="Roll out",
        gate_text="you confirm (or --yes): the point of no return",
        action_text="switch = standby: lift the target's fence (no table lock) and point the "
        "listener at the standby's target group (no task starts), then bake on the gate alarms; switch = "
        "rollout: migctl rollout of the image (new revision, deployment COMPLETED, bake)",
        check_text="the new image serves and the alarms stayed OK through the bake",
        undo_text="point the listener back at the service's target group (its tasks still run "
        "the old image) and scale the standby to 0; migctl rollout undo to the revision that "
        "ran before when the service itself moved",
        prepare=release.prepare,
        action=release.roll_out,
        undo=release.roll_back,
        manual_undo=release.manual_roll_back,
        point_of_no_return=True,
        undo_failure_halts=True,
    ),
    Step(
        name="post_checks",
        title="Post-checks",
        gate_text="the new image is deployed",
        action_text="wait until: gate alarms OK, PRIMARY deployment COMPLETED, running >= "
        "desired, ALB healthy targets >= desired",
        check_text="all of the above hold at once; the proof of the freeze still holds",
        undo_text=None,
        action=release.post_checks,
        check=proof.prove,
    ),
    Step(
        name="start_fallback",
        title="Start the way back",
        gate_text="fallback = reverse-replication (else nothing to do)",
        action_text="open the source's fence to [cutover] reverse_role only; start the reverse "
        "DMS task (target to source, CDC only) from the slot's recorded position",
        check_text="the reverse task is running",
        undo_text="carry everything back: fence the target, drain (a marker written on the "
        "target reaches the source), count what was carried per table, move the source's "
        "sequences past the target's, stop the reverse task",
        prepare=fallback.prepare,
        action=fallback.start,
        check=fallback.running,
        undo=fallback.carry_back,
        manual_undo=fallback.manual_carry_back,
        undo_failure_halts=True,
    ),
    Step(
        name="converge",
        title="Converge",
        gate_text="switch = standby (else nothing to do)",
        action_text="deploy the standby's revision to the service (it takes no traffic yet), "
        "point the listener back at the service's target group once its targets are healthy, "
        "scale the standby to 0, drop the target's lifted fence",
        check_text="the service runs the new revision and takes the traffic",
        undo_text=None,
        prepare=standby.prepare,
        action=standby.converge,
    ),
)

STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)
StateProbe = Callable[[CutoverContext], str]
# What a person is told about the systems when a rollback could not finish.
STATE_PROBES: Sequence[StateProbe] = (
    release.service_state,
    standby.state,
    replication.task_state,
    fallback.reverse_state,
    freeze.source_state,
)


# Where the systems stand after a step, as the journal tells it (no system is asked):
# per step, what holds when it is not started, under way (or interrupted), done, undone.
_STANDING: Mapping[str, tuple[str, str, str, str]] = {
    "stage": (
        "nothing is staged: the target takes DMS's writes only, as always",
        "the standby may run the new image and the target may be fenced: staging, or its undo, "
        "did not finish",
        "the new image runs on the standby, without traffic; the target is fenced but for DMS",
        "the standby is idle and the target's fence is down",
    ),
    "freeze_writes": (
        "the source takes writes (not frozen)",
        "the source may be frozen: the freeze, or its undo, did not finish",
        "the source is frozen: the fence is up",
        "the source takes writes again: the fence is down",
    ),
    "stop_replication": (
        "replication runs",
        "replication may be stopped: its stop, or its resume, did not finish",
        "replication is stopped",
        "replication runs again",
    ),
    "rollout": (
        "the application runs the old image, on the source",
        "ECS may be mid-deployment: the rollout, or its undo, did not finish",
        "the application runs the new image, on the target",
        "the application is back on the old image",
    ),
    "start_fallback": (
        "no reverse replication runs",
        "the reverse replication may run: its start, or the carrying back, did not finish",
        "the reverse replication carries the target's writes to the source",
        "the reverse replication carried everything back and is stopped",
    ),
}


def standing(state: CutoverState) -> tuple[str, ...]:
    """One line per system: the source's writes, replication, the application."""
    lines = []
    for name, (pending, partial, done, undone) in _STANDING.items():
        if name not in state.step_names:
            continue
        status = state.step(name).status
        if status == "pending" or (status == "failed" and not state.step(name).changed):
            lines.append(pending)
        elif status == "done":
            lines.append(done)
        elif status == "undone":
            left = state.step(name).undo_details.get("outcome") == replication.LEFT_STOPPED
            lines.append(
                "replication stays stopped (see the rollback's warning)" if left else undone
            )
        else:  # running, interrupted, failed after a change, undoing, undo_failed
            lines.append(partial)
    return tuple(lines)


def observe(ctx: CutoverContext, probes: Sequence[StateProbe] = STATE_PROBES) -> list[str]:
    """The systems as they are now, each line best effort (the failure may be the reason)."""
    lines = []
    for probe in probes:
        try:
            lines.append(probe(ctx))
        except Exception as exc:
            lines.append(f"{probe.__module__.rsplit('.', 1)[-1]}: could not read: {exc}")
    return lines
