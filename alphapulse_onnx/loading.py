"""The only place apo unpickles model files: a restricted unpickler plus checks of what came out.

A pickle reaches code through exactly one door, ``find_class``: every global it names (a class to
build, a function to call) is resolved there. We open that door only for *names* on an allowlist,
never whole packages, because numpy and scikit-learn themselves ship functions that run code or
start processes. joblib's ``NumpyUnpickler`` is a ``pickle._Unpickler`` subclass and, from joblib
1.6, routes the nested pickles of object arrays through the outer ``find_class`` as well, so one
override guards both formats (compressed or not). See docs/explanation/security.md.
"""

from __future__ import annotations

import _compat_pickle
import functools
import importlib
import inspect
import pickle
import re
import types
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sklearn
from joblib import numpy_pickle
from sklearn.base import BaseEstimator
from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted

from alphapulse_onnx import compat
from alphapulse_onnx.errors import ModelLoadError, UntrustedModelError

ModelFormat = Literal["joblib", "pickle", "skops"]
MODEL_SUFFIXES: dict[str, ModelFormat] = {
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".skops": "skops",
}

# Libraries whose *classes* a model is made of. Functions are never allowed by module, only by name.
_CLASS_PACKAGES = ("sklearn", "numpy", "scipy.sparse", "lightgbm", "xgboost", "catboost")
# The boosting libraries also ship trackers, servers and training callbacks: only the modules that
# hold their estimators and boosters are open.
_LIBRARY_MODULES: dict[str, frozenset[str]] = {
    "lightgbm": frozenset({"lightgbm.sklearn", "lightgbm.basic"}),
    "xgboost": frozenset({"xgboost.sklearn", "xgboost.core"}),
    "catboost": frozenset({"catboost.core"}),
}
# Modules inside those packages that hold test helpers, build tools, file and network access or
# vendored code: never, whether named directly or as the defining module of a re-exported class.
_DENIED_MODULES = re.compile(
    r"(^|\.)(tests?|_testing|testing|estimator_checks|_build_utils|externals|conftest|"
    r"_show_versions|distutils|f2py|ctypeslib|_pytesttester|_datasource|_iotools|_npyio_impl|"
    r"npyio|_mocking|datasets|parallel|callback|plotting|dask|spark|tracker|federated|"
    r"collective|engine|__main__|_pyinstaller|__config__|_configtool)(\.|$)"
)
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Classes of the model libraries whose constructor touches files or calls what it is given.
_DENIED_CLASSES = frozenset(
    {
        "numpy.memmap",  # memmap(path, mode="w+") creates or truncates any file
        "numpy.vectorize",  # calls the function it wraps
        "numpy.lib._function_base_impl.vectorize",
        "numpy.errstate",  # its call= hook
        "numpy._core._ufunc_config.errstate",
        "numpy.lib._stride_tricks_impl.DummyArray",  # an __array_interface__ of its caller's choice
        "numpy.lib.stride_tricks.DummyArray",
    }
)
# Attributes that make numpy treat an object as an array: ``__array_interface__`` carries a raw
# memory address. No fitted model stores a dunder attribute, so a file that sets one is refused.
_DUNDER = re.compile(r"^__\w+__$")
_GRAPH_BUDGET = 5_000_000  # objects visited before the walk gives up (a DoS guard, not a check)
# Exact globals beyond those classes: array and RNG rebuilders, container types and codecs.
_ALLOWED_NAMES = frozenset(
    {
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray.scalar",
        "numpy._core.numeric._frombuffer",
        "numpy.core.numeric._frombuffer",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "numpy.ma.core._mareconstruct",  # masked arrays (a search's cv_results_)
        "builtins.slice",
        "builtins.set",
        "builtins.frozenset",
        "builtins.complex",
        "builtins.bytearray",
        "builtins.range",
        "builtins.object",
        "builtins.list",
        "builtins.dict",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.str",
        "builtins.bytes",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "copyreg._reconstructor",
        # SelectKBest/SelectPercentile keep their score function: pure statistics, run only by fit.
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.r_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
        "_codecs.encode",
        "datetime.datetime",
        "datetime.date",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
    }
)
# numpy ufuncs that FunctionTransformer(func=np.log1p) and friends pickle by name: pure arithmetic.
SAFE_UFUNCS = frozenset(
    {
        "log1p", "expm1", "log", "log2", "log10", "exp", "exp2", "sqrt", "cbrt", "square",
        "abs", "absolute", "fabs", "negative", "reciprocal", "sign", "tanh", "sinh", "cosh",
        "arcsinh", "arctan", "sin", "cos", "floor", "ceil", "rint", "trunc",
    }
)  # fmt: skip
# Cython state restorers (``__pyx_unpickle_Foo``) and scikit-learn's ``newObj`` helpers rebuild one
# extension type from a checked state; they call nothing of the pickle's choosing.
_CYTHON_RESTORER = re.compile(r"^__pyx_unpickle_\w+$")
_SKLEARN_NEWOBJ_MODULES = frozenset(
    {
        "sklearn.neighbors._kd_tree",
        "sklearn.neighbors._ball_tree",
        "sklearn.metrics._dist_metrics",
    }
)


@dataclass(frozen=True)
class TrustPolicy:
    """What a run allows beyond the built-in allowlist.

    ``trusted`` holds modules (``mylib.features``) or dotted names (``mylib.features.Dropper``)
    given with ``--trust``; ``unsafe`` turns every check off (``--unsafe-load``).
    """

    trusted: tuple[str, ...] = ()
    unsafe: bool = False

    def trusts(self, module: str, name: str) -> bool:
        dotted = f"{module}.{name}"
        return any(dotted == t or module == t or module.startswith(t + ".") for t in self.trusted)


DEFAULT_POLICY = TrustPolicy()


@dataclass(frozen=True)
class LoadedModel:
    """A model file read safely and checked to be a fitted estimator."""

    path: Path
    format: ModelFormat
    estimator: Any
    estimator_type: str  # dotted class name, e.g. sklearn.ensemble._forest.RandomForestClassifier
    sklearn_version: str | None  # the version that pickled it, when the file records one
    warnings: tuple[str, ...] = field(default=())


def dotted_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(module: str, name: str) -> Any:
    mod = importlib.import_module(module)
    obj: Any = mod
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _from_model_library(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _CLASS_PACKAGES)


def _module_open(module: str) -> bool:
    """Whether classes may come from ``module`` at all (checked before anything is imported)."""
    if not _MODULE_NAME.match(module) or not _from_model_library(module):
        return False
    if _DENIED_MODULES.search(module):
        return False
    library = _LIBRARY_MODULES.get(module.split(".")[0])
    return library is None or module in library


def _resolvable(module: str, name: str) -> bool:
    """Whether an allowlisted module has ``name``; never imports a module outside the allowlist."""
    if not _module_open(module) or not name.isidentifier():
        return False
    try:
        _resolve(module, name)
    except (ImportError, AttributeError):
        return False
    return True


@functools.cache
def _metric_functions() -> frozenset[str]:
    """Score functions of scikit-learn's named scorers (a fitted search keeps its scorer)."""
    from sklearn.metrics import get_scorer, get_scorer_names

    names: set[str] = {"sklearn.metrics._scorer._passthrough_scorer"}
    for scorer_name in get_scorer_names():
        func = getattr(get_scorer(scorer_name), "_score_func", None)
        if func is not None and inspect.isfunction(func):
            names.add(f"{func.__module__}.{func.__qualname__}")
    return frozenset(names)


def _safe_class(obj: Any, top: str) -> bool:
    if not inspect.isclass(obj) or obj.__module__.split(".")[0] != top:
        return False
    if not _module_open(obj.__module__):  # a class re-exported from a denied module
        return False
    if f"{obj.__module__}.{obj.__qualname__}" in _DENIED_CLASSES:
        return False
    return not issubclass(obj, np.memmap)


def _is_allowed(module: str, name: str, policy: TrustPolicy) -> tuple[bool, Any]:
    """Decide whether ``module.name`` may be resolved; return the object when already resolved."""
    dotted = f"{module}.{name}"
    if policy.trusts(module, name) or dotted in _ALLOWED_NAMES:
        return True, None
    if module == "numpy" and name in SAFE_UFUNCS:
        return True, None
    if not _module_open(module) or not name.isidentifier():
        return False, None  # a dotted name could walk into (and import) a denied submodule
    if _CYTHON_RESTORER.match(name) or (name == "newObj" and module in _SKLEARN_NEWOBJ_MODULES):
        return True, None
    if module.startswith("sklearn.metrics.") and dotted in _metric_functions():
        return True, None
    upgraded = compat.find_renamed(module, name)
    if upgraded is not None:
        return True, upgraded
    if f"{module}.{name}" in _DENIED_CLASSES:
        return False, None
    try:
        obj = _resolve(module, name)
    except (ImportError, AttributeError):
        return False, None
    # Classes only: building one calls its constructor or __setstate__, which in these libraries
    # stores state. Functions (np.load, test helpers, build tools...) are never reachable.
    if _safe_class(obj, module.split(".")[0]):
        return True, obj
    return False, None


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _MissingGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str, cause: Exception) -> None:
        super().__init__(f"{module}.{name}: {cause}")
        self.module = module
        self.name = name


class _RestrictedUnpickler(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
    """joblib's unpickler (reads plain pickles too) with ``find_class`` limited to the allowlist."""

    def __init__(self, filename: str, handle: Any, policy: TrustPolicy) -> None:
        super().__init__(filename, handle, ensure_native_byte_order=True)
        self._policy = policy

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:
            # Protocols 0-2 name Python 2 modules (__builtin__, copy_reg): check what they map to.
            module, name = _python3_name(module, name)
        if not self._policy.unsafe:
            allowed, obj = _is_allowed(module, name, self._policy)
            if not allowed:
                if _module_open(module) and name.isidentifier() and not _resolvable(module, name):
                    # A class the model's own library once had: say which versions differ.
                    raise _MissingGlobal(module, name, AttributeError(name))
                raise _Refused(module, name)
            if obj is not None:
                return obj
        try:
            return _resolve(module, name)
        except (ImportError, AttributeError) as exc:
            raise _MissingGlobal(module, name, exc) from exc

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent IDs are not supported in model files")


def _python3_name(module: str, name: str) -> tuple[str, str]:
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _unpickle(path: Path, policy: TrustPolicy) -> Any:
    # joblib sniffs the compressor (zlib, gzip, bz2, lzma, lz4) and hands back a reader.
    with (
        path.open("rb") as raw,
        numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _),
    ):
        if isinstance(handle, str):
            raise ModelLoadError(
                "written by joblib < 0.10, whose format reads side files unchecked",
                path=path,
                hint="re-save the model with a current joblib",
            )
        return _RestrictedUnpickler(str(path), handle, policy).load()


def _load_skops(path: Path, policy: TrustPolicy) -> Any:
    """skops reads its own zip-of-JSON format; it builds only the types it is told to trust."""
    try:
        import skops.io as sio
    except ImportError:
        raise ModelLoadError(
            "the skops format needs the skops package",
            path=path,
            hint='pip install "alphapulse-onnx[skops]"',
        ) from None
    untrusted = [str(t) for t in sio.get_untrusted_types(file=path)]
    if not policy.unsafe:
        refused = [t for t in untrusted if not _trusted_type(t, policy)]
        if refused:
            module, _, name = refused[0].rpartition(".")
            raise _Refused(module, name)
    return sio.load(path, trusted=untrusted)


def _trusted_type(dotted: str, policy: TrustPolicy) -> bool:
    module, _, name = dotted.rpartition(".")
    return policy.trusts(module, name) or _is_allowed(module, name, policy)[0]


def _dunder_state(root: object) -> tuple[str, str] | None:
    """The first ``(type, attribute)`` where the loaded graph sets a dunder attribute or key.

    Walks instance ``__dict__``s, containers and object arrays; plain dicts may hold any key (a
    dict cannot pose as an array), but their values are walked too.
    """
    seen: set[int] = set()
    stack: list[object] = [root]
    budget = _GRAPH_BUDGET
    # Globals resolved by name (functions, ufuncs, classes) carry their library's own dunders.
    atoms = (str, bytes, bytearray, int, float, complex, bool, type(None), type, np.generic,
             np.ufunc, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)  # fmt: skip
    while stack and budget > 0:
        obj = stack.pop()
        if isinstance(obj, atoms) or id(obj) in seen:
            continue
        seen.add(id(obj))
        budget -= 1
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
            continue
        if isinstance(obj, dict):
            if type(obj) is not dict:
                for key in obj:
                    if isinstance(key, str) and _DUNDER.match(key):
                        return dotted_name(obj), key
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        try:
            attributes = object.__getattribute__(obj, "__dict__")
        except AttributeError:
            continue
        if isinstance(attributes, dict):
            for key in attributes:
                if isinstance(key, str) and _DUNDER.match(key):
                    return dotted_name(obj), key
            stack.extend(attributes.values())
    return None


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        return f"a dict (keys: {', '.join(map(str, list(obj)[:5]))})"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, np.ndarray):
        return f"a numpy array of shape {obj.shape}"
    return f"a {dotted_name(obj)}"


def check_estimator(obj: object, path: Path) -> None:
    """Raise ``ModelLoadError`` unless ``obj`` is a fitted scikit-learn-compatible estimator."""
    if not isinstance(obj, BaseEstimator):
        raise ModelLoadError(
            f"holds {_describe(obj)}, not a scikit-learn estimator",
            path=path,
            hint="save the fitted estimator or Pipeline itself",
        )
    kind = type(obj).__name__
    try:
        obj.get_params(deep=True)  # every constructor parameter must be there to be usable
    except Exception as exc:
        raise ModelLoadError(
            f"the {kind} in this file has an incomplete or corrupt state ({_first_line(exc)})",
            path=path,
            hint="re-save the model from the library versions that trained it",
        ) from None
    try:
        check_is_fitted(obj)
    except NotFittedError:
        raise ModelLoadError(
            f"the {kind} in this file was never fitted",
            path=path,
            hint="fit it before saving",
        ) from None
    except Exception as exc:
        raise ModelLoadError(
            f"the {kind} in this file is not a usable estimator ({_first_line(exc)})", path=path
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:120]}" if text else type(exc).__name__


def load(path: Path, policy: TrustPolicy = DEFAULT_POLICY) -> LoadedModel:
    """Read a model file without running code outside the allowlist, and check what it holds."""
    suffix = path.suffix.lower()
    fmt = MODEL_SUFFIXES.get(suffix)
    if fmt is None:
        raise ModelLoadError(f"unknown model file type {suffix!r}", path=path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelLoadError(f"cannot read: {exc.strerror}", path=path) from None
    if size == 0:
        raise ModelLoadError("the file is empty", path=path, hint="re-save the model")
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = _read(path, fmt, policy)
    if not policy.unsafe:
        found = _dunder_state(obj)
        if found is not None:
            raise UntrustedModelError(
                f"refused to load: the file sets {found[1]} on a {found[0]}, which no model "
                "does (it can make numpy read raw memory)",
                path=path,
                hint="re-save the model from its training code",
            )
    if isinstance(obj, BaseEstimator):
        try:
            obj = compat.upgrade(obj, notes)
        except Exception as exc:  # a corrupt state that the upgrade walk trips over
            raise ModelLoadError(
                f"the file holds a corrupt {type(obj).__name__} ({_first_line(exc)})", path=path
            ) from None
    pickled_version = sklearn.__version__
    for warning in caught:
        message = warning.message
        if isinstance(message, InconsistentVersionWarning):
            pickled_version = message.original_sklearn_version
        elif not issubclass(warning.category, DeprecationWarning) and str(message).strip():
            notes.append(str(message).strip().splitlines()[0])
    if pickled_version != sklearn.__version__:
        notes.insert(
            0,
            f"pickled with scikit-learn {pickled_version}, running {sklearn.__version__}",
        )
    check_estimator(obj, path)
    return LoadedModel(
        path=path,
        format=fmt,
        estimator=obj,
        estimator_type=dotted_name(obj),
        sklearn_version=pickled_version,
        warnings=tuple(dict.fromkeys(notes)),
    )


def _read(path: Path, fmt: ModelFormat, policy: TrustPolicy) -> Any:
    try:
        return _load_skops(path, policy) if fmt == "skops" else _unpickle(path, policy)
    except _Refused as exc:
        dotted = f"{exc.module}.{exc.name}"
        raise UntrustedModelError(
            f"refused to load: the file references {dotted}, which is not on the allowlist "
            "(nothing from the file was run)",
            path=path,
            hint=f"if you trust this file and its code, rerun with --trust {dotted}"
            + ("" if exc.module.split(".")[0] in _CLASS_PACKAGES else " and a converter plugin"),
        ) from None
    except _MissingGlobal as exc:
        raise ModelLoadError(
            f"the file needs {exc.module}.{exc.name}, which the installed libraries lack "
            f"(saved with scikit-learn {compat.saved_sklearn_version(path) or 'unknown'}, "
            f"running {sklearn.__version__})",
            path=path,
            hint="load it with the library versions it was saved with and re-save it",
        ) from None
    except ModelLoadError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, IndexError, KeyError, TypeError,
            AttributeError, OSError, zipfile.BadZipFile, MemoryError,
            OverflowError, UnicodeDecodeError, RecursionError) as exc:  # fmt: skip
        raise ModelLoadError(_classify(path, fmt, exc), path=path) from None
    except Exception as exc:  # a library raising something else on garbage input
        raise ModelLoadError(
            f"not a readable model file ({type(exc).__name__})", path=path
        ) from None


def _classify(path: Path, fmt: ModelFormat, exc: BaseException) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if fmt == "skops":
        text = str(exc).strip()
        detail = f": {text.splitlines()[0][:120]}" if text else ""
        return f"not a readable skops file ({type(exc).__name__}{detail})"
    looks_like_pickle = head[:1] == b"\x80" or head[:2] in (b"\x78\x9c", b"\x78\x01", b"\x78\xda")
    looks_like_pickle |= head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:4] == b"\xfd7zX"
    text = str(exc).strip()
    truncated = ("truncated", "ran out", "eof:", "end of stream", "compressed file ended")
    if isinstance(exc, EOFError) or any(word in text.lower() for word in truncated):
        return "the file is truncated (the pickle data ends early)"
    if isinstance(exc, MemoryError):
        return "the file asks for more memory than this machine has (corrupt or hostile)"
    if isinstance(exc, RecursionError):
        return "the file nests objects too deeply to read (corrupt or hostile)"
    if looks_like_pickle:
        detail = f": {text.splitlines()[0][:120]}" if text else ""
        return f"the file is corrupt ({type(exc).__name__}{detail})"
    return "not a pickle or joblib file"


def iter_model_files(root: Path) -> Iterable[Path]:
    """Model files under ``root`` (recursive), sorted, skipping hidden folders and outputs."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
            yield path
