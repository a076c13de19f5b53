"""Probe data for DataFrame-fit models that take one named input per raw column.

Each column is drawn from what the fitted steps that read it know: categories from its encoder
(plus an unseen one where the encoder ignores unknown values, and gaps where an imputer fills
them), numbers from its imputer, scaler and function transformers, and values beside the final
tree's split thresholds where the column reaches the trees one to one. ``from_frame`` reads user
rows (``--sample``) into the same shape instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from alphapulse_onnx.errors import InputError
from alphapulse_onnx.probing import (
    DEFAULT_ROWS,
    Probe,
    beside_thresholds,
    feature_stats,
    known_ufunc,
    mapped_back,
    tree_thresholds,
)
from alphapulse_onnx.signature import InputSignature, Route, column_routes, final_estimator

MISSING_RATE = 0.1
UNSEEN_RATE = 0.05
UNSEEN_TEXT = "__apo_unseen__"


@dataclass(frozen=True)
class _ColumnPlan:
    """What the model knows about one raw column."""

    values: list[Any]  # categories (text/int columns)
    unseen: bool  # the encoder ignores unknown categories: probe some
    missing: bool  # an imputer fills gaps: probe some
    center: float = 0.0
    scale: float = 1.0
    low: float | None = None
    high: float | None = None
    inverses: tuple[Any, ...] = ()  # applied in order to map drawn values back to raw inputs
    thresholds: np.ndarray | None = None  # the final tree's thresholds, in raw units
    categorical: bool = False  # numbers that are categories: drawn from ``values``


def _is_missing_marker(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _plan(routes: list[Route], dtype: str) -> _ColumnPlan:
    values: list[Any] = []
    unseen = missing = False
    center, scale = 0.0, 1.0
    low = high = None
    inverses: list[Any] = []
    found_scale = categorical = False
    for route in routes:
        if route.dropped:
            continue
        for step in route.steps:
            name = type(step).__name__
            if type(step).__module__.startswith("category_encoders."):
                from alphapulse_onnx.converters.encoders import column_facts

                # Known categories, plus unseen and missing values only where transform answers
                # them: where it raises, so does the artifact, and parity has nothing to compare.
                facts = column_facts(step, route.index)
                if facts.values:  # an encoded column (others pass through it as numbers)
                    values.extend(facts.values)
                    unseen, missing = facts.unseen, facts.missing
                    categorical = facts.dtype != "string"
                break
            categories = getattr(step, "categories_", None)
            if categories is not None and route.index < len(categories):
                values.extend(v for v in np.asarray(categories[route.index]).tolist()
                              if not _is_missing_marker(v))  # fmt: skip
                unknown = getattr(step, "handle_unknown", "error")
                unseen = unseen or unknown in ("ignore", "infrequent_if_exist", "use_encoded_value")
                break
            if name == "SimpleImputer" and hasattr(step, "statistics_"):
                missing = missing or _is_missing_marker(step.missing_values)
                fill = step.statistics_[route.index]
                if dtype == "string" or isinstance(fill, str):
                    values.append(fill)
                elif not found_scale and np.isfinite(float(fill)):
                    center = float(fill)
                continue
            if name == "FunctionTransformer":
                if step.func is None:
                    continue
                ufunc = known_ufunc(step)
                # Later steps' statistics describe values that could not be mapped back without an
                # inverse. Every ufunc with a restricted domain has one, so draws stay inside it.
                if ufunc is None or ufunc.inverse is None:
                    break
                inverses.insert(0, ufunc.inverse)
                continue
            stats = feature_stats(step, route.index + 1)
            if stats is not None and not found_scale:
                j = route.index
                center, scale = float(stats.center[j]), float(stats.scale[j])
                if stats.low is not None and stats.high is not None:
                    low, high = float(stats.low[j]), float(stats.high[j])
                found_scale = True
            break
        if found_scale or values:
            break
    return _ColumnPlan(values=list(dict.fromkeys(values)), unseen=unseen, missing=missing,
                       center=center, scale=scale if np.isfinite(scale) and scale > 0 else 1.0,
                       low=low, high=high, inverses=tuple(inverses),
                       categorical=categorical)  # fmt: skip


def _draw(plan: _ColumnPlan, dtype: str, rows: int, rng: np.random.Generator) -> np.ndarray:
    if dtype == "string":
        pool = [str(v) for v in plan.values] or ["a", "b"]
        out = np.asarray(rng.choice(pool, rows), dtype=object)
        if plan.unseen:
            out[rng.random(rows) < UNSEEN_RATE] = UNSEEN_TEXT
        if plan.missing:
            out[rng.random(rows) < MISSING_RATE] = np.nan
        return out
    if dtype == "int64":
        pool_int = [int(v) for v in plan.values] or [0, 1]
        ints = rng.choice(np.asarray(pool_int, dtype=np.int64), rows)
        if plan.unseen:
            ints[rng.random(rows) < UNSEEN_RATE] = max(pool_int) + 1
        return ints.astype(np.int64)
    if plan.categorical:
        categories = np.asarray([float(v) for v in plan.values], dtype=np.float64)
        drawn = rng.choice(categories, rows)
        if plan.unseen:
            drawn[rng.random(rows) < UNSEEN_RATE] = categories.max() + 1.5
        if plan.missing:
            drawn[rng.random(rows) < MISSING_RATE] = np.nan
        return drawn
    values = plan.center + rng.standard_normal(rows) * plan.scale
    wide = rng.random(rows) < 0.125
    values[wide] = plan.center + rng.standard_normal(int(wide.sum())) * plan.scale * 4
    if plan.low is not None and plan.high is not None:
        uniform = rng.random(rows) < 0.25
        values[uniform] = rng.uniform(plan.low, plan.high, int(uniform.sum()))
    if plan.thresholds is not None and plan.thresholds.size:
        near = rng.random(rows) < 0.5
        values[near] = rng.choice(plan.thresholds, int(near.sum()))
    with np.errstate(all="ignore"):
        for inverse in plan.inverses:
            values = np.asarray(inverse(values), dtype=np.float64)
    values[~np.isfinite(values)] = plan.center
    if plan.missing:
        values[rng.random(rows) < MISSING_RATE] = np.nan
    return values.astype(np.float64)


def _column_thresholds(model: Any, routes: dict[str, list[Route]]) -> dict[str, np.ndarray]:
    """The final tree's split thresholds for raw columns that reach it one to one (passthrough or
    a feature-wise scaler after a ColumnTransformer), mapped back to raw units."""
    steps = [s for s in getattr(model, "steps", None) or [] if s[1] is not None
             and not isinstance(s[1], str) and not hasattr(s[1], "fit_resample")]  # fmt: skip
    head = steps[0][1] if steps else model
    width = sum(s.stop - s.start for s in (getattr(head, "output_indices_", None) or {}).values())
    if not width or len(steps) != 2:
        return {}
    thresholds = tree_thresholds(final_estimator(model), width)
    if thresholds is None:
        return {}
    rng = np.random.default_rng(1)
    out: dict[str, np.ndarray] = {}
    for column, routes_of_column in routes.items():
        for route in routes_of_column:
            if route.output is None or route.output >= width:
                continue
            values = beside_thresholds(thresholds[route.output], rng)
            if len(route.steps) == 1 and hasattr(route.steps[0], "inverse_transform"):
                grid = np.zeros((values.size, route.steps[0].n_features_in_))
                grid[:, route.index] = values
                raw = mapped_back(route.steps[0], grid)
                if raw is None:  # not feature-wise invertible after all
                    continue
                values = raw[:, route.index]
            elif route.steps:
                continue
            out[column] = values
    return out


def _booster_column_thresholds(model: Any, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A booster's numeric split thresholds per column name (its categorical splits have none)."""
    thresholds = tree_thresholds(model, len(names))
    if thresholds is None:
        return {}
    rng = np.random.default_rng(1)
    return {name: beside_thresholds(values, rng, coarse=True)
            for name, values in zip(names, thresholds, strict=False) if values.size}  # fmt: skip


def generate_columns(model: Any, signature: InputSignature, *, rows: int = DEFAULT_ROWS,
                     seed: int = 0) -> Probe:  # fmt: skip
    """Per-column raw values for a DataFrame-fit model: categories from its encoders (plus unseen
    ones where the encoder ignores them, and gaps where an imputer fills them), numbers from its
    imputers, scalers, function transformers and tree thresholds."""
    from alphapulse_onnx.converters.boosters import category_columns

    rng = np.random.default_rng(seed)
    names = tuple(signature.feature_names or ())
    routes = column_routes(model, names) or {name: [] for name in names}
    # LightGBM fitted on pandas category columns: its categories, unseen ones and gaps.
    categories = category_columns(model)
    if categories:
        thresholds = _booster_column_thresholds(model, names)
    else:
        thresholds = _column_thresholds(model, routes)
    columns: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        column = spec.column_name
        if column in categories:
            plan = _ColumnPlan(values=categories[column], unseen=True,
                               missing=spec.dtype == "string")  # fmt: skip
        else:
            plan = _plan(routes.get(column, []), spec.dtype)
        if column in thresholds:
            plan = replace(plan, thresholds=thresholds[column])
        columns[column] = _draw(plan, spec.dtype, rows, rng)
    kind = "thresholds" if thresholds else "statistics"
    return Probe(X=np.empty((rows, 0)), kind=kind, columns=columns)


def from_frame(frame: Any, signature: InputSignature) -> Probe:
    """User rows (a DataFrame) for a per-column model, matched by column name."""
    missing = [name for name in signature.feature_names or () if name not in frame.columns]
    if missing:
        raise InputError(f"the sample lacks the model's columns {', '.join(map(str, missing[:5]))}")
    columns: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        column = spec.column_name
        raw = frame[column]
        if spec.dtype == "string":
            columns[column] = np.asarray(raw.astype(object).where(raw.notna(), np.nan),
                                         dtype=object)  # fmt: skip
        elif spec.dtype == "int64":
            columns[column] = np.asarray(raw, dtype=np.int64)
        else:
            columns[column] = np.asarray(raw, dtype=np.float64)
    return Probe(X=np.empty((len(frame), 0)), kind="sample", columns=columns)
