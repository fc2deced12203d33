"""How provisioning failures map to exit codes and messages (stand-in pulumi CLI)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pulumi_standin import StandIn, files_containing, standin_fixture, write_config  # noqa: F401

from migctl.infra.stack import aws_plugin_version
from tests.cli_support import Cli


def test_missing_cli_exits_3_naming_what_is_missing_and_how_to_install_it(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    write_config(tmp_path)

    result = cli("up", "--yes")

    assert result.code == 3
    assert "Pulumi CLI is missing" in result.stderr and "pulumi (on PATH)" in result.stderr
    for hint in ("https://get.pulumi.com", "--pulumi-root", "MIGCTL_PULUMI_ROOT", "docs/deploy.md"):
        assert hint in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_cli_under_pulumi_root_names_the_path(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path)
    nowhere = tmp_path / "no-pulumi-here"
    nowhere.mkdir()

    result = cli("outputs", "--pulumi-root", str(nowhere))

    assert result.code == 3
    assert f"{nowhere}/bin/pulumi" in result.stderr


def test_pulumi_root_from_the_environment_finds_the_cli_and_a_missing_stack_is_exit_2(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("MIGCTL_PULUMI_ROOT", str(standin.root))
    write_config(tmp_path, environment="staging")

    result = cli("outputs")

    assert result.code == 2
    assert "no stack named 'staging'" in result.stderr and "migctl up" in result.stderr
    assert standin.commands() == ["version", "stack select"]


@pytest.mark.parametrize("how", ["pulumi-cloud-409", "diy-lock"])
def test_concurrent_update_exits_3_with_a_clear_message(
    cli, standin: StandIn, tmp_path: Path, how: str
) -> None:
    write_config(tmp_path)
    assert cli("preview").code == 0  # creates the stack
    if how == "pulumi-cloud-409":
        standin.set_env(fail="up=concurrent")
    else:
        standin.lock_file().parent.mkdir(parents=True)
        standin.lock_file().write_text("{}")

    result = cli("up", "--yes")

    assert result.code == 3
    assert "another update of stack 'test' is in progress" in result.stderr
    assert "pulumi cancel --yes --stack test" in result.stderr
    assert (
        "[409] Conflict" in result.stderr
        if how == "pulumi-cloud-409"
        else "locked by 1 lock" in result.stderr
    )


def test_failed_resource_exits_3_with_the_engine_error_and_a_result_line(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    standin.set_env(fail="up=exit")
    write_config(tmp_path)

    result = cli("--output", "json", "up", "--yes")

    assert result.code == 3
    lines = result.json_lines()
    failed = [ln for ln in lines if ln["event"] == "resource" and ln["state"] == "failed"]
    assert [(f["name"], f["op"]) for f in failed] == [("db-cluster", "create")]
    diagnostics = [ln for ln in lines if ln["event"] == "diagnostic"]
    assert (
        diagnostics[0]["severity"] == "error"
        and "InvalidParameterCombination" in diagnostics[0]["message"]
    )
    assert lines[-1]["event"] == "result" and lines[-1]["ok"] is False
    assert "pulumi up failed (exit 255): creating RDS Cluster (db-cluster)" in lines[-1]["error"]
    assert "migctl: error: pulumi up failed (exit 255)" in result.stderr
    assert not (tmp_path / ".migctl" / "outputs-test.json").exists()


def test_non_zero_exit_without_events_exits_3(cli: Cli, standin: StandIn, tmp_path: Path) -> None:
    standin.set_env(fail="refresh=crash")
    write_config(tmp_path)
    assert cli("preview").code == 0

    result = cli("refresh")

    assert result.code == 3
    assert (
        "pulumi refresh failed (exit 1): stand-in crashed before the engine started"
        in result.stderr
    )


def test_no_passphrase_for_a_file_backend_is_exit_2_before_running_pulumi(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    write_config(tmp_path)

    result = cli("preview")

    assert result.code == 2
    assert (
        "PULUMI_CONFIG_PASSPHRASE" in result.stderr
        and "PULUMI_CONFIG_PASSPHRASE_FILE" in result.stderr
    )
    assert standin.argvs() == []


def test_passphrase_file_and_configured_backend_are_used(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(secrets.token_urlsafe())
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passphrase))
    write_config(tmp_path, extra='[pulumi]\nbackend = "file://./state"\n')

    result = cli("preview")

    assert result.code == 0, result.stderr
    assert (tmp_path / "state" / ".pulumi" / "stacks" / "migctl" / "test.json").is_file()
    select = next(r for r in standin.records() if r.get("argv", [""])[0] == "stack")
    assert select["env"]["PULUMI_BACKEND_URL"] == f"file://{tmp_path / 'state'}"


def test_awskms_secrets_provider_needs_no_passphrase_and_is_given_to_stack_init(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    provider = "awskms://alias/migctl-test?region=us-east-1"
    token = secrets.token_urlsafe()
    monkeypatch.setenv("MIGCTL_TEST_TOKEN", token)
    write_config(
        tmp_path,
        extra=f'[pulumi]\nsecrets_provider = "{provider}"\nsecret_keys = ["token"]\n'
        '[pulumi.config]\ntoken = { env = "MIGCTL_TEST_TOKEN" }\n',
    )

    result = cli("preview")

    assert result.code == 0, result.stderr
    assert standin.call("stack init") == ["stack", "init", "test", "--secrets-provider", provider]
    assert files_containing(tmp_path, token) == []


def test_plugin_that_cannot_be_installed_gives_the_offline_command(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    standin.set_env(fail="plugin install=error")
    write_config(tmp_path)

    result = cli("preview")

    version = aws_plugin_version()
    assert result.code == 3
    assert (
        f"aws plugin v{version} is not installed" in result.stderr
        and "403 Forbidden" in result.stderr
    )
    assert (
        f"pulumi plugin install resource aws v{version} --file pulumi-resource-aws-v{version}-"
        in result.stderr
    )
    assert "preview" not in standin.commands()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[pulumi]\nsecret_keys = ["token"]\n[pulumi.config]\ntoken = "literal"\n',
            "keep its value out of",
        ),
        ('[pulumi]\nsecret_keys = ["token"]\n', "which [pulumi] config does not set"),
        ('[pulumi.config]\n"gcp:project" = "x"\n', "only migctl:* and aws:* keys"),
        (
            '[pulumi.config]\ntoken = { env = "MIGCTL_TEST_UNSET_VAR" }\n',
            "MIGCTL_TEST_UNSET_VAR, which is not set",
        ),
    ],
)
def test_bad_pulumi_config_is_exit_2_before_running_pulumi(
    cli, standin: StandIn, tmp_path: Path, extra: str, message: str
) -> None:
    write_config(tmp_path, extra=extra)

    result = cli("preview")

    assert result.code == 2
    assert message in result.stderr
    assert standin.argvs() == []
