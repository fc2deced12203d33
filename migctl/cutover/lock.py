"""One cutover per environment at a time: a lock beside the journal.

Local: ``<journal>.lock`` created with ``O_CREAT | O_EXCL`` and holding who
took it (host, PID, the PID's start time, user, command, when). S3: the same
JSON put with ``If-None-Match: *``, a conditional put S3 honours since 2024
(botocore has ``IfNoneMatch`` on PutObject; moto 5.2 honours it too); it is
released with ``If-Match`` its own ETag, so a lock someone else took is never
deleted by mistake.

A lock is never broken on its own, not even a stale one: ``--break-lock``
breaks it, after the holder was shown. A holder that is a live process on
this host is not broken at all: stop that process first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from migctl.cutover.journal import fsync_dir
from migctl.errors import OperationalError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    user: str
    command: str
    started_at: str
    process_start: str | None = None  # /proc/PID/stat start time: a reused PID is not the holder

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid} ({self.command}) since {self.started_at}"

    @property
    def alive(self) -> bool | None:
        """True/False for a process on this host; None when it runs elsewhere (unknowable)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return self.process_start is None or self.process_start == process_start_time(self.pid)


def process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def me(command: str) -> LockHolder:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return LockHolder(
        host=socket.gethostname(),
        pid=os.getpid(),
        user=user,
        command=command,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        process_start=process_start_time(os.getpid()),
    )


class LockHeld(OperationalError):
    """Another cutover holds the lock (exit 3): the message says who."""

    def __init__(self, location: str, holder: LockHolder | None) -> None:
        self.holder = holder
        if holder is None:
            who = "an unreadable lock"
            state = ""
        else:
            who = holder.describe()
            alive = holder.alive
            state = {
                True: "; that process is running",
                False: "; that process is gone: the lock is stale",
                None: "; it runs on another host",
            }[alive]
        super().__init__(
            f"another cutover holds the lock {location}: {who}{state}",
            hint="wait for it, or if it is dead, rerun with --break-lock",
        )


class Lock(Protocol):
    location: str

    def acquire(self, holder: LockHolder) -> None: ...

    def release(self) -> None: ...

    def holder(self) -> LockHolder | None: ...

    def delete(self) -> None: ...


def _parse(data: bytes) -> LockHolder | None:
    try:
        raw = json.loads(data)
        return LockHolder(**raw)
    except (ValueError, TypeError):
        return None


def break_lock(lock: Lock) -> LockHolder | None:
    """Remove a lock whose holder is not a live process here; returns who held it."""
    holder = lock.holder()
    if holder is not None and holder.alive:
        raise OperationalError(
            f"not breaking the lock {lock.location}: {holder.describe()} is still running",
            hint=f"stop that process first (kill {holder.pid}), then rerun with --break-lock",
        )
    lock.delete()
    return holder


class LocalLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self._mine = False

    def acquire(self, holder: LockHolder) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            raise LockHeld(self.location, self.holder()) from None
        try:
            os.write(fd, json.dumps(asdict(holder)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)
        self._mine = True

    def holder(self) -> LockHolder | None:
        try:
            return _parse(self.path.read_bytes())
        except FileNotFoundError:
            return None

    def release(self) -> None:
        if self._mine:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._mine = False

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class S3Lock:
    def __init__(self, s3: S3Client, bucket: str, key: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.location = f"s3://{bucket}/{key}"
        self._etag: str | None = None

    def acquire(self, holder: LockHolder) -> None:
        try:
            answer = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(asdict(holder)).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except Exception as exc:
            if aws_error_code(exc) in _CONFLICT_CODES:
                raise LockHeld(self.location, self.holder()) from None
            raise
        self._etag = answer["ETag"]

    def holder(self) -> LockHolder | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except Exception as exc:
            if aws_error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return _parse(body)

    def release(self) -> None:
        if self._etag is None:
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
        except Exception as exc:
            # Someone broke our lock and took it: theirs now, not ours to delete.
            if aws_error_code(exc) not in (*_CONFLICT_CODES, "NoSuchKey", "404"):
                raise
        self._etag = None

    def delete(self) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key)
