"""``parity.compare`` on real models and the outputs of their real ONNX artifacts.

Where a test needs a disagreement, it edits one cell of the artifact's real outputs: a correct
artifact never disagrees on purpose, and the comparison must tell each kind of disagreement apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDOneClassSVM
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


@pytest.fixture(scope="module")
def forest_detector() -> tuple[IsolationForest, np.ndarray, list[np.ndarray]]:
    X = np.random.default_rng(0).standard_normal((300, 3))
    model = IsolationForest(n_estimators=20, random_state=0).fit(X)
    return model, X, _artifact_outputs(model, X)


def test_a_faithful_detector_artifact_passes_with_bounded_scores(forest_detector: Any) -> None:
    model, X, outputs = forest_detector
    report = _compare(model, X, outputs)
    assert report.passed, report.reason
    assert (report.scores, report.label_agreement, report.ties) == ("decision_function", 1.0, 0)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-6
    assert report.max_rel_diff is None  # IsolationForest's scores lie in [-1, 1]: absolute


@pytest.mark.parametrize(("shift", "passed"), [(5e-5, True), (5e-4, False)])
def test_bounded_scores_are_held_to_the_absolute_tolerance(
    forest_detector: Any, shift: float, passed: bool
) -> None:
    model, X, (labels, scores) = forest_detector
    row = int(np.argmax(np.abs(model.decision_function(X))))  # its label cannot move
    moved = scores.copy()
    moved.flat[row] += shift * np.sign(moved.flat[row])
    report = _compare(model, X, [labels, moved])
    assert report.passed is passed
    assert report.max_abs_diff == pytest.approx(shift, rel=1e-2)
    if not passed:
        assert report.reason == "decision_function scores differ by up to 0.0005 (> 0.0001)"


def test_a_detector_label_away_from_the_boundary_is_a_flip(forest_detector: Any) -> None:
    model, X, (labels, scores) = forest_detector
    row = int(np.argmax(np.abs(model.decision_function(X))))
    flipped = labels.copy()
    flipped.flat[row] = -flipped.flat[row]
    report = _compare(model, X, [flipped, scores])
    assert not report.passed
    assert (report.mismatches, report.ties) == (1, 0)
    assert report.reason == "1 of 300 labels differ"


@pytest.fixture(scope="module")
def linear_detector() -> tuple[SGDOneClassSVM, np.ndarray, np.ndarray]:
    """A detector, some rows, and a point exactly on its boundary: decision_function = w.x - b."""
    X = np.random.default_rng(1).standard_normal((200, 3)) * [1.0, 10.0, 100.0]
    model = SGDOneClassSVM(nu=0.3, random_state=0).fit(X)
    w, b = model.coef_.ravel(), float(model.offset_[0])
    return model, X[:20], b * w / float(w @ w)


@pytest.mark.parametrize(("nudge", "lossy", "counted_as_tie"), [
    (0.0, False, True),  # scikit-learn's own score is 0: either side is right
    (1e-4, False, False),  # a score 1e-4 of b off the boundary: rounding cannot flip it
    (1e-4, True, True),  # an INT8/FP16 variant's scores may move that far
])  # fmt: skip
def test_a_detector_label_flipped_at_the_boundary_is_a_tie(
    linear_detector: Any, nudge: float, lossy: bool, counted_as_tie: bool
) -> None:
    model, X, on_boundary = linear_detector
    rows = np.vstack([X, on_boundary * (1 + nudge)])
    assert abs(model.decision_function(rows[-1:])[0]) <= nudge * abs(model.offset_[0]) + 1e-12
    labels, scores = _artifact_outputs(model, rows)
    flipped = labels.copy()
    flipped[-1] = -model.predict(rows[-1:])[0]
    report = parity.compare(model, infer(model), rows, [flipped, scores], probe="sample",
                            precision="float32", tolerance=parity.Tolerance(),
                            lossy=lossy)  # fmt: skip
    assert report.passed is counted_as_tie, report.reason
    assert report.ties == int(counted_as_tie)
    assert report.scores == "decision_function" and report.max_rel_diff is not None


@pytest.fixture(scope="module")
def kmeans() -> tuple[KMeans, np.ndarray, tuple[int, int]]:
    X = np.random.default_rng(2).standard_normal((200, 2)) * [1.0, 50.0]
    model = KMeans(3, n_init=2, random_state=0).fit(X)
    centres = model.cluster_centers_
    # The midpoint of two centres, nearer to them than to the third: as near to one as the other.
    for first, second in ((0, 1), (0, 2), (1, 2)):
        midpoint = (centres[first] + centres[second]) / 2
        if set(np.argsort(model.transform(midpoint[None, :])[0])[:2]) == {first, second}:
            return model, np.vstack([X[:30], midpoint]), (first, second)
    raise AssertionError("no midpoint of two centres is nearest to them")


def test_kmeans_distances_are_held_to_the_relative_tolerance(kmeans: Any) -> None:
    model, rows, _ = kmeans
    labels, distances = _artifact_outputs(model, rows)
    report = _compare(model, rows, [labels, distances])
    assert report.passed, report.reason
    assert report.scores == "transform" and report.max_rel_diff is not None
    expected = model.transform(rows)
    far = int(np.argmax(expected.max(axis=1)))
    column = int(np.argmax(expected[far]))  # the farthest centre: the label cannot move
    for error, passed in ((5e-5, True), (5e-4, False)):
        moved = distances.copy()
        moved[far, column] = expected[far, column] * (1 + error)
        report = _compare(model, rows, [labels, moved])
        assert report.passed is passed
        assert report.max_rel_diff == pytest.approx(error, rel=1e-2)
        if not passed:
            assert report.reason == "transform scores differ by up to 0.0005 relative (> 0.0001)"


def test_a_cluster_id_is_excused_only_between_equally_near_centres(kmeans: Any) -> None:
    model, rows, nearest = kmeans
    labels, distances = _artifact_outputs(model, rows)
    midpoint = len(rows) - 1
    chosen = int(model.predict(rows[midpoint:])[0])
    assert chosen in nearest
    other_way = labels.copy()
    other_way[midpoint] = sum(nearest) - chosen
    report = _compare(model, rows, [other_way, distances])
    assert report.passed and report.ties == 1
    third = labels.copy()
    third[midpoint] = 3 - sum(nearest)  # the centre farther away
    report = _compare(model, rows, [third, distances])
    assert not report.passed and report.ties == 0


def test_a_non_finite_distance_fails(kmeans: Any) -> None:
    model, rows, _ = kmeans
    labels, distances = _artifact_outputs(model, rows)
    broken = distances.copy()
    broken[0, 0] = np.nan  # what float32 gives for sqrt of a slightly negative squared distance
    report = _compare(model, rows, [labels, broken])
    assert not report.passed and report.mismatches == 1
