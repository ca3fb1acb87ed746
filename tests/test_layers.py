"""The package floors stay honest: the experiment layer (:mod:`td3rec.experiments`: the comparison grid, its
report, the model-selection proxy) sits above distillation and evaluation, so nothing below it may import it.
Checked by parsing every module's imports (top-level and inside functions), without importing anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "td3rec"
#: the floors below the experiment layer (data -> models -> training -> summary -> distill -> evaluation)
LOWER_FLOORS = ("data", "models", "training", "summary", "distill", "evaluation")
EXPERIMENTS = "td3rec.experiments"


def imported_modules(path: Path, root: Path = SRC.parent) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (a module under the source folder ``root``);
    relative imports are resolved against the module's package, and ``from PACKAGE import name`` also yields
    ``PACKAGE.name`` (it may be a module)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _is_experiments(module: str) -> bool:
    return module == EXPERIMENTS or module.startswith(EXPERIMENTS + ".")


@pytest.mark.parametrize("floor", LOWER_FLOORS)
def test_lower_floors_never_import_the_experiment_layer(floor):
    files = sorted((SRC / floor).rglob("*.py"))
    assert files, f"no modules under td3rec/{floor}"
    offending = [f"{path.relative_to(SRC.parent)}:{line}: {module}"
                 for path in files for line, module in imported_modules(path) if _is_experiments(module)]
    assert not offending, "a lower floor imports the experiment layer:\n" + "\n".join(offending)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """The parser catches plain, from- and relative imports, also inside functions."""
    package = tmp_path / "td3rec" / "evaluation"
    package.mkdir(parents=True)
    module = package / "m.py"
    module.write_text("import td3rec.experiments.report\n"
                      "def f():\n    from td3rec.experiments import benchmark\n"
                      "from ..experiments.proxy import run_proxy\n"
                      "from .. import experiments\n"
                      "from td3rec.evaluation import metrics\n")
    hits = {(line, m) for line, m in imported_modules(module, root=tmp_path) if _is_experiments(m)}
    assert hits == {(1, "td3rec.experiments.report"), (3, "td3rec.experiments"), (3, "td3rec.experiments.benchmark"),
                    (4, "td3rec.experiments.proxy"), (4, "td3rec.experiments.proxy.run_proxy"),
                    (5, "td3rec.experiments")}
