"""`migctl outputs`, `refresh` and `destroy` against the stand-in pulumi CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pulumi_standin import (
    SECRET_OUTPUT,
    StandIn,
    TtyInput,
    files_containing,
    standin_fixture,  # noqa: F401 - a fixture
    write_config,
)

from migctl.config import load_settings
from migctl.errors import ConfigError
from migctl.infra.outputs import resolve
from tests.cli_support import Cli

MASKED = {
    "albArnSuffix": "app/payments/0123",
    "clusterName": "payments-test",
    SECRET_OUTPUT: "[secret]",
}


@pytest.fixture
def deployed(cli: Cli, standin: StandIn, tmp_path: Path) -> StandIn:
    write_config(tmp_path)
    result = cli("up", "--yes")
    assert result.code == 0, result.stderr
    (tmp_path / ".migctl" / "outputs-test.json").unlink()
    return standin


def test_outputs_prints_masked_outputs_and_caches_them(
    cli, deployed: StandIn, tmp_path: Path
) -> None:
    result = cli("--output", "json", "outputs")

    assert result.code == 0, result.stderr
    cache = tmp_path / ".migctl" / "outputs-test.json"
    assert result.json() == {
        "stack": "test",
        "outputs": MASKED,
        "secret_outputs": [SECRET_OUTPUT],
        "cache": str(cache),
    }
    assert json.loads(cache.read_text()) == MASKED
    assert deployed.commands()[-2:] == [
        "stack output",
        "stack output",
    ]  # masked, then --show-secrets
    assert files_containing(tmp_path, deployed.secret_output) == []

    settings = load_settings(cwd=tmp_path)
    assert (
        resolve(settings, None, "clusterName", what="ECS cluster", flag="--cluster")
        == "payments-test"
    )
    with pytest.raises(ConfigError):  # a masked secret is never handed out as a target
        resolve(settings, None, SECRET_OUTPUT, what="secret", flag="--secret-arn")


def test_outputs_show_secrets_prints_them_but_the_cache_stays_masked(
    cli, deployed: StandIn, tmp_path: Path
) -> None:
    result = cli("outputs", "--show-secrets")

    assert result.code == 0, result.stderr
    assert deployed.secret_output in result.stdout.replace("\n", "").replace("│", "").replace(
        " ", ""
    )
    assert json.loads((tmp_path / ".migctl" / "outputs-test.json").read_text()) == MASKED
    assert files_containing(tmp_path, deployed.secret_output) == []


def test_refresh_reports_refresh_events(cli: Cli, deployed: StandIn) -> None:
    result = cli("--output", "json", "refresh")

    assert result.code == 0, result.stderr
    lines = result.json_lines()
    refreshed = {ln["name"] for ln in lines if ln["event"] == "resource" and ln["state"] == "done"}
    assert refreshed == {"net", "net-vpc", "db-cluster", "app-service"}
    assert {ln["op"] for ln in lines if ln["event"] == "resource"} == {"refresh"}
    assert lines[-1] == {**lines[-1], "event": "result", "operation": "refresh", "ok": True}
    assert deployed.call("refresh")[:3] == ["refresh", "--skip-preview", "--yes"]


def test_destroy_refuses_production_without_allow_prod(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path, environment="prod")

    result = cli("destroy", "--yes")

    assert result.code == 2
    assert "refusing to destroy the production environment 'prod'" in result.stderr
    assert "--allow-prod" in result.stderr
    assert standin.argvs() == []


def test_destroy_without_yes_or_terminal_exits_2(
    cli: Cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path)

    result = cli("destroy")

    assert result.code == 2 and "--yes" in result.stderr
    assert standin.argvs() == []


def test_destroy_needs_the_stack_name_typed(
    cli, deployed: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / ".migctl" / "outputs-test.json"
    assert cli("outputs").code == 0 and cache.exists()

    monkeypatch.setattr(sys, "stdin", TtyInput("tset"))
    wrong = cli("destroy")

    assert wrong.code == 1
    assert "Type the stack name (test) to destroy it" in wrong.stderr
    assert "Destroy preview" in wrong.stderr and "delete 5" in wrong.stderr
    destroys = [a for a in deployed.argvs() if a[0] == "destroy"]
    assert [a[1] for a in destroys] == ["--preview-only"]
    assert cache.exists()

    monkeypatch.setattr(sys, "stdin", TtyInput("test"))
    right = cli("destroy")

    assert right.code == 0, right.stderr
    destroys = [a for a in deployed.argvs() if a[0] == "destroy"]
    assert [a[1] for a in destroys] == ["--preview-only", "--preview-only", "--skip-preview"]
    assert "done: destroy of stack test: delete 5" in right.stderr
    assert deployed.stack_state()["resources"] == []
    assert not cache.exists()  # stale targets are worse than none
