"""The package as a whole: its public namespaces and its license."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import symdiff as sd


@pytest.mark.parametrize("module", [sd, sd.nn, sd.optim, sd.datasets], ids=lambda m: m.__name__)
def test_dir_of_public_modules_lists_no_imports(module) -> None:
    public = [n for n in dir(module) if not n.startswith("__")]
    assert public == sorted(module.__all__), set(public) ^ set(module.__all__)
    assert "np" not in public and "annotations" not in public
    assert all(hasattr(module, n) for n in public)


def test_license_file_matches_pyproject() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    license_text = (root / "LICENSE").read_text(encoding="utf-8")
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "MIT"}
    assert license_text.startswith("MIT License\n") and "Copyright (c) 2026 symdiff developers" in license_text


# -- the import graph ---------------------------------------------------------------------------------
PACKAGE = Path(sd.__file__).resolve().parent
# The core builds, differentiates, simplifies, prints and compiles expressions; the driver (training) and the CLI
# are built on it, never the other way round.
CORE = {"errors", "naming", "graph", "dims", "folding", "functions", "ops", "autodiff", "simplify", "printing"}
CORE |= {"lower", "memory", "codegen", "runtime", "sympy_bridge", "pictures", "forward", "derivatives", "explain"}
DRIVER_AND_CLI = {"step", "optim", "train", "cli", "modelfile", "demo", "__main__"}


def _module_names(root: Path) -> dict[str, Path]:
    """``symdiff.ops.shape`` -> its file, for every module of the package at ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (imported for annotations only, never run)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports, at module level or inside functions.

    Importing ``a.b.c`` also runs the ``__init__`` of each package above it that the importer is not inside.
    """
    modules = _module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets.update(f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names)
        imported = set()
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                above = ".".join(parts[:i])
                if above in modules and above != name and not name.startswith(above + "."):
                    imported.add(above)
        graph[name] = imported
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Modules importing each other in a circle, ``[a, b, ..., a]``, or None (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path.pop())
            elif nxt in path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_modules_import_each_other_without_a_cycle() -> None:
    """Counting imports inside functions: the package is layered (errors, naming -> ops.registry -> graph -> dims
    -> folding -> functions -> ops entries -> simplify -> printing -> autodiff, lower, memory -> codegen -> runtime
    -> driver -> CLI), so each module can be read, tested and imported with only the ones below it."""
    graph = import_graph()
    assert graph["symdiff.graph"] >= {"symdiff.ops", "symdiff.ops.registry"}  # the package __init__ edge counts
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_never_imports_the_driver_or_the_cli() -> None:
    graph = import_graph()
    core = [m for m in graph if m.split(".")[1:2] and m.split(".")[1] in CORE]
    assert len(core) > len(CORE)  # the ops package's modules too
    above = {f"symdiff.{m}" for m in DRIVER_AND_CLI} | {"symdiff"}  # the package __init__ imports the driver
    wrong = {m: sorted(graph[m] & above) for m in core}
    assert not any(wrong.values()), {m: t for m, t in wrong.items() if t}
