"""Column names keep the user's names, whatever characters they hold.

ONNX input names are made safe by skl2onnx; the manifest records which column each input reads,
and everything apo does (probes, parity, ``Store``, ``apo predict``) speaks the user's names.
"""

from __future__ import annotations

import io
import json
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

import joblib
import jsonschema
import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx import checking, column_probes, conversion, parity
from alphapulse_onnx.cli import app
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.errors import InvalidInputError
from alphapulse_onnx.signature import infer
from alphapulse_onnx.store import Store

runner = CliRunner()
NUMBERS = [
    "price ($)",
    "vol[5m]",
    "a.b",
    "1st",
    "x y",
    "x_y",
]  # "x y" and "x_y" clash when made safe
TEXT = "naïve"
COLUMNS = [*NUMBERS[:4], TEXT, *NUMBERS[4:]]


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(i, 1 + i, rows) for i, name in enumerate(NUMBERS)})
    frame[TEXT] = rng.choice(["bid", "ask", "mid"], rows).astype(object)
    return frame[COLUMNS]


@pytest.fixture(scope="module")
def training() -> tuple[pd.DataFrame, np.ndarray]:
    frame = _frame(400, 0)
    # Both clashing columns matter, so feeding one into the other's input cannot go unnoticed.
    target = (frame["x y"] - frame["x_y"] + (frame[TEXT] == "bid") > 0).to_numpy()
    return frame, target


@pytest.fixture(scope="module")
def model(training: tuple[pd.DataFrame, np.ndarray]) -> Any:
    frame, target = training
    return make_pipeline(
        ColumnTransformer(
            [
                ("numbers", StandardScaler(), NUMBERS),
                ("text", OneHotEncoder(handle_unknown="ignore"), [TEXT]),
            ]
        ),
        RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
    ).fit(frame, target)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, model: Any) -> Path:
    registry = tmp_path_factory.mktemp("names") / "registry"
    registry.mkdir()
    joblib.dump(model, registry / "odd_names.joblib")
    options = ConvertOptions(registry=registry, probe_rows=512)
    list(convert_run(options))
    return options.out_dir


@pytest.fixture(scope="module")
def fresh() -> pd.DataFrame:
    return _frame(150, 1)


def test_each_input_records_the_column_it_reads(store_dir: Path) -> None:
    entry = Store.open(store_dir).manifest.entry("odd_names")
    assert entry.ok, entry.error
    assert entry.validation is not None and entry.validation.label_agreement == 1.0
    assert [spec.column for spec in entry.inputs] == COLUMNS
    assert entry.feature_names == tuple(COLUMNS)
    onnx_names = [spec.name for spec in entry.inputs]
    assert len(set(onnx_names)) == len(COLUMNS)  # "x y" and "x_y" got two inputs
    assert {"price ($)", "vol[5m]", "a.b", "x y"}.isdisjoint(onnx_names)  # made safe for ONNX
    assert entry.artifact is not None
    graph = onnx.load(str(store_dir / entry.artifact.path)).graph
    assert [graph_input.name for graph_input in graph.input] == onnx_names
    raw = json.loads((store_dir / "manifest.json").read_text(encoding="utf-8"))
    assert [spec["column"] for spec in raw["models"][0]["inputs"]] == COLUMNS
    schema = files("alphapulse_onnx").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    jsonschema.validate(raw, json.loads(schema))


def test_store_takes_the_users_names_in_any_order(
    store_dir: Path, model: Any, fresh: pd.DataFrame
) -> None:
    served = Store.open(store_dir)["odd_names"]
    assert served.engine == "onnxruntime"
    assert served.feature_names == tuple(COLUMNS)
    shuffled = fresh[list(reversed(COLUMNS))]
    np.testing.assert_array_equal(served.predict(shuffled), model.predict(fresh))
    np.testing.assert_allclose(served.predict_proba(shuffled), model.predict_proba(fresh),
                               atol=1e-5)  # fmt: skip
    records = fresh.head(5).to_dict(orient="records")
    np.testing.assert_array_equal(served.predict(records), model.predict(fresh.head(5)))


def test_a_missing_column_is_named_as_the_user_named_it(
    store_dir: Path, fresh: pd.DataFrame
) -> None:
    served = Store.open(store_dir)["odd_names"]
    with pytest.raises(InvalidInputError, match=r"missing columns: price \(\$\)"):
        served.predict(fresh.drop(columns=["price ($)"]))
    bad = fresh.astype({"vol[5m]": object})
    bad.loc[3, "vol[5m]"] = "n/a"
    with pytest.raises(InvalidInputError, match=r"row 3, column 'vol\[5m\]'"):
        served.predict(bad)


def test_apo_predict_reads_a_csv_with_those_headers(
    store_dir: Path, model: Any, fresh: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    fresh.to_csv(source, index=False)
    assert source.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    result = runner.invoke(app, ["predict", "odd_names", str(source), "--store", str(store_dir)])
    assert result.exit_code == 0, result.stderr
    out = pd.read_csv(io.StringIO(result.stdout))
    assert list(out.columns) == ["label", "proba_False", "proba_True"]
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(fresh))
    np.testing.assert_allclose(out[["proba_False", "proba_True"]].to_numpy(),
                               model.predict_proba(fresh), atol=1e-5)  # fmt: skip


def test_apo_validate_proves_it_again(store_dir: Path) -> None:
    result = runner.invoke(app, ["validate", str(store_dir), "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["passed"] is True


def test_the_sklearn_fallback_takes_the_same_names(
    store_dir: Path, model: Any, fresh: pd.DataFrame, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(store_dir.parent, copy)
    (copy / "onnx" / "odd_names.onnx").unlink()
    served = Store.open(copy / "onnx")["odd_names"]
    assert served.engine == "sklearn"
    np.testing.assert_array_equal(served.predict(fresh[list(reversed(COLUMNS))]),
                                  model.predict(fresh))  # fmt: skip


def test_probes_and_parity_use_the_users_names(model: Any) -> None:
    signature = infer(model)
    probe = column_probes.generate_columns(model, signature, rows=64)
    assert probe.columns is not None and list(probe.columns) == COLUMNS
    artifact = conversion.convert(model, signature)
    report, _ = checking.check_artifact(model, signature, artifact, probe,
                                        providers=("CPUExecutionProvider",),
                                        tolerance=parity.Tolerance())  # fmt: skip
    assert report.passed and report.label_agreement == 1.0


def test_an_empty_name_and_dropped_columns_work_too() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"": rng.normal(size=80), "%": rng.normal(size=80),
                          "unused col": rng.normal(size=80)})  # fmt: skip
    target = frame[""] * 2 - frame["%"]
    model = make_pipeline(
        ColumnTransformer([("both", StandardScaler(), ["", "%"])], remainder="drop"), Ridge()
    ).fit(frame, target)
    signature = infer(model)
    artifact = conversion.convert(model, signature)
    assert [spec.column for spec in artifact.inputs] == ["", "%"]  # the dropped one is no input
    assert all(spec.name for spec in artifact.inputs)
    probe = column_probes.generate_columns(model, signature, rows=64)
    report, _ = checking.check_artifact(model, signature, artifact, probe,
                                        providers=("CPUExecutionProvider",),
                                        tolerance=parity.Tolerance())  # fmt: skip
    assert report.passed, report.reason
