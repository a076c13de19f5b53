"""The only place apo unpickles model files: a restricted unpickler plus checks of what came out.

A pickle reaches code through exactly one door, ``find_class``: every global it names (a class to
build, a function to call) is resolved there. We open that door only for *names* on an allowlist,
never whole packages, because numpy and scikit-learn themselves ship functions that run code or
start processes. joblib's ``NumpyUnpickler`` is a ``pickle._Unpickler`` subclass and, from joblib
1.6, routes the nested pickles of object arrays through the outer ``find_class`` as well, so one
override guards both formats (compressed or not). See docs/explanation/security.md.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import re
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
# Modules inside those packages that hold test helpers, build tools or vendored code: never.
_DENIED_MODULES = re.compile(
    r"(^|\.)(tests?|_testing|testing|estimator_checks|_build_utils|externals|conftest|"
    r"_show_versions|distutils|f2py|ctypeslib|_pytesttester|lib\._datasource|"
    r"callback|plotting|dask|spark)(\.|$)"
)
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


def _resolvable(module: str, name: str) -> bool:
    try:
        _resolve(module, name)
    except (ImportError, AttributeError):
        return False
    return True


def _is_allowed(module: str, name: str, policy: TrustPolicy) -> tuple[bool, Any]:
    """Decide whether ``module.name`` may be resolved; return the object when already resolved."""
    if policy.trusts(module, name) or f"{module}.{name}" in _ALLOWED_NAMES:
        return True, None
    if module == "numpy" and name in SAFE_UFUNCS:
        return True, None
    top = module.split(".")[0]
    if not _from_model_library(module):
        return False, None
    if _DENIED_MODULES.search(module):
        return False, None
    if _CYTHON_RESTORER.match(name) or (name == "newObj" and module in _SKLEARN_NEWOBJ_MODULES):
        return True, None
    upgraded = compat.find_renamed(module, name)
    if upgraded is not None:
        return True, upgraded
    try:
        obj = _resolve(module, name)
    except (ImportError, AttributeError):
        return False, None
    # Classes only: building one calls its constructor or __setstate__, which in these libraries
    # stores state. Functions (np.load, test helpers, build tools...) are never reachable.
    if inspect.isclass(obj) and obj.__module__.split(".")[0] == top:
        return True, obj
    return False, None


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _MissingGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str, cause: Exception):
        super().__init__(f"{module}.{name}: {cause}")
        self.module = module
        self.name = name


class _RestrictedUnpickler(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
    """joblib's unpickler (reads plain pickles too) with ``find_class`` limited to the allowlist."""

    def __init__(self, filename: str, handle: Any, policy: TrustPolicy):
        super().__init__(filename, handle, ensure_native_byte_order=True)
        self._policy = policy

    def find_class(self, module: str, name: str) -> Any:
        if not self._policy.unsafe:
            allowed, obj = _is_allowed(module, name, self._policy)
            if not allowed:
                if _from_model_library(module) and not _resolvable(module, name):
                    # A class the model's own library once had: say which versions differ.
                    raise _MissingGlobal(module, name, AttributeError(name))
                raise _Refused(module, name)
            if obj is not None:
                return obj
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as exc:
            raise _MissingGlobal(module, name, exc) from exc

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent IDs are not supported in model files")


def _unpickle(path: Path, policy: TrustPolicy) -> Any:
    with path.open("rb") as raw:
        # joblib sniffs the compressor (zlib, gzip, bz2, lzma, lz4) and hands back a reader.
        with numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _):
            if isinstance(handle, str):
                raise ModelLoadError(
                    "written by joblib < 0.10, whose format reads side files unchecked",
                    path=path,
                    hint="re-save the model with a current joblib",
                )
            return _RestrictedUnpickler(str(path), handle, policy).load()


def _load_skops(path: Path, policy: TrustPolicy) -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise ModelLoadError(
            "the skops format needs the skops package", path=path, hint="pip install skops"
        ) from exc
    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not policy.unsafe and not _trusted_type(t, policy)]
    if refused:
        raise UntrustedModelError(
            f"refused to load: untrusted type {refused[0]}",
            path=path,
            hint=f"if you trust this file, rerun with --trust {refused[0]}",
        )
    return sio.load(path, trusted=list(untrusted))


def _trusted_type(dotted: str, policy: TrustPolicy) -> bool:
    module, _, name = dotted.rpartition(".")
    return policy.trusts(module, name) or _is_allowed(module, name, policy)[0]


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
    try:
        check_is_fitted(obj)
    except NotFittedError:
        raise ModelLoadError(
            f"the {type(obj).__name__} in this file was never fitted",
            path=path,
            hint="fit it before saving",
        ) from None
    except TypeError as exc:
        raise ModelLoadError(f"not a usable estimator: {exc}", path=path) from None


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
    obj = compat.upgrade(obj, notes)
    pickled_version = sklearn.__version__
    for warning in caught:
        message = warning.message
        if isinstance(message, InconsistentVersionWarning):
            pickled_version = message.original_sklearn_version
        elif not issubclass(warning.category, DeprecationWarning):
            notes.append(str(message).splitlines()[0])
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
    if fmt == "skops":
        return _load_skops(path, policy)
    try:
        return _unpickle(path, policy)
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
            f"(running scikit-learn {sklearn.__version__})",
            path=path,
            hint="load it with the library versions it was saved with and re-save it",
        ) from None
    except ModelLoadError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, IndexError, KeyError, TypeError,
            AttributeError, OSError, EOFError, zipfile.BadZipFile, MemoryError,
            OverflowError, UnicodeDecodeError, RecursionError) as exc:  # fmt: skip
        raise ModelLoadError(_classify(path, exc), path=path) from None
    except Exception as exc:  # a library raising something else on garbage input
        raise ModelLoadError(f"not a readable model file ({type(exc).__name__})", path=path) from None


def _classify(path: Path, exc: BaseException) -> str:
    head = path.read_bytes()[:4]
    looks_like_pickle = head[:1] == b"\x80" or head[:2] in (b"\x78\x9c", b"\x78\x01", b"\x78\xda")
    looks_like_pickle |= head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:4] == b"\xfd7zX"
    if isinstance(exc, EOFError) or "truncated" in str(exc) or "ran out" in str(exc).lower():
        return "the file is truncated (the pickle data ends early)"
    if looks_like_pickle:
        return f"the file is corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return "not a pickle or joblib file"


def iter_model_files(root: Path) -> Iterable[Path]:
    """Model files under ``root`` (recursive), sorted, skipping hidden folders and outputs."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
            yield path
