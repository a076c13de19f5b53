"""Setting saved state on a freshly rebuilt object: the only ``__setstate__`` code apo runs.

``BUILD`` hands an object its saved state. Plain classes get it written into ``__dict__``
directly (keys must be plain identifiers: no dunders, no names of the class's methods); classes
with a ``__setstate__`` of their own get it called only when that method is one listed in
``VETTED`` below, after the state has been checked for what that method trusts (array sizes,
tree node links, a booster's model text instead of a path). Anything else is refused.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from alphapulse_onnx.loading import upgrades
from alphapulse_onnx.loading.checks import (
    PLAIN_SCALARS,
    Context,
    Name,
    check_dtype,
    check_layout,
    data_bytes,
    is_int,
    shape_of,
    size_of,
    type_name,
)
from alphapulse_onnx.loading.inert import inert_types, is_inert_callable
from alphapulse_onnx.loading.integrity import check_parts

Setter = Callable[[Any, Any, "LoadContext"], None]


class LoadContext(Context):
    """A ``Context`` that also records what loading learned (versions, upgrade notes)."""

    notes: list[str]
    versions: dict[int, str]
    links: list[tuple[Any, Any, Any, int | None]]  # trees' node links, checked after reading


def definer(cls: type, attribute: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``attribute`` (``None``: only ``object``)."""
    for klass in cls.__mro__:
        if klass is not object and attribute in klass.__dict__:
            return klass
    return None


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_ROUTINES: dict[type, frozenset[str]] = {}


def _class_routines(cls: type) -> frozenset[str]:
    """Names of methods (and other non-data descriptors) on ``cls``: state may not shadow them."""
    known = _ROUTINES.get(cls)
    if known is not None:
        return known
    names = set()
    for name in dir(cls):
        try:
            value = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(value, (types.FunctionType, staticmethod, classmethod)) or (
            hasattr(value, "__get__") and not hasattr(value, "__set__")
            and not isinstance(value, (types.MemberDescriptorType, type))
        ):  # fmt: skip
            names.add(name)
    _ROUTINES[cls] = frozenset(names)
    return _ROUTINES[cls]


_VALID_KEYS: dict[type, set[frozenset[str]]] = {}


def check_state_dict(inst: Any, state: Any, ctx: Context) -> dict[str, Any]:
    """A dict of plain attribute names, none a dunder or one of the class's own methods."""
    if type(state) is not dict:
        raise ctx.refuse(f"the file gives a {type_name(inst)} state of type {type_name(state)}")
    cls = type(inst)
    keys = frozenset(state)
    known = _VALID_KEYS.setdefault(cls, set())
    if keys not in known:  # a forest repeats one key set hundreds of times: check it once
        routines = _class_routines(cls)
        for key in keys:
            if type(key) is not str or not key.isidentifier():
                raise ctx.refuse(f"the file sets an attribute {key!r} on a {type_name(inst)}")
            if key.startswith("__") and key.endswith("__"):
                raise ctx.refuse(
                    f"the file sets {key} on a {type_name(inst)}, which no model does "
                    "(it can change how Python or numpy treats the object)"
                )
            if key in routines:
                raise ctx.refuse(f"the file replaces the method {key} of a {type_name(inst)}")
        if len(known) < 64:
            known.add(keys)
    for key, value in state.items():
        if type(value) is Name:
            raise ctx.refuse(f"the file stores {value.dotted} as {type_name(inst)}.{key}")
    ctx.charge(64 + 32 * len(state), "attributes")
    return state


def _instance_dict(inst: Any) -> dict[str, Any]:
    return object.__getattribute__(inst, "__dict__")  # type: ignore[no-any-return]


def plain_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """No ``__setstate__`` of its own: a dict (and optional slot dict) of attributes."""
    slots = None
    if type(state) is tuple and len(state) == 2:
        state, slots = state
    if state is not None:
        _instance_dict(inst).update(check_state_dict(inst, state, ctx))
    if slots:
        for key, value in check_state_dict(inst, slots, ctx).items():
            if not isinstance(inspect.getattr_static(type(inst), key, None),
                              types.MemberDescriptorType):  # fmt: skip
                raise ctx.refuse(f"the file sets {key} on a {type_name(inst)} as a slot it lacks")
            object.__setattr__(inst, key, value)
    check_parts(inst, ctx)


def estimator_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """``BaseEstimator.__setstate__``: the version it was pickled with, then its attributes."""
    state = dict(check_state_dict(inst, state, ctx))
    version = state.pop("_sklearn_version", None)
    if type(inst).__module__.startswith("sklearn."):
        ctx.versions[id(inst)] = version if type(version) is str else "pre-0.18"
    _instance_dict(inst).update(state)
    check_parts(inst, ctx)


def isotonic_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    estimator_state(inst, state, ctx)
    x, y = getattr(inst, "X_thresholds_", None), getattr(inst, "y_thresholds_", None)
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        if x.ndim != 1 or y.shape != x.shape or x.dtype.kind != "f" or y.dtype.kind != "f":
            raise ctx.refuse("the file gives an IsotonicRegression thresholds of mismatched shape")
        inst._build_f(x, y)


# --- numpy ------------------------------------------------------------------------------------


def _array_fields(state: Any, ctx: Context, what: str) -> tuple[tuple[int, ...], Any, Any]:
    if type(state) is not tuple or len(state) not in (4, 5):
        raise ctx.refuse(f"the file gives {what} a state of {type_name(state)}")
    shape, dtype, _, raw = state[-4:]
    dims = shape_of(shape, ctx, what)
    dtype = check_dtype(dtype, ctx, what)
    return dims, dtype, raw


def _check_raw(dims: tuple[int, ...], dtype: Any, raw: Any, ctx: Context, what: str) -> None:
    count = size_of(dims)
    if dtype.hasobject:
        if type(raw) is not list or len(raw) != count:
            raise ctx.refuse(f"the file gives {what} {type_name(raw)} for {count} objects")
        if any(isinstance(item, Name) for item in raw):
            raise ctx.refuse(f"the file stores a callable inside {what}")
        ctx.charge(8 * count, what)
        return
    data = data_bytes(raw, ctx, what)
    if len(data) != count * dtype.itemsize:
        raise ctx.refuse(f"the file gives {what} {len(data)} bytes for {count} values")
    ctx.charge(len(data), what)


def array_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    dims, dtype, raw = _array_fields(state, ctx, "a numpy array")
    _check_raw(dims, dtype, raw, ctx, "a numpy array")
    np.ndarray.__setstate__(inst, state)


def masked_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    if type(state) is not tuple or len(state) != 7:
        raise ctx.refuse(f"the file gives a masked array a state of {type_name(state)}")
    dims, dtype, raw = _array_fields(state[:5], ctx, "a masked array")
    _check_raw(dims, dtype, raw, ctx, "a masked array")
    mask = data_bytes(state[5], ctx, "a masked array's mask")
    mask_dtype = np.ma.make_mask_descr(dtype)
    if len(mask) != size_of(dims) * mask_dtype.itemsize:
        raise ctx.refuse("the file gives a masked array a mask that does not fit it")
    if not _plain(state[6]):
        raise ctx.refuse("the file gives a masked array a fill value that is not a plain value")
    ctx.charge(len(mask), "a masked array's mask")
    np.ma.MaskedArray.__setstate__(inst, state)  # type: ignore[arg-type]


_REFCOUNT_FLAG = 0x01  # numpy's NPY_ITEM_REFCOUNT: "items are Python object pointers"


def dtype_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    if type(state) is not tuple or len(state) not in (8, 9) or not is_int(state[0]):
        raise ctx.refuse(f"the file gives a numpy dtype a state of {type_name(state)}")
    subarray, names, fields = state[2], state[3], state[4]
    if subarray is not None and not (
        type(subarray) is tuple and len(subarray) == 2 and isinstance(subarray[0], np.dtype)
    ):
        raise ctx.refuse("the file gives a numpy dtype a malformed sub-array")
    if subarray is not None:
        shape_of(subarray[1], ctx, "a sub-array dtype")
    if names is not None and not (type(names) is tuple and all(type(n) is str for n in names)):
        raise ctx.refuse("the file gives a numpy dtype field names that are not text")
    if fields is not None and (type(fields) is not dict or not all(
        type(v) is tuple and isinstance(v[0], np.dtype) for v in fields.values()
    )):  # fmt: skip
        raise ctx.refuse("the file gives a numpy dtype malformed fields")
    np.dtype.__setstate__(inst, state)  # type: ignore[attr-defined]
    check_layout(inst, ctx)
    # The flag says "items are object pointers": it must agree with what the dtype is, or numpy
    # would read raw bytes from the file as pointers (or the reverse).
    holds_objects = inst.kind == "O" or (inst.subdtype is not None and inst.subdtype[0].kind == "O")
    if bool(inst.flags & _REFCOUNT_FLAG) != holds_objects or inst.hasobject != holds_objects:
        raise ctx.refuse("the file gives a numpy dtype flags that contradict its kind")


def random_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """numpy's random generators check their own state; it must hold plain data only."""
    if not _plain(state, allow=(np.random.BitGenerator, np.random.SeedSequence)):
        raise ctx.refuse(f"the file gives a {type_name(inst)} a state that is not plain data")
    inst.__setstate__(state)


def cython_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """Cython's generated ``__setstate__``: typed fields, assigned from a tuple."""
    if type(state) is not tuple or not _plain(state):
        raise ctx.refuse(f"the file gives a {type_name(inst)} a state that is not plain data")
    inst.__setstate__(state)


# --- scikit-learn's Cython trees --------------------------------------------------------------


def tree_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """``Tree.__setstate__`` after checking that every node links forward inside the tree."""
    if type(state) is not dict or not {"node_count", "nodes", "values"} <= set(state):
        raise ctx.refuse(f"the file gives an sklearn Tree a state of {type_name(state)}")
    state = upgrades.tree_state(state, ctx.notes)
    nodes, values, count = state["nodes"], state["values"], state["node_count"]
    if not is_int(count) or not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
        raise ctx.refuse("the file gives an sklearn Tree malformed node records")
    if nodes.shape != (count,) or not isinstance(values, np.ndarray) or len(values) != count:
        raise ctx.refuse("the file gives an sklearn Tree node arrays of inconsistent sizes")
    needed = {"left_child", "right_child", "feature"}
    if not needed <= set(nodes.dtype.names):
        raise ctx.refuse("the file gives an sklearn Tree node records without child links")
    ctx.links.append((nodes["left_child"], nodes["right_child"], nodes["feature"], inst.n_features))
    ctx.charge(nodes.nbytes + values.nbytes, "an sklearn Tree")
    inst.__setstate__(state)


def tree_predictor_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """TreePredictor's own __setstate__: its attributes, nodes cast to this platform's layout."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    plain_state(inst, state, ctx)
    attributes = _instance_dict(inst)
    nodes = upgrades.predictor_nodes(attributes["nodes"], ctx.notes)
    if nodes.dtype != PREDICTOR_RECORD_DTYPE:
        nodes = nodes.astype(PREDICTOR_RECORD_DTYPE, casting="same_kind")
    attributes["nodes"] = nodes
    for bitsets in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):  # added in 0.24
        if bitsets not in attributes:
            attributes[bitsets] = np.zeros((0, 8), dtype=np.uint32)


def binary_tree_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """KDTree/BallTree: indices must point into the data they index."""
    if type(state) is not tuple or len(state) not in (12, 13):
        raise ctx.refuse(f"the file gives a {type_name(inst)} a state of {type_name(state)}")
    data, idx, node_data, bounds = state[:4]
    arrays = (data, idx, node_data, bounds)
    if not all(isinstance(a, np.ndarray) for a in arrays) or data.ndim != 2 or idx.ndim != 1:
        raise ctx.refuse(f"the file gives a {type_name(inst)} malformed arrays")
    n_samples, n_features = data.shape
    sizes = [int(s) for s in state[4:11] if is_int(s)]
    if len(sizes) != 7:
        raise ctx.refuse(f"the file gives a {type_name(inst)} sizes that are not whole numbers")
    leaf_size, n_levels, n_nodes = sizes[:3]
    links_ok = (
        len(idx) == n_samples
        and (n_samples == 0 or (idx.min() >= 0 and idx.max() < n_samples))
        and node_data.dtype.names is not None
        and {"idx_start", "idx_end"} <= set(node_data.dtype.names)
        and len(node_data) == n_nodes
        and 0 < n_levels < 64 and n_nodes == 2**n_levels - 1 and leaf_size > 0
        and bounds.ndim == 3 and bounds.shape[1:] == (n_nodes, n_features)
    )  # fmt: skip
    if links_ok and n_nodes:
        start, end = node_data["idx_start"], node_data["idx_end"]
        links_ok = bool(np.all((start >= 0) & (start <= end) & (end <= n_samples)))
    metric = state[11]
    if not links_ok or type(metric).__module__ != "sklearn.metrics._dist_metrics":
        raise ctx.refuse(f"the file gives a {type_name(inst)} indices outside its data")
    if len(state) == 13 and not (state[12] is None or isinstance(state[12], np.ndarray)):
        raise ctx.refuse(f"the file gives a {type_name(inst)} malformed sample weights")
    mat = metric.__getstate__()[2]
    if type(metric).__name__.startswith("Mahalanobis") and mat.shape != (n_features, n_features):
        raise ctx.refuse(f"the file gives a {type_name(inst)} a metric for other data")
    inst.__setstate__(state)


def dist_metric_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    if type(state) is not tuple or len(state) != 3:
        raise ctx.refuse(f"the file gives a {type_name(inst)} a state of {type_name(state)}")
    p, vec, mat = state
    if type(p) not in (int, float) or not isinstance(vec, np.ndarray) or vec.ndim != 1:
        raise ctx.refuse(f"the file gives a {type_name(inst)} malformed parameters")
    if not isinstance(mat, np.ndarray) or mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ctx.refuse(f"the file gives a {type_name(inst)} a matrix that is not square")
    inst.__setstate__(state)


# --- the boosters: rebuilt from the model they carry, never from a path -----------------------


def lightgbm_booster_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    state = dict(check_state_dict(inst, state, ctx))
    text = state.get("_handle", state.get("handle"))
    if not (text is None or type(text) is str):
        raise ctx.refuse("the file gives a LightGBM Booster something other than its model text")
    if not all(_plain(value) for value in state.values()):
        raise ctx.refuse("the file gives a LightGBM Booster attributes that are not plain data")
    ctx.charge(2 * len(text or ""), "a LightGBM model")
    inst.__setstate__(state)


def xgboost_booster_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    state = dict(check_state_dict(inst, state, ctx))
    raw = state.get("handle")
    if not (raw is None or type(raw) is bytearray) or "handle" not in state:
        raise ctx.refuse("the file gives an XGBoost Booster something other than its model bytes")
    if not all(_plain(value) for key, value in state.items() if key != "handle"):
        raise ctx.refuse("the file gives an XGBoost Booster attributes that are not plain data")
    ctx.charge(2 * len(raw or b""), "an XGBoost model")
    if raw is not None and bytes(raw[:1]) not in (b"{", b"["):
        # XGBoost 3 reads only its JSON/UBJSON formats; pickles of XGBoost < 2.0 hold the old
        # binary format (the ``binf`` header from 1.0, none before).
        era = "1.x" if raw[:4] == b"binf" else "before 1.0"
        raise UnreadableFormat(
            f"the XGBoost model in this file is in the binary format of XGBoost {era}, which "
            f"XGBoost {_installed('xgboost')} cannot read",
            "load it with the XGBoost that saved it and save it again "
            "(model.save_model('model.json')), or install xgboost<3 beside apo",
        )
    inst.__setstate__(state)


class UnreadableFormat(Exception):
    """Saved data that is honest but in a format the installed library no longer reads."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _installed(package: str) -> str:
    module = sys.modules.get(package)  # imported already: the file's class came from it
    return str(getattr(module, "__version__", "installed here"))


def partial_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """functools.partial: an admitted function, bound to plain arguments only."""
    if type(state) is not tuple or len(state) != 4:
        raise ctx.refuse(f"the file gives functools.partial a state of {type_name(state)}")
    func, args, keywords, namespace = state
    if not is_inert_callable(func):
        raise ctx.refuse(f"the file binds functools.partial to {type_name(func)}")
    if type(args) is not tuple or not (keywords is None or type(keywords) is dict):
        raise ctx.refuse("the file gives functools.partial malformed arguments")
    if not _plain(args) or not _plain(keywords) or namespace not in (None, {}):
        raise ctx.refuse("the file binds functools.partial to arguments that are not plain data")
    inst.__setstate__(state)


def _plain(value: Any, allow: tuple[type, ...] = (), depth: int = 0) -> bool:
    """Plain data: scalars, arrays, dtypes, inert types, and containers of those."""
    if depth > 64:
        return False
    if type(value) in PLAIN_SCALARS or isinstance(value, (np.generic, np.ndarray, np.dtype)):
        return not (isinstance(value, np.ndarray) and value.dtype.hasobject and not all(
            _plain(v, allow, depth + 1) for v in value.ravel().tolist()
        ))  # fmt: skip
    if type(value) in (list, tuple, set, frozenset):
        return all(_plain(v, allow, depth + 1) for v in value)
    if type(value) in (dict, OrderedDict, defaultdict):
        return all(_plain(k, allow, depth + 1) and _plain(v, allow, depth + 1)
                   for k, v in value.items())  # fmt: skip
    if isinstance(value, type):
        return value in inert_types()
    return bool(allow) and isinstance(value, allow)


def coo_state(inst: Any, state: Any, ctx: LoadContext) -> None:
    """scipy's COO matrices read the row/col attributes of older releases into ``coords``."""
    inst.__setstate__(dict(check_state_dict(inst, state, ctx)))
    check_parts(inst, ctx)


# --- which setter a class gets ----------------------------------------------------------------

# The classes whose own __setstate__ apo runs, by the class that defines it.
VETTED: dict[str, Setter] = {
    "sklearn.base.BaseEstimator": estimator_state,
    "sklearn.isotonic.IsotonicRegression": isotonic_state,
    "numpy.ndarray": array_state,
    "numpy.ma.MaskedArray": masked_state,
    "numpy.ma.core.MaskedArray": masked_state,
    "numpy.dtype": dtype_state,
    "numpy.random.bit_generator.BitGenerator": random_state,
    "numpy.random.bit_generator.SeedSequence": cython_state,
    "numpy.random.mtrand.RandomState": random_state,
    "numpy.random._generator.Generator": random_state,
    "sklearn.tree._tree.Tree": tree_state,
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": tree_predictor_state,
    "lightgbm.basic.Booster": lightgbm_booster_state,
    "xgboost.core.Booster": xgboost_booster_state,
    "functools.partial": partial_state,
    "scipy.sparse._coo._coo_base": coo_state,
    "scipy.sparse._coo.coo_matrix": coo_state,
    "alphapulse_onnx.loading.standins.LoadedBunch": lambda inst, state, ctx: None,
    "alphapulse_onnx.loading.standins.RemainderColsList": lambda inst, state, ctx: None,
    "alphapulse_onnx.loading.standins.LoadedDict": lambda inst, state, ctx: None,
}


def _frame_setters() -> dict[str, Setter]:
    from alphapulse_onnx.loading import frames

    return frames.SETTERS


_CYTHON_STATE_MODULES = (
    "sklearn._loss._loss",
    "sklearn.linear_model._sgd_fast",
    "_loss",
)  # 1.5 and 1.8 built the loss module under this name


_SETTERS: dict[tuple[type, bool], Setter | None] = {}


def setter_for(cls: type, trusted: bool) -> Setter | None:
    """How to give an instance of ``cls`` its state, or ``None`` if apo does not vet it."""
    key = (cls, trusted)
    if key not in _SETTERS:
        _SETTERS[key] = _find_setter(cls, trusted)
    return _SETTERS[key]


def _find_setter(cls: type, trusted: bool) -> Setter | None:
    owner = definer(cls, "__setstate__")
    if owner is None:
        return plain_state
    dotted = _dotted(owner)
    found = VETTED.get(dotted) or _frame_setters().get(dotted)
    if found is not None:
        return found
    if owner.__module__ in ("sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree",
                            "sklearn.neighbors._binary_tree") and owner.__name__.startswith(
        "BinaryTree"
    ):  # fmt: skip
        return binary_tree_state
    if owner.__module__ == "sklearn.metrics._dist_metrics":
        return dist_metric_state
    if owner.__module__ in _CYTHON_STATE_MODULES:
        return cython_state
    if trusted:  # the user's own class, trusted by name: its own code runs
        return lambda inst, state, ctx: inst.__setstate__(state)
    return None
