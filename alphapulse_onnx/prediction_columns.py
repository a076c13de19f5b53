"""The columns ``apo predict`` writes, with either engine: their names, dtypes and values.

``output_schema`` names them from the model: ``label`` and ``proba_<class>`` for classifiers,
``prediction`` (or ``prediction_<i>`` for several targets) for regressors, ``label`` and ``score``
(the decision function) for outlier detectors, ``label`` and ``distance_<k>`` (to each k-means
centre) or ``proba_<k>`` (each mixture component's probability) for clusterers: what the
artifact's two outputs hold. ``output_columns`` fills them from one run's outputs.

``score_rows`` scores one chunk (local) or partition (Dask) the same way for both engines: rows
that cannot be answered (a malformed row, a cell that is not a number, a value the model's input
contract refuses, a row its artifact overflows on) end the run (``invalid_rows="error"``, the
first one named), are left out (``"skip"``) or get empty predictions (``"null"``), and with
``keep_columns`` the input columns come first. The local engine and the Dask workers both call
these, so their files carry the same columns and rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from alphapulse_onnx import numbers
from alphapulse_onnx.errors import InvalidInputError

if TYPE_CHECKING:  # types only: store loads scikit-learn and onnxruntime, this stays light
    from alphapulse_onnx.serving import Outputs
    from alphapulse_onnx.store import Model

InvalidRows = Literal["error", "skip", "null"]
INVALID_ROWS: tuple[InvalidRows, ...] = ("error", "skip", "null")


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
        # No rows (a header-only file): no width to infer, one empty column per name.
        after = after.reshape(len(after), -1) if len(after) else np.empty((0, len(names) - 1))
        for i, name in enumerate(names[1:]):
            columns[name] = after[:, i]
    return columns


@dataclass(frozen=True)
class Scored:
    """One chunk's output: the columns to write, the rows of each to leave empty, how many rows
    were written and how many could not be answered, and the first such row's error (its row a
    position in the chunk, counting malformed rows)."""

    columns: dict[str, np.ndarray]
    empty: dict[str, np.ndarray] = field(default_factory=dict)
    written: int = 0
    invalid: int = 0
    first_invalid: InvalidInputError | None = None


def malformed_error(position: int, detail: str) -> InvalidInputError:
    return InvalidInputError(f"row {position}: {detail}", row=position, detail=detail)


def moved(exc: InvalidInputError, row: int) -> InvalidInputError:
    """``exc`` about the row at ``row`` instead of the row it named."""
    return InvalidInputError(exc.message, hint=exc.hint, row=row, column=exc.column,
                             detail=exc.detail)  # fmt: skip


def input_names(rows: Any, model: Model) -> list[str]:
    """The input's column names, for ``keep_columns``: a frame's own, else the model's feature
    names (by position), else ``x0``, ``x1``..."""
    width = rows.shape[1] if hasattr(rows, "shape") and len(rows.shape) == 2 else 0
    columns = list(getattr(rows, "columns", []))
    if columns and all(isinstance(c, str) for c in columns):
        return columns
    names = model.feature_names
    if names is not None and len(names) == width:
        return list(names)
    return [f"x{j}" for j in range(width)]


def _column(rows: Any, j: int) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows[:, j]
    return np.asarray(rows.iloc[:, j].to_numpy())


def _take(rows: Any, keep: np.ndarray) -> Any:
    if isinstance(rows, np.ndarray):
        return rows[keep]
    return rows.iloc[np.flatnonzero(keep)].reset_index(drop=True)


def _spread(values: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """``values`` placed at rows ``at`` of ``size`` rows (the others hold a placeholder)."""
    if len(at) == size:
        return values
    out = np.zeros(size, dtype=values.dtype) if values.dtype != object else np.full(size, None)
    out[at] = values
    return out


def score_rows(model: Model, rows: Any, *, names: Sequence[str], proba: bool,
               invalid_rows: InvalidRows = "error",
               malformed: Sequence[tuple[int, str]] = (),
               keep_columns: bool = False,
               features: Sequence[str] | None = None) -> Scored:  # fmt: skip
    """Score one chunk of rows; see the module docstring. ``malformed``: rows of the chunk that
    could not be read, by position among all its rows (``rows`` holds the others, in order).
    ``features``: the columns of ``rows`` (a frame) the model takes, by name; the others are
    only kept (``keep_columns``). None: ``rows`` holds the model's columns and nothing else."""
    if len(rows) == 0 and len(getattr(rows, "columns", ())) == 0:
        # An empty piece, or one whose every row was malformed: no columns to match.
        rows = np.empty((0, model.n_features or 0))
        features = None
    everything = rows
    if features is not None:
        rows = rows[list(features)]
    size = len(rows) + len(malformed)
    unread = dict(malformed)
    positions = np.setdiff1d(np.arange(size), np.fromiter(unread, dtype=np.int64))
    first: InvalidInputError | None = None
    if invalid_rows == "error":
        first_unread = min(unread) if unread else None
        try:
            outputs = model.run_prepared(model.prepare(rows), proba=proba)
        except InvalidInputError as exc:
            if exc.row is None:
                raise
            at = int(positions[exc.row])
            if first_unread is not None and first_unread < at:
                raise malformed_error(first_unread, unread[first_unread]) from None
            raise moved(exc, at) from None
        if first_unread is not None:
            raise malformed_error(first_unread, unread[first_unread])
        answered = np.ones(len(rows), dtype=bool)
    else:
        screening = model.screen(rows)
        ok = ~screening.bad
        outputs, overflow = model.run_screened(model.prepare(_take(rows, ok)), proba=proba)
        overflowed = np.flatnonzero(ok)[overflow]
        answered = ok.copy()
        answered[overflowed] = False
        if overflow.any():
            outputs = _select(outputs, ~overflow)
        first = _first_invalid(unread, positions, screening.first, overflowed, model.name)
    # Floats with the digits the engine's answers carry (a float32 artifact's: 0.41309044).
    precision = numbers.served_precision(model.engine, model.entry.outputs)
    predictions = numbers.carried_columns(output_columns(names, outputs), precision)
    kept: dict[str, np.ndarray] = {}
    if keep_columns:
        for j, name in enumerate(input_names(everything, model)):
            if name not in predictions:
                kept[name] = _column(everything, j)
    written_at = positions[answered]
    if invalid_rows == "null":
        empty = np.ones(size, dtype=bool)
        empty[written_at] = False
        read = np.zeros(size, dtype=bool)
        read[positions] = True
        columns = {k: _spread(v, positions, size) for k, v in kept.items()}
        columns.update({k: _spread(v, written_at, size) for k, v in predictions.items()})
        masks = {k: ~read for k in kept if (~read).any()}
        masks.update({k: empty for k in predictions if empty.any()})
        return Scored(columns, masks, size, int(empty.sum()), first)
    columns = {k: v[answered] for k, v in kept.items()}
    columns.update(predictions)
    return Scored(columns, {}, len(written_at), size - len(written_at), first)


def _select(outputs: Outputs, keep: np.ndarray) -> Outputs:
    from alphapulse_onnx.serving import Outputs

    def pick(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[keep]

    return Outputs(pick(outputs.predictions), pick(outputs.probabilities), pick(outputs.scores))


def _first_invalid(unread: dict[int, str], positions: np.ndarray,
                   refused: InvalidInputError | None, overflowed: np.ndarray,
                   model: str) -> InvalidInputError | None:  # fmt: skip
    """The first row (by position in the chunk) that was not answered, and why."""
    found: list[tuple[int, InvalidInputError]] = []
    if unread:
        at = min(unread)
        found.append((at, malformed_error(at, unread[at])))
    if refused is not None and refused.row is not None:
        at = int(positions[refused.row])
        found.append((at, moved(refused, at)))
    if overflowed.size:
        from alphapulse_onnx.serving import overflow_error

        at = int(positions[int(overflowed[0])])
        found.append((at, overflow_error(at, model)))
    return min(found, key=lambda item: item[0])[1] if found else None
