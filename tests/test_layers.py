"""Layers: the Dask engine and the data-file modules never import commands or views, and the
predict view imports nothing that scores (only the result types it renders)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alphapulse_onnx

PACKAGE = Path(alphapulse_onnx.__file__).parent
LOWER_LAYERS = sorted(
    [
        "distributed.py",
        "prediction_columns.py",
        "_fsutil.py",
        *(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "datafiles").glob("*.py")),
    ]
)


def _imported(tree: ast.AST, *, skip_type_checking: bool = False) -> set[str]:
    """Every module an import statement names, including ``from x import y`` as ``x.y``."""
    names: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if (
            skip_type_checking
            and isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            continue  # imported for annotations only, never at run time
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        names |= _imported(node, skip_type_checking=skip_type_checking)
    return names


@pytest.mark.parametrize("module", LOWER_LAYERS)
def test_lower_layers_import_no_command_or_view(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    upward = {
        name
        for name in _imported(tree)
        if name.startswith(("alphapulse_onnx.commands", "alphapulse_onnx.views"))
    }
    assert not upward


def test_the_predict_view_only_renders() -> None:
    tree = ast.parse((PACKAGE / "views" / "predict.py").read_text(encoding="utf-8"))
    runtime_imports = _imported(tree, skip_type_checking=True)
    assert not {
        name
        for name in runtime_imports
        if name.startswith(("alphapulse_onnx.distributed", "alphapulse_onnx.store"))
        or name == "alphapulse_onnx.commands.predict_dask"
    }
