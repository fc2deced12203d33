"""`migctl lambda build`: a reproducible zip of handler, migctl.validate and Linux dependencies.

The offline tests feed the builder a directory of already-installed dependencies.
The one test that installs from the package index is marked ``network``.
"""

from __future__ import annotations

import ast
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from migctl.errors import ConfigError, OperationalError
from migctl.infra import lambda_build
from tests.cli_support import Cli

LINUX_MODULE = "psycopg_binary/_psycopg.cpython-312-x86_64-linux-gnu.so"


def fake_deps(root: Path) -> Path:
    deps = root / "deps"
    (deps / "psycopg_binary").mkdir(parents=True)
    (deps / LINUX_MODULE).write_bytes(b"\x7fELF fake")
    (deps / "psycopg").mkdir()
    (deps / "psycopg" / "__init__.py").write_text("VERSION = 'fake'\n")
    tool = deps / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o775)
    return deps


def fake_migctl(root: Path, *, validate: bool = True) -> Path:
    tree = root / "migctl"
    tree.mkdir()
    for name in lambda_build.MIGCTL_FILES:
        (tree / name).write_text(f"# {name}\n")
    if validate:
        (tree / "validate").mkdir()
        (tree / "validate" / "__init__.py").write_text("")
    return tree


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    deps = fake_deps(tmp_path)
    first = lambda_build.build_lambda_package(tmp_path / "one.zip", deps_dir=deps)
    for path in deps.rglob("*"):
        path.touch()  # new mtimes must not matter
    second = lambda_build.build_lambda_package(tmp_path / "two.zip", deps_dir=deps)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert (first.sha256, first.size_bytes, first.entries) == (
        second.sha256,
        second.size_bytes,
        second.entries,
    )
    assert not (tmp_path / "one.zip.partial").exists()


def test_entries_are_sorted_dated_1980_with_normalised_modes(tmp_path: Path) -> None:
    package = lambda_build.build_lambda_package(tmp_path / "v.zip", deps_dir=fake_deps(tmp_path))
    infos = zipfile.ZipFile(package.path).infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and len(names) == package.entries
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in infos}
    assert modes["bin/tool"] == 0o755 and modes["handler.py"] == 0o644
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_the_zip_holds_handler_declared_migctl_code_and_dependencies(tmp_path: Path) -> None:
    package = lambda_build.build_lambda_package(tmp_path / "v.zip", deps_dir=fake_deps(tmp_path))
    names = set(zipfile.ZipFile(package.path).namelist())
    assert {"handler.py", LINUX_MODULE, "psycopg/__init__.py"} <= names
    assert {f"migctl/{name}" for name in lambda_build.MIGCTL_FILES} <= names
    assert not {n for n in names if n.startswith("migctl/cli/") or n.endswith(".pyc")}


def test_the_declared_migctl_files_are_closed_under_their_migctl_imports() -> None:
    """Every ``migctl.*`` import inside the zip's migctl code is itself in the zip."""
    root = lambda_build.MIGCTL_DIR
    files = [root / name for name in lambda_build.MIGCTL_FILES]
    for package in lambda_build.MIGCTL_PACKAGES:
        files.extend((root / package).rglob("*.py"))
    shipped = {
        p.relative_to(root.parent).with_suffix("").as_posix().replace("/", ".") for p in files
    }
    shipped |= {m.removesuffix(".__init__") for m in shipped}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            for module in modules:
                if module.split(".")[0] == "migctl":
                    assert module in shipped, f"{path.name} imports {module}, not in the zip"


def test_handler_imports_from_the_extracted_zip_with_a_clean_path(tmp_path: Path) -> None:
    package = lambda_build.build_lambda_package(tmp_path / "v.zip", deps_dir=fake_deps(tmp_path))
    tree = tmp_path / "tree"
    zipfile.ZipFile(package.path).extractall(tree)
    _import_in_clean_interpreter(tree)


def _import_in_clean_interpreter(tree: Path) -> None:
    code = (
        "import sys\n"
        f"sys.path[:] = [{str(tree)!r}] + [p for p in sys.path if 'site-packages' not in p"
        " and p not in ('', '.')]\n"
        "import handler, migctl, migctl.errors, migctl.validate\n"
        f"assert migctl.__file__.startswith({str(tree)!r}), migctl.__file__\n"
        "assert callable(handler.handler)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False, cwd=tree
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        ("migctl_in_deps", "contain a 'migctl' package"),
        ("missing_module", "declared migctl module missing"),
        ("missing_package", "declared migctl package missing"),
        ("missing_handler", "handler not found"),
    ],
)
def test_collect_files_refuses_an_incomplete_tree(
    tmp_path: Path, break_it: str, message: str
) -> None:
    deps = fake_deps(tmp_path)
    migctl_dir = fake_migctl(tmp_path, validate=break_it != "missing_package")
    handler_dir = tmp_path / "handler"
    handler_dir.mkdir()
    if break_it != "missing_handler":
        (handler_dir / "handler.py").write_text("def handler(e, c):\n    return e\n")
    if break_it == "migctl_in_deps":
        (deps / "migctl").mkdir()
        (deps / "migctl" / "__init__.py").write_text("")
    if break_it == "missing_module":
        (migctl_dir / "redact.py").unlink()
    with pytest.raises(ConfigError, match=message):
        lambda_build.collect_files(handler_dir=handler_dir, migctl_dir=migctl_dir, deps_dir=deps)


def test_a_missing_deps_dir_or_requirements_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dependencies directory not found"):
        lambda_build.build_lambda_package(tmp_path / "x.zip", deps_dir=tmp_path / "nope")
    with pytest.raises(ConfigError, match="requirements file not found"):
        lambda_build.build_lambda_package(tmp_path / "x.zip", requirements=tmp_path / "nope.txt")


def test_pip_failures_are_operational_errors(tmp_path: Path) -> None:
    def failing(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            command, 1, "", "line1\nline2\nERROR: no matching dist\n"
        )

    def missing(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(command[0])

    with pytest.raises(OperationalError, match=r"exit 1.*no matching dist"):
        lambda_build.build_lambda_package(tmp_path / "x.zip", runner=failing)
    with pytest.raises(OperationalError, match="cannot run pip"):
        lambda_build.build_lambda_package(tmp_path / "x.zip", runner=missing)
    assert not (tmp_path / "x.zip").exists()


def test_requirements_are_pinned_with_hashes() -> None:
    text = (lambda_build.HANDLER_DIR / "requirements.txt").read_text()
    pins = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    hashes = [line for line in text.splitlines() if "--hash=sha256:" in line]
    assert len(pins) == len(hashes) >= 4
    assert all("==" in pin for pin in pins)


def test_cli_lambda_build(cli: Cli, tmp_path: Path) -> None:
    deps = fake_deps(tmp_path)
    out = tmp_path / "cli.zip"
    result = cli("lambda", "build", "--deps-dir", str(deps), "--out", str(out))
    assert result.code == 0, result.stderr
    assert str(out) in result.stdout and "sha256" in result.stdout
    data = cli("-o", "json", "lambda", "build", "--deps-dir", str(deps), "--out", str(out)).json()
    assert data["path"] == str(out) and len(data["sha256"]) == 64
    assert cli("lambda", "build", "--deps-dir", str(tmp_path / "nope")).code == 2


@pytest.mark.network
def test_real_build_for_the_lambda_platform(tmp_path: Path) -> None:
    """Installs the pinned requirements from the package index (run in CI)."""
    first = lambda_build.build_lambda_package(tmp_path / "a.zip")
    second = lambda_build.build_lambda_package(tmp_path / "b.zip")
    assert first.sha256 == second.sha256, "the same pins must give the same zip"
    names = set(zipfile.ZipFile(first.path).namelist())
    assert LINUX_MODULE in names  # psycopg's compiled module for Linux x86_64, CPython 3.12
    assert "tenacity/__init__.py" in names and "handler.py" in names
    tree = tmp_path / "tree"
    zipfile.ZipFile(first.path).extractall(tree)
    _import_in_clean_interpreter(tree)


def test_build_writes_dist_in_the_current_folder_and_prints_its_absolute_path(
    cli: Cli, tmp_path: Path
) -> None:
    deps = fake_deps(tmp_path)  # the cli fixture runs in tmp_path, a folder without migctl.toml
    result = cli("lambda", "build", "--deps-dir", str(deps))
    assert result.code == 0, result.stderr
    written = tmp_path / "dist" / "validation-lambda.zip"
    assert zipfile.ZipFile(written).namelist()
    assert result.stdout.startswith(f"{written}  sha256 ")
    assert result.stderr == ""  # the stack (default lambdaPackage, here) reads this very zip
    data = cli("-o", "json", "lambda", "build", "--deps-dir", str(deps), "--out", "out/v.zip")
    assert data.json()["path"] == str(tmp_path / "out" / "v.zip")  # --out: the current folder


def test_build_warns_when_the_stack_reads_another_zip(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = fake_deps(tmp_path)
    (tmp_path / "migctl.toml").write_text('[pulumi.config]\nlambdaPackage = "artifacts/v.zip"\n')
    (tmp_path / "ops").mkdir()
    monkeypatch.chdir(tmp_path / "ops")  # migctl.toml is found one folder up
    result = cli("lambda", "build", "--deps-dir", str(deps))
    assert result.code == 0
    assert result.stdout.startswith(str(tmp_path / "ops" / "dist" / "validation-lambda.zip"))
    assert (
        f"warning: migctl up reads the package from {tmp_path / 'artifacts' / 'v.zip'}, "
        "not this one" in result.stderr
    )
    agreed = cli("lambda", "build", "--deps-dir", str(deps), "--out", "../artifacts/v.zip")
    assert agreed.code == 0 and agreed.stderr == ""


def test_the_stack_reads_lambda_package_relative_to_migctl_toml(tmp_path: Path) -> None:
    from infra_pulumi.config import DEFAULTS_PROD, DEFAULTS_TEST

    assert DEFAULTS_TEST["lambdaPackage"] == DEFAULTS_PROD["lambdaPackage"]
    assert DEFAULTS_TEST["lambdaPackage"] == lambda_build.DEFAULT_PACKAGE
    default = lambda_build.package_path({}, tmp_path)
    assert default == tmp_path / "dist" / "validation-lambda.zip"
    given = lambda_build.package_path({"lambdaPackage": "../zips/v.zip"}, tmp_path / "conf")
    assert given == tmp_path / "zips" / "v.zip"
    qualified = lambda_build.package_path({"migctl:lambdaPackage": "/srv/v.zip"}, tmp_path)
    assert qualified == Path("/srv/v.zip")
