"""Where a cutover's journal and lock live: a local file or an S3 object, from ``[cutover] journal``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from migctl.cutover.journal import Journal, LocalJournal, S3Journal
from migctl.cutover.lock import LocalLock, Lock, S3Lock
from migctl.errors import ConfigError

if TYPE_CHECKING:
    from migctl.aws import AwsClients
    from migctl.config import Settings


def split_s3_uri(uri: str, default_name: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ConfigError(f"[cutover] journal {uri!r}: no bucket", hint="s3://BUCKET/KEY")
    if not key or key.endswith("/"):
        key += default_name
    return bucket, key


def open_store(settings: Settings, aws: AwsClients) -> tuple[Journal, Lock]:
    """The journal ``[cutover] journal`` names (default ``.migctl/cutover-<env>.jsonl``), and its lock."""
    name = f"cutover-{settings.project.environment}.jsonl"
    raw = settings.cutover.journal
    if raw and raw.startswith("s3://"):
        bucket, key = split_s3_uri(raw, name)
        s3 = aws.client("s3")
        return S3Journal(s3, bucket, key), S3Lock(s3, bucket, key + ".lock")
    if raw:
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else settings.base_dir / path
    else:
        path = settings.state_dir / name
    return LocalJournal(path), LocalLock(path.with_name(path.name + ".lock"))
