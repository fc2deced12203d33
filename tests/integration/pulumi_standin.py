"""Fixtures for the provisioning tests: the stand-in ``pulumi`` CLI and a migctl.toml for it.

``standin`` puts ``tests/fixtures/pulumi_standin/pulumi`` behind a tiny shell
wrapper at ``<tmp>/pulumi-root/bin/pulumi`` (so it runs under this venv's
Python and works both on PATH and as ``--pulumi-root``), points HOME at a temp
dir (the default backend is ``~/.migctl/pulumi``), sets a random passphrase
and records every invocation in a JSON-lines log. Import the fixtures into a
test module with ``from pulumi_standin import standin_fixture  # noqa: F401``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "pulumi_standin" / "pulumi"
SECRET_OUTPUT = "dbSecretArn"


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


@dataclass
class StandIn:
    root: Path  # for --pulumi-root / MIGCTL_PULUMI_ROOT (holds bin/pulumi)
    home: Path
    log: Path
    scenario_path: Path
    secret_output: str  # the value of the secret stack output the stand-in serves
    monkeypatch: pytest.MonkeyPatch

    def records(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def argvs(self) -> list[list[str]]:
        return [r["argv"] for r in self.records() if "argv" in r]

    def commands(self) -> list[str]:
        """``"stack select"``, ``"config set-all"``, ``"up"``, ... in call order."""
        out = []
        for argv in self.argvs():
            words = [a for a in argv if not a.startswith("-")]
            two = words[0] in ("stack", "config", "plugin") and len(words) > 1
            sub = words[1] if two and words[1] in _SUBCOMMANDS else None
            out.append(f"{words[0]} {sub}" if sub else words[0])
        return out

    def call(self, command: str) -> list[str]:
        """The argv of the only call of ``command``."""
        found = [a for a, c in zip(self.argvs(), self.commands(), strict=True) if c == command]
        assert len(found) == 1, f"{command}: {self.commands()}"
        return found[0]

    def set_env(self, **values: str) -> None:
        for key, value in values.items():
            self.monkeypatch.setenv(f"PULUMI_STANDIN_{key.upper()}", value)

    def stack_state(self, stack: str = "test") -> dict[str, Any]:
        path = self.home / ".migctl" / "pulumi" / ".pulumi" / "stacks" / "migctl" / f"{stack}.json"
        return json.loads(path.read_text())

    def lock_file(self, stack: str = "test") -> Path:
        return (
            self.home
            / ".migctl"
            / "pulumi"
            / ".pulumi"
            / "locks"
            / "migctl"
            / stack
            / "standin.json"
        )

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        """The first log record matching ``predicate``, polling the log (for signal tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if predicate(record):
                    return record
            time.sleep(0.02)
        raise AssertionError(
            f"no matching stand-in record within {timeout}s: {self.records()[-3:]}"
        )


_SUBCOMMANDS = {
    "select",
    "init",
    "ls",
    "output",
    "history",
    "set-all",
    "set",
    "rm-all",
    "rm",
    "install",
}


@pytest.fixture(name="standin")
def standin_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    root = tmp_path / "pulumi-root"
    (root / "bin").mkdir(parents=True)
    wrapper = root / "bin" / "pulumi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    wrapper.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "standin-calls.jsonl"
    secret_output = (
        f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secrets.token_urlsafe()}"
    )
    scenario = (
        tmp_path.parent / f"{tmp_path.name}-scenario.json"
    )  # written by the test: kept out of tmp_path
    scenario.write_text(
        json.dumps(
            {
                "resources": [
                    {"type": "migctl:infra:Network", "name": "net"},
                    {"type": "aws:ec2/vpc:Vpc", "name": "net-vpc", "parent": "net"},
                    {"type": "aws:rds/cluster:Cluster", "name": "db-cluster"},
                    {"type": "aws:ecs/service:Service", "name": "app-service"},
                ],
                "outputs": {
                    "clusterName": {"value": "payments-test", "secret": False},
                    "albArnSuffix": {"value": "app/payments/0123", "secret": False},
                    SECRET_OUTPUT: {"value": secret_output, "secret": True},
                },
            }
        )
    )
    for var in list(os.environ):
        if var.startswith(("PULUMI_", "MIGCTL_")) or var in (
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        ):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", secrets.token_urlsafe())
    monkeypatch.setenv("PULUMI_STANDIN_LOG", str(log))
    monkeypatch.setenv("PULUMI_STANDIN_SCENARIO", str(scenario))
    yield StandIn(root, home, log, scenario, secret_output, monkeypatch)
    scenario.unlink(missing_ok=True)


def write_config(directory: Path, *, environment: str = "test", extra: str = "") -> Path:
    path = directory / "migctl.toml"
    path.write_text(f'[project]\nenvironment = "{environment}"\nregion = "us-east-1"\n{extra}')
    return path


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    raw = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and raw in p.read_bytes()]


class TtyInput:
    """A stdin that claims to be a terminal and answers prompts from ``lines``."""

    def __init__(self, *lines: str) -> None:
        self._lines = [f"{line}\n" for line in lines]

    def isatty(self) -> bool:
        return True

    def readline(self, *args: Any) -> str:
        return self._lines.pop(0) if self._lines else ""

    def fileno(self) -> int:
        raise OSError("not a real terminal")
