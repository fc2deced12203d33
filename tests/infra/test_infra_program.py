"""The program contract: config, outputs, names, tags, destroyability and the plain CLI entry."""

from __future__ import annotations

import ast
import importlib
import inspect
import runpy
import sys
import types
import zipfile
from pathlib import Path

import pytest
import yaml
from infra_support import IMAGE, REPO, Evaluate

from infra_pulumi.config import KEYS, StackConfigError
from infra_pulumi.offline import Evaluation, FakeCloud, evaluate
from infra_pulumi.program import OUTPUT_NAMES

REQUIRED_TAGS = {"Environment", "Project", "ManagedBy"}
NAME_INPUTS = (
    "name",
    "clusterIdentifier",
    "identifier",
    "finalSnapshotIdentifier",
    "replicationInstanceId",
    "replicationSubnetGroupId",
    "replicationTaskId",
    "endpointId",
)
# DMS finds these two account-wide roles by their exact names (created only on request).
FIXED_NAMES = {"dms-vpc-role", "dms-cloudwatch-logs-role"}


def _resource_class(token: str) -> type:
    module, _, cls = token.split(":", 1)[1].partition(":")
    package = module.split("/", 1)[0]
    package = {"lambda": "lambda_"}.get(package, package)
    return getattr(importlib.import_module(f"pulumi_aws.{package}"), cls)  # type: ignore[no-any-return]


def test_outputs_are_the_documented_contract(all_envs: dict[str, Evaluation]) -> None:
    assert set(all_envs["test"].outputs) == set(OUTPUT_NAMES)
    assert set(all_envs["prod"].outputs) == set(OUTPUT_NAMES)
    assert set(all_envs["staging"].outputs) == set(OUTPUT_NAMES) - {
        "dmsReplicationTaskArn",
        "dmsReverseTaskArn",
    }
    test = all_envs["test"].outputs
    assert test["environment"] == "test"
    assert test["ecsClusterName"] == "migctl-test" and test["ecsServiceName"] == "migctl-app-test"
    assert test["ecsContainerName"] == "payment-service"
    assert test["validationFunctionName"] == "migctl-validate-test"
    assert test["albArnSuffix"].startswith("app/migctl-alb-test/")
    assert test["targetGroupArnSuffix"].startswith("targetgroup/migctl-app-test/")


def test_every_physical_name_carries_the_environment(all_envs: dict[str, Evaluation]) -> None:
    for env, ev in all_envs.items():
        for res in ev.resources:
            assert res.name.endswith(f"-{env}") or res.type.startswith("migctl:infra:"), res.name
            for key in NAME_INPUTS:
                value = res.inputs.get(key)
                if isinstance(value, str) and value not in FIXED_NAMES:
                    assert env in value, (res.name, key, value)
            tag_name = (res.inputs.get("tags") or {}).get("Name")
            assert tag_name is None or tag_name.endswith(f"-{env}")


def test_every_taggable_resource_is_tagged(all_envs: dict[str, Evaluation]) -> None:
    checked = 0
    for env, ev in all_envs.items():
        for res in (r for r in ev.resources if r.custom):
            cls = _resource_class(res.type)
            if "tags" in inspect.signature(cls._internal_init).parameters:  # type: ignore[attr-defined]
                tags = res.inputs.get("tags") or {}
                assert REQUIRED_TAGS <= set(tags), res.name
                assert (tags["Environment"], tags["Project"], tags["ManagedBy"]) == (
                    env,
                    "migctl",
                    "pulumi",
                )
                checked += 1
    assert checked > 150


def test_non_production_environments_are_fully_destroyable(
    test_env: Evaluation, no_source_env: Evaluation, prod_env: Evaluation
) -> None:
    for ev in (test_env, no_source_env):
        assert ev.one("aws:rds/cluster:Cluster").inputs["deletionProtection"] is False
        assert ev.one("aws:rds/cluster:Cluster").inputs["skipFinalSnapshot"] is True
        assert (
            ev.one("aws:lb/loadBalancer:LoadBalancer").inputs["enableDeletionProtection"] is False
        )
        assert ev.one("aws:kms/key:Key").inputs["deletionWindowInDays"] == 7
        for secret in ev.of_type("aws:secretsmanager/secret:Secret"):
            assert secret.inputs["recoveryWindowInDays"] == 0
    assert prod_env.one("aws:secretsmanager/secret:Secret").inputs["recoveryWindowInDays"] == 30
    assert prod_env.one("aws:kms/key:Key").inputs["deletionWindowInDays"] == 30


def test_environment_defaults_to_the_stack_and_can_be_set(run_program: Evaluate) -> None:
    ev = run_program("stack-a", environment="perf")
    assert ev.outputs["environment"] == "perf"
    assert ev.one("aws:ecs/cluster:Cluster").inputs["name"] == "migctl-perf"


@pytest.mark.parametrize(
    ("stack", "overrides", "message"),
    [
        ("Prod_1", {}, "lowercase letters"),
        ("averyveryverylongname", {}, "at most 12"),
        ("test", {"natGateways": "two"}, "natGateways must be"),
        ("test", {"taskCpu": "300"}, "taskCpu must be one of"),
        ("test", {"vpcCidr": "not-a-cidr"}, "is not a CIDR block"),
        ("test", {"vpcCidr": "10.0.0.0/24"}, "/20 or larger"),
        ("test", {"vpcCidr": "fd00::/48"}, "IPv4 block"),
        ("test", {"availabilityZones": '"us-east-1a"'}, "must be a list of strings"),
        ("test", {"availabilityZones": ["us-east-1a", "us-east-1b"]}, "exactly 3 zones"),
    ],
)
def test_bad_config_is_one_clear_error(
    run_program: Evaluate, stack: str, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(StackConfigError, match=message):
        run_program(stack, **overrides)


def test_source_needs_both_host_and_secret(run_program: Evaluate) -> None:
    with pytest.raises(StackConfigError, match="sourceDbHost is missing"):
        run_program(drop=("sourceDbHost",))


def test_source_port_name_and_thresholds_from_config(run_program: Evaluate) -> None:
    ev = run_program(sourceDbPort="6432", sourceDbName="pay", p99LatencyAlarmSeconds="0.5")
    variables = ev.one("aws:lambda/function:Function").inputs["environment"]["variables"]
    assert (variables["SOURCE_PORT"], variables["SOURCE_DBNAME"]) == ("6432", "pay")
    assert ev.named("migration-source-test").inputs["databaseName"] == "pay"
    assert ev.named("migration-reverse-target-test").inputs["databaseName"] == "pay"
    latency = next(
        a
        for a in ev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.inputs["metricName"] == "TargetResponseTime"
    )
    assert latency.inputs["threshold"] == 0.5


def test_a_region_with_too_few_zones_is_an_error(base_config: dict[str, str]) -> None:
    from infra_pulumi.program import pulumi_program

    with pytest.raises(StackConfigError, match="2 available zones"):
        evaluate(pulumi_program, config=base_config, cloud=FakeCloud(zones="ab"))


def test_a_missing_lambda_package_is_a_warning_in_a_preview(run_program: Evaluate) -> None:
    ev = run_program(preview=True, lambdaPackage="dist/no-such-package.zip")
    (warning,) = [w for w in ev.warnings if "Lambda package" in w]
    assert str(REPO / "dist" / "no-such-package.zip") in warning
    assert "migctl lambda build" in warning


FUNCTION = "aws:lambda/function:Function"


def _project(root: Path, package: str) -> Path:
    """A Pulumi project folder holding ``Pulumi.yaml`` and a built zip at ``package``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    zip_path = root / package
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return zip_path


def test_a_relative_lambda_package_is_relative_to_the_pulumi_project_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra_pulumi.program import pulumi_program

    project = tmp_path / "project"
    built = _project(project, "dist/validation-lambda.zip")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the engine says where Pulumi.yaml is
    config = {"migctl:containerImage": IMAGE, "migctl:lambdaPackage": "dist/validation-lambda.zip"}
    ev = evaluate(pulumi_program, config=config, root_directory=str(project))
    assert Path(ev.one(FUNCTION).inputs["code"].path) == built
    # the default is the same relative path
    ev = evaluate(
        pulumi_program, config={"migctl:containerImage": IMAGE}, root_directory=str(project)
    )
    assert Path(ev.one(FUNCTION).inputs["code"].path) == built
    # without the engine's word (mocks), the nearest Pulumi.yaml from the current folder up
    (project / "infra_pulumi").mkdir()
    monkeypatch.chdir(project / "infra_pulumi")
    ev = evaluate(pulumi_program, config=config)
    assert Path(ev.one(FUNCTION).inputs["code"].path) == built
    with pytest.raises(StackConfigError, match=str(project / "dist" / "other.zip")):
        evaluate(pulumi_program, config={**config, "migctl:lambdaPackage": "dist/other.zip"})


def test_every_config_key_is_documented() -> None:
    text = (REPO / "docs" / "infra.md").read_text()
    for key in KEYS:
        assert f"migctl:{key.name}" in text, key.name


def test_pulumi_yaml_runs_the_same_program_through_main(lambda_zip: Path) -> None:
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["name"] == "migctl" and project["runtime"]["name"] == "python"
    main = REPO / project["main"] / "__main__.py"
    assert main.is_file()
    saved = list(sys.path)
    config = {"migctl:containerImage": IMAGE, "migctl:lambdaPackage": str(lambda_zip)}
    try:
        ev = evaluate(
            lambda: runpy.run_path(str(main), run_name="__main__"), config=config, stack="cli"
        )
    finally:
        sys.path[:] = saved
    assert ev.outputs["environment"] == "cli" and set(ev.outputs) == set(OUTPUT_NAMES) - {
        "dmsReplicationTaskArn",
        "dmsReverseTaskArn",
    }


def test_the_lambda_handler_delegates_to_migctl_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []

    def handle(event: object, context: object) -> dict[str, object]:
        calls.append((event, context))
        return {"ok": True}

    monkeypatch.setitem(
        sys.modules, "migctl.validate.lambda_handler", types.SimpleNamespace(handle=handle)
    )
    from infra_pulumi.lambdas.validation import handler

    assert handler.handler({"table": "public.payments"}, "ctx") == {"ok": True}
    assert calls == [({"table": "public.payments"}, "ctx")]


def test_program_modules_import_nothing_from_migctl() -> None:
    """Only the Lambda handler reaches into migctl (at run time, inside the zip)."""
    for path in (REPO / "infra_pulumi").rglob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert not {m for m in imported if m.split(".")[0] == "migctl"}, path


def test_lookups_of_the_recorded_graph_name_what_is_missing(test_env: Evaluation) -> None:
    with pytest.raises(LookupError, match="9 resources of type aws:ec2/subnet:Subnet"):
        test_env.one("aws:ec2/subnet:Subnet")
    with pytest.raises(LookupError, match="0 resources named nothing"):
        test_env.named("nothing")
