"""How a served model computes: onnxruntime on its artifact, or scikit-learn on its source model.

Both engines take a caller's rows through ``prepare`` once (validated and converted by the
model's ``FeedBuilder``), can merge and split prepared rows (``concat``/``take``, for
``BatchPredictor``), and answer with ``Outputs``. ``Store`` chooses one per model.

Outlier detectors and clusterers also answer the scores behind their labels (``scores``): the
decision function, the distance to each k-means centre, or a Gaussian mixture's probabilities;
the artifact's second output, or the same scikit-learn method.

An artifact whose arithmetic overflows on a row (a float32 network fed values near the top of
float32 range) gives NaN or infinite probabilities, scores or values and a label that is not
scikit-learn's: ``OrtEngine`` refuses such a row (``InvalidInputError`` naming it), or flags it
(``run_screened``), and never returns it as an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from alphapulse_onnx.errors import ApoError, InvalidInputError, first_line
from alphapulse_onnx.feeds import FeedBuilder
from alphapulse_onnx.manifest import ManifestEntry
from alphapulse_onnx.signature import SCORED_TASKS, scores_of

EngineName = Literal["onnxruntime", "sklearn"]


@dataclass(frozen=True)
class Outputs:
    """What one run gives: labels or regression values, class probabilities when asked, and the
    scores behind the labels of outlier detectors and clusterers (always)."""

    predictions: np.ndarray | None
    probabilities: np.ndarray | None
    scores: np.ndarray | None = None


class OrtEngine:
    name: EngineName = "onnxruntime"

    def __init__(
        self, session: Any, builder: FeedBuilder, entry: ManifestEntry, classes: np.ndarray | None
    ) -> None:
        self.session = session
        self.provider: str | None = session.get_providers()[0]
        self.builder = builder
        outputs = [o.name for o in session.get_outputs()]
        self._pred_out = [outputs[0]]
        self._proba_out = [outputs[1]] if len(outputs) > 1 else []
        self._both_out = outputs[:2]
        self._classes = classes
        self._label_dtype = classes.dtype if classes is not None else None
        shape = entry.outputs[0].shape if entry.outputs else (None, 1)
        self._flatten = entry.task == "regression" and (len(shape) < 2 or shape[1] == 1)
        self._scored = entry.task in SCORED_TASKS
        self._one_score = entry.task == "outlier_detection"  # one per row, whatever its ONNX shape

    def prepare(self, X: Any) -> dict[str, np.ndarray]:
        return self.builder.feeds(X)

    @staticmethod
    def rows(prepared: dict[str, np.ndarray]) -> int:
        return len(next(iter(prepared.values())))

    @staticmethod
    def concat(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    @staticmethod
    def take(prepared: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
        return {k: v[start:stop] for k, v in prepared.items()}

    def _predictions(self, raw: np.ndarray) -> np.ndarray:
        if self._label_dtype is not None:
            labels = raw if raw.dtype == self._label_dtype else raw.astype(self._label_dtype)
            return labels.ravel()  # detectors' and mixtures' labels come as [n, 1]
        values = raw.astype(np.float64, copy=False)
        return values.ravel() if self._flatten else values

    def _scores(self, raw: np.ndarray) -> np.ndarray:
        values = np.asarray(raw, dtype=np.float64)
        return values.ravel() if self._one_score else values

    def _run(self, names: list[str], prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(names, prepared)  # type: ignore[no-any-return]
        except Exception as exc:  # onnxruntime's own exception types: state it in apo's terms
            raise ort_failure(exc, self.builder.model) from None

    def _computed(self, prepared: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """The artifact's first output, and its second (probabilities or scores) when it has
        one: a label is only as sound as the numbers it was taken from."""
        if len(self._both_out) == 1:
            return self._run(self._pred_out, prepared)[0], None
        first, second = self._run(self._both_out, prepared)
        return first, second

    def _overflowed(self, first: np.ndarray, second: np.ndarray | None) -> np.ndarray:
        """Rows whose numbers are NaN or infinite: the artifact could not compute them."""
        checked = second if second is not None else (None if self._label_dtype else first)
        if checked is None:
            return np.zeros(len(first), dtype=bool)
        values = np.asarray(checked)
        if values.dtype.kind not in "fc":
            return np.zeros(len(values), dtype=bool)
        values = values.reshape(len(values), -1)
        finite: np.ndarray = np.isfinite(values).all(axis=1)
        return ~finite

    def _refuse_overflow(self, bad: np.ndarray) -> None:
        if bad.any():
            raise overflow_error(int(np.argmax(bad)), self.builder.model)

    def predict(self, prepared: dict[str, np.ndarray]) -> np.ndarray:
        first, second = self._computed(prepared)
        self._refuse_overflow(self._overflowed(first, second))
        return self._predictions(first)

    def predict_proba(self, prepared: dict[str, np.ndarray]) -> np.ndarray:
        first, second = self._computed(prepared)
        self._refuse_overflow(self._overflowed(first, second))
        return np.asarray(second, dtype=np.float64)

    def scores(self, prepared: dict[str, np.ndarray]) -> np.ndarray:
        first, second = self._computed(prepared)
        self._refuse_overflow(self._overflowed(first, second))
        assert second is not None  # scored tasks have a second output
        return self._scores(second)

    def run_screened(self, prepared: dict[str, np.ndarray], *,
                     proba: bool) -> tuple[Outputs, np.ndarray]:  # fmt: skip
        first, second = self._computed(prepared)
        outputs = Outputs(
            self._predictions(first),
            np.asarray(second, dtype=np.float64) if proba and second is not None else None,
            self._scores(second) if self._scored and second is not None else None,
        )
        return outputs, self._overflowed(first, second)

    def run(self, prepared: dict[str, np.ndarray], *, proba: bool) -> Outputs:
        outputs, bad = self.run_screened(prepared, proba=proba)
        self._refuse_overflow(bad)
        return outputs


def overflow_error(row: int, model: str) -> InvalidInputError:
    """A row the artifact's arithmetic overflows on (NaN or infinite results)."""
    detail = (
        "the artifact's arithmetic overflows on this row (its answer came out NaN or "
        "infinite), so it is not scikit-learn's"
    )
    return InvalidInputError(
        f"model {model!r}: row {row}: {detail}",
        row=row,
        detail=detail,
        hint="check the row's magnitudes; values near the top of float32 range overflow",
    )


def ort_failure(exc: Exception, model: str) -> ApoError:
    """onnxruntime errors as apo errors: bad arguments are the caller's input, the rest ours."""
    detail = first_line(exc)
    if type(exc).__name__ == "InvalidArgument":
        return InvalidInputError(f"model {model!r}: onnxruntime refused the rows: {detail}")
    return ApoError(f"model {model!r}: onnxruntime failed: {detail}")


class SklearnEngine:
    name: EngineName = "sklearn"
    provider: str | None = None

    def __init__(self, estimator: Any, builder: FeedBuilder, reason: str, task: str | None) -> None:
        self.estimator = estimator
        self.builder = builder
        self.reason = reason
        self._score_method: str | None = None
        if task in SCORED_TASKS:
            kind = scores_of(estimator, task)
            self._score_method = kind.method if kind is not None else "predict_proba"

    def prepare(self, X: Any) -> Any:
        return self.builder.frame(X)

    @staticmethod
    def rows(prepared: Any) -> int:
        return len(prepared)

    @staticmethod
    def concat(parts: Sequence[Any]) -> Any:
        if len(parts) == 1:
            return parts[0]
        if isinstance(parts[0], np.ndarray):
            return np.concatenate(parts)
        import pandas as pd

        return pd.concat(list(parts), ignore_index=True)

    @staticmethod
    def take(prepared: Any, start: int, stop: int) -> Any:
        return (
            prepared[start:stop] if isinstance(prepared, np.ndarray) else prepared.iloc[start:stop]
        )

    def _call(self, method: str, prepared: Any) -> np.ndarray:
        try:
            # An overflow inside scikit-learn's arithmetic (exp of a huge value) is its answer;
            # numpy's RuntimeWarning about it must not reach the terminal raw. (errstate is
            # per thread, so it is safe in BatchPredictor's executor.)
            with np.errstate(all="ignore"):
                return np.asarray(getattr(self.estimator, method)(prepared))
        except ValueError as exc:  # scikit-learn's own input checks
            raise InvalidInputError(f"scikit-learn refused the rows: {first_line(exc)}") from None

    def predict(self, prepared: Any) -> np.ndarray:
        return self._call("predict", prepared)

    def predict_proba(self, prepared: Any) -> np.ndarray:
        return np.asarray(self._call("predict_proba", prepared), dtype=np.float64)

    def scores(self, prepared: Any) -> np.ndarray:
        assert self._score_method is not None  # Model.scores asks scored tasks only
        return np.asarray(self._call(self._score_method, prepared), dtype=np.float64)

    def run(self, prepared: Any, *, proba: bool) -> Outputs:
        return Outputs(
            self.predict(prepared),
            self.predict_proba(prepared) if proba else None,
            self.scores(prepared) if self._score_method is not None else None,
        )

    def run_screened(self, prepared: Any, *, proba: bool) -> tuple[Outputs, np.ndarray]:
        """scikit-learn's answers are scikit-learn's: no row is flagged."""
        outputs = self.run(prepared, proba=proba)
        return outputs, np.zeros(self.rows(prepared), dtype=bool)


class Engine(Protocol):
    """How a model computes: onnxruntime on its artifact, or scikit-learn on its source model.

    ``prepare`` validates and converts a caller's rows once; ``concat`` and ``take`` merge and
    split prepared rows (``BatchPredictor`` serves many callers in one run); ``run`` answers.
    """

    name: EngineName
    provider: str | None
    builder: FeedBuilder

    def prepare(self, X: Any) -> Any: ...
    def rows(self, prepared: Any) -> int: ...
    def concat(self, parts: Sequence[Any]) -> Any: ...
    def take(self, prepared: Any, start: int, stop: int) -> Any: ...
    def predict(self, prepared: Any) -> np.ndarray: ...
    def predict_proba(self, prepared: Any) -> np.ndarray: ...
    def scores(self, prepared: Any) -> np.ndarray: ...
    def run(self, prepared: Any, *, proba: bool) -> Outputs: ...
    def run_screened(self, prepared: Any, *, proba: bool) -> tuple[Outputs, np.ndarray]: ...
