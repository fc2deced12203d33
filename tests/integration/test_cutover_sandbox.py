"""`migctl cutover` end to end in one sandbox: real PostgreSQL, real logical replication, local AWS.

One sandbox (2,000 payments, a live writer) serves the module; every test
starts from "replicating in CDC, source writable, writer running" and, when
it changes that, puts it back with the cutover's own rollback. Each test has
its own journal (``MIGCTL_CUTOVER_JOURNAL``), so their cutovers do not meet.
Order: the cheap refusals first, then the failures, then the full cutover,
then the same cutover killed with SIGKILL at every step boundary.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cutover_support import (
    IDLE,
    Sandbox,
    SteadyWriter,
    app_can_write,
    app_refused_on_target,
    checked_report,
    dms_status,
    down,
    fence_left,
    keys_now,
    notices,
    records,
    result_of,
    run,
    sequences_at_margin,
    service_image,
    standby_of,
    statuses,
    subscribe_notices,
    tables_match_eventually,
    up,
    wait_for_keys,
    wait_for_record,
    way_back_left,
)

from migctl.cutover.steps import STEP_NAMES
from migctl.sandbox.environment import SandboxState, is_alive, start_traffic, stop_traffic
from migctl.sandbox.traffic import committed

OLD_IMAGE = "payments-app:1.0.0"
NEW_IMAGE = "payments-app:2.0.0-aurora"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sbx = up("cutover", rows=2000)
    try:
        started = run(sbx.env, "dms", "start", "--yes", "--interval", "1")
        assert started.returncode == 0, started.stderr
        loaded = run(sbx.env, "dms", "watch", "--until", "full-load", "--interval", "1")
        assert loaded.returncode == 0, loaded.stderr
        subscribe_notices(sbx)
        yield sbx
    finally:
        down(sbx)


def ready(sbx: Sandbox, *, ecs: bool = False) -> None:
    """Replicating, writer running; the source must already be writable (asserted, not fixed).

    ``ecs``: the application on ECS writes too once the new image serves (the way back's
    tests); without it the target takes no write after go-live, so sequences stay exact."""
    assert app_can_write(sbx)
    state = SandboxState.load(sbx.dir)
    assert state is not None
    writer = state.processes.get("traffic")
    if writer is not None and is_alive(writer) and state.ecs_writer != ecs:
        stop_traffic(sbx.dir)
        writer = None
    if writer is None or not is_alive(writer):
        start_traffic(sbx.dir, ecs=ecs)
    if dms_status(sbx) != "running":
        resumed = run(sbx.env, "dms", "start", "--type", "resume", "--yes", "--interval", "1")
        assert resumed.returncode == 0, resumed.stderr
    notices(sbx)  # forget earlier tests' notices


def test_no_password_reaches_any_output_even_at_vv(sandbox: Sandbox) -> None:
    """Every command that reads a secret, at -vv (botocore logs HTTP bodies at DEBUG), and the
    journal: none shows a password. `sandbox up` (the CreateSecret requests) ran at -vv too."""
    ready(sandbox)
    passwords = sandbox.passwords()
    assert len(passwords) == 2 and all(len(p) >= 20 for p in passwords)
    journal = sandbox.journal("vv")
    runs = [
        run(sandbox.env, "-vv", "validate"),
        run(sandbox.env, "-vv", "--output", "json", "validate", "--executor", "lambda-local"),
        run(sandbox.env_for(journal), "-vv", "cutover", "--until", "validate", "--yes"),
        run(sandbox.env_for(journal), "-vv", "cutover", "rollback", "--yes"),
    ]
    codes = [r.returncode for r in runs]  # the writer runs: validate may see replication lag
    assert codes[0] in (0, 1) and codes[1] in (0, 1) and codes[2:] == [0, 4], codes
    outputs = [sandbox.up_output, journal.read_text(), *(r.stdout + r.stderr for r in runs)]
    assert all("DEBUG botocore" in out for out in outputs[2:]), "the commands ran at -vv"
    assert any("GetSecretValue" in out for out in outputs[2:])  # bodies were there to leak
    for password in passwords:
        assert not [out for out in outputs if password in out]
    assert app_can_write(sandbox)


def test_a_validate_selection_of_nothing_stops_before_the_freeze(sandbox: Sandbox) -> None:
    """A typo in [validate] tables is exit 2 at the preflight: nothing frozen, nothing to undo."""
    ready(sandbox)
    journal = sandbox.journal("nothing")
    proc = sandbox.cutover(journal, "--yes", MIGCTL_VALIDATE_TABLES="public.nosuch*")
    assert proc.returncode == 2, proc.stderr
    result = result_of(proc)
    assert result["outcome"] == "stopped"
    assert statuses(result)["preflight"] == "failed"
    assert statuses(result)["freeze_writes"] == "pending"
    preflight = next(s for s in result["steps"] if s["name"] == "preflight")
    assert "'public.nosuch*' matched no table" in preflight["error"]
    assert app_can_write(sandbox)


def test_until_validate_pauses_frozen_then_rolls_back(sandbox: Sandbox) -> None:
    ready(sandbox)
    journal = sandbox.journal("until")
    paused = sandbox.cutover(journal, "--until", "validate", "--yes")
    assert paused.returncode == 0, paused.stderr
    result = result_of(paused)
    assert result["outcome"] == "paused"
    assert list(statuses(result).values()) == ["done"] * 6 + ["pending"] * 8
    assert result["write_freeze_open"] is True and result["write_freeze_seconds"] > 0
    assert not app_can_write(sandbox)  # frozen: the fence refuses the write
    assert dms_status(sandbox) == "running"  # replication was not touched
    staged = standby_of(sandbox)  # the new image runs, without traffic, the target fenced
    assert staged.running == 2 and not staged.serving and staged.target_fenced > 0
    refused = app_refused_on_target(sandbox)  # what the staged image would write is refused
    assert refused is not None and "are frozen" in refused, refused

    again = sandbox.cutover(journal, "--yes")
    assert again.returncode == 2 and "in progress" in again.stderr

    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert statuses(result_of(rolled))["freeze_writes"] == "undone"
    assert app_can_write(sandbox)
    assert standby_of(sandbox) == IDLE
    assert app_refused_on_target(sandbox) is None


def test_a_validation_difference_stops_before_anything_irreversible(sandbox: Sandbox) -> None:
    ready(sandbox)
    image_before = service_image(sandbox)
    with sandbox.target() as tgt:  # traffic never touches customers: the difference stays
        tgt.execute("UPDATE customers SET name = 'planted on the target' WHERE id = 7")
    journal = sandbox.journal("difference")
    try:
        proc = sandbox.cutover(journal, "--yes")
    finally:
        with sandbox.source() as src, sandbox.target() as tgt:
            name = src.execute("SELECT name FROM customers WHERE id = 7").fetchone()[0]  # type: ignore[index]
            tgt.execute("UPDATE customers SET name = %s WHERE id = 7", (name,))
    assert proc.returncode == 4, proc.stderr
    result = result_of(proc)
    assert result["outcome"] == "rolled_back"
    assert statuses(result) == {
        "preflight": "done",
        "baseline": "undone",
        "stage": "undone",
        "freeze_writes": "undone",
        "marker": "done",
        "validate": "failed",
        "stop_replication": "pending",
        "sync_sequences": "pending",
        "prove_freeze": "pending",
        "prepare_fallback": "pending",
        "rollout": "pending",
        "post_checks": "pending",
        "start_fallback": "pending",
        "converge": "pending",
    }
    validate = next(s for s in result["steps"] if s["name"] == "validate")
    assert [d["table"] for d in validate["details"]["differences"]] == ["public.customers"]
    assert not any(r.get("step") == "stop_replication" for r in records(journal))
    assert dms_status(sandbox) == "running"
    assert app_can_write(sandbox)
    assert service_image(sandbox) == image_before
    subjects = notices(sandbox)
    assert any(s.endswith(": FAILED") for s in subjects)
    assert any(s.endswith(": rolled back") for s in subjects)


def test_an_image_that_does_not_start_fails_on_the_standby_before_the_freeze(
    sandbox: Sandbox,
) -> None:
    """With the standby switch the new image starts while the application still writes: one
    that fails its health checks stops the cutover before anything is frozen."""
    ready(sandbox)
    image_before = service_image(sandbox)
    journal = sandbox.journal("broken-standby")
    proc = sandbox.cutover(journal, "--yes", "--image", "payments-app:2.0.1-broken")
    assert proc.returncode == 4, proc.stderr
    result = result_of(proc)
    assert result["outcome"] == "rolled_back"
    steps = statuses(result)
    assert steps["stage"] == "undone" and steps["baseline"] == steps["freeze_writes"] == "pending"
    stage = next(s for s in result["steps"] if s["name"] == "stage")
    assert "circuit breaker" in stage["error"] and "standby" in stage["error"]
    undone = [r["step"] for r in records(journal) if r["event"] == "undo_finished"]
    assert undone == ["stage"]
    assert result["write_freeze_seconds"] in (None, 0)
    assert app_can_write(sandbox)
    assert dms_status(sandbox) == "running"
    assert service_image(sandbox) == image_before
    assert standby_of(sandbox) == IDLE


def test_a_failed_rollout_rolls_back_and_the_source_is_writable_again(sandbox: Sandbox) -> None:
    """switch = rollout: the image starts inside the window, and its failure rolls back."""
    ready(sandbox)
    image_before = service_image(sandbox)
    journal = sandbox.journal("broken")
    proc = sandbox.cutover(
        journal, "--yes", "--image", "payments-app:2.0.1-broken", MIGCTL_CUTOVER_SWITCH="rollout"
    )
    assert proc.returncode == 4, proc.stderr
    result = result_of(proc)
    assert result["outcome"] == "rolled_back"
    steps = statuses(result)
    assert steps["rollout"] == "undone" and steps["post_checks"] == "pending"
    assert steps["stop_replication"] == "undone" and steps["freeze_writes"] == "undone"
    rollout = next(s for s in result["steps"] if s["name"] == "rollout")
    assert "circuit breaker" in rollout["error"]
    undone = [r["step"] for r in records(journal) if r["event"] == "undo_finished"]
    assert undone == [  # reverse order
        "rollout",
        "prepare_fallback",
        "stop_replication",
        "freeze_writes",
        "baseline",
        "stage",
    ]
    assert app_can_write(sandbox)
    assert dms_status(sandbox) == "running"
    assert service_image(sandbox) == image_before
    assert standby_of(sandbox) == IDLE


def test_full_cutover_refuses_a_second_one_then_rolls_back(sandbox: Sandbox) -> None:
    """With fallback = none: the rows the new image wrote on the target are counted and said
    lost, and forward replication stays stopped (resumed, it would collide with them)."""
    ready(sandbox)
    journal = sandbox.journal("full")
    none = {"MIGCTL_CUTOVER_FALLBACK": "none"}
    first = sandbox.popen(journal, "--yes", MIGCTL_ECS_BAKE_SECONDS="5", **none)
    try:
        wait_for_record(journal, "step_started", "rollout")
        second = sandbox.cutover(journal, "--yes")
        assert second.returncode == 3
        assert "holds the lock" in second.stderr and f"pid {first.pid}" in second.stderr
        breaking = sandbox.cutover(journal, "--resume", "--break-lock", "--yes", **none)
        assert breaking.returncode == 3 and "still running" in breaking.stderr
        stdout, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    result = json.loads(stdout.splitlines()[-1])
    assert result["outcome"] == "completed"
    assert result["report_command"] == f"migctl cutover report --cutover {result['cutover_id']}"
    report = checked_report(sandbox, journal, result)
    assert report["systems"]["ecs_service"] == sandbox.state.outputs["ecsServiceName"]
    assert report["rollout"]["task_definition_before"] != report["rollout"]["task_definition_after"]
    assert set(statuses(result).values()) == {"done"}
    assert result["write_freeze_open"] is False and 0 < result["write_freeze_seconds"] < 120
    # The window ends when the new image serves (its deployment completed), not after the
    # 5 s bake: from the freeze to live_at, to the millisecond.
    steps = {s["name"]: s for s in result["steps"]}
    live_at = next(
        r["details"]["progress"]["live_at"]
        for r in records(journal)
        if r.get("step") == "rollout" and "live_at" in (r.get("details") or {}).get("progress", {})
    )
    frozen_at = dt.datetime.fromisoformat(steps["freeze_writes"]["details"]["frozen_at"])
    window = (dt.datetime.fromisoformat(live_at) - frozen_at).total_seconds()
    assert abs(result["write_freeze_seconds"] - window) < 0.002
    assert steps["rollout"]["duration_seconds"] > 5  # the bake, after the window
    # No task started inside the window: the standby's tasks were healthy before the freeze,
    # the listener switched to them, and the service's own deployment came after go-live.
    assert steps["rollout"]["details"]["switched"] is True
    finished = {
        r["step"]: dt.datetime.fromisoformat(r["ts"])
        for r in records(journal)
        if r["event"] == "step_finished"
    }
    assert finished["stage"] < frozen_at
    deployed = sandbox.aws("ecs").describe_services(
        cluster=sandbox.state.outputs["ecsClusterName"],
        services=[sandbox.state.outputs["ecsServiceName"]],
    )["services"][0]["deployments"][0]
    assert deployed["createdAt"] > dt.datetime.fromisoformat(live_at)
    assert standby_of(sandbox) == IDLE  # converged: the service serves, the standby is idle

    validate = run(sandbox.env, "validate")
    assert validate.returncode == 0, validate.stdout  # target equals source, sequences ahead
    for sequence, (have, wanted) in sequences_at_margin(sandbox).items():
        assert have == wanted, sequence
    assert service_image(sandbox) == NEW_IMAGE
    assert dms_status(sandbox) == "stopped"
    assert not app_can_write(sandbox)
    subjects = notices(sandbox)
    assert any(s.endswith(": started") for s in subjects)
    assert any(s.endswith(": completed") for s in subjects)
    assert fence_left(sandbox)[0] > 0 and fence_left(sandbox)[1] == 0  # fenced; the slot freed

    cutover_id = result["cutover_id"]
    rerun = sandbox.cutover(journal, "--yes")  # a second command must not lose the first
    assert rerun.returncode == 2, rerun.stderr
    assert f"cutover {cutover_id} completed" in rerun.stderr
    assert "migctl cutover rollback" in rerun.stderr and "--new" in rerun.stderr
    new = sandbox.cutover(journal, "--new", "--yes")  # deliberate: it stops, changing nothing
    assert new.returncode in (1, 3), new.stderr
    assert result_of(new)["outcome"] == "stopped"
    status = json.loads(
        run(sandbox.env_for(journal), "--output", "json", "cutover", "status").stdout
    )
    assert [c["last_outcome"] for c in status["history"]] == ["completed", "stopped"]
    assert status["history"][0]["next_commands"] == [
        f"migctl cutover rollback --cutover {cutover_id}"
    ]
    latest = sandbox.cutover(journal, "rollback", "--yes")
    assert latest.returncode == 2 and f"--cutover {cutover_id}" in latest.stderr
    assert service_image(sandbox) == NEW_IMAGE  # nothing was undone by the refusals

    with sandbox.target() as app:  # the new image writes on the target after go-live
        for n in range(3):
            app.execute("INSERT INTO audit_log (actor, action) VALUES ('new-image', %s)", (str(n),))
    rolled = sandbox.cutover(journal, "rollback", "--cutover", cutover_id, "--yes", **none)
    assert rolled.returncode == 4, rolled.stderr
    report = checked_report(sandbox, journal, result_of(rolled))
    assert [r["mode"] for r in report["runs"]] == ["run", "rollback"]
    assert any("forward replication left stopped" in w for w in report["warnings"])
    undone = next(
        r for r in records(journal) if r["event"] == "undo_finished" and r["step"] == "rollout"
    )
    assert undone["details"]["written_on_target_since_go_live"] == [
        {"schema": "public", "name": "audit_log", "inserted": 3, "updated": 0, "deleted": 0}
    ]
    assert any(
        "3 row(s) were written on the target since go-live" in w
        and "public.audit_log 3 inserted" in w
        for w in result_of(rolled)["warnings"]
    )
    assert any("forward replication left stopped" in w for w in result_of(rolled)["warnings"])
    assert dms_status(sandbox) == "stopped"
    with sandbox.target() as tgt:  # reconciled, as the warning asks: the next tests validate
        tgt.execute("DELETE FROM audit_log WHERE actor = 'new-image'")
    assert service_image(sandbox) == OLD_IMAGE
    assert app_can_write(sandbox)
    assert fence_left(sandbox) == (0, 0)


def test_kill_9_at_every_step_boundary_then_resume(sandbox: Sandbox) -> None:
    """Each step is killed twice: after its action but before its end is journaled (so it runs
    again), and right after its end is journaled. The end state is the uninterrupted run's."""
    ready(sandbox)
    journal = sandbox.journal("kill")
    resume: tuple[str, ...] = ()
    for step in STEP_NAMES:
        for hook in (f"{step}:action", step):
            proc = sandbox.cutover(journal, *resume, "--yes", MIGCTL_CUTOVER_CRASH_AFTER=hook)
            assert proc.returncode == -signal.SIGKILL, (hook, proc.stderr)
            last = records(journal)[-1]
            if hook == step:
                assert (last["event"], last["step"], last["status"]) == (
                    "step_finished",
                    step,
                    "done",
                )
            else:
                assert last["event"] != "step_finished", hook
            if not resume:
                stale = sandbox.cutover(journal, "--resume", "--yes")
                assert stale.returncode == 3 and "stale" in stale.stderr
                resume = ("--resume", "--break-lock")
    done = sandbox.cutover(journal, "--resume", "--break-lock", "--yes")
    assert done.returncode == 0, done.stderr
    result = result_of(done)
    assert result["outcome"] == "completed"
    assert {s["name"]: (s["status"], s["attempts"]) for s in result["steps"]} == dict.fromkeys(
        STEP_NAMES, ("done", 2)
    )
    assert validate_ok(sandbox)
    for sequence, (have, wanted) in sequences_at_margin(sandbox).items():
        assert have == wanted, sequence  # the margin was added once, not twice
    assert service_image(sandbox) == NEW_IMAGE
    assert dms_status(sandbox) == "stopped"
    rollout = [
        r for r in records(journal) if r["event"] == "step_finished" and r["step"] == "rollout"
    ]
    assert rollout[-1]["details"]["already_switched"] is True  # the rerun did not switch again

    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert service_image(sandbox) == OLD_IMAGE
    assert app_can_write(sandbox)
    assert fence_left(sandbox) == (0, 0)


def validate_ok(sandbox: Sandbox) -> bool:
    return run(sandbox.env, "validate").returncode == 0


def test_a_superuser_write_during_the_freeze_is_proven_and_rolls_back_naming_the_table(
    sandbox: Sandbox,
) -> None:
    """A superuser can lift the fence (drop its guard, disable its trigger): the proof reads
    the change from the WAL and the cutover rolls back before the rollout."""
    ready(sandbox)
    image_before = service_image(sandbox)
    journal = sandbox.journal("superuser")
    paused = sandbox.cutover(journal, "--until", "validate", "--yes")
    assert paused.returncode == 0, paused.stderr
    with sandbox.source() as su:
        guards = su.execute(
            "SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 'migctl_fence_%'"
        ).fetchall()
        trigger = su.execute(
            "SELECT DISTINCT tgname FROM pg_trigger WHERE tgname LIKE 'migctl_fence_%'"
        ).fetchone()
        assert guards and trigger
        for (guard,) in guards:
            su.execute(f"DROP EVENT TRIGGER {guard}")  # type: ignore[arg-type]
        su.execute(f"ALTER TABLE customers DISABLE TRIGGER {trigger[0]}")  # type: ignore[arg-type]
        su.execute("UPDATE customers SET name = name || ' (by hand)' WHERE id IN (3, 4)")
    resumed = sandbox.cutover(journal, "--resume", "--yes")
    assert resumed.returncode == 4, resumed.stderr
    result = result_of(resumed)
    assert result["outcome"] == "rolled_back"
    steps = statuses(result)
    assert steps["prove_freeze"] == "failed" and steps["rollout"] == "pending"
    proof = next(s for s in result["steps"] if s["name"] == "prove_freeze")
    assert "2 change(s) reached the source" in proof["error"]
    assert "public.customers: 2 UPDATE" in proof["error"]
    checked = proof["details"]["proof"]
    assert checked["from_lsn"] and checked["to_lsn"]
    assert checked["breaches"] == [
        {"schema": "public", "name": "customers", "changes": {"UPDATE": 2}}
    ]
    assert service_image(sandbox) == image_before
    assert dms_status(sandbox) == "running"
    assert app_can_write(sandbox)
    assert fence_left(sandbox) == (0, 0)


def _fix_customer(sandbox: Sandbox, customer: int) -> None:
    """Put the target's row back as the source has it (after a test planted a difference)."""
    with sandbox.source() as src, sandbox.target() as tgt:
        name = src.execute("SELECT name FROM customers WHERE id = %s", (customer,)).fetchone()
        assert name is not None
        tgt.execute("UPDATE customers SET name = %s WHERE id = %s", (name[0], customer))


def _wait_for(conn: psycopg.Connection[Any], query: str, *params: Any) -> None:
    deadline = time.monotonic() + 30
    while conn.execute(query, params).fetchone() != (True,):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, query
        time.sleep(0.05)


def _failed_validation(proc: Any, key: int) -> dict[str, Any]:
    assert proc.returncode == 4, proc.stderr
    result = result_of(proc)
    assert result["outcome"] == "rolled_back"
    steps = statuses(result)
    assert steps["validate"] == "failed" and steps["rollout"] == "pending"
    assert steps["baseline"] == "undone" and steps["freeze_writes"] == "undone"
    validate = next(s for s in result["steps"] if s["name"] == "validate")
    assert validate["details"]["mode"] == "incremental"
    (difference,) = validate["details"]["differences"]
    assert (difference["table"], difference["keys"]) == ("public.customers", [[key]])
    assert f"public.customers (mismatch: {key})" in validate["error"]
    return validate


def test_a_write_on_the_target_during_the_freeze_fails_the_incremental_validation(
    sandbox: Sandbox,
) -> None:
    """A stray writer on the target, after the drain, on a row nobody else touches: only the
    target's WAL shows it, and the round under the freeze reads it there."""
    ready(sandbox)
    journal = sandbox.journal("target-plant")
    paused = sandbox.cutover(journal, "--until", "marker", "--yes")
    assert paused.returncode == 0, paused.stderr
    try:
        with sandbox.target() as su:
            su.execute("UPDATE customers SET name = 'planted under the freeze' WHERE id = 11")
        resumed = sandbox.cutover(journal, "--resume", "--yes")
    finally:
        _fix_customer(sandbox, 11)
    validate = _failed_validation(resumed, 11)
    assert validate["details"]["changes_read"]["target"] >= 1
    assert app_can_write(sandbox) and dms_status(sandbox) == "running"


def test_a_source_change_replication_never_carries_fails_the_incremental_validation(
    sandbox: Sandbox,
) -> None:
    """After the baseline, a change on the source that replication skips (its slot moved past
    it, as a DMS that lost it would): the source's WAL has it, the round finds the row."""
    ready(sandbox)
    journal = sandbox.journal("source-plant")
    paused = sandbox.cutover(journal, "--until", "baseline", "--yes")
    assert paused.returncode == 0, paused.stderr
    stop_traffic(sandbox.dir)  # only the planted change is skipped, no write of the writer's
    with sandbox.target() as tgt:
        row = tgt.execute("SELECT subname, subslotname FROM pg_subscription").fetchone()
        assert row is not None
        subscription, slot = row
    with sandbox.source() as src:
        src.execute("SET synchronous_commit = on")  # every commit so far flushed: decodable
        lsn = src.execute("SELECT pg_logical_emit_message(true, 'test', '')").fetchone()
        _wait_for(
            src,
            "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = %s",
            lsn[0] if lsn else None,
            slot,
        )  # the writer's rows arrived
        with sandbox.target() as tgt:
            tgt.execute(f'ALTER SUBSCRIPTION "{subscription}" DISABLE')  # type: ignore[arg-type]
        try:
            _wait_for(src, "SELECT NOT active FROM pg_replication_slots WHERE slot_name = %s", slot)
            src.execute("UPDATE customers SET name = 'never replicated' WHERE id = 13")
            src.execute(
                "SELECT pg_replication_slot_advance(%s, pg_current_wal_insert_lsn())", (slot,)
            )
        finally:
            with sandbox.target() as tgt:
                tgt.execute(f'ALTER SUBSCRIPTION "{subscription}" ENABLE')  # type: ignore[arg-type]
    try:
        resumed = sandbox.cutover(journal, "--resume", "--yes")
    finally:
        _fix_customer(sandbox, 13)
    validate = _failed_validation(resumed, 13)
    assert validate["details"]["changes_read"]["source"] >= 1
    assert app_can_write(sandbox) and dms_status(sandbox) == "running"


@pytest.mark.parametrize("rate", [2, 20])
def test_a_steady_writer_never_loses_a_committed_write(sandbox: Sandbox, rate: int) -> None:
    """The application keeps writing with BEGIN READ WRITE through a whole cutover: either it
    completes and every write that committed on the source is on the target, or it rolls
    back. Never exit 0 with a write missing."""
    ready(sandbox)
    journal = sandbox.journal(f"steady-{rate}")
    with SteadyWriter(sandbox, rate) as writer:
        proc = sandbox.cutover(journal, "--yes")
    result = result_of(proc)
    assert (result["outcome"], proc.returncode) in (("completed", 0), ("rolled_back", 4)), (
        proc.stderr
    )
    assert writer.committed and writer.refused  # it wrote before the fence, and hit it
    with sandbox.source() as src:
        assert writer.found_on(src) == len(writer.committed)
    if result["outcome"] == "completed":
        with sandbox.target() as tgt:
            assert writer.found_on(tgt) == len(writer.committed)
        assert validate_ok(sandbox)
        rolled = sandbox.cutover(journal, "rollback", "--yes")
        assert rolled.returncode == 4, rolled.stderr
    assert app_can_write(sandbox)
    assert fence_left(sandbox) == (0, 0)


def test_an_unreadable_journal_is_exit_3_and_nothing_is_frozen(sandbox: Sandbox) -> None:
    ready(sandbox)
    journal = sandbox.journal("garbage")
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_bytes(b"\0" * 4096)
    for args in (("--yes",), ("rollback", "--yes"), ("status",)):
        proc = sandbox.cutover(journal, *args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert "unreadable at line 1" in proc.stderr and "Traceback" not in proc.stderr
    assert app_can_write(sandbox)
    assert fence_left(sandbox) == (0, 0)


def test_ctrl_c_at_every_step_says_where_things_stand_then_resume_completes(
    sandbox: Sandbox,
) -> None:
    ready(sandbox)
    journal = sandbox.journal("ctrl-c")
    resume: tuple[str, ...] = ()
    for step in STEP_NAMES:
        proc = sandbox.cutover(
            journal,
            *resume,
            "--yes",
            MIGCTL_CUTOVER_CRASH_AFTER=f"{step}:started",
            MIGCTL_CUTOVER_CRASH_SIGNAL="INT",
        )
        assert proc.returncode == 130, (step, proc.stderr)
        result = result_of(proc)  # the JSON stream still ends with its result line
        assert result["outcome"] == "interrupted"
        assert statuses(result)[step] == "interrupted"
        # the standby, the source, replication, the application, the way back
        assert len(result["state"]) == 5
        assert result["next_steps"][0] == "continue: migctl cutover --resume"
        resume = ("--resume",)
    done = sandbox.cutover(journal, "--resume", "--yes")
    assert done.returncode == 0, done.stderr
    result = result_of(done)
    assert result["outcome"] == "completed"
    assert set(statuses(result).values()) == {"done"}
    assert validate_ok(sandbox)
    for sequence, (have, wanted) in sequences_at_margin(sandbox).items():
        assert have == wanted, sequence
    assert service_image(sandbox) == NEW_IMAGE
    assert fence_left(sandbox)[1] == 0
    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert app_can_write(sandbox) and fence_left(sandbox) == (0, 0)


def test_ctrl_c_in_the_bake_then_resume_bakes_what_is_left_or_rollback_undoes_all(
    sandbox: Sandbox,
) -> None:
    ready(sandbox)
    journal = sandbox.journal("bake")
    first = sandbox.popen(journal, "--yes", MIGCTL_ECS_BAKE_SECONDS="8")
    try:
        deadline = time.monotonic() + 120
        while not any(
            r["event"] == "note"
            and "bake_started_at" in (r.get("details") or {}).get("progress", {})
            for r in records(journal)
        ):
            assert time.monotonic() < deadline and first.poll() is None, "no bake started"
            time.sleep(0.1)
        time.sleep(3)
        first.send_signal(signal.SIGINT)  # Ctrl-C from the operator's terminal
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, stderr
    stopped = json.loads(stdout.splitlines()[-1])
    assert stopped["outcome"] == "interrupted" and statuses(stopped)["rollout"] == "interrupted"
    assert "ECS may be mid-deployment" in " ".join(stopped["state"])

    resumed = sandbox.cutover(journal, "--resume", "--yes", MIGCTL_ECS_BAKE_SECONDS="8")
    assert resumed.returncode == 0, resumed.stderr
    rollout = next(s for s in result_of(resumed)["steps"] if s["name"] == "rollout")
    assert rollout["details"]["already_switched"] is True
    assert 2 <= rollout["details"]["baked_seconds"] <= 6  # the rest of it, neither 0 nor all

    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert service_image(sandbox) == OLD_IMAGE
    assert app_can_write(sandbox) and fence_left(sandbox) == (0, 0)


@pytest.mark.parametrize("sent", ["INT", "TERM"])
def test_ctrl_c_then_rollback_leaves_the_state_of_a_run_never_started(
    sandbox: Sandbox, sent: str
) -> None:
    """SIGTERM (a runbook's timeout, a kill) is handled as Ctrl-C: the same result line."""
    ready(sandbox)
    image_before = service_image(sandbox)
    journal = sandbox.journal(f"ctrl-c-rollback-{sent}")
    proc = sandbox.cutover(
        journal,
        "--yes",
        MIGCTL_CUTOVER_CRASH_AFTER="rollout:started",
        MIGCTL_CUTOVER_CRASH_SIGNAL=sent,
    )
    assert proc.returncode == 130, proc.stderr
    assert result_of(proc)["state"] == [
        "the new image runs on the standby, without traffic; the target is fenced but for DMS",
        "the source is frozen: the fence is up",
        "replication is stopped",
        "ECS may be mid-deployment: the rollout, or its undo, did not finish",
        "no reverse replication runs",
    ]
    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    steps = statuses(result_of(rolled))
    assert steps["rollout"] == steps["stop_replication"] == steps["freeze_writes"] == "undone"
    assert steps["stage"] == "undone"
    assert service_image(sandbox) == image_before
    assert dms_status(sandbox) == "running"
    assert app_can_write(sandbox) and fence_left(sandbox) == (0, 0)
    assert standby_of(sandbox) == IDLE


def go_live_with_both_writers(sandbox: Sandbox, name: str) -> tuple[Path, dict[str, Any]]:
    """A completed cutover, then the application on ECS writing on the target for a while."""
    ready(sandbox, ecs=True)
    journal = sandbox.journal(name)
    before = len(keys_now(sandbox, "ecs"))
    sandbox.ecs_keys_before = before
    proc = sandbox.cutover(journal, "--yes")
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc)
    assert statuses(result)["start_fallback"] == "done"
    wait_for_keys(sandbox, "ecs", before + 30)  # the new image writes on the target
    assert not app_can_write(sandbox)  # the source stays fenced against the applications
    return journal, result


def assert_everything_came_back(
    sandbox: Sandbox, rolled: dict[str, Any], inserted: int | None = None
) -> None:
    """After the rollback: every payment the application on ECS committed is on the source,
    nothing writes on the target, the on-premises writer writes on the source again,
    forward replication runs, and source and target hold the same rows."""
    assert rolled["outcome"] == "rolled_back"
    ecs_rows = committed(sandbox.dir / "logs" / "ecs.keys")
    assert ecs_rows
    with sandbox.source() as src:
        found = src.execute(
            "SELECT count(*) FROM payments WHERE id = ANY(%s)", (sorted(ecs_rows),)
        ).fetchone()
    assert found == (len(ecs_rows),)
    carried = rolled["carried_back"]
    assert carried["public.payments"]["inserts"] > 0 and carried["public.audit_log"]["inserts"] > 0
    if inserted is not None:  # every payment the application on ECS inserted, counted once
        assert carried["public.payments"]["inserts"] == inserted
    assert service_image(sandbox) == OLD_IMAGE
    ecs_then, onprem_then = len(keys_now(sandbox, "ecs")), len(keys_now(sandbox, "traffic"))
    with sandbox.target() as tgt:
        top = tgt.execute("SELECT max(id) FROM payments").fetchone()
    wait_for_keys(sandbox, "traffic", onprem_then + 5, timeout=30)  # the source takes writes
    assert len(keys_now(sandbox, "ecs")) == ecs_then  # the application on ECS stopped
    assert dms_status(sandbox) == "running"  # forward replication resumed, past the carried rows
    assert app_can_write(sandbox)
    assert fence_left(sandbox) == (0, 0)
    assert way_back_left(sandbox) == (0, 0, 0)
    assert standby_of(sandbox) == IDLE  # the listener back on the service, the standby idle
    stop_traffic(sandbox.dir)
    verdicts = tables_match_eventually(sandbox)
    assert set(verdicts.values()) == {"match"}, verdicts
    with sandbox.target() as tgt:  # only forward replication wrote there: on-prem rows
        newer = tgt.execute(
            "SELECT count(*) FROM payments WHERE id > %s AND memo = 'ecs'", (top[0] if top else 0,)
        ).fetchone()
    assert newer == (0,)


def test_a_rollback_after_go_live_carries_every_write_of_the_new_image_back(
    sandbox: Sandbox,
) -> None:
    journal, _ = go_live_with_both_writers(sandbox, "way-back")
    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    result = result_of(rolled)
    undone = [r["step"] for r in records(journal) if r["event"] == "undo_finished"]
    assert undone == [
        "start_fallback",
        "rollout",
        "prepare_fallback",
        "stop_replication",
        "freeze_writes",
        "baseline",
        "stage",
    ]
    assert not result["warnings"], result["warnings"]  # nothing is lost: nothing to warn of
    written = keys_now(sandbox, "ecs")[sandbox.ecs_keys_before :]
    assert_everything_came_back(sandbox, result, sum(k.startswith("+") for k in written))


def test_a_rollback_before_the_way_back_started_still_carries_the_new_images_writes(
    sandbox: Sandbox,
) -> None:
    """Killed as the post-checks start: the new image serves, writes on the target, and the
    reverse task never started. The rollback (the rollout's undo) carries everything back
    from the slot all the same."""
    ready(sandbox, ecs=True)
    journal = sandbox.journal("way-back-unstarted")
    before = len(keys_now(sandbox, "ecs"))
    proc = sandbox.cutover(journal, "--yes", MIGCTL_CUTOVER_CRASH_AFTER="post_checks:started")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wait_for_keys(sandbox, "ecs", before + 30)  # the new image writes on the target
    rolled = sandbox.cutover(journal, "rollback", "--break-lock", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    result = result_of(rolled)
    assert statuses(result)["start_fallback"] == "pending"
    undone = next(
        r for r in records(journal) if r["event"] == "undo_finished" and r["step"] == "rollout"
    )
    assert "drained" in undone["details"] and not result["warnings"], result["warnings"]
    # The old image's tasks never stopped: the listener went back to them, no task started.
    assert undone["details"]["listener_switched_back"] is True
    began = dt.datetime.fromisoformat(records(journal)[0]["ts"])
    deployments = sandbox.aws("ecs").describe_services(
        cluster=sandbox.state.outputs["ecsClusterName"],
        services=[sandbox.state.outputs["ecsServiceName"]],
    )["services"][0]["deployments"]
    assert [d["createdAt"] < began for d in deployments] == [True]
    written = keys_now(sandbox, "ecs")[before:]
    assert_everything_came_back(sandbox, result, sum(k.startswith("+") for k in written))


def test_kill_9_at_each_step_of_the_rollback_then_rerun_reaches_the_same_end(
    sandbox: Sandbox,
) -> None:
    journal, _ = go_live_with_both_writers(sandbox, "way-back-kill")
    hooks = [
        "undo:start_fallback:started",
        "undo:start_fallback",
        "undo:rollout:started",
        "undo:rollout",
        "undo:prepare_fallback",
        "undo:stop_replication",
    ]
    breaking: tuple[str, ...] = ()
    for hook in hooks:
        proc = sandbox.cutover(
            journal, "rollback", *breaking, "--yes", MIGCTL_CUTOVER_CRASH_AFTER=hook
        )
        assert proc.returncode == -signal.SIGKILL, (hook, proc.stderr)
        breaking = ("--break-lock",)
    rolled = sandbox.cutover(journal, "rollback", "--break-lock", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    result = result_of(rolled)
    carry = [
        r
        for r in records(journal)
        if r["event"] == "undo_finished" and r["step"] == "start_fallback"
    ]
    assert len(carry) == 1  # carried back once; the reruns went on from the journal
    assert_everything_came_back(sandbox, result)


def reverse_status(sandbox: Sandbox) -> tuple[int, dict[str, Any]]:
    proc = run(sandbox.env, "--output", "json", "dms", "status")
    return proc.returncode, json.loads(proc.stdout.splitlines()[-1])


def test_a_change_the_source_refuses_fails_the_reverse_task_and_the_rollback_never_hides_it(
    sandbox: Sandbox,
) -> None:
    """A row on the source holds keys the new image then writes on the target: the reverse
    apply fails on it. `dms status` says so (exit 1), the rollback refuses to call anything
    carried back (exit 5, ECS stays on the new image, the source stays fenced); once the row
    is gone and the task resumed, the rerun carries everything back."""
    journal, _ = go_live_with_both_writers(sandbox, "way-back-conflict")
    with sandbox.target() as tgt:
        top = tgt.execute("SELECT last_value FROM payments_id_seq").fetchone()
    assert top is not None
    reverse_dsn = sandbox.state.source_dsn("migctl_reverse")  # the one role the fence lets in
    with psycopg.connect(reverse_dsn, autocommit=True) as src:
        src.execute(
            "INSERT INTO payments (id, account_id, payment_ref, amount, currency, status, memo, "
            "metadata, signature) SELECT g, p.account_id, gen_random_uuid(), p.amount, "
            "p.currency, 'pending', 'conflict', p.metadata, p.signature "
            "FROM generate_series(%s::bigint + 1, %s::bigint + 400) g, "
            "(SELECT * FROM payments ORDER BY id LIMIT 1) p",
            (top[0], top[0]),
        )
    deadline = time.monotonic() + 60
    code, status = reverse_status(sandbox)
    while code == 0:
        assert time.monotonic() < deadline, "the reverse task never failed"
        time.sleep(1)
        code, status = reverse_status(sandbox)
    assert status["healthy"] is False and status["reverse"]["task"]["status"] == "failed"
    assert "public.payments" in " ".join(status["reverse"]["problems"])

    failed = sandbox.cutover(journal, "rollback", "--yes")
    assert failed.returncode == 5, failed.stderr
    result = result_of(failed)
    report = checked_report(sandbox, journal, result)
    assert report["outcome"] == "rollback_failed" and report["manual_steps"]
    assert next(s for s in report["steps"] if s["name"] == "start_fallback")["undo_error"]
    assert result["outcome"] == "rollback_failed"
    assert statuses(result)["start_fallback"] == "undo_failed"
    assert statuses(result)["rollout"] == "done"  # nothing after it was undone
    assert "reverse DMS task" in result["reason"] and "failed" in result["reason"]
    assert service_image(sandbox) == NEW_IMAGE and not app_can_write(sandbox)

    with psycopg.connect(reverse_dsn, autocommit=True) as src:
        src.execute("DELETE FROM payments WHERE memo = 'conflict'")
    resumed = run(
        sandbox.env,
        "dms",
        "start",
        "--type",
        "resume",
        "--task",
        "payments-sandbox-reverse",
        "--yes",
    )
    assert resumed.returncode == 0, resumed.stderr
    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert_everything_came_back(sandbox, result_of(rolled))


def test_finalize_closes_the_way_back_and_leaves_nothing_behind(sandbox: Sandbox) -> None:
    """Last in this module: it leaves the source fenced for good, as finalize means to."""
    journal, result = go_live_with_both_writers(sandbox, "finalize")
    cutover_id = result["cutover_id"]
    with sandbox.target() as tgt:  # the way back holds a slot while it is open
        assert tgt.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (1,)
    done = sandbox.cutover(journal, "finalize", "--yes")
    assert done.returncode == 0, done.stderr
    assert result_of(done)["outcome"] == "finalized"
    assert way_back_left(sandbox) == (0, 0, 0)
    assert not app_can_write(sandbox) and fence_left(sandbox)[0] > 0  # read-only for good
    with psycopg.connect(sandbox.state.source_dsn("migctl_reverse")) as reverse_role:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # closed to it again too
            reverse_role.execute("INSERT INTO audit_log (actor, action) VALUES ('late', 'x')")
    reverse = json.loads(
        run(
            sandbox.env, "--output", "json", "dms", "status", "--task", "payments-sandbox-reverse"
        ).stdout.splitlines()[-1]
    )
    assert reverse["task"]["status"] == "stopped"
    again = sandbox.cutover(journal, "finalize", "--yes")
    assert again.returncode == 2 and "finalized" in again.stderr
    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 2 and f"cutover {cutover_id}" in rolled.stderr
    assert service_image(sandbox) == NEW_IMAGE
