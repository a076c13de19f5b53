"""``--engine dask``: a real LocalCluster of worker processes scores generated Parquet (issue 7)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

from distributed import Client, LocalCluster, WorkerPlugin
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

from alphapulse_onnx import distributed as apo_dask
from alphapulse_onnx.commands import convert
from alphapulse_onnx.errors import DataFileError, InputError, UnknownModelError
from alphapulse_onnx.manifest import read as read_manifest

FEATURES = [f"f{i}" for i in range(6)]
SYMBOLS = ("ADA", "BTC", "ETH")
FILES_PER_SYMBOL = 3
ROWS_PER_FILE = 700


def _rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    # float32-representable values: the artifact compares in float32, scikit-learn in float64.
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32).astype(np.float64)
    return pd.DataFrame(X, columns=FEATURES)


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = _rows(rng, 1500)
    y_cls = np.where(X["f0"] + X["f1"] * X["f2"] > 0.3, "up", "down")
    y_cls[X["f3"] > 1.2] = "flat"
    y_reg = X["f0"] * 2 - X["f4"] ** 2 + rng.normal(scale=0.1, size=len(X))
    return {
        "forest": RandomForestClassifier(n_estimators=12, max_depth=6, random_state=0).fit(
            X, y_cls
        ),
        "boost": GradientBoostingRegressor(n_estimators=15, max_depth=3, random_state=0).fit(
            X, y_reg
        ),
    }


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Any]) -> Path:
    import joblib

    root = tmp_path_factory.mktemp("registry")
    for name, model in models.items():
        joblib.dump(model, root / f"{name}.joblib")
    options = convert.ConvertOptions(registry=root, jobs=1)
    entries = list(convert.run(options))[1:]
    assert all(e.ok for e in entries), [e.error for e in entries]  # type: ignore[union-attr]
    return options.manifest_path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hive-partitioned Parquet dataset: symbol=XXX/part-N.parquet, with an id column."""
    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(1)
    next_id = 0
    for symbol in SYMBOLS:
        folder = root / f"symbol={symbol}"
        folder.mkdir()
        for n in range(FILES_PER_SYMBOL):
            frame = _rows(rng, ROWS_PER_FILE)
            frame.insert(0, "id", np.arange(next_id, next_id + ROWS_PER_FILE, dtype=np.int64))
            next_id += ROWS_PER_FILE
            frame.to_parquet(folder / f"part-{n}.parquet", index=False)
    return root


N_ROWS = len(SYMBOLS) * FILES_PER_SYMBOL * ROWS_PER_FILE
N_FILES = len(SYMBOLS) * FILES_PER_SYMBOL


def _all_input(dataset: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted(dataset.rglob("*.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values("id", ignore_index=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """Two worker processes with one thread each, shared by the tests of this module."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local, Client(local) as client:  # fmt: skip
        yield local, client


def _sha(manifest: Path, name: str) -> str:
    artifact = read_manifest(manifest).entry(name).artifact
    assert artifact is not None
    return artifact.sha256


def test_every_row_matches_sklearn_and_sessions_open_once_per_worker(
    cluster: tuple[LocalCluster, Client],
    manifest: Path,
    dataset: Path,
    models: dict[str, Any],
    tmp_path: Path,
) -> None:
    local, client = cluster
    out = tmp_path / "scored"
    progress: list[tuple[int, int]] = []
    result = apo_dask.score_dataset(
        manifest, "forest", dataset, out, scheduler=local.scheduler_address, keep_columns=True,
        on_progress=lambda done, total: progress.append((done, total)),
    )  # fmt: skip
    assert result.rows == N_ROWS
    assert result.partitions == N_FILES
    assert progress[-1] == (N_FILES, N_FILES)
    assert sorted(p.name for p in out.glob("part-*.parquet")) == list(result.files)
    assert not list(out.glob(".*"))  # no temp files left

    scored = pd.read_parquet(out).sort_values("id", ignore_index=True)
    expected = _all_input(dataset)
    assert scored["id"].tolist() == list(range(N_ROWS))  # each row exactly once
    assert {"symbol", *FEATURES, "label", "proba_down", "proba_flat", "proba_up"} <= set(scored)
    forest = models["forest"]
    X = expected[FEATURES]
    assert (scored["label"].to_numpy() == forest.predict(X)).all()
    proba = scored[[f"proba_{c}" for c in forest.classes_]].to_numpy()
    np.testing.assert_allclose(proba, forest.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(scored[FEATURES].to_numpy(), X.to_numpy())

    sha = _sha(manifest, "forest")
    stats = client.run(apo_dask.session_stats)
    scored_per_worker = [s["partitions_scored"].get(sha, 0) for s in stats.values()]
    sessions_per_worker = [s["sessions_created"].get(sha, 0) for s in stats.values()]
    assert sum(scored_per_worker) == N_FILES
    # Every worker that scored partitions opened the session once, however many it scored.
    assert sessions_per_worker == [1 if n else 0 for n in scored_per_worker]
    assert max(scored_per_worker) >= 2
    assert all(pid != os.getpid() for pid in (s["pid"] for s in stats.values()))


def test_regressor_repartitioned_keeps_input_order(
    cluster: tuple[LocalCluster, Client],
    manifest: Path,
    dataset: Path,
    models: dict[str, Any],
    tmp_path: Path,
) -> None:
    local, _ = cluster
    out = tmp_path / "scored"
    result = apo_dask.score_dataset(
        manifest, "boost", str(dataset / "symbol=*" / "*.parquet"), out,
        scheduler=local.scheduler_address, partitions=4,
    )  # fmt: skip
    assert result.partitions == 4
    assert result.columns == ("prediction",)
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["prediction"]
    # Without --keep-columns, rows come out in input order: partition by partition.
    inputs = pd.concat(
        [pd.read_parquet(p) for p in sorted(dataset.glob("symbol=*/*.parquet"))], ignore_index=True
    )
    np.testing.assert_allclose(
        scored["prediction"].to_numpy(),
        models["boost"].predict(inputs[FEATURES]),
        rtol=1e-5,
        atol=1e-5,
    )

    # A rerun with fewer partitions replaces the earlier run's parts instead of mixing with them.
    again = apo_dask.score_dataset(
        manifest, "boost", str(dataset / "symbol=*" / "*.parquet"), out,
        scheduler=local.scheduler_address, partitions=2,
    )  # fmt: skip
    assert sorted(p.name for p in out.glob("part-*")) == list(again.files)
    assert len(pd.read_parquet(out)) == N_ROWS


def test_embedded_local_cluster_reads_a_csv_folder(
    manifest: Path, models: dict[str, Any], tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "csv"
    folder.mkdir()
    frames = []
    for n in range(3):
        frame = _rows(rng, 200)[list(reversed(FEATURES))]  # columns matched by name, any order
        frame.to_csv(folder / f"day-{n}.csv", index=False, float_format="%.9g")
        frames.append(frame)
    result = apo_dask.score_dataset(manifest, "forest", folder, tmp_path / "out", n_workers=1,
                                    proba=False)  # fmt: skip
    assert result.scheduler == "local (1 worker processes)"
    assert result.workers == 1
    assert (
        set(result.worker_peak_rss_bytes.values())
        and min(result.worker_peak_rss_bytes.values()) > 0
    )
    scored = pd.read_parquet(tmp_path / "out")
    assert list(scored.columns) == ["label"]
    expected = models["forest"].predict(pd.concat(frames, ignore_index=True)[FEATURES])
    assert (scored["label"].to_numpy() == expected).all()


def test_bad_requests_fail_before_any_work(manifest: Path, dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="nope"):
        apo_dask.score_dataset(manifest, "nope", dataset, tmp_path / "a")
    narrow = tmp_path / "narrow.parquet"
    _rows(np.random.default_rng(3), 5).drop(columns=["f5"]).to_parquet(narrow)
    with pytest.raises(DataFileError, match=r"missing feature columns.*f5"):
        apo_dask.score_dataset(manifest, "forest", narrow, tmp_path / "b")
    with pytest.raises(InputError, match="no files match"):
        apo_dask.score_dataset(manifest, "forest", str(tmp_path / "none-*.parquet"), tmp_path / "c")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match="did not write"):
        apo_dask.score_dataset(manifest, "forest", dataset, busy)
    assert (busy / "notes.txt").exists()


def test_without_the_extra_it_says_how_to_install(
    manifest: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(InputError) as caught:
        apo_dask.score_dataset(manifest, "forest", dataset, tmp_path / "out")
    assert "pip install 'alphapulse-onnx[dask]'" in str(caught.value)
    assert "\n" not in str(caught.value)


class KillOnce(WorkerPlugin):
    """SIGKILLs the worker process as its third scoring task starts (once per marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.started = 0

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or "apo-score" not in str(key):
            return
        self.started += 1
        if self.started < 3:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # another worker was already killed
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_run_loses_and_duplicates_no_row(
    cluster: tuple[LocalCluster, Client],
    manifest: Path,
    dataset: Path,
    models: dict[str, Any],
    tmp_path: Path,
) -> None:
    local, client = cluster
    marker = tmp_path / "killed"
    client.register_plugin(KillOnce(str(marker)), name="apo-kill-once")
    try:
        result = apo_dask.score_dataset(
            manifest, "forest", dataset, tmp_path / "out", scheduler=local.scheduler_address,
            keep_columns=True,
        )  # fmt: skip
    finally:
        client.unregister_worker_plugin("apo-kill-once")
    killed_pid = int(marker.read_text())
    assert killed_pid not in {s["pid"] for s in client.run(apo_dask.session_stats).values()}

    out = tmp_path / "out"
    assert result.rows == N_ROWS
    assert sorted(p.name for p in out.glob("part-*.parquet")) == list(result.files)
    assert len(result.files) == N_FILES
    assert not list(out.glob(".*"))  # the killed attempt's temp file, if any, is gone
    scored = pd.read_parquet(out).sort_values("id", ignore_index=True)
    assert scored["id"].tolist() == list(range(N_ROWS))  # nothing lost, nothing twice
    expected = _all_input(dataset)
    assert (scored["label"].to_numpy() == models["forest"].predict(expected[FEATURES])).all()
