"""Run moto's server on loopback as the local AWS endpoint of the sandbox and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migctl.errors import OperationalError, ToolMissingError
from migctl.sandbox.postgres import free_port


@dataclass
class MotoServer:
    """A moto server process on 127.0.0.1; ``url`` is what AWS_ENDPOINT_URL should hold."""

    port: int = 0
    log_path: Path | None = None
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise ToolMissingError(
                "moto server is not installed", hint="pip install 'migctl[sandbox]'"
            ) from None
        if not self.port:
            self.port = free_port()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise OperationalError(f"moto server exited with {self._proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise OperationalError(
            f"moto server did not listen on 127.0.0.1:{self.port} within {timeout}s"
        )

    def stop(self, *, timeout: float = 10) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._proc.wait(timeout)


def wait_for_port(port: int, *, timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until something accepts connections on 127.0.0.1:port, while ``alive()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise OperationalError(f"the server meant for 127.0.0.1:{port} exited during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise OperationalError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
