"""DataFrame-fit pipelines: one named, typed input per column, column-wise probes, real parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from alphapulse_onnx import column_probes, conversion, parity
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.signature import infer
from tests.coverage_table import convert_models, record


@pytest.fixture(scope="module")
def customers() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A churn-like table: text with gaps, integer categories, skewed money, numbers with gaps."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n).astype(object),
            "plan": rng.choice(["free", "pro", "team"], n).astype(object),
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(10, 1, n),
            "kids": rng.integers(0, 4, n),
            "noise": rng.normal(size=n),
        }
    )
    frame.loc[::7, "city"] = np.nan
    frame.loc[::5, "age"] = np.nan
    churn = ((frame["age"].fillna(40) > 42) ^ (frame["city"] == "rome")).to_numpy().astype(int)
    spend = np.log(frame["income"].to_numpy()) + frame["kids"].to_numpy() + (frame["plan"] == "pro")
    return frame, churn, spend.to_numpy(dtype=float)


def _text_imputed() -> Any:
    return make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )


def _numbers_imputed() -> Any:
    return make_pipeline(SimpleImputer(), StandardScaler())


def _dtypes(entry: Any) -> dict[str, str]:
    return {spec.name: spec.dtype for spec in entry.inputs}


def test_classifier_with_text_imputer_and_passthrough(tmp_path: Path, customers: Any) -> None:
    frame, churn, _ = customers
    model = make_pipeline(
        ColumnTransformer(
            [("text", _text_imputed(), ["city", "plan"]), ("num", _numbers_imputed(), ["age"])],
            remainder="passthrough",
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, churn)
    entry = convert_models(tmp_path, {"churn": model})["churn"]
    assert entry.ok, entry.error
    record("ColumnTransformer+SimpleImputer(text)+OneHotEncoder+LogisticRegression", entry)
    assert _dtypes(entry) == {
        "city": "string",
        "plan": "string",
        "age": "float32",
        "income": "float32",
        "kids": "float32",
        "noise": "float32",
    }
    assert all(spec.shape == (None, 1) for spec in entry.inputs)
    assert entry.validation.label_agreement == 1.0
    assert entry.validation.max_abs_diff < 1e-5


def test_regressor_with_constant_imputer_ordinal_log_and_drop(
    tmp_path: Path, customers: Any
) -> None:
    frame, _, spend = customers
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "text",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="unknown"),
                        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    ),
                    ["city", "plan"],
                ),
                (
                    "money",
                    make_pipeline(FunctionTransformer(np.log1p), StandardScaler()),
                    ["income"],
                ),
                ("kids", OneHotEncoder(handle_unknown="ignore"), ["kids"]),
            ],
            remainder="drop",
        ),
        Ridge(),
    ).fit(frame, spend)
    entry = convert_models(tmp_path, {"spend": model})["spend"]
    assert entry.ok, entry.error
    record("ColumnTransformer+OrdinalEncoder+FunctionTransformer(log1p)+Ridge", entry)
    # Dropped columns are not inputs (their type is unknowable); integer categories stay int64.
    assert _dtypes(entry) == {
        "city": "string",
        "plan": "string",
        "income": "float32",
        "kids": "int64",
    }
    assert entry.feature_names == tuple(frame.columns)
    assert entry.validation.max_rel_diff < 1e-4


def test_forest_on_mixed_columns_probes_thresholds(tmp_path: Path, customers: Any) -> None:
    frame, churn, _ = customers
    model = make_pipeline(
        ColumnTransformer(
            [("text", _text_imputed(), ["city"]), ("scaled", MinMaxScaler(), ["income"])],
            remainder="passthrough",
        ),
        RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0),
    ).fit(frame.fillna({"age": 40.0}).drop(columns=["plan"]), churn)
    entry = convert_models(tmp_path, {"forest": model})["forest"]
    assert entry.ok, entry.error
    record("ColumnTransformer+OneHotEncoder+RandomForestClassifier", entry)
    assert entry.validation.probe == "thresholds"
    assert entry.validation.label_agreement == 1.0


def test_hist_gradient_boosting_after_encoders(tmp_path: Path, customers: Any) -> None:
    frame, churn, _ = customers
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "text",
                    make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()),
                    ["city", "plan"],
                )
            ],
            remainder="passthrough",
        ),
        HistGradientBoostingClassifier(max_iter=15, random_state=0),
    ).fit(frame, churn)
    entry = convert_models(tmp_path, {"hgb": model})["hgb"]
    assert entry.ok, entry.error
    record("ColumnTransformer+OrdinalEncoder+HistGradientBoostingClassifier", entry)
    assert _dtypes(entry)["city"] == "string"
    assert entry.validation.probe == "thresholds"  # passthrough columns reach the trees as-is


def test_probe_draws_categories_gaps_and_unseen(customers: Any) -> None:
    frame, churn, _ = customers
    model = make_pipeline(
        ColumnTransformer(
            [("text", _text_imputed(), ["city"]), ("num", _numbers_imputed(), ["age"])]
        ),
        LogisticRegression(),
    ).fit(frame[["city", "age"]], churn)
    signature = infer(model)
    probe = column_probes.generate_columns(model, signature, rows=2000)
    assert probe.columns is not None
    city = probe.columns["city"]
    seen = {v for v in city if isinstance(v, str)}
    assert {"paris", "rome", "oslo", "lima"} <= seen
    # handle_unknown="ignore": unseen categories are probed
    assert column_probes.UNSEEN_TEXT in seen
    assert any(isinstance(v, float) and np.isnan(v) for v in city)  # the imputer fills gaps
    age = probe.columns["age"]
    assert np.isnan(age).any()
    _, scaler = model[0].named_transformers_["num"]
    finite = age[np.isfinite(age)]
    # Numbers come from the scaler's own statistics, not a unit normal.
    assert abs(np.median(finite) - scaler.mean_[0]) < scaler.scale_[0]
    assert finite.std() > scaler.scale_[0] / 2


def test_unseen_category_follows_handle_unknown(customers: Any) -> None:
    frame, churn, _ = customers
    data = frame[["city", "age"]].fillna({"age": 40.0})
    model = make_pipeline(
        ColumnTransformer([("text", _text_imputed(), ["city"])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(data, churn)
    signature = infer(model)
    artifact = conversion.convert(model, signature)
    session = ort.InferenceSession(artifact.onnx_bytes, providers=["CPUExecutionProvider"])
    rows = {
        "city": np.array(["atlantis", "rome", np.nan], dtype=object),
        "age": np.array([30.0, 50.0, 41.0]),
    }
    feeds = probe_feeds(artifact.inputs, rows)
    assert feeds["city"].tolist() == [["atlantis"], ["rome"], [""]]
    label, proba = session.run(None, feeds)
    expected = model.predict_proba(parity.sklearn_input(rows, signature))
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    assert label.tolist() == model.predict(parity.sklearn_input(rows, signature)).tolist()


def test_unknown_category_is_an_error_when_the_encoder_says_so(customers: Any) -> None:
    frame, churn, _ = customers
    model = make_pipeline(
        ColumnTransformer([("text", OneHotEncoder(), ["plan"])], remainder="drop"),
        LogisticRegression(),
    ).fit(frame[["plan", "age"]], churn)
    signature = infer(model)
    probe = column_probes.generate_columns(model, signature, rows=500)
    assert probe.columns is not None
    assert set(probe.columns["plan"]) == {"free", "pro", "team"}  # never probes an unseen one


def test_all_float_dataframe_pipeline_keeps_one_matrix_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, frame["a"] > 0)
    signature = infer(model)
    assert not signature.per_column
    entry = convert_models(tmp_path, {"floaty": model})["floaty"]
    assert entry.ok, entry.error
    assert [spec.name for spec in entry.inputs] == ["X"]


def test_text_encoder_without_column_transformer(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "blue", "green"], 150).astype(object),
            "size": rng.choice(["s", "m", "l"], 150).astype(object),
        }
    )
    target = (frame["colour"] == "red").to_numpy().astype(int)
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression()).fit(
        frame, target
    )
    entry = convert_models(tmp_path, {"colours": model})["colours"]
    assert entry.ok, entry.error
    record("OneHotEncoder(text)+LogisticRegression", entry)
    assert _dtypes(entry) == {"colour": "string", "size": "string"}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sample_table_with_mixed_columns(tmp_path: Path, customers: Any) -> None:
    frame, churn, _ = customers
    model = make_pipeline(
        ColumnTransformer([("text", _text_imputed(), ["city", "plan"])], remainder="passthrough"),
        LogisticRegression(max_iter=1000),
    ).fit(frame.fillna({"age": 40.0}), churn)
    sample = tmp_path / "rows.parquet"
    frame.fillna({"age": 40.0}).head(50).to_parquet(sample)
    entry = convert_models(tmp_path, {"churn": model}, sample=sample)["churn"]
    assert entry.ok, entry.error
    assert entry.validation.probe == "sample"
    assert entry.validation.rows == 50
    short = tmp_path / "short.csv"
    frame.drop(columns=["plan"]).head(20).to_csv(short, index=False)
    # A sample for other models of a registry: this one is probed instead, and told why.
    probed = convert_models(tmp_path / "again", {"churn": model}, sample=short)["churn"]
    assert probed.ok, probed.error
    assert probed.validation.probe != "sample"
    assert any("lacks its columns plan" in w for w in probed.warnings), probed.warnings
