"""docs/sandbox.md's by-hand walk-through, run as a newcomer would: each command, in order,
exits as the page says. The page is the test's input: a row changed there is tested here.

Only the size changes (a few thousand payments, not 100,000) and the polls are faster;
every command is the page's own, run from a fresh folder with `sandbox.env` sourced.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"
ROW = re.compile(r"^\| `(?P<command>[^`]+)` \| *(?P<exit>\d*) *\|")
FAST = {
    "MIGCTL_CUTOVER_INTERVAL_SECONDS": "0.3",
    "MIGCTL_ECS_BAKE_SECONDS": "1",
    "MIGCTL_ECS_INTERVAL_SECONDS": "0.5",
}


def walkthrough() -> list[tuple[str, int | None]]:
    steps = []
    for line in DOC.read_text().splitlines():
        found = ROW.match(line)
        if found:
            code = found["exit"]
            steps.append((found["command"], int(code) if code else None))
    return steps


def test_the_page_has_the_walk_through() -> None:
    commands = [c for c, _ in walkthrough()]
    assert commands[0].startswith("migctl sandbox up") and commands[-1] == "migctl sandbox down"
    assert "migctl cutover --yes" in commands and "migctl cutover rollback --yes" in commands
    assert any(c.startswith("set -a; . ") for c in commands)  # sourcing sandbox.env


def test_each_command_of_the_walk_through_exits_as_the_page_says() -> None:
    # Not under pytest's basetemp: it is mode 0700, which locks out the clusters' user.
    folder = Path(tempfile.mkdtemp(prefix="migctl-walk-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MIGCTL_"))}
    env.update(FAST)
    seen: list[str] = []
    try:
        for command, code in walkthrough():
            if command.startswith("set -a; . "):  # the shell's `source`, done here
                sourced = folder / command.split(". ", 1)[1].split(";")[0]
                for line in sourced.read_text().splitlines():
                    key, _, value = line.partition("=")
                    env[key] = value
                continue
            args = shlex.split(command)
            if args[0] == "sleep":  # the page's own pause, as a person would take it
                time.sleep(float(args[1]))
                continue
            assert args[0] == "migctl", command
            if args[1:3] == ["sandbox", "up"]:
                args[args.index("--rows") + 1] = "3000"
            proc = subprocess.run(
                [sys.executable, "-m", "migctl", *args[1:]],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            seen.append(f"{command} -> {proc.returncode}")
            assert proc.returncode == code, (seen, proc.stdout[-2000:], proc.stderr[-2000:])
    finally:
        subprocess.run(
            [sys.executable, "-m", "migctl", "sandbox", "down", "--dir", ".migctl/sandbox"],
            cwd=folder,
            env={k: v for k, v in env.items() if not k.startswith("MIGCTL_")},
            capture_output=True,
            timeout=120,
            check=False,
        )
        left = (folder / ".migctl" / "sandbox").exists()
        shutil.rmtree(folder, ignore_errors=True)  # passed or failed: nothing left in /tmp
    assert not left, "sandbox down left its folder behind"
