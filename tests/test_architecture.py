"""The layout's rules, checked on the source: no import cycle, vad_core free of dagster and mlflow,
modules of at most 400 lines.

The import graph is built with `ast` from every module of vad_core and vad_pipeline, imports
inside functions included (a lazy import hides a cycle, it does not remove one). Importing
`a.b.c` also runs the packages `a` and `a.b` (their `__init__` re-exports), so an edge goes to
each of those packages too, except the importing module's own packages (they are already
being initialized when it runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vad_core", "vad_pipeline")
FORBIDDEN_IN_CORE = ("dagster", "mlflow", "vad_pipeline")
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    """`{dotted module name: file}` of every module of the two packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name an import statement in `path` refers to (absolute, relative resolved)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def import_graph() -> dict[str, set[str]]:
    """Edges between the project's own modules, package `__init__`s included (see the module doc)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in files and target != module and target not in own:
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path `[a, b, ..., a]`, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child, 2) == 1:
                return path[path.index(child) :] + [child]
            elif colour.get(child) == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]


def test_the_graph_sees_package_inits_and_lazy_imports() -> None:
    graph = import_graph()
    # an import of vad_core.diffusion.training from another stage also runs vad_core.diffusion
    assert "vad_core.diffusion" in graph["vad_core.scoring.scorers.diffusion"]
    assert "vad_core.diffusion.training" in graph["vad_core.scoring.scorers.diffusion"]
    # a function-level import counts (vad_pipeline.cli.demo imports the definitions inside run())
    assert "vad_pipeline.definitions" in graph["vad_pipeline.cli.demo"]


def test_no_import_cycle_in_vad_core_or_vad_pipeline() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_vad_core_imports_neither_dagster_nor_mlflow() -> None:
    files = module_files()
    offenders = []
    for module, path in files.items():
        if module.split(".")[0] != "vad_core":
            continue
        for name in imported_names(module, path):
            if name.split(".")[0] in FORBIDDEN_IN_CORE:
                offenders.append(f"{module} imports {name}")
    assert not offenders, offenders


def test_importing_all_of_vad_core_loads_no_dagster_or_mlflow() -> None:
    """Transitively too: import every vad_core module in a fresh interpreter and look at sys.modules."""
    core = sorted(m for m in module_files() if m.startswith("vad_core"))
    code = (
        "import importlib, sys\n"
        f"for m in {core!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_IN_CORE!r})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"vad_core pulled in: {out.stdout.strip()}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_400_lines(package: str) -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
