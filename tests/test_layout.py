"""The package layout is the flow: imports only go down the layers, and old paths still work."""
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
    "pipeline": 3, "export": 3,
    "train": 4, "video": 4, "serve": 4, "ray": 4,
    "cli": 5, "__main__": 5,
}
# Top-level modules that only alias a moved module (old import paths).
ALIASES = {"loading": "models.loading", "zoo": "models.zoo", "convert": "models.convert",
           "imageio": "io.images", "restorer": "pipeline.restorer", "upsampler": "pipeline.upsampler",
           "batch": "pipeline.batch"}


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
        if part in ALIASES or part == "__init__":
            continue
        if part not in LAYERS:
            wrong.append(f"{name}: new top-level part; give it a layer in tests/test_layout.py")
            continue
        for target in _imported_parts(module_file, package):
            if target in ALIASES:
                wrong.append(f"{name} imports the old alias facerestore.{target}")
            elif target in LAYERS and LAYERS[target] > LAYERS[part]:
                wrong.append(f"{name} ({part}) imports {target}, a higher layer")
    return wrong


def test_imports_run_one_way():
    wrong = layering_violations(PACKAGE)
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_wrong_imports(tmp_path):
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "x.py").write_text("from ..pipeline import restorer\n")
    (tmp_path / "face").mkdir()
    (tmp_path / "face" / "y.py").write_text("import facerestore.serve.app\nfrom facerestore.zoo import x\n")
    wrong = layering_violations(tmp_path)
    assert any("archs/x.py (archs) imports pipeline" in w for w in wrong)
    assert any("face/y.py (face) imports serve" in w for w in wrong)
    assert any("old alias facerestore.zoo" in w for w in wrong)


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_old_import_paths_are_the_same_modules(old, new):
    assert importlib.import_module(f"facerestore.{old}") is importlib.import_module(f"facerestore.{new}")


def test_public_names():
    import facerestore

    for name in ("load_model", "Restorer", "Upsampler", "load_detector", "CheckpointError"):
        assert callable(getattr(facerestore, name))
