"""``parity.compare`` on real models and the outputs of their real ONNX artifacts.

Where a test needs a disagreement, it edits one cell of the artifact's real outputs: a correct
artifact never disagrees on purpose, and the comparison must tell each kind of disagreement apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from alphapulse_onnx import conversion, parity
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.signature import infer


def _artifact_outputs(
    model: Any, X: np.ndarray, precision: conversion.Precision = "float32"
) -> list[np.ndarray]:
    artifact = conversion.convert(model, infer(model, dtype=precision), precision=precision)
    session = ort.InferenceSession(artifact.onnx_bytes, providers=["CPUExecutionProvider"])
    return list(session.run(None, probe_feeds(artifact.inputs, X)))


def _compare(
    model: Any, X: np.ndarray, outputs: list[np.ndarray], precision: str = "float32"
) -> parity.ParityReport:
    return parity.compare(
        model,
        infer(model),
        X,
        outputs,
        probe="sample",
        precision=precision,
        tolerance=parity.Tolerance(),
    )


@pytest.fixture(scope="module")
def iris_classifier(iris: Any) -> tuple[Any, np.ndarray, list[np.ndarray]]:
    X, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    return model, X, _artifact_outputs(model, X)


def _confident_row(model: Any, X: np.ndarray) -> int:
    return int(np.argmax(model.predict_proba(X).max(axis=1)))


def test_a_faithful_classifier_artifact_passes(iris_classifier: Any) -> None:
    model, X, outputs = iris_classifier
    report = _compare(model, X, outputs)
    assert report.passed, report.reason
    assert (report.rows, report.mismatches, report.ties, report.label_agreement) == (150, 0, 0, 1.0)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-5
    assert report.max_rel_diff is None and report.reason is None


@pytest.mark.parametrize(("shift", "passed"), [(5e-5, True), (5e-4, False)])
def test_probabilities_are_held_to_the_absolute_tolerance(
    iris_classifier: Any, shift: float, passed: bool
) -> None:
    model, X, (labels, proba) = iris_classifier
    row = _confident_row(model, X)
    moved = proba.copy()
    moved[row, np.argmax(moved[row])] -= shift  # the winner stays the winner
    moved[row, np.argmin(moved[row])] += shift
    report = _compare(model, X, [labels, moved])
    assert report.passed is passed
    assert report.mismatches == (0 if passed else 1)
    assert report.label_agreement == 1.0
    assert report.max_abs_diff == pytest.approx(shift, rel=1e-2)
    if not passed:
        assert report.reason == "probabilities differ by up to 0.0005 (> 0.0001)"


def test_a_changed_label_fails_even_with_matching_probabilities(iris_classifier: Any) -> None:
    model, X, (labels, proba) = iris_classifier
    row = _confident_row(model, X)
    flipped = labels.copy()
    flipped[row] = (labels[row] + 1) % 3
    report = _compare(model, X, [flipped, proba])
    assert not report.passed
    assert (report.mismatches, report.ties) == (1, 0)
    assert report.label_agreement == pytest.approx(149 / 150)
    assert report.reason == "1 of 150 labels differ"


@pytest.fixture(scope="module")
def tied_tree() -> tuple[DecisionTreeClassifier, np.ndarray, list[np.ndarray]]:
    """A tree whose leaf for x=0 holds one sample of class 1 and one of class 2: an exact tie."""
    X = np.array([[0.0], [0.0], [1.0], [1.0], [2.0]])
    model = DecisionTreeClassifier(random_state=0).fit(X, [1, 2, 0, 0, 2])
    rows = np.array([[0.0], [1.0], [2.0]])
    return model, rows, _artifact_outputs(model, rows)


def test_an_exact_tie_broken_the_other_way_is_not_a_flip(tied_tree: Any) -> None:
    model, rows, (labels, proba) = tied_tree
    assert model.predict_proba(rows)[0].tolist() == [0.0, 0.5, 0.5]
    assert model.predict(rows)[0] == 1  # scikit-learn breaks ties by class index
    other_way = labels.copy()
    other_way[0] = 2
    report = _compare(model, rows, [other_way, proba])
    assert report.passed, report.reason
    assert report.ties == 1
    assert report.label_agreement == pytest.approx(2 / 3)


def test_a_label_outside_the_tied_classes_is_a_flip(tied_tree: Any) -> None:
    model, rows, (labels, proba) = tied_tree
    outside = labels.copy()
    outside[0] = 0  # scikit-learn gives class 0 no probability on this row
    report = _compare(model, rows, [outside, proba])
    assert not report.passed
    assert report.ties == 0


@pytest.mark.parametrize(("precision", "counted_as_tie"), [("float32", True), ("float64", False)])
def test_what_counts_as_a_tie_depends_on_the_artifact_precision(
    precision: conversion.Precision, counted_as_tie: bool
) -> None:
    # Sample weights leave the x=0 leaf 1e-7 short of a tie: within float32 rounding, not float64's.
    X = np.array([[0.0], [0.0], [1.0]])
    model = DecisionTreeClassifier(random_state=0).fit(
        X, [0, 1, 1], sample_weight=[1.0, 1.0 + 2e-7, 1.0]
    )
    rows = np.array([[0.0], [1.0]])
    assert model.predict(rows)[0] == 1
    labels, proba = _artifact_outputs(model, rows, precision)
    other_way = labels.copy()
    other_way[0] = 0
    report = _compare(model, rows, [other_way, proba], precision)
    assert report.passed is counted_as_tie
    assert report.ties == int(counted_as_tie)


@pytest.fixture(scope="module")
def centred_regressor(diabetes: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """Predictions around zero (mean magnitude ~50), so some are far smaller than the rest."""
    X, y = diabetes
    model = LinearRegression().fit(X, y - y.mean())
    (predictions,) = _artifact_outputs(model, X)
    return model, X, predictions


def test_a_faithful_regressor_artifact_passes(centred_regressor: Any) -> None:
    model, X, predictions = centred_regressor
    report = _compare(model, X, [predictions])
    assert report.passed, report.reason
    assert report.label_agreement is None and report.ties == 0
    assert report.max_rel_diff is not None and report.max_rel_diff < 1e-5


@pytest.mark.parametrize(("error", "passed"), [(5e-5, True), (5e-4, False)])
def test_regression_error_is_relative_to_the_larger_of_value_and_mean_magnitude(
    centred_regressor: Any, error: float, passed: bool
) -> None:
    model, X, predictions = centred_regressor
    expected = model.predict(X)
    scale = float(np.mean(np.abs(expected)))
    near_zero, largest = int(np.argmin(np.abs(expected))), int(np.argmax(np.abs(expected)))
    assert abs(expected[near_zero]) < scale / 100
    for row, size in ((near_zero, scale), (largest, abs(expected[largest]))):
        moved = predictions.copy()
        moved[row] = expected[row] + error * size
        report = _compare(model, X, [moved])
        assert report.passed is passed, row
        assert report.max_rel_diff == pytest.approx(error, rel=1e-2)
        if not passed:
            assert report.mismatches == 1
            assert report.reason == (
                f"1 of {len(X)} predictions differ by up to 0.0005 relative (> 0.0001)"
            )


def test_a_non_finite_prediction_fails(centred_regressor: Any) -> None:
    model, X, predictions = centred_regressor
    broken = predictions.copy()
    broken[0] = np.nan
    report = _compare(model, X, [broken])
    assert not report.passed
    assert report.mismatches == 1
