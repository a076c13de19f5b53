"""Parity for lossy variants (``parity.compare(lossy=True)``): which label flips count as ties.

The rows sit on a logistic regression's decision boundary at chosen distances, so scikit-learn's
top two probabilities differ by known gaps; the "artifact" answers are scikit-learn's own
probabilities with labels flipped on chosen rows, so only the tie rule decides the outcome.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from alphapulse_onnx import parity
from alphapulse_onnx.signature import infer

# Top-two probability gaps of the first rows (a binary model's gap is about half its decision).
GAPS = (1e-8, 3e-7, 8e-7, 2e-6, 5e-6, 2e-4)


def _boundary_rows(model: Any, n_random: int = 200) -> np.ndarray:
    """Rows whose decision values give the ``GAPS`` above, then ordinary rows."""
    w, b = model.coef_[0], model.intercept_[0]
    rng = np.random.default_rng(1)
    decisions = np.concatenate([2 * np.asarray(GAPS), rng.normal(scale=3, size=n_random)])
    base = rng.normal(size=(decisions.size, w.size))
    rows: np.ndarray = base - ((base @ w + b - decisions) / (w @ w))[:, None] * w
    return rows


@pytest.fixture(scope="module")
def boundary() -> tuple[Any, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    model = LogisticRegression().fit(X, y)
    rows = _boundary_rows(model)
    gaps = np.abs(np.diff(model.predict_proba(rows)[: len(GAPS)], axis=1)).ravel()
    assert gaps == pytest.approx(GAPS, rel=1e-3)
    return model, rows


def _flipped(model: Any, rows: np.ndarray, flip: list[int]) -> list[np.ndarray]:
    labels = model.predict(rows).copy()
    labels[flip] = model.classes_[1 - np.searchsorted(model.classes_, labels[flip])]
    return [labels, model.predict_proba(rows)]


def _compare(model: Any, rows: np.ndarray, outputs: list[np.ndarray], *, atol: float,
             lossy: bool) -> parity.ParityReport:  # fmt: skip
    return parity.compare(model, infer(model), rows, outputs, probe="statistics",
                          precision="float32", tolerance=parity.Tolerance(proba_atol=atol),
                          lossy=lossy)  # fmt: skip


@pytest.mark.parametrize(
    ("flip", "atol", "lossy", "ties", "mismatches"),
    [
        # plain artifacts: only float32 rounding (gaps up to 1e-6) explains a flipped label
        pytest.param([1, 2, 3], 1e-4, False, 2, 1, id="plain-rounding-only"),
        # lossy: flips within 2 * atol are ties...
        pytest.param([1, 2, 3], 1e-4, True, 3, 0, id="lossy-within-2-atol"),
        pytest.param([2, 3, 4, 5], 5e-5, True, 3, 1, id="lossy-one-beyond-2-atol"),
        # ...and what rounding explains passes even when 2 * atol is smaller still
        pytest.param([0, 1], 1e-9, True, 2, 0, id="lossy-explained-by-rounding"),
        # once rounding does not explain everything, 2 * atol alone decides the ties
        pytest.param([1, 2, 3], 4e-7, True, 1, 2, id="lossy-tolerance-decides"),
        pytest.param([1, 2, 3], 1e-9, True, 0, 3, id="lossy-tiny-tolerance"),
    ],
)
def test_which_label_flips_a_lossy_artifact_may_make(
    boundary: tuple[Any, np.ndarray],
    flip: list[int],
    atol: float,
    lossy: bool,
    ties: int,
    mismatches: int,
) -> None:
    model, rows = boundary
    report = _compare(model, rows, _flipped(model, rows, flip), atol=atol, lossy=lossy)
    assert (report.ties, report.mismatches, report.passed) == (ties, mismatches, mismatches == 0)
    assert report.label_agreement == pytest.approx(1 - len(flip) / len(rows))
    expected_reason = f"{mismatches} of {len(rows)} labels differ" if mismatches else None
    assert report.reason == expected_reason


def test_probabilities_outside_the_tolerance_fail_a_lossy_artifact_too(
    boundary: tuple[Any, np.ndarray],
) -> None:
    model, rows = boundary
    labels, proba = _flipped(model, rows, [1])
    proba = proba.copy()
    proba[10] += [0.003, -0.003]
    report = _compare(model, rows, [labels, proba], atol=1e-3, lossy=True)
    assert not report.passed
    assert (report.ties, report.mismatches) == (1, 1)
    assert report.reason == "probabilities differ by up to 0.003 (> 0.001)"


def test_lossy_labels_compare_by_value_not_by_their_text() -> None:
    """scikit-learn answers bool labels where onnxruntime answers 0/1: the same labels."""
    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    model = LogisticRegression().fit(X, y.astype(bool))
    rows = _boundary_rows(model)
    proba = model.predict_proba(rows)
    labels = model.predict(rows).astype(np.int64)
    labels[3] = 1 - labels[3]  # a flip rounding does not explain, within 2 * atol
    report = _compare(model, rows, [labels, proba], atol=1e-4, lossy=True)
    assert report.passed and report.ties == 1 and report.mismatches == 0


def test_a_lossy_classifier_without_probabilities_is_judged_on_labels() -> None:
    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    model = make_pipeline(PCA(4), LinearSVC()).fit(X, y)
    labels = model.predict(X).copy()
    labels[:5] = 1 - labels[:5]
    scores = np.zeros((len(X), 2))  # decision scores: never compared
    report = _compare(model, X, [labels, scores], atol=1.0, lossy=True)
    assert not report.passed and report.ties == 0
    assert report.reason == f"5 of {len(X)} labels differ"
