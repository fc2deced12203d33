"""The application on ECS, played by the sandbox controller: a writer thread in its process.

While the ECS service runs tasks of an image built for Aurora (its tag says
``aurora``, as the cutover's image ``payments-app:2.0.0-aurora`` does) and
the sandbox's traffic is on, the controller runs this writer against the
database the running task definition names (its ``DB_SECRET``), as the
application role. The older image stands for the application before the
move, whose writes the on-premises writer (``migctl sandbox traffic``) makes.
It writes what ``traffic.py`` writes, rides out fences and ended sessions
the same way, and records its committed payments in ``logs/ecs.keys``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migctl.sandbox import traffic

ECS_KEYS = "ecs.keys"
TRAFFIC_KEYS = "traffic.keys"


@dataclass
class EcsWriter:
    dsn: str
    keys: Path
    interval: float = 0.05
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandbox-ecs-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        import psycopg

        def connect() -> Any:
            return psycopg.connect(self.dsn, application_name="migctl-sandbox-ecs-app")

        self.keys.parent.mkdir(parents=True, exist_ok=True)
        with self.keys.open("a") as keys:
            traffic.run(
                connect,
                interval=self.interval,
                max_seconds=6 * 3600,
                stop=self._stop.is_set,
                name="ecs",
                keys=keys,
            )
