"""Upgrades for model files pickled by older scikit-learn: renamed classes and old state.

Every upgrade is a transformation of names and saved state inside the loader, never code from
the file. Known changes:

- KNN models saved before 1.3 name the float64 distance metrics without the ``64`` suffix
  (``EuclideanDistance`` is now ``EuclideanDistance64``).
- Trees saved before 1.3 have node arrays without the ``missing_go_to_left`` field, which
  scikit-learn's own ``Tree.__setstate__`` refuses; the field is added as 0 (those versions
  could not route missing values at all, so the flag is never read for their trees).
- ``SimpleImputer._fill_dtype`` (added in 1.6) is the dtype of the fitted statistics.
- ``OneHotEncoder._infrequent_enabled`` / ``_drop_idx_after_grouping`` (added in 1.1) default to
  "no infrequent categories".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

_DIST_METRICS = "sklearn.metrics._dist_metrics"

# (class name, attribute, default) for attributes that later versions expect on fitted objects.
_ADDED_ATTRIBUTES: tuple[tuple[str, str, Any], ...] = (
    ("SimpleImputer", "_fill_dtype", None),  # filled from statistics_.dtype below
    ("OneHotEncoder", "_infrequent_enabled", False),
    ("OneHotEncoder", "_drop_idx_after_grouping", None),
)


def renamed(module: str, name: str) -> tuple[str, str] | None:
    """The current ``(module, name)`` for an old global, or ``None`` when it was never renamed."""
    if module == _DIST_METRICS and not name.endswith(("32", "64")) and name.endswith("Distance"):
        return module, f"{name}64"  # EuclideanDistance -> EuclideanDistance64 (1.3)
    return None


def tree_state(state: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Node arrays from before 1.3 lack ``missing_go_to_left``: add it, in today's layout."""
    from sklearn.tree._tree import NODE_DTYPE

    nodes = state.get("nodes")
    if not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
        return state
    if "missing_go_to_left" in nodes.dtype.names:
        return state
    missing = set(NODE_DTYPE.names) - set(nodes.dtype.names) - {"missing_go_to_left"}
    if missing:
        return state  # another layout: let scikit-learn say what it expected
    upgraded = np.zeros(nodes.shape, dtype=NODE_DTYPE)
    for field in nodes.dtype.names:
        if field in NODE_DTYPE.names:
            upgraded[field] = nodes[field]
    note = "upgraded old state: tree nodes gained missing_go_to_left"
    if note not in notes:
        notes.append(note)
    return {**state, "nodes": upgraded}


def upgrade(obj: Any, notes: list[str]) -> Any:
    """Fill what newer scikit-learn expects, walking pipelines and column transformers."""
    for estimator in _walk(obj, depth=0):
        cls_name = type(estimator).__name__
        _plain_remainder(estimator, notes)
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


def _plain_remainder(estimator: Any, notes: list[str]) -> None:
    """ColumnTransformers saved by 1.5-1.6 hold remainder columns in a private list subclass
    (loaded as ``standins.RemainderColsList``): make them the plain list 1.7 and later use."""
    from alphapulse_onnx.loading.standins import RemainderColsList

    transformers = estimator.__dict__.get("transformers_")
    if not isinstance(transformers, list):
        return
    changed = False
    for i, item in enumerate(transformers):
        if isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], RemainderColsList):
            transformers[i] = (item[0], item[1], list(item[2]))
            changed = True
    remainder = estimator.__dict__.get("_remainder")
    if (
        isinstance(remainder, tuple)
        and len(remainder) == 3
        and isinstance(remainder[2], RemainderColsList)
    ):
        estimator._remainder = (remainder[0], remainder[1], list(remainder[2]))
        changed = True
    if changed:
        notes.append("upgraded old state: ColumnTransformer remainder columns as a plain list")


def _walk(obj: Any, depth: int) -> list[BaseEstimator]:
    if depth > 8 or not isinstance(obj, BaseEstimator):
        return []
    found: list[BaseEstimator] = [obj]
    children: list[Any] = []
    for attr in ("steps", "transformer_list", "transformers_", "estimators_", "estimators"):
        value = getattr(obj, attr, None)
        if isinstance(value, np.ndarray) and value.dtype == object:
            value = list(value.ravel())
        if isinstance(value, list):
            children.extend(
                item[1] if isinstance(item, tuple) and len(item) >= 2 else item for item in value
            )
    for attr in ("estimator", "base_estimator", "final_estimator_", "estimator_"):
        value = getattr(obj, attr, None)
        if value is not None:
            children.append(value)
    for child in children:
        found.extend(_walk(child, depth + 1))
    return found


# Every fitted estimator pickles ``_sklearn_version`` next to its state: a short string opcode
# for the key, at most a few framing bytes, then the version as a short string.
_VERSION_IN_PICKLE = re.compile(
    rb"_sklearn_version.{1,12}?(\d+\.\d+(?:\.\d+)?(?:\.?(?:dev|rc|post|a|b)\d*)?)", re.S
)
_SCAN_LIMIT = 64 * 1024 * 1024


def saved_sklearn_version(path: Path) -> str | None:
    """The scikit-learn version a pickle was written with, read from its bytes without loading it.

    Used in errors when no upgrade is known, to name the version the file needs next to the one
    running. joblib's compressed files are decompressed by joblib's own reader first.
    """
    from joblib import numpy_pickle

    try:
        with (
            path.open("rb") as raw,
            numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _),
        ):
            if isinstance(handle, str):
                return None
            data = handle.read(_SCAN_LIMIT)
    except Exception:  # unreadable or not joblib/pickle: no version to report
        return None
    match = _VERSION_IN_PICKLE.search(data)
    return match.group(1).decode() if match else None
