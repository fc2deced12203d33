"""What the ``cli`` fixture hands a test: run migctl in-process and read what it printed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


class Cli(Protocol):
    """``cli("alarms", "--prefix", "x")``: the exit code and what went to stdout and stderr."""

    def __call__(self, *args: str) -> CliResult: ...
