"""apo's own converters (text imputation, FunctionTransformer ufuncs) against scikit-learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from alphapulse_onnx import conversion, parity
from alphapulse_onnx.converters.function_transformer import UFUNCS
from alphapulse_onnx.errors import UnsupportedModelError
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.loading import SAFE_UFUNCS
from alphapulse_onnx.signature import infer
from tests.coverage_table import convert_models, record


def _run(artifact: conversion.Artifact, feeds: dict[str, np.ndarray]) -> list[Any]:
    session = ort.InferenceSession(artifact.onnx_bytes, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


@pytest.fixture(scope="module")
def fruit() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "fruit": rng.choice(["apple", "pear", "fig"], 240, p=[0.5, 0.3, 0.2]).astype(object),
            "shop": rng.choice(["north", "south"], 240).astype(object),
        }
    )
    frame.loc[::6, "fruit"] = np.nan
    frame.loc[::9, "shop"] = None
    target = (frame["fruit"].isna() | (frame["shop"] == "north")).to_numpy().astype(int)
    return frame, target


@pytest.mark.parametrize(
    "imputer",
    [
        pytest.param(SimpleImputer(strategy="most_frequent"), id="most_frequent"),
        pytest.param(SimpleImputer(strategy="constant", fill_value="none"), id="constant"),
        pytest.param(SimpleImputer(strategy="constant"), id="constant-default"),
    ],
)
def test_string_imputer_matches_scikit_learn(imputer: Any, fruit: Any) -> None:
    frame, target = fruit
    model = make_pipeline(imputer, OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
    model.fit(frame, target)
    signature = infer(model)
    assert [spec.dtype for spec in signature.inputs] == ["string", "string"]
    artifact = conversion.convert(model, signature)
    rows = {
        "fruit": np.array(["apple", np.nan, "fig", "kiwi", None], dtype=object),
        "shop": np.array([None, "south", "north", "north", np.nan], dtype=object),
    }
    label, proba = _run(artifact, probe_feeds(artifact.inputs, rows))
    frame_rows = parity.sklearn_input(rows, signature)
    np.testing.assert_allclose(proba, model.predict_proba(frame_rows), atol=1e-5)
    assert label.tolist() == model.predict(frame_rows).tolist()


def test_string_imputer_with_a_string_marker_still_uses_skl2onnx(fruit: Any) -> None:
    frame, target = fruit
    marked = frame.fillna("?")
    model = make_pipeline(
        SimpleImputer(missing_values="?", strategy="most_frequent"),
        OneHotEncoder(),
        LogisticRegression(),
    ).fit(marked, target)
    signature = infer(model)
    artifact = conversion.convert(model, signature)
    feeds = {
        "fruit": np.array([["?"], ["pear"]], dtype=object),
        "shop": np.array([["south"], ["?"]], dtype=object),
    }
    _, proba = _run(artifact, feeds)
    expected = model.predict_proba(pd.DataFrame({"fruit": ["?", "pear"], "shop": ["south", "?"]}))
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_string_imputer_pipeline_through_apo_convert(tmp_path: Path, fruit: Any) -> None:
    frame, target = fruit
    model = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore"),
        LogisticRegression(),
    )
    entry = convert_models(tmp_path, {"fruit": model.fit(frame, target)})["fruit"]
    assert entry.ok, entry.error
    record("SimpleImputer(most_frequent, text)+OneHotEncoder+LogisticRegression", entry)
    assert entry.validation.label_agreement == 1.0


# Inputs inside each function's domain.
_DOMAIN = {
    "log1p": (0.0, 50.0),
    "log": (0.01, 50.0),
    "log2": (0.01, 50.0),
    "log10": (0.01, 50.0),
    "sqrt": (0.0, 50.0),
    "reciprocal": (0.5, 5.0),
    "exp": (-3.0, 3.0),
    "expm1": (-3.0, 3.0),
    "exp2": (-3.0, 3.0),
    "sinh": (-3.0, 3.0),
    "cosh": (-3.0, 3.0),
}


def test_ufunc_table_covers_exactly_the_safe_ufuncs() -> None:
    assert set(UFUNCS) == SAFE_UFUNCS


@pytest.mark.parametrize("name", sorted(name for name, ufunc in UFUNCS.items() if ufunc.inverse))
def test_ufunc_inverse_maps_outputs_back_to_inputs_that_give_them(name: str) -> None:
    low, high = _DOMAIN.get(name, (-20.0, 20.0))
    ufunc, inverse = getattr(np, name), UFUNCS[name].inverse
    assert inverse is not None
    outputs = ufunc(np.random.default_rng(7).uniform(low, high, 200))
    np.testing.assert_allclose(ufunc(inverse(outputs)), outputs, rtol=1e-9, atol=1e-12)


def test_ufunc_domains_are_where_numpy_answers_nan() -> None:
    with np.errstate(invalid="ignore"):
        nan_below_zero = {name for name in UFUNCS if np.isnan(getattr(np, name)(-2.0))}
    assert nan_below_zero == {name for name, ufunc in UFUNCS.items() if ufunc.nonnegative}
    # Column probes stay inside a restricted domain only by mapping draws back through the inverse.
    assert all(UFUNCS[name].inverse is not None for name in nan_below_zero)


@pytest.mark.parametrize("name", sorted(UFUNCS))
def test_function_transformer_ufunc_matches_numpy(name: str) -> None:
    low, high = _DOMAIN.get(name, (-20.0, 20.0))
    rng = np.random.default_rng(4)
    X = rng.uniform(low, high, (300, 3))
    if name in ("rint", "trunc", "floor", "ceil", "sign"):
        X[:20] = np.array([0.5, -2.5, 1.5])  # exact halves and integers: rounding direction matters
    y = X @ np.array([1.0, -2.0, 0.5])
    model = make_pipeline(FunctionTransformer(getattr(np, name)), LinearRegression()).fit(X, y)
    signature = infer(model, dtype="float64")
    artifact = conversion.convert(model, signature, precision="float64")
    (got,) = _run(artifact, {"X": X})
    # onnxruntime has no double Atan: apo computes it in float32 inside double graphs.
    tolerance = 1e-6 if name == "arctan" else 1e-9
    np.testing.assert_allclose(got.ravel(), model.predict(X), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["log1p", "sqrt", "abs"])
def test_function_transformer_through_apo_convert(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(5)
    X = rng.lognormal(1.0, 1.0, (300, 4))
    y = (np.log1p(X[:, 0]) > 1.0).astype(int)
    model = make_pipeline(
        FunctionTransformer(getattr(np, name)), StandardScaler(), LogisticRegression()
    ).fit(X, y)
    entry = convert_models(tmp_path, {f"ft_{name}": model})[f"ft_{name}"]
    assert entry.ok, entry.error
    record(f"FunctionTransformer(np.{name})+StandardScaler+LogisticRegression", entry)


def _double(values: np.ndarray) -> np.ndarray:
    return values * 2


@pytest.mark.parametrize(
    ("func", "named"),
    [
        pytest.param(_double, "_double", id="user-function"),
        pytest.param(np.add, "add", id="binary-ufunc"),
    ],
)
def test_function_transformer_with_other_functions_is_refused_by_name(
    func: Any, named: str
) -> None:
    X = np.abs(np.random.default_rng(6).normal(size=(50, 2)))
    model = make_pipeline(
        FunctionTransformer(func, kw_args={"x2": 1} if func is np.add else None), LinearRegression()
    )
    model.steps[0] = ("functiontransformer", FunctionTransformer(func, validate=False))
    model.fit(X, X[:, 0]) if func is _double else model.steps[1][1].fit(X, X[:, 0])
    if func is not _double:
        model.steps[0][1].fit(X)
    with pytest.raises(UnsupportedModelError) as info:
        conversion.convert(model, infer(model))
    message = str(info.value)
    assert named in message
    assert "\n" not in message
