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
from collections.abc import Iterator

import pytest
from cutover_support import (
    Sandbox,
    app_can_write,
    dms_status,
    down,
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

    rolled = sandbox.cutover(journal, "rollback", "--yes")
    assert rolled.returncode == 4, rolled.stderr
    assert service_image(sandbox) == OLD_IMAGE
    assert dms_status(sandbox) == "running"
    assert app_can_write(sandbox)


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


def validate_ok(sandbox: Sandbox) -> bool:
    return run(sandbox.env, "validate").returncode == 0
