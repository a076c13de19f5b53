"""Upgrades for model files pickled by older scikit-learn: renamed classes and added attributes.

The safe loader consults this table before it refuses a global, so an old file that names a class
scikit-learn has since renamed or removed still loads, as the current class it became.
"""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.base import BaseEstimator

# old dotted name -> current dotted name
_RENAMED: dict[str, str] = {
    # KNN models saved before 1.3 name the float64 metric classes without the "64" suffix.
    "sklearn.metrics._dist_metrics.EuclideanDistance": (
        "sklearn.metrics._dist_metrics.EuclideanDistance64"
    ),
    "sklearn.metrics._dist_metrics.ManhattanDistance": (
        "sklearn.metrics._dist_metrics.ManhattanDistance64"
    ),
    "sklearn.metrics._dist_metrics.MinkowskiDistance": (
        "sklearn.metrics._dist_metrics.MinkowskiDistance64"
    ),
    "sklearn.metrics._dist_metrics.ChebyshevDistance": (
        "sklearn.metrics._dist_metrics.ChebyshevDistance64"
    ),
    # ColumnTransformer's remainder column list (1.5-1.6) was a private list subclass.
    "sklearn.compose._column_transformer._RemainderColsList": "builtins.list",
}

# (class name, attribute, default) for attributes that later versions expect on fitted objects.
_ADDED_ATTRIBUTES: tuple[tuple[str, str, Any], ...] = (
    ("SimpleImputer", "_fill_dtype", None),  # filled from statistics_.dtype below
    ("OneHotEncoder", "_infrequent_enabled", False),
    ("OneHotEncoder", "_drop_idx_after_grouping", None),
)


def find_renamed(module: str, name: str) -> Any | None:
    """The current object for an old global name, or ``None`` when it was never renamed."""
    target = _RENAMED.get(f"{module}.{name}")
    if target is None:
        return None
    new_module, _, new_name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(new_module), new_name)
    except (ImportError, AttributeError):
        return None


def upgrade(obj: Any, notes: list[str]) -> Any:
    """Fill attributes that newer scikit-learn expects, walking pipelines and column transformers."""
    for estimator in _walk(obj, depth=0):
        cls_name = type(estimator).__name__
        for owner, attribute, default in _ADDED_ATTRIBUTES:
            if cls_name != owner or hasattr(estimator, attribute):
                continue
            if attribute == "_fill_dtype" and hasattr(estimator, "statistics_"):
                value = estimator.statistics_.dtype
            elif attribute == "_fill_dtype":
                continue
            else:
                value = default
            setattr(estimator, attribute, value)
            notes.append(f"upgraded old state: set {cls_name}.{attribute}")
    return obj


def _walk(obj: Any, depth: int) -> list[BaseEstimator]:
    if depth > 8 or not isinstance(obj, BaseEstimator):
        return []
    found: list[BaseEstimator] = [obj]
    children: list[Any] = []
    for attr in ("steps", "transformer_list", "transformers_", "estimators_"):
        value = getattr(obj, attr, None)
        if isinstance(value, list):
            for item in value:
                children.append(item[1] if isinstance(item, tuple) and len(item) >= 2 else item)
    for attr in ("estimator", "base_estimator", "final_estimator_", "estimator_"):
        value = getattr(obj, attr, None)
        if value is not None:
            children.append(value)
    for child in children:
        found.extend(_walk(child, depth + 1))
    return found
