"""Models saved inside something else: a dict, list or tuple, or a hyper-parameter search.

Training scripts often save ``{"pipeline": model, "threshold": 0.42, "features": [...]}`` or
``(model, feature_names)``, or the fitted ``GridSearchCV`` itself. The model is found here:

- one estimator in a dict/list/tuple (looked into two levels deep) is the model; its plain
  neighbours (numbers, strings, short lists of them) are kept as metadata for the manifest;
- several: ``--select KEY`` chooses (files with one model ignore it), else the only one that
  predicts is taken (the others are named in a warning: a scaler saved beside a model is not part
  of the artifact), else the file fails, asking for ``--select``;
- a raw LightGBM/XGBoost ``Booster`` gets its scikit-learn wrapper (``boosters``);
- a search (``GridSearchCV``, ``RandomizedSearchCV``, halving searches) refitted on the best
  parameters answers with ``best_estimator_``: that is the model; its best parameters and
  score become metadata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from alphapulse_onnx.errors import ModelLoadError
from alphapulse_onnx.loading import boosters

_SEARCHES = frozenset(
    {"GridSearchCV", "RandomizedSearchCV", "HalvingGridSearchCV", "HalvingRandomSearchCV"}
)
_MAX_DEPTH = 2  # {"models": {"churn": model}} at most
_MAX_ITEMS = 1000  # longer lists and arrays are not metadata
_MAX_TEXT = 1000


@dataclass(frozen=True)
class Found:
    """The model in a file, where it was, and what was saved beside it."""

    model: Any
    selected: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def unwrap(obj: Any, path: Path, select: str | None) -> Found:
    found = _unwrap(obj, path, select)
    if not boosters.is_booster(found.model):
        return found
    try:
        model, note = boosters.as_estimator(found.model)
    except boosters.BoosterObjectiveError as exc:
        raise ModelLoadError(f"holds {exc}, which apo does not convert", path=path) from None
    return Found(model, found.selected, found.metadata, (*found.notes, note))


def _unwrap(obj: Any, path: Path, select: str | None) -> Found:
    if isinstance(obj, BaseEstimator):  # --select only chooses among several
        return _search(obj, path) if type(obj).__name__ in _SEARCHES else Found(obj)
    if not isinstance(obj, (dict, list, tuple)):
        return Found(obj)  # check_estimator names what it is
    candidates = dict(_estimators(obj, "", 0))
    if len(candidates) < 2:
        select = None  # --select only chooses among several: a registry-wide flag
    if select is not None:
        select = select.removesuffix(".best_estimator_")  # as the manifest records a search
        if select not in candidates:
            raise ModelLoadError(
                f"--select {select}: no model under that key "
                f"(models here: {_names(candidates) or 'none'})",
                path=path,
            )
        chosen = select
    elif not candidates:
        return Found(obj)
    elif len(candidates) == 1:
        chosen = next(iter(candidates))
    else:
        predictors = [key for key, est in candidates.items() if hasattr(est, "predict")]
        if len(predictors) != 1:
            raise ModelLoadError(
                f"holds {len(candidates)} models ({_names(candidates)}); "
                "choose one with --select KEY",
                path=path,
            )
        chosen = predictors[0]
    model = candidates[chosen]
    notes = []
    others = [key for key in candidates if key != chosen]
    if others:
        held = _names({key: candidates[key] for key in others})
        notes.append(
            f"converted {chosen}; the file also holds {held}, which the artifact does not "
            "include (apply it yourself, or --select it)"
        )
    metadata, skipped = _metadata(obj, "", 0, candidates)
    if skipped:
        notes.append(f"not kept as metadata (not plain values): {', '.join(skipped)}")
    if type(model).__name__ in _SEARCHES:
        inner = _search(model, path)
        return Found(inner.model, f"{chosen}.{inner.selected}", {**metadata, **inner.metadata},
                     (*notes, *inner.notes))  # fmt: skip
    return Found(model, chosen, metadata, tuple(notes))


def _search(search: Any, path: Path) -> Found:
    name = type(search).__name__
    best = search.__dict__.get("best_estimator_")
    if not isinstance(best, BaseEstimator):
        raise ModelLoadError(
            f"the {name} in this file was saved without refit, so it holds no fitted model",
            path=path,
            hint=f"re-run the search with refit=True, or save {name}.best_estimator_",
        )
    metadata: dict[str, Any] = {}
    params = _plain(search.__dict__.get("best_params_"), 1)
    if params is not None:
        metadata["best_params"] = params
    score = _plain(search.__dict__.get("best_score_"), 0)
    if score is not None:
        metadata["best_score"] = score
    scoring = search.__dict__.get("scoring")
    if isinstance(scoring, str):
        metadata["scoring"] = scoring
    note = f"converted the refitted best estimator of {name} ({type(best).__name__})"
    return Found(best, "best_estimator_", metadata, (note,))


def _estimators(obj: Any, prefix: str, depth: int) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, BaseEstimator) or boosters.is_booster(value):
            found.append((name, value))
        elif isinstance(value, (dict, list, tuple)) and depth + 1 < _MAX_DEPTH:
            found.extend(_estimators(value, f"{name}.", depth + 1))
    return found


def _metadata(obj: Any, prefix: str, depth: int,
              models: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    kept: dict[str, Any] = {}
    skipped: list[str] = []
    if not isinstance(obj, dict):
        # A tuple or list (model, feature_names, ...): positions are the keys.
        obj = {str(i): value for i, value in enumerate(obj)}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if name in models:
            continue
        plain = _plain(value, 2)
        if plain is not None or value is None:
            kept[str(key)] = plain
        elif isinstance(value, (dict, list, tuple)) and depth + 1 < _MAX_DEPTH:
            inner, inner_skipped = _metadata(value, f"{name}.", depth + 1, models)
            if inner:
                kept[str(key)] = inner
            skipped.extend(inner_skipped)
        else:
            skipped.append(name)
    return kept, skipped


def _plain(value: Any, depth: int) -> Any:
    """``value`` as JSON-ready data (numbers, strings, bools, short lists and dicts of them), or
    ``None`` when it is not plain."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, str):
        return value if len(value) <= _MAX_TEXT else None
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.size <= _MAX_ITEMS:
        value = value.tolist()
    if isinstance(value, (list, tuple)) and depth > 0 and len(value) <= _MAX_ITEMS:
        items = [_plain(item, depth - 1) for item in value]
        return (
            items
            if all(i is not None or v is None for i, v in zip(items, value, strict=True))
            else None
        )
    if isinstance(value, dict) and depth > 0 and len(value) <= _MAX_ITEMS:
        out = {str(k): _plain(v, depth - 1) for k, v in value.items()}
        return out if all(out[str(k)] is not None or v is None for k, v in value.items()) else None
    return None


def _names(models: dict[str, Any]) -> str:
    return ", ".join(f"{key} ({type(model).__name__})" for key, model in models.items())
