"""`migctl cutover` from the command line: the plan, refusals with one line and exit 2, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import Cli

CONFIG = """
[project]
environment = "unit"

[source]
dsn = "host=127.0.0.1 port=1 dbname=payments user=migctl"

[target]
dsn = "host=127.0.0.1 port=2 dbname=payments user=migctl"

[cutover]
app_roles = ["payments_app"]
image = "repo/payments:v2"
journal = "journals/cutover.jsonl"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "migctl.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("MIGCTL_CONFIG", str(path))
    return path


def test_plan_lists_the_steps_and_where_the_journal_stands(cli: Cli, config: Path) -> None:
    result = cli("--output", "json", "cutover", "plan")
    assert result.code == 0, result.stderr
    plan = result.json()
    assert [s["name"] for s in plan["steps"]] == [
        "preflight",
        "stage",
        "baseline",
        "freeze_writes",
        "marker",
        "validate",
        "stop_replication",
        "sync_sequences",
        "prove_freeze",
        "prepare_fallback",
        "rollout",
        "post_checks",
        "start_fallback",
        "converge",
    ]
    assert [s["name"] for s in plan["steps"] if s["point_of_no_return"]] == ["rollout"]
    assert plan["phase"] == "none" and plan["lock_holder"] is None
    assert plan["journal"] == str(config.parent / "journals" / "cutover.jsonl")
    assert plan["image"] == "repo/payments:v2"


def test_plan_for_people_names_every_gate_with_details(cli: Cli, config: Path) -> None:
    result = cli("cutover", "plan", "--details")
    assert result.code == 0
    assert "[dms] max_latency_seconds" in result.stdout  # config names are not eaten as markup
    assert "no cutover yet" in result.stdout


def test_the_plan_fits_one_screen(cli: Cli, config: Path) -> None:
    """Without --details: one line a step, every step named; the table within 80 columns and
    the whole plan within 24 lines (only the journal's path may be longer)."""
    from migctl.cutover.steps import STEPS

    result = cli("cutover", "plan")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert len(table) == len(STEPS) + 4 and max(map(len, table)) <= 80, result.stdout
    assert len(lines) <= 24, result.stdout
    for step in STEPS:
        assert step.title in result.stdout
    assert "[dms] max_latency_seconds" not in result.stdout and "--details" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cutover", "--until", "drain", "--yes"), "no such step"),
        (("cutover", "--resume", "--yes"), "no cutover to resume"),
        (("cutover", "rollback", "--yes"), "no cutover to roll back"),
        (("cutover", "--yes", "plan"), "options of 'migctl cutover'"),
        (("cutover", "--yes", "--image", "payments app:2.0"), "is not an image reference"),
        (("cutover", "--yes", "--image", ":"), "is not an image reference"),
        (("cutover", "--yes", "--image", "Payments-App:v1!!"), "is not an image reference"),
    ],
)
def test_refusals_are_one_line_and_exit_2_before_anything_changes(
    cli: Cli, config: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli(*args)
    assert result.code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (config.parent / "journals" / "cutover.jsonl").exists()


def test_without_a_terminal_and_without_yes_it_refuses_at_the_start(cli: Cli, config: Path) -> None:
    result = cli("cutover")
    assert result.code == 2
    assert "no terminal" in result.stderr
    assert not (config.parent / "journals" / "cutover.jsonl").exists()


def test_a_held_lock_is_exit_3_naming_the_holder(cli: Cli, config: Path) -> None:
    lock = config.parent / "journals" / "cutover.jsonl.lock"
    lock.parent.mkdir()
    lock.write_text(
        json.dumps(
            {
                "host": "bastion-1",
                "pid": 4242,
                "user": "oncall",
                "command": "migctl cutover",
                "started_at": "2025-01-01T01:00:00+00:00",
            }
        )
    )
    result = cli("cutover", "--yes")
    assert result.code == 3
    assert "oncall@bastion-1 pid 4242" in result.stderr and "another host" in result.stderr
    planned = cli("--output", "json", "cutover", "plan").json()
    assert planned["lock_holder"]["user"] == "oncall"


def test_status_without_a_cutover_and_with_an_unreadable_journal(cli: Cli, config: Path) -> None:
    empty = cli("--output", "json", "cutover", "status")
    assert empty.code == 0, empty.stderr
    assert empty.json()["latest"] is None and empty.json()["history"] == []
    assert "No cutover yet" in cli("cutover", "status").stdout
    journal = config.parent / "journals" / "cutover.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(b"\0" * 512)
    for args in (("cutover", "status"), ("cutover", "rollback", "--yes"), ("cutover", "plan")):
        result = cli(*args)
        assert result.code == 3, (args, result.stderr)
        assert "unreadable at line 1" in result.stderr and "Traceback" not in result.stderr


def test_status_shows_the_latest_cutover_and_what_to_run_next(cli: Cli, config: Path) -> None:
    journal = config.parent / "journals" / "cutover.jsonl"
    journal.parent.mkdir()
    records = [
        {"event": "cutover_started", "cutover_id": "c1", "image": "app:1"},
        {"event": "run_started", "cutover_id": "c1", "mode": "run"},
        {"event": "run_finished", "cutover_id": "c1", "outcome": "completed"},
        {"event": "cutover_started", "cutover_id": "c2", "image": "app:2"},
        {"event": "run_started", "cutover_id": "c2", "mode": "run"},
        {"event": "step_started", "cutover_id": "c2", "step": "preflight"},
        {"event": "step_finished", "cutover_id": "c2", "step": "preflight", "status": "done"},
        {"event": "run_finished", "cutover_id": "c2", "outcome": "interrupted"},
    ]
    stamped = [{"ts": "2026-01-01T00:00:00+00:00", **r} for r in records]
    journal.write_text("".join(json.dumps(r) + "\n" for r in stamped))
    status = cli("--output", "json", "cutover", "status").json()
    assert status["latest"]["cutover_id"] == "c2"
    assert status["latest"]["phase"] == "in_progress"
    assert status["latest"]["next_commands"] == [
        "migctl cutover --resume",
        "migctl cutover rollback --cutover c2",
    ]
    assert [(c["cutover_id"], c["last_outcome"]) for c in status["history"]] == [
        ("c1", "completed"),
        ("c2", "interrupted"),
    ]
    people = cli("cutover", "status").stdout
    assert "c2" in people and "migctl cutover --resume" in people
    refused = cli("cutover", "rollback", "--cutover", "c9", "--yes")
    assert refused.code == 2 and "no cutover c9" in refused.stderr
