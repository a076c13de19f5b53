"""``apo bench`` as users and CI meet it: figures consistent with themselves, the manifest updated
atomically, variants gated by parity, providers reported, the --min-speedup gate. No timing
assertions: tiny budgets, fixed repeats, and checks that the ratios follow from the times."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx import manifest, runtime
from alphapulse_onnx.cli import app
from alphapulse_onnx.runtime import SessionSettings

from .conftest import save_model

runner = CliRunner()
FAST = ["--batch-sizes", "1,64", "--repeat", "3", "--providers", "cpu"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, small_models: dict[str, Any]) -> Path:
    """A registry (forest, scaled logistic regression, boosted regressor, MLP), converted once."""
    root = tmp_path_factory.mktemp("bench") / "registry"
    save_model(small_models["iris_rf"], root / "iris_rf.joblib")
    save_model(small_models["cancer_logreg"], root / "cancer_logreg.pkl")
    save_model(small_models["diabetes_gbr"], root / "diabetes_gbr.joblib")
    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=200, random_state=0))
        mlp.fit(X, y)
    save_model(mlp, root / "mlp.joblib")
    result = runner.invoke(app, ["convert", str(root), "--jobs", "1"])
    assert result.exit_code == 0, result.stderr
    return root / "onnx"


@pytest.fixture
def out(converted: Path, tmp_path: Path) -> Path:
    """A private copy of the converted registry (bench rewrites its manifest)."""
    target = tmp_path / "copy"
    shutil.copytree(converted.parent, target)
    return target / "onnx"


def bench(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    result = runner.invoke(app, ["bench", *args])
    payload = json.loads(result.stdout) if "--json" in args and result.stdout.strip() else None
    return result.exit_code, payload, result.stderr


def test_json_figures_are_consistent_and_land_in_the_manifest(out: Path) -> None:
    before = json.loads((out / "manifest.json").read_text())
    code, report, stderr = bench(str(out), "--json", "--no-tune", *FAST)
    assert code == 0, stderr
    assert report is not None and report["ok"] is True
    assert report["batch_sizes"] == [1, 64]
    after = json.loads((out / "manifest.json").read_text())
    assert after["machine"]["cores"] >= 1 and after["machine"]["cpu"]
    assert after["machine"]["versions"]["onnxruntime"] == runtime.version()
    stored = {m["name"]: m for m in after["models"]}
    for model in report["models"]:
        assert model["status"] == "ok", model
        rows = model["results"]
        engines = {(r["engine"], r["variant"], r["batch_size"]) for r in rows}
        for size in (1, 64):
            assert {
                ("sklearn", "-", size),
                ("onnx", "fp32", size),
                ("ort-bare", "fp32", size),
            } <= engines
        for r in rows:
            base = next(
                b for b in rows if b["engine"] == "sklearn" and b["batch_size"] == r["batch_size"]
            )
            assert r["calls"] == 3
            assert r["min_ms"] <= r["p50_ms"] <= r["p99_ms"]
            assert r["speedup_vs_sklearn"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
            assert r["rows_per_s"] == pytest.approx(r["batch_size"] / (r["p50_ms"] / 1e3))
            assert r["parity"] == ("reference" if r["engine"] == "sklearn" else "passed")
        # the manifest holds exactly what was reported, and convert's fields are untouched
        entry = stored[model["name"]]
        assert entry["bench"]["results"] == rows
        assert entry["bench"]["providers"]["CPUExecutionProvider"] == "runs"
        previous = next(m for m in before["models"] if m["name"] == model["name"])
        assert entry["artifact"] == previous["artifact"]
        assert entry["validation"] == previous["validation"]
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".apo.lock"]
    assert leftovers == []  # atomic writes leave no temporary files behind
    _assert_reads_back_unchanged(out / "manifest.json")


def _assert_reads_back_unchanged(path: Path) -> None:
    """The typed records hold everything bench wrote: reading and writing changes no byte."""
    written = path.read_bytes()
    manifest.write(path, manifest.read(path))
    assert path.read_bytes() == written


def test_tuning_records_settings_that_registry_uses(out: Path) -> None:
    code, report, stderr = bench(str(out), "--json", "--tune", "--model", "iris_rf", *FAST)
    assert code == 0, stderr
    assert report is not None
    (model,) = report["models"]
    session = json.loads((out / "manifest.json").read_text())["models"]
    entry = next(m for m in session if m["name"] == "iris_rf")["session"]
    assert entry == model["session"]
    assert entry["tuned"]["provider"] == "CPUExecutionProvider"
    assert [b["batch_size"] for b in entry["bands"]] == [1, 64]
    tuned = SessionSettings.from_json(entry)
    assert report["models"][0]["results"]  # timed with the tuned settings...
    pytest.importorskip("alphapulse_onnx.store")
    from alphapulse_onnx.store import Store

    served = Store.open(out)["iris_rf"]  # ...which Store reads from the manifest
    assert served.engine == "onnxruntime"
    assert model["apo_path"] == "store"
    assert Store.open(out).manifest.entry("iris_rf").session_settings == tuned
    _assert_reads_back_unchanged(out / "manifest.json")


def test_min_speedup_gate(out: Path) -> None:
    code, report, stderr = bench(
        str(out), "--json", "--no-tune", "--model", "iris_rf", "--min-speedup", "1e9", *FAST
    )
    assert code == 1
    assert report is not None and report["min_speedup"]["passed"] is False
    failures = report["min_speedup"]["failures"]
    assert {(f["model"], f["batch_size"]) for f in failures} == {("iris_rf", 1), ("iris_rf", 64)}
    assert "iris_rf" in stderr and "batch size 1 " in stderr and "--min-speedup 1e+09" in stderr
    code, report, stderr = bench(
        str(out), "--no-tune", "--model", "iris_rf", "--min-speedup", "0", *FAST
    )
    assert code == 0, stderr


def test_variants_are_gated_by_parity_and_report_what_changed(out: Path) -> None:
    code, report, stderr = bench(
        str(out),
        "--json",
        "--no-tune",
        "--fp16",
        "--int8",
        "--atol",
        "1",
        "--model",
        "iris_rf",
        "--model",
        "mlp",
        *FAST,
    )
    assert code == 0, stderr
    assert report is not None
    by_name = {m["name"]: m for m in report["models"]}
    rf = {v["name"]: v for v in by_name["iris_rf"]["variants"]}
    assert rf["fp16"]["status"] == "unchanged" and rf["fp16"]["nodes_changed"] == 0
    assert "no FP16 kernel" in rf["fp16"]["note"]
    assert rf["int8"]["status"] == "unchanged"
    mlp = {v["name"]: v for v in by_name["mlp"]["variants"]}
    for name in ("fp16", "int8"):
        variant = mlp[name]
        assert variant["status"] == "kept", variant  # atol 1 accepts any variant that runs
        assert variant["nodes_changed"] > 0 and variant["parity"]["passed"] is True
        assert (out / variant["artifact"]).is_file()
        timed = [r for r in by_name["mlp"]["results"] if r["variant"] == name]
        assert {r["batch_size"] for r in timed} == {1, 64}
        assert all(r["parity"] == "passed" for r in timed)
    for model in by_name.values():  # a variant that was not kept is never timed
        kept = {v["name"] for v in model["variants"] if v["status"] == "kept"}
        assert {r["variant"] for r in model["results"]} - {"-", "fp32"} == kept
    _assert_reads_back_unchanged(out / "manifest.json")


def test_a_variant_outside_the_tolerance_is_rejected_not_timed(out: Path) -> None:
    code, report, stderr = bench(
        str(out), "--json", "--no-tune", "--int8", "--atol", "1e-9", "--model", "mlp", *FAST
    )
    assert code == 0, stderr
    assert report is not None
    (variant,) = report["models"][0]["variants"]
    assert variant["status"] == "rejected"
    assert variant["parity"]["passed"] is False and "rejected" in variant["note"]
    assert not any(r["variant"] == "int8" for r in report["models"][0]["results"])


def test_providers_that_do_not_run_are_reported(out: Path) -> None:
    if runtime.probe_all().runs("cuda"):
        pytest.skip("CUDA runs here")
    code, report, stderr = bench(
        str(out),
        "--json",
        "--no-tune",
        "--model",
        "iris_rf",
        "--batch-sizes",
        "1",
        "--repeat",
        "2",
        "--providers",
        "cpu,cuda",
    )
    assert code == 0, stderr
    assert report is not None
    cuda = next(p for p in report["providers"] if p["name"] == "CUDAExecutionProvider")
    assert cuda["runs"] is False and cuda["reason"]
    assert "CUDAExecutionProvider does not run here" in stderr
    stored = json.loads((out / "manifest.json").read_text())["models"]
    bench_entry = next(m for m in stored if m["name"] == "iris_rf")["bench"]
    assert bench_entry["providers"]["CUDAExecutionProvider"].startswith("does not run here")
    # asking only for a provider that does not run is an error, in one line
    code, _, stderr = bench(str(out), "--no-tune", "--providers", "cuda", "--repeat", "2")
    assert code == 1
    assert stderr.count("\n") == 1 and "none of the requested providers runs here" in stderr


def test_a_tampered_artifact_fails_that_model_only(out: Path) -> None:
    artifact = out / "iris_rf.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    code, report, _ = bench(
        str(out), "--json", "--no-tune", "--model", "iris_rf", "--model", "cancer_logreg", *FAST
    )
    assert code == 1
    assert report is not None
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["iris_rf"]["status"] == "failed"
    assert "iris_rf.onnx changed since conversion (sha256 mismatch)" in by_name["iris_rf"]["error"]
    assert by_name["cancer_logreg"]["status"] == "ok"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "no model named 'nope'"),
        (["--batch-sizes", "1,x"], "--batch-sizes takes comma-separated whole numbers"),
        (["--batch-sizes", "0"], "--batch-sizes takes positive whole numbers"),
        (["--budget-s", "0"], "--budget-s must be positive"),
    ],
)
def test_usage_errors_exit_2_in_one_line(out: Path, args: list[str], message: str) -> None:
    code, _, stderr = bench(str(out), *args)
    assert code == 2
    assert message in stderr and stderr.count("\n") == 1


def test_missing_manifest_exits_2(tmp_path: Path) -> None:
    code, _, stderr = bench(str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere" in stderr and stderr.count("\n") == 1


def test_plot_writes_a_png(out: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    picture = tmp_path / "bench.png"
    code, _, stderr = bench(
        str(out), "--no-tune", "--model", "iris_rf", "--plot", str(picture), *FAST
    )
    assert code == 0, stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {picture}" in stderr  # says where the picture went


def test_plot_without_matplotlib_names_the_extra(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the [plot] extra were absent
    code, _, stderr = bench(str(out), "--plot", str(tmp_path / "x.png"), *FAST)
    assert code == 2
    assert "pip install 'alphapulse-onnx[plot]'" in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_table_output_lists_every_engine(out: Path) -> None:
    result = runner.invoke(app, ["bench", str(out), "--no-tune", "--model", "diabetes_gbr", *FAST])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("apo bench on")  # the table, on stdout
    assert "1/1 models benchmarked" in result.stderr


def test_models_that_failed_to_convert_are_reported_and_skipped(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["models"]:
        if entry["name"] == "cancer_logreg":
            entry.update(status="failed", stage="convert", error="cancer_logreg.pkl: broken")
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, report, stderr = bench(
        str(out), "--json", "--no-tune", "--model", "cancer_logreg", "--model", "iris_rf", *FAST
    )
    assert code == 0, stderr
    assert report is not None
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["cancer_logreg"]["status"] == "skipped"
    assert "conversion failed" in by_name["cancer_logreg"]["error"]
    assert by_name["cancer_logreg"]["results"] == []
    assert by_name["iris_rf"]["status"] == "ok"
    assert "cancer_logreg: not benchmarked" in stderr
