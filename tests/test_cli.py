"""The command line as users and CI meet it: exit codes, one-line errors, JSON, stdout vs stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.cluster import BisectingKMeans
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from alphapulse_onnx.cli import app

from .conftest import save_model

runner = CliRunner()


def test_convert_writes_artifacts_mirroring_subfolders(registry: Path) -> None:
    result = runner.invoke(app, ["convert", str(registry)])
    assert result.exit_code == 0, result.stderr
    out = registry / "onnx"
    assert (out / "iris_rf.onnx").is_file()
    assert (out / "classifiers" / "cancer_logreg.onnx").is_file()
    assert (out / "regressors" / "diabetes_gbr.onnx").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert {m["name"] for m in manifest["models"]} == {"iris_rf", "cancer_logreg", "diabetes_gbr"}
    assert "3/3 converted" in result.stderr


def test_convert_json_summary_parses_and_out_flag(registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    result = runner.invoke(app, ["convert", str(registry), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] == 3 and summary["failed"] == 0
    assert Path(summary["manifest"]) == out / "manifest.json"
    manifest = json.loads((out / "manifest.json").read_text())
    # Sources resolve from the manifest alone: registry is relative to the manifest's folder.
    assert (out / manifest["registry"]).resolve() == registry.resolve()


def test_one_bad_model_fails_alone_with_exit_1(registry: Path) -> None:
    (registry / "broken.joblib").write_bytes(b"not a pickle at all")
    X, _ = load_iris(return_X_y=True)
    save_model(BisectingKMeans(n_clusters=2, random_state=0).fit(X), registry / "clusters.pkl")
    result = runner.invoke(app, ["convert", str(registry), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    by_name = {e["name"]: e for e in summary["entries"]}
    assert by_name["iris_rf"]["status"] == "ok"
    assert by_name["broken"]["status"] == "failed"
    assert "not a pickle or joblib file" in by_name["broken"]["error"]
    assert "broken.joblib" in by_name["broken"]["error"]
    assert by_name["clusters"]["status"] == "failed"
    assert "no ONNX converter for BisectingKMeans" in by_name["clusters"]["error"]
    assert "internal error" not in by_name["clusters"]["error"]
    assert summary["ok"] == 3


def test_errors_are_one_line_without_traceback(registry: Path) -> None:
    (registry / "broken.pkl").write_bytes(b"\x80\x05garbage")
    result = runner.invoke(app, ["convert", str(registry)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.pkl" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["convert", "/no/such/folder"], "no such file or folder", id="missing-path"),
        pytest.param(["convert", "{empty}"], "no model files", id="no-models"),
        pytest.param(["convert", "{empty}", "--atol", "-1"], "tolerances", id="bad-tolerance"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [a.replace("{empty}", str(empty)) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_unknown_flag_is_a_usage_error(registry: Path) -> None:
    assert runner.invoke(app, ["convert", str(registry), "--no-such-flag"]).exit_code == 2


def test_single_file_registry(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    path = save_model(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "m" / "iris.pickle")
    result = runner.invoke(app, ["convert", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "m" / "onnx" / "iris.onnx").is_file()


def test_duplicate_stems_are_named_by_relative_path(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    root = tmp_path / "reg"
    save_model(model, root / "a" / "m.joblib")
    save_model(model, root / "b" / "m.joblib")
    save_model(model, root / "solo.joblib")
    result = runner.invoke(app, ["convert", str(root), "--json"])
    names = sorted(e["name"] for e in json.loads(result.stdout)["entries"])
    assert names == ["a/m", "b/m", "solo"]


def test_sample_rows_replace_probes(registry: Path, tmp_path: Path) -> None:
    X, _ = load_iris(return_X_y=True)
    sample = tmp_path / "iris.csv"
    sample.write_text("\n".join(",".join(str(v) for v in row) for row in X[:40]) + "\n")
    result = runner.invoke(app, ["convert", str(registry / "iris_rf.joblib"), "--sample",
                                 str(sample), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    validation = json.loads(result.stdout)["entries"][0]["validation"]
    assert validation["probe"] == "sample" and validation["rows"] == 40


def test_providers_reports_cpu_running_and_require(tmp_path: Path) -> None:
    result = runner.invoke(app, ["providers", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    cpu = next(p for p in report["providers"] if p["name"] == "CPUExecutionProvider")
    assert cpu["runs"] is True
    assert runner.invoke(app, ["providers", "--require", "cpu"]).exit_code == 0


def test_providers_require_cuda_fails_where_cuda_does_not_run() -> None:
    report = json.loads(runner.invoke(app, ["providers", "--json"]).stdout)
    cuda = next(p for p in report["providers"] if p["name"] == "CUDAExecutionProvider")
    result = runner.invoke(app, ["providers", "--require", "CUDA"])
    if cuda["runs"]:
        assert result.exit_code == 0
    else:
        assert result.exit_code == 1
        assert cuda["reason"]
        assert "CUDAExecutionProvider does not run here" in result.stderr


def test_module_entry_point_and_version() -> None:
    done = subprocess.run([sys.executable, "-m", "alphapulse_onnx", "--version"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.startswith("apo ")
