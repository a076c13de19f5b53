"""category_encoders and imbalanced-learn models through the commands: loaded by apo's loader
(their pandas mappings included), converted with parity, validated and served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import category_encoders as ce
import joblib
import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline as ImbalancedPipeline
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx import loading
from alphapulse_onnx.cli import app
from alphapulse_onnx.store import Store


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    n = 400
    data = pd.DataFrame({
        "town": rng.choice(np.array(["north", "south", "east", None], dtype=object), n),
        "size": rng.normal(size=n),
        "rooms": rng.integers(1, 5, n),
        "kind": rng.choice(["flat", "house"], n),
    })  # fmt: skip
    target = ((data["size"] > 0) ^ (data["town"] == "north")).astype(int)
    return data, target


Registry = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, frame: tuple[pd.DataFrame, pd.Series]
) -> Registry:
    X, y = frame
    folder = tmp_path_factory.mktemp("encoders") / "models"
    folder.mkdir()
    cols = ["town", "kind"]
    models = {
        "ordinal_lr": make_pipeline(ce.OrdinalEncoder(cols=cols), LogisticRegression(max_iter=500)),
        "onehot_scaled_lr": make_pipeline(ce.OneHotEncoder(cols=cols, handle_unknown="value"),
                                          StandardScaler(), LogisticRegression(max_iter=500)),
        "target_forest": make_pipeline(ce.TargetEncoder(cols=cols),
                                       RandomForestClassifier(n_estimators=20, random_state=0)),
        "binary_smote_forest": ImbalancedPipeline([
            ("encode", ce.BinaryEncoder(cols=cols)), ("balance", SMOTE(random_state=0)),
            ("forest", RandomForestClassifier(n_estimators=20, random_state=0))]),
        "columns_ordinal": make_pipeline(
            ColumnTransformer([("codes", ce.OrdinalEncoder(), cols),
                               ("numbers", StandardScaler(), ["size", "rooms"])]),
            LogisticRegression(max_iter=500)),
    }  # fmt: skip
    for name, model in models.items():
        joblib.dump(model.fit(X, y), folder / f"{name}.joblib")
    return folder, models


def test_the_loader_rebuilds_them_without_trust(
    registry: Registry, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    folder, models = registry
    X, _ = frame
    for name, model in models.items():
        loaded = loading.load(folder / f"{name}.joblib")
        np.testing.assert_array_equal(loaded.estimator.predict_proba(X), model.predict_proba(X))


def test_they_convert_validate_and_serve(
    registry: Registry, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    folder, models = registry
    X, _ = frame
    done = CliRunner().invoke(app, ["convert", str(folder), "-j", "1", "--json"])
    entries = {e["name"]: e for e in json.loads(done.stdout)["entries"]}
    assert done.exit_code == 0, {n: e["error"] for n, e in entries.items()}
    for entry in entries.values():
        assert entry["validation"]["label_agreement"] == 1.0
    assert CliRunner().invoke(app, ["validate", str(folder)]).exit_code == 0
    store = Store.open(folder / "onnx")
    rows = X.head(50)
    for name, model in models.items():
        np.testing.assert_allclose(
            store.predict_proba(name, rows), model.predict_proba(rows), atol=1e-5
        )
