"""The safe loader: hostile files are refused before anything in them runs; real models load.

Every payload here would create ``marker`` if it ran. Each test asserts the refusal names the
global it refused and that the marker does not exist afterwards.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.datasets import dump_svmlight_file
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from sklearn.utils._testing import assert_run_python_script_without_output

from alphapulse_onnx import loading
from alphapulse_onnx.errors import ModelLoadError, UntrustedModelError
from alphapulse_onnx.loading import TrustPolicy

COMPRESSIONS = ["zlib", "gzip", "lzma", "bz2"]


class Payload:
    """Pickles as ``func(*args)``: what a hostile file does in its ``__reduce__``."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


class SetStateSneak:
    """A class of the user's own whose ``__setstate__`` would run code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:  # pragma: no cover - must never run
        Path(state["marker"]).touch()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture(scope="module")
def fitted(iris: Any) -> RandomForestClassifier:
    X, y = iris
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)


def _evil_npy(tmp_path: Path, marker: Path) -> Path:
    """An .npy that holds a pickled object array: np.load(allow_pickle=True) would run it."""
    path = tmp_path / "evil.npy"
    np.save(path, np.array([Payload(os.system, f"touch {marker}")], dtype=object))
    return path


def _payloads(tmp_path: Path, marker: Path) -> dict[str, tuple[Any, str]]:
    """Route name -> (object that runs code when unpickled, the global that must be refused)."""
    m = str(marker)
    return {
        "os.system": (Payload(os.system, f"touch {m}"), f"{os.system.__module__}.system"),
        "builtins.eval": (Payload(builtins.eval, f"open({m!r}, 'w').close()"), "builtins.eval"),
        "builtins.exec": (Payload(builtins.exec, f"open({m!r}, 'w').close()"), "builtins.exec"),
        "subprocess": (Payload(subprocess.call, ["touch", m]), "subprocess.call"),
        "numpy.load": (
            Payload(np.load, str(_evil_npy(tmp_path, marker)), None, True),
            "numpy.load",
        ),
        "numpy.testing": (
            Payload(np.testing._private.utils.runstring, f"open({m!r}, 'w').close()", {}),
            "numpy.testing._private.utils.runstring",
        ),
        "numpy.memmap": (
            Payload(np.memmap, m, np.uint8, "w+", 0, (1,)),
            "numpy.memmap",
        ),
        "sklearn.utils._testing": (
            Payload(assert_run_python_script_without_output, f"open({m!r}, 'w').close()"),
            "sklearn.utils._testing.assert_run_python_script_without_output",
        ),
        "sklearn.datasets": (
            Payload(dump_svmlight_file, [[1.0]], [1], m),
            "sklearn.datasets._svmlight_format_io.dump_svmlight_file",
        ),
        "user-class": (SetStateSneak(m), f"{__name__}.SetStateSneak"),
    }


ROUTES = [
    "os.system", "builtins.eval", "builtins.exec", "subprocess", "numpy.load", "numpy.testing",
    "numpy.memmap", "sklearn.utils._testing", "sklearn.datasets", "user-class",
]  # fmt: skip


def _refused(path: Path, marker: Path, dotted: str, policy: TrustPolicy | None = None) -> str:
    with pytest.raises(UntrustedModelError) as info:
        loading.load(path, policy or loading.DEFAULT_POLICY)
    message = str(info.value)
    assert dotted in message
    assert "\n" not in message
    assert not marker.exists(), "the payload ran"
    return message


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_payload_pickle_refused_at_every_protocol(
    tmp_path: Path, marker: Path, route: str, protocol: int
) -> None:
    payload, dotted = _payloads(tmp_path, marker)[route]
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    _refused(path, marker, dotted)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("compress", [0, *COMPRESSIONS])
def test_payload_next_to_a_real_model_in_joblib(
    tmp_path: Path, marker: Path, fitted: Any, route: str, compress: Any
) -> None:
    payload, dotted = _payloads(tmp_path, marker)[route]
    path = tmp_path / "model.joblib"
    joblib.dump(
        {"model": fitted, "extra": payload}, path, compress=(compress, 3) if compress else 0
    )
    _refused(path, marker, dotted)


@pytest.mark.parametrize("compress", [0, *COMPRESSIONS])
def test_payload_inside_object_array_uses_the_restricted_inner_unpickler(
    tmp_path: Path, marker: Path, fitted: Any, compress: Any
) -> None:
    # joblib writes object-dtype arrays as a nested pickle read by a second unpickler.
    payload, dotted = _payloads(tmp_path, marker)["os.system"]
    path = tmp_path / "model.joblib"
    array = np.array([payload, 1], dtype=object)
    joblib.dump([fitted, array], path, compress=(compress, 3) if compress else 0)
    assert b"NumpyArrayWrapper" in _decompressed(path)
    _refused(path, marker, dotted)


def _decompressed(path: Path) -> bytes:
    with (
        path.open("rb") as raw,
        joblib.numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _),
    ):
        return bytes(handle.read())


@pytest.mark.parametrize(
    ("name", "raw", "dotted"),
    [
        # INST: `i module\nname\n` instantiates with the args above the mark.
        ("inst", b"(S'touch {m}'\nios\nsystem\n.", "os.system"),
        # OBJ: the class comes from the stack (pushed by GLOBAL).
        ("obj", b"(cos\nsystem\nS'touch {m}'\no.", "os.system"),
        # getattr(__import__('os'), 'system')('touch ...'): every step is a global.
        (
            "getattr",
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR"
            b"(S'touch {m}'\ntR.",
            "builtins.getattr",
        ),
        ("main-class", b"c__main__\nFoo\n)\x81.", "__main__.Foo"),
        ("unknown-module", b"cno_such_module_xyz\nrun\n(tR.", "no_such_module_xyz.run"),
        # Importing numpy's f2py entry point would run f2py's main().
        ("module-main", b"cnumpy.f2py.__main__\nmain\n(tR.", "numpy.f2py.__main__.main"),
        # A dotted name must not walk (and lazily import) its way into a denied submodule.
        ("dotted-walk", b"cnumpy\nf2py.__main__.main\n(tR.", "numpy.f2py.__main__.main"),
    ],
)
def test_hand_written_opcodes_refused(
    tmp_path: Path, marker: Path, name: str, raw: bytes, dotted: str
) -> None:
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(raw.replace(b"{m}", str(marker).encode()))
    sys.modules.pop("numpy.f2py.__main__", None)
    _refused(path, marker, dotted)
    assert "numpy.f2py.__main__" not in sys.modules


def test_refusal_names_the_global_and_never_suggests_trusting_python_itself(
    tmp_path: Path, marker: Path
) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload(subprocess.call, ["touch", str(marker)])))
    message = _refused(path, marker, "subprocess.call")
    assert message.startswith(f"{path}: refused to load")
    assert "nothing from the file was run" in message
    assert "--trust" not in message
    assert "do not use this file" in message


def test_unsafe_load_really_turns_the_check_off(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": Payload(os.system, f"touch {marker}")}))
    with pytest.raises(ModelLoadError, match="not a scikit-learn estimator"):
        loading.load(path, TrustPolicy(unsafe=True))
    assert marker.exists()  # the switch is real: that is why the CLI warns


@pytest.mark.parametrize("holder", ["estimator", "bunch", "object-array", "dummy-array"])
def test_array_interface_smuggling_is_refused(tmp_path: Path, holder: str) -> None:
    # numpy builds an array from any object's __array_interface__, raw memory address included:
    # a fitted attribute that carries one would make predict read (or write) arbitrary memory.
    from numpy.lib._stride_tricks_impl import DummyArray
    from sklearn.utils import Bunch

    X = np.arange(12.0).reshape(6, 2)
    model = StandardScaler().fit(X)
    interface = {"shape": (2,), "typestr": "<f8", "data": (8, True), "version": 3}
    fake: Any
    if holder == "estimator":
        fake = StandardScaler()
        fake.__dict__["__array_interface__"] = interface
    elif holder == "bunch":
        fake = Bunch()
        fake["__array_interface__"] = interface
    else:
        inner = StandardScaler()
        inner.__dict__["__array_interface__"] = interface
        fake = np.array([inner, 1], dtype=object)
    if holder == "dummy-array":
        fake = Payload(DummyArray, interface, None)
    model.mean_ = fake
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    with pytest.raises(UntrustedModelError) as info:
        loading.load(path)
    message = str(info.value)
    expected = "DummyArray" if holder == "dummy-array" else "sets __array_interface__"
    assert expected in message
    assert "\n" not in message


# --- broken and non-model files: one distinct line each ---------------------------------------


def _write_broken(tmp_path: Path, kind: str, fitted: Any) -> Path:
    path = tmp_path / f"{kind}.joblib"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        joblib.dump(fitted, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-gzip":
        joblib.dump(fitted, path, compress=("gzip", 3))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "dict":
        joblib.dump({"weights": [1, 2, 3]}, path)
    elif kind == "unfitted":
        joblib.dump(RandomForestClassifier(), path)
    elif kind == "unfitted-pipeline":
        joblib.dump(make_pipeline(StandardScaler(), LogisticRegression()), path)
    elif kind == "array":
        joblib.dump(np.zeros((3, 4)), path)
    elif kind == "none":
        joblib.dump(None, path)
    return path


BROKEN = {
    "empty": "the file is empty",
    "truncated": "truncated",
    "truncated-gzip": "truncated",
    "random": "not a pickle or joblib file",
    "text": "not a pickle or joblib file",
    "dict": "holds a dict (keys: weights), not a scikit-learn estimator",
    "unfitted": "the RandomForestClassifier in this file was never fitted",
    "unfitted-pipeline": "was never fitted",
    "array": "holds a numpy array of shape (3, 4), not a scikit-learn estimator",
    "none": "holds a builtins.NoneType, not a scikit-learn estimator",
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_files_each_get_their_own_line(tmp_path: Path, fitted: Any, kind: str) -> None:
    path = _write_broken(tmp_path, kind, fitted)
    with pytest.raises(ModelLoadError) as info:
        loading.load(path)
    assert not isinstance(info.value, UntrustedModelError)
    message = str(info.value)
    assert BROKEN[kind] in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        loading.load(tmp_path / "absent.joblib")
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model file type"):
        loading.load(other)


# --- real models still load -------------------------------------------------------------------


def _real_models(iris: Any, diabetes: Any) -> dict[str, tuple[Any, Any]]:
    X, y = iris
    Xd, yd = diabetes
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    frame = pd.DataFrame(X, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence on a tiny budget
        return {
            "rf": (RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), X),
            "hgb": (HistGradientBoostingClassifier(max_iter=5).fit(X, y), X),
            "knn-kd": (KNeighborsClassifier(algorithm="kd_tree").fit(X, y), X),
            "knn-ball": (KNeighborsRegressor(algorithm="ball_tree").fit(Xd, yd), Xd),
            "svc": (SVC(probability=True, random_state=0).fit(X, y), X),
            "mlp": (
                MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y),
                X,
            ),
            "gnb": (GaussianNB().fit(X, y), X),
            "pipeline": (make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X),
            "string-labels": (RandomForestClassifier(n_estimators=5).fit(X, labels), X),
            "dataframe": (LogisticRegression(max_iter=500).fit(frame, y), frame),
            "log1p": (
                make_pipeline(FunctionTransformer(np.log1p), LinearRegression()).fit(X, y),
                X,
            ),
            "grid-search": (
                GridSearchCV(
                    GaussianNB(), {"var_smoothing": [1e-9, 1e-8]}, cv=2, scoring="f1_macro"
                ).fit(X, y),
                X,
            ),
        }


@pytest.fixture(scope="module")
def real_models(iris: Any, diabetes: Any) -> dict[str, tuple[Any, Any]]:
    return _real_models(iris, diabetes)


REAL = ["rf", "hgb", "knn-kd", "knn-ball", "svc", "mlp", "gnb", "pipeline", "string-labels",
        "dataframe", "log1p", "grid-search"]  # fmt: skip


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("suffix", [".joblib", ".pkl"])
def test_real_model_families_load(
    tmp_path: Path, real_models: dict[str, tuple[Any, Any]], name: str, suffix: str
) -> None:
    model, X = real_models[name]
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".joblib":
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    loaded = loading.load(path)
    inner = model.best_estimator_ if name == "grid-search" else model  # searches: their best
    assert loaded.estimator_type.endswith(type(inner).__name__)
    assert loaded.sklearn_version == sklearn.__version__
    assert not any("pickled with" in warning for warning in loaded.warnings)
    np.testing.assert_array_equal(loaded.estimator.predict(X), model.predict(X))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_real_model_at_every_pickle_protocol(
    tmp_path: Path, real_models: dict[str, tuple[Any, Any]], protocol: int
) -> None:
    model, X = real_models["pipeline"]
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    np.testing.assert_array_equal(loading.load(path).estimator.predict(X), model.predict(X))


@pytest.mark.parametrize("compress", COMPRESSIONS)
def test_real_model_in_compressed_joblib(
    tmp_path: Path, real_models: dict[str, tuple[Any, Any]], compress: str
) -> None:
    model, X = real_models["knn-kd"]
    path = tmp_path / "model.joblib"
    joblib.dump(model, path, compress=(compress, 3))
    np.testing.assert_array_equal(loading.load(path).estimator.predict(X), model.predict(X))


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_boosting_libraries_load_when_installed(tmp_path: Path, iris: Any, library: str) -> None:
    module = pytest.importorskip(library)
    X, y = iris
    cls = module.LGBMClassifier if library == "lightgbm" else module.XGBClassifier
    kwargs = {"verbose": -1} if library == "lightgbm" else {}
    model = cls(n_estimators=5, **kwargs).fit(X, y)
    path = tmp_path / "boost.joblib"
    joblib.dump(model, path)
    np.testing.assert_array_equal(loading.load(path).estimator.predict(X), model.predict(X))


# --- trusting a class of your own -------------------------------------------------------------

USER_MODULE = textwrap.dedent(
    """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin

    class Clip(BaseEstimator, TransformerMixin):
        def __init__(self, limit=5.0):
            self.limit = limit
        def fit(self, X, y=None):
            self.n_features_in_ = np.asarray(X).shape[1]
            return self
        def transform(self, X):
            return np.clip(X, -self.limit, self.limit)
    """
)


@pytest.fixture
def user_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iris: Any) -> Path:
    package = tmp_path / "userlib"
    package.mkdir()
    (package / "apo_user_features.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(package))
    import apo_user_features  # type: ignore[import-not-found]  # written by the fixture

    X, y = iris
    model = make_pipeline(apo_user_features.Clip(), LogisticRegression(max_iter=500)).fit(X, y)
    path = tmp_path / "user.joblib"
    joblib.dump(model, path)
    return path


def test_user_class_refused_by_default(user_model: Path, marker: Path) -> None:
    message = _refused(user_model, marker, "apo_user_features.Clip")
    assert "--trust apo_user_features.Clip" in message


@pytest.mark.parametrize("trusted", ["apo_user_features.Clip", "apo_user_features"])
def test_trust_allows_a_user_class(user_model: Path, trusted: str) -> None:
    loaded = loading.load(user_model, TrustPolicy(trusted=(trusted,)))
    assert loaded.estimator.steps[0][1].__class__.__name__ == "Clip"


def test_trusting_one_class_does_not_trust_its_neighbours(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload(os.system, f"touch {marker}")))
    _refused(path, marker, "system", TrustPolicy(trusted=("posix.getcwd", "ntpath", "os.path")))


# --- the scikit-learn version that pickled a model --------------------------------------------


def test_other_sklearn_version_is_recorded_and_warned(tmp_path: Path, fitted: Any) -> None:
    running = sklearn.__version__.encode()
    older = b"1.0.0"[: len(running)].ljust(len(running), b"0")
    data = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
    assert running in data
    path = tmp_path / "old.pkl"
    path.write_bytes(data.replace(running, older))
    loaded = loading.load(path)
    assert loaded.sklearn_version == older.decode()
    assert loaded.warnings[0].startswith(
        f"upgraded from scikit-learn {older.decode()} to {sklearn.__version__}: "
    )


def test_other_sklearn_version_is_surfaced_per_model_by_convert_and_validate(
    tmp_path: Path, fitted: Any, registry: Path
) -> None:
    from typer.testing import CliRunner

    from alphapulse_onnx.cli import app

    running = sklearn.__version__.encode()
    older = b"1.0.0"[: len(running)].ljust(len(running), b"0")
    data = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL).replace(running, older)
    (registry / "old_rf.pkl").write_bytes(data)
    expected = f"upgraded from scikit-learn {older.decode()} to {sklearn.__version__}: "
    result = CliRunner().invoke(app, ["convert", str(registry), "-j", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)["entries"]}
    assert entries["old_rf"]["warnings"][0].startswith(expected)
    assert not any("scikit-learn" in w for w in entries["iris_rf"]["warnings"])
    manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
    versions = {m["name"]: m["source"]["sklearn_version"] for m in manifest["models"]}
    assert versions["old_rf"] == older.decode()
    assert versions["iris_rf"] == sklearn.__version__
    table = CliRunner().invoke(app, ["convert", str(registry), "-j", "1"])
    assert f"warning: old_rf: {expected}" in table.stderr
    checked = CliRunner().invoke(app, ["validate", str(registry)])
    assert checked.exit_code == 0, checked.stderr
    assert f"warning: old_rf: {expected}" in checked.stderr


def test_unsafe_load_warns_loudly_on_the_cli(tmp_path: Path, registry: Path) -> None:
    from typer.testing import CliRunner

    from alphapulse_onnx.cli import app

    result = CliRunner().invoke(
        app,
        ["convert", str(registry / "iris_rf.joblib"), "--unsafe-load", "--json", "-j", "1",
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "--unsafe-load" in result.stderr
    assert "WITHOUT the allowlist" in result.stderr


# --- skops: its own format, its own trusted-types check ---------------------------------------


@pytest.mark.parametrize("name", ["rf", "hgb", "knn-kd", "pipeline", "log1p", "string-labels"])
def test_skops_models_load(
    tmp_path: Path, real_models: dict[str, tuple[Any, Any]], name: str
) -> None:
    sio = pytest.importorskip("skops.io")
    model, X = real_models[name]
    path = tmp_path / f"{name}.skops"
    sio.dump(model, path)
    loaded = loading.load(path)
    assert loaded.format == "skops"
    np.testing.assert_array_equal(loaded.estimator.predict(X), model.predict(X))


def test_skops_untrusted_function_is_refused(tmp_path: Path, iris: Any, marker: Path) -> None:
    sio = pytest.importorskip("skops.io")
    X, y = iris
    model = make_pipeline(FunctionTransformer(os.system), LogisticRegression(max_iter=300))
    model.steps[1][1].fit(X, y)
    path = tmp_path / "evil.skops"
    sio.dump(model, path)
    message = _refused(path, marker, f"{os.system.__module__}.system")
    assert "refused to load" in message


def test_skops_user_class_needs_trust(tmp_path: Path, user_model: Path) -> None:
    sio = pytest.importorskip("skops.io")
    model = loading.load(user_model, TrustPolicy(trusted=("apo_user_features",))).estimator
    path = tmp_path / "user.skops"
    sio.dump(model, path)
    with pytest.raises(UntrustedModelError, match=r"apo_user_features\.Clip"):
        loading.load(path)
    loaded = loading.load(path, TrustPolicy(trusted=("apo_user_features",)))
    assert type(loaded.estimator.steps[0][1]).__name__ == "Clip"


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"random bytes"])
def test_broken_skops_files(tmp_path: Path, content: bytes) -> None:
    pytest.importorskip("skops.io")
    path = tmp_path / "broken.skops"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        loading.load(path)
    message = str(info.value)
    assert ("empty" in message) or ("not a readable skops file" in message)
    assert "\n" not in message
