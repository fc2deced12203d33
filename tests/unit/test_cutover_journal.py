"""The cutover journal (local file and S3 object) and what the runbook replays from it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from migctl.config import CutoverSettings, ProjectSettings, Settings
from migctl.cutover import journal as journal_module
from migctl.cutover.journal import LocalJournal, S3Journal
from migctl.cutover.lock import LocalLock, S3Lock
from migctl.cutover.state import replay
from migctl.cutover.steps import STEP_NAMES
from migctl.cutover.store import open_store, split_s3_uri
from migctl.errors import ConfigError, OperationalError


def test_local_appends_are_synced_lines_and_read_back_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    journal = LocalJournal(tmp_path / "state" / "cutover-prod.jsonl")
    journal.append({"event": "a", "at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)})
    journal.append({"event": "b", "n": 2})
    assert journal.read() == [
        {"event": "a", "at": "2025-01-01T00:00:00+00:00"},
        {"event": "b", "n": 2},
    ]
    assert len(synced) == 3  # each record, and the folder once when the file was created
    assert journal.path.read_text().count("\n") == 2


def test_a_torn_last_record_is_skipped_and_never_glued_to_the_next(tmp_path: Path) -> None:
    journal = LocalJournal(tmp_path / "j.jsonl")
    journal.append({"event": "a"})
    with journal.path.open("ab") as fh:
        fh.write(b'{"event": "tor')  # a kill -9 in the middle of a write
    assert journal.read() == [{"event": "a"}]
    journal.append({"event": "b"})
    assert journal.read() == [{"event": "a"}, {"event": "b"}]


def test_a_missing_journal_is_empty(tmp_path: Path) -> None:
    assert LocalJournal(tmp_path / "nothing.jsonl").read() == []


@pytest.mark.usefixtures("aws")
def test_s3_journal_appends_with_conditional_puts() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cutovers")
    journal = S3Journal(s3, "cutovers", "prod/cutover-prod.jsonl")
    assert journal.read() == []
    journal.append({"event": "a"})
    journal.append({"event": "b"})
    assert journal.read() == [{"event": "a"}, {"event": "b"}]


@pytest.mark.usefixtures("aws")
def test_s3_journal_never_loses_a_record_to_a_concurrent_writer() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cutovers")
    mine = S3Journal(s3, "cutovers", "j.jsonl")
    theirs = S3Journal(s3, "cutovers", "j.jsonl")
    mine.append({"event": "first"})
    real_get = mine._get
    raced: list[bool] = []

    def get_then_race() -> tuple[bytes, str | None]:
        got = real_get()
        if not raced:  # the other writer slips in between our read and our put
            raced.append(True)
            theirs.append({"event": "theirs"})
        return got

    mine._get = get_then_race  # type: ignore[method-assign]
    mine.append({"event": "mine"})
    assert [r["event"] for r in mine.read()] == ["first", "theirs", "mine"]


def test_s3_uri_needs_a_bucket_and_a_folder_gets_the_default_name() -> None:
    assert split_s3_uri("s3://b/teams/", "cutover-prod.jsonl") == ("b", "teams/cutover-prod.jsonl")
    assert split_s3_uri("s3://b/x.jsonl", "n") == ("b", "x.jsonl")
    with pytest.raises(ConfigError):
        split_s3_uri("s3:///key", "n")


class Clients:
    def client(self, service: str) -> Any:
        return boto3.client(service)


@pytest.mark.usefixtures("aws")
def test_the_store_is_the_journal_with_its_lock_beside_it(tmp_path: Path) -> None:
    base = Settings(
        project=ProjectSettings(environment="prod"), config_path=tmp_path / "migctl.toml"
    )
    journal, lock = open_store(base, Clients())
    assert isinstance(journal, LocalJournal) and isinstance(lock, LocalLock)
    assert journal.location == str(tmp_path / ".migctl" / "cutover-prod.jsonl")
    assert lock.location == journal.location + ".lock"
    relative = Settings(
        cutover=CutoverSettings(journal="journals/c.jsonl"), config_path=tmp_path / "migctl.toml"
    )
    assert open_store(relative, Clients())[0].location == str(tmp_path / "journals" / "c.jsonl")
    remote = Settings(
        project=ProjectSettings(environment="prod"),
        cutover=CutoverSettings(journal="s3://team/cut/"),
    )
    journal, lock = open_store(remote, Clients())
    assert isinstance(journal, S3Journal) and isinstance(lock, S3Lock)
    assert (journal.location, lock.location) == (
        "s3://team/cut/cutover-prod.jsonl",
        "s3://team/cut/cutover-prod.jsonl.lock",
    )


def record(event: str, cutover: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"ts": "2025-01-01T00:00:00+00:00", "cutover_id": cutover, "event": event, **fields}


def test_replay_follows_only_the_latest_cutover() -> None:
    records = [
        record("cutover_started"),
        record("step_started", step="preflight"),
        record("step_finished", step="preflight", status="done"),
        record("run_finished", outcome="completed"),
        record("cutover_started", cutover="c2", image="app:2"),
        record("run_started", cutover="c2", mode="run"),
        record("step_finished", step="freeze_writes", status="done"),  # c1's, late: ignored
    ]
    state = replay(records, STEP_NAMES)
    assert (state.cutover_id, state.image, state.phase) == ("c2", "app:2", "in_progress")
    assert {s.status for s in state.steps} == {"pending"}
    assert state.first_unfinished() == 0


def test_the_write_freeze_ends_when_the_target_takes_writes_or_the_source_is_unfrozen() -> None:
    frozen = record(
        "step_finished",
        step="freeze_writes",
        status="done",
        changed=True,
        details={"frozen_at": "2025-01-01T00:00:00+00:00"},
    )
    base = [record("cutover_started"), record("step_started", step="freeze_writes"), frozen]
    now = dt.datetime(2025, 1, 1, 0, 10, tzinfo=dt.UTC)
    assert replay(base, STEP_NAMES).write_freeze(now) == (600.0, True)
    rolled_out = {
        **record("step_finished", step="rollout", status="done"),
        "ts": "2025-01-01T00:01:30+00:00",
    }
    undone = {
        **record("undo_finished", step="freeze_writes", status="undone"),
        "ts": "2025-01-01T00:05:00+00:00",
    }
    assert replay([*base, rolled_out, undone], STEP_NAMES).write_freeze(now) == (90.0, False)
    assert replay([*base, undone], STEP_NAMES).write_freeze(now) == (300.0, False)
    # The deployment completed at 00:00:40 and the bake ran 50 s more with customers paying.
    live = record(
        "note", step="rollout", details={"progress": {"live_at": "2025-01-01T00:00:40+00:00"}}
    )
    assert replay([*base, live, rolled_out], STEP_NAMES).write_freeze(now) == (40.0, False)
    failed = {**rolled_out, "status": "failed"}  # the bake failed: frozen until the undo
    assert replay([*base, live, failed, undone], STEP_NAMES).write_freeze(now) == (300.0, False)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"\0" * 4096, "NUL bytes"),
        (b"#!/bin/sh\nrm -rf /\n", "not a JSON record"),
        (b'{"event": "cutover_started", "cutover_id": "c1"}\n[1, 2]\n', "not a journal record"),
        (b'{"cutover_id": "c1"}\n', "not a journal record"),
    ],
)
def test_a_journal_that_is_not_one_is_an_error_never_no_cutover_yet(
    tmp_path: Path, content: bytes, what: str
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(content)
    with pytest.raises(OperationalError, match=f"unreadable at line .*{what}") as caught:
        LocalJournal(path).read()
    assert caught.value.exit_code == 3
