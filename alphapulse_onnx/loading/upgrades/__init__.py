"""Upgrades for model files pickled by older releases: names, parameters and fitted state.

Every upgrade is a transformation of names and saved state inside the loader, never code from
the file, and each one applied is recorded in words (``LoadedModel.upgrades``):

- ``names``: where each name an old pickle uses lives today (modules made private in 0.22-0.24,
  distance metrics moved to ``sklearn.metrics``, retired classes become placeholders);
- ``params``: constructor parameters the running class has and the pickle lacks;
- ``fitted``: fitted state kept differently today (tree class counts before 1.4, loss objects,
  renamed attributes, behaviour that moved into apo's ``legacy`` classes);
- here: node layouts of trees (read while loading) and the walk over a model's parts.

The answers a model gave when it was saved are the measure: what cannot be reproduced is refused
with its reason (``Untranslatable``), and ``apo convert --origin`` checks the result against the
original library versions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from alphapulse_onnx.loading import standins
from alphapulse_onnx.loading.upgrades import fitted, params
from alphapulse_onnx.loading.upgrades.fitted import Untranslatable, version_tuple

__all__ = ["Untranslatable", "moved_names", "predictor_nodes", "saved_sklearn_version",
           "tree_state", "upgrade", "version_tuple"]  # fmt: skip

# (class name, attribute, default) for attributes that later versions expect on fitted objects.
_ADDED_ATTRIBUTES: tuple[tuple[str, str, Any], ...] = (
    ("SimpleImputer", "_fill_dtype", None),  # filled from statistics_.dtype below
)
_MAX_PARTS_DEPTH = 40


def moved_names(renamed: list[tuple[str, str]]) -> list[str]:
    """One note per old module (or name) that resolved somewhere else, in file order."""
    notes: dict[str, None] = {}
    for old, current in renamed:
        if current == "retired":
            continue  # the translation that replaces it says what it became
        old_module, _, old_name = old.rpartition(".")
        new_module, _, new_name = current.rpartition(".")
        if old_name == new_name:
            notes[f"module {old_module} is now {new_module}"] = None
        else:
            notes[f"{old} is now {current}"] = None
    return list(notes)


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
    note = "tree nodes gained missing_go_to_left (the layout since 1.3)"
    if note not in notes:
        notes.append(note)
    return {**state, "nodes": upgraded}


def predictor_nodes(nodes: Any, notes: list[str]) -> Any:
    """HistGradientBoosting node records of an older layout, field by field in today's.

    0.22-0.23 named ``num_threshold`` ``threshold`` and had no categorical fields (added as
    "not categorical"); numpy casts structured arrays by position, so fields go by name here.
    """
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    if not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
        return nodes
    if nodes.dtype == PREDICTOR_RECORD_DTYPE:
        return nodes
    names = {"threshold": "num_threshold"}
    present = {names.get(field, field): field for field in nodes.dtype.names}
    unknown = set(present) - set(PREDICTOR_RECORD_DTYPE.names)
    if unknown:
        return nodes  # a layout apo does not know: scikit-learn's check says what it expected
    upgraded = np.zeros(nodes.shape, dtype=PREDICTOR_RECORD_DTYPE)
    for field, old in present.items():
        upgraded[field] = nodes[old]
    if set(present) != set(PREDICTOR_RECORD_DTYPE.names):
        notes.append("HistGradientBoosting tree nodes in today's layout")
    return upgraded


def upgrade(obj: Any, versions: dict[int, str], notes: list[str]) -> Any:
    """Bring every estimator in ``obj`` to what the running release reads, recording each step.

    ``versions`` maps ``id(estimator)`` to the scikit-learn version it was pickled with.
    Raises ``Untranslatable`` when an old behaviour cannot be kept.
    """
    for estimator in _estimators(obj):
        saved = version_tuple(versions.get(id(estimator)))
        params.rename_values(estimator, notes)  # translations read today's option names
        for translation in fitted.translations_for(type(estimator)):
            translation(estimator, saved, notes)
        _added_attributes(estimator, notes)
        _plain_remainder(estimator, notes)
        params.fill(estimator, notes)
    for owner, attribute, value in _parts_with(obj, (standins.Retired, standins.RetiredSGDLoss)):
        raise Untranslatable(
            f"{type(owner).__name__}.{attribute} holds {type(value).__name__.removeprefix('Old')}, "
            "a class scikit-learn retired, which apo cannot translate"
        )
    return obj


def _added_attributes(estimator: Any, notes: list[str]) -> None:
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
        notes.append(f"{cls_name}.{attribute} set")


def _estimators(obj: Any) -> list[BaseEstimator]:
    """Every estimator a model holds, parents before their parts."""
    found: list[BaseEstimator] = []
    seen: set[int] = set()
    for _owner, _, value in _walk(obj, "", seen):
        if isinstance(value, BaseEstimator):
            found.append(value)
    return found


def _parts_with(obj: Any, kinds: tuple[type, ...]) -> Iterator[tuple[Any, str, Any]]:
    for owner, attribute, value in _walk(obj, "", set()):
        if isinstance(value, kinds):
            yield owner, attribute, value


def _walk(value: Any, attribute: str, seen: set[int], owner: Any = None,
          depth: int = 0) -> Iterator[tuple[Any, str, Any]]:  # fmt: skip
    """(owning estimator, attribute, value) for every estimator and what estimators hold,
    through lists, tuples, dicts and object arrays."""
    if depth > _MAX_PARTS_DEPTH or id(value) in seen:
        return
    if isinstance(value, (BaseEstimator, standins.Retired, standins.RetiredSGDLoss)):
        seen.add(id(value))
        yield owner, attribute, value
        if isinstance(value, BaseEstimator):
            for name, item in list(vars(value).items()):
                yield from _walk(item, name, seen, value, depth + 1)
        return
    items: Any
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, np.ndarray) and value.dtype == object:
        items = value.ravel()
    else:
        return
    seen.add(id(value))
    for item in list(items):
        yield from _walk(item, attribute, seen, owner, depth + 1)


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
        notes.append("ColumnTransformer remainder columns as a plain list")


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
