"""``IterativeImputer`` (skl2onnx has no converter): its fitted rounds, unrolled into the graph.

``transform`` fills each gap with the initial imputer's statistic, then walks
``imputation_sequence_`` in order: for each ``(feat_idx, neighbor_feat_idx, estimator)`` it
predicts column ``feat_idx`` from the columns ``neighbor_feat_idx`` of the current matrix, clips to
``min_value``/``max_value``, and writes the prediction into that column's gaps only. The graph does
the same, one step per triplet: every row is predicted (a linear model costs one MatMul) and only
the rows missing that column take the prediction. Observed values stay as given; features empty
when fitted are dropped (or kept with their initial fill, ``keep_empty_features``), and
``add_indicator`` appends the missing-value flags, as scikit-learn does. A batch whose every cell
is missing keeps the initial fill, as ``transform`` returns early for it.

Each step's estimator must be linear (``X @ coef_ + intercept_``): ``BayesianRidge`` (the default)
and the other linear regressors skl2onnx converts. The rounds run in double precision whatever the
input's type, since each round feeds the next and float32 errors would compound; a float32 graph
casts back at the end. Refused, with one line each: ``sample_posterior=True`` (its imputations are
random draws), non-linear estimators, and missing-value markers other than NaN or a number.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from onnx import TensorProto

from alphapulse_onnx.converters._graph import Graph
from alphapulse_onnx.errors import UnsupportedModelError

# Regressors whose predict is exactly ``X @ coef_ + intercept_`` (LinearModel._decision_function
# or its SGD twin). The generalised linear models (Poisson, Gamma, Tweedie) apply a link: not here.
LINEAR_ESTIMATORS = frozenset({
    "ARDRegression", "BayesianRidge", "ElasticNet", "ElasticNetCV", "HuberRegressor", "Lars",
    "LarsCV", "Lasso", "LassoCV", "LassoLars", "LassoLarsCV", "LassoLarsIC", "LinearRegression",
    "OrthogonalMatchingPursuit", "OrthogonalMatchingPursuitCV", "PassiveAggressiveRegressor",
    "QuantileRegressor", "Ridge", "RidgeCV", "SGDRegressor", "TheilSenRegressor",
})  # fmt: skip


def _is_nan_marker(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def check(imputer: Any) -> None:
    """Refuse what the graph cannot reproduce, with one line naming what to change."""
    if imputer.sample_posterior:
        raise UnsupportedModelError(
            "IterativeImputer(sample_posterior=True) imputes random draws, which no artifact "
            "can reproduce",
            hint="refit it with sample_posterior=False",
        )
    marker = imputer.missing_values
    if not (_is_nan_marker(marker) or isinstance(marker, (int, float, np.number))):
        raise UnsupportedModelError(
            f"IterativeImputer(missing_values={marker!r}): apo converts NaN or a number as the "
            "missing-value marker",
            hint="refit it with missing_values=np.nan",
        )
    for triplet in imputer.imputation_sequence_:
        estimator = triplet.estimator
        name = type(estimator).__name__
        coef = np.asarray(getattr(estimator, "coef_", np.empty(0)))
        if name not in LINEAR_ESTIMATORS or coef.shape != (len(triplet.neighbor_feat_idx),):
            raise UnsupportedModelError(
                f"IterativeImputer(estimator={name}): apo converts linear estimators only "
                f"({', '.join(sorted(LINEAR_ESTIMATORS))})",
                hint="refit it with estimator=BayesianRidge() (the default) or another of those",
            )
    if len(_filled_columns(imputer)) != len(_kept_columns(imputer)):
        raise UnsupportedModelError(
            "IterativeImputer(initial_strategy='constant') with a feature that was empty when "
            "fitted: scikit-learn's own transform fails on it",
            hint="refit it with keep_empty_features=True, or without the empty feature",
        )


def _kept_columns(imputer: Any) -> np.ndarray:
    """The input columns ``transform`` keeps: all, or those not empty when fitted."""
    empty = np.asarray(imputer._is_empty_feature, dtype=bool)
    if imputer.keep_empty_features:
        return np.arange(empty.size)
    return np.flatnonzero(~empty)


def _filled_columns(imputer: Any) -> np.ndarray:
    """The input columns the initial SimpleImputer gives back (it drops those without a fill)."""
    initial = imputer.initial_imputer_
    statistics = np.asarray(initial.statistics_, dtype=np.float64)
    if initial.strategy == "constant" or initial.keep_empty_features:
        return np.arange(statistics.size)
    return np.flatnonzero(~np.isnan(statistics))


def _indicator_columns(imputer: Any) -> np.ndarray | None:
    indicator = getattr(imputer, "indicator_", None)
    if not imputer.add_indicator or indicator is None:
        return None
    if indicator.features == "all":
        return np.arange(imputer.n_features_in_)
    return np.asarray(indicator.features_, dtype=np.int64)


def output_width(imputer: Any) -> int:
    indicator = _indicator_columns(imputer)
    return len(_kept_columns(imputer)) + (0 if indicator is None else len(indicator))


def _shape(operator: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    imputer = operator.raw_operator
    check(imputer)
    first = operator.inputs[0].type
    out = (
        copy.deepcopy(first)
        if isinstance(first, (FloatTensorType, DoubleTensorType))
        else (FloatTensorType())
    )
    out.shape = [operator.inputs[0].get_first_dimension(), output_width(imputer)]
    operator.outputs[0].type = out


def _convert(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType

    imputer = operator.raw_operator
    check(imputer)
    out_double = isinstance(operator.outputs[0].type, DoubleTensorType)
    g = Graph(scope, container, double=True, prefix="apo_iter")  # the rounds run in double
    parts = [g.cast(v.full_name) for v in operator.inputs]
    x = parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=1)

    marker = imputer.missing_values
    if _is_nan_marker(marker):
        missing = g.op("IsNaN", [x])
    else:
        missing = g.op("Equal", [x, g.const(float(marker))])
    statistics = np.asarray(imputer.initial_imputer_.statistics_, dtype=np.float64)
    # Initial fill: every gap takes its column's statistic (NaN where none; dropped below).
    filled = g.op("Where", [missing, g.const(statistics[None, :]), x])

    kept = _kept_columns(imputer)
    empty = np.asarray(imputer._is_empty_feature, dtype=bool)
    if imputer.keep_empty_features:
        # Empty features keep their initial fill and never count as missing.
        raw = g.op("Where", [g.const(empty[None, :]), filled, x])
        gaps = g.op("And", [missing, g.const(~empty[None, :])])
    else:
        raw = _columns(g, x, kept)
        gaps = _columns(g, missing, kept)
        filled = _columns(g, filled, _filled_columns(imputer))
    current = filled
    width = len(kept)
    low = np.broadcast_to(np.asarray(imputer._min_value, dtype=np.float64), (width,))
    high = np.broadcast_to(np.asarray(imputer._max_value, dtype=np.float64), (width,))
    for triplet in imputer.imputation_sequence_:
        current = _impute_one(g, current, gaps, triplet, width, low, high)
    if imputer.imputation_sequence_:
        # Observed values as given; a batch with every cell missing keeps the initial fill.
        current = g.op("Where", [gaps, current, raw])
        every = g.reduce("ReduceMin", g.cast(gaps), [0, 1], keepdims=True)
        all_missing = g.op("Greater", [every, g.const(0.0)])
        current = g.op("Where", [all_missing, filled, current])
    indicator = _indicator_columns(imputer)
    if indicator is not None:
        flags = g.cast(_columns(g, missing, indicator))
        current = g.op("Concat", [current, flags], axis=1)
    g.op("Cast", [current], out=operator.outputs[0].full_name,
         to=TensorProto.DOUBLE if out_double else TensorProto.FLOAT)  # fmt: skip


def _columns(g: Graph, matrix: str, indices: np.ndarray) -> str:
    return g.op("Gather", [matrix, g.const(np.asarray(indices, dtype=np.int64))], axis=1)


def _impute_one(g: Graph, current: str, gaps: str, triplet: Any, width: int, low: np.ndarray,
                high: np.ndarray) -> str:  # fmt: skip
    """One step: predict column ``feat_idx`` from its neighbours; write it into its gaps only."""
    feature = int(triplet.feat_idx)
    estimator = triplet.estimator
    # The neighbours' coefficients spread over all columns (0 elsewhere): one MatMul, no Gather.
    weights = np.zeros((width, 1), dtype=np.float64)
    weights[np.asarray(triplet.neighbor_feat_idx, dtype=np.int64), 0] = np.asarray(
        estimator.coef_, dtype=np.float64
    )
    intercept = float(np.ravel(np.asarray(estimator.intercept_, dtype=np.float64))[0])
    predicted = g.op("Add", [g.op("MatMul", [current, g.const(weights)]), g.const(intercept)])
    if np.isfinite(low[feature]):
        predicted = g.op("Max", [predicted, g.const(low[feature])])
    if np.isfinite(high[feature]):
        predicted = g.op("Min", [predicted, g.const(high[feature])])
    this_column = np.zeros((1, width), dtype=bool)
    this_column[0, feature] = True
    write = g.op("And", [gaps, g.const(this_column)])
    return g.op("Where", [write, predicted, current])


def register() -> None:
    from skl2onnx import update_registered_converter
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    update_registered_converter(
        IterativeImputer, "ApoIterativeImputer", _shape, _convert, overwrite=True
    )
