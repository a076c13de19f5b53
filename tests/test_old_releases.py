"""Models saved by real old scikit-learn releases load, answer as they did, and convert.

Each release runs in the environment ``apo convert --origin`` makes for it (cached across runs;
see ``conftest.old_release``). A script run by that release's own Python trains a zoo that
covers the changes apo bridges: trees before 1.4 (class counts), gradient boosting's old loss
objects and start, Cython loss pickles, SGD's removed losses, SAMME.R AdaBoost, one-vs-rest
logistic regression, neighbors' old metric names, parameters added later, and a DataFrame
pipeline. It saves each model and its answers on fixed rows; the tests compare.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alphapulse_onnx import loading
from alphapulse_onnx.cli import app, normalize_args
from alphapulse_onnx.loading.legacy import OneVsRestLogisticRegression, SammeRAdaBoostClassifier

pytestmark = pytest.mark.slow

BEFORE_NUMPY_2, AFTER_NUMPY_2 = "1.3.2", "1.6.1"

TRAIN = r"""
import sys, warnings
import joblib, numpy as np, pandas as pd
import sklearn
from sklearn import ensemble, linear_model, neighbors, tree
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
warnings.filterwarnings("ignore")
out = sys.argv[1]
rng = np.random.RandomState(0)
X = rng.normal(size=(300, 5))
y3 = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1).astype(int)
yr = X[:, 0] * 3 + X[:, 1] ** 2 + rng.normal(scale=0.1, size=300)
rows = rng.normal(size=(80, 5)) * 1.5
models = {
    "tree": tree.DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y3),
    "forest": ensemble.RandomForestClassifier(n_estimators=8, max_depth=6,
                                              random_state=0).fit(X, y3),
    "boosting": ensemble.GradientBoostingClassifier(n_estimators=15, random_state=0).fit(X, y3),
    "boosting_huber": ensemble.GradientBoostingRegressor(loss="huber", n_estimators=15,
                                                         random_state=0).fit(X, yr),
    "histogram": ensemble.HistGradientBoostingClassifier(max_iter=15).fit(X, y3),
    "histogram_reg": ensemble.HistGradientBoostingRegressor(max_iter=15).fit(X, yr),
    "sgd_log": linear_model.SGDClassifier(loss="log_loss", random_state=0).fit(X, y3),
    "adaboost": ensemble.AdaBoostClassifier(n_estimators=10, random_state=0).fit(X, y3),
    "ovr_logistic": linear_model.LogisticRegression(solver="liblinear").fit(X, y3),
    "knn": neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(X, y3),
    "linear": linear_model.LinearRegression().fit(X, yr),
    "bagging": ensemble.BaggingClassifier(n_estimators=4, random_state=0).fit(X, y3),
}
if sklearn.__version__ < "1.4":  # SAMME.R was the default, and is what this model must keep
    assert models["adaboost"].algorithm == "SAMME.R"
else:
    models["adaboost"] = ensemble.AdaBoostClassifier(n_estimators=10, algorithm="SAMME",
                                                     random_state=0).fit(X, y3)
answers = {}
for name, model in models.items():
    joblib.dump(model, f"{out}/{name}.joblib")
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(model, method):
            answers[f"{name}.{method}"] = np.asarray(getattr(model, method)(rows), dtype=float)
frame = pd.DataFrame(X[:, :3], columns=["size", "age", "score"])
frame["town"] = np.array(["north", "south", "east"])[rng.randint(0, 3, 300)]
frame.loc[::17, "age"] = np.nan
frame.loc[::23, "town"] = np.nan
pipeline = make_pipeline(
    ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["size", "age", "score"]),
        ("towns", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore")), ["town"]),
    ]),
    linear_model.LogisticRegression(max_iter=500),
).fit(frame, y3)
joblib.dump(pipeline, f"{out}/frame_pipeline.joblib")
frame_rows = pd.DataFrame(rows[:, :3], columns=["size", "age", "score"])
frame_rows["town"] = np.array(["north", "south", "east", "west"])[rng.randint(0, 4, 80)]
frame_rows.to_csv(f"{out}/frame_rows.csv", index=False)
answers["frame_pipeline.predict"] = pipeline.predict(frame_rows).astype(float)
answers["frame_pipeline.predict_proba"] = pipeline.predict_proba(frame_rows)
np.savez(f"{out}/answers.npz", rows=rows, **answers)
"""


@pytest.fixture(scope="session")
def saved_by(old_release: Callable[[str], Any],
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:  # fmt: skip
    """A folder of models (and their answers) saved by an old release, made once per release."""
    made: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in made:
            folder = tmp_path_factory.mktemp(f"zoo_{version}")
            python = old_release(version).python
            subprocess.run([str(python), "-I", "-c", TRAIN, str(folder)], check=True, timeout=600)
            made[version] = folder
        return made[version]

    return get


def _rows(folder: Path, name: str) -> Any:
    if name == "frame_pipeline":
        return pd.read_csv(folder / "frame_rows.csv")
    return np.load(folder / "answers.npz")["rows"]


@pytest.mark.parametrize("version", [BEFORE_NUMPY_2, AFTER_NUMPY_2])
def test_every_model_answers_as_it_did_when_saved(
    version: str, saved_by: Callable[[str], Path]
) -> None:
    folder = saved_by(version)
    answers = np.load(folder / "answers.npz")
    checked = 0
    for path in sorted(folder.glob("*.joblib")):
        loaded = loading.load(path)
        assert loaded.sklearn_version == version
        rows = _rows(folder, path.stem)
        for key in answers.files:
            name, _, method = key.partition(".")
            if name != path.stem:
                continue
            got = np.asarray(getattr(loaded.estimator, method)(rows), dtype=float)
            np.testing.assert_allclose(got, answers[key], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{path.name} {method}")  # fmt: skip
            checked += 1
    assert checked >= 25  # every method of every model in the zoo


def test_the_upgrades_are_the_ones_each_release_needs(saved_by: Callable[[str], Path]) -> None:
    old = saved_by(BEFORE_NUMPY_2)
    tree = loading.load(old / "tree.joblib")
    assert "tree class counts as fractions (the layout since 1.4)" in tree.upgrades
    assert "DecisionTreeClassifier: added monotonic_cst=None" in tree.upgrades
    assert tree.warnings[0].startswith(f"upgraded from scikit-learn {BEFORE_NUMPY_2} to ")
    boosting = loading.load(old / "boosting.joblib")
    assert "multiclass raw scores start from log(prior) as before 1.4" in boosting.upgrades
    assert type(loading.load(old / "adaboost.joblib").estimator) is SammeRAdaBoostClassifier
    ovr = loading.load(old / "ovr_logistic.joblib")
    assert type(ovr.estimator) is OneVsRestLogisticRegression
    sgd = loading.load(old / "sgd_log.joblib")
    assert "SGDClassifier: dropped its training loss object" in sgd.upgrades
    # A newer release's tree needs no layout change; its liblinear model is still one-vs-rest.
    newer = saved_by(AFTER_NUMPY_2)
    assert not any("fractions" in u for u in loading.load(newer / "tree.joblib").upgrades)
    newer_ovr = loading.load(newer / "ovr_logistic.joblib").estimator
    assert type(newer_ovr) is OneVsRestLogisticRegression


@pytest.mark.parametrize("version", [BEFORE_NUMPY_2, AFTER_NUMPY_2])
def test_the_zoo_converts_and_matches_the_original_release(
    version: str, saved_by: Callable[[str], Path], origin_cache: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "models"
    registry.mkdir()
    for path in saved_by(version).glob("*.joblib"):
        (registry / path.name).write_bytes(path.read_bytes())
    result = CliRunner().invoke(app, normalize_args([
        "convert", str(registry), "--origin=require", "--origin-cache", str(origin_cache),
        "--json", "-j", "1"]))  # fmt: skip
    entries = {e["name"]: e for e in json.loads(result.stdout)["entries"]}
    failed = {name: e["error"] for name, e in entries.items() if e["status"] != "ok"}
    assert not failed
    assert result.exit_code == 0
    manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
    for model in manifest["models"]:
        assert model["validation"]["origin"]["status"] == "passed", model["name"]
        assert model["validation"]["origin"]["versions"]["scikit-learn"] == version
        assert model["source"]["sklearn_version"] == version
    upgraded = {m["name"] for m in manifest["models"] if m["source"].get("upgrades")}
    assert ("tree" in upgraded) == (version == BEFORE_NUMPY_2)


# --- releases that no longer install here (files made once by them, see tests/data) ------------

FIXTURES = Path(__file__).parent / "data" / "old_sklearn"
FIXTURE_RELEASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def _fixture_rows(answers: Any, name: str) -> Any:
    """The rows a fixture model answered: a matrix, or for the DataFrame models the frame."""
    if not name.startswith("frame_"):
        return answers["rows"]
    frame = pd.DataFrame(answers["frame_numbers"], columns=["size", "age", "score"])
    frame["town"] = answers["frame_towns"].astype(object)
    return frame


@pytest.mark.parametrize("version", FIXTURE_RELEASES)
def test_files_saved_by_releases_before_1_1_answer_as_they_did(version: str) -> None:
    folder = FIXTURES / version
    answers = np.load(folder / "answers.npz")
    checked = 0
    for path in sorted(folder.glob("*.pkl")):
        loaded = loading.load(path)
        assert loaded.sklearn_version == version
        if version == "0.20.4":  # its modules all moved since
            assert loaded.upgrades, path.name
        rows = _fixture_rows(answers, path.stem)
        for key in answers.files:
            name, _, method = key.partition(".")
            if name == path.stem:
                got = np.asarray(getattr(loaded.estimator, method)(rows), dtype=float)
                np.testing.assert_allclose(got, answers[key], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{version} {path.name} {method}")  # fmt: skip
                checked += 1
    assert checked >= 15


# Width recorded at fit (n_features_in_) since 0.24; column names (feature_names_in_) since 1.0.
WIDTH_FROM = {  # model -> the upgrade that gives its input width before 0.24
    "logistic": "LogisticRegression.n_features_in_ set from coef_",
    "sgd_log": "SGDClassifier.n_features_in_ set from coef_",
    "knn": "KNeighborsClassifier.n_features_in_ set from _fit_X",
    "svr": "SVR.n_features_in_ set from shape_fit_",
    "scaled_mlp": "StandardScaler.n_features_in_ set from mean_",
    "vote": "GaussianNB.n_features_in_ set from theta_",
    "frame_named": "ColumnTransformer.n_features_in_ set from _n_features",
}
NAMES_NOTE = "ColumnTransformer.feature_names_in_ set from the columns it was fit on"
PASSTHROUGH_NOTE = (
    "ColumnTransformer passthrough columns as an identity FunctionTransformer "
    "(the layout since 1.4)"
)


@pytest.mark.parametrize("version", FIXTURE_RELEASES)
def test_files_saved_by_releases_before_1_1_convert_and_answer_as_they_did(
    version: str, tmp_path: Path
) -> None:
    """Every fixture converts with ``apo convert``, its artifact answers as the release that saved
    it did, and the upgrades that made it convertible are recorded: the input width read from
    fitted state before 0.24, a DataFrame ColumnTransformer's column names before 1.0."""
    from alphapulse_onnx import Store

    folder = FIXTURES / version
    registry = tmp_path / "models"
    registry.mkdir()
    for path in folder.glob("*.pkl"):
        (registry / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, normalize_args([
        "convert", str(registry), "--out", str(out), "--json", "-j", "1"]))  # fmt: skip
    entries = {e["name"]: e for e in json.loads(result.stdout)["entries"]}
    assert {name: e["error"] for name, e in entries.items() if e["status"] != "ok"} == {}
    assert result.exit_code == 0
    answers = np.load(folder / "answers.npz")
    store = Store.open(out)
    manifest = json.loads((out / "manifest.json").read_text())
    upgrades = {m["name"]: m["source"].get("upgrades", []) for m in manifest["models"]}
    inputs = {m["name"]: [(i["column"], i["dtype"]) for i in m["inputs"]]
              for m in manifest["models"] if m["name"].startswith("frame_")}  # fmt: skip
    for name in entries:
        rows = _fixture_rows(answers, name)
        got = np.asarray(store.predict(name, rows), dtype=float)  # labels, or float32 values
        np.testing.assert_allclose(got, answers[f"{name}.predict"], rtol=1e-4, atol=1e-4,
                                   err_msg=f"{version} {name}")  # fmt: skip
        if f"{name}.predict_proba" in answers.files:
            np.testing.assert_allclose(store.predict_proba(name, rows),
                                       answers[f"{name}.predict_proba"], atol=1e-4,
                                       err_msg=f"{version} {name}")  # fmt: skip
        if name in WIDTH_FROM:
            assert (WIDTH_FROM[name] in upgrades[name]) == (version < "0.24"), (name, upgrades)
    for name in ("frame_named", "frame_passthrough"):
        assert (NAMES_NOTE in upgrades[name]) == (version < "1.0"), (name, upgrades[name])
        assert inputs[name] == [("size", "float32"), ("age", "float32"), ("score", "float32"),
                                ("town", "string")]  # fmt: skip
    assert PASSTHROUGH_NOTE in upgrades["frame_passthrough"]


def test_the_width_rules_agree_with_what_fit_records_today() -> None:
    """Each rule that reads an input width from fitted state gives, on every estimator today's
    release fits, the ``n_features_in_`` that fit recorded, or nothing: never another width."""
    import copy
    import warnings

    from sklearn.datasets import make_classification
    from sklearn.utils import all_estimators

    from alphapulse_onnx.loading.upgrades.fitted import input_width

    X, y = make_classification(120, 7, n_informative=4, n_classes=3, random_state=0)
    X = np.abs(X)  # some estimators take only non-negative input
    agreed = 0
    for name, cls in all_estimators():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = cls().fit(X, y)
            except Exception:  # needs parameters, another input, or no y
                continue
        width = model.__dict__.get("n_features_in_")
        if width is None:
            continue
        stripped = copy.deepcopy(model)
        del stripped.__dict__["n_features_in_"]
        found = input_width(stripped)
        assert found is None or found[0] == width, (name, found, width)
        agreed += found is not None
    assert agreed >= 60
