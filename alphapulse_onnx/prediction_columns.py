"""The columns ``apo predict`` writes, with either engine: their names, dtypes and values.

``output_schema`` names them from the model: ``label`` and ``proba_<class>`` for classifiers,
``prediction`` (or ``prediction_<i>`` for several targets) for regressors, ``label`` and ``score``
(the decision function) for outlier detectors, ``label`` and ``distance_<k>`` (to each k-means
centre) or ``proba_<k>`` (each mixture component's probability) for clusterers: what the
artifact's two outputs hold. ``output_columns`` fills them from one run's outputs. The local
engine and the Dask workers both call these two, so their files carry the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # types only: store loads scikit-learn and onnxruntime, this stays light
    from alphapulse_onnx.serving import Outputs
    from alphapulse_onnx.store import Model


def output_schema(model: Model, proba: bool) -> list[tuple[str, Any]]:
    """(name, numpy dtype) of each output column, in order.

    ``proba``: add a classifier's probabilities. Outlier detectors and clusterers always give the
    scores behind their labels."""
    task = model.task
    if task in ("classification", "outlier_detection", "clustering"):
        classes = model.classes
        assert classes is not None
        schema: list[tuple[str, Any]] = [("label", classes.dtype)]
        if task == "outlier_detection":
            schema.append(("score", np.float64))
        elif task == "clustering":
            prefix = "proba" if model.has_proba else "distance"
            schema += [(f"{prefix}_{k}", np.float64) for k in classes.tolist()]
        elif proba:
            schema += [(f"proba_{c}", np.float64) for c in classes.tolist()]
        return schema
    outputs = model.entry.outputs
    width = outputs[0].shape[1] if outputs and len(outputs[0].shape) > 1 else 1
    if isinstance(width, int) and width > 1:
        return [(f"prediction_{i}", np.float64) for i in range(width)]
    return [("prediction", np.float64)]


def output_columns(names: Sequence[str], outputs: Outputs) -> dict[str, np.ndarray]:
    """One run's predictions (and probabilities or scores) under ``output_schema``'s names."""
    predictions = outputs.predictions
    assert predictions is not None  # a run always predicts; only probabilities are optional
    columns: dict[str, np.ndarray] = {}
    if predictions.ndim == 2:
        for i, name in enumerate(names[: predictions.shape[1]]):
            columns[name] = predictions[:, i]
    else:
        columns[names[0]] = predictions
    # After the label: a scored task's scores (a mixture's are its probabilities), else any
    # probabilities asked for.
    after = outputs.scores if outputs.scores is not None else outputs.probabilities
    if after is not None:
        after = after.reshape(len(after), -1)
        for i, name in enumerate(names[1:]):
            columns[name] = after[:, i]
    return columns
