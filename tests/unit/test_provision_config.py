"""migctl.toml -> stack config, the inline program, and the engine-event model (no pulumi CLI)."""

from __future__ import annotations

import secrets
import sys
import types
from pathlib import Path

import pytest
from pulumi.automation import EngineEvent

from migctl.config import Settings, load_settings
from migctl.errors import ConfigError
from migctl.infra.errors import command_failure
from migctl.infra.events import ProgressTracker
from migctl.infra.provision import infra_program
from migctl.infra.stack import ConfigEntry, stack_config, stack_spec
from migctl.redact import redact_text


def _settings(tmp_path: Path, body: str) -> Settings:
    (tmp_path / "migctl.toml").write_text(body)
    return load_settings(cwd=tmp_path, environ={})


def test_config_maps_project_and_pulumi_tables_and_keeps_secrets_out_of_repr(
    tmp_path: Path,
) -> None:
    token = secrets.token_urlsafe()
    (tmp_path / "token.txt").write_text(token + "\n")
    settings = _settings(
        tmp_path,
        '[project]\nenvironment = "staging"\nregion = "eu-west-1"\n'
        '[pulumi]\nsecret_keys = ["migctl:token"]\n'
        '[pulumi.config]\ntoken = { file = "token.txt" }\nsize = 3\n"aws:maxRetries" = 5\n'
        'tags = { team = "payments" }\n',
    )

    entries = stack_config(settings, environ={})

    assert entries == (
        ConfigEntry("aws:region", "eu-west-1"),
        ConfigEntry("migctl:environment", "staging"),
        ConfigEntry("migctl:token", token, secret=True),
        ConfigEntry("migctl:size", "3"),
        ConfigEntry("aws:maxRetries", "5"),
        ConfigEntry("migctl:tags", '{"team":"payments"}'),
        ConfigEntry("migctl:lambdaPackage", str(tmp_path / "dist" / "validation-lambda.zip")),
    )
    assert token not in repr(entries)
    assert redact_text(f"pulumi said {token}") == "pulumi said ***"  # registered for redaction


def test_config_without_a_region_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no AWS region"):
        stack_config(_settings(tmp_path, '[project]\nenvironment = "test"\n'), environ={})


def test_backend_defaults_to_home_and_https_backends_need_no_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = _settings(tmp_path, '[project]\nenvironment = "test"\nregion = "us-east-1"\n')

    spec = stack_spec(settings, environ={"PULUMI_CONFIG_PASSPHRASE": ""})
    cloud = stack_spec(settings, environ={"PULUMI_BACKEND_URL": "https://api.pulumi.com"})

    assert spec.backend_url == f"file://{tmp_path / 'home' / '.migctl' / 'pulumi'}"
    assert (tmp_path / "home" / ".migctl" / "pulumi").is_dir()
    assert spec.work_dir == tmp_path / ".migctl" / "pulumi" and spec.stack == "test"
    assert cloud.env_vars["PULUMI_BACKEND_URL"] == "https://api.pulumi.com"
    with pytest.raises(ConfigError, match="no passphrase"):
        stack_spec(settings, environ={})


def test_the_inline_program_is_infra_pulumi_program(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake = types.ModuleType("infra_pulumi.program")
    fake.pulumi_program = lambda: calls.append("ran")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "infra_pulumi.program", fake)

    infra_program()

    assert calls == ["ran"]


def test_tracker_folds_engine_events_into_rows_errors_and_changes() -> None:
    ticks = iter([10.0, 12.5, 13.0, 14.0])
    tracker = ProgressTracker("up", clock=lambda: next(ticks))
    urn = "urn:pulumi:test::migctl::aws:rds/cluster:Cluster::db"
    meta = {"op": "create", "urn": urn, "type": "aws:rds/cluster:Cluster", "provider": ""}
    stack_meta = {
        **meta,
        "urn": "urn:pulumi:test::migctl::pulumi:pulumi:Stack::s",
        "type": "pulumi:pulumi:Stack",
    }
    raw = [
        {"resourcePreEvent": {"metadata": stack_meta}},
        {"resourcePreEvent": {"metadata": meta}},
        {"diagnosticEvent": {"message": "progress...", "severity": "info", "ephemeral": True}},
        {"diagnosticEvent": {"message": "bad engine\n", "severity": "error", "urn": urn}},
        {"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 0}},
        {"summaryEvent": {"durationSeconds": 3, "resourceChanges": {"create": 1, "same": 2}}},
    ]
    shown = [e for event in raw for e in tracker.apply(EngineEvent.from_json(event))]

    assert [e.kind for e in shown] == ["resource", "diagnostic", "resource", "summary"]
    assert shown[0].resource is not None and shown[0].resource.state == "running"
    assert shown[1].message == "bad engine" and shown[1].resource is not None
    assert shown[2].resource is not None and (
        shown[2].resource.state,
        shown[2].resource.seconds,
    ) == ("failed", 2.5)
    assert tracker.errors == ["bad engine"] and tracker.changes == {"create": 1, "same": 2}
    assert tracker.finish() == []


def test_command_failure_reads_code_and_error_lines() -> None:
    failure = command_failure(
        Exception(
            "\n code: 255\n stdout: Updating (test):\n stderr: warning: x\nerror: update failed"
        )
    )

    assert (failure.code, failure.summary) == (255, "update failed")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "dist/validation-lambda.zip"),
        ('"build/v.zip"', "build/v.zip"),
        ('"../zips/v.zip"', "../zips/v.zip"),
    ],
)
def test_the_stack_gets_lambda_package_as_an_absolute_path_from_migctl_toml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None, expected: str
) -> None:
    import os

    folder = tmp_path / "deploy"
    folder.mkdir()
    body = '[project]\nenvironment = "test"\nregion = "eu-west-1"\n'
    if given is not None:
        body += f"[pulumi.config]\nlambdaPackage = {given}\n"
    settings = _settings(folder, body)
    monkeypatch.chdir(tmp_path)  # not the folder of migctl.toml
    entries = {e.key: e.value for e in stack_config(settings, environ={})}
    assert entries["migctl:lambdaPackage"] == os.path.normpath(folder / expected)
