"""What apo writes survives: a kill at any moment, a second writer, re-runs, half-written files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from typer.testing import CliRunner

from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx._fsutil import atomic_write_bytes, sha256_file
from alphapulse_onnx.cli import app
from alphapulse_onnx.errors import LockError
from alphapulse_onnx.lock import LOCK_NAME, OutputLock

from .conftest import save_model

runner = CliRunner()
APO = [sys.executable, "-m", "alphapulse_onnx"]


def _ten_models() -> dict[str, Any]:
    X, y = load_iris(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True)
    return {
        "a_logreg.joblib": LogisticRegression(max_iter=500).fit(X, y),
        "b_rf.joblib": RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(
            X, y
        ),
        "c_tree.pkl": DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y),
        "d_gnb.pkl": GaussianNB().fit(X, y),
        "e_knn.joblib": KNeighborsClassifier().fit(X, y),
        "f_ridge.joblib": Ridge().fit(Xd, yd),
        "g_linreg.pkl": LinearRegression().fit(Xd, yd),
        "h_gbr.joblib": GradientBoostingRegressor(n_estimators=10, random_state=0).fit(Xd, yd),
        "i_treereg.joblib": DecisionTreeRegressor(max_depth=5, random_state=0).fit(Xd, yd),
        "j_pipe.pkl": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y),
    }


@pytest.fixture(scope="module")
def ten_models() -> dict[str, Any]:
    return _ten_models()


@pytest.fixture
def big_registry(tmp_path: Path, ten_models: dict[str, Any]) -> Path:
    root = tmp_path / "registry"
    for rel, model in ten_models.items():
        save_model(model, root / rel)
    return root


def _assert_consistent(out: Path) -> int:
    """The manifest (when there is one) parses, and every artifact it lists matches its sha256."""
    assert not list(out.rglob("*.onnx.tmp"))  # temp names never look like artifacts
    path = out / "manifest.json"
    if not path.exists():
        return 0
    manifest = manifest_io.read(path)  # raises on a half-written file
    ok = 0
    for entry in manifest.models:
        if entry.ok:
            assert entry.artifact is not None
            artifact = out / entry.artifact.path
            assert artifact.is_file(), entry.name
            assert sha256_file(artifact) == entry.artifact.sha256, entry.name
            ok += 1
    return ok


def _start_convert(registry: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*APO, "convert", str(registry), "-j", "1", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _artifacts(out: Path) -> int:
    return len(list(out.rglob("*.onnx"))) if out.exists() else 0


def _kill_when(process: subprocess.Popen[str], out: Path, artifacts: int,
               timeout: float = 120) -> bool:  # fmt: skip
    """SIGKILL ``process`` once ``out`` holds ``artifacts`` .onnx files; False if it ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if _artifacts(out) >= artifacts:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return True
        time.sleep(0.005)
    process.communicate()
    return False


def _freeze_once_locked(process: subprocess.Popen[str], out: Path) -> bool:
    """SIGSTOP ``process`` as soon as it holds the lock (its pid is in the lock file)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        lock = out / LOCK_NAME
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == str(process.pid):
                process.send_signal(signal.SIGSTOP)
                return True
        time.sleep(0.002)
    return False


def _second_convert_meets_the_lock(registry: Path, out: Path, holder: int) -> None:
    second = runner.invoke(app, ["convert", str(registry), "-j", "1"])
    assert second.exit_code == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"another apo run (pid {holder}) is writing to this folder" in lines[0]
    assert str(out) in lines[0]
    assert "--out" in lines[0]


def test_kill_during_convert_leaves_a_consistent_registry_and_the_next_run_finishes(
    big_registry: Path,
) -> None:
    """Also the lock: while the last killed run is mid-way, a concurrent convert is turned away."""
    out = big_registry / "onnx"
    killed = 0
    # Kill before any work, then once the 3rd and the 7th artifact land (the same out folder each
    # time, so every run starts from what the killed one left).
    for threshold in (0, 3, 7):
        process = _start_convert(big_registry)
        if threshold == 0:
            time.sleep(0.3)
            process.send_signal(signal.SIGKILL)
            process.communicate()
        else:
            if threshold == 7:
                assert _freeze_once_locked(process, out), "the run ended before it took the lock"
                try:
                    _second_convert_meets_the_lock(big_registry, out, process.pid)
                finally:
                    process.send_signal(signal.SIGCONT)
            killed += _kill_when(process, out, threshold)
        _assert_consistent(out)
    assert killed >= 1  # a run was really interrupted mid-way, not merely finished
    final = runner.invoke(app, ["convert", str(big_registry), "-j", "1", "--json"])
    assert final.exit_code == 0, final.stderr
    summary = json.loads(final.stdout)
    assert (summary["ok"], summary["failed"]) == (10, 0)
    # What a killed run had recorded is not redone (the manifest is flushed every couple of
    # seconds, so artifacts finished since the last flush are rebuilt, identically).
    assert summary["reused"] >= 1
    assert _assert_consistent(out) == 10
    assert not list(out.rglob(".*.tmp"))
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0


def test_a_second_convert_is_refused_not_queued(big_registry: Path) -> None:
    out = big_registry / "onnx"
    with OutputLock(out):  # another writer, in this process: the CLI must refuse, not wait
        _second_convert_meets_the_lock(big_registry, out, os.getpid())
    assert runner.invoke(app, ["convert", str(big_registry), "-j", "1"]).exit_code == 0


def test_lock_is_released_and_reentrant_across_runs(tmp_path: Path) -> None:
    with OutputLock(tmp_path), pytest.raises(LockError, match="another apo run"):
        OutputLock(tmp_path).__enter__()
    with OutputLock(tmp_path):  # released on exit
        pass


def test_lock_removes_half_written_temp_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    stale = [
        tmp_path / ".model.onnx.abc12_9z.tmp",
        tmp_path / "sub" / ".manifest.json.x1y2z3w4.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half")
    keep = [tmp_path / "notes.tmp", tmp_path / ".notes.tmp", tmp_path / ".my.draft.tmp"]
    for path in keep:
        path.write_text("a user's file")
    with OutputLock(tmp_path) as lock:
        assert lock.removed_temp_files == 2
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in keep)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "artifact.onnx"
    target.write_bytes(b"old")
    blocker = tmp_path / "folder.onnx"
    blocker.mkdir()  # renaming a file over a folder fails after the temp file is written
    with pytest.raises(OSError):
        atomic_write_bytes(blocker, b"new")
    assert blocker.is_dir()
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.onnx", "folder.onnx"]


def test_atomic_write_killed_midway_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "big.onnx"
    target.write_bytes(b"old contents")
    script = (
        "import sys, pathlib\n"
        "from alphapulse_onnx._fsutil import atomic_write_bytes\n"
        "data = b'x' * (1 << 26)\n"
        "while True:\n"
        "    atomic_write_bytes(pathlib.Path(sys.argv[1]), data)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(target)])
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not list(tmp_path.glob(".big.onnx.*.tmp")):
            time.sleep(0.001)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    data = target.read_bytes()
    assert data in (b"old contents", b"x" * (1 << 26))  # never a mix, never empty
    with OutputLock(tmp_path) as lock:  # the next writer sweeps what the killed one left
        assert lock.removed_temp_files <= 1
    assert not list(tmp_path.glob(".*.tmp"))


# --- incremental builds -------------------------------------------------------------------------


def _convert_json(registry: Path, *extra: str) -> dict[str, Any]:
    result = runner.invoke(app, ["convert", str(registry), "-j", "1", "--json", *extra])
    assert result.exit_code == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def _reused(summary: dict[str, Any]) -> set[str]:
    return {e["name"] for e in summary["entries"] if e["reused"]}


def test_incremental_rebuilds_only_what_changed(registry: Path, iris: Any) -> None:
    names = {"iris_rf", "cancer_logreg", "diabetes_gbr"}
    first = _convert_json(registry)
    assert _reused(first) == set()
    out = registry / "onnx"
    artifact_times = {p.name: p.stat().st_mtime_ns for p in out.rglob("*.onnx")}

    again = _convert_json(registry)
    assert _reused(again) == names
    assert again["reused"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*.onnx")} == artifact_times
    table = runner.invoke(app, ["convert", str(registry), "-j", "1"])
    assert "3 reused, unchanged" in table.stderr

    # Touching a file without changing it is not a change: the content hash decides.
    source = registry / "iris_rf.joblib"
    os.utime(source, ns=(time.time_ns(), time.time_ns()))
    assert _reused(_convert_json(registry)) == names

    # Re-saving one model with other contents rebuilds that one only.
    X, y = iris
    save_model(RandomForestClassifier(n_estimators=7, random_state=1).fit(X, y), source)
    changed = _convert_json(registry)
    assert _reused(changed) == names - {"iris_rf"}
    by_name = {e["name"]: e for e in changed["entries"]}
    assert by_name["iris_rf"]["status"] == "ok"

    forced = _convert_json(registry, "--force")
    assert _reused(forced) == set()
    assert forced["reused"] == 0
    assert _assert_consistent(out) == 3


def test_a_tampered_artifact_is_rebuilt_not_reused(registry: Path) -> None:
    _convert_json(registry)
    artifact = registry / "onnx" / "iris_rf.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    rerun = _convert_json(registry)
    assert "iris_rf" not in _reused(rerun)
    assert _assert_consistent(registry / "onnx") == 3


def test_changed_options_rebuild_everything(registry: Path) -> None:
    _convert_json(registry)
    assert _reused(_convert_json(registry, "--atol", "1e-3")) == set()


def test_interrupted_manifest_write_keeps_previous_manifest(registry: Path) -> None:
    _convert_json(registry)
    path = registry / "onnx" / "manifest.json"
    before = path.read_bytes()
    (registry / "onnx" / ".manifest.json.dead1234.tmp").write_bytes(before[: len(before) // 2])
    assert manifest_io.read(path).models  # the half-written temp file is not the manifest
    again = _convert_json(registry)
    assert again["reused"] == 3
    assert not (registry / "onnx" / ".manifest.json.dead1234.tmp").exists()
    np.testing.assert_equal(json.loads(path.read_bytes())["models"][0]["name"],
                            json.loads(before)["models"][0]["name"])  # fmt: skip


def test_validate_waits_for_no_writer_but_readers_share(tmp_path: Path) -> None:
    """validate shares the folder's lock: refused while convert writes, fine beside readers."""
    from alphapulse_onnx.commands import validate
    from alphapulse_onnx.commands.events import Started
    from alphapulse_onnx.errors import LockError
    from alphapulse_onnx.lock import OutputLock

    folder = tmp_path / "onnx"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"schema_version": 1, "registry": "..", "models": []}')
    options = validate.ValidateOptions(target=folder)
    with OutputLock(folder), pytest.raises(LockError, match="writing to this folder"):
        list(validate.run(options))
    with OutputLock(folder, shared=True):
        assert list(validate.run(options)) == [Started(0)]
