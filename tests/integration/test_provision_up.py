"""`migctl up` and `migctl preview` against the stand-in pulumi CLI (real pulumi.automation)."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import pytest
from pulumi_standin import (
    SECRET_OUTPUT,
    StandIn,
    TtyInput,
    digest,
    files_containing,
    standin_fixture,  # noqa: F401 - a fixture
    write_config,
)

from migctl.infra.stack import aws_plugin_version

SECRET_CONFIG = """
[pulumi]
secret_keys = ["alertWebhookToken"]

[pulumi.config]
dbInstanceClass = "db.r6g.large"
minTasks = 2
multiAz = true
"aws:skipMetadataApiCheck" = false
alarmEmails = ["oncall@example.com"]
alertWebhookToken = { env = "MIGCTL_TEST_WEBHOOK_TOKEN" }
"""


def test_up_yes_sets_config_with_secret_installs_plugin_streams_events_and_caches_outputs(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe()
    monkeypatch.setenv("MIGCTL_TEST_WEBHOOK_TOKEN", token)
    write_config(tmp_path, extra=SECRET_CONFIG)

    result = cli("--output", "json", "up", "--yes")

    assert result.code == 0, result.stderr
    plugin = aws_plugin_version()
    assert standin.commands() == [
        "version",
        "stack select",
        "stack init",
        "stack output",  # does the stack run a service yet (the image it runs is declared)?
        "stack output",
        "config",
        "config set-all",
        "plugin ls",
        "plugin install",
        "up",
        "stack output",
        "stack output",
        "stack history",
    ]
    set_all = standin.call("config set-all")
    pairs = {
        set_all[i + 1]: set_all[i]
        for i in range(len(set_all) - 1)
        if set_all[i] in ("--secret", "--plaintext")
    }
    assert pairs == {
        "aws:region=us-east-1": "--plaintext",
        "migctl:environment=test": "--plaintext",
        "migctl:dbInstanceClass=db.r6g.large": "--plaintext",
        "migctl:minTasks=2": "--plaintext",
        "migctl:multiAz=true": "--plaintext",
        "aws:skipMetadataApiCheck=false": "--plaintext",
        'migctl:alarmEmails=["oncall@example.com"]': "--plaintext",
        f"migctl:alertWebhookToken={digest(token)}": "--secret",
        # the Lambda's zip, resolved against migctl.toml's folder (docs/deploy.md)
        f"migctl:lambdaPackage={tmp_path / 'dist' / 'validation-lambda.zip'}": "--plaintext",
    }
    assert standin.call("plugin install") == ["plugin", "install", "resource", "aws", f"v{plugin}"]
    up = standin.call("up")
    assert up[:3] == ["up", "--yes", "--skip-preview"]
    assert "--exec-kind" in up and up[up.index("--exec-kind") + 1] == "auto.inline"
    assert up[up.index("--event-log") + 1].startswith("tcp://127.0.0.1:")
    engine = next(r for r in standin.records() if r.get("events"))
    assert engine == {
        **engine,
        "events": "grpc",
        "client": True,
    }  # events over gRPC; inline program reachable
    first = standin.records()[0]
    backend = standin.home / ".migctl" / "pulumi"
    assert backend.is_dir()
    select = next(r for r in standin.records() if r.get("argv", [None])[0] == "stack")
    assert select["env"]["PULUMI_BACKEND_URL"] == f"file://{backend}"
    assert first["argv"] == ["version"]
    assert "PULUMI_CONFIG_PASSPHRASE" in select["env_names"]

    lines = result.json_lines()
    resources = [ln for ln in lines if ln["event"] == "resource"]
    assert [(r["name"], r["op"], r["state"]) for r in resources] == [
        (name, "create", state)
        for name in ("net", "net-vpc", "db-cluster", "app-service")
        for state in ("running", "done")
    ]
    assert all(r["phase"] == "up" for r in resources)
    assert resources[1]["type"] == "migctl:infra:Network" and isinstance(
        resources[1]["seconds"], float
    )
    assert [ln["changes"] for ln in lines if ln["event"] == "summary"] == [{"create": 5}]
    final = lines[-1]
    assert final["event"] == "result"
    assert final["ok"] is True and final["applied"] is True and final["cancelled"] is False
    assert final["changes"] == {"create": 5}
    expected_outputs = {
        "albArnSuffix": "app/payments/0123",
        "clusterName": "payments-test",
        SECRET_OUTPUT: "[secret]",
    }
    assert final["outputs"] == expected_outputs
    assert sorted(final["config_changed"]) == sorted(k.split("=")[0] for k in pairs)

    cache = tmp_path / ".migctl" / "outputs-test.json"
    assert json.loads(cache.read_text()) == expected_outputs

    # Neither the secret config value nor the secret output is in plaintext anywhere.
    for needle in (token, standin.secret_output):
        assert files_containing(tmp_path, needle) == []
        assert needle not in result.stdout and needle not in result.stderr
    stack_yaml = (tmp_path / ".migctl" / "pulumi" / "Pulumi.test.yaml").read_text()
    assert "migctl:alertWebhookToken:\n    secure: v1:" in stack_yaml


def test_up_without_yes_and_without_a_terminal_exits_2_before_running_pulumi(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path)

    result = cli("up")

    assert result.code == 2
    assert "no terminal to ask on" in result.stderr and "--yes" in result.stderr
    assert standin.argvs() == []


@pytest.mark.parametrize(("answer", "code"), [("n", 1), ("y", 0)])
def test_up_shows_the_preview_and_applies_only_after_yes(
    cli, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, code: int
) -> None:
    write_config(tmp_path)
    monkeypatch.setattr(sys, "stdin", TtyInput(answer))

    result = cli("up")

    assert result.code == code, result.stderr
    commands = standin.commands()
    assert "preview" in commands
    assert (
        "Preview" in result.stderr and "db-cluster" in result.stderr and "create 5" in result.stderr
    )
    assert "Apply these changes to stack 'test'?" in result.stderr
    if answer == "y":
        assert commands.index("preview") < commands.index("up")
        assert "done: up of stack test: create 5" in result.stderr
        assert "payments-test" in result.stdout and "[secret]" in result.stdout
    else:
        assert "up" not in commands
        assert "not applied" in result.stderr
        assert not (tmp_path / ".migctl" / "outputs-test.json").exists()


def test_up_with_a_cli_before_3_205_reads_events_from_the_event_log_file_and_renders_the_table(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    standin.set_env(version="v3.200.0")
    write_config(tmp_path)

    result = cli("up", "--yes", "--pulumi-root", str(standin.root))

    assert result.code == 0, result.stderr
    up = standin.call("up")
    event_log = up[up.index("--event-log") + 1]
    assert event_log.endswith("eventlog.txt") and not event_log.startswith("tcp://")
    assert next(r for r in standin.records() if r.get("events"))["events"] == "file"
    log = result.stderr  # no terminal: one whole line per resource and state, no live table
    assert "\x1b[" not in log
    for name, kind in [("net-vpc", "aws:ec2/vpc:Vpc"), ("db-cluster", "aws:rds/cluster:Cluster")]:
        lines = [line for line in log.splitlines() if line.startswith(f"{kind} {name}: ")]
        assert [line.split(": ", 1)[1].split(" (")[0] for line in lines] == [
            "create running",
            "create done",
        ], log
    assert "Update: create 5" in log
    assert "payments-test" in result.stdout and "[secret]" in result.stdout
    assert standin.secret_output not in result.stdout


def test_preview_marks_resources_planned_and_changes_nothing(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path)

    result = cli("--output", "json", "preview")

    assert result.code == 0, result.stderr
    lines = result.json_lines()
    done = [ln for ln in lines if ln["event"] == "resource" and ln["state"] != "running"]
    assert {ln["state"] for ln in done} == {"planned"} and len(done) == 4
    assert lines[-1]["operation"] == "preview" and lines[-1]["applied"] is False
    assert lines[-1]["changes"] == {"create": 5}
    assert "up" not in standin.commands()
    assert standin.stack_state()["resources"] == []


def test_second_up_sets_only_changed_config_and_drops_removed_migctl_keys(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(
        tmp_path, extra='[pulumi.config]\ndbInstanceClass = "db.r6g.large"\nminTasks = 2\n'
    )
    assert cli("up", "--yes").code == 0
    first_calls = len(standin.argvs())

    write_config(tmp_path, extra='[pulumi.config]\ndbInstanceClass = "db.r6g.xlarge"\n')
    result = cli("--output", "json", "up", "--yes")

    assert result.code == 0, result.stderr
    again = standin.argvs()[first_calls:]
    set_all = [a for a in again if a[:2] == ["config", "set-all"]]
    assert set_all == [
        [
            "config",
            "set-all",
            "--stack",
            "test",
            "--plaintext",
            "migctl:dbInstanceClass=db.r6g.xlarge",
        ]
    ]
    assert ["config", "rm-all", "--stack", "test", "migctl:minTasks"] in again
    assert not any(a[:2] == ["plugin", "install"] for a in again)  # already installed
    assert result.json_lines()[-1]["changes"] == {"same": 5}


RUNNING = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:v2"  # shipped by a rollout
CONFIGURED = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:v1"  # still in migctl.toml


def _stack_with_a_service(standin: StandIn, cluster: str) -> None:
    """The stack's outputs name an ECS service (as the program exports them)."""
    scenario = json.loads(standin.scenario_path.read_text())
    scenario["outputs"].update(
        {
            "ecsClusterName": {"value": cluster, "secret": False},
            "ecsServiceName": {"value": "migctl-app-test", "secret": False},
            "ecsContainerName": {"value": "payment-service", "secret": False},
        }
    )
    standin.scenario_path.write_text(json.dumps(scenario))


def _service_running(image: str) -> None:
    import boto3

    ecs = boto3.client("ecs", region_name="us-east-1")
    ecs.create_cluster(clusterName="migctl-test")
    arn = ecs.register_task_definition(
        family="payments",
        containerDefinitions=[{"name": "payment-service", "image": image, "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster="migctl-test", serviceName="migctl-app-test", taskDefinition=arn, desiredCount=1
    )


@pytest.mark.usefixtures("aws")
def test_after_a_rollout_the_stack_declares_the_image_that_runs(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    """`up` (or `preview`) after a rollout never puts migctl.toml's older image back: the stack
    declares the running image, and the difference is said, with the command that ships it."""
    write_config(tmp_path, extra=f'[pulumi.config]\ncontainerImage = "{CONFIGURED}"\n')
    stack_yaml = tmp_path / ".migctl" / "pulumi" / "Pulumi.test.yaml"
    _stack_with_a_service(standin, "migctl-test")
    first = cli("--output", "json", "up", "--yes")  # the stack is new: it has no outputs yet
    assert first.code == 0, first.stderr
    assert first.json_lines()[-1]["running_image"] is None and CONFIGURED in stack_yaml.read_text()
    _service_running(RUNNING)

    result = cli("--output", "json", "preview")
    assert result.code == 0, result.stderr
    assert result.json_lines()[-1]["running_image"] == {
        "image": RUNNING,
        "task_definition": "payments:1",
        "configured": CONFIGURED,
        "differs": True,
    }
    assert f"migctl:containerImage: {RUNNING}" in stack_yaml.read_text()
    table = cli("up", "--yes")
    assert table.code == 0, table.stderr
    flat = " ".join(table.stderr.split())
    assert f"the service runs payments:1 ({RUNNING}): the stack declares it" in flat
    assert f"migctl rollout --image {CONFIGURED}" in flat
    assert CONFIGURED not in stack_yaml.read_text()


@pytest.mark.usefixtures("aws")
def test_when_aws_cannot_say_what_runs_it_warns_and_goes_on(
    cli, standin: StandIn, tmp_path: Path
) -> None:
    write_config(tmp_path, extra=f'[pulumi.config]\ncontainerImage = "{CONFIGURED}"\n')
    _stack_with_a_service(standin, "no-such-cluster")
    assert cli("up", "--yes").code == 0
    result = cli("--output", "json", "preview")
    assert result.code == 0, result.stderr
    payload = result.json_lines()[-1]
    assert payload["running_image"] is None
    (warning,) = payload["warnings"]
    assert "could not read the image the service runs" in warning and "not found" in warning
