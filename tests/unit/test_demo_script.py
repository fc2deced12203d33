"""scripts/demo.sh (`make demo`) writes no escape codes into a log."""

from __future__ import annotations

import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


def test_demo_steps_are_plain_lines_when_stdout_is_not_a_terminal() -> None:
    """The script's own helpers (everything before its first command), then one step."""
    helpers = DEMO.read_text().split('\n"$MIGCTL" sandbox down', 1)[0]
    out = subprocess.run(
        ["bash", "-c", f"{helpers}\nstep 'sandbox up: 100 rows'"],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
        cwd=DEMO.parent,
    )
    assert out.stdout == "\n== sandbox up: 100 rows\n"
    assert "\x1b" not in out.stdout + out.stderr
