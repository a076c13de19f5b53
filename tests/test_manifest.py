"""The manifest: schema-valid, relative paths, lookups, and clear errors for bad files."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from alphapulse_onnx import manifest
from alphapulse_onnx.commands.convert import ConvertOptions, run
from alphapulse_onnx.errors import ManifestError
from alphapulse_onnx.parity import ParityReport
from alphapulse_onnx.runtime import SessionSettings


@pytest.fixture
def converted(registry: Path) -> Path:
    list(run(ConvertOptions(registry=registry, jobs=1)))
    return registry / "onnx" / "manifest.json"


def test_written_manifest_follows_the_json_schema(converted: Path) -> None:
    schema = json.loads(files("alphapulse_onnx").joinpath("manifest.schema.json").read_text())
    raw = json.loads(converted.read_text())
    jsonschema.validate(raw, schema)
    assert raw["schema_version"] == manifest.SCHEMA_VERSION
    entry = next(m for m in raw["models"] if m["name"] == "cancer_logreg")
    assert entry["source"]["path"] == "classifiers/cancer_logreg.pkl"
    assert entry["source"]["format"] == "pickle"
    assert entry["source"]["estimator"] == "sklearn.pipeline.Pipeline"
    assert entry["artifact"]["path"] == "classifiers/cancer_logreg.onnx"
    assert entry["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 30]}]
    assert entry["classes"] == [0, 1]
    assert entry["providers"] == ["CPUExecutionProvider"]
    assert entry["timings"]["convert_s"] > 0
    for key in ("apo", "python", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"):
        assert raw["tool"][key]


def test_round_trip_and_lookup_by_name_or_path(converted: Path) -> None:
    loaded = manifest.read(converted.parent)
    assert manifest.read(converted) == loaded
    assert loaded.entry("cancer_logreg").name == "cancer_logreg"
    assert loaded.entry("classifiers/cancer_logreg.pkl").name == "cancer_logreg"
    assert loaded.entry("classifiers/cancer_logreg").name == "cancer_logreg"
    with pytest.raises(KeyError, match="no model named"):
        loaded.entry("nope")
    again = manifest.Manifest(
        registry=loaded.registry, models=loaded.models, created=loaded.created, tool=loaded.tool
    )
    assert again.to_json() == json.loads(converted.read_text())
    assert manifest.registry_dir(converted, loaded) == converted.parent.parent.resolve()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "not valid JSON", id="bad-json"),
        pytest.param("[]", "not an apo manifest", id="not-object"),
        pytest.param('{"schema_version": 99, "models": []}', "schema_version 99", id="future"),
        pytest.param('{"schema_version": 1, "models": [{"name": "x"}]}', "model 'x'", id="entry"),
    ],
)
def test_bad_manifests_raise_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message) as info:
        manifest.read(path)
    assert "\n" not in str(info.value)


def test_missing_manifest_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="apo convert"):
        manifest.read(tmp_path)


# ---------------------------------------------------------------- what apo bench records

SETTINGS = {
    "intra_op_threads": 2,
    "inter_op_threads": 0,
    "execution_mode": "sequential",
    "graph_optimization": "basic",
    "allow_spinning": False,
}
SESSION = {
    **SETTINGS,
    "tuned": {
        "provider": "CPUExecutionProvider",
        "cpu": "test cpu",
        "cores": 2,
        "worst_regret": 1.25,
        "candidates": 9,
    },
    "bands": [
        {
            "batch_size": 1,
            "settings": SETTINGS,
            "p50_ms": 0.02,
            "default_p50_ms": 0.03,
            "sklearn_p50_ms": None,
        }
    ],
}
PARITY = {
    "passed": True,
    "probe": "statistics",
    "rows": 8,
    "max_abs_diff": 0.001,
    "max_rel_diff": None,
    "label_agreement": 1.0,
    "ties": 0,
    "mismatches": 0,
    "reason": None,
}
BENCH = {
    "measured": "2026-01-01T00:00:00+00:00",
    "batch_sizes": [1, 64],
    "budget_s": 0.5,
    "repeat": None,
    "apo_path": "store",
    "settings": SETTINGS,
    "providers": {"CPUExecutionProvider": "runs", "CUDAExecutionProvider": "does not run here: x"},
    "variants": {
        "fp16": {
            "name": "fp16",
            "status": "kept",
            "note": "2 of 4 nodes in FP16 (MatMul)",
            "nodes_total": 4,
            "nodes_changed": 2,
            "changed_ops": ["MatMul"],
            "tool": "onnxruntime",
            "parity": PARITY,
            "artifact": "m.fp16.onnx",
            "sha256": "ab",
        }
    },
    "results": [
        {
            "engine": "sklearn",
            "variant": "-",
            "provider": None,
            "batch_size": 1,
            "p50_ms": 0.5,
            "p99_ms": 0.7,
            "mean_ms": 0.55,
            "min_ms": 0.4,
            "calls": 3,
            "rows_per_s": 2000.0,
            "speedup_vs_sklearn": 1.0,
            "parity": "reference",
        }
    ],
}
MACHINE = {
    "cpu": "test cpu",
    "cores": 2,
    "platform": "Linux",
    "python": "3.11.0",
    "apo": "0.1.0",
    "providers": {"CPUExecutionProvider": {"runs": True, "reason": None, "device": "test cpu"}},
    "versions": {"onnxruntime": "1.0", "onnxruntime-gpu (wheel)": None},
    "measured": "2026-01-01T00:00:00+00:00",
    "load_average_1m": None,
}


def test_bench_records_are_typed_and_written_back_as_read(converted: Path) -> None:
    raw = json.loads(converted.read_text())
    raw["machine"] = MACHINE
    raw["models"][0].update(session=SESSION, bench=BENCH)
    converted.write_text(json.dumps(raw, indent=2) + "\n")
    loaded = manifest.read(converted)
    entry = loaded.models[0]
    assert entry.session is not None and entry.bench is not None and loaded.machine is not None
    assert entry.session_settings == entry.session.settings == entry.bench.settings
    assert entry.session_settings.intra_op_threads == 2
    assert entry.session.tuned is not None and entry.session.tuned.candidates == 9
    assert entry.session.bands[0].settings == entry.session_settings
    assert entry.bench.variants["fp16"].parity == ParityReport.from_json(PARITY)
    assert entry.bench.results[0].parity == "reference"
    assert loaded.machine.providers["CPUExecutionProvider"].runs is True
    manifest.write(converted, loaded)
    assert converted.read_text() == json.dumps(raw, indent=2) + "\n"
    schema = json.loads(files("alphapulse_onnx").joinpath("manifest.schema.json").read_text())
    jsonschema.validate(raw, schema)


def test_bench_records_of_0_1_name_the_store_by_its_old_name(converted: Path) -> None:
    raw = json.loads(converted.read_text())
    raw["models"][0]["bench"] = {**BENCH, "apo_path": "registry"}
    converted.write_text(json.dumps(raw))
    entry = manifest.read(converted).models[0]
    assert entry.bench is not None and entry.bench.apo_path == "store"


def test_bench_records_read_leniently(converted: Path) -> None:
    """Hand-edited records: unknown keys dropped, missing ones null, non-objects absent."""
    raw = json.loads(converted.read_text())
    first, second, third = raw["models"][:3]
    first["session"] = {"intra_op_threads": 1, "mine": True}
    first["bench"] = {"apo_path": "session", "results": [{"engine": "sklearn"}, 3], "x": 1}
    second["session"] = 5
    second["bench"] = []
    third["session"] = {}
    raw["machine"] = {"cpu": "hand-written"}
    converted.write_text(json.dumps(raw))
    loaded = manifest.read(converted)
    a, b, c = loaded.models[:3]
    assert a.session is not None and a.session.tuned is None and a.session.bands == ()
    assert a.session_settings == SessionSettings(intra_op_threads=1)
    assert a.bench is not None and a.bench.apo_path == "session" and a.bench.repeat is None
    assert [r.engine for r in a.bench.results] == ["sklearn"]
    assert a.bench.results[0].p50_ms is None
    assert b.session is None and b.bench is None and c.session is None
    assert b.session_settings == c.session_settings == SessionSettings()
    assert loaded.machine is not None and loaded.machine.cpu == "hand-written"
    written = loaded.to_json()
    # settings written back in full, the unknown key dropped
    assert written["models"][0]["session"] == SessionSettings(intra_op_threads=1).to_json()
    assert written["machine"]["cores"] is None
