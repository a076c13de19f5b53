"""What a model takes and gives, read from the fitted estimator itself: no flags needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import is_classifier, is_outlier_detector, is_regressor

from alphapulse_onnx.errors import UnsupportedModelError

DType = Literal["float32", "float64", "int64", "string"]
Task = Literal["classification", "regression", "outlier_detection", "clustering"]
ScoreMethod = Literal["decision_function", "transform"]
# Tasks whose labels are decided from per-row scores, which their artifacts give as a second output.
SCORED_TASKS: tuple[str, ...] = ("outlier_detection", "clustering")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of an artifact. ``column``: the user's column a per-column input reads.

    ONNX input names are sanitised (``"price ($)"`` becomes ``price____``), so a per-column input
    records the column it stands for; callers, probes and parity speak only of ``column_name``.
    """

    name: str
    dtype: DType
    shape: tuple[int | None, ...]
    column: str | None = None

    @property
    def column_name(self) -> str:
        """The user's column this input reads (its own name where none is recorded)."""
        return self.name if self.column is None else self.column

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.column is not None:
            raw["column"] = self.column
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TensorSpec:
        column = raw.get("column")
        return cls(name=str(raw["name"]), dtype=raw["dtype"], shape=tuple(raw["shape"]),
                   column=None if column is None else str(column))  # fmt: skip


@dataclass(frozen=True)
class Scores:
    """What an outlier detector's or a k-means clusterer's second output equals in scikit-learn.

    ``bounded``: the scores lie on a fixed scale whatever the data (IsolationForest's lie in
    [-1, 1]), so parity holds them to an absolute tolerance; unbounded ones (an SVM's or LOF's
    decision function, distances to centres) scale with the data, so to a relative one.
    """

    method: ScoreMethod
    bounded: bool


@dataclass(frozen=True)
class InputSignature:
    """The model's inputs: one float tensor ``X`` of ``n_features`` columns, or one per column.

    ``per_column`` signatures (DataFrame-fit models that select columns by name or read text or
    integer categories) have one ``[None, 1]`` input named after each original column, typed from
    what the fitted model knows: ``string`` for columns an encoder or imputer saw as text, ``int64``
    for integer categories, float otherwise (``float32`` here; the double build uses ``float64``).
    """

    inputs: tuple[TensorSpec, ...]
    n_features: int
    feature_names: tuple[str, ...] | None
    task: Task
    classes: tuple[Any, ...] | None
    has_proba: bool  # the estimator answers predict_proba (some SVCs only decide)
    per_column: bool = False
    scores: Scores | None = None  # outlier detectors and k-means: their second output


@dataclass(frozen=True)
class Route:
    """Where one original column goes: the chain of steps that first transform it, and its position
    among that chain's input columns. ``steps`` is empty for a passthrough or dropped column."""

    steps: tuple[Any, ...]
    index: int
    dropped: bool = False
    output: int | None = None  # its column in the ColumnTransformer's output, when 1:1


def _predict_steps(model: Any) -> list[Any]:
    """A pipeline's steps that run at predict time: not ``None``/``"passthrough"``, and not
    imbalanced-learn's samplers (``fit_resample``), which its pipelines skip when predicting."""
    return [step for _, step in getattr(model, "steps", None) or ()
            if step is not None and not isinstance(step, str)
            and not hasattr(step, "fit_resample")]  # fmt: skip


def _chain(step: Any) -> tuple[Any, ...]:
    """A transformer, or a pipeline of them, flattened to its steps (passthrough removed)."""
    if step is None or isinstance(step, str):
        return ()
    if getattr(step, "steps", None):
        out: list[Any] = []
        for inner in _predict_steps(step):
            out.extend(_chain(inner))
        return tuple(out)
    if type(step).__name__ == "FunctionTransformer" and step.func is None:
        return ()  # the identity (how scikit-learn >= 1.7 stores remainder="passthrough")
    return (step,)


def _front(model: Any) -> tuple[Any, tuple[Any, ...]]:
    """The first step that sees the raw columns, and the pipeline steps after it."""
    calibrated = getattr(model, "calibrated_classifiers_", None)
    if calibrated and getattr(calibrated[0].estimator, "steps", None):
        model = calibrated[0].estimator  # CalibratedClassifierCV(pipeline): one fitted copy
    if not getattr(model, "steps", None):
        return model, ()
    chain = _predict_steps(model)
    if not chain:
        return model, ()
    head, rest = chain[0], tuple(chain[1:])
    if getattr(head, "steps", None):  # a nested pipeline at the front
        inner, inner_rest = _front(head)
        return inner, inner_rest + rest
    return head, rest


def column_routes(model: Any, names: tuple[str, ...]) -> dict[str, list[Route]] | None:
    """For a DataFrame-fit model, where each original column goes; ``None`` when not known."""
    head, rest = _front(model)
    position = {name: i for i, name in enumerate(names)}
    transformers = getattr(head, "transformers_", None)
    if transformers is not None:  # a fitted ColumnTransformer
        indices: dict[str, Any] = getattr(head, "_transformer_to_input_indices", {}) or {}
        routes: dict[str, list[Route]] = {name: [] for name in names}
        for label, transformer, columns in transformers:
            picked = indices.get(label)
            if picked is None:
                picked = _resolve_columns(columns, names, position)
            dropped = isinstance(transformer, str) and transformer == "drop"
            span = (getattr(head, "output_indices_", None) or {}).get(label)
            one_to_one = (not dropped and span is not None
                          and span.stop - span.start == len(picked))  # fmt: skip
            for local, column in enumerate(int(i) for i in picked):
                output = span.start + local if one_to_one and span is not None else None
                routes[names[column]].append(Route(_chain(transformer), local, dropped, output))
        return routes
    if head is model and not getattr(model, "steps", None):
        return None  # a bare estimator: one float matrix
    if not hasattr(head, "transform"):
        return None
    chain = (head, *(s for s in rest if hasattr(s, "transform")))
    return {name: [Route(chain, i)] for i, name in enumerate(names)}


def _resolve_columns(columns: Any, names: tuple[str, ...], position: dict[str, int]) -> list[int]:
    if isinstance(columns, slice) or callable(columns):
        return []  # resolved by scikit-learn into _transformer_to_input_indices in all >= 1.2
    items = [columns] if isinstance(columns, (str, int, np.integer)) else list(columns)
    if items and all(isinstance(c, (bool, np.bool_)) for c in items):
        return [i for i, keep in enumerate(items) if keep]
    return [position[c] if isinstance(c, str) else int(c) for c in items if c in position or
            not isinstance(c, str)]  # fmt: skip


def _has_column_transformer(model: Any) -> bool:
    head, _ = _front(model)
    return getattr(head, "transformers_", None) is not None


def has_column_transformer(model: Any, depth: int = 0) -> bool:
    """Whether a fitted ColumnTransformer sits anywhere in ``model`` (pipelines, nested ones):
    then columns may be treated differently, each by the steps it is routed to."""
    if getattr(model, "transformers_", None) is not None:
        return True
    if depth > 8:
        return False
    return any(has_column_transformer(step, depth + 1) for step in _predict_steps(model))


def column_dtype(routes: list[Route]) -> DType:
    """The input type one column needs: what the first step that reads it learnt from it."""
    for route in routes:
        for step in route.steps:
            if type(step).__module__.startswith("category_encoders."):
                from alphapulse_onnx.converters.encoders import column_facts

                return column_facts(step, route.index).dtype  # type: ignore[return-value]
            categories = getattr(step, "categories_", None)
            if categories is not None and route.index < len(categories):
                kind = np.asarray(categories[route.index]).dtype.kind
                if kind in "OUS":
                    return "string"
                if kind in "iub":  # booleans travel as 0/1
                    return "int64"
                return "float32"
            statistics = getattr(step, "statistics_", None)
            if statistics is not None and route.index < len(statistics):
                if np.asarray(statistics).dtype.kind in "OUS":
                    return "string"
                return "float32"
            if type(step).__name__ != "FunctionTransformer" or step.func is not None:
                break  # the first real step decides
    return "float32"


def final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    if steps:
        return final_estimator(steps[-1][1])
    return model


def task_of(model: Any) -> Task:
    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    last = final_estimator(model)
    if hasattr(last, "classes_"):
        return "classification"
    name = type(last).__name__
    if is_outlier_detector(last):
        if not _predicts(last):  # LocalOutlierFactor(novelty=False) only labels its own rows
            raise UnsupportedModelError(
                f"{name} has no predict for new rows (it only labels the rows it was fit on); "
                "refit it with novelty=True to serve it"
            )
        return "outlier_detection"
    if _is_clusterer(last):
        if not _predicts(last):
            raise UnsupportedModelError(
                f"{name} has no predict for new rows (it only labels the rows it was fit on); "
                "apo serves clusterers that predict, such as KMeans or GaussianMixture"
            )
        return "clustering"
    raise UnsupportedModelError(
        f"{type(model).__name__} is not a classifier, regressor, outlier detector or clusterer; "
        "apo compiles those (a transformer on its own is not served)"
    )


def _predicts(estimator: Any) -> bool:
    # hasattr runs the available_if check: LocalOutlierFactor answers predict only with novelty.
    try:
        return hasattr(estimator, "predict")
    except Exception:  # a broken available_if check means no predict
        return False


def _is_clusterer(estimator: Any) -> bool:
    """k-means and friends, and Gaussian mixtures: their predict gives each row a component."""
    from sklearn.base import ClusterMixin
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    return isinstance(estimator, (ClusterMixin, GaussianMixture, BayesianGaussianMixture))


def _clusters(estimator: Any) -> int:
    """How many clusters (or mixture components) a fitted clusterer labels rows with."""
    for attr in ("cluster_centers_", "means_", "weights_"):
        value = getattr(estimator, attr, None)
        if value is not None:
            return int(np.shape(value)[0])
    raise UnsupportedModelError(
        f"{type(estimator).__name__} records no cluster centres or components, so its labels "
        "are unknown"
    )


def scores_of(model: Any, task: str) -> Scores | None:
    """What the second output of an outlier detector or k-means clusterer equals; ``None`` for
    the others (a Gaussian mixture's second output is ``predict_proba``, as a classifier's)."""
    last = final_estimator(model)
    if task == "outlier_detection":
        from sklearn.ensemble import IsolationForest

        return Scores("decision_function", bounded=isinstance(last, IsolationForest))
    if task == "clustering" and not _answers_proba(last):
        return Scores("transform", bounded=False)
    return None


def infer(model: Any, *, dtype: DType = "float32") -> InputSignature:
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        n_features = getattr(final_estimator(model), "n_features_in_", None)
    if n_features is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} does not record n_features_in_, so its input is unknown"
        )
    names = getattr(model, "feature_names_in_", None)
    feature_names = tuple(str(n) for n in names) if names is not None else None
    if feature_names is None:
        _refuse_unnamed_selectors(model)
    task = task_of(model)
    classes: tuple[Any, ...] | None = None
    has_proba = False
    if task == "classification":
        classes = tuple(_plain(c) for c in model.classes_)
        has_proba = _answers_proba(model)
    elif task == "outlier_detection":
        classes = (-1, 1)  # scikit-learn's labels: -1 an outlier, 1 an inlier
    elif task == "clustering":
        classes = tuple(range(_clusters(final_estimator(model))))
        has_proba = _answers_proba(model)  # Gaussian mixtures: each component's probability
    inputs: tuple[TensorSpec, ...] = (TensorSpec("X", dtype, (None, int(n_features))),)
    per_column = False
    if feature_names is not None:
        routes = column_routes(model, feature_names)
        if routes is not None:
            dtypes = {name: column_dtype(routes[name]) for name in feature_names}
            if _has_column_transformer(model) or any(d != "float32" for d in dtypes.values()):
                per_column = True
                inputs = tuple(
                    TensorSpec(
                        name, dtype if dtypes[name] == "float32" else dtypes[name], (None, 1)
                    )
                    for name in feature_names
                )
    if not per_column:  # LightGBM fitted on pandas category columns: those columns as text/int64
        from alphapulse_onnx.converters.boosters import category_inputs

        by_column = category_inputs(model, dtype)
        if by_column is not None:
            inputs, per_column = by_column, True
    return InputSignature(
        inputs=inputs,
        n_features=int(n_features),
        feature_names=feature_names,
        task=task,
        classes=classes,
        has_proba=has_proba,
        per_column=per_column,
        scores=scores_of(model, task),
    )


def _refuse_unnamed_selectors(model: Any) -> None:
    """A ColumnTransformer that picks columns by name but records no names (saved by a release
    before 1.0 that kept none the loader could read): its inputs cannot be named."""
    head, _ = _front(model)
    for _, _, columns in getattr(head, "transformers_", None) or ():
        items = [columns] if isinstance(columns, (str, slice)) else columns
        if not isinstance(items, (list, tuple, np.ndarray)):
            continue
        named = [c for c in items if isinstance(c, str)
                 or (isinstance(c, slice) and isinstance(c.start or c.stop, str))]  # fmt: skip
        if named:
            raise UnsupportedModelError(
                f"{type(head).__name__} selects columns by name ({named[0]!r}) but records no "
                "names of the columns it was fit on (scikit-learn before 1.0 did not always "
                "keep them), so its inputs cannot be named; re-fit it with scikit-learn 1.0 or "
                "later (re-saving the fitted object does not add them)"
            )


def _answers_proba(model: Any) -> bool:
    # hasattr runs the available_if check: SVC(probability=False) has no predict_proba.
    try:
        return hasattr(model, "predict_proba")
    except Exception:  # a broken available_if check means no probabilities
        return False


def _plain(value: Any) -> Any:
    """Class labels as JSON-friendly Python values (numpy scalars become int/str/float)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
