"""One test per failure of the reference (TypeScript) design, named after it.

The failures are listed in docs/infra.md ("What the reference design got wrong"). Failures
10, 11, 13 and 14 were about Jest and TypeScript; their Python counterparts are tested here.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pulumi
import pytest
from infra_support import IMAGE, REPO, SOURCE_SECRET_ARN, Evaluate, container_definitions

from infra_pulumi.config import StackConfigError
from infra_pulumi.offline import Evaluation, evaluate
from infra_pulumi.program import pulumi_program
from migctl.infra import lambda_build

NAT = "aws:ec2/natGateway:NatGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ENDPOINT = "aws:dms/endpoint:Endpoint"
TASK = "aws:dms/replicationTask:ReplicationTask"
FUNCTION = "aws:lambda/function:Function"
SECRET_MARKER = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker of a secret value
HANDLER_DIR = REPO / "infra_pulumi" / "lambdas" / "validation"
COMPONENTS = ("Network", "Database", "Compute", "Migration", "Monitoring")


def walk(value: object, path: str = "") -> list[tuple[str, object]]:
    """Every (dotted path, leaf value) of a nested structure of inputs."""
    if isinstance(value, dict):
        if SECRET_MARKER in value:
            return [(path, "<secret>")]
        return [pair for k, v in value.items() for pair in walk(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [pair for i, v in enumerate(value) for pair in walk(v, f"{path}[{i}]")]
    return [(path, value)]


def test_failure_01_missing_test_implementation(all_envs: dict[str, Evaluation]) -> None:
    """Every component has its own test module, and every failure below has its test."""
    for module in (REPO / "infra_pulumi" / "components").glob("*.py"):
        if module.name != "__init__.py":
            assert (REPO / "tests" / "infra" / f"test_infra_{module.name}").is_file(), module.name
    names = {
        node.name
        for path in (REPO / "tests" / "infra").glob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
    }
    for number in range(1, 16):
        assert any(n.startswith(f"test_failure_{number:02d}_") for n in names), number
    for ev in all_envs.values():
        built = {r.type for r in ev.resources if not r.custom}
        assert built == {f"migctl:infra:{c}" for c in COMPONENTS}


def test_failure_02_lambda_code_dependency_missing(
    test_env: Evaluation, run_program: Evaluate, lambda_zip: Path
) -> None:
    """The function's code is the built zip (with its dependencies), never a bare folder."""
    function = test_env.one(FUNCTION).inputs
    code = function["code"]
    assert isinstance(code, pulumi.FileArchive)
    assert Path(code.path) == lambda_zip and zipfile.is_zipfile(code.path)
    assert function["runtime"] == "python3.12"
    assert function["handler"] == "handler.handler"
    pins = (HANDLER_DIR / "requirements.txt").read_text()
    assert re.search(r"^psycopg\[binary\]==3\.\d+\.\d+ \\$", pins, re.M)
    with pytest.raises(StackConfigError, match="migctl lambda build"):
        run_program(lambdaPackage=str(lambda_zip.with_name("missing.zip")))


def test_failure_03_no_hardcoded_database_credentials(all_envs: dict[str, Evaluation]) -> None:
    for ev in all_envs.values():
        cluster = ev.one("aws:rds/cluster:Cluster").inputs
        assert cluster["manageMasterUserPassword"] is True
        assert "masterPassword" not in cluster and "masterPasswordWo" not in cluster
        for endpoint in ev.of_type(ENDPOINT):
            assert endpoint.inputs["secretsManagerArn"]
            assert endpoint.inputs["secretsManagerAccessRoleArn"]
            for key in ("username", "password", "serverName", "port"):
                assert key not in endpoint.inputs
        (container,) = container_definitions(ev)
        env_names = {e["name"] for e in container["environment"]}  # type: ignore[union-attr, index]
        assert not any("PASS" in name or "SECRET" in name for name in env_names)
        assert {s["name"] for s in container["secrets"]} == {"DB_USERNAME", "DB_PASSWORD"}  # type: ignore[union-attr, index]
        lambda_env = ev.one(FUNCTION).inputs["environment"]["variables"]
        assert not any("PASS" in name for name in lambda_env)
        for res in ev.resources:
            for path, value in walk(dict(res.inputs)):
                if "password" in path.lower() and path != ".manageMasterUserPassword":
                    # the one place a password exists: the DMS user's generated secret value,
                    # marked secret and write-only (never stored in the state)
                    assert (res.type, path, value) == (
                        "aws:secretsmanager/secretVersion:SecretVersion",
                        ".secretStringWo",
                        "<secret>",
                    )
        assert "password" not in json.dumps(dict(ev.outputs)).lower()
    literal = re.compile(r"""(?i)(password|passwd|pwd)["']?\s*[:=]\s*["'][^"'\s{]{4,}["']""")
    files = [
        *REPO.glob("infra_pulumi/**/*.py"),
        *REPO.glob("tests/infra/*.py"),
        REPO / "Pulumi.yaml",
    ]
    files.append(REPO / "docs" / "infra.md")
    for path in files:
        assert not literal.search(path.read_text()), path


def test_failure_04_expensive_nat_gateway_configuration(
    test_env: Evaluation, prod_env: Evaluation, no_source_env: Evaluation, run_program: Evaluate
) -> None:
    """One shared NAT outside production, one per AZ in production; config overrides both."""
    assert len(test_env.of_type(NAT)) == 1
    nat_id = f"{test_env.one(NAT).name}-id"
    private = [r for r in test_env.of_type(ROUTE_TABLE) if "private" in r.name]
    assert len(private) == 3
    assert {r.inputs["routes"][0]["natGatewayId"] for r in private} == {nat_id}
    nats = prod_env.of_type(NAT)
    assert len(nats) == 3
    zones = {n.name.split("-nat-")[1].rsplit("-", 1)[0] for n in nats}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1d"}
    for table in (r for r in prod_env.of_type(ROUTE_TABLE) if "private" in r.name):
        zone = table.name.split("private-rt-")[1].rsplit("-", 1)[0]
        assert table.inputs["routes"][0]["natGatewayId"] == f"network-nat-{zone}-prod-id"
    assert len(no_source_env.of_type(NAT)) == 3  # natGateways=per-az outside production
    assert len(run_program("prod", natGateways="single").of_type(NAT)) == 1
    assert len(test_env.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")) == 2


def test_failure_05_missing_lambda_dependencies_installation(tmp_path: Path) -> None:
    """pip installs pinned, hashed requirements for the Lambda platform."""
    calls: list[list[str]] = []

    def fake_pip(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        target = Path(command[command.index("--target") + 1])
        (target / "psycopg_binary").mkdir(parents=True)
        (target / "psycopg_binary" / "_psycopg.cpython-312-x86_64-linux-gnu.so").write_bytes(
            b"\x7fELF"
        )
        return subprocess.CompletedProcess(command, 0, "", "")

    package = lambda_build.build_lambda_package(tmp_path / "out.zip", runner=fake_pip)
    (command,) = calls
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64" in joined
    assert "--python-version 3.12" in joined
    assert "--only-binary=:all:" in command and "--require-hashes" in command
    assert Path(command[command.index("--requirement") + 1]) == HANDLER_DIR / "requirements.txt"
    names = zipfile.ZipFile(package.path).namelist()
    assert "psycopg_binary/_psycopg.cpython-312-x86_64-linux-gnu.so" in names
    requirements = [
        line
        for line in (HANDLER_DIR / "requirements.txt").read_text().splitlines()
        if line and not line.startswith((" ", "#"))
    ]
    assert requirements and all(re.match(r"^[\w\[\].-]+==[\w.]+ \\$", r) for r in requirements)
    assert {r.split("==")[0] for r in requirements} >= {
        "psycopg[binary]",
        "psycopg-binary",
        "tenacity",
    }


def test_failure_06_source_database_configuration_missing(
    no_source_env: Evaluation, test_env: Evaluation, run_program: Evaluate
) -> None:
    """No source configured: no endpoints, no task, one clear warning, no placeholder host."""
    assert no_source_env.of_type(ENDPOINT) == [] and no_source_env.of_type(TASK) == []
    assert "dmsReplicationTaskArn" not in no_source_env.outputs
    assert "dmsReverseTaskArn" not in no_source_env.outputs
    source_warnings = [w for w in no_source_env.warnings if "source database" in w]
    assert len(source_warnings) == 1 and "sourceDbHost" in source_warnings[0]
    for ev in (no_source_env, test_env):
        blob = json.dumps([dict(r.inputs) for r in ev.resources], default=str)
        assert "example.com" not in blob and "placeholder" not in blob.lower()
    source = test_env.named("migration-source-test")
    assert source.inputs["secretsManagerArn"] == SOURCE_SECRET_ARN
    with pytest.raises(StackConfigError, match="sourceSecretArn"):
        run_program(drop=("sourceSecretArn",))


def test_failure_07_ecs_container_image_placeholder(
    all_envs: dict[str, Evaluation], run_program: Evaluate
) -> None:
    """The image is required config; nothing falls back to nginx:latest."""
    with pytest.raises(StackConfigError, match="containerImage is required"):
        run_program(drop=("containerImage",))
    for ev in all_envs.values():
        (container,) = container_definitions(ev)
        assert container["image"] == IMAGE
        assert "nginx" not in json.dumps([dict(r.inputs) for r in ev.resources], default=str)


def test_failure_08_missing_lambda_code_bundling(tmp_path: Path) -> None:
    """The bundle holds handler, migctl code and dependencies, and is byte-for-byte reproducible."""
    deps = tmp_path / "deps"
    (deps / "psycopg").mkdir(parents=True)
    (deps / "psycopg" / "__init__.py").write_text("VERSION = 'fake'\n")
    (deps / "psycopg" / "__pycache__").mkdir()
    (deps / "psycopg" / "__pycache__" / "x.pyc").write_bytes(b"skip me")
    first = lambda_build.build_lambda_package(tmp_path / "a.zip", deps_dir=deps)
    (deps / "psycopg" / "__init__.py").touch()  # a newer mtime changes nothing
    second = lambda_build.build_lambda_package(tmp_path / "b.zip", deps_dir=deps)
    assert first.path.read_bytes() == second.path.read_bytes() and first.sha256 == second.sha256
    infos = zipfile.ZipFile(first.path).infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert "handler.py" in names and "psycopg/__init__.py" in names
    assert "migctl/errors.py" in names and not any("__pycache__" in n for n in names)


def test_failure_09_monitoring_alarm_dimensions_incomplete(all_envs: dict[str, Evaluation]) -> None:
    for ev in all_envs.values():
        alarm = next(
            a
            for a in ev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if a.inputs["metricName"] == "HealthyHostCount"
        )
        assert alarm.inputs["dimensions"] == {
            "LoadBalancer": ev.outputs["albArnSuffix"],
            "TargetGroup": ev.outputs["targetGroupArnSuffix"],
        }
        assert alarm.inputs["dimensions"]["LoadBalancer"].startswith("app/")
        assert alarm.inputs["dimensions"]["TargetGroup"].startswith("targetgroup/")


def test_failure_10_jest_configuration_uses_old_global_config_pattern(
    run_program: Evaluate,
) -> None:
    """Python: test config lives in pyproject only, and the program uses nothing deprecated."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "--strict-markers" in pyproject["tool"]["pytest"]["ini_options"]["addopts"]
    for legacy in ("pytest.ini", "setup.cfg", "tox.ini", "jest.config.js"):
        assert not (REPO / legacy).exists(), legacy
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = run_program("test", certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/x")
    assert ev.warnings == ()  # pulumi-aws reports deprecated inputs as engine warnings
    ours = [w for w in caught if "infra_pulumi" in w.filename]
    assert ours == [], [str(w.message) for w in ours]


def test_failure_11_missing_test_directory_configuration() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    testpaths = pyproject["tool"]["pytest"]["ini_options"]["testpaths"]
    assert testpaths == ["tests"]
    assert Path(__file__).resolve().is_relative_to(REPO / testpaths[0])
    assert (REPO / "tests" / "infra" / "conftest.py").is_file()


def test_failure_12_ecs_service_platform_version_not_latest(
    all_envs: dict[str, Evaluation],
) -> None:
    for ev in all_envs.values():
        services = ev.of_type("aws:ecs/service:Service")
        assert len(services) == 2  # the service and the cutover's standby
        assert all(s.inputs["platformVersion"] == "LATEST" for s in services)


def _ruff(select: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", select, "infra_pulumi"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_failure_13_unused_import_in_index_ts() -> None:
    result = _ruff("F401")
    assert result.returncode == 0, result.stdout


def test_failure_14_monitoring_stack_variable_assignment_unused() -> None:
    """No unused variable anywhere in the program, and every component built is used."""
    result = _ruff("F841")
    assert result.returncode == 0, result.stdout
    tree = ast.parse((REPO / "infra_pulumi" / "program.py").read_text())
    program = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "pulumi_program"
    )
    assigned = {
        t.id
        for n in ast.walk(program)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    loaded = {
        n.id for n in ast.walk(program) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    assert assigned <= loaded
    assert {"network", "database", "compute", "migration", "monitoring"} <= assigned


def test_failure_15_missing_readme_deployment_instructions() -> None:
    text = (REPO / "docs" / "infra.md").read_text()
    section = text.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "PULUMI_BACKEND_URL",
        "AWS_PROFILE",
        "migctl lambda build",
        "pulumi stack init",
        "pulumi config set migctl:containerImage",
        "pulumi up",
    ):
        assert needed in section, needed


def test_the_offline_evaluation_leaves_no_pulumi_state_behind(lambda_zip: Path) -> None:
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import settings

    evaluate(
        pulumi_program,
        config={"migctl:containerImage": IMAGE, "migctl:lambdaPackage": str(lambda_zip)},
        stack="leak",
    )
    assert settings.get_root_resource() is None
    assert runtime_config.CONFIG.get() == {}
