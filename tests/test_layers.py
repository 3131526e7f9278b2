"""The package picture reads top to bottom: no import (at module level or inside a function) goes
from a lower layer to a higher one, so no two packages import each other, and the method's core
imports no orchestration, tracking or storage framework."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first. A package may import its own layer and any layer below it, never one above.
LAYERS = [
    {"errors", "config", "data", "fileio", "layout", "machine", "failpoints", "rouge"},
    {"llm"},          # model backends, prompt formats, projection layers
    {"world"},        # the embedded default model
    {"mining"},       # elicit, score, expand: the memory graph
    {"supervision"},  # walks, synthesis, held-out split, data quality
    {"evaluate"},     # TOFU / probes / MIA / the audit
    {"unlearn"},      # methods, trainer (its adaptive budget scores with evaluate), SAGE, distillation
    {"agent"},        # SBU over parameters and memory
    {"mage"},         # the MAGE steps over a request folder
    {"ops"},          # adapters to MLflow, DVC, S3, Prefect, SQL: queue, registry, stack, gate
    {"pipeline"},     # Prefect tasks and flows over mage and ops
    {"cli", "__main__"},
]
CORE = set().union(*LAYERS[:8])
FRAMEWORKS = ("prefect", "mlflow", "dvc", "sqlalchemy", "boto3", "botocore", "dask", "distributed", "prefect_dask")


def _unit(module: str) -> str:
    """lethe.evaluate.audit -> evaluate; lethe.fileio -> fileio."""
    return module.split(".")[1]


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def imports() -> list[tuple[str, str, str, int]]:
    """(importing unit, imported module, file, line) for every import anywhere in lethe/."""
    found = []
    for path in sorted((ROOT / "lethe").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.name == "__init__.py" and len(rel.parts) == 2:
            continue  # lethe/__init__.py sets environment variables only
        unit = rel.parts[1].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "lethe" else [f"lethe.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [(unit, name, str(rel), node.lineno) for name in names]
    return found


def test_every_package_of_lethe_has_a_layer():
    units = {p.relative_to(ROOT / "lethe").parts[0].removesuffix(".py") for p in (ROOT / "lethe").rglob("*.py")}
    assert units - {"__init__"} <= set().union(*LAYERS), units - set().union(*LAYERS)


def test_no_import_goes_up_a_layer():
    upward = [f"{file}:{line} ({unit}) imports {name}" for unit, name, file, line in imports()
              if name.startswith("lethe.") and _layer(_unit(name)) > _layer(unit)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_core_imports_no_framework(framework):
    found = [f"{file}:{line} imports {name}" for unit, name, file, line in imports()
             if unit in CORE and (name == framework or name.startswith(f"{framework}."))]
    assert not found, "\n".join(found)


def test_the_rule_catches_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    fake = tmp_path / "lethe" / "llm"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from lethe.unlearn.trainer import unlearn\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert [(u, n) for u, n, _, _ in imports()] == [("llm", "lethe.unlearn.trainer")]
    assert _layer(_unit("lethe.unlearn.trainer")) > _layer("llm")
