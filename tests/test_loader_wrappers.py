"""Models saved inside something else: dicts, lists, tuples, searches, raw boosters, and joblib's
format before 0.10 (arrays in files beside the pickle), each read by the loader as real files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx import loading
from alphapulse_onnx.cli import app
from alphapulse_onnx.errors import ModelLoadError, UntrustedModelError


@pytest.fixture(scope="module")
def iris_model() -> tuple[LogisticRegression, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X, y), X


def _load(tmp_path: Path, obj: Any, select: str | None = None) -> loading.LoadedModel:
    path = tmp_path / "wrapped.joblib"
    joblib.dump(obj, path)
    return loading.load(path, loading.TrustPolicy(select=select))


def test_a_dict_with_one_model_converts_it_and_keeps_plain_values(
    tmp_path: Path, iris_model: Any
) -> None:
    model, X = iris_model
    saved = {"pipeline": model, "threshold": 0.42, "features": ["a", "b"],
             "classes": np.array([0, 1, 2]), "trained": {"by": "x", "n": 3}}  # fmt: skip
    loaded = _load(tmp_path, saved)
    assert loaded.selected == "pipeline"
    assert loaded.metadata == {"threshold": 0.42, "features": ["a", "b"], "classes": [0, 1, 2],
                               "trained": {"by": "x", "n": 3}}  # fmt: skip
    json.dumps(loaded.metadata)  # it goes into the manifest as it is
    np.testing.assert_array_equal(loaded.estimator.predict(X), model.predict(X))


def test_a_tuple_and_a_nested_dict(tmp_path: Path, iris_model: Any) -> None:
    model, _ = iris_model
    pair = _load(tmp_path, (model, ["f0", "f1", "f2", "f3"]))
    assert pair.selected == "0"
    assert pair.metadata == {"1": ["f0", "f1", "f2", "f3"]}
    nested = _load(tmp_path, {"models": {"churn": model}, "version": 7})
    assert nested.selected == "models.churn"
    assert nested.metadata == {"version": 7}


def test_the_only_predictor_is_taken_and_the_rest_named(tmp_path: Path, iris_model: Any) -> None:
    model, X = iris_model
    loaded = _load(tmp_path, {"model": model, "scaler": StandardScaler().fit(X)})
    assert loaded.selected == "model"
    assert any("scaler (StandardScaler)" in w and "--select" in w for w in loaded.warnings)


def test_several_predictors_need_select(tmp_path: Path, iris_model: Any) -> None:
    model, X = iris_model
    other = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, load_iris().target)
    wrapped = {"a": model, "b": other}
    expected = r"holds 2 models \(a \(LogisticRegression\), b \(RandomForestClassifier\)\); choose"
    with pytest.raises(ModelLoadError, match=expected):
        _load(tmp_path, wrapped)
    chosen = _load(tmp_path, wrapped, select="b")
    assert type(chosen.estimator).__name__ == "RandomForestClassifier"
    with pytest.raises(ModelLoadError, match="--select c: no model under that key"):
        _load(tmp_path, wrapped, select="c")
    # A registry-wide --select leaves files with one model alone.
    assert _load(tmp_path, model, select="a").selected is None
    assert _load(tmp_path, {"only": model}, select="a").selected == "only"


def test_a_dict_without_a_model_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds a dict \(keys: threshold\), not a scikit"):
        _load(tmp_path, {"threshold": 0.5})


@pytest.mark.parametrize("search", [GridSearchCV, RandomizedSearchCV])
def test_a_refitted_search_gives_its_best_estimator(tmp_path: Path, search: Any) -> None:
    X, y = load_iris(return_X_y=True)
    fitted = search(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=3,
                    scoring="accuracy").fit(X, y)  # fmt: skip
    loaded = _load(tmp_path, fitted)
    assert loaded.selected == "best_estimator_"
    assert loaded.metadata["best_params"] == fitted.best_params_
    assert loaded.metadata["scoring"] == "accuracy"
    assert loaded.metadata["best_score"] == pytest.approx(fitted.best_score_)
    np.testing.assert_array_equal(loaded.estimator.predict(X), fitted.predict(X))
    inside = _load(tmp_path, {"search": fitted, "note": "v2"})
    assert inside.selected == "search.best_estimator_"
    assert inside.metadata["note"] == "v2"


def test_a_search_without_refit_is_refused_with_what_to_do(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    fitted = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=3,
                          refit=False).fit(X, y)  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"saved without refit.*refit=True"):
        _load(tmp_path, fitted)


# --- raw boosters ---------------------------------------------------------------------------


def _boosters() -> dict[str, tuple[Any, np.ndarray, str]]:
    X, y = load_iris(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True)
    lgb = {"verbose": -1, "num_leaves": 7}
    return {
        "lgb_multiclass": (lightgbm.train({**lgb, "objective": "multiclass", "num_class": 3},
                                          lightgbm.Dataset(X, y), 8), X, "LGBMClassifier"),
        "lgb_binary": (lightgbm.train({**lgb, "objective": "binary"},
                                      lightgbm.Dataset(X, (y > 0).astype(int)), 8), X,
                       "LGBMClassifier"),
        "lgb_regression": (lightgbm.train({**lgb, "objective": "regression"},
                                          lightgbm.Dataset(Xd, yd), 8), Xd, "LGBMRegressor"),
        "xgb_multiclass": (xgboost.train({"objective": "multi:softprob", "num_class": 3},
                                         xgboost.DMatrix(X, y), 8), X, "XGBClassifier"),
        "xgb_binary": (xgboost.train({"objective": "binary:logistic"},
                                     xgboost.DMatrix(X, (y > 0).astype(int)), 8), X,
                       "XGBClassifier"),
        "xgb_regression": (xgboost.train({"objective": "reg:squarederror"},
                                         xgboost.DMatrix(Xd, yd), 8), Xd, "XGBRegressor"),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(_boosters()))
def test_a_raw_booster_answers_as_itself(tmp_path: Path, name: str) -> None:
    booster, X, wrapper = _boosters()[name]
    loaded = _load(tmp_path, booster)
    assert type(loaded.estimator).__name__ == wrapper
    raw = booster.predict(xgboost.DMatrix(X)) if name.startswith("xgb") else booster.predict(X)
    if wrapper.endswith("Regressor"):
        np.testing.assert_allclose(loaded.estimator.predict(X), raw, rtol=1e-6)
    else:
        proba = loaded.estimator.predict_proba(X)
        expected = raw if raw.ndim == 2 else np.column_stack([1 - raw, raw])
        np.testing.assert_allclose(proba, expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(loaded.estimator.predict(X), expected.argmax(axis=1))
    assert any("raw" in w and wrapper in w for w in loaded.warnings)


def test_raw_boosters_convert_with_parity(tmp_path: Path) -> None:
    registry = tmp_path / "models"
    registry.mkdir()
    for name, (booster, _, _) in _boosters().items():
        joblib.dump({"booster": booster, "features": 4}, registry / f"{name}.joblib")
    result = CliRunner().invoke(app, ["convert", str(registry), "-j", "1", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    entries = json.loads(result.stdout)["entries"]
    assert {e["name"] for e in entries if e["status"] == "ok"} == set(_boosters())


def test_a_ranking_booster_is_refused_by_name(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    ranker = lightgbm.train({"objective": "lambdarank", "verbose": -1},
                            lightgbm.Dataset(X, y, group=[50, 50, 50]), 3)  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"LightGBM ranking booster \(objective lambdarank\)"):
        _load(tmp_path, ranker)


# --- joblib before 0.10 ----------------------------------------------------------------------


_DUMP_WITH_OLD_JOBLIB = """
import json, pickle, sys
with open(sys.argv[1], "rb") as handle:
    model = pickle.load(handle)  # today's scikit-learn, imported with today's joblib
for name in [n for n in sys.modules if n == "joblib" or n.startswith("joblib.")]:
    del sys.modules[name]
sys.path.insert(0, sys.argv[2])
import joblib  # now 0.9.4, under its own name, as the files it wrote name it
assert joblib.__version__ == "0.9.4", joblib.__version__
print(json.dumps(joblib.dump(model, sys.argv[3], compress=int(sys.argv[4]))))
"""


@pytest.fixture(scope="module")
def old_joblib_dump(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``dump(model, path, compress)`` with the real joblib 0.9.4 from the package index: its
    format keeps arrays in files beside the pickle. Returns the files it wrote."""
    target = tmp_path_factory.mktemp("joblib094")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         "joblib==0.9.4"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"could not install joblib 0.9.4 from the package index: {done.stderr[-500:]}")

    def dump(model: Any, path: Path, compress: int = 0) -> list[Path]:
        source = path.with_suffix(".source")
        source.write_bytes(pickle.dumps(model))
        run = subprocess.run(
            [sys.executable, "-c", _DUMP_WITH_OLD_JOBLIB, str(source), str(target), str(path),
             str(compress)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        source.unlink()
        assert run.returncode == 0, run.stderr[-800:]
        return [Path(p) for p in json.loads(run.stdout.splitlines()[-1])]

    return dump


@pytest.mark.parametrize("compress", [0, 3])
def test_joblib_094_files_load_with_their_side_arrays(tmp_path: Path, old_joblib_dump: Any,
                                                      compress: int) -> None:  # fmt: skip
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    path = tmp_path / "forest.pkl"
    written = old_joblib_dump(model, path, compress)
    loaded = loading.load(path)
    np.testing.assert_array_equal(loaded.estimator.predict_proba(X), model.predict_proba(X))
    side = sorted(Path(p) for p in written[1:])
    assert sorted(loaded.companions) == side
    assert (len(side) > 0) == (compress == 0)  # compressed files hold their arrays inside


def test_old_joblib_side_files_stay_beside_the_model(tmp_path: Path, old_joblib_dump: Any) -> None:
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "model.pkl"
    written = old_joblib_dump(LogisticRegression(max_iter=500).fit(X, y), path)
    data = path.read_bytes()
    first = Path(written[1]).name.encode()
    for hostile in (b"../" + first, b"/etc/" + first, b"other.pkl_01.npy"):
        crafted = tmp_path / "crafted.pkl"
        # Same length is not needed: protocol 2 frames strings with their own length.
        crafted.write_bytes(data.replace(pickle.dumps(first.decode(), 2)[2:-1],
                                         pickle.dumps(hostile.decode(), 2)[2:-1]))  # fmt: skip
        with pytest.raises(UntrustedModelError, match="as an array file beside it"):
            loading.load(crafted)
    os.remove(written[1])
    with pytest.raises(UntrustedModelError, match="beside the model is missing"):
        loading.load(path)


# --- through the commands -----------------------------------------------------------------------


def test_convert_records_the_choice_and_validate_and_predict_follow_it(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    registry = tmp_path / "models"
    registry.mkdir()
    joblib.dump({"a": LogisticRegression(max_iter=500).fit(X, y), "b": forest,
                 "threshold": 0.3}, registry / "two.joblib")  # fmt: skip
    failed = CliRunner().invoke(app, ["convert", str(registry), "-j", "1", "--json"])
    assert failed.exit_code == 1
    assert "choose one with --select KEY" in json.loads(failed.stdout)["entries"][0]["error"]
    done = CliRunner().invoke(app, ["convert", str(registry), "-j", "1", "--select", "b"])
    assert done.exit_code == 0, done.stderr
    manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
    source = manifest["models"][0]["source"]
    assert source["selected"] == "b"
    assert source["metadata"] == {"threshold": 0.3}
    assert source["estimator"].endswith("RandomForestClassifier")
    # validate (no --select) re-loads the model convert chose, and passes
    checked = CliRunner().invoke(app, ["validate", str(registry)])
    assert checked.exit_code == 0, checked.stdout + checked.stderr


def test_a_changed_side_array_makes_the_source_stale(tmp_path: Path, old_joblib_dump: Any) -> None:
    X, y = load_iris(return_X_y=True)
    registry = tmp_path / "models"
    registry.mkdir()
    written = old_joblib_dump(LogisticRegression(max_iter=500).fit(X, y), registry / "lr.pkl")
    done = CliRunner().invoke(app, ["convert", str(registry), "-j", "1"])
    assert done.exit_code == 0, done.stderr
    manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
    companions = manifest["models"][0]["source"]["companions"]
    assert sorted(companions) == sorted(Path(p).name for p in written[1:])
    assert CliRunner().invoke(app, ["validate", str(registry)]).exit_code == 0
    side = Path(written[1])
    np.save(side, np.load(side) + 1.0)
    stale = CliRunner().invoke(app, ["validate", str(registry)])
    assert stale.exit_code == 1
    assert f"{side.name}, part of source lr.pkl, changed" in stale.stdout + stale.stderr
