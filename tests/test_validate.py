"""``apo validate``: passes a clean registry, fails a tampered one by name, exit codes 0/1/2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from alphapulse_onnx._fsutil import sha256_file
from alphapulse_onnx.cli import app

from .conftest import save_model

runner = CliRunner()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, small_models: dict[str, Any],
              iris: Any) -> Path:  # fmt: skip
    """A registry converted once: iris_rf, iris_logreg, cancer_logreg, diabetes_gbr."""
    root = tmp_path_factory.mktemp("converted") / "registry"
    X, y = iris
    save_model(small_models["iris_rf"], root / "iris_rf.joblib")
    save_model(LogisticRegression(max_iter=500).fit(X, y), root / "iris_logreg.pkl")
    save_model(small_models["cancer_logreg"], root / "sub" / "cancer_logreg.pkl")
    save_model(small_models["diabetes_gbr"], root / "diabetes_gbr.joblib")
    result = runner.invoke(app, ["convert", str(root), "-j", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture
def reg(converted: Path, tmp_path: Path) -> Path:
    """A private copy of the converted registry, free to tamper with."""
    return Path(shutil.copytree(converted, tmp_path / "registry"))


def _validate(*args: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["validate", *args, "--json"])
    payload = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, payload, result.stderr


def _by_name(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in payload["results"]}


def _edit_manifest(reg: Path, name: str, **changes: Any) -> None:
    path = reg / "onnx" / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["models"]:
        if entry["name"] == name:
            for dotted, value in changes.items():
                section, _, key = dotted.partition("__")
                (entry[section] if key else entry)[key or section] = value
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("form", ["registry", "folder", "manifest"])
def test_clean_registry_passes(reg: Path, form: str) -> None:
    target = {"registry": reg, "folder": reg / "onnx", "manifest": reg / "onnx" / "manifest.json"}
    code, payload, stderr = _validate(str(target[form]))
    assert code == 0, stderr
    assert payload["passed"] is True
    assert payload["models"] == 4
    for result in payload["results"]:
        assert (result["artifact"], result["source"], result["checker"], result["parity"]) == (
            "ok", "ok", "ok", "ok",
        )  # fmt: skip
        assert result["validation"]["rows"] > 100


def test_table_for_people(reg: Path) -> None:
    result = runner.invoke(app, ["validate", str(reg)])
    assert result.exit_code == 0, result.stderr
    for column in ("model", "artifact", "source", "checker", "parity", "result"):
        assert column in result.stdout
    assert "4/4 models valid" in result.stderr


def test_tampered_artifact_fails_by_name(reg: Path) -> None:
    artifact = reg / "onnx" / "iris_rf.onnx"
    data = bytearray(artifact.read_bytes())
    data[-5] ^= 0xFF
    artifact.write_bytes(bytes(data))
    code, payload, _ = _validate(str(reg))
    assert code == 1
    results = _by_name(payload)
    assert results["iris_rf"]["artifact"] == "changed"
    assert results["iris_rf"]["parity"] == "-"
    assert "sha256 mismatch" in results["iris_rf"]["reasons"][0]
    assert all(results[n]["passed"] for n in ("iris_logreg", "cancer_logreg", "diabetes_gbr"))
    result = runner.invoke(app, ["validate", str(reg)])
    assert result.exit_code == 1
    assert "iris_rf: artifact iris_rf.onnx changed since conversion" in result.stderr
    assert "1 of 4 models failed validation" in result.stderr


def test_missing_artifact(reg: Path) -> None:
    (reg / "onnx" / "sub" / "cancer_logreg.onnx").unlink()
    code, payload, _ = _validate(str(reg))
    assert code == 1
    result = _by_name(payload)["cancer_logreg"]
    assert result["artifact"] == "missing"
    assert result["reasons"] == ["artifact sub/cancer_logreg.onnx is missing"]


def test_replaced_source_is_stale(reg: Path, small_models: dict[str, Any]) -> None:
    save_model(small_models["iris_rf"], reg / "iris_logreg.pkl")  # same features, other model
    code, payload, _ = _validate(str(reg))
    assert code == 1
    result = _by_name(payload)["iris_logreg"]
    assert result["source"] == "stale"
    assert "stale: source iris_logreg.pkl changed since conversion" in result["reasons"][0]


def test_missing_source(reg: Path) -> None:
    (reg / "diabetes_gbr.joblib").unlink()
    code, payload, _ = _validate(str(reg))
    assert code == 1
    assert _by_name(payload)["diabetes_gbr"]["source"] == "missing"


def test_swapped_artifact_with_matching_hash_fails_parity(reg: Path) -> None:
    # Someone rewrites both the artifact and its recorded hash: only parity can tell.
    out = reg / "onnx"
    shutil.copy(out / "iris_rf.onnx", out / "iris_logreg.onnx")
    _edit_manifest(reg, "iris_logreg", artifact__sha256=sha256_file(out / "iris_logreg.onnx"))
    code, payload, _ = _validate(str(reg))
    assert code == 1
    result = _by_name(payload)["iris_logreg"]
    assert (result["artifact"], result["checker"], result["parity"]) == ("ok", "ok", "failed")
    assert result["reasons"][0].startswith("parity failed:")


def test_corrupt_artifact_with_matching_hash_fails_checker(reg: Path) -> None:
    artifact = reg / "onnx" / "iris_rf.onnx"
    artifact.write_bytes(b"\x08\x07garbage that is not a model proto")
    _edit_manifest(reg, "iris_rf", artifact__sha256=sha256_file(artifact))
    code, payload, _ = _validate(str(reg))
    assert code == 1
    result = _by_name(payload)["iris_rf"]
    assert result["checker"] == "failed"
    assert "onnx.checker rejects the artifact" in result["reasons"][0]


def test_tighter_recorded_tolerance_is_used(reg: Path) -> None:
    _edit_manifest(reg, "diabetes_gbr", tolerance={"proba_atol": 1e-4, "regression_rtol": 1e-15})
    code, payload, _ = _validate(str(reg))
    assert code == 1
    assert "(> 1e-15)" in _by_name(payload)["diabetes_gbr"]["reasons"][0]


def test_hostile_source_with_forged_hash_is_refused_and_nothing_runs(reg: Path) -> None:
    marker = reg / "PWNED"
    source = reg / "iris_rf.joblib"
    source.write_bytes(b"cposix\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    _edit_manifest(reg, "iris_rf", source__sha256=sha256_file(source))
    code, payload, _ = _validate(str(reg))
    assert code == 1
    reason = _by_name(payload)["iris_rf"]["reasons"][0]
    assert "refused to load" in reason
    assert "posix.system" in reason
    assert not marker.exists()


def test_failed_entry_in_manifest_fails(reg: Path) -> None:
    (reg / "broken.joblib").write_bytes(b"garbage")
    assert runner.invoke(app, ["convert", str(reg), "-j", "1"]).exit_code == 1
    code, payload, _ = _validate(str(reg))
    assert code == 1
    result = _by_name(payload)["broken"]
    assert result["reasons"][0].startswith("conversion failed at load:")
    assert sum(r["passed"] for r in payload["results"]) == 4


def test_sample_rows(reg: Path, iris: Any, tmp_path: Path) -> None:
    X, _ = iris
    sample = tmp_path / "iris.csv"
    np.savetxt(sample, X[:40], delimiter=",")
    code, payload, stderr = _validate(str(reg / "onnx" / "manifest.json"), "--sample", str(sample))
    assert code == 1, stderr  # the 30-feature and 10-feature models cannot take iris rows
    results = _by_name(payload)
    for name in ("iris_rf", "iris_logreg"):
        assert results[name]["passed"]
        assert results[name]["validation"]["probe"] == "sample"
        assert results[name]["validation"]["rows"] == 40
    assert "has 4 columns, the model takes 30" in results["cancer_logreg"]["reasons"][0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("absent", "no such file or folder"),
        ("no-manifest", "no manifest here"),
        ("bad-json", "not valid JSON"),
        ("bad-sample", "no such file"),
    ],
)
def test_usage_errors_exit_2_with_one_line(reg: Path, tmp_path: Path, setup: str,
                                           message: str) -> None:  # fmt: skip
    args = [str(reg)]
    if setup == "absent":
        args = [str(tmp_path / "nowhere")]
    elif setup == "no-manifest":
        (tmp_path / "empty").mkdir()
        args = [str(tmp_path / "empty")]
    elif setup == "bad-json":
        (reg / "onnx" / "manifest.json").write_text("{ not json")
    else:
        args += ["--sample", str(tmp_path / "absent.csv")]
    result = runner.invoke(app, ["validate", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
