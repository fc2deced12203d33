"""Start and stop throwaway PostgreSQL clusters from the system binaries, on loopback.

Used by the sandbox (``migctl sandbox``) and by the test harness. Clusters
listen on 127.0.0.1 only, on a free port, with trust auth for loopback (no
password exists to leak). PostgreSQL refuses to run as root, so as root the
binaries run through ``runuser -u postgres`` on a directory owned by
postgres (docs/field-notes.md, "PostgreSQL in tests").
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from migctl.errors import OperationalError, ToolMissingError

INSTALL_HINT = (
    "install the PostgreSQL server binaries: 'apt-get install postgresql' "
    "(Debian/Ubuntu) or set MIGCTL_PG_BIN to the folder holding initdb and pg_ctl"
)


def find_pg_bin(environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding initdb and pg_ctl: $MIGCTL_PG_BIN, PATH, or the newest Debian install."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("MIGCTL_PG_BIN"):
        candidates.append(Path(env["MIGCTL_PG_BIN"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates.extend(Path(v) for v in versions)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise ToolMissingError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found", hint=INSTALL_HINT
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """One cluster: ``init()`` once, then ``start()``/``stop()``; ``pid`` is the postmaster's."""

    datadir: Path
    port: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    initdb_args: tuple[str, ...] = ()
    bin_dir: Path | None = None
    pid: int | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} sslmode=disable"

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    @property
    def _bin(self) -> Path:
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
        return self.bin_dir

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise ToolMissingError(f"cannot run {exc.filename}", hint=INSTALL_HINT) from None

    def init(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir, "postgres", "postgres")
            # runuser needs to reach the folder; parents may be private temp dirs.
            for parent in self.datadir.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o011)
        result = self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            *self.initdb_args,
        )
        if result.returncode != 0:
            raise OperationalError(
                f"initdb failed in {self.datadir}: {result.stderr.strip()[-500:]}"
            )

    def start(self, *, timeout: float = 60) -> None:
        if not self.port:
            self.port = free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.datadir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **self.settings,
        }
        opts = " ".join(f"-c {k}={_quote(v)}" for k, v in options.items())
        log = self.datadir / "server.log"
        result = self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(log),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else result.stderr
            raise OperationalError(f"PostgreSQL did not start on port {self.port}: {tail.strip()}")
        self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])

    def stop(self, *, timeout: float = 30) -> None:
        """Stop the postmaster we started, by its PID: SIGINT (fast shutdown), then SIGKILL."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _quote(value: str) -> str:
    if value.replace("_", "").replace(".", "").replace("/", "").replace("-", "").isalnum():
        return value
    return "'" + value.replace("'", "''") + "'"
