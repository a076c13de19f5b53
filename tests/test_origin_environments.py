"""Origin checks against real old scikit-learn releases, in real environments made by apo.

The environments are made once per test session in a cache that outlives it
(``APO_ORIGIN_CACHE``, else ``.cache/apo-origin`` in the repository, git-ignored): the first run
installs two old releases from the package index (under a minute each); later runs reuse them.
Models are trained and pickled inside those environments by the old releases themselves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from alphapulse_onnx import loading, probing
from alphapulse_onnx.cli import app, normalize_args
from alphapulse_onnx.commands import convert as convert_command
from alphapulse_onnx.commands.events import EnvironmentStarted
from alphapulse_onnx.loading import upgrades
from alphapulse_onnx.manifest import ManifestEntry
from alphapulse_onnx.origin import check as origin_check
from alphapulse_onnx.origin import client, environments, pins
from alphapulse_onnx.origin.environments import Environment
from alphapulse_onnx.signature import infer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BEFORE_NUMPY_2, AFTER_NUMPY_2 = "1.3.2", "1.6.1"
OLD_FIXTURE = Path(__file__).parent / "data" / "origin" / "logreg_sklearn_1_0_2.pkl"
runner = CliRunner()

# Run by the old release's own Python: a forest (pickle) and a scaled logistic regression
# (joblib), fitted on the same rows every time.
TRAIN = """
import pickle, sys
import joblib, numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
rng = np.random.RandomState(0)
X = rng.normal(size=(300, 5)) * [1.0, 3.0, 0.5, 10.0, 1.0]
y = (X[:, 0] + X[:, 1] ** 2 / 9 > 0.5).astype(int) + (X[:, 2] > 0.6).astype(int)
forest = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0).fit(X, y)
with open(sys.argv[1] + "/forest.pkl", "wb") as handle:
    pickle.dump(forest, handle, protocol=4)
pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
joblib.dump(pipeline, sys.argv[1] + "/scaled_logreg.joblib")
"""


@pytest.fixture(scope="session")
def old_models(
    old_release: Callable[[str], Environment], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """A folder of models trained and saved by an old release (once per release)."""
    made: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in made:
            folder = tmp_path_factory.mktemp(f"saved_by_{version}")
            python = old_release(version).python
            subprocess.run([str(python), "-I", "-c", TRAIN, str(folder)], check=True)
            made[version] = folder
        return made[version]

    return get


def _registry(source: Path, tmp_path: Path, *names: str) -> Path:
    registry = tmp_path / "registry"
    registry.mkdir()
    for path in sorted(source.iterdir()):
        if not names or path.name in names:
            shutil.copy(path, registry / path.name)
    return registry


def _invoke(*args: str) -> Any:
    return runner.invoke(app, normalize_args(list(args)))


@pytest.mark.parametrize("version", [BEFORE_NUMPY_2, AFTER_NUMPY_2])
def test_a_forest_and_a_pipeline_saved_by_an_old_release_pass(
    version: str, old_models: Callable[[str], Path], origin_cache: Path, tmp_path: Path
) -> None:
    registry = _registry(old_models(version), tmp_path)
    result = _invoke(
        "convert", str(registry), "--origin", "--origin-cache", str(origin_cache), "--json"
    )
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
    assert {m["name"] for m in manifest["models"]} == {"forest", "scaled_logreg"}
    for model in manifest["models"]:
        origin = model["validation"]["origin"]
        assert origin["status"] == "passed", origin
        assert origin["versions"]["scikit-learn"] == version
        assert origin["environment"].startswith(f"scikit-learn-{version}-py")
        assert origin["rows"] == model["validation"]["rows"]
        assert origin["label_agreement"] == 1.0 and origin["mismatches"] == 0
        numpy = pins.release(origin["versions"]["numpy"])
        assert (numpy < (2,)) if version == BEFORE_NUMPY_2 else (numpy >= (2,))
    summary = json.loads(result.stdout)
    assert [e["origin"]["status"] for e in summary["entries"]] == ["passed", "passed"]

    validated = _invoke(
        "validate", str(registry), "--origin=require", "--origin-cache", str(origin_cache), "--json"
    )
    assert validated.exit_code == 0, validated.stderr
    results = json.loads(validated.stdout)["results"]
    assert [r["origin"]["status"] for r in results] == ["passed", "passed"]


def test_an_upgrade_that_changes_the_answers_is_caught(
    monkeypatch: pytest.MonkeyPatch,
    old_models: Callable[[str], Path],
    origin_cache: Path,
    tmp_path: Path,
) -> None:
    """A wrong upgrade in apo's loader: today's model (and so its artifact) answers otherwise
    than the model saved. Today's parity cannot see it; the origin check must."""
    real_upgrade = upgrades.upgrade

    def wrong_upgrade(obj: Any, *args: Any, **kwargs: Any) -> Any:
        obj = real_upgrade(obj, *args, **kwargs)
        for _, step in getattr(obj, "steps", ()):
            if hasattr(step, "coef_"):
                step.coef_ = step.coef_ * 1.5
        return obj

    monkeypatch.setattr(upgrades, "upgrade", wrong_upgrade)
    registry = _registry(old_models(BEFORE_NUMPY_2), tmp_path, "scaled_logreg.joblib")
    result = _invoke(
        "convert", str(registry), "--origin", "--origin-cache", str(origin_cache), "--jobs", "1"
    )
    assert result.exit_code == 1
    entry = json.loads((registry / "onnx" / "manifest.json").read_text())["models"][0]
    assert entry["status"] == "failed" and entry["stage"] == "origin"
    assert entry["artifact"] is None and not (registry / "onnx" / "scaled_logreg.onnx").exists()
    assert entry["validation"]["passed"]  # today's parity: the artifact is today's model
    origin = entry["validation"]["origin"]
    assert origin["status"] == "failed" and origin["max_abs_diff"] > 0.01
    error = entry["error"]
    assert error.startswith(
        "scaled_logreg.joblib: Pipeline: origin check failed: the artifact differs from the "
        "model as scikit-learn 1.3.2 (numpy 1."
    )
    assert "probabilities differ by up to" in error
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {error}"] and "Traceback" not in result.stderr


def test_a_release_without_a_wheel_for_this_python_is_skipped(tmp_path: Path) -> None:
    """Skipped with the installer's reason; ``--origin=require`` makes that a failure (without
    it, a skipped check passes: see test_origin_check's offline test)."""
    registry = tmp_path / "registry"
    registry.mkdir()
    shutil.copy(OLD_FIXTURE, registry / "old_logreg.pkl")
    cache = tmp_path / "cache"
    reason = f"no wheel of scikit-learn 1.0.2 for Python {environments.PYTHON}"
    result = _invoke("convert", str(registry), "--origin=require", "--origin-cache", str(cache))
    assert result.exit_code == 1
    assert f"warning: origin: {reason}; the origin checks that need it are skipped" in (
        result.stderr
    )
    assert (
        f"error: old_logreg.pkl: LogisticRegression: origin check skipped, and "
        f"--origin=require: {reason}"
    ) in result.stderr
    entry = json.loads((registry / "onnx" / "manifest.json").read_text())["models"][0]
    origin = entry["validation"]["origin"]
    assert origin == {
        **origin,
        "status": "skipped",
        "reason": reason,
        "versions": {"scikit-learn": "1.0.2"},
    }
    assert [p.name for p in cache.iterdir()] == [".locks"]  # nothing half-made is left


def test_a_second_run_makes_no_environment(
    old_models: Callable[[str], Path], origin_cache: Path, tmp_path: Path
) -> None:
    registry = _registry(old_models(BEFORE_NUMPY_2), tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in origin_cache.iterdir()}
    options = convert_command.ConvertOptions(
        registry=registry, force=True, origin=origin_check.OriginOptions(cache=origin_cache)
    )
    events = list(convert_command.run(options))
    assert not [e for e in events if isinstance(e, EnvironmentStarted)]
    entries = [e for e in events if isinstance(e, ManifestEntry)]
    assert [e.origin.status for e in entries if e.origin] == ["passed", "passed"]
    assert {p.name: p.stat().st_mtime_ns for p in origin_cache.iterdir()} == before


def test_the_worker_answers_as_the_old_release_does(
    old_release: Callable[[str], Environment], old_models: Callable[[str], Path]
) -> None:
    """apo's loader inside the old environment gives the old release's own answers: the same as
    unpickling there with pickle itself (the old release's trusted path)."""
    environment = old_release(BEFORE_NUMPY_2)
    folder = old_models(BEFORE_NUMPY_2)
    rows = np.random.default_rng(1).normal(size=(64, 5)) * 4
    np.save(folder / "rows.npy", rows)
    script = (
        "import pickle, sys, numpy as np\n"
        "model = pickle.load(open(sys.argv[1], 'rb'))\n"
        "np.save(sys.argv[2], model.predict_proba(np.load(sys.argv[3])))\n"
    )
    plain = folder / "plain.npy"
    subprocess.run(
        [
            str(environment.python),
            "-I",
            "-c",
            script,
            str(folder / "forest.pkl"),
            str(plain),
            str(folder / "rows.npy"),
        ],
        check=True,
    )
    today = loading.load(folder / "forest.pkl")
    signature = infer(today.estimator)
    answers, versions = client.answers(
        environment,
        folder / "forest.pkl",
        signature,
        probing.from_sample(rows),
        loading.DEFAULT_POLICY,
    )
    assert versions["scikit-learn"] == BEFORE_NUMPY_2
    assert answers.probabilities is not None
    np.testing.assert_array_equal(answers.probabilities, np.load(plain))
