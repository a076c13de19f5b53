"""Registries as a whole, and inputs that must end in one line, not a traceback.

``apo validate`` fails a registry whose files the manifest does not list (an interrupted
convert, a model added later, a stray artifact); ``convert --sample`` on a mixed registry uses
the sample where it fits; empty input is 0 rows; hostile input and bad ``--out`` folders are
one-line input errors (exit 2); both engines take the same options and give the same rows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from typer.testing import CliRunner

from alphapulse_onnx.cli import app

runner = CliRunner()


@pytest.fixture
def converted(registry: Path) -> Path:
    result = runner.invoke(app, ["convert", str(registry), "-j", "1"])
    assert result.exit_code == 0, result.stderr
    return registry


def _validate(*args: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["validate", *args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_a_complete_registry_validates(converted: Path) -> None:
    code, payload, stderr = _validate(str(converted))
    assert code == 0, stderr
    assert payload["models"] == 3


def test_files_the_manifest_lacks_fail_validation_by_name(converted: Path, iris: Any) -> None:
    # An interrupted convert: one entry never written, its artifact left behind; a model added.
    manifest = converted / "onnx" / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["models"] = [m for m in raw["models"] if m["name"] != "cancer_logreg"]
    manifest.write_text(json.dumps(raw))
    X, y = iris
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), converted / "late.joblib")
    (converted / "onnx" / "stray.onnx").write_bytes(b"not really onnx")
    code, payload, stderr = _validate(str(converted))
    assert code == 1, stderr
    failed = {r["name"]: r for r in payload["results"] if not r["passed"]}
    assert set(failed) == {"classifiers/cancer_logreg.pkl", "late.joblib",
                           "classifiers/cancer_logreg.onnx", "stray.onnx"}  # fmt: skip
    assert failed["late.joblib"]["source"] == "unlisted"
    assert failed["stray.onnx"]["artifact"] == "unlisted"
    assert "no manifest entry" in failed["late.joblib"]["reasons"][0]
    assert payload["models"] == 2 + 4
    # The old behaviour, asked for: only the entries.
    code, payload, stderr = _validate(str(converted), "--manifest-only")
    assert code == 0, stderr
    assert payload["models"] == 2
    # The table names them too.
    text = runner.invoke(app, ["validate", str(converted)])
    assert text.exit_code == 1
    assert "late.joblib" in text.stderr and "stray.onnx" in text.stderr


def test_a_single_file_registry_ignores_its_neighbours(registry: Path) -> None:
    result = runner.invoke(app, ["convert", str(registry / "iris_rf.joblib"), "-j", "1"])
    assert result.exit_code == 0, result.stderr
    code, payload, stderr = _validate(str(registry / "onnx"))
    assert code == 0, stderr  # regressors/diabetes_gbr.joblib is not this registry's
    assert payload["models"] == 1


def test_convert_sample_applies_where_its_columns_match(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    prices = pd.DataFrame(rng.normal(size=(300, 3)), columns=["open", "high", "low"])
    weather = pd.DataFrame(rng.normal(size=(300, 2)), columns=["rain", "wind"])
    root = tmp_path / "mixed"
    root.mkdir()
    joblib.dump(LogisticRegression().fit(prices, prices["open"] > 0), root / "prices.joblib")
    imputing = make_pipeline(SimpleImputer(), LogisticRegression())
    joblib.dump(imputing.fit(weather, weather["rain"] > 0), root / "weather.joblib")
    sample = tmp_path / "prices.csv"
    prices.head(40).to_csv(sample, index=False)
    result = runner.invoke(
        app, ["convert", str(root), "--sample", str(sample), "--json", "-j", "1"]
    )
    assert result.exit_code == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)["entries"]}
    assert entries["prices"]["validation"]["probe"] == "sample"
    assert entries["prices"]["validation"]["rows"] == 40
    assert entries["weather"]["status"] == "ok"
    assert entries["weather"]["validation"]["probe"] != "sample"
    assert any("--sample" in w and "rain" in w for w in entries["weather"]["warnings"])


# ------------------------------------------------------------------ empty and hostile input


@pytest.mark.parametrize("content", ["", "f0,f1,f2,f3\n", "stdin"])
def test_empty_input_is_zero_rows(converted: Path, tmp_path: Path, content: str) -> None:
    args = ["predict", "--store", str(converted / "onnx"), "iris_rf"]
    if content == "stdin":
        result = runner.invoke(app, [*args, "-"], input="")
    else:
        path = tmp_path / "rows.csv"
        path.write_text(content)
        result = runner.invoke(app, [*args, str(path)])
    assert result.exit_code == 0, result.stderr
    assert "0 rows" in result.stderr
    assert len(result.stdout.strip().splitlines()) <= 1  # at most the header


def _one_line_input_error(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "Traceback" not in line and "internal error" not in line, line
    return str(line)


def test_deeply_nested_jsonl_is_an_input_error(converted: Path, tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "\n")
    result = runner.invoke(app, ["predict", "--store", str(converted / "onnx"), "iris_rf",
                                 str(path)])  # fmt: skip
    assert "nested too deeply" in _one_line_input_error(result)


def test_deeply_nested_manifest_is_an_input_error(converted: Path) -> None:
    (converted / "onnx" / "manifest.json").write_text('{"models": ' + "[" * 100_000)
    result = runner.invoke(app, ["predict", "--store", str(converted / "onnx"), "iris_rf", "-"],
                           input="1,2,3,4\n")  # fmt: skip
    line = _one_line_input_error(result)
    assert "manifest" in line


def test_binary_stdin_is_an_input_error(converted: Path) -> None:
    data = bytes(range(256)) * 4
    result = runner.invoke(app, ["predict", "--store", str(converted / "onnx"), "iris_rf", "-"],
                           input=data)  # fmt: skip
    assert "UTF-8" in _one_line_input_error(result)


def test_a_huge_bad_cell_is_quoted_briefly(converted: Path, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("1,2,3,4\n1," + "x" * 50_000 + ",3,4\n")
    result = runner.invoke(app, ["predict", "--store", str(converted / "onnx"), "iris_rf",
                                 str(path)])  # fmt: skip
    line = _one_line_input_error(result)
    assert len(line) < 600 and "row 2" in line


def test_a_short_row_is_an_error_naming_it(converted: Path, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("1,2,3,4\n1,2,3\n5,6,7,8\n")
    result = runner.invoke(app, ["predict", "--store", str(converted / "onnx"), "iris_rf",
                                 str(path)])  # fmt: skip
    assert "row 2" in _one_line_input_error(result)


def test_out_pointing_at_a_file_is_an_input_error(registry: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    for out in (target, target / "below"):
        result = runner.invoke(app, ["convert", str(registry), "--out", str(out)])
        assert "is a file, not a folder" in _one_line_input_error(result)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_out_folder_is_an_input_error(registry: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = runner.invoke(app, ["convert", str(registry), "--out", str(locked)])
        assert "read-only" in _one_line_input_error(result)
    finally:
        locked.chmod(0o755)


def test_out_equal_to_the_registry_finds_no_models(registry: Path) -> None:
    result = runner.invoke(app, ["convert", str(registry), "--out", str(registry)])
    assert "no model files" in _one_line_input_error(result)


# ------------------------------------------------------------------------ both engines


def test_local_and_dask_take_the_same_options_and_agree(tmp_path: Path, iris: Any) -> None:
    pytest.importorskip("distributed")
    X, y = iris
    columns = ["a", "b", "c", "d"]
    root = tmp_path / "registry"
    root.mkdir()
    frame = pd.DataFrame(X, columns=columns)
    joblib.dump(LogisticRegression(max_iter=300).fit(frame, y), root / "lr.joblib")
    assert runner.invoke(app, ["convert", str(root), "-j", "1"]).exit_code == 0
    rows = frame.iloc[::5].copy().reset_index(drop=True)
    rows["id"] = np.arange(len(rows))
    rows.loc[[3, 11], "b"] = np.nan  # refused: scikit-learn refuses NaN for this model
    rows.loc[7, "c"] = np.inf
    source = tmp_path / "rows.parquet"
    rows.to_parquet(source)
    common = ["predict", "--store", str(root / "onnx"), "lr", str(source), "--keep-columns",
              "--invalid-rows", "null", "--json"]  # fmt: skip
    local = runner.invoke(app, [*common, "-o", str(tmp_path / "local.parquet")])
    assert local.exit_code == 0, local.stderr
    dask = runner.invoke(app, [*common, "--engine", "dask", "-o", str(tmp_path / "dask")])
    assert dask.exit_code == 0, dask.stderr
    assert json.loads(local.stdout)["invalid"] == json.loads(dask.stdout)["invalid"] == 3
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "dask").sort_values("id").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a["id"].tolist() == rows["id"].tolist()  # kept locally too
    assert a.loc[[3, 7, 11], "label"].isna().all()
    shutil.rmtree(tmp_path / "dask")


def test_validate_proves_the_recorded_input_contract_again(converted: Path) -> None:
    code, _, stderr = _validate(str(converted))
    assert code == 0, stderr  # the forest's missing values are proven again, and still hold
    manifest = converted / "onnx" / "manifest.json"
    raw = json.loads(manifest.read_text())
    entry = next(m for m in raw["models"] if m["name"] == "cancer_logreg")
    entry["input_contract"]["nan"] = True  # a manifest claiming more than scikit-learn takes
    manifest.write_text(json.dumps(raw))
    code, payload, stderr = _validate(str(converted))
    assert code == 1, stderr
    failed = {r["name"]: r for r in payload["results"] if not r["passed"]}
    assert set(failed) == {"cancer_logreg"}
    assert "input contract" in failed["cancer_logreg"]["reasons"][0]
    assert "missing values" in failed["cancer_logreg"]["reasons"][0]
