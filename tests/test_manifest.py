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
