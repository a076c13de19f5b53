"""Store: every answer checked against scikit-learn, on real artifacts and real fallbacks."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from alphapulse_onnx import ApoError, Store
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.errors import (
    InputError,
    InvalidInputError,
    ManifestError,
    ProviderError,
    UnknownModelError,
)
from alphapulse_onnx.feeds import STRING_MISSING, FeedBuilder
from alphapulse_onnx.signature import TensorSpec

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_LABELS = np.array(["setosa", "versicolor", "virginica"])


def _mixed_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
            "x2": rng.normal(size=n),
        }
    )


def build_models(iris: Any, diabetes: Any) -> dict[str, Any]:
    Xi, yi = iris
    Xd, yd = diabetes
    frame = pd.DataFrame(Xi, columns=IRIS_NAMES)
    mixed = _mixed_frame(200, 0)
    mixed_y = np.where(mixed.x1 + (mixed.color == "red") > 0.5, "yes", "no")
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["x1", "x2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    )
    return {
        "iris_rf.joblib": RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(
            Xi, yi
        ),
        "named/iris_names.joblib": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=500)
        ).fit(frame, IRIS_LABELS[yi]),
        "diabetes_gbr.joblib": GradientBoostingRegressor(n_estimators=15, random_state=0).fit(
            Xd, yd
        ),
        "mixed.joblib": make_pipeline(columns, LogisticRegression()).fit(mixed, mixed_y),
        "svc.joblib": LinearSVC().fit(Xi, yi),
    }


def convert_registry(root: Path) -> Path:
    """``apo convert root`` through the command module; returns the manifest folder."""
    options = ConvertOptions(registry=root, jobs=1)
    list(convert_run(options))
    return options.out_dir


@pytest.fixture(scope="module")
def models(iris: Any, diabetes: Any) -> dict[str, Any]:
    return build_models(iris, diabetes)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Any]) -> Path:
    root = tmp_path_factory.mktemp("runtime") / "registry"
    for rel, model in models.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, root / rel)
    return convert_registry(root)


@pytest.fixture
def copy_of(converted: Path, tmp_path: Path) -> Path:
    """A private copy of the store (to delete or tamper with)."""
    target = tmp_path / "registry"
    shutil.copytree(converted.parent, target)
    return target / "onnx"


@pytest.fixture(scope="module")
def store(converted: Path) -> Store:
    return Store.open(converted)


def test_lists_models_and_metadata(store: Store, models: dict[str, Any]) -> None:
    assert sorted(store.names) == sorted(["iris_rf", "iris_names", "diabetes_gbr", "mixed", "svc"])
    assert "iris_rf" in store and len(store) == 5
    model = store["iris_names"]
    assert model.engine == "onnxruntime"
    assert model.provider == "CPUExecutionProvider"
    assert model.feature_names == tuple(IRIS_NAMES)
    assert model.classes is not None
    assert list(model.classes) == list(models["named/iris_names.joblib"].classes_)
    assert store["diabetes_gbr"].classes is None
    assert store["diabetes_gbr"].task == "regression"


@pytest.mark.parametrize("name", ["iris_rf", "iris_names"])
@pytest.mark.parametrize("form", ["ndarray", "list", "dataframe", "float32"])
def test_classifier_answers_match_sklearn(
    store: Store, models: dict[str, Any], iris: Any, name: str, form: str
) -> None:
    X = iris[0]
    estimator = models["iris_rf.joblib" if name == "iris_rf" else "named/iris_names.joblib"]
    rows: Any = {
        "ndarray": X,
        "list": X.tolist(),
        "dataframe": pd.DataFrame(X, columns=IRIS_NAMES),
        "float32": X.astype(np.float32),
    }[form]
    reference = pd.DataFrame(X, columns=IRIS_NAMES) if name == "iris_names" else X
    labels = store[name].predict(rows)
    expected = estimator.predict(reference)
    np.testing.assert_array_equal(labels, expected)
    assert labels.shape == expected.shape
    proba = store[name].predict_proba(rows)
    assert proba.dtype == np.float64 and proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba, estimator.predict_proba(reference), atol=1e-5)


def test_string_labels_keep_their_values(store: Store, iris: Any) -> None:
    labels = store["iris_names"].predict(pd.DataFrame(iris[0], columns=IRIS_NAMES))
    assert labels.dtype.kind in "UO"
    assert set(labels.tolist()) == set(IRIS_LABELS.tolist())
    assert isinstance(labels[0], str)


def test_int_labels_keep_their_dtype(store: Store, models: dict[str, Any], iris: Any) -> None:
    labels = store["iris_rf"].predict(iris[0][:5])
    assert labels.dtype == models["iris_rf.joblib"].classes_.dtype


def test_regression_matches_sklearn(store: Store, models: dict[str, Any], diabetes: Any) -> None:
    X = diabetes[0]
    values = store["diabetes_gbr"].predict(X)
    assert values.shape == (len(X),) and values.dtype == np.float64
    np.testing.assert_allclose(values, models["diabetes_gbr.joblib"].predict(X), rtol=1e-4)
    with pytest.raises(InputError, match="regressor"):
        store["diabetes_gbr"].predict_proba(X)


def test_dataframe_columns_matched_by_name_in_any_order(
    store: Store, models: dict[str, Any], iris: Any
) -> None:
    frame = pd.DataFrame(iris[0], columns=IRIS_NAMES)
    shuffled = frame[list(reversed(IRIS_NAMES))]
    np.testing.assert_array_equal(
        store["iris_names"].predict(shuffled),
        models["named/iris_names.joblib"].predict(frame),
    )
    # a plain mapping of columns and a list of row dicts are matched by name too
    mapping = {name: frame[name].to_numpy() for name in reversed(IRIS_NAMES)}
    records = shuffled.to_dict("records")
    expected = store["iris_names"].predict_proba(frame)
    np.testing.assert_allclose(store["iris_names"].predict_proba(mapping), expected)
    np.testing.assert_allclose(store["iris_names"].predict_proba(records), expected)


def test_missing_and_extra_columns_are_named(store: Store, iris: Any) -> None:
    frame = pd.DataFrame(iris[0], columns=IRIS_NAMES)
    with pytest.raises(InvalidInputError, match="missing columns: petal_width"):
        store["iris_names"].predict(frame.drop(columns=["petal_width"]))
    with pytest.raises(ValueError, match="unexpected columns: id"):
        store["iris_names"].predict(frame.assign(id=1))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros((2, 3)), "takes 4 features per row.*got 3"),
        (np.zeros(4), "2-D rows.*1-D array of shape \\(4,\\)"),
        ([1.0, 2.0, 3.0, 4.0], "2-D rows.*flat list"),
        ([[1, 2, 3, 4], [1, 2, 3]], "row 1 has 3 values, row 0 has 4"),
        ([[1, 2, 3, 4], [1, "abc", 3, 4]], "row 1, column 1: 'abc' is not a number"),
        (None, "2-D rows"),
        (np.zeros((1, 4, 1)), "3-D array"),
        ("1,2,3,4", "cannot use a str"),
    ],
)
def test_bad_rows_give_apo_errors(store: Store, rows: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        store["iris_rf"].predict(rows)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ApoError)


def test_non_numeric_cell_names_row_and_column(store: Store, iris: Any) -> None:
    frame = pd.DataFrame(iris[0][:5], columns=IRIS_NAMES).astype(object)
    frame.loc[3, "petal_length"] = "n/a"
    with pytest.raises(InvalidInputError, match="row 3, column 'petal_length': 'n/a'") as caught:
        store["iris_names"].predict(frame)
    assert caught.value.row == 3 and caught.value.column == "petal_length"


def test_empty_rows_give_empty_answers(store: Store) -> None:
    assert store["iris_rf"].predict(np.empty((0, 4))).shape == (0,)
    assert store["iris_rf"].predict_proba(np.empty((0, 4))).shape == (0, 3)


def test_mixed_text_and_number_columns(store: Store, models: dict[str, Any]) -> None:
    estimator = models["mixed.joblib"]
    frame = _mixed_frame(50, 1)
    model = store["mixed"]
    assert [s.dtype for s in model.entry.inputs] == ["float32", "string", "float32"]
    assert model.engine == "onnxruntime"
    np.testing.assert_array_equal(model.predict(frame), estimator.predict(frame))
    reordered = frame[["color", "x2", "x1"]]
    np.testing.assert_allclose(
        model.predict_proba(reordered), estimator.predict_proba(frame), atol=1e-5
    )
    # by position from a list of rows, as the columns were fitted
    np.testing.assert_array_equal(
        model.predict(frame.to_numpy(dtype=object).tolist()), estimator.predict(frame)
    )
    bad = frame.astype({"x2": object})
    bad.loc[7, "x2"] = "seven"
    with pytest.raises(InvalidInputError, match="row 7, column 'x2': 'seven' is not a number"):
        model.predict(bad)


def test_feed_builder_types_each_input() -> None:
    specs = (
        TensorSpec("city", "string", (None, 1)),
        TensorSpec("rooms", "int64", (None, 1)),
        TensorSpec("area", "float64", (None, 1)),
    )
    builder = FeedBuilder(specs, ("city", "rooms", "area"), model="houses")
    feeds = builder.feeds(
        pd.DataFrame({"area": [50.5, 70.0], "city": ["Oslo", None], "rooms": [2, 3]})
    )
    assert feeds["city"].shape == (2, 1) and feeds["city"][1, 0] == STRING_MISSING
    assert feeds["rooms"].dtype == np.int64 and feeds["area"].dtype == np.float64
    with pytest.raises(InvalidInputError, match=r"row 1, column 'rooms': 2\.5 is not a whole"):
        builder.feeds([["Oslo", 2, 1.0], ["Bergen", 2.5, 3.0]])
    frame = builder.frame([["Oslo", 2, 1.0], [None, 3, 3.0]])
    assert list(frame.columns) == ["city", "rooms", "area"] and pd.isna(frame.city[1])


def test_models_are_found_by_source_path_too(store: Store) -> None:
    assert store["named/iris_names.joblib"] is store["iris_names"]


def test_onnxruntime_errors_are_apo_errors(store: Store) -> None:
    model = store["iris_rf"]
    model.predict(np.zeros((1, 4)))  # the engine is chosen
    with pytest.raises(InvalidInputError, match="onnxruntime refused the rows"):
        model.run_prepared({"X": np.zeros((1, 4), dtype=np.float64)}, proba=False)


def test_unknown_model_is_a_key_error(store: Store) -> None:
    with pytest.raises(UnknownModelError, match="no model named 'nope'") as caught:
        store["nope"]
    assert isinstance(caught.value, KeyError)


def test_open_accepts_the_manifest_file_and_says_when_missing(
    converted: Path, tmp_path: Path
) -> None:
    assert Store.open(converted / "manifest.json").names
    with pytest.raises(ManifestError, match="apo convert"):
        Store.open(tmp_path)


def test_a_provider_that_does_not_run_is_refused(converted: Path) -> None:
    with pytest.raises(ProviderError, match="does not run here"):
        Store.open(converted, providers=["NopeExecutionProvider"])


def test_one_session_per_model_even_under_threads(converted: Path, iris: Any) -> None:
    store = Store.open(converted)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: store["iris_rf"].predict(iris[0][i : i + 3]), range(64)))
    assert len(results) == 64
    assert list(store._sessions) == [("iris_rf", ("CPUExecutionProvider",))]


def test_predict_async(store: Store, models: dict[str, Any], iris: Any) -> None:
    X = iris[0]

    async def main() -> list[np.ndarray]:
        calls = [store.predict_async("iris_rf", X[i : i + 10]) for i in range(0, 150, 10)]
        calls.append(store.predict_proba_async("iris_rf", X))
        return await asyncio.gather(*calls)

    *labels, proba = asyncio.run(main())
    np.testing.assert_array_equal(np.concatenate(labels), models["iris_rf.joblib"].predict(X))
    np.testing.assert_allclose(proba, models["iris_rf.joblib"].predict_proba(X), atol=1e-5)


def _fallback_answers(
    manifest_dir: Path, models: dict[str, Any], iris: Any, caplog: pytest.LogCaptureFixture
) -> str:
    caplog.set_level(logging.WARNING, logger="alphapulse_onnx")
    model = Store.open(manifest_dir)["iris_rf"]
    assert model.engine == "sklearn" and model.provider is None
    X = iris[0]
    np.testing.assert_array_equal(model.predict(X), models["iris_rf.joblib"].predict(X))
    np.testing.assert_array_equal(
        model.predict_proba(X), models["iris_rf.joblib"].predict_proba(X)
    )  # exact: it *is* scikit-learn
    model.predict(X)
    records = [r for r in caplog.records if r.name == "alphapulse_onnx"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert model.fallback_reason is not None
    return records[0].getMessage()


def test_deleted_artifact_falls_back_to_sklearn(
    copy_of: Path, models: dict[str, Any], iris: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (copy_of / "iris_rf.onnx").unlink()
    message = _fallback_answers(copy_of, models, iris, caplog)
    assert "iris_rf" in message and "missing" in message


def test_tampered_artifact_falls_back_to_sklearn(
    copy_of: Path, models: dict[str, Any], iris: Any, caplog: pytest.LogCaptureFixture
) -> None:
    artifact = copy_of / "iris_rf.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    message = _fallback_answers(copy_of, models, iris, caplog)
    assert "sha256" in message


def test_failed_conversion_serves_sklearn_without_proba(
    store: Store, models: dict[str, Any], iris: Any
) -> None:
    model = store["svc"]
    if model.entry.ok:  # skl2onnx may learn to convert it: the answers must hold either way
        assert model.engine == "onnxruntime"
    else:
        assert model.engine == "sklearn" and "conversion failed" in (model.fallback_reason or "")
    np.testing.assert_array_equal(model.predict(iris[0]), models["svc.joblib"].predict(iris[0]))
    with pytest.raises(InputError, match="has no predict_proba"):
        model.predict_proba(iris[0])


def test_source_missing_too_is_a_clear_error(copy_of: Path) -> None:
    (copy_of / "iris_rf.onnx").unlink()
    (copy_of.parent / "iris_rf.joblib").unlink()
    with pytest.raises(ApoError, match=r"cannot be served.*source model is missing"):
        Store.open(copy_of)["iris_rf"].predict(np.zeros((1, 4)))


def test_without_onnxruntime_everything_falls_back(
    converted: Path, models: dict[str, Any], iris: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('onnxruntime blocked for this test')\n")
    np.save(tmp_path / "X.npy", iris[0])
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from alphapulse_onnx import Store
        assert "onnxruntime" not in sys.modules or sys.modules["onnxruntime"] is None
        model = Store.open({str(converted)!r})["iris_rf"]
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, model.predict_proba(X))
        print(model.engine, "|", model.fallback_reason)
        """
    )
    path = os.pathsep.join([str(tmp_path / "blocker"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sklearn | onnxruntime is not installed"
    assert "serving with scikit-learn because onnxruntime is not installed" in done.stderr
    np.testing.assert_array_equal(
        np.load(tmp_path / "out.npy"), models["iris_rf.joblib"].predict_proba(iris[0])
    )
