"""``apo bench`` on DataFrame pipelines (one input per column, text columns included): timed on
rows built from their probes or from ``--sample``, every engine on the same rows, parity checked,
a per-model summary; engine names as the docs give them; providers default to what runs here.
No timing assertions: tiny fixed repeats, and checks that the figures follow from each other."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx import engines, runtime
from alphapulse_onnx.cli import app

from .conftest import save_model

runner = CliRunner()
FAST = ["--batch-sizes", "1,32", "--repeat", "3"]
DOCS = Path(__file__).parent.parent / "docs" / "reference" / "cli.md"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 400
    data = pd.DataFrame(
        {
            "sector": rng.choice(["tech", "energy", "health"], n).astype(object),
            "venue": rng.choice(["NYSE", "NASDAQ"], n).astype(object),
            "rsi 14": rng.normal(50, 10, n),
            "volume": rng.lognormal(10, 1, n),
        }
    )
    data.loc[::11, "sector"] = np.nan
    return data


def _columns() -> ColumnTransformer:
    text = make_pipeline(SimpleImputer(strategy="most_frequent"),
                         OneHotEncoder(handle_unknown="ignore"))  # fmt: skip
    return ColumnTransformer(
        [("text", text, ["sector", "venue"]), ("numbers", StandardScaler(), ["rsi 14", "volume"])]
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("frames") / "registry"
    up = ((frame["rsi 14"] > 50) ^ (frame["venue"] == "NYSE")).to_numpy()
    forest = make_pipeline(_columns(), RandomForestClassifier(n_estimators=10, max_depth=4,
                                                              random_state=0))  # fmt: skip
    save_model(forest.fit(frame, up), root / "desk" / "sector_forest.joblib")
    ridge = make_pipeline(_columns(), Ridge()).fit(frame, np.log(frame["volume"]))
    save_model(ridge, root / "desk" / "volume_ridge.joblib")
    frame.head(120).to_csv(root.parent / "sample.csv", index=False)
    result = runner.invoke(app, ["convert", str(root)])
    assert result.exit_code == 0, result.stderr
    return root / "onnx"


@pytest.fixture
def store(converted: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(converted.parent, target)
    return target / "onnx"


def bench(*args: str) -> tuple[int, dict[str, Any], str, str]:
    result = runner.invoke(app, ["bench", *args])
    payload = json.loads(result.stdout) if "--json" in args and result.stdout.strip() else {}
    return result.exit_code, payload, result.stdout, result.stderr


def test_dataframe_pipelines_are_benchmarked_not_skipped(store: Path) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    assert all(len(m["inputs"]) == 4 for m in manifest["models"])  # one input per column
    code, report, _, stderr = bench(str(store), "--json", "--no-tune", *FAST)
    assert code == 0, stderr
    for model in report["models"]:
        assert model["status"] == "ok", model
        rows = model["results"]
        assert {(r["engine"], r["batch_size"]) for r in rows} == {
            (engine, size) for engine in engines.ENGINES for size in (1, 32)
        }
        for r in rows:
            base = next(b for b in rows if b["engine"] == "sklearn"
                        and b["batch_size"] == r["batch_size"])  # fmt: skip
            assert r["calls"] == 3
            assert r["speedup_vs_sklearn"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
            assert r["parity"] == ("reference" if r["engine"] == "sklearn" else "passed")
        (summary,) = model["summary"]
        assert summary["provider"] == "CPUExecutionProvider"
        assert summary["batch_sizes"] == [1, 32]
        apo = {r["batch_size"]: r["speedup_vs_sklearn"] for r in rows if r["engine"] == "onnx"}
        assert summary["speedups"] == [apo[1], apo[32]]
    stored = json.loads((store / "manifest.json").read_text())["models"]
    assert all(m["bench"]["results"] for m in stored)


def test_tuning_runs_on_per_column_feeds(store: Path) -> None:
    code, report, _, stderr = bench(str(store), "--json", "--tune", "--model", "sector_forest",
                                    *FAST)  # fmt: skip
    assert code == 0, stderr
    (model,) = report["models"]
    assert model["tuned"] is True and model["session"]["tuned"]["candidates"] > 1
    assert [band["batch_size"] for band in model["session"]["bands"]] == [1, 32]


def test_sample_rows_are_timed_and_checked(store: Path, converted: Path) -> None:
    sample = converted.parent.parent / "sample.csv"
    code, report, _, stderr = bench(str(store), "--json", "--no-tune", "--sample", str(sample),
                                    *FAST)  # fmt: skip
    assert code == 0, stderr
    assert all(m["status"] == "ok" and m["rows_from"] == "sample" for m in report["models"])
    assert all(m["note"] is None for m in report["models"])
    # A sample without a model's columns: that model is timed on its probes, and says so.
    lacking = store.parent / "lacking.csv"
    pd.read_csv(sample).drop(columns=["venue"]).to_csv(lacking, index=False)
    code, report, _, stderr = bench(str(store), "--no-tune", "--sample", str(lacking), "--json",
                                    *FAST)  # fmt: skip
    assert code == 0, stderr
    for model in report["models"]:
        assert model["status"] == "ok" and model["rows_from"] != "sample"
        assert "venue" in model["note"]
        assert f"warning: {model['name']}: " in stderr


def test_the_table_names_engines_as_the_docs_and_ends_with_a_summary(store: Path) -> None:
    code, _, stdout, stderr = bench(str(store), "--no-tune", *FAST)
    assert code == 0, stderr
    lines = stdout.splitlines()
    named = {cell for line in lines for cell in re.split(r"[\s\u2502]+", line)}
    assert set(engines.ENGINES) <= named
    documented = set(re.findall(r"^\| `([a-z-]+)` \| `(?:-|fp32|fp16`, `int8)`", DOCS.read_text(),
                                re.MULTILINE))  # fmt: skip
    assert documented == set(engines.ENGINES)
    summary = lines.index(next(line for line in lines if line.startswith("summary:")))
    tail = "\n".join(lines[summary:])
    assert "sector_forest" in tail and "volume_ridge" in tail
    assert "1 row" in tail and "32 rows" in tail


def test_providers_default_to_what_runs_here(store: Path) -> None:
    code, report, _, stderr = bench(str(store), "--json", "--no-tune", "--model", "volume_ridge",
                                    *FAST)  # fmt: skip
    assert code == 0
    assert [p["name"] for p in report["providers"]] == runtime.runnable_providers()
    assert all(p["runs"] for p in report["providers"])
    assert report["warnings"] == [] and "does not run here" not in stderr
