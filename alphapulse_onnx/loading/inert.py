"""Role (c), inert values: what a fitted model may hold but the loader never calls.

A ufunc for ``FunctionTransformer(func=np.log1p)``, a score function for ``SelectKBest``,
``numpy.float64`` as a ``dtype=`` parameter: the loader stores them as themselves. A value that
is callable is admitted only by identity with one of these objects (``is_inert_callable``).
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
from typing import Any

import numpy as np

# numpy ufuncs that FunctionTransformer(func=np.log1p) and friends pickle by name: arithmetic.
SAFE_UFUNCS = frozenset(
    {
        "log1p", "expm1", "log", "log2", "log10", "exp", "exp2", "sqrt", "cbrt", "square",
        "abs", "absolute", "fabs", "negative", "reciprocal", "sign", "tanh", "sinh", "cosh",
        "arcsinh", "arctan", "sin", "cos", "floor", "ceil", "rint", "trunc",
    }
)  # fmt: skip
# numpy reductions used as pooling functions (FeatureAgglomeration(pooling_func=np.mean)).
_NUMPY_REDUCTIONS = frozenset(
    {"mean", "median", "sum", "max", "min", "amax", "amin", "std", "var", "nanmean",
     "nanmedian", "average"}
)  # fmt: skip
# numpy scalar types, held as ``dtype=`` parameters.
_NUMPY_TYPES = frozenset(
    {"float16", "float32", "float64", "longdouble", "int8", "int16", "int32", "int64", "intp",
     "uint8", "uint16", "uint32", "uint64", "uintp", "bool_", "bool", "object_", "str_",
     "bytes_", "complex64", "complex128", "datetime64", "timedelta64", "number", "integer",
     "floating", "generic"}
)  # fmt: skip
_BUILTIN_TYPES = ("object", "int", "float", "bool", "str", "list", "dict", "tuple",
                  # warning categories, as 0.20's DeprecationDict records them
                  "Warning", "UserWarning", "FutureWarning", "DeprecationWarning")  # fmt: skip
# Score functions a fitted estimator keeps: SelectKBest's statistics, check_array in the
# FunctionTransformer that HistGradientBoosting builds for categorical features.
_INERT_FUNCTIONS = (
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
    "sklearn.feature_selection._univariate_selection.r_regression",
    "sklearn.feature_selection._univariate_selection.chi2",
    "sklearn.feature_selection._mutual_info.mutual_info_classif",
    "sklearn.feature_selection._mutual_info.mutual_info_regression",
    "sklearn.utils.validation.check_array",
    "sklearn.metrics._scorer._passthrough_scorer",
    "sklearn.cluster._kmeans._kmeans_single_lloyd",  # BisectingKMeans keeps its fit routine
    "sklearn.cluster._kmeans._kmeans_single_elkan",
)


def _import_attr(module: str, attr: str) -> Any:
    return getattr(importlib.import_module(module), attr)


@functools.cache
def inert_values() -> dict[str, Any]:
    """Role (c), by dotted name, resolved once per process."""
    values: dict[str, Any] = {}
    for ufunc in SAFE_UFUNCS:
        values[f"numpy.{ufunc}"] = getattr(np, ufunc)
    for reduction in _NUMPY_REDUCTIONS:
        if hasattr(np, reduction):
            values[f"numpy.{reduction}"] = getattr(np, reduction)
    for numpy_type in _NUMPY_TYPES:
        if hasattr(np, numpy_type):
            values[f"numpy.{numpy_type}"] = getattr(np, numpy_type)
    for builtin in _BUILTIN_TYPES:
        values[f"builtins.{builtin}"] = getattr(builtins, builtin)
    for dotted in (*_INERT_FUNCTIONS, *_metric_functions()):
        module, _, name = dotted.rpartition(".")
        try:
            values[dotted] = _import_attr(module, name)
        except (ImportError, AttributeError):
            continue  # a function this scikit-learn release does not have
    # Hook for frames.py: pandas' missing-value singleton (pd.NA), held in string columns.
    from alphapulse_onnx.loading import frames

    values.update(frames.inert_values())
    return values


def _metric_functions() -> frozenset[str]:
    """Score functions of scikit-learn's named scorers (a fitted search keeps its scorer's)."""
    from sklearn.metrics import get_scorer, get_scorer_names

    names: set[str] = set()
    for scorer_name in get_scorer_names():
        func = getattr(get_scorer(scorer_name), "_score_func", None)
        if func is not None and inspect.isfunction(func):
            names.add(f"{func.__module__}.{func.__qualname__}")
    return frozenset(names)


@functools.cache
def inert_callables() -> frozenset[int]:
    return frozenset(id(v) for v in inert_values().values() if callable(v))


def is_inert_callable(value: Any) -> bool:
    return id(value) in inert_callables() and not isinstance(value, type)


@functools.cache
def inert_types() -> frozenset[type]:
    return frozenset(v for v in inert_values().values() if isinstance(v, type))
