"""Role (b), reconstructors: the only functions the loader calls, each through a checker.

Every checker validates its arguments' types, shapes and sizes before the real function runs,
charges what it will allocate, and marks what it makes as freshly built (so the file can give
it state once). ``RECONSTRUCTORS`` maps each admitted dotted name, as pickles spell it, to its
checker.
"""

from __future__ import annotations

import _codecs
import collections
import datetime
import decimal
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphapulse_onnx.loading.checks import (
    DTYPE_CODE,
    PLAIN_SCALARS,
    Context,
    Name,
    check_dtype,
    data_bytes,
    is_int,
    kinds,
    model_target,
    shape_of,
    size_of,
    type_name,
    whole_numbers,
)
from alphapulse_onnx.loading.inert import is_inert_callable

Builder = Callable[[Any, tuple[Any, ...], Context], Any]


@dataclass(frozen=True)
class Reconstructor:
    """A callable the loader may call, with the checker that validates its arguments first."""

    locate: tuple[str, str]  # (module, attribute) to import: our choice, never the file's
    build: Builder
    instantiable: bool = False  # may stand as the class of NEWOBJ (joblib's array wrapper)
    tuple_subclass: bool = False  # a namedtuple: NEWOBJ passes its values, checked by ``build``
    # What NEWOBJ makes of it for BUILD to fill (hook for frames.py: pandas' block managers,
    # which pickles both call and make bare).
    bare: Callable[[], Any] | None = None


def _copyreg_reconstructor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 3:
        raise ctx.refuse("copyreg._reconstructor takes (class, base, state)")
    cls, base, state = args
    if base is object and state is None:
        return ctx.instantiate(cls, via="copyreg._reconstructor")
    target = model_target(cls, ctx, "copyreg._reconstructor")
    if base in (list, dict) and issubclass(target, base) and type(state) is base:
        obj = base.__new__(target)  # type: ignore[call-overload]
        base.__init__(obj, state)  # type: ignore[misc]  # list/dict fill from plain data only
        return ctx.fresh(obj)
    raise ctx.refuse(
        f"copyreg._reconstructor was given base {type_name(base)} with {type_name(state)}"
    )


def _newobj(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1:
        raise ctx.refuse("copyreg.__newobj__ was given constructor arguments")
    return ctx.instantiate(args[0], via="copyreg.__newobj__")


def _newobj_ex(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 3 or args[1] != () or args[2] != {}:
        raise ctx.refuse("copyreg.__newobj_ex__ was given constructor arguments")
    return ctx.instantiate(args[0], via="copyreg.__newobj_ex__")


_ARRAY_TYPES = ("numpy.ndarray", "numpy.matrix", "numpy.matrixlib.defmatrix.matrix",
                "numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray")  # fmt: skip


def _array_type(value: Any, ctx: Context, what: str) -> type:
    if isinstance(value, Name) and value.dotted in _ARRAY_TYPES:
        target: type = value.target
        return target
    raise ctx.refuse(f"{what} was given {type_name(value)}, not a numpy array type")


def _np_reconstruct(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 3:
        raise ctx.refuse("numpy's _reconstruct takes (type, shape, dtype)")
    subtype = _array_type(args[0], ctx, "numpy's _reconstruct")
    shape = shape_of(args[1], ctx, "numpy's _reconstruct")
    if size_of(shape) != 0 or args[2] not in (b"b", "b"):
        raise ctx.refuse(f"numpy's _reconstruct was asked to allocate shape {shape}")
    return ctx.fresh(fn(subtype, shape, args[2]))  # an empty array; BUILD gives it its data


def _np_scalar(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) not in (1, 2):
        raise ctx.refuse("numpy's scalar takes (dtype, data)")
    dtype = check_dtype(args[0], ctx, "numpy's scalar")
    if dtype.hasobject:
        return args[1] if len(args) == 2 else None
    data = data_bytes(args[1], ctx, "numpy's scalar") if len(args) == 2 else b""
    if len(data) != dtype.itemsize:
        raise ctx.refuse(f"numpy's scalar was given {len(data)} bytes for a {dtype.itemsize}-byte"
                         " value")  # fmt: skip
    return fn(dtype, bytes(data))


def _np_frombuffer(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) not in (4, 5):
        raise ctx.refuse("numpy's _frombuffer takes (buffer, dtype, shape, order)")
    buf, dtype, shape, order = args[:4]
    if not isinstance(buf, (bytes, bytearray)):
        raise ctx.refuse(f"numpy's _frombuffer was given {type_name(buf)} as its buffer")
    dtype = check_dtype(dtype, ctx, "numpy's _frombuffer")
    dims = shape_of(shape, ctx, "numpy's _frombuffer")
    if dtype.hasobject or size_of(dims) * dtype.itemsize != len(buf):
        raise ctx.refuse("numpy's _frombuffer was given a buffer that does not fit its shape")
    if order not in ("C", "F", "A", "K"):
        raise ctx.refuse(f"numpy's _frombuffer was given order {order!r}")
    axis_order = args[4] if len(args) == 5 else None
    if axis_order is not None and sorted(whole_numbers(axis_order, ctx, "axis order")) != list(
        range(len(dims))
    ):
        raise ctx.refuse("numpy's _frombuffer was given an axis order that is no permutation")
    if axis_order is None:  # numpy before 2.0 takes four arguments (the origin worker's)
        return fn(buf, dtype, dims, order)
    return fn(buf, dtype, dims, order, axis_order)


def _np_dtype(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not 1 <= len(args) <= 3 or type(args[0]) is not str or not DTYPE_CODE.match(args[0]):
        raise ctx.refuse(f"numpy.dtype was given {kinds(args)}")
    align = bool(args[1]) if len(args) > 1 else False
    # copy=True always: a dtype rebuilt without a copy is numpy's shared singleton, and setting
    # its state would change float64 for the whole process.
    return ctx.fresh(np.dtype(args[0], align, True))


def _ma_reconstruct(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 4:
        raise ctx.refuse("numpy.ma's _mareconstruct takes four arguments")
    subtype = _array_type(args[0], ctx, "numpy.ma's _mareconstruct")
    baseclass = _array_type(args[1], ctx, "numpy.ma's _mareconstruct")
    shape = shape_of(args[2], ctx, "numpy.ma's _mareconstruct")
    if (
        not issubclass(subtype, np.ma.MaskedArray)
        or size_of(shape) != 0
        or args[3]
        not in (
            b"b",
            "b",
        )
    ):
        raise ctx.refuse("numpy.ma's _mareconstruct was asked for something other than an "
                         "empty masked array")  # fmt: skip
    return ctx.fresh(fn(subtype, baseclass, shape, args[3]))


def _bit_generator(value: Any, ctx: Context) -> Any:
    from numpy.random import _pickle

    generators: dict[str, Any] = dict(_pickle.BitGenerators)
    if type(value) is str and value in generators:
        return ctx.fresh(generators[value]())
    if isinstance(value, Name) and value.target in generators.values():
        return ctx.fresh(value.target())
    if isinstance(value, np.random.BitGenerator):
        return value  # built earlier in this file, by this checker
    raise ctx.refuse(f"numpy's random-state rebuilder was given {type_name(value)}")


def _bit_generator_args(args: tuple[Any, ...], ctx: Context, what: str) -> Any:
    if len(args) > 2:
        raise ctx.refuse(f"{what} takes at most two arguments")
    if len(args) == 2 and not (
        isinstance(args[1], Name) and args[1].dotted.endswith("__bit_generator_ctor")
    ):
        raise ctx.refuse(f"{what} was given {type_name(args[1])} as its bit-generator factory")
    return _bit_generator(args[0] if args else "MT19937", ctx)


def _randomstate_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    bit_generator = _bit_generator_args(args, ctx, "numpy's RandomState rebuilder")
    return ctx.fresh(np.random.RandomState(bit_generator))


def _generator_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    bit_generator = _bit_generator_args(args, ctx, "numpy's Generator rebuilder")
    return ctx.fresh(np.random.Generator(bit_generator))


def _bit_generator_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) > 1:
        raise ctx.refuse("numpy's bit-generator rebuilder takes one argument")
    return _bit_generator(args[0] if args else "MT19937", ctx)


def _legacy_randomstate_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if args:
        raise ctx.refuse("numpy's legacy RandomState rebuilder takes no arguments")
    return ctx.fresh(np.random.RandomState(0))


def _pyx_unpickle(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """Cython's ``__pyx_unpickle_Cls(type, checksum, state)`` for the class it is named after."""
    if len(args) != 3 or not is_int(args[1]) or not (args[2] is None or type(args[2]) is tuple):
        raise ctx.refuse(f"{fn.__name__} was given {kinds(args)}")
    owner = getattr(sys.modules[fn.__module__], fn.__name__.removeprefix("__pyx_unpickle_"))
    cls = args[0]
    target = cls.target if isinstance(cls, Name) else None
    if not (isinstance(target, type) and issubclass(target, owner)):
        raise ctx.refuse(f"{fn.__name__} was given {type_name(cls)}, not {owner.__name__}")
    return ctx.fresh(fn(target, int(args[1]), args[2]))


def _pyx_loss(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """A Cython loss's ``__pyx_unpickle_Cls(type, checksum, state)``, rebuilt as ``Cls(*state)``.

    The state of scikit-learn's losses is their parameters (Huber's delta, a quantile, a power);
    building from them accepts every release's checksum and needs no Cython unpickler (1.6 and
    later pickle these losses as ``Cls(*parameters)``)."""
    if len(args) != 3 or not is_int(args[1]) or not (args[2] is None or type(args[2]) is tuple):
        raise ctx.refuse(f"the unpickler of {fn.__name__} was given {kinds(args)}")
    cls = args[0]
    if not (isinstance(cls, Name) and cls.target is fn):
        raise ctx.refuse(f"the unpickler of {fn.__name__} was given {type_name(cls)}")
    try:  # state None: the parameters follow as the object's state (BUILD), if any
        return ctx.fresh(_float_args(fn, args[2] or (), ctx))
    except TypeError:
        raise ctx.refuse(f"{fn.__name__} does not take the parameters {args[2]!r}") from None


def _tree(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``Tree(n_features, n_classes, n_outputs)``: sizes checked before its arrays exist."""
    if len(args) != 3:
        raise ctx.refuse("sklearn's Tree takes (n_features, n_classes, n_outputs)")
    n_features, n_outputs = whole_numbers((args[0], args[2]), ctx, "sklearn's Tree")
    n_classes = args[1]
    if not isinstance(n_classes, np.ndarray) or n_classes.ndim != 1 or n_classes.dtype.kind != "i":
        raise ctx.refuse("sklearn's Tree was given n_classes that is not an integer vector")
    if not (0 < n_features < 2**31 and 0 < n_outputs <= 2**20 and len(n_classes) == n_outputs):
        raise ctx.refuse(f"sklearn's Tree was given sizes ({n_features}, {n_outputs})")
    if n_classes.size and not (n_classes.min() > 0 and n_classes.max() < 2**31):
        raise ctx.refuse("sklearn's Tree was given class counts out of range")
    ctx.charge(n_outputs * 16, "tree header")
    return ctx.fresh(fn(n_features, n_classes.astype(np.intp), n_outputs))


def _float_args(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """Cython loss objects that pickle as ``Loss(*parameters)``: at most two numbers."""
    if len(args) > 2 or not all(type(a) in (float, int) for a in args):
        raise ctx.refuse(f"{fn.__name__} was given {kinds(args)}, not its numeric parameters")
    return fn(*args)


def _new_obj(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """scikit-learn's ``newObj(cls)`` for KD/ball trees and distance metrics of its own module."""
    if len(args) != 1:
        raise ctx.refuse("newObj takes one class")
    target = model_target(args[0], ctx, "newObj")
    if target.__module__ != fn.__module__:
        raise ctx.refuse(f"newObj of {fn.__module__} was given {type_name(args[0])}")
    return ctx.fresh(fn(target))


def _plain_hashable(value: Any) -> bool:
    if type(value) in PLAIN_SCALARS or isinstance(value, np.generic):
        return True
    return type(value) in (tuple, frozenset) and all(_plain_hashable(v) for v in value)


def _items(args: tuple[Any, ...], ctx: Context, what: str) -> list[Any]:
    if not args:
        return []
    if len(args) != 1 or type(args[0]) not in (list, tuple):
        raise ctx.refuse(f"{what} was given {kinds(args)}")
    items = list(args[0])
    if not all(_plain_hashable(item) for item in items):
        raise ctx.refuse(f"{what} was given members that are not plain values")
    ctx.charge(64 + 16 * len(items), what)
    return items


def _set(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return set(_items(args, ctx, "set"))


def _frozenset(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return frozenset(_items(args, ctx, "frozenset"))


def _slice(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not 1 <= len(args) <= 3 or not all(a is None or is_int(a) for a in args):
        raise ctx.refuse(f"slice was given {kinds(args)}")
    return slice(*args)


def _range(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return (
        range(*whole_numbers(args, ctx, "range"))
        if 1 <= len(args) <= 3
        else _too_many("range", ctx)
    )


def _too_many(what: str, ctx: Context) -> Any:
    raise ctx.refuse(f"{what} was given the wrong number of arguments")


def _complex(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) > 2 or not all(type(a) in (int, float) for a in args):
        raise ctx.refuse(f"complex was given {kinds(args)}")
    return complex(*args)


def _bytearray(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes):
        return bytearray(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin-1", "latin1"):
        ctx.charge(len(args[0]), "bytearray")
        return bytearray(args[0], "latin-1")
    raise ctx.refuse(f"bytearray was given {kinds(args)}")


def _bytes(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise ctx.refuse(f"bytes was given {kinds(args)}")


_TEXT_CODECS = frozenset({"latin1", "latin-1", "ascii", "utf-8", "utf8"})


def _codecs_encode(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 2 or type(args[0]) is not str or args[1] not in _TEXT_CODECS:
        raise ctx.refuse(f"_codecs.encode was given {kinds(args)}")
    ctx.charge(len(args[0]), "bytes")
    return _codecs.encode(args[0], args[1])


def _ordered_dict(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if args:
        raise ctx.refuse("OrderedDict was given arguments (its items follow separately)")
    return collections.OrderedDict()


# What a defaultdict may make for a missing key: empty containers and zero values.
_FACTORIES = (None, list, dict, set, frozenset, tuple, int, float, str, bool,
              collections.OrderedDict, collections.defaultdict)  # fmt: skip


def _defaultdict(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    factory = args[0] if args else None
    if isinstance(factory, Name):  # OrderedDict, set...: admitted reconstructors, used as types
        factory = factory.target
    if len(args) > 1 or not any(factory is allowed for allowed in _FACTORIES):
        raise ctx.refuse(f"defaultdict was given {kinds(args)} as its default factory")
    return collections.defaultdict(factory)


def _counter(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) > 1 or (args and type(args[0]) is not dict):
        raise ctx.refuse(f"Counter was given {kinds(args)}")
    counts = args[0] if args else {}
    if not all(is_int(v) for v in counts.values()):
        raise ctx.refuse("Counter was given counts that are not whole numbers")
    return collections.Counter(counts)


def _imputer_triplet(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """IterativeImputer's ``_ImputerTriplet(feat_idx, neighbor_feat_idx, estimator)``: a
    namedtuple of a column index, the columns it is predicted from, and a fitted model."""
    from sklearn.base import BaseEstimator

    if len(args) != 3 or not is_int(args[0]):
        raise ctx.refuse(f"IterativeImputer's triplet was given {kinds(args)}")
    neighbours, estimator = args[1], args[2]
    if not (isinstance(neighbours, np.ndarray) and neighbours.dtype.kind in "iu"
            and neighbours.ndim == 1) or not isinstance(estimator, BaseEstimator):  # fmt: skip
        raise ctx.refuse(f"IterativeImputer's triplet was given {kinds(args)}")
    return fn(*args)


def _partial(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1 or not is_inert_callable(args[0]):
        raise ctx.refuse(f"functools.partial was given {kinds(args)}, not an admitted function")
    return ctx.fresh(functools.partial(args[0]))


def _datetime_like(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    # datetime/date/time pickle as their packed bytes (and a tzinfo); the types check the rest.
    if not 1 <= len(args) <= 2 or not isinstance(args[0], (bytes, str)):
        raise ctx.refuse(f"{fn.__name__} was given {kinds(args)}")
    if len(args) == 2 and not (args[1] is None or isinstance(args[1], datetime.tzinfo)):
        raise ctx.refuse(f"{fn.__name__} was given {type_name(args[1])} as its time zone")
    if isinstance(args[0], str):
        return fn(args[0].encode("latin1"), *args[1:])
    return fn(*args)


def _timedelta(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return datetime.timedelta(*whole_numbers(args, ctx, "timedelta")) if len(args) <= 3 else None


def _timezone(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not 1 <= len(args) <= 2 or not isinstance(args[0], datetime.timedelta):
        raise ctx.refuse(f"timezone was given {kinds(args)}")
    if len(args) == 2 and type(args[1]) is not str:
        raise ctx.refuse("timezone was given a name that is not text")
    return datetime.timezone(*args)


def _decimal(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1 or type(args[0]) is not str or len(args[0]) > 1000:
        raise ctx.refuse(f"Decimal was given {kinds(args)}")
    return decimal.Decimal(args[0])


def _array_wrapper(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    raise ctx.refuse("joblib's array wrapper was called instead of rebuilt")


_NP = ("numpy._core", "numpy.core")
RECONSTRUCTORS: dict[str, Reconstructor] = {
    "copyreg._reconstructor": Reconstructor(("copyreg", "_reconstructor"),
                                            _copyreg_reconstructor),
    "copyreg.__newobj__": Reconstructor(("copyreg", "__newobj__"), _newobj),
    "copyreg.__newobj_ex__": Reconstructor(("copyreg", "__newobj_ex__"), _newobj_ex),
    **{f"{np_}.multiarray._reconstruct": Reconstructor(("numpy._core.multiarray", "_reconstruct"),
                                                       _np_reconstruct) for np_ in _NP},
    **{f"{np_}.multiarray.scalar": Reconstructor(("numpy._core.multiarray", "scalar"),
                                                 _np_scalar) for np_ in _NP},
    **{f"{np_}.numeric._frombuffer": Reconstructor(("numpy._core.numeric", "_frombuffer"),
                                                   _np_frombuffer) for np_ in _NP},
    "numpy.dtype": Reconstructor(("numpy", "dtype"), _np_dtype),
    "numpy.ma.core._mareconstruct": Reconstructor(("numpy.ma.core", "_mareconstruct"),
                                                  _ma_reconstruct),
    "numpy.random._pickle.__randomstate_ctor": Reconstructor(
        ("numpy.random._pickle", "__randomstate_ctor"), _randomstate_ctor),
    "numpy.random._pickle.__generator_ctor": Reconstructor(
        ("numpy.random._pickle", "__generator_ctor"), _generator_ctor),
    "numpy.random._pickle.__bit_generator_ctor": Reconstructor(
        ("numpy.random._pickle", "__bit_generator_ctor"), _bit_generator_ctor),
    "numpy.random.__RandomState_ctor": Reconstructor(("numpy.random", "RandomState"),
                                                     _legacy_randomstate_ctor),
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": Reconstructor(
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"), _pyx_unpickle),
    "joblib.numpy_pickle.NumpyArrayWrapper": Reconstructor(
        ("joblib.numpy_pickle", "NumpyArrayWrapper"), _array_wrapper, instantiable=True),
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper": Reconstructor(
        ("joblib.numpy_pickle", "NumpyArrayWrapper"), _array_wrapper, instantiable=True),
    # joblib before 0.10: wrappers naming array files beside the pickle (machine.SideFiles)
    **{f"{module}.{wrapper}": Reconstructor(("joblib.numpy_pickle", "NumpyArrayWrapper"),
                                            _array_wrapper, instantiable=True)
       for module in ("joblib.numpy_pickle", "joblib.numpy_pickle_compat",
                      "sklearn.externals.joblib.numpy_pickle")
       for wrapper in ("NDArrayWrapper", "ZNDArrayWrapper")},
    "sklearn.tree._tree.Tree": Reconstructor(("sklearn.tree._tree", "Tree"), _tree),
    "sklearn.impute._iterative._ImputerTriplet": Reconstructor(
        ("sklearn.impute._iterative", "_ImputerTriplet"), _imputer_triplet, tuple_subclass=True),
    **{f"sklearn.neighbors.{m}.newObj": Reconstructor((f"sklearn.neighbors.{m}", "newObj"),
                                                      _new_obj)
       for m in ("_kd_tree", "_ball_tree")},
    "sklearn.metrics._dist_metrics.newObj": Reconstructor(("sklearn.metrics._dist_metrics",
                                                           "newObj"), _new_obj),
    "builtins.set": Reconstructor(("builtins", "set"), _set),
    "builtins.frozenset": Reconstructor(("builtins", "frozenset"), _frozenset),
    "builtins.slice": Reconstructor(("builtins", "slice"), _slice),
    "builtins.range": Reconstructor(("builtins", "range"), _range),
    "builtins.complex": Reconstructor(("builtins", "complex"), _complex),
    "builtins.bytearray": Reconstructor(("builtins", "bytearray"), _bytearray),
    "builtins.bytes": Reconstructor(("builtins", "bytes"), _bytes),
    "_codecs.encode": Reconstructor(("_codecs", "encode"), _codecs_encode),
    "collections.OrderedDict": Reconstructor(("collections", "OrderedDict"), _ordered_dict),
    "collections.defaultdict": Reconstructor(("collections", "defaultdict"), _defaultdict),
    "collections.Counter": Reconstructor(("collections", "Counter"), _counter),
    "functools.partial": Reconstructor(("functools", "partial"), _partial),
    **{f"datetime.{n}": Reconstructor(("datetime", n), _datetime_like)
       for n in ("datetime", "date", "time")},
    "datetime.timedelta": Reconstructor(("datetime", "timedelta"), _timedelta),
    "datetime.timezone": Reconstructor(("datetime", "timezone"), _timezone),
    "decimal.Decimal": Reconstructor(("decimal", "Decimal"), _decimal),
}  # fmt: skip
# Cython losses that pickle as ``Loss(*parameters)`` (scikit-learn's, by release).
_CYTHON_LOSSES = {
    "sklearn._loss._loss": (
        "CyAbsoluteError", "CyExponentialLoss", "CyHalfBinomialLoss", "CyHalfGammaLoss",
        "CyHalfMultinomialLoss", "CyHalfPoissonLoss", "CyHalfSquaredError", "CyHalfTweedieLoss",
        "CyHalfTweedieLossIdentity", "CyHuberLoss", "CyPinballLoss",
    ),
    "sklearn.linear_model._sgd_fast": (
        "Hinge", "SquaredHinge", "ModifiedHuber", "Log", "SquaredLoss", "Huber",
        "EpsilonInsensitive", "SquaredEpsilonInsensitive",
    ),
}  # fmt: skip
for _module, _names in _CYTHON_LOSSES.items():
    for _name in _names:
        RECONSTRUCTORS[f"{_module}.{_name}"] = Reconstructor((_module, _name), _float_args)
        RECONSTRUCTORS[f"{_module}.__pyx_unpickle_{_name}"] = (
            Reconstructor((_module, _name), _pyx_loss) if _module == "sklearn._loss._loss"
            else Reconstructor((_module, f"__pyx_unpickle_{_name}"), _pyx_unpickle)
        )  # fmt: skip
for _name in ("Classification", "Regression"):  # the SGD losses' Cython base classes
    RECONSTRUCTORS[f"sklearn.linear_model._sgd_fast.__pyx_unpickle_{_name}"] = Reconstructor(
        ("sklearn.linear_model._sgd_fast", f"__pyx_unpickle_{_name}"), _pyx_unpickle
    )
