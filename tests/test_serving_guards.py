"""Serving only what was converted, and never leaving a caller waiting.

The scikit-learn fallback serves a source file only when its sha256 is the manifest's; manifest
paths stay inside the manifest's folder; a name that matches two converted files is ambiguous;
``BatchPredictor.stop()`` racing the first use of a model still answers every caller.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from alphapulse_onnx import BatchPredictor, Store
from alphapulse_onnx.cli import app
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.errors import ManifestError, TamperError, UnknownModelError

runner = CliRunner()


def _convert(root: Path) -> Path:
    options = ConvertOptions(registry=root, jobs=1)
    list(convert_run(options))
    return options.out_dir


@pytest.fixture
def served(tmp_path: Path, iris: Any) -> tuple[Path, Any, Any]:
    X, y = iris
    root = tmp_path / "registry"
    root.mkdir()
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    joblib.dump(forest, root / "forest.joblib")
    return root, forest, X


def test_fallback_refuses_a_replaced_source(served: tuple[Path, Any, Any], iris: Any) -> None:
    root, forest, X = served
    out = _convert(root)
    (out / "forest.onnx").unlink()  # the artifact is gone: scikit-learn would serve
    # The unchanged source is still served by the fallback, with scikit-learn's answers.
    np.testing.assert_array_equal(Store.open(out).predict("forest", X[:10]), forest.predict(X[:10]))
    other = LogisticRegression(max_iter=300).fit(X, (iris[1] == 0).astype(int))
    joblib.dump(other, root / "forest.joblib")  # replaced after convert
    with pytest.raises(TamperError, match="sha256"):
        Store.open(out).predict("forest", X[:10])
    result = runner.invoke(
        app, ["predict", "--store", str(out), "forest", "-"], input="5.1,3.5,1.4,0.2\n"
    )
    assert result.exit_code == 1, result.stderr  # a store that is not as converted, as validate
    assert "forest" in result.stderr and "sha256" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("path", ["../forest.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_manifest_paths_stay_inside(served: tuple[Path, Any, Any], path: str) -> None:
    root, _, _ = served
    out = _convert(root)
    manifest = out / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["models"][0]["artifact"]["path"] = path
    manifest.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="leaves the manifest's folder"):
        Store.open(out)
    result = runner.invoke(
        app, ["predict", "--store", str(out), "forest", "-"], input="5.1,3.5,1.4,0.2\n"
    )
    assert result.exit_code == 2
    assert "leaves the manifest's folder" in result.stderr


def test_source_path_outside_the_registry_is_refused(served: tuple[Path, Any, Any]) -> None:
    root, _, _ = served
    out = _convert(root)
    manifest = out / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["models"][0]["source"]["path"] = "../../elsewhere/model.joblib"
    manifest.write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="leaves the registry"):
        Store.open(out)


def test_a_name_matching_two_models_is_ambiguous(tmp_path: Path, iris: Any) -> None:
    X, y = iris
    root = tmp_path / "registry"
    root.mkdir()
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), root / "m.joblib")
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    joblib.dump(forest, root / "m.pkl")
    out = _convert(root)
    names = {e.name for e in Store.open(out).manifest.models}
    assert len(names) == 2, names
    with pytest.raises(UnknownModelError, match="ambiguous"):
        Store.open(out).predict("m", X[:2])
    result = runner.invoke(
        app, ["predict", "--store", str(out), "m", "-"], input="5.1,3.5,1.4,0.2\n"
    )
    assert result.exit_code == 2
    assert "ambiguous" in result.stderr
    for name in names:  # both listed, and each still served by its own name
        assert name in result.stderr
        assert len(Store.open(out).predict(name, X[:2])) == 2


def test_stop_racing_first_use_answers_every_caller(tmp_path: Path, iris: Any) -> None:
    """Callers that start while stop() runs, their model still loading, are all answered."""
    X, y = iris
    root = tmp_path / "registry"
    root.mkdir()
    for name in ("a", "b"):
        joblib.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
                    root / f"{name}.joblib")  # fmt: skip
    out = _convert(root)
    expected = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y).predict(X)
    rng = random.Random(0)

    async def trial(seed: int) -> list[Any]:
        store = Store.open(out)  # fresh: every model's first use loads it
        bp = BatchPredictor(store, max_batch_size=8, max_delay_ms=1.0)
        await bp.start()

        async def call(i: int) -> Any:
            try:
                return ("ok", i, await bp.predict("ab"[i % 2], X[i : i + 2]))
            except RuntimeError as exc:  # arrived after stop(): told so, not left waiting
                return ("stopped", i, str(exc))

        tasks = [asyncio.ensure_future(call(i)) for i in range(40)]
        for _ in range(seed % 7):  # stop at a different moment of the first use each time
            await asyncio.sleep(0)
        await bp.stop()
        # Once stop() has returned, every caller ends (an answer or an error), none hangs.
        done, pending = await asyncio.wait(tasks, timeout=20)
        assert not pending, f"trial {seed}: {len(pending)} callers still waiting after stop()"
        return [t.result() for t in done]

    answered = 0
    for seed in range(30):
        for status, i, value in asyncio.run(trial(seed + rng.randrange(1000))):
            if status == "ok":
                np.testing.assert_array_equal(value, expected[i : i + 2])
                answered += 1
            else:
                assert "stopped" in value
    assert answered > 0
