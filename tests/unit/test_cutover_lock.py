"""One cutover per environment: the local O_EXCL lock and the S3 conditional-put lock."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import boto3
import pytest

from migctl.cutover.lock import LocalLock, LockHeld, S3Lock, break_lock, me
from migctl.errors import OperationalError

DEAD_PID = 2**22 + 7  # above Linux's largest pid_max: never a live process


def test_local_lock_is_exclusive_and_says_who_holds_it(tmp_path: Path) -> None:
    first = LocalLock(tmp_path / "cutover.jsonl.lock")
    first.acquire(me("migctl cutover"))
    second = LocalLock(tmp_path / "cutover.jsonl.lock")
    with pytest.raises(LockHeld) as held:
        second.acquire(me("migctl cutover --resume"))
    message = held.value.one_line()
    assert f"pid {os.getpid()} (migctl cutover)" in message and "is running" in message
    assert held.value.exit_code == 3
    second.release()  # not its lock: nothing happens
    assert first.path.exists()
    first.release()
    assert not first.path.exists()
    second.acquire(me("migctl cutover"))


def test_a_dead_holder_is_stale_and_broken_only_on_request(tmp_path: Path) -> None:
    lock = LocalLock(tmp_path / "x.lock")
    lock.path.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(me("c"), pid=DEAD_PID))))
    with pytest.raises(LockHeld, match="stale"):
        lock.acquire(me("migctl cutover"))
    holder = break_lock(lock)
    assert holder is not None and holder.pid == DEAD_PID
    lock.acquire(me("migctl cutover"))


def test_a_live_holder_is_never_broken(tmp_path: Path) -> None:
    lock = LocalLock(tmp_path / "x.lock")
    lock.acquire(me("migctl cutover"))
    with pytest.raises(OperationalError, match="still running"):
        break_lock(lock)
    assert lock.path.exists()


def test_a_reused_pid_is_not_the_holder(tmp_path: Path) -> None:
    lock = LocalLock(tmp_path / "x.lock")
    reused = dataclasses.replace(me("c"), process_start="1")  # this PID, but started long ago
    lock.path.write_text(json.dumps(dataclasses.asdict(reused)))
    assert reused.alive is False
    assert break_lock(lock) is not None


def test_another_hosts_holder_is_unknowable_and_an_unreadable_lock_still_holds(
    tmp_path: Path,
) -> None:
    elsewhere = dataclasses.replace(me("c"), host="bastion-2")
    assert elsewhere.alive is None
    lock = LocalLock(tmp_path / "x.lock")
    lock.path.write_text(json.dumps(dataclasses.asdict(elsewhere)))
    with pytest.raises(LockHeld, match="another host"):
        lock.acquire(me("c"))
    lock.path.write_text("{half a lock")
    with pytest.raises(LockHeld, match="unreadable"):
        lock.acquire(me("c"))


@pytest.mark.usefixtures("aws")
def test_s3_lock_uses_if_none_match_and_releases_only_its_own() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cutovers")
    mine = S3Lock(s3, "cutovers", "cutover-prod.jsonl.lock")
    mine.acquire(me("migctl cutover"))
    theirs = S3Lock(s3, "cutovers", "cutover-prod.jsonl.lock")
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        theirs.acquire(me("migctl cutover"))
    # Someone broke our lock and took it: releasing ours must not delete theirs.
    theirs.delete()
    theirs.acquire(dataclasses.replace(me("migctl cutover"), host="bastion-2"))
    mine.release()
    holder = theirs.holder()
    assert holder is not None and holder.host == "bastion-2"
    theirs.release()
    assert theirs.holder() is None
