"""Numbers written with the precision they carry: a float32 artifact's probabilities as the
shortest decimal of the float32 (``0.41309044``), float64 answers untouched, from real sessions."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alphapulse_onnx import numbers
from alphapulse_onnx.cli import app
from alphapulse_onnx.store import Store

from .conftest import save_model


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, small_models: dict[str, Any]) -> Path:
    root = tmp_path_factory.mktemp("numbers") / "registry"
    save_model(small_models["iris_rf"], root / "iris_rf.joblib")
    save_model(small_models["diabetes_gbr"], root / "diabetes_gbr.joblib")
    result = CliRunner().invoke(app, ["convert", str(root)])
    assert result.exit_code == 0, result.stderr
    return root / "onnx"


def test_float32_answers_print_with_float32_digits(store: Path, iris: Any) -> None:
    model = Store.open(store)["iris_rf"]
    assert model.engine == "onnxruntime"
    precision = numbers.served_precision(model.engine, model.entry.outputs)
    assert precision == "float32"
    proba = model.predict_proba(iris[0][::7])  # float32 answers, widened to float64
    assert proba.dtype == np.float64
    shown = numbers.carried(proba, precision)
    for widened, short in zip(proba.ravel().tolist(), shown.ravel().tolist(), strict=True):
        assert repr(short) == str(np.float32(widened))  # 0.41309044, not 0.41309043765068054
        assert np.float32(short) == np.float32(widened)  # the same float32: nothing lost
    # as the writers write them: pandas' CSV and JSON lines
    columns = numbers.carried_columns({"label": model.predict(iris[0][:3]),
                                       "proba_0": proba[:3, 0]}, precision)  # fmt: skip
    csv_text = io.StringIO()
    pd.DataFrame(columns).to_csv(csv_text, index=False)
    for line in csv_text.getvalue().splitlines()[1:]:
        assert all(len(cell) <= 12 for cell in line.split(","))
    record = json.dumps({k: v.tolist()[0] for k, v in columns.items()})
    assert json.loads(record)["proba_0"] == float(str(np.float32(proba[0, 0])))


def test_regression_floats_of_a_float32_artifact_too(store: Path, diabetes: Any) -> None:
    model = Store.open(store)["diabetes_gbr"]
    predictions = model.predict(diabetes[0][:20])
    precision = numbers.served_precision(model.engine, model.entry.outputs)
    shown = numbers.carried(predictions, precision)
    assert [repr(v) for v in shown.tolist()] == [str(np.float32(v)) for v in predictions]


def test_float64_answers_and_labels_stay_as_they_are() -> None:
    exact = np.array([0.41309043765068054, 1 / 3, 2.5e-300])
    assert numbers.carried(exact, "float64") is exact or np.array_equal(
        numbers.carried(exact, "float64"), exact
    )
    labels = np.array(["up", "down"], dtype=object)
    assert numbers.carried(labels, "float32") is labels
    ints = np.array([1, -1])
    assert numbers.carried(ints, "float32").dtype == ints.dtype


def test_gaps_and_infinities_survive() -> None:
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 3.4e38], dtype=np.float32).astype(np.float64)
    shown = numbers.carried(values, "float32")
    assert np.isnan(shown[0]) and shown[1] == np.inf and shown[2] == -np.inf
    assert np.float32(shown[4]) == np.float32(3.4e38)


@pytest.mark.parametrize(
    ("engine", "dtypes", "expected"),
    [
        ("onnxruntime", ("int64", "float32"), "float32"),  # labels and float32 probabilities
        ("onnxruntime", ("float64",), "float64"),  # a float64 regressor
        ("onnxruntime", ("int64", "float32", "float64"), "float64"),
        ("sklearn", ("int64", "float32"), "float64"),  # the fallback computes in float64
    ],
)
def test_the_precision_served_follows_the_engine_and_its_outputs(
    engine: str, dtypes: tuple[str, ...], expected: str
) -> None:
    from alphapulse_onnx.signature import TensorSpec

    outputs = [TensorSpec(f"o{i}", dtype, (None,)) for i, dtype in enumerate(dtypes)]  # type: ignore[arg-type]
    assert numbers.served_precision(engine, outputs) == expected


def test_text_of_one_number() -> None:
    assert numbers.text(0.41309043765068054, "float32") == "0.41309044"
    assert numbers.text(0.1) == "0.1"


def test_apo_predict_writes_float32_digits(store: Path, iris: Any, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    np.savetxt(rows, iris[0][::5], delimiter=",", fmt="%.6g")
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(
        app, ["predict", "iris_rf", str(rows), "--store", str(store), "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    model = Store.open(store)["iris_rf"]
    expected = model.predict_proba(iris[0][::5].astype(np.float64))
    lines = out.read_text().splitlines()
    assert len(lines) == len(expected)
    for line, proba in zip(lines, expected, strict=True):
        raw = line.split('"proba_0": ')[1].split(",")[0]
        assert raw == str(np.float32(proba[0]))  # 0.41309044, as the float32 carries it


def test_carried_equals_numpys_shortest_float32_repr() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.random(20_000),
        rng.standard_normal(20_000) * 10.0 ** rng.integers(-44, 38, 20_000),
        [1.0, 0.5, 1000.0, 1e-45, 3.4e38, 1e22, 1e23, 9.999999, 16777216.0, 1.0000001],
    ]).astype(np.float32)  # fmt: skip
    shown = numbers.carried(values.astype(np.float64), "float32")
    assert shown.tolist() == [float(str(v)) for v in values]  # numpy's shortest decimal
