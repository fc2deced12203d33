"""`migctl cutover` end to end in one sandbox: real PostgreSQL, real logical replication, local AWS.

One sandbox (2,000 payments, a live writer) serves the module; every test
starts from "replicating in CDC, source writable, writer running" and, when
it changes that, puts it back with the cutover's own rollback. Each test has
its own journal (``MIGCTL_CUTOVER_JOURNAL``), so their cutovers do not meet.
Order: the cheap refusals first, then the failures, then the full cutover,
then the same cutover killed with SIGKILL at every step boundary.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
from cutover_support import (
    Sandbox,
    SteadyWriter,
    app_can_write,
    dms_status,
    down,
    fence_left,
    notices,
    records,
    result_of,
    run,
    sequences_at_margin,
    service_image,
    statuses,
    subscribe_notices,
    up,
    wait_for_record,
)

from migctl.cutover.steps import STEP_NAMES
from migctl.sandbox.environment import SandboxState, is_alive, start_traffic

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


def ready(sbx: Sandbox) -> None:
    """Replicating, writer running; the source must already be writable (asserted, not fixed)."""
    assert app_can_write(sbx)
    state = SandboxState.load(sbx.dir)
    assert state is not None
    writer = state.processes.get("traffic")
    if writer is None or not is_alive(writer):
        start_traffic(sbx.dir)
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
    assert list(statuses(result).values()) == ["done"] * 4 + ["pending"] * 5
    assert result["write_freeze_open"] is True and result["write_freeze_seconds"] > 0
    assert not app_can_write(sandbox)  # frozen: the fence refuses the write
    assert dms_status(sandbox) == "running"  # replication was not touched

    again = sandbox.cutover(journal, "--yes")
    assert again.returncode == 2 and "in progress" in again.stderr

    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert statuses(result_of(rolled))["freeze_writes"] == "undone"
    assert app_can_write(sandbox)


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
        "freeze_writes": "undone",
        "marker": "done",
        "validate": "failed",
        "stop_replication": "pending",
        "sync_sequences": "pending",
        "prove_freeze": "pending",
        "rollout": "pending",
        "post_checks": "pending",
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


def test_a_failed_rollout_rolls_back_and_the_source_is_writable_again(sandbox: Sandbox) -> None:
    ready(sandbox)
    image_before = service_image(sandbox)
    journal = sandbox.journal("broken")
    proc = sandbox.cutover(journal, "--yes", "--image", "payments-app:2.0.1-broken")
    assert proc.returncode == 4, proc.stderr
    result = result_of(proc)
    assert result["outcome"] == "rolled_back"
    steps = statuses(result)
    assert steps["rollout"] == "undone" and steps["post_checks"] == "pending"
    assert steps["stop_replication"] == "undone" and steps["freeze_writes"] == "undone"
    rollout = next(s for s in result["steps"] if s["name"] == "rollout")
    assert "circuit breaker" in rollout["error"]
    undone = [r["step"] for r in records(journal) if r["event"] == "undo_finished"]
    assert undone == ["rollout", "stop_replication", "freeze_writes"]  # in reverse
    assert app_can_write(sandbox)
    assert dms_status(sandbox) == "running"
    assert service_image(sandbox) == image_before


def test_full_cutover_refuses_a_second_one_then_rolls_back(sandbox: Sandbox) -> None:
    ready(sandbox)
    journal = sandbox.journal("full")
    first = sandbox.popen(journal, "--yes", MIGCTL_ECS_BAKE_SECONDS="5")
    try:
        wait_for_record(journal, "step_started", "rollout")
        second = sandbox.cutover(journal, "--yes")
        assert second.returncode == 3
        assert "holds the lock" in second.stderr and f"pid {first.pid}" in second.stderr
        breaking = sandbox.cutover(journal, "--resume", "--break-lock", "--yes")
        assert breaking.returncode == 3 and "still running" in breaking.stderr
        stdout, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    result = json.loads(stdout.splitlines()[-1])
    assert result["outcome"] == "completed"
    assert set(statuses(result).values()) == {"done"}
    assert result["write_freeze_open"] is False and 0 < result["write_freeze_seconds"] < 120

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
    rolled = sandbox.cutover(journal, "rollback", "--cutover", cutover_id, "--yes")
    assert rolled.returncode == 4, rolled.stderr
    undone = next(r for r in records(journal) if r["event"] == "undo_finished")
    assert undone["step"] == "rollout"
    assert undone["details"]["written_on_target_since_go_live"] == [
        {"schema": "public", "name": "audit_log", "inserted": 3, "updated": 0, "deleted": 0}
    ]
    assert any(
        "3 row(s) were written on the target since go-live" in w
        and "public.audit_log 3 inserted" in w
        for w in result_of(rolled)["warnings"]
    )
    with sandbox.target() as tgt:  # reconciled, as the warning asks: the next tests validate
        tgt.execute("DELETE FROM audit_log WHERE actor = 'new-image'")
    assert service_image(sandbox) == OLD_IMAGE
    assert dms_status(sandbox) == "running"
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
    assert rollout[-1]["details"]["already_deployed"] is True  # the rerun did not deploy again

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
        assert len(result["state"]) == 3  # the source, replication, the application
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
    assert rollout["details"]["already_deployed"] is True
    assert 2 <= rollout["details"]["baked_seconds"] <= 6  # the rest of it, neither 0 nor all

    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert service_image(sandbox) == OLD_IMAGE
    assert app_can_write(sandbox) and fence_left(sandbox) == (0, 0)


def test_ctrl_c_then_rollback_leaves_the_state_of_a_run_never_started(sandbox: Sandbox) -> None:
    ready(sandbox)
    image_before = service_image(sandbox)
    journal = sandbox.journal("ctrl-c-rollback")
    proc = sandbox.cutover(
        journal,
        "--yes",
        MIGCTL_CUTOVER_CRASH_AFTER="rollout:started",
        MIGCTL_CUTOVER_CRASH_SIGNAL="INT",
    )
    assert proc.returncode == 130, proc.stderr
    assert result_of(proc)["state"] == [
        "the source is frozen: the fence is up",
        "replication is stopped",
        "ECS may be mid-deployment: the rollout, or its undo, did not finish",
    ]
    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    steps = statuses(result_of(rolled))
    assert steps["rollout"] == steps["stop_replication"] == steps["freeze_writes"] == "undone"
    assert service_image(sandbox) == image_before
    assert dms_status(sandbox) == "running"
    assert app_can_write(sandbox) and fence_left(sandbox) == (0, 0)
