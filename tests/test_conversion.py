"""Every model family the compile path promises, converted for real and checked by onnxruntime.

One registry holds them all (module fixture, converted once); each test then runs the written
artifact with a bare onnxruntime session on the data set itself and compares with scikit-learn.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn import (
    calibration,
    decomposition,
    ensemble,
    feature_selection,
    linear_model,
    naive_bayes,
    neighbors,
    neural_network,
    svm,
    tree,
)
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, RobustScaler, StandardScaler

from alphapulse_onnx import loading
from alphapulse_onnx.commands.convert import ConvertOptions, run
from alphapulse_onnx.manifest import ManifestEntry

from .conftest import save_model

DATA = {
    "cancer": load_breast_cancer(return_X_y=True),  # binary
    "iris": load_iris(return_X_y=True),  # multiclass
    "wine": load_wine(return_X_y=True),  # multiclass, features on very different scales
    "diabetes": load_diabetes(return_X_y=True),  # regression
}


def _families() -> dict[str, tuple[str, Any]]:
    rf = {"n_estimators": 12, "max_depth": 6, "random_state": 0}

    def scaled(est: Any) -> Any:
        return make_pipeline(StandardScaler(), est)

    return {
        "rf_clf_cancer": ("cancer", ensemble.RandomForestClassifier(**rf)),
        "rf_clf_iris": ("iris", ensemble.RandomForestClassifier(**rf)),
        "et_clf_wine": ("wine", ensemble.ExtraTreesClassifier(**rf)),
        "rf_reg": ("diabetes", ensemble.RandomForestRegressor(**rf)),
        "et_reg": ("diabetes", ensemble.ExtraTreesRegressor(**rf)),
        "dt_clf": ("wine", tree.DecisionTreeClassifier(max_depth=6, random_state=0)),
        "dt_reg": ("diabetes", tree.DecisionTreeRegressor(max_depth=6, random_state=0)),
        "gb_clf_cancer": ("cancer", ensemble.GradientBoostingClassifier(n_estimators=20)),
        "gb_clf_iris": ("iris", ensemble.GradientBoostingClassifier(n_estimators=10)),
        "gb_reg": ("diabetes", ensemble.GradientBoostingRegressor(n_estimators=20)),
        "hgb_clf_cancer": ("cancer", ensemble.HistGradientBoostingClassifier(max_iter=20)),
        "hgb_clf_wine": ("wine", ensemble.HistGradientBoostingClassifier(max_iter=15)),
        "hgb_reg": ("diabetes", ensemble.HistGradientBoostingRegressor(max_iter=20)),
        "logreg_cancer": ("cancer", scaled(linear_model.LogisticRegression(max_iter=3000))),
        "logreg_iris_raw": ("iris", linear_model.LogisticRegression(max_iter=3000)),
        "ridge": ("diabetes", linear_model.Ridge()),
        "linreg": ("diabetes", linear_model.LinearRegression()),
        "lasso": ("diabetes", linear_model.Lasso(alpha=0.1)),
        "sgd_clf": ("iris", scaled(linear_model.SGDClassifier(random_state=0))),
        "ridge_clf": ("wine", make_pipeline(MinMaxScaler(), linear_model.RidgeClassifier())),
        "svc_proba": ("iris", scaled(svm.SVC(probability=True, random_state=0))),
        "svc_decision": ("cancer", scaled(svm.SVC())),
        "svr": ("diabetes", svm.SVR(C=10.0)),
        "linear_svc": ("wine", scaled(svm.LinearSVC())),  # no ZipMap option in its converter
        # Ensembles of other estimators: flatten_transform=True is reset for skl2onnx.
        "voting_soft": (
            "iris",
            ensemble.VotingClassifier(
                [
                    ("lr", linear_model.LogisticRegression(max_iter=3000)),
                    ("rf", ensemble.RandomForestClassifier(n_estimators=8, random_state=0)),
                ],
                voting="soft",
            ),
        ),
        "voting_hard": (
            "wine",
            ensemble.VotingClassifier(
                [
                    ("lr", scaled(linear_model.LogisticRegression())),
                    ("dt", tree.DecisionTreeClassifier(max_depth=4, random_state=0)),
                ],
                voting="hard",
            ),
        ),
        "stacking": (
            "iris",
            ensemble.StackingClassifier(
                [
                    ("lr", linear_model.LogisticRegression(max_iter=3000)),
                    ("nb", naive_bayes.GaussianNB()),
                ]
            ),
        ),
        "bagging": ("cancer", ensemble.BaggingClassifier(n_estimators=6, random_state=0)),
        "adaboost": ("iris", ensemble.AdaBoostClassifier(n_estimators=10, random_state=0)),
        "calibrated_sgd": (
            "cancer",
            calibration.CalibratedClassifierCV(scaled(linear_model.SGDClassifier(random_state=0))),
        ),
        "selectk_rf": (
            "cancer",
            make_pipeline(  # SelectKBest pickles its score function
                feature_selection.SelectKBest(k=8),
                ensemble.RandomForestClassifier(n_estimators=8, random_state=0),
            ),
        ),
        "pca_logreg": (
            "wine",
            make_pipeline(
                StandardScaler(), decomposition.PCA(4), linear_model.LogisticRegression()
            ),
        ),
        "poly_ridge": ("diabetes", make_pipeline(PolynomialFeatures(2), linear_model.Ridge())),
        "linear_svc_bare": ("cancer", svm.LinearSVC(max_iter=5000)),
        "knn_clf": ("wine", scaled(neighbors.KNeighborsClassifier())),
        "knn_reg": ("diabetes", neighbors.KNeighborsRegressor()),
        "gnb": ("wine", naive_bayes.GaussianNB()),
        "mlp_clf": (
            "cancer",
            scaled(
                neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=800, random_state=0)
            ),
        ),
        "mlp_reg": (
            "diabetes",
            make_pipeline(
                RobustScaler(),
                neural_network.MLPRegressor(
                    hidden_layer_sizes=(16,), max_iter=2000, random_state=0
                ),
            ),
        ),
    }


FAMILIES = _families()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ManifestEntry]]:
    root = tmp_path_factory.mktemp("zoo")
    for name, (data, estimator) in FAMILIES.items():
        X, y = DATA[data]
        with warnings.catch_warnings():
            # SVC(probability=True) is deprecated in 1.9 but still what registries hold.
            warnings.simplefilter("ignore", FutureWarning)
            estimator.fit(X, y)
        save_model(estimator, root / f"{name}.joblib")
    X, y = DATA["wine"]
    named = np.array(["barolo", "grignolino", "barbera"])[y]
    save_model(ensemble.RandomForestClassifier(n_estimators=8, random_state=0).fit(X, named),
               root / "strings" / "wine_names.pkl")  # fmt: skip
    events = list(run(ConvertOptions(registry=root, jobs=1)))
    entries = {e.name: e for e in events if isinstance(e, ManifestEntry)}
    return root, entries


def _session(root: Path, entry: ManifestEntry) -> ort.InferenceSession:
    assert entry.artifact is not None
    path = root / "onnx" / entry.artifact.path
    onnx.checker.check_model(str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.filterwarnings("ignore:.*probability.*:FutureWarning")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_converts_with_parity_on_real_data(converted: Any, name: str) -> None:
    root, entries = converted
    entry = entries[name]
    assert entry.status == "ok", entry.error
    assert entry.validation is not None and entry.validation.passed
    data, _ = FAMILIES[name]
    X, _y = DATA[data]
    model = FAMILIES[name][1]
    session = _session(root, entry)
    dtype = np.float64 if entry.artifact and entry.artifact.precision == "float64" else np.float32
    outputs = session.run(None, {"X": X.astype(dtype)})
    if entry.task == "regression":
        expected = model.predict(X)
        np.testing.assert_allclose(
            outputs[0].ravel(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).mean()
        )
        return
    np.testing.assert_array_equal(outputs[0], model.predict(X))
    if entry.has_proba:
        np.testing.assert_allclose(outputs[1], model.predict_proba(X), atol=1e-4)


def test_classifiers_have_tensor_outputs_not_zipmap(converted: Any) -> None:
    root, entries = converted
    for entry in entries.values():
        assert entry.artifact is not None
        graph = onnx.load(str(root / "onnx" / entry.artifact.path)).graph
        assert all(node.op_type != "ZipMap" for node in graph.node), entry.name
        if entry.task == "classification":
            assert [o.name for o in entry.outputs] == ["label", "probabilities"]
            assert entry.outputs[1].dtype in ("float32", "float64")
        else:
            assert len(entry.outputs) == 1


def test_string_class_labels_round_trip(converted: Any) -> None:
    root, entries = converted
    entry = entries["wine_names"]
    assert entry.classes == ("barbera", "barolo", "grignolino")
    session = _session(root, entry)
    X, _ = DATA["wine"]
    labels = session.run(None, {"X": X.astype(np.float32)})[0]
    model = loading.load(root / "strings" / "wine_names.pkl").estimator
    np.testing.assert_array_equal(labels, model.predict(X))


def test_tree_models_are_probed_at_their_thresholds(converted: Any) -> None:
    _, entries = converted
    assert entries["rf_clf_cancer"].validation.probe == "thresholds"
    assert entries["hgb_clf_cancer"].validation.probe == "thresholds"
    assert entries["logreg_cancer"].validation.probe == "statistics"
    assert entries["rf_clf_cancer"].validation.rows > 1000


def test_hist_gradient_boosting_needs_and_gets_double_precision(converted: Any) -> None:
    # HGB compares float64 inputs with float64 thresholds: on threshold probes float32 must fail
    # and the double artifact must pass; the manifest says which was used and why.
    _, entries = converted
    entry = entries["hgb_clf_cancer"]
    assert entry.artifact is not None and entry.artifact.precision == "float64"
    assert any("float32 parity failed" in w for w in entry.warnings)
    assert entries["rf_clf_cancer"].artifact.precision == "float32"


def test_decision_only_classifier_compares_labels(converted: Any) -> None:
    _, entries = converted
    entry = entries["svc_decision"]
    assert entry.has_proba is False
    assert entry.validation.label_agreement == 1.0


def test_manifest_on_disk_matches_entries(converted: Any) -> None:
    root, entries = converted
    raw = json.loads((root / "onnx" / "manifest.json").read_text())
    # Registry order (sorted relative paths), whatever order the models finished in.
    sources = [m["source"]["path"] for m in raw["models"]]
    assert sources == sorted(sources)
    assert [m["name"] for m in raw["models"]] == list(entries)
    assert raw["registry"] == ".."
    assert {m["status"] for m in raw["models"]} == {"ok"}
