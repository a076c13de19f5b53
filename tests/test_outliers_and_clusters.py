"""Outlier detectors and clusterers: converted with parity, served with their scores, and written
by ``apo predict``, each answer checked against the scikit-learn model itself."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import joblib
import jsonschema
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import BisectingKMeans, KMeans, MiniBatchKMeans
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import SGDOneClassSVM
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from typer.testing import CliRunner

from alphapulse_onnx import checking, conversion, parity, probing
from alphapulse_onnx.cli import app
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.manifest import ManifestEntry
from alphapulse_onnx.signature import infer
from alphapulse_onnx.store import Store
from tests.coverage_table import record

runner = CliRunner()
NAMES = ["ret_1h", "ret_24h", "volume", "spread"]

# family -> (a fresh estimator, its task). Each is fitted on the same points.
FAMILIES: dict[str, tuple[Callable[[], Any], str]] = {
    "IsolationForest": (lambda: IsolationForest(n_estimators=20, random_state=0),
                        "outlier_detection"),
    "StandardScaler+IsolationForest": (
        lambda: make_pipeline(StandardScaler(), IsolationForest(n_estimators=10, random_state=1)),
        "outlier_detection",
    ),
    "StandardScaler+OneClassSVM": (
        lambda: make_pipeline(StandardScaler(), OneClassSVM(nu=0.1)), "outlier_detection"
    ),
    "SGDOneClassSVM": (lambda: SGDOneClassSVM(nu=0.2, random_state=0), "outlier_detection"),
    "LocalOutlierFactor(novelty=True)": (
        lambda: LocalOutlierFactor(n_neighbors=15, novelty=True), "outlier_detection"
    ),
    "KMeans": (lambda: KMeans(4, n_init=2, random_state=0), "clustering"),
    "MiniBatchKMeans": (lambda: MiniBatchKMeans(3, n_init=2, random_state=0), "clustering"),
    "StandardScaler+KMeans": (
        lambda: make_pipeline(StandardScaler(), KMeans(3, n_init=2, random_state=0)), "clustering"
    ),
    "GaussianMixture": (lambda: GaussianMixture(3, random_state=0), "clustering"),
    "BayesianGaussianMixture": (
        lambda: BayesianGaussianMixture(n_components=3, random_state=0), "clustering"
    ),
}  # fmt: skip


def _file_name(family: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in family).lower()


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    """Three clouds of very different scales per column, and a few far-off rows."""
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0, 1e4, 0.01], [0.02, -0.05, 3e4, 0.02], [-0.03, 0.1, 2e4, 0.05]])
    spread = np.array([0.01, 0.03, 2e3, 0.005])
    clouds = [c + rng.standard_normal((120, 4)) * spread for c in centres]
    far = rng.standard_normal((12, 4)) * spread * 8 + centres.mean(axis=0)
    return np.vstack([*clouds, far])


@pytest.fixture(scope="module")
def fitted(points: np.ndarray) -> dict[str, Any]:
    models = {family: make() for family, (make, _) in FAMILIES.items()}
    return {family: model.fit(points) for family, model in models.items()}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, fitted: dict[str, Any],
              points: np.ndarray) -> Path:  # fmt: skip
    registry = tmp_path_factory.mktemp("scored") / "registry"
    registry.mkdir()
    for family, model in fitted.items():
        joblib.dump(model, registry / f"{_file_name(family)}.joblib")
    # No converter in skl2onnx: served by the scikit-learn fallback.
    joblib.dump(EllipticEnvelope(random_state=0).fit(points), registry / "envelope.joblib")
    options = ConvertOptions(registry=registry, probe_rows=512)
    list(convert_run(options))
    return options.out_dir


@pytest.fixture(scope="module")
def store(store_dir: Path) -> Store:
    return Store.open(store_dir)


@pytest.fixture(scope="module")
def fresh(points: np.ndarray) -> np.ndarray:
    """Rows none of the models saw, drawn around the training rows (far-off ones included)."""
    rng = np.random.default_rng(11)
    picks = points[rng.integers(0, len(points), 200)]
    return np.asarray(picks + rng.standard_normal(picks.shape) * points.std(axis=0) * 0.5)


def _scores(model: Any, X: np.ndarray) -> np.ndarray:
    """What scikit-learn decides the labels from: the artifact's scores must equal these."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X))
    return np.asarray(model.transform(X))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_converts_and_serves_labels_and_scores_like_sklearn(
    family: str, store: Store, fitted: dict[str, Any], fresh: np.ndarray
) -> None:
    entry = store.manifest.entry(_file_name(family))
    record(family, entry)
    assert entry.ok, entry.error
    assert entry.task == FAMILIES[family][1]
    report = entry.validation
    assert report is not None and report.passed, report
    assert (report.label_agreement, report.ties, report.mismatches) == (1.0, 0, 0)
    model, served = fitted[family], store[_file_name(family)]
    assert served.engine == "onnxruntime"
    labels = served.predict(fresh)
    np.testing.assert_array_equal(labels, model.predict(fresh))
    assert labels.dtype == np.int64 and labels.shape == (len(fresh),)
    expected = _scores(model, fresh)
    got = served.scores(fresh)
    assert got.shape == expected.shape and got.dtype == np.float64
    scale = np.maximum(np.abs(expected), np.mean(np.abs(expected)))
    assert np.max(np.abs(got - expected) / scale) < 1e-4


def test_the_manifest_records_the_new_tasks_as_its_schema_says(store_dir: Path) -> None:
    raw = json.loads((store_dir / "manifest.json").read_text(encoding="utf-8"))
    schema = files("alphapulse_onnx").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    jsonschema.validate(raw, json.loads(schema))
    tasks = {entry["name"]: entry["task"] for entry in raw["models"]}
    assert tasks[_file_name("IsolationForest")] == "outlier_detection"
    assert tasks[_file_name("GaussianMixture")] == "clustering"
    kmeans = next(e for e in raw["models"] if e["name"] == _file_name("StandardScaler+KMeans"))
    assert [o["name"] for o in kmeans["outputs"]] == ["label", "scores"]
    assert kmeans["outputs"][1]["shape"] == [None, 3] and kmeans["classes"] == [0, 1, 2]
    assert kmeans["validation"]["scores"] == "transform"


def test_parity_figures_follow_each_family_scale(store: Store) -> None:
    """Bounded scores (IsolationForest's) are judged absolutely, the others relatively."""
    forest = store.manifest.entry(_file_name("IsolationForest")).validation
    assert forest is not None and forest.scores == "decision_function"
    assert forest.probe == "thresholds"  # probes sit at the forest's split points
    assert forest.max_rel_diff is None and forest.max_abs_diff is not None
    assert forest.max_abs_diff < 1e-6
    kmeans = store.manifest.entry(_file_name("KMeans")).validation
    assert kmeans is not None and kmeans.scores == "transform"
    assert kmeans.max_rel_diff is not None and kmeans.max_rel_diff < 1e-5
    mixture = store.manifest.entry(_file_name("GaussianMixture")).validation
    assert mixture is not None and mixture.scores is None  # probabilities, as a classifier's
    assert mixture.max_abs_diff is not None and mixture.max_abs_diff < 1e-4


def test_kmeans_on_raw_scales_is_rebuilt_in_double_precision(store: Store) -> None:
    """Near a centre, float32 distances over a column of scale 1e4 lose their digits: the probes
    drawn around the centres catch it, and the artifact is rebuilt in float64."""
    raw, scaled = (store.manifest.entry(_file_name(f)) for f in ("KMeans", "StandardScaler+KMeans"))
    assert raw.artifact is not None and raw.artifact.precision == "float64"
    assert any("float32 parity failed (transform scores differ" in w for w in raw.warnings)
    assert scaled.artifact is not None and scaled.artifact.precision == "float32"


@pytest.mark.parametrize("family", ["GaussianMixture", "BayesianGaussianMixture"])
def test_mixtures_build_in_double_precision_too(
    family: str, fitted: dict[str, Any], points: np.ndarray
) -> None:
    model = fitted[family]
    signature = infer(model, dtype="float64")
    artifact = conversion.convert(model, signature, precision="float64")
    probe = probing.generate(model, 4, rows=256)
    report, _ = checking.check_artifact(model, signature, artifact, probe,
                                        providers=("CPUExecutionProvider",),
                                        tolerance=parity.Tolerance())  # fmt: skip
    assert report.passed and report.label_agreement == 1.0
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-12


def test_outlier_labels_and_cluster_ids_are_the_recorded_classes(store: Store) -> None:
    detector = store[_file_name("IsolationForest")]
    assert detector.classes is not None and detector.classes.tolist() == [-1, 1]
    assert not detector.has_proba
    kmeans = store[_file_name("KMeans")]
    assert kmeans.classes is not None and kmeans.classes.tolist() == [0, 1, 2, 3]
    assert not kmeans.has_proba
    assert store[_file_name("GaussianMixture")].has_proba


def test_a_mixture_answers_predict_proba_and_the_same_scores(
    store: Store, fitted: dict[str, Any], fresh: np.ndarray
) -> None:
    served = store[_file_name("GaussianMixture")]
    proba = served.predict_proba(fresh)
    np.testing.assert_allclose(proba, fitted["GaussianMixture"].predict_proba(fresh), atol=1e-4)
    np.testing.assert_array_equal(served.scores(fresh), proba)


def test_scores_and_probabilities_asked_of_the_wrong_model_say_what_to_call(
    store: Store, fresh: np.ndarray
) -> None:
    with pytest.raises(InputError, match=r"has no predict_proba; hint: use predict.*scores"):
        store[_file_name("IsolationForest")].predict_proba(fresh)
    with pytest.raises(InputError, match=r"\(clustering\) has no predict_proba.*distance"):
        store[_file_name("KMeans")].predict_proba(fresh)


def test_empty_rows_give_empty_labels_and_scores(store: Store) -> None:
    empty = np.empty((0, 4))
    detector, kmeans = store[_file_name("SGDOneClassSVM")], store[_file_name("KMeans")]
    assert detector.predict(empty).shape == (0,) and detector.scores(empty).shape == (0,)
    assert kmeans.scores(empty).shape == (0, 4)
    outputs = kmeans.run_prepared(kmeans.prepare(empty), proba=False)
    assert outputs.scores is not None and outputs.scores.shape == (0, 4)


def test_a_detector_without_a_converter_is_served_by_sklearn_with_the_same_columns(
    store: Store, store_dir: Path, points: np.ndarray, fresh: np.ndarray, tmp_path: Path
) -> None:
    entry = store.manifest.entry("envelope")
    assert not entry.ok and entry.stage == "convert"
    assert "no ONNX converter for EllipticEnvelope" in (entry.error or "")
    served = store["envelope"]
    assert (served.engine, served.task) == ("sklearn", "outlier_detection")
    envelope = EllipticEnvelope(random_state=0).fit(points)
    np.testing.assert_array_equal(served.predict(fresh), envelope.predict(fresh))
    np.testing.assert_allclose(served.scores(fresh), envelope.decision_function(fresh))
    out = _predict_csv(store_dir, "envelope", fresh, tmp_path)
    assert list(out.columns) == ["label", "score"]
    np.testing.assert_array_equal(out["label"], envelope.predict(fresh))


def test_sklearn_fallback_gives_what_the_artifact_gives(
    store_dir: Path, fresh: np.ndarray, tmp_path: Path
) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store_dir.parent, copy)  # the registry and its store, moved as a whole
    onnx_store = Store.open(store_dir)
    for family in ("StandardScaler+OneClassSVM", "MiniBatchKMeans", "BayesianGaussianMixture"):
        name = _file_name(family)
        artifact = copy / "onnx" / f"{name}.onnx"
        artifact.unlink()
        served = Store.open(copy / "onnx")[name]
        assert served.engine == "sklearn"
        ort_served = onnx_store[name]
        np.testing.assert_array_equal(served.predict(fresh), ort_served.predict(fresh))
        want = ort_served.run_prepared(ort_served.prepare(fresh), proba=False)
        got = served.run_prepared(served.prepare(fresh), proba=False)
        assert got.scores is not None and want.scores is not None
        assert got.scores.shape == want.scores.shape
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-6)


def _predict_csv(store_dir: Path, name: str, rows: np.ndarray, tmp_path: Path) -> pd.DataFrame:
    source = tmp_path / f"{name}.csv"
    pd.DataFrame(rows, columns=NAMES).to_csv(source, index=False)
    result = runner.invoke(app, ["predict", name, str(source), "--store", str(store_dir)])
    assert result.exit_code == 0, result.stderr
    return pd.read_csv(io.StringIO(result.stdout))


@pytest.mark.parametrize(
    ("family", "columns"),
    [
        ("IsolationForest", ["label", "score"]),
        ("KMeans", ["label", "distance_0", "distance_1", "distance_2", "distance_3"]),
        ("GaussianMixture", ["label", "proba_0", "proba_1", "proba_2"]),
    ],
)
def test_apo_predict_writes_labels_and_scores_row_by_row(
    family: str, columns: list[str], store_dir: Path, fitted: dict[str, Any],
    fresh: np.ndarray, tmp_path: Path,
) -> None:  # fmt: skip
    out = _predict_csv(store_dir, _file_name(family), fresh, tmp_path)
    assert list(out.columns) == columns
    model = fitted[family]
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(fresh))
    expected = _scores(model, fresh).reshape(len(fresh), -1)
    scale = np.maximum(np.abs(expected), np.mean(np.abs(expected)))
    assert np.max(np.abs(out[columns[1:]].to_numpy() - expected) / scale) < 1e-4


def test_isolation_forest_probes_reach_every_tree_split(fitted: dict[str, Any]) -> None:
    forest = fitted["IsolationForest"]
    probe = probing.generate(forest, 4, rows=256)
    assert probe.kind == "thresholds"
    for tree in forest.estimators_:
        split = tree.tree_.feature >= 0
        for feature, threshold in zip(tree.tree_.feature[split], tree.tree_.threshold[split],
                                      strict=True):  # fmt: skip
            column = probe.X[:, feature]
            assert (column <= threshold).any() and (column > threshold).any()


def test_feature_subsets_map_each_tree_split_to_its_raw_column(points: np.ndarray) -> None:
    """A forest that draws columns per tree numbers them within the draw: map them back."""
    forest = IsolationForest(n_estimators=8, max_features=2, random_state=0).fit(points)
    thresholds = probing.tree_thresholds(forest, 4)
    assert thresholds is not None
    expected: list[set[float]] = [set() for _ in range(4)]
    for tree, columns in zip(forest.estimators_, forest.estimators_features_, strict=True):
        split = tree.tree_.feature >= 0
        for local, value in zip(tree.tree_.feature[split], tree.tree_.threshold[split],
                                strict=True):  # fmt: skip
            expected[int(columns[local])].add(float(value))
    assert [set(t.tolist()) for t in thresholds] == expected


def test_unconvertible_configurations_fail_alone_with_what_to_do(
    points: np.ndarray, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    subsets = IsolationForest(n_estimators=5, max_features=2, random_state=0).fit(points)
    joblib.dump(subsets, registry / "subsets.joblib")
    joblib.dump(LocalOutlierFactor().fit(points), registry / "transductive.joblib")
    joblib.dump(BisectingKMeans(3, random_state=0).fit(points), registry / "bisecting.joblib")
    entries = {
        e.name: e
        for e in convert_run(ConvertOptions(registry=registry, probe_rows=64))
        if isinstance(e, ManifestEntry)
    }
    errors = {name: entry.error or "" for name, entry in entries.items() if not entry.ok}
    assert set(errors) == {"subsets", "transductive", "bisecting"}
    assert "IsolationForest draws 2 of its 4 features per tree" in errors["subsets"]
    assert "refit it with max_features=1.0" in errors["subsets"]
    assert "refit it with novelty=True" in errors["transductive"]
    assert "no ONNX converter for BisectingKMeans" in errors["bisecting"]
    assert all("\n" not in error for error in errors.values())
