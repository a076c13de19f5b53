"""``apo info MODEL``: what a caller needs to use a converted model, read from the manifest, for
a DataFrame pipeline with text columns, a wrapped model, a failed one, and names that are
ambiguous or unknown."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx.cli import app

from .conftest import save_model

runner = CliRunner()
COLUMNS = ["city", "plan", "monthly spend ($)", "tenure"]


@pytest.fixture(scope="module")
def churn() -> Any:
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "city": rng.choice(["paris", "rome", "oslo"], n).astype(object),
            "plan": rng.choice(["free", "pro"], n).astype(object),
            "monthly spend ($)": rng.lognormal(3, 1, n),
            "tenure": rng.normal(24, 8, n),
        }
    )
    frame.loc[::9, "city"] = np.nan
    y = np.where((frame["tenure"] > 24) ^ (frame["plan"] == "pro"), "stay", "leave")
    text = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    model = make_pipeline(
        ColumnTransformer(
            [("text", text, ["city", "plan"]),
             ("numbers", StandardScaler(), ["monthly spend ($)", "tenure"])]
        ),
        LogisticRegression(max_iter=1000),
    )  # fmt: skip
    return model.fit(frame, y), frame


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, churn: Any, small_models: Any) -> Path:
    root = tmp_path_factory.mktemp("info") / "registry"
    model, _ = churn
    save_model(model, root / "desk" / "churn.joblib")
    wrapped = {"pipeline": small_models["cancer_logreg"], "threshold": 0.42, "owner": "risk"}
    save_model(wrapped, root / "wrapped.joblib")
    save_model(small_models["iris_rf"], root / "twin.joblib")
    save_model(small_models["iris_rf"], root / "twin.pkl")
    (root / "broken.pkl").write_bytes(b"\x80\x05garbage")
    result = runner.invoke(app, ["convert", str(root)])
    assert result.exit_code == 1, result.stderr  # broken.pkl fails, alone
    return root / "onnx"


def info(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str, str]:
    result = runner.invoke(app, ["info", *args], env=env)
    payload = json.loads(result.stdout) if "--json" in args and result.exit_code == 0 else None
    return result.exit_code, payload, result.stdout, result.stderr


def test_a_dataframe_pipeline_lists_its_columns_types_and_csv_header(store: Path) -> None:
    code, shown, _, stderr = info("churn", "--store", str(store), "--json")
    assert code == 0, stderr
    assert shown["status"] == "ok" and shown["task"] == "classification"
    inputs = {c["name"]: c for c in shown["inputs"]}
    assert list(inputs) == COLUMNS
    assert inputs["city"]["kind"] == "text" and inputs["city"]["dtype"] == "string"
    assert inputs["tenure"]["kind"] == "number"
    assert inputs["monthly spend ($)"]["input"] != "monthly spend ($)"  # the ONNX name is safe
    assert next(csv.reader(io.StringIO(shown["csv_header"]))) == COLUMNS
    assert [o["name"] for o in shown["outputs"]] == ["label", "probabilities"]
    assert shown["classes"] == ["leave", "stay"] and shown["has_proba"] is True
    assert shown["precision"] == shown["artifact"]["precision"]
    assert shown["validation"]["passed"] is True and shown["validation"]["rows"] > 0
    assert shown["source"]["path"] == "desk/churn.joblib"
    assert shown["source"]["sklearn_version"]
    assert shown["origin"] is None and shown["bench"] is None
    code, _, text, _ = info("churn", "--store", str(store))
    assert code == 0
    assert '"monthly spend ($)"' in text or "monthly spend ($)" in text
    assert "city,plan,monthly spend ($),tenure" in text  # the example CSV header, one line
    assert "not measured yet" in text


def test_speedups_of_the_last_bench_appear(store: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store.parent, copy)
    fast = ["--batch-sizes", "1,32", "--repeat", "3", "--no-tune", "--model", "churn"]
    benched = runner.invoke(app, ["bench", str(copy / "onnx"), *fast])
    assert benched.exit_code == 0, benched.stderr
    code, shown, _, _ = info("desk/churn", "--store", str(copy / "onnx"), "--json")
    assert code == 0
    (speed,) = shown["bench"]["speedups"]
    assert speed["provider"] == "CPUExecutionProvider"
    assert set(speed["speedups"]) == {"1", "32"} and all(v > 0 for v in speed["speedups"].values())
    _, _, text, _ = info("churn", "--store", str(copy / "onnx"))
    assert "speedup" in text and "1 row" in text and "32 rows" in text


def test_a_wrapped_model_shows_what_was_selected_and_kept_beside_it(store: Path) -> None:
    code, shown, _, _ = info("wrapped", "--store", str(store), "--json")
    assert code == 0
    assert shown["source"]["selected"] == "pipeline"
    assert shown["source"]["metadata"] == {"threshold": 0.42, "owner": "risk"}
    _, _, text, _ = info("wrapped", "--store", str(store))
    assert "threshold = 0.42" in text and "selected" in text
    assert len(shown["inputs"]) == 30 and shown["csv_header"] is None  # fitted on an array


def test_a_failed_model_says_why(store: Path) -> None:
    code, shown, _, _ = info("broken", "--store", str(store), "--json")
    assert code == 0
    assert shown["status"] == "failed" and shown["cause"] == "unreadable"
    _, _, text, _ = info("broken", "--store", str(store))
    assert "failed: corrupt or not a model" in text


def test_an_artifact_path_and_apo_store_name_the_model(store: Path) -> None:
    code, shown, _, _ = info(str(store / "desk" / "churn.onnx"), "--json")
    assert code == 0 and shown["name"] == "churn"
    code, shown, _, _ = info("churn", "--json", env={"APO_STORE": str(store)})
    assert code == 0 and shown["name"] == "churn"


def test_ambiguous_and_unknown_names_list_the_candidates(store: Path) -> None:
    code, _, _, stderr = info("twin", "--store", str(store))
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error:")
    assert "'twin' is ambiguous" in stderr and "twin.joblib" in stderr and "twin.pkl" in stderr
    code, _, _, stderr = info("twin.pkl", "--store", str(store), "--json")
    assert code == 0
    code, _, _, stderr = info("chrun", "--store", str(store))
    assert code == 2 and stderr.count("\n") == 1
    assert "no model named 'chrun'" in stderr and "churn" in stderr


def test_outside_a_repository_the_default_store_error_says_how_to_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APO_STORE", raising=False)
    monkeypatch.delenv("APO_REGISTRY", raising=False)
    for args in (["info", "churn"], ["predict", "churn", "rows.csv"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1
        assert "--store" in result.stderr and "APO_STORE" in result.stderr
    for verb in ("bench", "validate"):
        result = runner.invoke(app, [verb])
        assert result.exit_code == 2 and f"apo {verb} STORE" in result.stderr
