"""The project stands alone: nothing cites a file outside the repository, nothing is left unused."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from source_support import MODULES

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./shared|\bshared/[\w.-]+\.(md|txt)\b|\b(REFERENCE|STYLE)\.md\b")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        ROOT / n for n in names if Path(n).suffix in {".py", ".md", ".toml", ".txt", ".sh", ".cfg"}
    ]


def test_no_file_cites_one_outside_the_repository() -> None:
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in tracked_text_files()
        if path.is_file() and path.name != "CHANGELOG.md"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert cited == []


def test_every_exception_class_is_raised_or_caught_somewhere() -> None:
    defined: dict[str, str] = {}
    used: set[str] = set()
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name)
                and (b.id.endswith(("Error", "Exception")) or b.id in defined)
                for b in node.bases
            ):
                defined[node.name] = name
            elif isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(target, ast.Name):
                    used.add(target.id)
            elif isinstance(node, ast.ExceptHandler) and node.type is not None:
                for t in node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]:
                    if isinstance(t, ast.Name):
                        used.add(t.id)
    # base classes of the hierarchy are what the others derive from
    bases = {"MigctlError", "CheckFailed", "UsageError", "OperationalError"}
    unused = sorted(f"{module}.{cls}" for cls, module in defined.items() if cls not in used | bases)
    assert unused == []
