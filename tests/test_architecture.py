"""The package's import structure (docs/ARCHITECTURE.md): imports only point down, no package imports in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ernie_tiny"

# Lowest first: a unit (a subpackage or a top-level module of ernie_tiny) may import only from its own
# layer or below. The order is docs/ARCHITECTURE.md's drawing.
LAYERS = [
    {"heads", "io_utils", "text_files", "config", "data", "devices"},  # torch-free foundations
    {"tokenization"},
    {"model", "flops"},
    {"checkpoint", "convert"},
    {"training"},  # the one loop: no task, no trainer
    {"tasks"},
    {"augment"},
    {"finetune", "pretrain", "distill"},  # the trainers
    {"deploy"},
    {"bench"},
    {"quickstart", "commands", "cli", "console", "__main__", "__init__"},
]
LAYER_OF = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path, package: Path = PACKAGE) -> str:
    return path.relative_to(package).parts[0].removesuffix(".py")


def imported_units(path: Path, tree: ast.AST | None = None) -> set[tuple[str, int]]:
    """``(unit, line)`` of every ``ernie_tiny.<unit>`` import in the file, function-local ones included."""
    found = set()
    for node in ast.walk(tree or ast.parse(path.read_text(encoding="utf-8"))):
        modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found |= {(module.split(".")[1], node.lineno) for module in modules
                  if module.startswith("ernie_tiny.") and len(module.split(".")) > 1}
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """``file:line: a -> b`` for each import of a unit from a higher layer (or of a unit in no layer)."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        unit = unit_of(path, package)
        for imported, line in sorted(imported_units(path)):
            if imported == unit:
                continue
            if unit not in LAYER_OF or imported not in LAYER_OF:
                problems.append(f"{path.relative_to(package)}:{line}: {unit} -> {imported} (a unit in no layer)")
            elif LAYER_OF[imported] > LAYER_OF[unit]:
                problems.append(f"{path.relative_to(package)}:{line}: {unit} -> {imported} (up)")
    return problems


def test_every_import_points_down():
    assert upward_imports() == []


def test_model_and_tokenization_import_no_trainer_and_no_task():
    low = [p for p in PACKAGE.rglob("*.py") if unit_of(p) in ("model", "tokenization")]
    assert low
    for path in low:
        assert not {u for u, _ in imported_units(path)} & {"pretrain", "distill", "tasks", "training", "finetune"}, path


def test_the_check_finds_an_import_that_points_up(tmp_path):
    (tmp_path / "model.py").write_text("from ernie_tiny.pretrain.masking import MaskingConfig\n", encoding="utf-8")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "loop.py").write_text("def f():\n    from ernie_tiny.tasks import get_task\n",
                                                   encoding="utf-8")
    assert upward_imports(tmp_path) == ["model.py:1: model -> pretrain (up)", "training/loop.py:2: training -> tasks (up)"]


@pytest.mark.parametrize("unit", sorted({unit_of(p) for p in PACKAGE.rglob("*.py")}))
def test_every_unit_has_a_layer(unit):
    assert unit in LAYER_OF, f"ernie_tiny/{unit}: add it to a layer here and in docs/ARCHITECTURE.md"
