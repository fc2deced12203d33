"""Benchmark: the write freeze of a whole `migctl cutover` in the sandbox, by size and task start.

For each ``--rows N``: ``migctl sandbox up --rows N --traffic`` in a folder of its own (every
server on 127.0.0.1; ``sandbox down`` at the end stops them by PID), the DMS task started and
watched to CDC, then for each ``--task-start S``, in turns (``--turns``):

- the sandbox's ``task_start_seconds`` set to S (the controller reads it at every tick);
- ``migctl --output json cutover --yes`` with the demo's settings (0.5 s polls, a 3 s bake)
  while the traffic writer runs: ``write_freeze_seconds`` from its result, and from the
  journal each step inside the window (the rollout counted up to ``live_at``, when the new
  image serves) and the baseline's and the stage's own times, outside it (with the
  standby switch, the default, the new tasks start in the stage);
- ``migctl cutover rollback --yes``: the way back carries the new image's writes to the
  source and resumes replication, so the next turn starts where this one did.

Prints one line per cutover and a summary (medians per size and task start, and the ratios
the issue asks for); ``--json PATH`` writes every figure. Not a test: run it by hand.

    python bench/cutover_freeze/run.py --rows 100000 --rows 1000000 --rows 5000000 \\
        --task-start 2 --task-start 60
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MIGCTL = [sys.executable, "-m", "migctl"]
WINDOW_STEPS = (
    "freeze_writes",
    "marker",
    "validate",
    "stop_replication",
    "sync_sequences",
    "prove_freeze",
    "prepare_fallback",
)
RUN_ENV = {
    "MIGCTL_CUTOVER_INTERVAL_SECONDS": "0.5",
    "MIGCTL_ECS_BAKE_SECONDS": "3",
    "MIGCTL_ECS_INTERVAL_SECONDS": "0.5",
}


def migctl(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*MIGCTL, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise SystemExit(
            f"migctl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return proc


def sandbox_env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGCTL_", "AWS_"))}
    for line in (directory / "sandbox.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.removeprefix("export ").strip()] = value.strip().strip("'\"")
    return {**env, **RUN_ENV}


def set_task_start(directory: Path, seconds: float) -> None:
    path = directory / "sandbox.json"
    state = json.loads(path.read_text())
    state["task_start_seconds"] = seconds
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def _at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def breakdown(journal: Path, cutover_id: str) -> dict[str, float]:
    """Seconds per step inside the window, the rollout up to live_at; the baseline outside."""
    records = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    mine = [r for r in records if r.get("cutover_id") == cutover_id]
    finished = {
        r["step"]: r
        for r in mine
        if r.get("event") == "step_finished" and r.get("status") == "done"
    }
    started = {r["step"]: r for r in mine if r.get("event") == "step_started"}
    out = {name: float(finished[name]["duration_seconds"]) for name in WINDOW_STEPS}
    live = next(
        r["details"]["progress"]["live_at"]
        for r in mine
        if r.get("step") == "rollout" and "live_at" in (r.get("details") or {}).get("progress", {})
    )
    out["rollout_to_live"] = (_at(live) - _at(started["rollout"]["ts"])).total_seconds()
    out["baseline_outside"] = float(finished["baseline"]["duration_seconds"])
    out["stage_outside"] = float(finished["stage"]["duration_seconds"])
    out["baseline_full_compare"] = float(finished["baseline"]["details"].get("baseline_seconds", 0))
    validate = finished["validate"]["details"]
    out["validate_rechecked_keys"] = float(validate.get("rechecked", 0))
    return out


def one_cutover(env: dict[str, str], journal: Path) -> dict[str, Any]:
    run_env = {**env, "MIGCTL_CUTOVER_JOURNAL": str(journal)}
    proc = migctl(run_env, "--output", "json", "cutover", "--yes", check=False)
    result = json.loads(proc.stdout.splitlines()[-1])
    if proc.returncode != 0:
        raise SystemExit(f"cutover ended {result.get('outcome')}: {result.get('reason')}")
    figures = {"write_freeze_seconds": float(result["write_freeze_seconds"])}
    figures.update(breakdown(journal, result["cutover_id"]))
    back = migctl(run_env, "--output", "json", "cutover", "rollback", "--yes", check=False)
    if back.returncode != 4:
        raise SystemExit(f"rollback exited {back.returncode}:\n{back.stderr[-3000:]}")
    return figures


def one_size(rows: int, task_starts: list[float], turns: int, root: Path) -> list[dict[str, Any]]:
    directory = root / f"sandbox-{rows}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MIGCTL_", "AWS_"))}
    began = time.monotonic()
    migctl(clean, "sandbox", "up", "--dir", str(directory), "--rows", str(rows), "--traffic")
    up_seconds = time.monotonic() - began
    env = sandbox_env(directory)
    out = []
    try:
        began = time.monotonic()
        migctl(env, "dms", "start", "--yes", "--interval", "1")
        migctl(env, "dms", "watch", "--until", "full-load", "--timeout", "3600", "--interval", "2")
        load_seconds = time.monotonic() - began
        print(f"{rows:>10,} payments: sandbox up {up_seconds:.1f}s, full load {load_seconds:.1f}s")
        time.sleep(5)  # the writer runs, CDC carries it
        for turn in range(turns):
            for seconds in task_starts:
                set_task_start(directory, seconds)
                journal = directory / "journals" / f"t{turn}-s{seconds:g}.jsonl"
                figures = one_cutover(env, journal)
                row = {"rows": rows, "task_start_seconds": seconds, "turn": turn, **figures}
                out.append(row)
                inside = ", ".join(
                    f"{k} {figures[k]:.2f}" for k in (*WINDOW_STEPS, "rollout_to_live")
                )
                print(
                    f"  task start {seconds:>4g}s turn {turn}: freeze "
                    f"{figures['write_freeze_seconds']:.2f}s ({inside}); baseline outside "
                    f"{figures['baseline_outside']:.2f}s, stage outside "
                    f"{figures['stage_outside']:.2f}s, rechecked "
                    f"{figures['validate_rechecked_keys']:.0f} keys",
                    flush=True,
                )
                time.sleep(3)
    finally:
        migctl(clean, "sandbox", "down", "--dir", str(directory), check=False)
    return out


def summary(rows: list[dict[str, Any]]) -> None:
    def median(size: int, start: float, key: str) -> float:
        return statistics.median(
            r[key] for r in rows if r["rows"] == size and r["task_start_seconds"] == start
        )

    sizes = sorted({r["rows"] for r in rows})
    starts = sorted({r["task_start_seconds"] for r in rows})
    print(
        "\nmedians: rows, task start, write freeze, validate in the window, baseline and "
        "stage outside"
    )
    for size in sizes:
        for start in starts:
            print(
                f"  {size:>10,} {start:>5g}s  freeze {median(size, start, 'write_freeze_seconds'):6.2f}s"
                f"  validate {median(size, start, 'validate'):5.2f}s"
                f"  baseline {median(size, start, 'baseline_outside'):6.2f}s"
                f"  stage {median(size, start, 'stage_outside'):6.2f}s"
            )
    low, high = sizes[0], sizes[-1]
    for start in starts:
        ratio = median(high, start, "write_freeze_seconds") / median(
            low, start, "write_freeze_seconds"
        )
        print(f"freeze at {high:,} / at {low:,} (task start {start:g}s): {ratio:.2f}")
    if len(starts) > 1:
        for size in sizes:
            ratio = median(size, starts[-1], "write_freeze_seconds") / median(
                size, starts[0], "write_freeze_seconds"
            )
            print(
                f"freeze with {starts[-1]:g}s / {starts[0]:g}s task start ({size:,}): {ratio:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--task-start", type=float, action="append")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = args.rows or [100_000]
    starts = args.task_start or [2.0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="migctl-bench-freeze-") as tmp:
        for size in sizes:
            rows.extend(one_size(size, starts, args.turns, Path(tmp)))
    summary(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
