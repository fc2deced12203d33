"""`migctl plan`: the program offline under mocks, grouped, counted and priced."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migctl.errors import ConfigError, UsageError
from migctl.infra.offline_plan import (
    PlanResult,
    gather_config,
    parse_overrides,
    plan,
    read_stack_file,
)
from migctl.infra.pricing import estimate, load_price_table
from tests.cli_support import Cli

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/payment-service:2.14.0"
REPO = Path(__file__).resolve().parents[2]
HEAVY = ("boto3", "psycopg", "pulumi", "pulumi_aws")


@pytest.fixture(scope="module")
def planned() -> dict[str, PlanResult]:
    config = {"migctl:containerImage": IMAGE, "aws:region": "us-east-1"}
    return {env: plan(env, config) for env in ("test", "prod")}


def _items(result: PlanResult, prefix: str) -> list[float]:
    return [i.monthly_usd for i in result.monthly_cost_usd.items if i.item.startswith(prefix)]


def test_plan_prices_one_nat_in_test_against_one_per_az_in_production(
    planned: dict[str, PlanResult],
) -> None:
    test, prod = planned["test"], planned["prod"]
    assert _items(test, "NAT gateway") == [32.85]
    assert _items(prod, "NAT gateway") == [32.85, 32.85, 32.85]
    assert test.counts["aws:ec2/natGateway:NatGateway"] == 1
    assert prod.counts["aws:ec2/natGateway:NatGateway"] == 3
    assert sum(_items(prod, "NAT gateway")) - sum(_items(test, "NAT gateway")) == pytest.approx(
        65.70
    )


def test_plan_prices_every_hourly_resource(planned: dict[str, PlanResult]) -> None:
    test, prod = planned["test"], planned["prod"]
    assert _items(test, "Aurora db.t4g.medium") == [53.29]
    assert _items(prod, "Aurora db.r6g.large") == [189.8, 189.8]
    assert _items(test, "DMS dms.t3.medium") == [53.29]
    assert _items(prod, "DMS dms.r5.large Multi-AZ") == [306.6]
    assert _items(test, "load balancer") == [16.43]
    assert _items(test, "Fargate vCPU") == [pytest.approx(14.78)]  # 1 task x 0.5 vCPU
    assert _items(prod, "Fargate memory") == [pytest.approx(19.47)]  # 3 tasks x 2 GB
    for result in (test, prod):
        cost = result.monthly_cost_usd
        assert cost.total == pytest.approx(sum(i.monthly_usd for i in cost.items))
        assert (cost.region, cost.taken_on) == ("us-east-1", "2026-11-29")
    assert test.monthly_cost_usd.total < prod.monthly_cost_usd.total


def test_plan_groups_resources_by_component(planned: dict[str, PlanResult]) -> None:
    groups = planned["test"].by_component()
    assert set(groups) == {"Network", "Database", "Compute", "Migration", "Monitoring"}
    assert all(not r.type.startswith("migctl:infra:") for r in planned["test"].resources)
    assert sum(planned["test"].counts.values()) == len(planned["test"].resources)
    assert planned["test"].environment == "test"


def test_plan_warns_about_what_it_could_not_know(planned: dict[str, PlanResult]) -> None:
    warnings = " | ".join(planned["test"].warnings)
    assert "no source database configured" in warnings
    assert "certificateArn is not set" in warnings


def test_plan_notes_a_region_the_prices_are_not_for() -> None:
    result = plan("test", {"migctl:containerImage": IMAGE, "aws:region": "eu-west-1"})
    assert any("prices are for us-east-1" in w and "eu-west-1" in w for w in result.warnings)


def test_plan_lists_what_it_cannot_price() -> None:
    config = {
        "migctl:containerImage": IMAGE,
        "migctl:dbInstanceClass": "db.x2g.large",
        "migctl:dmsInstanceClass": "dms.r6i.8xlarge",
    }
    result = plan("test", config)
    assert len(result.monthly_cost_usd.unpriced) == 2
    assert any("no price for database-instance-1-test (db.x2g.large)" in w for w in result.warnings)


def test_plan_without_an_image_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="containerImage is required"):
        plan("test", {})


def test_overrides_and_namespaces() -> None:
    assert parse_overrides(["containerImage=a:b", "aws:region=eu-west-1", "x=="]) == {
        "migctl:containerImage": "a:b",
        "aws:region": "eu-west-1",
        "migctl:x": "=",
    }
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_overrides(["containerImage"])
    with pytest.raises(UsageError):
        parse_overrides(["=value"])


def test_stack_file_then_settings_then_flags(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.qa.yaml").write_text(
        "config:\n"
        "  aws:region: us-east-1\n"
        "  migctl:containerImage: from-file\n"
        "  migctl:desiredCount: 2\n"
        "  migctl:dmsCreateServiceRoles: true\n"
        "  migctl:migrationSchemas: [payments, ledger]\n"
        "  migctl:alarmEmail:\n"
        "    secure: v1:AAAAbase64cipher\n"
    )
    (tmp_path / "image.txt").write_text("from-a-file\n")
    config, warnings = gather_config(
        "qa",
        settings_config={
            "desiredCount": 3,
            "taskCpu": 1024,
            "containerImage": {"file": "image.txt"},
            "healthCheckPath": {"env": "HEALTH_PATH"},
            "certificateArn": {"env": "UNSET_VARIABLE"},
            "vpcCidr": {"file": "missing.txt"},
            "sourceSecretArn": {"env": "SOURCE_SECRET_ARN_VAR"},
        },
        secret_keys=["sourceSecretArn"],
        overrides=["taskCpu=2048"],
        environment="qa",
        region="eu-west-1",
        directory=tmp_path,
        base_dir=tmp_path,
        # A generated value: the test proves it is never read, whatever it holds.
        environ={"HEALTH_PATH": "/ready", "SOURCE_SECRET_ARN_VAR": secrets.token_hex(8)},
    )
    stand_in = "offline-plan-stand-in"
    assert config == {
        "aws:region": "eu-west-1",
        "migctl:containerImage": "from-a-file",
        "migctl:desiredCount": "3",
        "migctl:dmsCreateServiceRoles": "true",
        "migctl:migrationSchemas": '["payments", "ledger"]',
        "migctl:alarmEmail": stand_in,
        "migctl:taskCpu": "2048",
        "migctl:healthCheckPath": "/ready",
        "migctl:certificateArn": stand_in,
        "migctl:vpcCidr": stand_in,
        "migctl:sourceSecretArn": stand_in,
        "migctl:environment": "qa",
        "migctl:lambdaPackage": str(tmp_path / "dist" / "validation-lambda.zip"),
    }
    assert warnings == [
        "migctl:alarmEmail is encrypted in Pulumi.qa.yaml; the offline plan used a stand-in value",
        "migctl:certificateArn: the offline plan used a stand-in value",
        "migctl:vpcCidr: the offline plan used a stand-in value",
        "migctl:sourceSecretArn: the offline plan used a stand-in value",
    ]
    default = {"migctl:lambdaPackage": str(Path.cwd() / "dist" / "validation-lambda.zip")}
    assert gather_config("none", settings_config={}, directory=tmp_path) == (default, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [("config: [1, 2]\n", "must be a mapping"), ("config: {a: [\n", "unreadable stack config")],
)
def test_bad_stack_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_stack_file(path)
    (tmp_path / "Pulumi.empty.yaml").write_text("encryptionsalt: x\n")
    assert read_stack_file(tmp_path / "Pulumi.empty.yaml") == ({}, [])


def test_price_table_states_region_and_date_and_bad_tables_fail(tmp_path: Path) -> None:
    table = load_price_table()
    assert table.region == "us-east-1" and table.taken_on == "2026-11-29"
    raw = json.loads((REPO / "migctl" / "data" / "prices-us-east-1.json").read_text())
    assert raw["region"] == "us-east-1" and "taken_on" in raw
    broken = tmp_path / "prices.json"
    broken.write_text(json.dumps({**raw, "dms_instance_hour_single_az": [1, 2]}))
    with pytest.raises(ConfigError, match="unreadable"):
        load_price_table(broken)
    with pytest.raises(ConfigError):
        load_price_table(tmp_path / "missing.json")


@dataclass(frozen=True)
class FakeResource:
    type: str
    name: str
    inputs: dict[str, Any] = field(default_factory=dict)
    component: str | None = None


def test_a_service_without_its_task_definition_is_unpriced() -> None:
    service = FakeResource("aws:ecs/service:Service", "svc", {"taskDefinition": "arn:x/gone"})
    cost = estimate([service], load_price_table())
    assert cost.items == () and cost.unpriced == ("svc (task definition not found)",)


def test_cli_plan_json_has_the_documented_shape(cli: Cli) -> None:
    result = cli("-o", "json", "plan", "--env", "prod", "--set", f"containerImage={IMAGE}")
    assert result.code == 0, result.stderr
    data = result.json()
    assert set(data) >= {"environment", "resources", "counts", "monthly_cost_usd"}
    assert data["environment"] == "prod"
    assert set(data["resources"][0]) == {"type", "name", "component"}
    assert data["counts"]["aws:ec2/natGateway:NatGateway"] == 3
    cost = data["monthly_cost_usd"]
    assert cost["total"] == pytest.approx(sum(i["monthly_usd"] for i in cost["items"]))
    assert {"item", "quantity", "unit", "unit_price_usd", "monthly_usd"} <= set(cost["items"][0])
    assert "warning:" in result.stderr  # warnings go to stderr, JSON alone to stdout


def test_cli_plan_tables_and_config_from_migctl_toml(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "migctl.toml").write_text(
        f'[project]\nenvironment = "test"\n\n[pulumi]\nconfig = {{ containerImage = "{IMAGE}" }}\n'
    )
    result = cli("plan")
    assert result.code == 0, result.stderr
    for text in (
        "migctl plan: environment test",
        "resources by type",
        "monthly cost estimate",
        "NAT gateway",
        "total",
    ):
        assert text in result.stdout


def test_cli_plan_errors_are_one_line_with_exit_2(cli: Cli) -> None:
    result = cli("plan", "--env", "test")
    assert result.code == 2
    assert result.stderr.strip().startswith("migctl: error: stack test:")
    assert "Traceback" not in result.stderr
    assert cli("plan", "--set", "novalue").code == 2


def test_plan_help_does_not_import_pulumi() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['migctl', 'plan', '--help']\n"
        "try:\n    runpy.run_module('migctl', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"print('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED=\n" in out.stdout and "Example:" in out.stdout


def test_a_relative_lambda_package_is_relative_to_the_file_that_sets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks, conf, here = tmp_path / "stacks", tmp_path / "conf", tmp_path / "here"
    for folder in (stacks, conf, here):
        folder.mkdir()
    monkeypatch.chdir(here)
    (stacks / "Pulumi.qa.yaml").write_text("config:\n  migctl:lambdaPackage: zips/a.zip\n")

    def package(**kwargs: object) -> str:
        config, _ = gather_config("qa", directory=stacks, base_dir=conf, **kwargs)  # type: ignore[arg-type]
        return config["migctl:lambdaPackage"]

    assert package(settings_config={}) == str(stacks / "zips" / "a.zip")
    assert package(settings_config={"lambdaPackage": "b.zip"}) == str(conf / "b.zip")
    assert package(settings_config={}, overrides=["lambdaPackage=c.zip"]) == str(here / "c.zip")
    (stacks / "Pulumi.qa.yaml").unlink()
    assert package(settings_config={}) == str(conf / "dist" / "validation-lambda.zip")
