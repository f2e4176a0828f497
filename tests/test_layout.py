"""The generic top-level names must resolve to this repository, not an installed package."""

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["models", "tasks", "flows", "serving", "settings", "cli", "demo"])
def test_package_imports_from_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(REPO)


def test_serving_imports_without_prefect_lightfm_or_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys, serving, serving.store, serving.handler, serving.connection\n"
        "heavy = [m for m in ('prefect', 'lightfm', 'pandas', 'mlflow') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == ""


def test_models_package_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, models, models.schema; print('lightfm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


LAYERS = {
    # package: what it must never import (the domain layer knows no I/O layer or Prefect;
    # the serving layer knows nothing of the pipeline).
    "models": ("serving", "tasks", "flows", "prefect", "cli"),
    "serving": ("tasks", "flows", "prefect", "mlflow", "lightfm", "pandas", "numpy", "scipy",
                "sklearn", "typer", "great_expectations", "optuna", "cli", "demo"),
}


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_respect_the_layers(package: str) -> None:
    import ast

    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and
                     node.level == 0 else [])
            found += [f"{path.relative_to(REPO)}: {name}" for name in names
                      if name.split(".")[0] in LAYERS[package]]
    assert found == []

