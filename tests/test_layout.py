"""The package layout is the flow: imports only go down the layers, and no module imports another in a circle."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facerestore"

# Lower number = lower layer. A module may import its own layer or lower ones, never higher.
LAYERS = {
    "archs": 0, "io": 0, "data": 0,
    "models": 1,
    "face": 2, "metrics": 2,
    "pipeline": 3, "export": 3, "engines": 3,
    "train": 4, "serve": 4, "ray": 4,
    "cli": 5, "__main__": 5,
}


def _imported_parts(module_file: Path, package: Path) -> set[str]:
    tree = ast.parse(module_file.read_text())
    package_parts = module_file.relative_to(package).parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = list(package_parts[: len(package_parts) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from .. import x" at the top: x is the part
                    found.update(alias.name for alias in node.names)
                else:
                    found.add(target[0])
            elif node.module and node.module.startswith("facerestore."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("facerestore."))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("facerestore."):
                found.add(str(arg.value).split(".")[1])
    return found


def layering_violations(package: Path) -> list[str]:
    wrong = []
    for module_file in sorted(package.rglob("*.py")):
        name = module_file.relative_to(package)
        part = name.parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        if part not in LAYERS:
            wrong.append(f"{name}: new top-level part; give it a layer in tests/test_layout.py")
            continue
        for target in _imported_parts(module_file, package):
            if target in LAYERS and LAYERS[target] > LAYERS[part]:
                wrong.append(f"{name} ({part}) imports {target}, a higher layer")
    return wrong


def test_imports_run_one_way():
    wrong = layering_violations(PACKAGE)
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_wrong_imports(tmp_path):
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "x.py").write_text("from ..pipeline import restorer\n")
    (tmp_path / "face").mkdir()
    (tmp_path / "face" / "y.py").write_text("import facerestore.serve.app\n")
    wrong = layering_violations(tmp_path)
    assert any("archs/x.py (archs) imports pipeline" in w for w in wrong)
    assert any("face/y.py (face) imports serve" in w for w in wrong)


def test_public_names():
    import facerestore

    for name in ("load_model", "Restorer", "Upsampler", "load_detector", "CheckpointError"):
        assert callable(getattr(facerestore, name))


# --------------------------------------------------------------------------- import cycles
#
# Every import of a facerestore module counts, wherever it is written: at module level and inside
# functions alike. A lazy import inside a function still ties the two modules together (each
# needs the other to work), and it is how a real cycle hides from a module-level check; only
# imports under ``if TYPE_CHECKING:`` are left out (they never run). ``from pkg import name``
# counts as an import of ``pkg.name`` when that is a module, else of ``pkg`` (its __init__).

# Cycles known and being removed; each entry names what ends it, and the test fails once it is
# gone so that the entry is deleted with it. None are left.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_names(package: Path, root: str) -> dict[Path, str]:
    names = {}
    for module_file in package.rglob("*.py"):
        parts = module_file.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[module_file] = ".".join((root, *parts))
    return names


def _imports(module_file: Path, name: str, known: set[str], root: str) -> set[str]:
    """The package's modules that ``module_file`` (module ``name``) imports, TYPE_CHECKING aside."""
    is_package = module_file.name == "__init__.py"
    package_parts = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def target(module: str, names: list[str]) -> None:
        for n in names:
            if f"{module}.{n}" in known:
                found.add(f"{module}.{n}")
            elif module in known:
                found.add(module)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                module = node.module or ""
            if module == root or module.startswith(root + "."):
                target(module, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and arg.value in known:
                found.add(arg.value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(module_file.read_text()))
    found.discard(name)
    return found


def import_graph(package: Path, root: str = "facerestore") -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the comment above for what counts)."""
    names = _module_names(package, root)
    known = set(names.values())
    return {name: _imports(path, name, known, root) for path, name in names.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a circle (strongly connected components of
    more than one module, Tarjan's algorithm), each as a closed path ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_closed_path(graph, group) for group in groups]


def _closed_path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One circle through the group's first module (breadth-first, so the shortest)."""
    start = min(group)
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    return sorted(group)


def test_no_module_imports_another_in_a_circle():
    cycles = import_cycles(import_graph(PACKAGE))
    unknown = [c for c in cycles if frozenset(c) not in KNOWN_CYCLES]
    assert not unknown, "import cycles:\n" + "\n".join(" -> ".join(c) for c in unknown)
    gone = KNOWN_CYCLES - {frozenset(c) for c in cycles}
    assert not gone, f"no longer a cycle, delete it from KNOWN_CYCLES: {gone}"


def test_the_cycle_check_sees_a_circle(tmp_path):
    pkg = tmp_path / "facerestore"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from . import y\n")
    (pkg / "a" / "y.py").write_text("def f():\n    from ..b import z  # lazy: still a cycle\n")
    (pkg / "b.py").write_text("")
    (pkg / "c.py").write_text("import facerestore.a.x\n")
    (pkg / "z.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import q\n"
                              "else:\n    importlib.import_module('facerestore.b')\n")
    graph = import_graph(pkg)
    assert graph["facerestore.a.x"] == {"facerestore.a.y"}
    assert graph["facerestore.a.y"] == {"facerestore.b"}
    assert graph["facerestore.z"] == {"facerestore.b"}  # TYPE_CHECKING imports never run
    assert import_cycles(graph) == []
    (pkg / "b.py").write_text("from .c import *\n")
    cycles = import_cycles(import_graph(pkg))
    assert cycles == [["facerestore.a.x", "facerestore.a.y", "facerestore.b", "facerestore.c", "facerestore.a.x"]]


def test_the_0_0_aliases_are_gone():
    for old in ("loading", "zoo", "convert", "imageio", "restorer", "upsampler", "batch", "video"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"facerestore.{old}")
