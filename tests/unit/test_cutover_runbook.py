"""The runbook's orchestration with stand-in steps: order, journal, resume, rollback, exit codes.

The steps are named like the real ones but only record their calls (and fail
on demand); the journal and the lock are the real local ones in tmp_path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from migctl.config import (
    AlarmSettings,
    CutoverSettings,
    EcsSettings,
    ProjectSettings,
    Settings,
)
from migctl.cutover import runbook, session
from migctl.cutover.context import CutoverContext
from migctl.cutover.journal import LocalJournal
from migctl.cutover.lock import LocalLock, LockHeld, me
from migctl.cutover.model import Step, StepMemo
from migctl.cutover.notify import Notifier
from migctl.cutover.overview import cutover_overview
from migctl.cutover.result import RunOptions
from migctl.cutover.rollback import rollback_cutover
from migctl.cutover.session import cutover_history, cutover_status
from migctl.cutover.steps import STEP_NAMES
from migctl.db import Database
from migctl.errors import CheckFailed, OperationalError, UsageError

UNDOABLE = ("freeze_writes", "stop_replication", "rollout")


class World:
    """Stand-in steps: each call is recorded; ``fail[(step, phase)]`` raises there."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[tuple[str, str], BaseException] = {}
        self.memos: dict[str, list[StepMemo]] = {}
        self.progress: dict[str, dict[str, Any]] = {}  # step -> progress its action notes

    def fn(self, step: str, phase: str) -> Any:
        def call(ctx: CutoverContext, memo: StepMemo) -> dict[str, Any]:
            self.calls.append(f"{step}:{phase}")
            self.memos.setdefault(f"{step}:{phase}", []).append(memo)
            if phase == "action" and step in self.progress:
                ctx.report("progress", {"progress": self.progress[step]})
            failure = self.fail.get((step, phase))
            if failure is not None:
                raise failure
            if phase == "prepare":
                return {"prepared": len(self.calls)}
            if step == "freeze_writes" and phase == "action":
                return {"frozen_at": dt.datetime.now(dt.UTC).isoformat()}
            return {f"{phase}_ran": True}

        return call

    def steps(self) -> tuple[Step, ...]:
        return tuple(
            Step(
                name=name,
                title=name.replace("_", " ").title(),
                gate_text="gate",
                action_text="action",
                check_text="check",
                undo_text="undo" if name in UNDOABLE else None,
                prepare=self.fn(name, "prepare"),
                gate=self.fn(name, "gate"),
                action=self.fn(name, "action"),
                check=self.fn(name, "check"),
                undo=self.fn(name, "undo") if name in UNDOABLE else None,
                manual_undo=(lambda _c, _m, n=name: f"undo {n} by hand")
                if name in UNDOABLE
                else None,
                point_of_no_return=name == "rollout",
                undo_failure_halts=name == "rollout",
            )
            for name in STEP_NAMES
        )

    def of(self, phase: str) -> list[str]:
        return [c.split(":")[0] for c in self.calls if c.endswith(f":{phase}")]


class Killed(BaseException):
    """Stands in for SIGKILL: unwinds without running any ``except Exception``."""


class Notices:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    def publish(self, TopicArn: str, Subject: str, Message: str) -> None:
        self.subjects.append(Subject)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        project=ProjectSettings(environment="unit"),
        cutover=CutoverSettings(app_roles=("app",), image="repo/app:v2"),
        ecs=EcsSettings(cluster="c", service="s"),
        alarms=AlarmSettings(names=("gate",)),
        config_path=tmp_path / "migctl.toml",
    )


class NoAws:
    def client(self, service: str) -> Any:
        raise OperationalError(f"no AWS in this test ({service})")


def context(settings: Settings) -> CutoverContext:
    return CutoverContext(settings, NoAws(), Database("host=nowhere"), Database("host=nowhere"))


def journal_of(tmp_path: Path) -> LocalJournal:
    return LocalJournal(tmp_path / "journal.jsonl")


def lock_of(tmp_path: Path) -> LocalLock:
    return LocalLock(tmp_path / "journal.jsonl.lock")


def run(tmp_path: Path, settings: Settings, world: World, **options: Any) -> runbook.CutoverResult:
    kwargs = {k: options.pop(k) for k in ("confirm", "interactive", "notifier") if k in options}
    return runbook.run_cutover(
        context(settings),
        journal_of(tmp_path),
        lock_of(tmp_path),
        RunOptions(**options),
        steps=world.steps(),
        **kwargs,
    )


def rollback(
    tmp_path: Path, settings: Settings, world: World, **kwargs: Any
) -> runbook.CutoverResult:
    return rollback_cutover(
        context(settings), journal_of(tmp_path), lock_of(tmp_path), steps=world.steps(), **kwargs
    )


def events(tmp_path: Path) -> list[tuple[str, str | None]]:
    return [(r["event"], r.get("step")) for r in journal_of(tmp_path).read()]


def test_a_run_does_every_step_in_order_and_journals_start_and_end(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    result = run(tmp_path, settings, world)
    assert (result.outcome, result.exit_code) == ("completed", 0)
    assert world.calls[:4] == [
        "preflight:prepare",
        "preflight:gate",
        "preflight:action",
        "preflight:check",
    ]
    assert world.of("action") == list(STEP_NAMES)
    steps = [e for e in events(tmp_path) if e[0].startswith("step_")]
    assert steps == [
        (kind, name) for name in STEP_NAMES for kind in ("step_started", "step_finished")
    ]
    assert events(tmp_path)[:2] == [("cutover_started", None), ("run_started", None)]
    assert events(tmp_path)[-1] == ("run_finished", None)
    assert result.write_freeze_seconds is not None and not result.write_freeze_open
    assert not lock_of(tmp_path).path.exists()


@pytest.mark.parametrize(
    ("error", "code"),
    [(CheckFailed("DMS task is not in CDC"), 1), (OperationalError("AWS unreachable"), 3)],
)
def test_a_gate_not_met_before_any_change_stops_without_rollback(
    tmp_path: Path, settings: Settings, world: World, error: Exception, code: int
) -> None:
    world.fail[("preflight", "action")] = error
    result = run(tmp_path, settings, world)
    assert (result.outcome, result.exit_code) == ("stopped", code)
    assert world.of("undo") == []
    assert "preflight failed" in (result.reason or "")
    assert cutover_status(journal_of(tmp_path)).phase == "closed"
    assert run(tmp_path, settings, World()).outcome == "completed"  # a new cutover may start


def test_a_failure_undoes_what_was_done_in_reverse_and_exits_4(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    world.fail[("sync_sequences", "check")] = CheckFailed("a sequence is behind")
    result = run(tmp_path, settings, world)
    assert (result.outcome, result.exit_code) == ("rolled_back", 4)
    assert world.of("undo") == ["stop_replication", "freeze_writes"]
    assert "rollout" not in world.of("action")
    status = {s.name: s.status for s in result.steps}
    assert status["freeze_writes"] == status["stop_replication"] == "undone"
    assert status["sync_sequences"] == "failed"
    # The freeze window ends when the source is writable again.
    assert result.write_freeze_seconds is not None and not result.write_freeze_open


def test_a_failed_rollout_is_undone_first(tmp_path: Path, settings: Settings, world: World) -> None:
    world.fail[("rollout", "action")] = CheckFailed("deployment FAILED")
    result = run(tmp_path, settings, world)
    assert result.exit_code == 4
    assert world.of("undo") == ["rollout", "stop_replication", "freeze_writes"]


def test_an_undo_that_fails_is_reported_and_a_second_rollback_finishes(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    world.fail[("validate", "action")] = CheckFailed("public.payments differs")
    world.fail[("freeze_writes", "undo")] = OperationalError("source unreachable")
    result = run(tmp_path, settings, world)
    assert (result.outcome, result.exit_code) == ("rollback_failed", 5)
    assert "undo freeze_writes by hand" in result.manual_steps
    assert any("migctl cutover rollback" in s for s in result.manual_steps)
    assert result.state  # each system's state, as far as it could be read
    assert result.write_freeze_open
    with pytest.raises(UsageError, match="rolled back"):
        run(tmp_path, settings, world, resume=True)

    del world.fail[("freeze_writes", "undo")]
    world.calls.clear()
    again = rollback(tmp_path, settings, world)
    assert (again.outcome, again.exit_code) == ("rolled_back", 4)
    assert world.of("undo") == ["freeze_writes"]


def test_when_ecs_cannot_be_put_back_nothing_before_it_is_undone(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    world.fail[("post_checks", "action")] = CheckFailed("2 of 3 targets healthy")
    world.fail[("rollout", "undo")] = OperationalError("update_service refused")
    result = run(tmp_path, settings, world)
    assert result.exit_code == 5
    assert world.of("undo") == ["rollout"]  # the source stays frozen, replication stopped
    assert result.manual_steps[:3] == (
        "undo rollout by hand",
        "undo stop_replication by hand",
        "undo freeze_writes by hand",
    )
    status = {s.name: s.status for s in result.steps}
    assert status["stop_replication"] == status["freeze_writes"] == "done"


def test_until_pauses_and_resume_goes_on_from_the_next_step(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    paused = run(tmp_path, settings, world, until="validate")
    assert (paused.outcome, paused.exit_code) == ("paused", 0)
    assert paused.write_freeze_open and paused.next_steps
    with pytest.raises(UsageError, match="in progress"):
        run(tmp_path, settings, world)
    world.calls.clear()
    done = run(tmp_path, settings, world, resume=True)
    assert done.outcome == "completed"
    assert world.of("action") == [
        "stop_replication",
        "sync_sequences",
        "prove_freeze",
        "prepare_fallback",
        "rollout",
        "post_checks",
        "start_fallback",
        "converge",
    ]
    with pytest.raises(UsageError, match="no cutover to resume"):
        run(tmp_path, settings, world, resume=True)


def test_until_an_unknown_step_is_a_usage_error(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    with pytest.raises(UsageError, match="no such step"):
        run(tmp_path, settings, world, until="drain")


@pytest.mark.parametrize("hook", ["marker", "marker:action", "marker:started"])
def test_a_kill_then_resume_reruns_only_the_unfinished_step_with_its_first_before(
    tmp_path: Path,
    settings: Settings,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    hook: str,
) -> None:
    def kill(_pid: int, _sig: int) -> None:
        raise Killed

    monkeypatch.setattr(session.os, "kill", kill)
    monkeypatch.setenv(session.CRASH_ENV, hook)
    with pytest.raises(Killed):
        run(tmp_path, settings, world)
    monkeypatch.delenv(session.CRASH_ENV)
    journaled_end = hook == "marker"
    assert (events(tmp_path)[-1] == ("step_finished", "marker")) is journaled_end
    world.calls.clear()
    result = run(tmp_path, settings, world, resume=True)
    assert result.outcome == "completed"
    first = world.of("action")[0]
    assert first == ("validate" if journaled_end else "marker")
    assert "marker:prepare" not in world.calls  # the first attempt's "before" is kept
    marker = {s.name: s for s in result.steps}["marker"]
    assert marker.attempts == (1 if journaled_end else 2)


def test_not_confirming_the_rollout_leaves_a_resumable_cutover(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    asked: list[str] = []
    aborted = run(tmp_path, settings, world, confirm=lambda q: asked.append(q) or False)
    assert (aborted.outcome, aborted.exit_code) == ("aborted", 1)
    assert "point of no return" in asked[0] and "repo/app:v2" in asked[0]
    assert "rollout" not in world.of("action")
    assert (
        run(tmp_path, settings, world, resume=True, confirm=lambda _q: True).outcome == "completed"
    )


def test_no_terminal_to_ask_on_refuses_before_anything_is_journaled(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    with pytest.raises(UsageError, match="no terminal"):
        run(tmp_path, settings, world, confirm=lambda _q: True, interactive=False)
    assert journal_of(tmp_path).read() == []
    # Stopping before the rollout needs no answer.
    assert (
        run(
            tmp_path, settings, world, until="validate", confirm=lambda _q: True, interactive=False
        ).exit_code
        == 0
    )


def test_configuration_that_cannot_freeze_is_refused(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    none = dataclasses.replace(
        settings, cutover=CutoverSettings(freeze_strategy="none", image="x:1")
    )
    with pytest.raises(UsageError, match="does not freeze writes itself") as refused:
        run(tmp_path, none, world)
    assert "--yes" in (refused.value.hint or "")
    assert run(tmp_path, none, world, yes=True).outcome == "completed"
    no_image = dataclasses.replace(settings, cutover=CutoverSettings(app_roles=("app",)))
    with pytest.raises(UsageError, match="no image"):
        run(tmp_path / "third", no_image, world)


def test_a_held_lock_refuses_with_its_holder(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    lock_of(tmp_path).acquire(me("migctl cutover"))
    with pytest.raises(LockHeld, match=r"pid \d+ \(migctl cutover\).*running") as caught:
        run(tmp_path, settings, world)
    assert caught.value.exit_code == 3
    assert journal_of(tmp_path).read() == []
    with pytest.raises(OperationalError, match="still running"):
        run(tmp_path, settings, world, break_lock=True)


def test_a_stale_lock_is_broken_only_on_request_and_the_break_is_journaled(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    run(tmp_path, settings, world, until="marker")
    dead = dataclasses.replace(me("migctl cutover"), pid=2**22 + 7)
    lock_of(tmp_path).path.write_text(json.dumps(dataclasses.asdict(dead)))
    with pytest.raises(LockHeld, match="stale"):
        run(tmp_path, settings, world, resume=True)
    assert run(tmp_path, settings, world, resume=True, break_lock=True).outcome == "completed"
    broken = [r for r in journal_of(tmp_path).read() if r["event"] == "lock_broken"]
    assert broken[0]["holder"]["pid"] == dead.pid


def test_rollback_of_a_completed_cutover_and_nothing_left_to_roll_back(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    with pytest.raises(UsageError, match="no cutover to roll back"):
        rollback(tmp_path, settings, world)
    run(tmp_path, settings, world)
    world.calls.clear()
    result = rollback(tmp_path, settings, world)
    assert (result.outcome, result.exit_code) == ("rolled_back", 4)
    assert world.of("undo") == ["rollout", "stop_replication", "freeze_writes"]
    with pytest.raises(UsageError, match="ended rolled_back"):
        rollback(tmp_path, settings, world)
    assert run(tmp_path, settings, world).outcome == "completed"  # a new cutover may start
    with pytest.raises(UsageError, match="not confirmed"):
        rollback(tmp_path, settings, world, confirm=lambda _q: False)


def test_notices_at_start_success_failure_and_rollback(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    sns = Notices()
    run(tmp_path, settings, world, notifier=Notifier(sns, "arn:aws:sns:us-east-1:1:topic"))
    assert [s.rsplit(": ", 1)[1] for s in sns.subjects] == ["started", "completed"]
    sns.subjects.clear()
    world.fail[("marker", "action")] = CheckFailed("the marker never arrived")
    notifier = Notifier(sns, "arn:aws:sns:us-east-1:1:topic")
    run(tmp_path, settings, world, new=True, notifier=notifier)
    assert [s.rsplit(": ", 1)[1] for s in sns.subjects] == ["started", "FAILED", "rolled back"]


def test_a_notice_that_cannot_be_sent_is_journaled_and_changes_nothing(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    class Refusing:
        def publish(self, **_kwargs: Any) -> None:
            raise OperationalError("SNS said no")

    result = run(tmp_path, settings, world, notifier=Notifier(Refusing(), "arn:aws:sns:x"))
    assert result.exit_code == 0
    notes = [r["message"] for r in journal_of(tmp_path).read() if r["event"] == "note"]
    assert any("SNS notice not sent" in n for n in notes)


def test_until_a_step_already_done_pauses_and_until_the_last_step_completes(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    run(tmp_path, settings, world, until="validate")
    world.calls.clear()
    again = run(tmp_path, settings, world, resume=True, until="marker")
    assert (again.outcome, again.exit_code) == ("paused", 0)
    assert world.of("action") == []
    done = run(tmp_path, settings, world, resume=True, until="converge")
    assert done.outcome == "completed"


def test_an_image_given_on_resume_is_remembered_for_the_next_resume(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    no_image = dataclasses.replace(settings, cutover=CutoverSettings(app_roles=("app",)))
    run(tmp_path, no_image, world, until="validate")
    run(tmp_path, no_image, world, resume=True, until="sync_sequences", image="repo/app:v3")
    assert cutover_status(journal_of(tmp_path)).image == "repo/app:v3"
    assert run(tmp_path, no_image, world, resume=True).outcome == "completed"


def test_a_completed_cutover_is_not_lost_by_a_second_command(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    first = run(tmp_path, settings, world)
    assert first.outcome == "completed" and first.cutover_id
    world.calls.clear()
    with pytest.raises(UsageError, match=f"cutover {first.cutover_id} completed") as refused:
        run(tmp_path, settings, world)
    assert refused.value.exit_code == 2
    assert "migctl cutover rollback" in (refused.value.hint or "")
    assert "--new" in (refused.value.hint or "")
    assert world.calls == []  # refused before any step
    assert cutover_status(journal_of(tmp_path)).cutover_id == first.cutover_id

    second = run(tmp_path, settings, world, new=True)
    assert second.outcome == "completed" and second.cutover_id != first.cutover_id
    with pytest.raises(UsageError, match=f"{second.cutover_id} came after") as later:
        rollback(tmp_path, settings, world, cutover_id=first.cutover_id)
    assert f"--cutover {second.cutover_id}" in (later.value.hint or "")
    with pytest.raises(UsageError, match="no cutover nosuch"):
        rollback(tmp_path, settings, world, cutover_id="nosuch")

    world.calls.clear()
    assert rollback(tmp_path, settings, world).outcome == "rolled_back"  # the latest: the second
    assert rollback(tmp_path, settings, world, cutover_id=first.cutover_id).exit_code == 4
    assert world.of("undo") == ["rollout", "stop_replication", "freeze_writes"] * 2
    history = cutover_history(journal_of(tmp_path))
    assert [(c.cutover_id, c.phase) for c in history] == [
        (first.cutover_id, "closed"),
        (second.cutover_id, "closed"),
    ]


def test_status_lists_the_latest_cutover_and_the_history(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    assert cutover_overview(journal_of(tmp_path), lock_of(tmp_path)).latest is None
    run(tmp_path, settings, world)
    world.fail[("validate", "action")] = CheckFailed("3 tables differ")
    failed = run(tmp_path, settings, world, new=True)
    world.fail.clear()
    paused = run(tmp_path, settings, world, new=True, until="marker")
    overview = cutover_overview(journal_of(tmp_path), lock_of(tmp_path))
    assert [c.last_outcome for c in overview.history] == ["completed", "rolled_back", "paused"]
    assert overview.latest is not None and overview.latest.cutover_id == paused.cutover_id
    assert overview.latest.write_freeze_open
    assert overview.latest.steps["marker"] == "done" and overview.latest.steps["validate"] == (
        "pending"
    )
    assert overview.latest.next_commands == (
        "migctl cutover --resume",
        f"migctl cutover rollback --cutover {paused.cutover_id}",
    )
    assert overview.history[1].cutover_id == failed.cutover_id
    assert overview.history[1].next_commands == ()


def test_ctrl_c_in_a_step_journals_it_interrupted_and_resume_reruns_it(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    world.fail[("validate", "action")] = KeyboardInterrupt()
    world.progress["validate"] = {"tables_done": 3}
    stopped = run(tmp_path, settings, world)
    assert (stopped.outcome, stopped.exit_code) == ("interrupted", 130)
    assert {s.name: s.status for s in stopped.steps}["validate"] == "interrupted"
    assert stopped.write_freeze_open
    assert stopped.next_steps == (
        "continue: migctl cutover --resume",
        "or undo what was done: migctl cutover rollback",
    )
    assert events(tmp_path)[-2:] == [("step_finished", "validate"), ("run_finished", None)]
    world.fail.clear()
    world.calls.clear()
    assert run(tmp_path, settings, world, resume=True).outcome == "completed"
    assert world.of("action")[0] == "validate"
    progress = world.memos["validate:action"][-1].progress  # what the first attempt noted
    assert progress["tables_done"] == 3 and progress["interrupted_at"]


def test_ctrl_c_in_a_rollback_leaves_it_to_finish_with_a_second_rollback(
    tmp_path: Path, settings: Settings, world: World
) -> None:
    run(tmp_path, settings, world, until="validate")
    world.fail[("freeze_writes", "undo")] = KeyboardInterrupt()
    stopped = rollback(tmp_path, settings, world)
    assert (stopped.outcome, stopped.exit_code) == ("interrupted", 130)
    assert {s.name: s.status for s in stopped.steps}["freeze_writes"] == "undo_failed"
    assert stopped.next_steps == ("finish the rollback: migctl cutover rollback",)
    world.fail.clear()
    world.calls.clear()
    again = rollback(tmp_path, settings, world)
    assert (again.outcome, world.of("undo")) == ("rolled_back", ["freeze_writes"])


@pytest.mark.parametrize(
    ("undone", "expected"),
    [
        ({}, (None, None)),  # nothing went live: from the checkpoint
        ({"rollout": {"written_rows": 0, "written_unknown": False}}, (None, None)),
        ({"start_fallback": {"drained": {}, "forward_from": "0/5A"}}, ("0/5A", None)),
        ({"start_fallback": {"drained": {}}}, (None, "recorded no position")),
        ({"rollout": {"written_rows": 3}}, (None, "not on the source")),
        ({"rollout": {"written_unknown": True}}, (None, "not on the source")),
    ],
)
def test_forward_replication_resumes_only_where_it_cannot_collide(
    settings: Settings, undone: dict[str, Any], expected: tuple[str | None, str | None]
) -> None:
    from migctl.cutover.replication import resume_point

    ctx = CutoverContext(settings, NoAws(), Database("host=nowhere"), Database("host=nowhere"))
    ctx.undone = undone
    position, why = resume_point(ctx)
    assert position == expected[0]
    assert (why is None) == (expected[1] is None) and (expected[1] or "") in (why or "")
