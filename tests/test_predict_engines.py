"""`apo predict --engine dask` and `--engine local` give the same rows as scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alphapulse_onnx import loading
from alphapulse_onnx.cli import app
from alphapulse_onnx.commands import predict_dask

pytest.importorskip("distributed")
runner = CliRunner()


def test_dask_and_local_engines_match_sklearn(registry: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["convert", str(registry)]).exit_code == 0
    X = np.random.default_rng(0).normal(5.0, 2.0, (300, 4))
    data = tmp_path / "rows"
    data.mkdir()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    for i, start in enumerate(range(0, 300, 100)):
        frame.iloc[start : start + 100].to_parquet(data / f"part-{i}.parquet")
    frame.to_csv(tmp_path / "rows.csv", index=False, header=False)
    args = ["predict", "iris_rf", "--registry", str(registry / "onnx")]
    dask_run = runner.invoke(app, [*args, str(data), "--engine", "dask", "-o",
                                   str(tmp_path / "out"), "--json", "--keep-columns"])  # fmt: skip
    assert dask_run.exit_code == 0, dask_run.stderr
    assert json.loads(dask_run.stdout)["rows"] == 300
    scored = pd.read_parquet(tmp_path / "out")
    local_run = runner.invoke(app, [*args, str(tmp_path / "rows.csv"), "-o",
                                    str(tmp_path / "local.csv")])  # fmt: skip
    assert local_run.exit_code == 0, local_run.stderr
    local = pd.read_csv(tmp_path / "local.csv")
    model = loading.load(registry / "iris_rf.joblib").estimator
    np.testing.assert_array_equal(scored["label"], model.predict(X))
    np.testing.assert_array_equal(local["label"], model.predict(X))
    proba_columns = [c for c in local.columns if c.startswith("proba_")]
    np.testing.assert_allclose(scored[proba_columns], model.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(local[proba_columns], scored[proba_columns], atol=1e-6)
    np.testing.assert_allclose(scored[["f0", "f1", "f2", "f3"]], X)


def test_dask_engine_needs_an_output_folder(registry: Path) -> None:
    result = runner.invoke(app, ["predict", "iris_rf", "x.parquet", "--engine", "dask"])
    assert result.exit_code == 2
    assert "-o OUTPUT_DIR" in result.stderr


def test_dask_command_takes_an_artifact_path_and_reports_progress(
    registry: Path, tmp_path: Path
) -> None:
    assert runner.invoke(app, ["convert", str(registry)]).exit_code == 0
    X = np.random.default_rng(1).normal(5.0, 2.0, (90, 4))
    data = tmp_path / "rows"
    data.mkdir()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    for i in range(3):
        frame.iloc[i * 30 : (i + 1) * 30].to_parquet(data / f"part-{i}.parquet")
    options = predict_dask.DaskPredictOptions(
        model=str(registry / "onnx" / "iris_rf.onnx"),  # its manifest is found beside it
        input=str(data),
        output_dir=tmp_path / "out",
        proba=False,
    )
    progress: list[tuple[int, int]] = []
    result = predict_dask.run(
        options, on_progress=lambda done, total: progress.append((done, total))
    )
    assert result.model == "iris_rf" and result.rows == 90 and result.columns == ("label",)
    assert progress[-1] == (3, 3)
    model = loading.load(registry / "iris_rf.joblib").estimator
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "out")["label"], model.predict(X))
