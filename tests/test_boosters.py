"""LightGBM and XGBoost (the ``boost`` extra): alone, last in a pipeline, after encoders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from alphapulse_onnx import conversion
from alphapulse_onnx.errors import UnsupportedModelError
from alphapulse_onnx.signature import infer
from tests.coverage_table import convert_models, record

pytest.importorskip("onnxmltools")
lightgbm = pytest.importorskip("lightgbm")
xgboost = pytest.importorskip("xgboost")


def _data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    loader = {"binary": load_breast_cancer, "multiclass": load_iris, "regression": load_diabetes}
    X, y = loader[kind](return_X_y=True)
    return X, y


def _models() -> list[Any]:
    lgbm = {"n_estimators": 15, "num_leaves": 15, "verbose": -1, "random_state": 0}
    xgb = {"n_estimators": 15, "max_depth": 3, "random_state": 0}
    return [
        pytest.param("LGBMClassifier", lightgbm.LGBMClassifier(**lgbm), "binary", id="lgbm-binary"),
        pytest.param(
            "LGBMClassifier", lightgbm.LGBMClassifier(**lgbm), "multiclass", id="lgbm-multiclass"
        ),
        pytest.param("LGBMRegressor", lightgbm.LGBMRegressor(**lgbm), "regression", id="lgbm-reg"),
        pytest.param("XGBClassifier", xgboost.XGBClassifier(**xgb), "binary", id="xgb-binary"),
        pytest.param(
            "XGBClassifier", xgboost.XGBClassifier(**xgb), "multiclass", id="xgb-multiclass"
        ),
        pytest.param("XGBRegressor", xgboost.XGBRegressor(**xgb), "regression", id="xgb-reg"),
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("family", "model", "kind"), _models())
def test_booster_alone_and_in_a_pipeline(
    family: str, model: Any, kind: str, tmp_path: Path
) -> None:
    X, y = _data(kind)
    from sklearn.base import clone

    alone = model.fit(X, y)
    piped = make_pipeline(StandardScaler(), clone(model)).fit(X, y)
    entries = convert_models(tmp_path, {"alone": alone, "piped": piped})
    for entry in entries.values():
        assert entry.ok, entry.error
        assert entry.validation.probe == "thresholds"  # split points come from the booster's dump
        if kind != "regression":
            assert entry.validation.label_agreement == 1.0
    record(f"{family} ({kind})", entries["alone"])
    record(f"StandardScaler+{family} ({kind})", entries["piped"])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_booster_after_text_encoders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "sector": rng.choice(["tech", "energy", "retail"], 300).astype(object),
            "size": rng.lognormal(3, 1, 300),
            "growth": rng.normal(size=300),
        }
    )
    frame.loc[::8, "sector"] = np.nan
    target = ((frame["sector"] == "tech") | (frame["growth"] > 1)).to_numpy().astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "text",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    ["sector"],
                )
            ],
            remainder="passthrough",
        ),
        lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, random_state=0),
    ).fit(frame, target)
    entry = convert_models(tmp_path, {"sectors": model})["sectors"]
    assert entry.ok, entry.error
    assert {s.name: s.dtype for s in entry.inputs}["sector"] == "string"
    record("ColumnTransformer+OneHotEncoder+LGBMClassifier", entry)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_missing_extra_is_one_line_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data("binary")
    model = lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y)
    monkeypatch.setitem(sys.modules, "onnxmltools", None)  # as if the extra were not installed
    with pytest.raises(UnsupportedModelError) as info:
        conversion.convert(model, infer(model))
    message = str(info.value)
    assert "pip install 'alphapulse-onnx[boost]'" in message
    assert "LGBMClassifier" in message
    assert "\n" not in message
