"""scikit-learn against onnxruntime on the same rows: does the artifact give the same answers?

Labels are compared separately from probabilities. A label may differ only where scikit-learn's own
top two probabilities tie (to within the float rounding of the artifact's precision), since
scikit-learn breaks ties by class order and a float32 kernel may break them the other way. A lossy
artifact (an FP16 or INT8 variant) that rounding alone does not explain is judged by its tolerance
instead: an error within ``proba_atol`` on each probability can flip a label wherever the top two
are within ``2 * proba_atol``, so that is where its labels may differ.

Outlier detectors and k-means clusterers decide their labels from scores (the decision function's
sign; the nearest centre), which the artifact's second output gives too. Their labels are held to
the same rule, with scikit-learn's scores in place of probabilities: a label may differ only where
scikit-learn's own score sits within rounding of the boundary (a score of 0; two centres equally
near). Gaussian mixtures answer probabilities and are judged as classifiers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alphapulse_onnx.signature import InputSignature, Scores

# Top-two probability gaps at or below these are ties: float32 keeps ~7 significant digits.
TIE_TOLERANCE = {"float32": 1e-6, "float64": 1e-12}


@dataclass(frozen=True)
class Tolerance:
    proba_atol: float = 1e-4  # probabilities, absolute
    regression_rtol: float = 1e-4  # regression outputs, relative to max(|y|, mean |y|)

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Tolerance:
        if not raw:
            return cls()
        return cls(**{k: float(raw[k]) for k in cls.__dataclass_fields__ if k in raw})


@dataclass(frozen=True)
class ParityReport:
    passed: bool
    probe: str
    rows: int
    max_abs_diff: float | None  # probabilities (classifiers), predictions (regressors) or scores
    max_rel_diff: float | None  # regressors, and scores that grow with the data
    label_agreement: float | None  # fraction of rows with the same label; None for regressors
    ties: int  # label differences explained by ties in scikit-learn's probabilities or scores
    mismatches: int  # rows outside tolerance
    reason: str | None
    # What the diffs measure, where they are scores: the scikit-learn method the artifact's scores
    # equal (decision_function, transform). None: probabilities or regression values.
    scores: str | None = None

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        if self.scores is None:  # written only where it applies: other reports read back as read
            del raw["scores"]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ParityReport:
        return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


Rows = np.ndarray | Mapping[str, np.ndarray]  # a float matrix, or raw cells by column


def n_rows(X: Rows) -> int:
    if isinstance(X, np.ndarray):
        return int(X.shape[0])
    return len(next(iter(X.values()), ()))


def sklearn_input(X: Rows, signature: InputSignature) -> Any:
    """Rows as the model was fitted: a DataFrame when it learnt feature names (no warnings).

    Per-column rows keep each column's type: text (``NaN`` for gaps), int64 or float64.
    """
    if signature.feature_names is None and isinstance(X, np.ndarray):
        return X
    import pandas as pd

    if isinstance(X, np.ndarray):
        return pd.DataFrame(X, columns=list(signature.feature_names or ()))
    columns = {}
    for spec in signature.inputs:
        values = X[spec.column_name]
        if spec.dtype == "string":  # every gap (None, pd.NA) as NaN, scikit-learn's marker
            column = pd.Series(values, dtype=object)
            columns[spec.column_name] = column.where(column.notna(), np.nan)
        else:
            columns[spec.column_name] = pd.Series(values)
    return pd.DataFrame(columns, columns=[spec.column_name for spec in signature.inputs])


def _same_labels(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    got = np.asarray(got).ravel()
    expected = np.asarray(expected).ravel()
    if expected.dtype.kind in "OUS" or got.dtype.kind in "OUS":
        return np.asarray(expected.astype(str) == got.astype(str))
    return np.asarray(expected == got)


@dataclass(frozen=True)
class Answers:
    """A model's answers on probe rows: labels (or regression values), class probabilities, and
    for outlier detectors and k-means the scores behind their labels (``score_kind`` says which).

    The reference that an artifact is held to: scikit-learn's answers here
    (``reference_answers``), or the answers the model gave in the library versions that trained
    it (``origin``).
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None = None
    scores: np.ndarray | None = None
    score_kind: Scores | None = None


def reference_answers(model: Any, signature: InputSignature, X: Rows) -> Answers:
    """``model``'s own answers for rows ``X``, as scikit-learn running here gives them."""
    from alphapulse_onnx.converters.boosters import with_categories

    frame = with_categories(model, sklearn_input(X, signature))  # LightGBM's category columns
    kind = signature.scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in exp() on extreme probes is scikit-learn's own
        predictions = np.asarray(model.predict(frame))
        proba = model.predict_proba(frame) if signature.has_proba else None
        scores = getattr(model, kind.method)(frame) if kind is not None else None
    return Answers(
        predictions,
        None if proba is None else np.asarray(proba, dtype=np.float64),
        None if scores is None else np.asarray(scores, dtype=np.float64),
        kind,
    )


def compare(model: Any, signature: InputSignature, X: Rows, outputs: list[np.ndarray], *,
            probe: str, precision: str, tolerance: Tolerance,
            lossy: bool = False) -> ParityReport:  # fmt: skip
    """Compare onnxruntime ``outputs`` for rows ``X`` with ``model``'s own answers.

    ``lossy``: the artifact computes below ``precision`` inside (FP16, INT8 weights); see above."""
    expected = reference_answers(model, signature, X)
    return compare_answers(expected, outputs, task=signature.task, classes=signature.classes,
                           rows=n_rows(X), probe=probe, precision=precision, tolerance=tolerance,
                           lossy=lossy)  # fmt: skip


def compare_answers(expected: Answers, outputs: list[np.ndarray], *, task: str | None,
                    classes: Sequence[Any] | None, rows: int, probe: str, precision: str,
                    tolerance: Tolerance, lossy: bool = False) -> ParityReport:  # fmt: skip
    """Compare onnxruntime ``outputs`` with ``expected`` answers on the same ``rows``.

    ``classes``: the classifier's classes, in the order of its probability columns."""
    expected_labels, expected_proba = expected.predictions, expected.probabilities
    if task == "regression":
        return _compare_regression(expected_labels, outputs[0], rows, probe, tolerance)
    if expected.scores is not None and expected.score_kind is not None:
        return _compare_scored(expected, outputs, rows=rows, probe=probe, precision=precision,
                               tolerance=tolerance, lossy=lossy)  # fmt: skip
    same = _same_labels(expected_labels, outputs[0])
    ties = 0
    max_abs: float | None = None
    mismatched_proba = np.zeros(rows, dtype=bool)
    if expected_proba is not None and len(outputs) > 1:
        got = np.asarray(outputs[1], dtype=np.float64).reshape(expected_proba.shape)
        diff = np.abs(got - expected_proba)
        max_abs = float(np.nanmax(diff)) if diff.size else 0.0
        mismatched_proba = diff.max(axis=1) > tolerance.proba_atol
        mismatched_proba |= ~np.isfinite(got).all(axis=1)
        if (~same).any():
            # Classes within ``within`` of the top probability tie; an artifact answering one
            # of them breaks the tie its own way, which scikit-learn may not share.
            gaps = expected_proba.max(axis=1, keepdims=True) - expected_proba
            column = _class_columns(outputs[0], classes)
            within = TIE_TOLERANCE.get(precision, 1e-6)
            tied = _tied(gaps, within, column)
            if lossy and (mismatched_proba.any() or (~same & ~tied).any()):
                tied = _tied(gaps, 2 * tolerance.proba_atol, column)  # rounding alone won't do
            ties = int((~same & tied).sum())
            same = same | tied
    mismatches = int((~same | mismatched_proba).sum())
    agreement = float(_same_labels(expected_labels, outputs[0]).mean()) if rows else 1.0
    reason = None
    if mismatches:
        parts = []
        if (~same).any():
            parts.append(f"{int((~same).sum())} of {rows} labels differ")
        if mismatched_proba.any():
            parts.append(
                f"probabilities differ by up to {max_abs:.3g} (> {tolerance.proba_atol:g})"
            )
        reason = "; ".join(parts)
    return ParityReport(
        passed=mismatches == 0,
        probe=probe,
        rows=rows,
        max_abs_diff=max_abs,
        max_rel_diff=None,
        label_agreement=agreement,
        ties=ties,
        mismatches=mismatches,
        reason=reason,
    )


def _tied(gaps: np.ndarray, within: float, column: np.ndarray) -> np.ndarray:
    """Rows where several classes tie for the top probability and the label given is one."""
    rows = gaps.shape[0]
    tied_classes = gaps <= within
    several = tied_classes.sum(axis=1) > 1
    chosen = np.zeros(rows, dtype=bool)
    known = (column >= 0) & (column < gaps.shape[1])
    chosen[known] = tied_classes[np.flatnonzero(known), column[known]]
    tied: np.ndarray = several & chosen
    return tied


def _class_columns(labels: np.ndarray, classes: Sequence[Any] | None) -> np.ndarray:
    """The probability column of each label: its position in ``classes`` (-1 if not a class)."""
    labels = np.asarray(labels).ravel()
    if classes is None:
        return np.full(labels.shape[0], -1, dtype=np.int64)
    position = {_label_key(c): i for i, c in enumerate(classes)}
    return np.array([position.get(_label_key(label), -1) for label in labels], dtype=np.int64)


def _label_key(value: Any) -> tuple[str, Any]:
    """Labels compared by value: ``True``, ``1`` and ``1.0`` are one class, as in ``==``."""
    if isinstance(value, (bool, int, float, np.bool_, np.number)):
        return ("number", float(value))
    return ("text", str(value))


def _compare_scored(expected: Answers, outputs: list[np.ndarray], *, rows: int, probe: str,
                    precision: str, tolerance: Tolerance, lossy: bool) -> ParityReport:  # fmt: skip
    """Outlier detectors and k-means: labels exactly (but for ties at the boundary), and scores.

    Bounded scores (IsolationForest's, in [-1, 1]) are judged absolutely, like probabilities;
    the others (an SVM's or LOF's decision function, distances to centres) grow with the data, so
    relatively, like regression values, floored at their mean magnitude so that scores near zero,
    which the float32 kernel computes as differences of large terms, do not blow up.
    """
    assert expected.scores is not None and expected.score_kind is not None
    kind = expected.score_kind
    want = expected.scores.reshape(rows, -1)
    got = np.asarray(outputs[1], dtype=np.float64).reshape(want.shape)
    labels = np.asarray(outputs[0]).ravel()
    diff = np.abs(got - want)
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    max_rel: float | None = None
    scale = 1.0  # what a relative tolerance or tie window is relative to
    allowed = tolerance.proba_atol
    error = diff
    if not kind.bounded:
        scale = max(float(np.mean(np.abs(want))) if want.size else 1.0, 1e-12)
        error = diff / np.maximum(np.abs(want), scale)
        max_rel = float(np.nanmax(error)) if error.size else 0.0
        allowed = tolerance.regression_rtol
    mismatched_scores = (error > allowed).any(axis=1) | ~np.isfinite(got).all(axis=1)
    same = _same_labels(expected.predictions, labels)
    ties = 0
    if (~same).any():
        within = TIE_TOLERANCE.get(precision, 1e-6) * scale
        tied = _tied_scores(kind, want, labels, within)
        if lossy and (mismatched_scores.any() or (~same & ~tied).any()):
            tied = _tied_scores(kind, want, labels, 2 * allowed * scale)  # rounding alone won't do
        ties = int((~same & tied).sum())
        same = same | tied
    mismatches = int((~same | mismatched_scores).sum())
    reason = None
    if mismatches:
        parts = []
        if (~same).any():
            parts.append(f"{int((~same).sum())} of {rows} labels differ")
        if mismatched_scores.any():
            worst = max_abs if max_rel is None else max_rel
            how = "" if max_rel is None else " relative"
            parts.append(f"{kind.method} scores differ by up to {worst:.3g}{how} (> {allowed:g})")
        reason = "; ".join(parts)
    return ParityReport(
        passed=mismatches == 0,
        probe=probe,
        rows=rows,
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        label_agreement=float(_same_labels(expected.predictions, labels).mean()) if rows else 1.0,
        ties=ties,
        mismatches=mismatches,
        reason=reason,
        scores=kind.method,
    )


def _tied_scores(kind: Scores, scores: np.ndarray, labels: np.ndarray,
                 within: float) -> np.ndarray:  # fmt: skip
    """Rows whose label scikit-learn's own scores leave open, to within ``within``.

    A detector's label is its score's side of 0: a score within ``within`` of 0 may fall either
    side. A k-means label is the nearest centre: any centre within ``within`` of the nearest may
    be the one given.
    """
    if kind.method == "decision_function":
        at_boundary: np.ndarray = np.abs(scores[:, 0]) <= within
        return at_boundary
    column = np.asarray(labels, dtype=np.int64)
    known = (column >= 0) & (column < scores.shape[1])
    tied = np.zeros(scores.shape[0], dtype=bool)
    rows = np.flatnonzero(known)
    with np.errstate(invalid="ignore"):  # inf - inf on rows of huge values: not a tie, no warning
        tied[rows] = scores[rows, column[rows]] - scores[rows].min(axis=1) <= within
    return tied


def _compare_regression(expected: np.ndarray, got: np.ndarray, rows: int, probe: str,
                        tolerance: Tolerance) -> ParityReport:  # fmt: skip
    expected = np.asarray(expected, dtype=np.float64).reshape(rows, -1)
    got = np.asarray(got, dtype=np.float64).reshape(expected.shape)
    # The same answer, NaN included: scikit-learn's NaN (a radius model with no neighbour) is met
    # by NaN. Any other non-finite value on either side is a mismatch.
    same = (got == expected) | (np.isnan(got) & np.isnan(expected))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(got - expected))
        # Relative to each value, floored at the mean magnitude so values near zero do not explode.
        magnitudes = np.abs(expected[np.isfinite(expected)])
        floor = max(float(np.mean(magnitudes)) if magnitudes.size else 1.0, 1e-12)
        rel = diff / np.fmax(np.abs(expected), floor)
    broken = ~same & ~(np.isfinite(got) & np.isfinite(expected))
    diff, rel = np.where(broken, np.inf, diff), np.where(broken, np.inf, rel)
    bad = (rel > tolerance.regression_rtol) | broken
    mismatches = int(bad.any(axis=1).sum()) if bad.size else 0
    max_rel = float(np.nanmax(rel)) if rel.size else 0.0
    return ParityReport(
        passed=mismatches == 0,
        probe=probe,
        rows=rows,
        max_abs_diff=float(np.nanmax(diff)) if diff.size else 0.0,
        max_rel_diff=max_rel,
        label_agreement=None,
        ties=0,
        mismatches=mismatches,
        reason=None
        if mismatches == 0
        else f"{mismatches} of {rows} predictions differ by up to {max_rel:.3g} relative "
        f"(> {tolerance.regression_rtol:g})",
    )
