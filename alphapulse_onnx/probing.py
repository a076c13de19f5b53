"""Probe data that exercises a model, built from what the fitted model knows.

Random normal rows reach a handful of branches of a tree ensemble, so parity on them proves little.
For trees we collect every feature's split thresholds and sample values just below, at and just
above each one (in float32 and float64, where the two precisions disagree), mixed across features so
many paths are taken. For other models we draw rows shaped by the model's own statistics: scaler
means and scales, Naive Bayes class means, the support vectors or neighbours' ranges, k-means
centres and mixture components (with rows close around each), and for bare linear models a scale
set by the coefficients so the decision function sweeps its whole range.

DataFrame-fit models with one input per column draw their probes in ``column_probes``; onnxruntime
feeds for any probe come from ``feeds.probe_feeds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alphapulse_onnx.converters.function_transformer import UFUNCS, SafeUfunc

MAX_THRESHOLDS_PER_FEATURE = 96
DEFAULT_ROWS = 2048


@dataclass(frozen=True)
class FeatureStats:
    center: np.ndarray
    scale: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    points: np.ndarray | None = None  # k-means centres, mixture means: rows are drawn near them


@dataclass(frozen=True)
class Probe:
    """Rows to check parity on: a float matrix, or raw cells by column (``column_probes``)."""

    X: np.ndarray  # (rows, 0) for per-column probes
    kind: str  # "thresholds", "statistics", "sample"; documented in docs/explanation/parity.md
    columns: dict[str, np.ndarray] | None = None  # raw cells by column (per-column models)
    note: str | None = None  # why these rows and not the ones asked for (a --sample that misses)

    @property
    def rows(self) -> int:
        if self.columns is not None:
            return len(next(iter(self.columns.values()), ()))
        return int(self.X.shape[0])


def _steps(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None)
    if steps:
        out: list[Any] = []
        for _, step in steps:
            if step is not None and step != "passthrough":
                out.extend(_steps(step))
        return out
    return [model]


def tree_thresholds(estimator: Any, n_features: int) -> list[np.ndarray] | None:
    """Per-feature split thresholds of a tree model, or ``None`` when it is not one."""
    per_feature: list[list[np.ndarray]] = [[] for _ in range(n_features)]
    found = False
    trees: list[tuple[Any, np.ndarray | None]] = []
    if hasattr(estimator, "tree_"):
        trees = [(estimator.tree_, None)]
    elif hasattr(estimator, "estimators_"):
        subsets = _feature_subsets(estimator, n_features)
        for i, item in enumerate(np.asarray(estimator.estimators_, dtype=object).ravel()):
            if hasattr(item, "tree_"):
                trees.append((item.tree_, None if subsets is None else subsets[i]))
    for tree, columns in trees:
        mask = tree.feature >= 0
        features = tree.feature[mask] if columns is None else columns[tree.feature[mask]]
        for feature, threshold in zip(features, tree.threshold[mask], strict=True):
            per_feature[int(feature)].append(np.asarray([threshold]))
            found = True
    for per_iteration in getattr(estimator, "_predictors", None) or []:
        for predictor in per_iteration:
            nodes = predictor.nodes
            splits = nodes[~nodes["is_leaf"].astype(bool)]
            for feature, threshold in zip(splits["feature_idx"], splits["num_threshold"],
                                          strict=True):  # fmt: skip
                per_feature[int(feature)].append(np.asarray([threshold]))
                found = True
    booster = _booster_thresholds(estimator, n_features)
    if booster is not None:
        for j, values in enumerate(booster):
            if values.size:
                per_feature[j].append(values)
                found = True
    if not found:
        return None
    # A split that only separates missing values from the rest has an infinite threshold
    # (scikit-learn >= 1.3): no number lies beside it.
    return [_finite(np.unique(np.concatenate(t))) if t else np.empty(0) for t in per_feature]


def _finite(values: np.ndarray) -> np.ndarray:
    kept: np.ndarray = values[np.isfinite(values)]
    return kept


def _feature_subsets(estimator: Any, n_features: int) -> list[np.ndarray] | None:
    """The raw columns each tree of a bagging ensemble (IsolationForest, Bagging*) was fit on.

    Such a tree numbers its features among the columns drawn for it, where the ensemble drew a
    subset (``max_features`` below all of them, or ``bootstrap_features``); ``None`` otherwise.
    """
    subsets = getattr(estimator, "estimators_features_", None)
    if subsets is None:
        return None
    drew_all = getattr(estimator, "_max_features", n_features) == n_features
    if drew_all and not getattr(estimator, "bootstrap_features", False):
        return None
    return [np.asarray(columns, dtype=np.int64) for columns in subsets]


def _is_booster(estimator: Any) -> bool:
    return type(estimator).__module__.split(".")[0] in ("lightgbm", "xgboost")


def _booster_thresholds(estimator: Any, n_features: int) -> list[np.ndarray] | None:
    """Split thresholds of a LightGBM or XGBoost model, from the booster's own dump."""
    module = type(estimator).__module__.split(".")[0]
    per_feature: list[list[float]] = [[] for _ in range(n_features)]
    try:
        if module == "lightgbm":
            stack = [
                tree["tree_structure"] for tree in estimator.booster_.dump_model()["tree_info"]
            ]
            while stack:
                node = stack.pop()
                if "split_feature" in node:  # a categorical split ("0||2") has no threshold
                    if isinstance(node.get("threshold"), (int, float)):
                        per_feature[int(node["split_feature"])].append(float(node["threshold"]))
                    stack += [node["left_child"], node["right_child"]]
        elif module == "xgboost":
            booster = estimator.get_booster()
            frame = booster.trees_to_dataframe()
            frame = frame[frame["Feature"] != "Leaf"]
            names = list(booster.feature_names or [])
            for feature, split in zip(frame["Feature"], frame["Split"], strict=True):
                j = names.index(feature) if names else int(str(feature).lstrip("f"))
                per_feature[j].append(float(split))
        else:
            return None
    except Exception:  # an unexpected dump layout: fall back to statistics
        return None
    return [np.unique(np.asarray(v, dtype=np.float64)) for v in per_feature]


def feature_stats(estimator: Any, n_features: int) -> FeatureStats | None:
    """Location and scale per feature from an estimator that records them."""
    est = estimator
    if (
        hasattr(est, "mean_") and hasattr(est, "scale_") and est.scale_ is not None
    ):  # StandardScaler
        return FeatureStats(np.asarray(est.mean_, float), np.asarray(est.scale_, float))
    if hasattr(est, "data_min_") and hasattr(est, "data_max_"):  # MinMaxScaler
        low, high = np.asarray(est.data_min_, float), np.asarray(est.data_max_, float)
        return FeatureStats((low + high) / 2, (high - low) / 4, low, high)
    if hasattr(est, "center_") and hasattr(est, "scale_"):  # RobustScaler
        center = est.center_ if est.center_ is not None else np.zeros(n_features)
        scale = est.scale_ if est.scale_ is not None else np.ones(n_features)
        return FeatureStats(np.asarray(center, float), np.asarray(scale, float))
    if hasattr(est, "max_abs_"):  # MaxAbsScaler
        return FeatureStats(np.zeros(n_features), np.asarray(est.max_abs_, float) / 2)
    if hasattr(est, "theta_") and hasattr(est, "var_"):  # GaussianNB
        return FeatureStats(est.theta_.mean(axis=0), np.sqrt(est.var_.max(axis=0)))
    for attr in ("_fit_X", "support_vectors_"):  # neighbours, SVMs
        points = getattr(est, attr, None)
        if isinstance(points, np.ndarray) and points.ndim == 2 and points.shape[0] > 1:
            low, high = points.min(axis=0), points.max(axis=0)
            return FeatureStats(points.mean(axis=0), points.std(axis=0), low, high)
    return _centre_stats(est, n_features)


def _centre_stats(est: Any, n_features: int) -> FeatureStats | None:
    """k-means' centres, or a Gaussian mixture's means and spread: rows around and between them."""
    centres = getattr(est, "cluster_centers_", None)
    within: np.ndarray | float = 0.0
    if centres is None and hasattr(est, "means_") and hasattr(est, "covariances_"):
        centres = est.means_
        within = np.mean(_component_variances(est, n_features), axis=0)
    if not isinstance(centres, np.ndarray) or centres.ndim != 2:
        return None
    centres = np.asarray(centres, dtype=np.float64)
    spread = np.sqrt(centres.var(axis=0) + within)
    return FeatureStats(centres.mean(axis=0), spread, centres.min(axis=0), centres.max(axis=0),
                        points=centres)  # fmt: skip


def _component_variances(mixture: Any, n_features: int) -> np.ndarray:
    """Each mixture component's variance along each feature, (components, features)."""
    covariances = np.asarray(mixture.covariances_, dtype=np.float64)
    kind = getattr(mixture, "covariance_type", "full")
    if kind == "full":
        return np.diagonal(covariances, axis1=1, axis2=2)
    if kind == "tied":
        return np.diag(covariances)[None, :]
    if kind == "spherical":
        return np.repeat(covariances[:, None], n_features, axis=1)
    return covariances  # "diag"


def _linear_scale(estimator: Any, n_features: int) -> np.ndarray | None:
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        return None
    weights = np.abs(np.atleast_2d(np.asarray(coef, float))).max(axis=0)
    # Each feature then moves the decision function by ~1/sqrt(n): the sum sweeps about +-1..3.
    return np.asarray(1.0 / (np.maximum(weights, 1e-12) * np.sqrt(n_features)))


def _inverse_thresholds(pre: list[Any], thresholds: list[np.ndarray]) -> list[np.ndarray] | None:
    """Map thresholds from the final step's space back to raw inputs via feature-wise inverses."""
    if not pre:
        return thresholds
    if not all(hasattr(step, "inverse_transform") for step in pre):
        return None
    n = len(thresholds)
    mapped: list[np.ndarray] = []
    for j, values in enumerate(thresholds):
        if values.size == 0:
            mapped.append(values)
            continue
        grid = np.zeros((values.size, n))
        grid[:, j] = values
        try:
            for step in reversed(pre):
                grid = step.inverse_transform(grid)
        except Exception:  # a step that is not feature-wise invertible after all
            return None
        mapped.append(np.asarray(grid, float)[:, j])
    return mapped


def _around(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values just below, at and just above each threshold, in both float precisions."""
    if values.size > MAX_THRESHOLDS_PER_FEATURE:
        values = rng.choice(values, MAX_THRESHOLDS_PER_FEATURE, replace=False)
    as32 = values.astype(np.float32)
    candidates = [
        values,
        as32.astype(np.float64),
        np.nextafter(as32, np.float32(-np.inf)).astype(np.float64),
        np.nextafter(as32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(values, -np.inf),
        np.nextafter(values, np.inf),
    ]
    if values.size > 1:
        ordered = np.sort(values)
        candidates.append((ordered[1:] + ordered[:-1]) / 2)  # inside each gap
        span = max(float(ordered[-1] - ordered[0]), 1.0)
        candidates.append(np.array([ordered[0] - span, ordered[-1] + span]))
    out = np.unique(np.concatenate(candidates))
    return np.asarray(out[np.isfinite(out)])


def generate(model: Any, n_features: int, *, rows: int = DEFAULT_ROWS, seed: int = 0) -> Probe:
    """Synthetic rows (float64) that exercise ``model``; see the module docstring."""
    rng = np.random.default_rng(seed)
    steps = _steps(model)
    final, pre = steps[-1], steps[:-1]
    if any(_is_ufunc_step(step) for step in pre):
        return _generate_through_functions(model, n_features, rows=rows, seed=seed)
    # Only steps that still see the raw columns describe them (a column dropper, PCA or
    # polynomial features change the width, and everything after them speaks of other columns).
    raw_steps = _raw_width_steps(steps, n_features)
    stats = next((s for s in (feature_stats(step, n_features) for step in raw_steps) if s), None)
    if stats is not None and np.shape(stats.center) != (n_features,):
        stats = None
    if stats is None:
        scale = _linear_scale(final, n_features) if final in raw_steps else None
        stats = FeatureStats(
            np.zeros(n_features), scale if scale is not None else np.ones(n_features)
        )
    scale = np.where(np.isfinite(stats.scale) & (stats.scale > 0), stats.scale, 1.0)
    gaussian = stats.center + rng.standard_normal((rows, n_features)) * scale
    wide = stats.center + rng.standard_normal((max(rows // 8, 8), n_features)) * scale * 4
    parts = [gaussian, wide]
    if stats.low is not None and stats.high is not None:
        parts.append(rng.uniform(stats.low, stats.high, (max(rows // 4, 8), n_features)))
    if stats.points is not None:
        # Close to a centre, a distance is a small difference of large squares: float32 loses it.
        near = stats.points[rng.integers(0, len(stats.points), max(rows // 4, 8))]
        parts.append(near + rng.standard_normal(near.shape) * scale * 0.1)
    thresholds = tree_thresholds(final, n_features) if final in raw_steps else None
    kind = "statistics"
    if thresholds is not None:
        if pre or _is_booster(final):
            # After a scaler, a value exactly at a threshold lands one rounding either side of it
            # in any float kernel: probe clearly on each side instead of on the boundary. Boosters'
            # ONNX trees compare in float32 (see docs/explanation/parity.md): the same.
            booster = _is_booster(final)
            candidates = _inverse_thresholds(
                pre, [beside_thresholds(t, rng, coarse=booster) for t in thresholds]
            )
        else:
            candidates = [_around(t, rng) for t in thresholds]
        if candidates is not None:
            kind = "thresholds"
            parts.append(_threshold_rows(candidates, stats.center, rows, rng))
    X = np.vstack(parts)
    return Probe(X=np.ascontiguousarray(X[np.all(np.isfinite(X), axis=1)]), kind=kind)


def _raw_width_steps(steps: list[Any], n_features: int) -> list[Any]:
    """The leading steps whose input is still ``n_features`` raw columns wide."""
    out: list[Any] = []
    for step in steps:
        if getattr(step, "n_features_in_", n_features) != n_features:
            break
        out.append(step)
    return out


def _is_ufunc_step(step: Any) -> bool:
    return type(step).__name__ == "FunctionTransformer" and step.func is not None


def known_ufunc(step: Any) -> SafeUfunc | None:
    """The table row of a ``FunctionTransformer``'s function, by name; ``None`` when it has none."""
    return UFUNCS.get(str(getattr(step.func, "__name__", "")))


def _nonnegative_only(step: Any) -> bool:
    ufunc = known_ufunc(step)
    return ufunc is not None and ufunc.nonnegative


class _UfuncInverse:
    """A FunctionTransformer seen through numpy's inverse of its ufunc (for probe mapping); a
    function without an inverse maps values back unchanged."""

    def __init__(self, step: Any) -> None:
        ufunc = known_ufunc(step)
        self._inverse = ufunc.inverse if ufunc is not None else None

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        if self._inverse is None:
            return X
        with np.errstate(all="ignore"):
            return np.asarray(self._inverse(X), dtype=np.float64)


def _generate_through_functions(model: Any, n_features: int, *, rows: int, seed: int) -> Probe:
    """Pipelines with ``FunctionTransformer(np.log1p)`` and friends: draw rows in the space after
    the functions (where the scalers' statistics and the trees' thresholds live), then map them
    back through numpy's inverse of each function, so every row is inside the functions' domain."""
    steps = _steps(model)
    final = steps[-1]
    last_function = max(i for i, step in enumerate(steps[:-1]) if _is_ufunc_step(step))
    before = steps[: last_function + 1]
    after = steps[last_function + 1 : -1]
    inner = _steps_model(after, final)
    drawn = generate(inner, n_features, rows=rows, seed=seed)
    X = drawn.X
    for step in reversed(before):
        mapped = mapped_back(_UfuncInverse(step) if _is_ufunc_step(step) else step, X)
        X = X if mapped is None else mapped  # a step that cannot map back: keep values as drawn
    # A step kept as drawn (no inverse) may leave values below a log's or a square root's domain.
    if any(_is_ufunc_step(step) and _nonnegative_only(step) for step in before):
        X = np.abs(X)
    X = X[np.all(np.isfinite(X), axis=1)]
    return Probe(X=np.ascontiguousarray(X), kind=drawn.kind)


def mapped_back(step: Any, X: np.ndarray) -> np.ndarray | None:
    """``X`` through ``step.inverse_transform`` as float64; ``None`` when the step cannot."""
    try:
        return np.asarray(step.inverse_transform(X), dtype=np.float64)
    except Exception:  # a step that cannot map back
        return None


def _steps_model(steps: list[Any], final: Any) -> Any:
    if not steps:
        return final
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([(f"s{i}", step) for i, step in enumerate([*steps, final])])
    return pipeline


def beside_thresholds(
    values: np.ndarray, rng: np.random.Generator, *, coarse: bool = False
) -> np.ndarray:
    """Values a small relative step either side of each threshold, and inside each gap.

    ``coarse`` (boosters, whose ONNX trees have no double-precision build) steps far enough that
    a float32 kernel, after a float32 scaler, still lands on the same side as scikit-learn.
    """
    if values.size > MAX_THRESHOLDS_PER_FEATURE:
        values = rng.choice(values, MAX_THRESHOLDS_PER_FEATURE, replace=False)
    if values.size == 0:
        return values
    step = (
        1e-3 * np.maximum(np.abs(values), 1e-2)
        if coarse
        else 1e-4 * np.maximum(np.abs(values), 1e-3)
    )
    candidates = [values - step, values + step]
    if values.size > 1:
        ordered = np.sort(values)
        candidates.append((ordered[1:] + ordered[:-1]) / 2)
    return np.unique(np.concatenate(candidates))


def _threshold_rows(thresholds: list[np.ndarray], center: np.ndarray, rows: int,
                    rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Rows whose every feature sits next to one of its thresholds, mixed across features."""
    n = len(thresholds)
    candidates = [t if t.size else np.array([center[j]]) for j, t in enumerate(thresholds)]
    mixed = np.column_stack([rng.choice(c, rows) for c in candidates])
    # One sweep per feature through all its candidates, others at random candidates: every
    # threshold is crossed at least once even when a feature has many.
    sweeps = []
    for j, values in enumerate(candidates):
        block = np.column_stack([rng.choice(c, values.size) for c in candidates])
        block[:, j] = values
        sweeps.append(block)
    return np.vstack([mixed, *sweeps]) if n else mixed


def from_sample(X: np.ndarray) -> Probe:
    return Probe(X=np.ascontiguousarray(X, dtype=np.float64), kind="sample")
