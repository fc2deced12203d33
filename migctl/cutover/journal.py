"""The cutover journal: append-only JSON lines, in a local file or in one S3 object.

Local: each record is one ``write`` on a file opened with ``O_APPEND``, then
``fsync`` (and the folder is synced when the file is created), so a record
that was journaled survives a crash or a ``kill -9``. A record torn by a
crash in the middle of its write (the start of a JSON object, cut) is
skipped when read; the next append starts on a fresh line. Anything else
that is not a record (NUL bytes, garbage, JSON that is not a record) makes
the journal unreadable: an error, never "no cutover yet".

S3 has no append. The journal is one object, rewritten on each append with a
conditional put: ``If-Match`` the ETag read just before (``If-None-Match: *``
for the first record). A writer that lost the race re-reads and tries again,
so no record is ever overwritten, even without the lock. It costs a GET and a
PUT of the whole object per record; a cutover writes a few hundred at most.

The lock lives beside the journal (``<journal>.lock``), see ``lock.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from migctl.errors import OperationalError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    pass

log = logging.getLogger(__name__)
Record = dict[str, Any]
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_S3_ATTEMPTS = 8


class Journal(Protocol):
    location: str

    def read(self) -> list[Record]: ...

    def append(self, record: Mapping[str, Any]) -> None: ...


def encode(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, default=_default, separators=(",", ":")) + "\n").encode()


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def decode(data: bytes, where: str) -> list[Record]:
    """Every record; a torn line (a crash mid-write) is skipped with a warning.

    Raises OperationalError (exit 3) on anything else that is not a record.
    """
    records: list[Record] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        if b"\0" in line:
            raise _unreadable(where, number, "NUL bytes (a disk or copy fault?)")
        try:
            record = json.loads(line)
        except ValueError:
            if not line.startswith(b'{"'):
                raise _unreadable(where, number, "not a JSON record") from None
            log.warning("%s:%d: skipping a torn journal line", where, number)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("event"), str):
            raise _unreadable(where, number, "JSON that is not a journal record")
        records.append(record)
    return records


def _unreadable(where: str, number: int, what: str) -> OperationalError:
    return OperationalError(
        f"the cutover journal {where} is unreadable at line {number}: {what}; migctl will not "
        "guess where a cutover stands",
        hint="restore the journal from its backup (S3 versioning), or point [cutover] journal "
        "at the right file",
    )


class LocalJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def read(self) -> list[Record]:
        try:
            return decode(self.path.read_bytes(), self.location)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OperationalError(
                f"cannot read the journal {self.location}: {exc.strerror}"
            ) from None

    def append(self, record: Mapping[str, Any]) -> None:
        data = encode(record)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            if not created and not _ends_with_newline(self.path):
                data = b"\n" + data  # after a torn write: never glue a record to it
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise OperationalError(
                f"cannot write the journal {self.location}: {exc.strerror}"
            ) from None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Journal:
    def __init__(self, s3: S3Client, bucket: str, key: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.location = f"s3://{bucket}/{key}"

    def _get(self) -> tuple[bytes, str | None]:
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if aws_error_code(exc) in ("NoSuchKey", "404"):
                return b"", None
            raise
        return answer["Body"].read(), answer["ETag"]

    def read(self) -> list[Record]:
        return decode(self._get()[0], self.location)

    def append(self, record: Mapping[str, Any]) -> None:
        line = encode(record)
        for _ in range(_S3_ATTEMPTS):
            body, etag = self._get()
            try:
                if etag:  # only if nobody wrote since we read
                    self.s3.put_object(
                        Bucket=self.bucket,
                        Key=self.key,
                        Body=body + line,
                        ContentType="application/x-ndjson",
                        IfMatch=etag,
                    )
                else:  # only if there is still no journal
                    self.s3.put_object(
                        Bucket=self.bucket,
                        Key=self.key,
                        Body=body + line,
                        ContentType="application/x-ndjson",
                        IfNoneMatch="*",
                    )
                return
            except Exception as exc:
                if aws_error_code(exc) not in _CONFLICT_CODES:
                    raise
                log.info("%s changed while appending; reading it again", self.location)
        raise OperationalError(
            f"cannot append to the journal {self.location}: "
            f"it changed under every one of {_S3_ATTEMPTS} attempts (another writer?)"
        )
