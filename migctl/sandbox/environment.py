"""The sandbox's lifecycle: up, status, down (also after a crash), traffic and faults.

Every process the sandbox starts is recorded, with its PID, in
``<dir>/sandbox.json`` the moment it starts, so ``down`` stops exactly those
processes, and can clean up after an ``up`` or a sandbox that crashed.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migctl.aws import USER_AGENT
from migctl.errors import OperationalError, UsageError
from migctl.sandbox.motoserver import wait_for_port
from migctl.sandbox.postgres import PgCluster, find_pg_bin, free_port
from migctl.sandbox.writer import TRAFFIC_KEYS

if TYPE_CHECKING:
    import boto3

STATE_FILE = "sandbox.json"
DBNAME = "payments"
APP_ROLE = "payments_app"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",  # moto accepts any value; nothing real is protected
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
Progress = Callable[[str], None]


@dataclass
class ProcessRecord:
    name: str
    pid: int
    marker: str  # a string in /proc/PID/cmdline: a reused PID is never killed
    port: int | None = None


@dataclass
class SandboxState:
    dir: str
    rows: int
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    source_port: int = 0
    target_port: int = 0
    aws_url: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    ecs_writer: bool = True  # with traffic on, the controller plays the application on ECS
    task_start_seconds: float = 2.0  # the emulated ECS's time to start a deployment's tasks

    @property
    def path(self) -> Path:
        return Path(self.dir)

    def source_dsn(self, user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.source_port} dbname={DBNAME} user={user} sslmode=disable"

    def target_dsn(self, user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.target_port} dbname={DBNAME} user={user} sslmode=disable"

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.path / STATE_FILE)

    @classmethod
    def load(cls, directory: Path) -> SandboxState | None:
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        procs = {k: ProcessRecord(**v) for k, v in data.pop("processes", {}).items()}
        return cls(processes=procs, **data)


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int
    running: bool
    port: int | None


@dataclass(frozen=True)
class SandboxStatus:
    dir: str
    exists: bool
    processes: tuple[ProcessStatus, ...] = ()
    aws_url: str = ""
    config_path: str = ""
    env_path: str = ""
    source: str = ""
    target: str = ""

    @property
    def healthy(self) -> bool:
        """Every process it started runs, the traffic writer included (once started, until
        ``traffic stop``): a writer that died is a rehearsal without its load."""
        return self.exists and bool(self.processes) and all(p.running for p in self.processes)


@dataclass(frozen=True, kw_only=True)
class DownReport:
    dir: str
    stopped: tuple[str, ...]
    already_gone: tuple[str, ...]
    removed: bool
    exists: bool = True  # False: there was no such folder, nothing to stop


def is_alive(record: ProcessRecord) -> bool:
    try:
        cmdline = (
            Path(f"/proc/{record.pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
        )
        stat = Path(f"/proc/{record.pid}/stat").read_text()
    except OSError:
        return False
    return record.marker in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_process(record: ProcessRecord, *, sig: int = signal.SIGTERM, timeout: float = 20) -> bool:
    """Stop one recorded process; True when it was running."""
    if not is_alive(record):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_alive(record):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)
        time.sleep(0.05)
    if is_alive(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
    return True


def status(directory: Path) -> SandboxStatus:
    state = SandboxState.load(directory)
    if state is None:
        return SandboxStatus(dir=str(directory), exists=False)
    procs = tuple(
        ProcessStatus(r.name, r.pid, is_alive(r), r.port) for r in state.processes.values()
    )
    return SandboxStatus(
        dir=str(directory),
        exists=True,
        processes=procs,
        aws_url=state.aws_url,
        config_path=str(directory / "migctl.toml"),
        env_path=str(directory / "sandbox.env"),
        source=f"postgresql://postgres@127.0.0.1:{state.source_port}/{DBNAME}",
        target=f"postgresql://postgres@127.0.0.1:{state.target_port}/{DBNAME}",
    )


def down(directory: Path, *, keep: bool = False) -> DownReport:
    """Stop exactly the recorded processes (PostgreSQL last), then remove the folder unless ``keep``."""
    if not directory.exists():
        return DownReport(
            dir=str(directory), stopped=(), already_gone=(), removed=False, exists=False
        )
    state = SandboxState.load(directory)
    stopped: list[str] = []
    gone: list[str] = []
    if state is not None:
        order = sorted(state.processes.values(), key=lambda r: r.name.endswith("postgres"))
        for record in order:
            # SIGINT is PostgreSQL's fast shutdown; the others take SIGTERM.
            sig = signal.SIGINT if record.name.endswith("postgres") else signal.SIGTERM
            (stopped if stop_process(record, sig=sig) else gone).append(record.name)
    removed = False
    if not keep and directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed = True
    return DownReport(
        dir=str(directory), stopped=tuple(stopped), already_gone=tuple(gone), removed=removed
    )


@dataclass(frozen=True)
class TrafficStarted:
    pid: int
    writing: bool  # a payment was committed on the source within the first seconds
    note: str | None  # why not, when it is not writing yet


def start_traffic(
    directory: Path, *, interval: float = 0.05, ecs: bool = True, settle: float = 3.0
) -> TrafficStarted:
    """Start the writer; then watch it for up to ``settle`` seconds: a writer that exits at
    once is an error (OperationalError, with its log's last line), one whose writes are all
    refused (a frozen source) runs on, and the result says so."""
    keys = directory / "logs" / TRAFFIC_KEYS
    before = keys.stat().st_size if keys.exists() else 0
    record, proc = _spawn_traffic(directory, interval=interval, ecs=ecs)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            state = _require(directory)  # it does not run: it is not the sandbox's writer
            state.processes.pop("traffic", None)
            state.save()
            last = _last_line(directory / "logs" / "traffic.log")
            raise OperationalError(
                f"the traffic writer (pid {record.pid}) exited at once (code {proc.returncode}): "
                f"{last or 'no output'}",
                hint=f"see {directory / 'logs' / 'traffic.log'}",
            )
        if keys.exists() and keys.stat().st_size > before:
            return TrafficStarted(record.pid, writing=True, note=None)
        time.sleep(0.1)
    return TrafficStarted(
        record.pid,
        writing=False,
        note=f"no payment committed in {settle:g}s: the source refuses its writes (frozen by "
        "a cutover?); it keeps trying",
    )


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _spawn_traffic(
    directory: Path, *, interval: float, ecs: bool
) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    state = _require(directory)
    existing = state.processes.get("traffic")
    if existing and is_alive(existing):
        raise UsageError(f"traffic already runs (pid {existing.pid})")
    log = open(directory / "logs" / "traffic.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "migctl.sandbox.traffic",
            state.source_dsn(APP_ROLE),
            "--interval",
            str(interval),
            "--keys",
            str(directory / "logs" / TRAFFIC_KEYS),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    record = ProcessRecord("traffic", proc.pid, "migctl.sandbox.traffic")
    state.processes["traffic"] = record
    state.ecs_writer = ecs
    state.save()
    return record, proc


def stop_traffic(directory: Path) -> bool:
    state = _require(directory)
    record = state.processes.pop("traffic", None)
    state.save()
    return bool(record and stop_process(record))


def _require(directory: Path) -> SandboxState:
    state = SandboxState.load(directory)
    if state is None:
        raise UsageError(f"no sandbox in {directory}", hint="run 'migctl sandbox up' first")
    return state


def aws_session(state: SandboxState) -> Any:
    import boto3

    session = boto3.Session(
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_ENV["AWS_REGION"],
    )
    return _EndpointSession(session, state.aws_url, USER_AGENT)


class _EndpointSession:
    """A boto3 session whose clients all go to the sandbox's endpoint."""

    def __init__(self, session: boto3.Session, url: str, agent: str) -> None:
        self._session, self._url, self._agent = session, url, agent

    def client(self, service: str) -> Any:
        from botocore.config import Config

        return self._session.client(  # type: ignore[call-overload]  # a name known at run time
            service, endpoint_url=self._url, config=Config(user_agent_extra=self._agent)
        )


def set_alarm(directory: Path, name: str, state_value: str, reason: str) -> None:
    """Set one alarm's state; UsageError (exit 2) naming the alarms there are when it is none."""
    cw = aws_session(_require(directory)).client("cloudwatch")
    found = cw.describe_alarms(AlarmNames=[name])
    if not found["MetricAlarms"] and not found["CompositeAlarms"]:
        known = sorted(
            alarm["AlarmName"]
            for page in cw.get_paginator("describe_alarms").paginate()
            for alarm in page["MetricAlarms"]
        )
        raise UsageError(
            f"no alarm named {name!r} in the sandbox", hint=f"its alarms: {', '.join(known)}"
        )
    cw.set_alarm_state(AlarmName=name, StateValue=state_value, StateReason=reason)


def clear_faults(directory: Path) -> list[str]:
    state = _require(directory)
    cw = aws_session(state).client("cloudwatch")
    names = [str(n) for n in state.outputs.get("alarmNames", [])]
    for name in names:
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="sandbox: faults cleared")
    return names


def start_postgres(
    state: SandboxState, name: str, settings: dict[str, str], progress: Progress
) -> PgCluster:
    cluster = PgCluster(state.path / name, settings=settings, bin_dir=find_pg_bin())
    progress(f"starting the {name} PostgreSQL cluster")
    cluster.init()
    cluster.port = free_port()
    cluster.start()
    assert cluster.pid is not None
    state.processes[f"{name}-postgres"] = ProcessRecord(
        f"{name}-postgres", cluster.pid, str(cluster.datadir), cluster.port
    )
    state.save()
    return cluster


def start_aws(state: SandboxState, progress: Progress) -> None:
    port = free_port()
    progress(f"starting the local AWS endpoint on 127.0.0.1:{port}")
    log = open(state.path / "logs" / "aws.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "migctl.sandbox.server",
            "--port",
            str(port),
            "--source-dsn",
            state.source_dsn(),
            "--target-dsn",
            state.target_dsn(),
            "--dir",
            state.dir,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **AWS_ENV},
    )
    log.close()
    state.processes["aws"] = ProcessRecord("aws", proc.pid, "migctl.sandbox.server", port)
    state.aws_url = f"http://127.0.0.1:{port}"
    state.save()
    wait_for_port(port, timeout=60, alive=lambda: proc.poll() is None)


def ensure_free(directory: Path) -> None:
    """Refuse to start over a running sandbox; clean up after a crashed one."""
    current = status(directory)
    if current.exists and any(p.running for p in current.processes):
        raise UsageError(
            f"a sandbox already runs in {directory}", hint="run 'migctl sandbox down' first"
        )
    if directory.exists():
        down(directory)
