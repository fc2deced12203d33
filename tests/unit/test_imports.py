"""migctl's import graph: no cycles, and imports inside functions only where they keep start-up fast.

The graph holds module-level and function-level imports (those under ``if
TYPE_CHECKING:`` never run, and are left out). Inside a function of the core
(everything but ``cli/`` and ``render/``), only the heavy third-party modules
that a command may not need are imported; ``cli/`` and ``render/`` import the
core and rich inside the command that needs them, since ``--help`` builds every
command (docs/architecture.md).
"""

from __future__ import annotations

import ast

from source_support import MODULES, runtime_nodes

# Imported where used: each costs start-up time, or is only there for some commands.
HEAVY = {"boto3", "botocore", "psycopg", "pulumi", "moto", "tenacity", "yaml", "semver"}
HEAVY |= {"infra_pulumi", "rich"}  # the Pulumi program (pulumi); rich (progress, tables)
LAZY_LAYERS = {"cli", "render"}


def resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str) -> set[str]:
    """The migctl modules ``name`` imports when it runs (``from pkg import mod`` counts mod)."""
    found = set()
    for node in runtime_nodes(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(a.name) for a in node.names if a.name.startswith("migctl")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("migctl"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in MODULES else resolve(node.module))
    found.discard(None)
    found.discard(name)
    return {f for f in found if f is not None}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start, edges in graph.items():
        if start in index:
            continue
        work = [(start, iter(sorted(edges)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_of_migctl_sits_in_an_import_cycle() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a made-up graph with a cycle is caught."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_core_functions_import_only_heavy_third_party_modules() -> None:
    """In the core, a migctl module or a cheap one is imported at the top of the module."""
    offenders = []
    for name, path in MODULES.items():
        if name.split(".")[1:2] and name.split(".")[1] in LAZY_LAYERS:
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in runtime_nodes(function):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                offenders += [f"{name}:{node.lineno} {t}" for t in tops if t not in HEAVY]
    assert offenders == []
