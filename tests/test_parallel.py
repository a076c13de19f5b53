"""``apo convert --jobs N``: worker processes, crash isolation, serial-equal manifests (issue 7)."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import operator
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, cast

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from alphapulse_onnx import parallel
from alphapulse_onnx.commands import convert
from alphapulse_onnx.commands.events import Started
from alphapulse_onnx.loading import TrustPolicy
from alphapulse_onnx.manifest import ManifestEntry

PLUGIN = "apo_crash_plugin"

# A converter plugin whose converter kills its own process for a marker estimator type, the way a
# segfaulting native converter or the OOM killer would. On disk, so spawned workers import it.
PLUGIN_SOURCE = textwrap.dedent(
    '''
    """Test plugin: CrashingClassifier's converter kills its process as ``mode`` says."""
    import os
    import signal
    from pathlib import Path

    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from skl2onnx.operator_converters.linear_classifier import convert_sklearn_linear_classifier
    from sklearn.linear_model import LogisticRegression


    class CrashingClassifier(LogisticRegression):
        """A logistic regression whose ``mode`` attribute says how its conversion dies."""


    def _convert(scope, operator, container):
        mode = getattr(operator.raw_operator, "mode", "")
        if mode == "exit":
            os._exit(3)
        if mode == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode.startswith("flaky:"):  # killed the first time only (an OOM bystander)
            marker = Path(mode.split(":", 1)[1])
            if not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        convert_sklearn_linear_classifier(scope, operator, container)


    update_registered_converter(
        CrashingClassifier,
        "ApoTestCrashingClassifier",
        calculate_linear_classifier_output_shapes,
        _convert,
        options={
            "zipmap": [True, False, "columns"],
            "nocl": [True, False],
            "raw_scores": [True, False],
            "output_class_labels": [False, True],
        },
    )
    '''
)


@pytest.fixture(scope="module")
def crash_plugin(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    sys.path.insert(0, str(folder))  # spawned workers inherit sys.path
    try:
        yield importlib.import_module(PLUGIN)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(PLUGIN, None)


def crashing(plugin: Any, mode: str) -> Any:
    X, y = load_iris(return_X_y=True)
    model = plugin.CrashingClassifier(max_iter=500).fit(X, y)
    model.mode = mode
    return model


def convert_all(registry: Path, out: Path, *, jobs: int, **kwargs: Any) -> list[ManifestEntry]:
    options = convert.ConvertOptions(registry=registry, out=out, jobs=jobs, **kwargs)
    events = list(convert.run(options))
    assert events[0] == Started(len(events) - 1)
    return [e for e in events[1:] if isinstance(e, ManifestEntry)]


def comparable(manifest_path: Path) -> list[dict[str, Any]]:
    """The manifest's entries without what legitimately differs between runs: timings, mtimes."""
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    models: list[dict[str, Any]] = raw["models"]
    for model in models:
        model.pop("timings")
    return models


@pytest.fixture
def many_models(small_models: dict[str, Any]) -> dict[str, Any]:
    X, y = load_iris(return_X_y=True)
    models = {
        "iris_rf.joblib": small_models["iris_rf"],
        "classifiers/cancer_logreg.pkl": small_models["cancer_logreg"],
        "regressors/diabetes_gbr.joblib": small_models["diabetes_gbr"],
    }
    for depth in range(1, 6):
        models[f"trees/tree_d{depth}.joblib"] = DecisionTreeClassifier(
            max_depth=depth, random_state=depth
        ).fit(X, y)
    models["iris_lr.pkl"] = LogisticRegression(max_iter=500).fit(X, y)
    return models


@pytest.fixture
def two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start both workers even for a handful of models (normally 25 jobs per worker)."""
    monkeypatch.setattr(parallel, "MIN_JOBS_PER_WORKER", 1)


@pytest.mark.usefixtures("two_workers")
def test_parallel_manifest_equals_serial(
    make_registry: Callable[[dict[str, Any]], Path], many_models: dict[str, Any], tmp_path: Path
) -> None:
    registry = make_registry(many_models)
    serial = convert_all(registry, tmp_path / "serial", jobs=1)
    parallel_run = convert_all(registry, tmp_path / "parallel", jobs=2)

    assert [e.name for e in parallel_run] == [e.name for e in serial]
    assert all(e.ok for e in serial), [e.error for e in serial if not e.ok]
    assert comparable(tmp_path / "parallel" / "manifest.json") == comparable(
        tmp_path / "serial" / "manifest.json"
    )
    for entry in serial:
        assert entry.artifact is not None
        left = (tmp_path / "serial" / entry.artifact.path).read_bytes()
        right = (tmp_path / "parallel" / entry.artifact.path).read_bytes()
        assert left == right, entry.name

    # A no-change re-run with --jobs 2 answers every model from the manifest, in order.
    again = convert_all(registry, tmp_path / "parallel", jobs=2)
    assert [e.name for e in again] == [e.name for e in serial]
    assert all(e.timings.get("reused") == 1.0 for e in again)


@pytest.mark.usefixtures("two_workers")
def test_dead_worker_fails_only_its_model(
    make_registry: Callable[[dict[str, Any]], Path],
    small_models: dict[str, Any],
    crash_plugin: Any,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "killed-once"
    registry = make_registry(
        {
            "a_rf.joblib": small_models["iris_rf"],
            "b_exit.joblib": crashing(crash_plugin, "exit"),
            "c_flaky.joblib": crashing(crash_plugin, f"flaky:{marker}"),
            "d_segv.joblib": crashing(crash_plugin, "segv"),
            "e_gbr.joblib": small_models["diabetes_gbr"],
            "f_kill.joblib": crashing(crash_plugin, "kill"),
            "g_fine.joblib": crashing(crash_plugin, ""),
        }
    )
    entries = convert_all(
        registry,
        tmp_path / "out",
        jobs=2,
        plugins=(PLUGIN,),
        policy=TrustPolicy(trusted=(PLUGIN,)),
    )
    by_name = {e.name: e for e in entries}
    assert list(by_name) == ["a_rf", "b_exit", "c_flaky", "d_segv", "e_gbr", "f_kill", "g_fine"]
    errors = {name: entry.error or "" for name, entry in by_name.items()}
    assert errors["b_exit"].startswith("b_exit.joblib: ")
    assert "exited with status 3" in errors["b_exit"]
    assert "SIGSEGV, a segmentation fault" in errors["d_segv"]
    # SIGKILL (the OOM killer's signal) may hit a bystander: retried once, alone.
    assert marker.exists()  # c_flaky really was killed once ...
    assert by_name["c_flaky"].ok, errors["c_flaky"]  # ... and passed when retried alone
    assert "SIGKILL, likely out of memory" in errors["f_kill"]
    assert "twice; the second time it ran alone" in errors["f_kill"]
    for name in ("a_rf", "e_gbr", "g_fine"):  # innocent neighbours, and the plugin in workers
        assert by_name[name].ok, errors[name]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    statuses = [m["status"] for m in manifest["models"]]
    assert statuses == ["ok", "failed", "ok", "failed", "ok", "failed", "ok"]
    assert not multiprocessing.active_children()


def test_unchanged_size_and_mtime_skip_hashing_unless_forced(
    make_registry: Callable[[dict[str, Any]], Path], small_models: dict[str, Any], tmp_path: Path
) -> None:
    registry = make_registry({"iris_rf.joblib": small_models["iris_rf"]})
    source = registry / "iris_rf.joblib"
    out = tmp_path / "out"
    (first,) = convert_all(registry, out, jobs=1)
    assert first.ok

    # Same bytes, new mtime: hashed again, found unchanged, reused with the new mtime recorded.
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (touched,) = convert_all(registry, out, jobs=1)
    assert touched.timings.get("reused") == 1.0
    assert touched.source.mtime_ns == stat.st_mtime_ns + 10**9

    # Different bytes with the same size and mtime: trusted as unchanged (that is the trade) ...
    stat = source.stat()
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    source.write_bytes(bytes(data))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (skipped,) = convert_all(registry, out, jobs=1)
    assert skipped.timings.get("reused") == 1.0
    assert skipped.source.sha256 == first.source.sha256
    # ... until --force rehashes and rebuilds.
    (forced,) = convert_all(registry, out, jobs=1, force=True)
    assert not forced.timings.get("reused")
    assert forced.source.sha256 != first.source.sha256


def _died(job: int, reason: str) -> int:
    return -1


def _dead_name(job: str, reason: str) -> str:
    return reason


def test_run_ordered_yields_in_order_and_stops_workers_when_closed() -> None:
    quick_calls: list[int] = []

    def quick(job: int, previous: Any) -> int | None:
        quick_calls.append(job)
        return job * job if job % 3 == 0 else None  # answered here, no worker needed

    jobs = list(range(40))
    previous = {str(i): i for i in jobs}  # operator.mul(job, previous) = job * job, in a worker
    results = parallel.run_ordered(
        operator.mul, jobs, previous, 2, on_worker_death=_died, quick=quick, key=str
    )
    first = next(results)
    assert first == 0
    assert multiprocessing.active_children()  # workers are up
    assert [first, *results] == [i * i for i in jobs]
    assert sorted(quick_calls) == jobs  # asked once per job
    assert not multiprocessing.active_children()

    stopped = cast(
        Generator[Any, None, None],
        parallel.run_ordered(operator.mul, jobs, previous, 2, on_worker_death=_died, key=str),
    )
    assert next(stopped) == 0
    stopped.close()  # the consumer gave up (an error, Ctrl-C): no worker is left behind
    assert not multiprocessing.active_children()


def test_workers_get_single_threaded_numerical_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    names = ["OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]
    seen = list(parallel.run_ordered(os.getenv, names, {}, 2, on_worker_death=_dead_name, key=str))
    assert seen == ["1", "1"]  # os.getenv(name, None) ran in the worker
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # the parent's environment is unchanged


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [
        (-signal.SIGSEGV, "SIGSEGV, a segmentation fault"),
        (-signal.SIGKILL, "SIGKILL, likely out of memory"),
        (-signal.SIGABRT, "SIGABRT"),
        (3, "exited with status 3"),
        (None, "stopped answering"),
    ],
)
def test_death_reason_names_the_cause(exitcode: int | None, words: str) -> None:
    assert words in parallel.death_reason(exitcode)
