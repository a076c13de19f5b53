"""The loader's lists, enumerated: one role per name, no forwarding model class, every opcode
that can reach code replaced, every argument check refusing what it must."""

from __future__ import annotations

import pickle
import pickletools
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils import all_estimators

from alphapulse_onnx import loading
from alphapulse_onnx.errors import ModelLoadError, UntrustedModelError
from alphapulse_onnx.loading import machine, roles, standins, state
from alphapulse_onnx.loading.checks import Name

# Model classes whose methods call what they hold; ``state.check_parts`` holds each to its kind
# (tested below and in test_loader_redteam.py).
CHECKED_CALLERS = ("sklearn.gaussian_process.kernels.", "sklearn._loss.loss.")
BOOSTER_CLEANUP = ("lightgbm.basic.Booster", "xgboost.core.Booster")  # __del__ frees the handle
# pandas' Series and DataFrame look attribute names up among their labels: what that finds is
# their own data, whose cells frames.py holds to plain values (nothing callable).
LABEL_LOOKUP = ("pandas.core.generic.NDFrame",)


@pytest.fixture(scope="module")
def admitted() -> dict[str, set[str]]:
    return {role: set(names) for role, names in roles.admitted_names().items()}


def _model_classes(admitted: dict[str, set[str]]) -> dict[str, type]:
    classes = {}
    for dotted in sorted(admitted["model"]):
        module, _, name = dotted.rpartition(".")
        token = roles.admit(module, name)
        if isinstance(token, Name):  # a library that is not installed resolves to None
            classes[dotted] = token.target
    return classes


def test_every_admitted_name_has_exactly_one_role(admitted: dict[str, set[str]]) -> None:
    model, reconstructor, value = admitted["model"], admitted["reconstructor"], admitted["value"]
    assert not (model & reconstructor) and not (model & value) and not (reconstructor & value)
    assert len(model) > 250 and len(reconstructor) > 60 and len(value) > 80
    for role, names in admitted.items():
        for dotted in names:
            module, _, name = dotted.rpartition(".")
            found = roles.admit(module, name)
            if found is None:
                continue  # an optional library, or a name this release does not have
            got = "value" if isinstance(found, tuple) else found.role
            assert got == role, dotted


def test_every_public_estimator_of_this_scikit_learn_is_listed() -> None:
    missing = []
    for name, cls in all_estimators():
        token = roles.admit(cls.__module__, cls.__qualname__)
        if not (isinstance(token, Name) and token.role == "model"):
            missing.append(f"{cls.__module__}.{name}")
    assert not missing, f"add to roles.SKLEARN_ESTIMATORS (or a stand-in): {missing}"


def _definer(cls: type, attribute: str) -> str | None:
    owner = state.definer(cls, attribute)
    return None if owner is None else f"{owner.__module__}.{owner.__qualname__}"


def test_no_model_class_forwards_attributes_or_calls_what_it_holds(
    admitted: dict[str, set[str]],
) -> None:
    for dotted, cls in _model_classes(admitted).items():
        for attribute in ("__getattr__", "__getattribute__"):
            owner = _definer(cls, attribute)
            assert owner in (None, "builtins.dict", "builtins.list", *LABEL_LOOKUP), (
                dotted, attribute, owner,
            )  # fmt: skip
        caller = _definer(cls, "__call__")
        assert caller is None or dotted.startswith(CHECKED_CALLERS), (dotted, caller)
        cleanup = _definer(cls, "__del__")
        assert cleanup is None or dotted in BOOSTER_CLEANUP, (dotted, cleanup)


def test_every_model_class_is_built_bare_and_given_state_by_a_vetted_setter(
    admitted: dict[str, set[str]],
) -> None:
    for dotted, cls in _model_classes(admitted).items():
        assert state.setter_for(cls, False) is not None, dotted
        maker = state.definer(cls, "__new__")
        # object's, a builtin's, or the class's own (a Cython extension type's, a deprecation).
        assert maker is None or maker.__module__ in ("builtins", cls.__module__), (dotted, maker)


def test_every_opcode_that_can_reach_code_is_replaced() -> None:
    ours, theirs = machine.RestrictedUnpickler.dispatch, pickle._Unpickler.dispatch  # type: ignore[attr-defined]
    reaching = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
                "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "DICT", "FROZENSET",
                "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"}  # fmt: skip
    assert not (reaching & machine.PURE_OPCODES)
    for opcode in pickletools.opcodes:
        code = opcode.code.encode("latin1")[0]
        if opcode.name in machine.PURE_OPCODES:
            assert ours[code] is theirs[code], opcode.name
        else:
            assert ours[code] is not theirs[code], opcode.name


def _call(dotted: str, *args: Any) -> bytes:
    """``dotted(*args)`` as a pickle, arguments inlined."""
    module, _, name = dotted.rpartition(".")
    code = bytearray(pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode())
    code += pickle.MARK
    for arg in args:
        code += pickle.dumps(arg, protocol=2)[2:-1]
    return bytes(code + pickle.TUPLE + pickle.REDUCE + pickle.STOP)


BAD_CALLS = [
    ("builtins.set", ([LogisticRegression()],), "not plain values"),
    ("builtins.frozenset", ("abc",), "frozenset was given"),
    ("builtins.slice", ("a",), "slice was given"),
    ("builtins.bytearray", (2**40,), "bytearray was given"),
    ("builtins.bytes", (2**40,), "bytes was given"),
    ("_codecs.encode", ("x", "rot13"), "_codecs.encode was given"),
    ("numpy.dtype", ("f8; import os",), "numpy.dtype was given"),
    ("numpy.random._pickle.__bit_generator_ctor", ("NoSuchGenerator",), "random-state rebuilder"),
    ("collections.Counter", ({"a": "x"},), "not whole numbers"),
    ("collections.OrderedDict", ([("a", 1)],), "OrderedDict was given arguments"),
    ("datetime.datetime", (LogisticRegression(),), "datetime was given"),
    ("decimal.Decimal", ("9" * 5000,), "Decimal was given"),
    ("sklearn._loss._loss.CyHalfTweedieLoss", ("1.5",), "not its numeric parameters"),
    ("copyreg._reconstructor", (dict, object, None), "makes an instance of the class dict"),
]


@pytest.mark.parametrize(("dotted", "args", "expected"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_reconstructors_check_their_arguments(
    tmp_path: Path, dotted: str, args: tuple[Any, ...], expected: str
) -> None:
    path = tmp_path / "bad.pkl"
    path.write_bytes(_call(dotted, *args))
    with pytest.raises(UntrustedModelError, match="refused to load") as info:
        loading.load(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_new_obj_accepts_only_its_own_module_s_classes(tmp_path: Path) -> None:
    path = tmp_path / "bad.pkl"
    path.write_bytes(
        pickle.PROTO + b"\x02" + pickle.GLOBAL + b"sklearn.neighbors._kd_tree\nnewObj\n"
        + pickle.MARK + pickle.GLOBAL + b"sklearn.metrics._dist_metrics\nEuclideanDistance64\n"
        + pickle.TUPLE + pickle.REDUCE + pickle.STOP
    )  # fmt: skip
    with pytest.raises(UntrustedModelError, match=r"newObj of sklearn\.neighbors\._kd_tree"):
        loading.load(path)


# --- state that scikit-learn's own code would trust blindly -----------------------------------


class _Rewrite(pickle.Pickler):
    """Pickles a model with one object's saved state rewritten, as a crafted file would."""

    def __init__(self, handle: Any, kind: type, rewrite: Any) -> None:
        super().__init__(handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.kind, self.rewrite = kind, rewrite

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not self.kind:
            return NotImplemented
        reduced = obj.__reduce__()
        return (reduced[0], reduced[1], self.rewrite(reduced[2]), *reduced[3:])


def _crafted(tmp_path: Path, model: Any, kind: type, rewrite: Any) -> Path:
    path = tmp_path / "crafted.pkl"
    with path.open("wb") as handle:
        _Rewrite(handle, kind, rewrite).dump(model)
    return path


def _links_backward(saved: dict[str, Any]) -> dict[str, Any]:
    nodes = saved["nodes"].copy()
    split = np.flatnonzero(nodes["left_child"] != -1)
    nodes["left_child"][split[-1]] = 0  # a loop back to the root
    return {**saved, "nodes": nodes}


def _feature_out_of_range(saved: dict[str, Any]) -> dict[str, Any]:
    nodes = saved["nodes"].copy()
    nodes["feature"][0] = 10**6  # X[:, 1000000] would be read past the row
    return {**saved, "nodes": nodes}


@pytest.mark.parametrize("rewrite", [_links_backward, _feature_out_of_range])
def test_tree_nodes_must_link_forward_to_real_features(tmp_path: Path, rewrite: Any) -> None:
    from sklearn.tree._tree import Tree

    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(X, y)
    with pytest.raises(UntrustedModelError, match="nodes that link outside the tree"):
        loading.load(_crafted(tmp_path, model, Tree, rewrite))


def test_hist_gradient_boosting_nodes_are_checked_too(tmp_path: Path) -> None:
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    X, y = load_iris(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=3).fit(X, y)

    def backward(saved: dict[str, Any]) -> dict[str, Any]:
        nodes = saved["nodes"].copy()
        nodes["left"][0] = 0
        return {**saved, "nodes": nodes}

    with pytest.raises(UntrustedModelError, match="nodes that link outside the tree"):
        loading.load(_crafted(tmp_path, model, TreePredictor, backward))


def test_kd_tree_indices_must_point_into_its_data(tmp_path: Path) -> None:
    from sklearn.neighbors import KDTree

    X, y = load_iris(return_X_y=True)
    model = KNeighborsClassifier(algorithm="kd_tree").fit(X, y)

    def outside(saved: tuple[Any, ...]) -> tuple[Any, ...]:
        idx = saved[1].copy()
        idx[0] = 10**9
        return (saved[0], idx, *saved[2:])

    with pytest.raises(UntrustedModelError, match="indices outside its data"):
        loading.load(_crafted(tmp_path, model, KDTree, outside))


# --- stand-ins: the same data, no forwarding --------------------------------------------------


def test_search_with_a_scorer_loads_and_its_scorer_is_inert(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1]}, cv=2,
                         scoring="f1_macro").fit(X, y)  # fmt: skip
    path = tmp_path / "search.joblib"
    joblib.dump(model, path)
    loaded = loading.load(path)
    # A refitted search is converted as its best estimator, which answers as the search did.
    assert loaded.selected == "best_estimator_"
    assert loaded.metadata["best_params"] == model.best_params_
    np.testing.assert_array_equal(loaded.estimator.predict(X), model.predict(X))
    search = loading._read(path, "joblib", loading.DEFAULT_POLICY, 2**30).obj
    assert isinstance(search.scorer_, standins.InertScorer)
    assert not callable(search.scorer_)


def test_frozen_estimator_loads_as_a_fixed_api_and_calibrates_alike(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    model = CalibratedClassifierCV(FrozenEstimator(LogisticRegression(max_iter=300).fit(X, y)))
    model.fit(X, y)
    path = tmp_path / "calibrated.joblib"
    joblib.dump(model, path)
    loaded = loading.load(path).estimator
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    frozen = loaded.calibrated_classifiers_[0].estimator
    assert type(frozen) is standins.FrozenModel
    with pytest.raises(AttributeError):
        frozen.coef_  # noqa: B018  # no forwarding of anything but the inference API


def test_bunch_loads_as_a_dict_without_attribute_forwarding(tmp_path: Path) -> None:
    from sklearn.ensemble import VotingClassifier

    X, y = load_iris(return_X_y=True)
    model = VotingClassifier([("lr", LogisticRegression(max_iter=300))]).fit(X, y)
    path = tmp_path / "voting.joblib"
    joblib.dump(model, path)
    loaded = loading.load(path).estimator
    assert type(loaded.named_estimators_) is standins.LoadedBunch
    assert isinstance(loaded.named_estimators_["lr"], LogisticRegression)
    assert not hasattr(loaded.named_estimators_, "lr")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_unsafe_load_still_works_for_files_you_made(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "m.joblib"
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), path)
    loaded = loading.load(path, loading.TrustPolicy(unsafe=True))
    assert type(loaded.estimator) is LogisticRegression


def test_a_truncated_stream_inside_an_array_is_reported_as_truncated(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "m.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=3).fit(X, y), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2000])
    with pytest.raises(ModelLoadError, match="truncated"):
        loading.load(path)


@pytest.mark.parametrize("kind", ["csr", "coo"])
def test_sparse_matrices_must_index_inside_their_shape(tmp_path: Path, kind: str) -> None:
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.eye(3)) if kind == "csr" else sp.coo_matrix(np.eye(3))
    model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    model.coef_ = matrix  # what LogisticRegression.sparsify() leaves behind

    def outside(saved: dict[str, Any]) -> dict[str, Any]:
        if kind == "csr":
            return {**saved, "indices": np.array([0, 1, 99], dtype=np.int32)}
        return {**saved, "coords": (np.array([0, 1, 99]), np.array([0, 1, 2]))}

    path = _crafted(tmp_path, model, type(matrix), outside)
    with pytest.raises(UntrustedModelError, match="indices outside it"):
        loading.load(path)
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps(model))
    assert (loading.load(good).estimator.coef_ != matrix).nnz == 0


def test_iterative_imputer_triplets_are_rebuilt_through_their_checker(tmp_path: Path) -> None:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    X, _ = load_iris(return_X_y=True)
    holes = X.copy()
    holes[::7, 1] = np.nan
    model = IterativeImputer(random_state=0, max_iter=3).fit(holes)
    path = tmp_path / "imputer.joblib"
    joblib.dump(model, path)
    np.testing.assert_array_equal(loading.load(path).estimator.transform(holes),
                                  model.transform(holes))  # fmt: skip
    # The triplet's model slot takes only an estimator.
    model.imputation_sequence_[0] = type(model.imputation_sequence_[0])(1, np.array([0]), "x")
    joblib.dump(model, path)
    with pytest.raises(UntrustedModelError, match="IterativeImputer's triplet was given"):
        loading.load(path)
