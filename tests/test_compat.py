"""Old pickles: each test WRITES the old scikit-learn state itself, then loads it through apo."""

from __future__ import annotations

import copyreg
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import _dist_metrics
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import Tree

from alphapulse_onnx import loading
from alphapulse_onnx.commands import convert
from alphapulse_onnx.errors import ModelLoadError
from alphapulse_onnx.manifest import ManifestEntry

Reducer = Callable[[Any], Any]


def _write_old(path: Path, obj: Any, reducer: Reducer) -> Path:
    """Pickle ``obj`` with ``reducer`` rewriting some objects into their old-format state."""

    class OldPickler(pickle.Pickler):
        def reducer_override(self, value: Any) -> Any:
            return reducer(value)

    buffer = io.BytesIO()
    OldPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _pre_13_tree(value: Any) -> Any:
    """A Tree as scikit-learn < 1.3 pickled it: node records without ``missing_go_to_left``."""
    if not isinstance(value, Tree):
        return NotImplemented
    cls, args, state = value.__reduce__()
    nodes = state["nodes"]
    fields = [f for f in nodes.dtype.names if f != "missing_go_to_left"]
    old_dtype = np.dtype([(f, nodes.dtype.fields[f][0]) for f in fields])  # packed, 56 bytes
    old = np.zeros(nodes.shape, dtype=old_dtype)
    for field in fields:
        old[field] = nodes[field]
    return cls, args, {**state, "nodes": old}


def _convert_folder(registry: Path) -> Any:
    options = convert.ConvertOptions(registry=registry, probe_rows=512)
    (entry,) = [o for o in convert.run(options) if isinstance(o, ManifestEntry)]
    return entry


def test_scikit_learn_itself_refuses_pre_13_tree_nodes() -> None:
    X, y = load_iris(return_X_y=True)
    _, args, state = _pre_13_tree(DecisionTreeClassifier(max_depth=2).fit(X, y).tree_)
    with pytest.raises(ValueError, match="incompatible dtype"):
        Tree(*args).__setstate__(state)  # why apo needs its own upgrade


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(DecisionTreeClassifier(max_depth=4, random_state=0), id="tree"),
        pytest.param(
            RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), id="forest"
        ),
        pytest.param(GradientBoostingRegressor(n_estimators=5, random_state=0), id="boosting"),
    ],
)
def test_pre_13_tree_nodes_are_upgraded(model: Any, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model.fit(X, y)
    path = _write_old(tmp_path / "registry" / "old_tree.pkl", model, _pre_13_tree)
    loaded = loading.load(path)
    assert np.array_equal(loaded.estimator.predict(X), model.predict(X))
    assert any("missing_go_to_left" in note for note in loaded.warnings)
    trees = (
        [loaded.estimator]
        if hasattr(loaded.estimator, "tree_")
        else list(np.asarray(loaded.estimator.estimators_, dtype=object).ravel())
    )
    assert all(type(t.tree_) is Tree for t in trees)  # a genuine Tree again, not apo's shim
    entry = _convert_folder(tmp_path / "registry")
    assert entry.ok, entry.error


def test_remainder_cols_list_from_15_loads_as_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "town": rng.choice(["a", "b"], 80).astype(object),
            "x": rng.normal(size=80),
            "z": rng.normal(size=80),
        }
    )
    model = make_pipeline(
        ColumnTransformer([("cat", OneHotEncoder(), ["town"])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, frame["x"] > 0)
    column_transformer = model[0]
    module = "sklearn.compose._column_transformer"

    class _RemainderColsList(list[Any]):  # the 1.5-1.6 class, recreated to write its pickle
        def __init__(self, columns: list[Any]):
            super().__init__(columns)
            self.future_dtype = "str"
            self.warning_was_emitted = False
            self.warning_enabled = True

    _RemainderColsList.__module__ = module
    _RemainderColsList.__qualname__ = "_RemainderColsList"
    monkeypatch.setattr(f"{module}._RemainderColsList", _RemainderColsList, raising=False)
    name, transformer, columns = column_transformer.transformers_[-1]
    column_transformer.transformers_[-1] = (name, transformer, _RemainderColsList(columns))
    try:
        path = _write_old(tmp_path / "registry" / "old_ct.pkl", model, lambda v: NotImplemented)
    finally:
        column_transformer.transformers_[-1] = (name, transformer, columns)
    monkeypatch.delattr(f"{module}._RemainderColsList")
    assert b"_RemainderColsList" in path.read_bytes()
    loaded = loading.load(path)
    remainder = loaded.estimator[0].transformers_[-1][2]
    assert type(remainder) is list
    assert remainder == columns
    np.testing.assert_allclose(loaded.estimator.predict_proba(frame), model.predict_proba(frame))
    entry = _convert_folder(tmp_path / "registry")
    assert entry.ok, entry.error


def test_simple_imputer_without_fill_dtype_gets_the_default(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    X[::4, 1] = np.nan
    model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, X[:, 0] > 0)

    def before_16(value: Any) -> Any:
        if not isinstance(value, SimpleImputer):
            return NotImplemented
        state = {k: v for k, v in value.__getstate__().items() if k != "_fill_dtype"}
        state["_sklearn_version"] = "1.5.2"
        return copyreg.__newobj__, (type(value),), state  # type: ignore[attr-defined]

    path = _write_old(tmp_path / "registry" / "old_imputer.pkl", model, before_16)
    assert b"_fill_dtype" not in path.read_bytes()
    loaded = loading.load(path)
    imputer = loaded.estimator[0]
    assert imputer._fill_dtype == np.dtype("float64")
    assert any("_fill_dtype" in note for note in loaded.warnings)
    assert any("1.5.2" in note for note in loaded.warnings)  # the version it was saved with
    np.testing.assert_allclose(loaded.estimator.predict_proba(X), model.predict_proba(X))
    entry = _convert_folder(tmp_path / "registry")
    assert entry.ok, entry.error


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_knn_with_pre_13_distance_metric_names(
    metric: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = load_iris(return_X_y=True)
    model = KNeighborsClassifier(n_neighbors=3, algorithm="kd_tree", metric=metric).fit(X, y)
    new_cls = type(model._tree.__getstate__()[-2])
    old_name = new_cls.__name__.removesuffix("64")
    old_cls = type(old_name, (), {"__module__": _dist_metrics.__name__})
    monkeypatch.setattr(_dist_metrics, old_name, old_cls, raising=False)

    def before_13(value: Any) -> Any:
        if type(value) is not new_cls:
            return NotImplemented
        newobj, _, state = value.__reduce__()
        return newobj, (old_cls,), state

    path = _write_old(tmp_path / "registry" / "old_knn.pkl", model, before_13)
    monkeypatch.delattr(_dist_metrics, old_name)
    assert f"{old_name}\n".encode() in path.read_bytes() or old_name.encode() in path.read_bytes()
    loaded = loading.load(path)
    assert np.array_equal(loaded.estimator.predict(X), model.predict(X))


def test_unknown_old_class_names_both_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "sklearn.preprocessing._data"
    ghost = type("_LongGoneScaler", (), {"__module__": module})
    monkeypatch.setattr(f"{module}._LongGoneScaler", ghost, raising=False)
    scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))

    def saved_by_1_2(value: Any) -> Any:
        if not isinstance(value, StandardScaler):
            return NotImplemented
        return (
            copyreg.__newobj__,  # type: ignore[attr-defined]
            (StandardScaler,),
            {
                **value.__getstate__(),
                "_sklearn_version": "1.2.2",
            },
        )

    path = _write_old(tmp_path / "ghost.pkl", {"scaler": scaler, "ghost": ghost()}, saved_by_1_2)
    monkeypatch.delattr(f"{module}._LongGoneScaler")
    with pytest.raises(ModelLoadError) as info:
        loading.load(path)
    message = str(info.value)
    assert f"{module}._LongGoneScaler" in message
    assert "saved with scikit-learn 1.2.2" in message
    assert f"running {sklearn.__version__}" in message
    assert "\n" not in message
