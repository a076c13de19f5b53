"""Converter gaps from real registries: distance-weighted and radius nearest neighbours,
``IterativeImputer``, LightGBM fitted on pandas ``category`` columns and ``CalibratedClassifierCV``
around a DataFrame pipeline.

Each model is fitted on real data, converted by ``apo convert`` on a temporary registry, and the
served artifact's answers (ONNX Runtime) are compared row by row with the model's own, on rows the
parity probes may not reach: training rows (a neighbour at distance 0), gaps, unseen and missing
categories. What apo cannot reproduce must fail with one line naming the cause, never an internal
error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer
from sklearn.linear_model import (
    ElasticNet,
    LinearRegression,
    LogisticRegression,
    Ridge,
)
from sklearn.neighbors import (
    KNeighborsClassifier,
    KNeighborsRegressor,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC
from typer.testing import CliRunner

from alphapulse_onnx.cli import app
from alphapulse_onnx.manifest import ManifestEntry
from alphapulse_onnx.store import Store
from tests.coverage_table import convert_models, record


def _converted(tmp_path: Path, models: dict[str, Any]) -> tuple[dict[str, ManifestEntry], Store]:
    entries = convert_models(tmp_path, models)
    return entries, Store.open(tmp_path / "registry" / "onnx")


def _assert_ok(entry: ManifestEntry) -> None:
    assert entry.ok, entry.error
    report = entry.validation
    assert report is not None and report.passed, report


def _assert_refused(entry: ManifestEntry, *phrases: str) -> None:
    """Refused in one line that names the cause (and a hint), not an internal error."""
    assert not entry.ok
    assert entry.error is not None and "\n" not in entry.error, entry.error
    for phrase in phrases:
        assert phrase in entry.error, entry.error
    assert "Traceback" not in entry.error and "TypeError" not in entry.error


# --- nearest neighbours ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows and held-out rows. (No repeated training row: two copies under different
    targets tie at the k-th distance for nearby queries, where scikit-learn's own trees keep
    whichever they meet first.)"""
    X, y = load_diabetes(return_X_y=True)
    return X[:330], y[:330], X[330:]


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # the metric sees comparable columns
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    return X[:130], y[:130], X[130:]


KNN_REGRESSORS: dict[str, Any] = {
    "KNeighborsRegressor(uniform)": KNeighborsRegressor(),
    "KNeighborsRegressor(distance)": KNeighborsRegressor(weights="distance"),
    "KNeighborsRegressor(distance, manhattan)": KNeighborsRegressor(
        n_neighbors=7, weights="distance", metric="manhattan"
    ),
    "KNeighborsRegressor(distance, minkowski p=3, brute)": KNeighborsRegressor(
        weights="distance", p=3, algorithm="brute"
    ),
    "RadiusNeighborsRegressor(distance)": RadiusNeighborsRegressor(radius=0.12, weights="distance"),
}
KNN_CLASSIFIERS: dict[str, Any] = {
    "KNeighborsClassifier(uniform)": KNeighborsClassifier(),
    "KNeighborsClassifier(distance)": KNeighborsClassifier(weights="distance"),
    # Not chebyshev: its distances tie at the k-th neighbour on many probes, where scikit-learn's
    # trees keep whichever point they meet first and the graph the lowest index.
    "KNeighborsClassifier(distance, manhattan)": KNeighborsClassifier(
        n_neighbors=6, weights="distance", metric="manhattan"
    ),
    "RadiusNeighborsClassifier(distance)": RadiusNeighborsClassifier(
        radius=3.5, weights="distance", outlier_label="most_frequent"
    ),
}


def _file(family: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in family).lower()


@pytest.fixture(scope="module")
def neighbours(
    tmp_path_factory: pytest.TempPathFactory, diabetes: Any, wine: Any
) -> tuple[dict[str, Any], dict[str, ManifestEntry], Store]:
    fitted: dict[str, Any] = {}
    for family, model in KNN_REGRESSORS.items():
        fitted[family] = model.fit(diabetes[0], diabetes[1])
    for family, model in KNN_CLASSIFIERS.items():
        fitted[family] = model.fit(wine[0], wine[1])
    entries, store = _converted(
        tmp_path_factory.mktemp("knn"), {_file(f): m for f, m in fitted.items()}
    )
    return fitted, entries, store


@pytest.mark.parametrize("family", list(KNN_REGRESSORS))
def test_neighbour_regressors_answer_as_scikit_learn(
    family: str, neighbours: Any, diabetes: Any
) -> None:
    fitted, entries, store = neighbours
    entry = entries[_file(family)]
    record(family, entry)
    _assert_ok(entry)
    model, served = fitted[family], store[_file(family)]
    train, _, held = diabetes
    if family.startswith("Radius"):
        # Rows with no neighbour within the radius: scikit-learn answers NaN (parity counts the
        # artifact's NaN as the same answer; serving refuses a NaN answer), so not served here.
        held = held[~np.isnan(model.predict(held))]
        assert len(held) > 20
    for rows in (held, train):  # training rows: a neighbour at distance exactly 0
        np.testing.assert_allclose(served.predict(rows).ravel(), model.predict(rows),
                                   rtol=1e-5, atol=1e-3)  # fmt: skip
    # A training row: only its zero-distance neighbour (itself) counts, whatever k is.
    if "distance" in family:
        np.testing.assert_allclose(served.predict(train).ravel(), diabetes[1], rtol=1e-6)


@pytest.mark.parametrize("family", list(KNN_CLASSIFIERS))
def test_neighbour_classifiers_answer_as_scikit_learn(
    family: str, neighbours: Any, wine: Any
) -> None:
    fitted, entries, store = neighbours
    entry = entries[_file(family)]
    record(family, entry)
    _assert_ok(entry)
    assert entry.validation is not None and entry.validation.label_agreement == 1.0
    model, served = fitted[family], store[_file(family)]
    train, _, held = wine
    for rows in (held, train):
        np.testing.assert_array_equal(served.predict(rows), model.predict(rows))
        np.testing.assert_allclose(served.predict_proba(rows), model.predict_proba(rows),
                                   atol=1e-5)  # fmt: skip
    if "distance" in family:  # a training row: its own class, with probability 1
        proba = served.predict_proba(train)
        np.testing.assert_array_equal(proba, np.eye(3)[wine[1]])


def test_distance_weights_are_not_skl2onnx_uniform_average(neighbours: Any, diabetes: Any) -> None:
    """skl2onnx alone answers the uniform average for distance weights (off by 15 on held-out
    rows, 150 on training rows); apo's artifact must not."""
    fitted, _, store = neighbours
    _, _, held = diabetes
    uniform = fitted["KNeighborsRegressor(uniform)"].predict(held)
    distance = fitted["KNeighborsRegressor(distance)"].predict(held)
    got = store[_file("KNeighborsRegressor(distance)")].predict(held).ravel()
    assert np.max(np.abs(uniform - distance)) > 1.0  # the two differ on these rows
    np.testing.assert_allclose(got, distance, rtol=1e-5)


def test_neighbour_models_apo_cannot_build_are_refused_in_one_line(
    tmp_path: Path, diabetes: Any
) -> None:
    train, y, _ = diabetes
    models = {
        "callable_weights": KNeighborsRegressor(weights=np.reciprocal),
        "cosine": KNeighborsRegressor(weights="distance", metric="cosine"),
    }
    fitted = {name: model.fit(train, y) for name, model in models.items()}
    entries, _ = _converted(tmp_path, fitted)
    _assert_refused(entries["cosine"], "metrics", "hint")
    assert not entries["callable_weights"].ok
    assert entries["callable_weights"].error is not None
    assert "\n" not in entries["callable_weights"].error


# --- IterativeImputer --------------------------------------------------------------------------


def _holes(X: np.ndarray, rate: float, seed: int) -> np.ndarray:
    out: np.ndarray = np.array(X, dtype=np.float64, copy=True)
    out[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return out


IMPUTERS: dict[str, Any] = {
    "IterativeImputer(BayesianRidge)+Ridge": IterativeImputer(random_state=0, max_iter=5),
    "IterativeImputer(Ridge, median, indicator)+Ridge": IterativeImputer(
        Ridge(alpha=0.5), initial_strategy="median", add_indicator=True, max_iter=4,
        random_state=0,
    ),
    "IterativeImputer(LinearRegression, bounds, random order)+Ridge": IterativeImputer(
        LinearRegression(), min_value=-0.05, max_value=0.05, imputation_order="random",
        max_iter=3, random_state=1,
    ),
    "IterativeImputer(ElasticNet, 3 nearest)+Ridge": IterativeImputer(
        ElasticNet(alpha=1e-4), n_nearest_features=3, max_iter=3, random_state=2, tol=1e-9
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def imputed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    holes = _holes(X, 0.2, 0)
    fitted = {family: make_pipeline(imputer, Ridge(alpha=0.1)).fit(holes[:350], y[:350])
              for family, imputer in IMPUTERS.items()}  # fmt: skip
    # One column empty when fitted, kept with its initial fill.
    empty = holes[:350].copy()
    empty[:, 4] = np.nan
    fitted["IterativeImputer(keep_empty_features)+Ridge"] = make_pipeline(
        IterativeImputer(keep_empty_features=True, max_iter=3, random_state=0), Ridge()
    ).fit(empty, y[:350])
    refused = {
        "iter_knn": IterativeImputer(KNeighborsRegressor(), max_iter=2, random_state=0),
        "iter_forest": IterativeImputer(
            RandomForestRegressor(n_estimators=3, random_state=0), max_iter=2, random_state=0
        ),
        "iter_posterior": IterativeImputer(sample_posterior=True, max_iter=2, random_state=0),
    }
    for name, imputer in refused.items():
        fitted[name] = make_pipeline(imputer, Ridge()).fit(holes[:350], y[:350])
    entries, store = _converted(tmp_path_factory.mktemp("iterative"),
                                {_file(f): m for f, m in fitted.items()})  # fmt: skip
    return fitted, (entries, store), holes[350:]


@pytest.mark.parametrize("family", [*IMPUTERS, "IterativeImputer(keep_empty_features)+Ridge"])
def test_iterative_imputer_pipelines_answer_as_scikit_learn_on_rows_with_gaps(
    family: str, imputed: Any
) -> None:
    fitted, (entries, store), held = imputed
    entry = entries[_file(family)]
    record(family, entry)
    _assert_ok(entry)
    model, served = fitted[family], store[_file(family)]
    assert np.isnan(held).any(axis=1).mean() > 0.5  # most rows have a gap to fill
    expected = model.predict(held)
    got = served.predict(held).ravel()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_iterative_imputer_transform_itself_matches(imputed: Any) -> None:
    """The imputed matrix, not only the regression after it: one ONNX graph of the imputer."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    from alphapulse_onnx.converters import register_all

    register_all()
    fitted, _, held = imputed
    for family in ("IterativeImputer(Ridge, median, indicator)+Ridge",
                   "IterativeImputer(LinearRegression, bounds, random order)+Ridge"):  # fmt: skip
        imputer = fitted[family].steps[0][1]
        onx = to_onnx(imputer, held[:1].astype(np.float64), target_opset=17)
        session = ort.InferenceSession(onx.SerializeToString(),
                                       providers=["CPUExecutionProvider"])  # fmt: skip
        got = session.run(None, {session.get_inputs()[0].name: held})[0]
        expected = imputer.transform(held)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "phrases"),
    [
        ("iter_knn", ("KNeighborsRegressor", "linear estimators only", "hint")),
        ("iter_forest", ("RandomForestRegressor", "linear estimators only", "hint")),
        ("iter_posterior", ("sample_posterior=True", "random draws", "hint")),
    ],
)
def test_iterative_imputers_apo_cannot_build_are_refused_in_one_line(
    name: str, phrases: tuple[str, ...], imputed: Any
) -> None:
    _, (entries, _), _ = imputed
    _assert_refused(entries[name], *phrases)


# --- CalibratedClassifierCV --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trades() -> tuple[pd.DataFrame, np.ndarray]:
    """Columns whose names hold spaces, brackets and dots, one of them text."""
    rng = np.random.default_rng(3)
    n = 360
    frame = pd.DataFrame({
        "ret [1h]": rng.normal(size=n), "vol (24h)": rng.normal(size=n) * 3,
        "sector name": rng.choice(["energy", "tech", "retail"], n), "x.y": rng.normal(size=n),
    })  # fmt: skip
    y = (frame["ret [1h]"] + (frame["sector name"] == "tech") - 0.1 * frame["vol (24h)"]) > 0.4
    return frame, np.asarray(y, dtype=np.int64)


def _columns() -> ColumnTransformer:
    return ColumnTransformer([
        ("num", StandardScaler(), ["ret [1h]", "vol (24h)", "x.y"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["sector name"]),
    ])  # fmt: skip


def test_calibrated_classifiers_on_dataframes_answer_as_scikit_learn(
    tmp_path: Path, trades: Any
) -> None:
    frame, y = trades
    numbers = frame[["ret [1h]", "vol (24h)", "x.y"]]
    models = {
        "CalibratedClassifierCV(ColumnTransformer+LogisticRegression)": CalibratedClassifierCV(
            make_pipeline(_columns(), LogisticRegression()), cv=3
        ).fit(frame, y),
        "CalibratedClassifierCV(ColumnTransformer+LogisticRegression, ensemble=False)": (
            CalibratedClassifierCV(
                make_pipeline(_columns(), LogisticRegression(C=0.3)), cv=3, ensemble=False
            ).fit(frame, y)
        ),
        "ColumnTransformer+CalibratedClassifierCV(LogisticRegression)": make_pipeline(
            _columns(), CalibratedClassifierCV(LogisticRegression(), cv=3)
        ).fit(frame, y),
        "CalibratedClassifierCV(StandardScaler+LogisticRegression)": CalibratedClassifierCV(
            make_pipeline(StandardScaler(), LogisticRegression()), cv=3
        ).fit(numbers, y),
        "CalibratedClassifierCV(RandomForestClassifier, sigmoid)": CalibratedClassifierCV(
            RandomForestClassifier(n_estimators=10, random_state=0), cv=3
        ).fit(numbers, y),
    }
    entries, store = _converted(tmp_path, {_file(f): m for f, m in models.items()})
    rows = frame.iloc[:120].copy()
    rows.loc[rows.index[:5], "sector name"] = "utilities"  # unseen by the encoder
    for family, model in models.items():
        entry = entries[_file(family)]
        record(family, entry)
        _assert_ok(entry)
        assert entry.validation is not None and entry.validation.label_agreement == 1.0
        given = rows if "ColumnTransformer" in family else rows[numbers.columns]
        served = store[_file(family)]
        np.testing.assert_array_equal(served.predict(given), model.predict(given))
        np.testing.assert_allclose(served.predict_proba(given), model.predict_proba(given),
                                   atol=1e-5)  # fmt: skip


def test_calibrated_pipeline_skl2onnx_cannot_build_is_refused_in_one_line(
    tmp_path: Path, trades: Any
) -> None:
    frame, y = trades
    model = CalibratedClassifierCV(make_pipeline(_columns(), LinearSVC()), cv=3).fit(frame, y)
    isotonic = CalibratedClassifierCV(make_pipeline(_columns(), LogisticRegression()), cv=3,
                                      method="isotonic").fit(frame, y)  # fmt: skip
    entries, _ = _converted(tmp_path, {"calibrated_svc": model, "isotonic": isotonic})
    _assert_refused(entries["calibrated_svc"], "LinearSVC", "calibrate inside the pipeline")
    # skl2onnx's isotonic calibration does not answer as scikit-learn's (0.03-0.07 apart, on a
    # plain LogisticRegression too): no artifact is written, the parity failure says why.
    _assert_refused(entries["isotonic"], "parity failed", "probabilities differ")


# --- LightGBM on pandas category columns ---------------------------------------------------


def _market(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "ret_1h": rng.normal(size=n),
        "venue": pd.Categorical(rng.choice(["nyse", "lse", "tse", "hkex"], n)),
        "tier": pd.Categorical(rng.choice([3, 7, 11], n)),
        "spread": rng.gamma(2.0, 0.01, n),
    })  # fmt: skip


def _as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a CSV reader hands it over: categories as plain text and integers."""
    return frame.astype({"venue": object, "tier": "int64"})


def _as_fitted(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Plain columns made the model's categories again (anything else NaN), as LightGBM needs."""
    out = frame.copy()
    for name, values in zip(("venue", "tier"), model.booster_.pandas_categorical, strict=True):
        codes = pd.Index(values).get_indexer(out[name].astype(object))
        out[name] = pd.Categorical.from_codes(codes, categories=values)
    return out


@pytest.fixture(scope="module")
def boosted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any, Path]:
    lightgbm = pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    frame = _market(700, 0)
    noise = np.random.default_rng(1).normal(size=len(frame)) * 0.3
    score = frame["ret_1h"] + (frame["venue"] == "lse") * 1.5 - (frame["tier"] == 7) + noise
    labels = np.where(frame["venue"] == "hkex", 2, (score > 0.5).astype(int))
    params = {"n_estimators": 25, "min_child_samples": 5, "verbose": -1, "random_state": 0}
    floats = frame.assign(tier=pd.Categorical(frame["tier"].astype(float) + 0.5))
    fitted = {
        "LGBMClassifier (pandas categories)": lightgbm.LGBMClassifier(**params).fit(frame, labels),
        "LGBMRegressor (pandas categories)": lightgbm.LGBMRegressor(**params).fit(frame, score),
        "lgbm_float_categories": lightgbm.LGBMRegressor(**params).fit(floats, score),
    }
    tmp = tmp_path_factory.mktemp("lgbm")
    entries, store = _converted(tmp, {_file(f): m for f, m in fitted.items()})
    return fitted, (entries, store), tmp / "registry" / "onnx"


@pytest.fixture(scope="module")
def market_rows() -> pd.DataFrame:
    """Fresh rows as read from a file, with unseen venues and tiers and missing venues."""
    rows = _as_read(_market(240, 9))
    rows.loc[:14, "venue"] = "asx"  # unseen
    rows.loc[15:29, "venue"] = np.nan  # missing
    rows.loc[30:39, "tier"] = 5  # unseen integer category
    return rows


@pytest.mark.parametrize(
    "family", ["LGBMClassifier (pandas categories)", "LGBMRegressor (pandas categories)"]
)
def test_lightgbm_on_pandas_categories_answers_as_lightgbm(
    family: str, boosted: Any, market_rows: pd.DataFrame
) -> None:
    fitted, (entries, store), _ = boosted
    entry = entries[_file(family)]
    record(family, entry)
    _assert_ok(entry)
    # The category columns as text and integers, the others as numbers.
    assert [(spec.name, spec.dtype) for spec in entry.inputs] == [
        ("ret_1h", "float32"), ("venue", "string"), ("tier", "int64"), ("spread", "float32"),
    ]  # fmt: skip
    model, served = fitted[family], store[_file(family)]
    truth = _as_fitted(model, market_rows)
    if "Classifier" in family:
        np.testing.assert_array_equal(served.predict(market_rows), model.predict(truth))
        np.testing.assert_allclose(served.predict_proba(market_rows), model.predict_proba(truth),
                                   atol=1e-5)  # fmt: skip
    else:
        np.testing.assert_allclose(served.predict(market_rows).ravel(), model.predict(truth),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip


def test_apo_predict_on_a_csv_gives_lightgbm_answers(
    boosted: Any, market_rows: pd.DataFrame, tmp_path: Path
) -> None:
    fitted, _, store_dir = boosted
    family = "LGBMClassifier (pandas categories)"
    model = fitted[family]
    csv = tmp_path / "rows.csv"
    market_rows.to_csv(csv, index=False)
    result = CliRunner().invoke(
        app, ["predict", _file(family), str(csv), "--store", str(store_dir)]
    )
    assert result.exit_code == 0, result.output
    answers = pd.read_csv(io.StringIO(result.output))
    truth = _as_fitted(model, market_rows)
    np.testing.assert_array_equal(answers["label"].to_numpy(), model.predict(truth))
    proba = answers[[f"proba_{c}" for c in model.classes_]].to_numpy()
    np.testing.assert_allclose(proba, model.predict_proba(truth), atol=1e-5)


def test_lightgbm_on_float_categories_is_refused_with_the_retrain_hint(boosted: Any) -> None:
    _, (entries, _), _ = boosted
    _assert_refused(entries["lgbm_float_categories"], "float", "category", "cat.codes")
