"""What a model takes and gives, read from the fitted estimator itself: no flags needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import is_classifier, is_regressor

DType = Literal["float32", "float64", "int64", "string"]
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DType
    shape: tuple[int | None, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TensorSpec:
        return cls(name=str(raw["name"]), dtype=raw["dtype"], shape=tuple(raw["shape"]))


@dataclass(frozen=True)
class InputSignature:
    """The model's inputs: one float tensor ``X`` of ``n_features`` columns."""

    inputs: tuple[TensorSpec, ...]
    n_features: int
    feature_names: tuple[str, ...] | None
    task: Task
    classes: tuple[Any, ...] | None
    has_proba: bool  # the estimator answers predict_proba (some SVCs only decide)


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
    raise ValueError(f"{type(model).__name__} is neither a classifier nor a regressor")


def infer(model: Any, *, dtype: DType = "float32") -> InputSignature:
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        n_features = getattr(final_estimator(model), "n_features_in_", None)
    if n_features is None:
        raise ValueError(f"{type(model).__name__} does not record n_features_in_")
    names = getattr(model, "feature_names_in_", None)
    feature_names = tuple(str(n) for n in names) if names is not None else None
    task = task_of(model)
    classes: tuple[Any, ...] | None = None
    has_proba = False
    if task == "classification":
        classes = tuple(_plain(c) for c in model.classes_)
        has_proba = _answers_proba(model)
    return InputSignature(
        inputs=(TensorSpec("X", dtype, (None, int(n_features))),),
        n_features=int(n_features),
        feature_names=feature_names,
        task=task,
        classes=classes,
        has_proba=has_proba,
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
