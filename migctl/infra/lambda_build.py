"""Build the validation Lambda's zip: handler, the migctl code it runs, and its dependencies.

The dependencies come from pinned, hashed requirements, installed by pip for
the Lambda platform (``manylinux2014_x86_64``, CPython 3.12, wheels only), so
psycopg's compiled module in the zip is the Linux one whatever machine builds
it. The zip is reproducible: entries are sorted, every timestamp is
1980-01-01 and permissions are normalised, so the same inputs give the same
bytes and Pulumi sees no change when nothing changed.

Which migctl files go in is declared here (:data:`MIGCTL_FILES` and
:data:`MIGCTL_PACKAGES`); a test checks that every ``migctl`` import inside
them is satisfied by the zip itself.

Where the zip is: ``migctl lambda build`` writes :data:`DEFAULT_PACKAGE` under the
current folder, or ``--out`` (relative to the current folder). The stack reads
``migctl:lambdaPackage`` (default :data:`DEFAULT_PACKAGE`); a relative value is relative
to the folder of the file that sets it, so for migctl (``[pulumi] config`` or the
default) the folder of migctl.toml (:func:`package_path`), and migctl hands the program
that absolute path.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import infra_pulumi
from migctl.errors import ConfigError, OperationalError

HANDLER_DIR = Path(infra_pulumi.__file__).resolve().parent / "lambdas" / "validation"
MIGCTL_DIR = Path(__file__).resolve().parent.parent
#: Where ``lambda build`` writes (under the current folder) and where the stack reads (under
#: migctl.toml's folder) by default; infra_pulumi.config's default of lambdaPackage (a test
#: keeps the two equal).
DEFAULT_PACKAGE = "dist/validation-lambda.zip"
PACKAGE_KEY = "lambdaPackage"

PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.12"
HANDLER_FILE = "handler.py"
# migctl.validate and the small modules it imports; nothing that needs the CLI.
MIGCTL_FILES = (
    "__init__.py",
    "errors.py",
    "redact.py",
    "secrets.py",
    "aws.py",
    "db.py",
    "config.py",
    "pgnames.py",
)
MIGCTL_PACKAGES = ("validate",)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")

Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


@dataclass(frozen=True)
class LambdaPackage:
    """The zip written: where, its SHA-256, size and number of entries."""

    path: Path
    sha256: str
    size_bytes: int
    entries: int


def absolute(path: Path, base: Path | None = None) -> Path:
    """``path`` (``~`` expanded) made absolute against ``base`` (default: the current folder)
    and normalised, without resolving symbolic links."""
    path = path.expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else (base or Path.cwd()) / path))


def package_path(config: Mapping[str, object], base_dir: Path) -> Path:
    """The zip the stack reads: ``lambdaPackage`` of ``[pulumi] config`` (default
    :data:`DEFAULT_PACKAGE`), relative to ``base_dir`` (the folder of migctl.toml)."""
    value = config.get(PACKAGE_KEY, config.get(f"migctl:{PACKAGE_KEY}"))
    text = value if isinstance(value, str) and value else DEFAULT_PACKAGE
    return absolute(Path(text), base_dir)


def pip_command(requirements: Path, target: Path, *, python: str | None = None) -> list[str]:
    """The pip invocation that installs the requirements for the Lambda platform."""
    return [
        python or sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--platform",
        PLATFORM,
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        "--require-hashes",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
    ]


def install_dependencies(
    requirements: Path, target: Path, *, runner: Runner = subprocess.run
) -> None:
    """Run pip into ``target``; a failure is an OperationalError with pip's last lines."""
    if not requirements.is_file():
        raise ConfigError(f"requirements file not found: {requirements}")
    command = pip_command(requirements, target)
    try:
        result = runner(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise OperationalError(f"cannot run pip: {exc}") from None
    if result.returncode != 0:
        tail = " ".join(str(result.stderr or "").strip().splitlines()[-3:])
        raise OperationalError(
            f"pip install for the Lambda platform failed (exit {result.returncode}): {tail}",
            hint="the build needs the package index; check network access and the pins",
        )


def collect_files(*, handler_dir: Path, migctl_dir: Path, deps_dir: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) pairs: dependencies, the declared migctl code, the handler."""
    files: dict[str, Path] = {}
    for path in _walk(deps_dir):
        files[path.relative_to(deps_dir).as_posix()] = path
    if any(name.startswith("migctl/") for name in files):
        raise ConfigError("the dependencies contain a 'migctl' package; remove it from the pins")
    for name in MIGCTL_FILES:
        path = migctl_dir / name
        if not path.is_file():
            raise ConfigError(f"declared migctl module missing: {path}")
        files[f"migctl/{name}"] = path
    for package in MIGCTL_PACKAGES:
        root = migctl_dir / package
        if not root.is_dir():
            raise ConfigError(f"declared migctl package missing: {root}")
        for path in _walk(root):
            files[f"migctl/{package}/{path.relative_to(root).as_posix()}"] = path
    handler = handler_dir / HANDLER_FILE
    if not handler.is_file():
        raise ConfigError(f"handler not found: {handler}")
    files[HANDLER_FILE] = handler
    return sorted(files.items())


def write_zip(files: Sequence[tuple[str, Path]], out: Path) -> LambdaPackage:
    """Write a reproducible zip: sorted entries, fixed timestamps, normalised modes.

    ``out`` relative is relative to the current folder; the package's ``path`` is absolute."""
    out = absolute(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the modes below are honoured
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(out)
    data = out.read_bytes()
    return LambdaPackage(
        path=out,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        entries=len(files),
    )


def build_lambda_package(
    out: Path = Path(DEFAULT_PACKAGE),
    *,
    requirements: Path | None = None,
    deps_dir: Path | None = None,
    handler_dir: Path = HANDLER_DIR,
    migctl_dir: Path = MIGCTL_DIR,
    runner: Runner = subprocess.run,
) -> LambdaPackage:
    """Install the pinned dependencies (unless ``deps_dir`` is given) and write the zip
    (``out`` relative to the current folder)."""
    if deps_dir is not None:
        if not deps_dir.is_dir():
            raise ConfigError(f"dependencies directory not found: {deps_dir}")
        files = collect_files(handler_dir=handler_dir, migctl_dir=migctl_dir, deps_dir=deps_dir)
        return write_zip(files, out)
    with tempfile.TemporaryDirectory(prefix="migctl-lambda-") as tmp:
        target = Path(tmp)
        install_dependencies(
            requirements or handler_dir / "requirements.txt", target, runner=runner
        )
        files = collect_files(handler_dir=handler_dir, migctl_dir=migctl_dir, deps_dir=target)
        return write_zip(files, out)


def _walk(root: Path) -> list[Path]:
    """Regular files under ``root``, without bytecode caches."""
    found = []
    for path in root.rglob("*"):
        if any(part in SKIPPED_DIRS for part in path.relative_to(root).parts):
            continue
        if path.is_file() and not path.name.endswith(SKIPPED_SUFFIXES):
            found.append(path)
    return found
