"""The only place apo reads model files: untrusted bytes in, rebuilt data out, no code run.

A pickle is a program for a small stack machine whose instructions can call any callable on its
stack. apo runs those programs on its own machine (``machine``), which admits each global the
file names in one role (``roles``: model classes, checked reconstructors, inert values), makes
bare instances instead of calling classes, sets state only through vetted setters (``state``),
counts memory before allocating it and refuses everything else with one line naming what the
file tried. Version upgrades are transformations of names and state here too (``upgrades``).
See docs/explanation/security.md.

Public API: ``load``, ``TrustPolicy``, ``LoadedModel``, ``MODEL_SUFFIXES``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pickle
import struct
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sklearn
from joblib import numpy_pickle
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from alphapulse_onnx.errors import ModelLoadError, UntrustedModelError, described
from alphapulse_onnx.loading import machine, roles, upgrades, wrappers
from alphapulse_onnx.loading.budget import Meter
from alphapulse_onnx.loading.checks import Name, Refused
from alphapulse_onnx.loading.inert import SAFE_UFUNCS
from alphapulse_onnx.loading.state import UnreadableFormat

ModelFormat = Literal["joblib", "pickle", "skops"]
MODEL_SUFFIXES: dict[str, ModelFormat] = {
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".sav": "pickle",  # a common name for pickled models (joblib's compressed files read too)
    ".skops": "skops",
}
# Without --max-model-memory, a file may declare this many times its own size (compressed files
# expand; arrays are held twice while numpy copies them), within these bounds.
MEMORY_PER_FILE_BYTE = 100
MEMORY_FLOOR = 256 * 2**20
MEMORY_CEILING = 4 * 2**30
MODEL_LIBRARIES = ("sklearn", "numpy", "scipy", "lightgbm", "xgboost")

__all__ = [
    "MODEL_SUFFIXES",
    "SAFE_UFUNCS",
    "LoadedModel",
    "ModelFormat",
    "TrustPolicy",
    "check_estimator",
    "load",
    "memory_limit",
    "selecting",
]


@dataclass(frozen=True)
class TrustPolicy:
    """What a run allows beyond the built-in lists.

    ``trusted`` holds modules (``mylib.features``) or dotted names (``mylib.features.Dropper``)
    given with ``--trust``: their classes join role (a) and their own code runs. ``unsafe``
    turns every check off (``--unsafe-load``). ``max_model_memory`` replaces the per-file memory
    rule with one absolute limit in bytes (``--max-model-memory``).
    """

    trusted: tuple[str, ...] = ()
    unsafe: bool = False
    max_model_memory: int | None = None
    # ``--select KEY``: which model to take from a file that saves several in a dict or list
    # (``pipeline``, ``models.0``); not a trust setting, but one more rule for reading files.
    select: str | None = None

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
    # What the loader changed to run it on today's release, in words (``upgrades``).
    upgrades: tuple[str, ...] = field(default=())
    # When the file wraps the model: where it was found (``pipeline``, ``[0]``,
    # ``GridSearchCV.best_estimator_``) and the plain values saved beside it (a threshold, a
    # feature list), for the manifest.
    selected: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Files beside it that hold part of the model (joblib before 0.10 kept arrays in them).
    companions: tuple[Path, ...] = ()


def dotted_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def selecting(policy: TrustPolicy, selected: str | None) -> TrustPolicy:
    """``policy`` choosing, in a wrapped file, the model that convert chose (the manifest's
    ``source.selected``) unless ``--select`` says otherwise."""
    if policy.select is not None or not selected:
        return policy
    return dataclasses.replace(policy, select=selected)


def memory_limit(size: int, policy: TrustPolicy) -> int:
    """The most data a file of ``size`` bytes may declare while it loads."""
    if policy.max_model_memory is not None:
        return policy.max_model_memory
    return min(max(size * MEMORY_PER_FILE_BYTE, MEMORY_FLOOR), MEMORY_CEILING)


def load(path: Path, policy: TrustPolicy = DEFAULT_POLICY) -> LoadedModel:
    """Rebuild the model in ``path`` without running code from it, and check what it holds."""
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = _read(path, fmt, policy, memory_limit(size, policy))
        applied, versions = read.notes, read.versions
        found = wrappers.unwrap(read.obj, path, policy.select)
        obj = found.model
        if isinstance(obj, BaseEstimator):
            obj = _upgrade(path, obj, versions, applied)
    notes: list[str] = list(found.notes)
    for warning in caught:
        message = str(warning.message).strip()
        if message and not issubclass(warning.category, (DeprecationWarning, FutureWarning)):
            notes.append(message.splitlines()[0])
    # The version the root was pickled with, else any part's that differs from this one's.
    others = [v for v in versions.values() if v != sklearn.__version__]
    pickled_version = versions.get(id(obj)) or sklearn.__version__
    if pickled_version == sklearn.__version__ and others:
        pickled_version = others[0]
    applied = list(dict.fromkeys(applied))
    if applied:
        start = (f"upgraded from scikit-learn {pickled_version} to {sklearn.__version__}"
                 if pickled_version != sklearn.__version__
                 else "upgraded for the installed libraries")  # fmt: skip
        notes.insert(0, f"{start}: " + "; ".join(applied))
    elif pickled_version != sklearn.__version__:
        notes.insert(
            0, f"pickled with scikit-learn {pickled_version}, running {sklearn.__version__}"
        )
    check_estimator(obj, path)
    return LoadedModel(
        path=path,
        format=fmt,
        estimator=obj,
        estimator_type=dotted_name(obj),
        sklearn_version=pickled_version,
        warnings=tuple(dict.fromkeys(notes)),
        upgrades=tuple(applied),
        selected=found.selected,
        metadata=found.metadata,
        companions=read.companions,
    )


def _upgrade(path: Path, obj: Any, versions: dict[int, str], notes: list[str]) -> Any:
    try:
        return upgrades.upgrade(obj, versions, notes)
    except upgrades.Untranslatable as exc:
        raise ModelLoadError(
            f"saved by scikit-learn {_oldest(versions)}: {exc}",
            path=path,
            hint="re-fit the model with a current scikit-learn, or load it with the release "
            "that saved it",
        ) from None
    except Exception as exc:  # a corrupt state that the upgrade walk trips over
        raise ModelLoadError(
            f"the file holds a corrupt {type(obj).__name__} ({described(exc, 120)})", path=path
        ) from None


def _oldest(versions: dict[int, str]) -> str:
    known = sorted(set(versions.values()), key=upgrades.version_tuple)
    return known[0] if known else "unknown"


@dataclass
class _Read:
    """The object in a file, the upgrade notes its load made, the scikit-learn versions its
    parts recorded (by ``id``), and the files beside it that it read."""

    obj: Any
    notes: list[str]
    versions: dict[int, str]
    companions: tuple[Path, ...] = ()


def _read(path: Path, fmt: ModelFormat, policy: TrustPolicy, limit: int) -> _Read:
    try:
        if fmt == "skops":
            return _Read(_load_skops(path, policy), [], {})
        if policy.unsafe:
            return _Read(_unpickle_unsafe(path), [], {})
        return _unpickle(path, policy, limit)
    except machine.NotAdmitted as exc:
        raise _not_admitted(path, exc.module, exc.name) from None
    except UnreadableFormat as exc:
        raise ModelLoadError(str(exc), path=path, hint=exc.hint) from None
    except Refused as exc:
        hint = (
            "if you trust its size, rerun with --max-model-memory (e.g. 8G)"
            if "memory limit" in str(exc)
            else "do not use this file; if you made it, re-save the fitted model with joblib.dump"
        )
        raise UntrustedModelError(
            f"refused to load: {exc} (nothing from the file was run)", path=path, hint=hint
        ) from None
    except ModelLoadError:
        raise
    except RecursionError:
        raise ModelLoadError(
            "the file nests objects too deeply to read (corrupt or hostile)", path=path
        ) from None
    except (EOFError, pickle.UnpicklingError, ValueError, IndexError, KeyError, TypeError,
            AttributeError, OSError, zipfile.BadZipFile, MemoryError, OverflowError,
            UnicodeDecodeError, struct.error) as exc:  # fmt: skip
        raise ModelLoadError(_classify(path, fmt, exc), path=path) from None
    except Exception as exc:  # a library raising something else on garbage input
        raise ModelLoadError(
            f"not a readable model file ({type(exc).__name__})", path=path
        ) from None


def _not_admitted(path: Path, module: str, name: str) -> ModelLoadError:
    dotted = f"{module}.{name}"
    if module.split(".")[0] in MODEL_LIBRARIES and _missing_here(module, name):
        return ModelLoadError(
            f"the file needs {dotted}, which the installed libraries lack "
            f"(saved with scikit-learn {upgrades.saved_sklearn_version(path) or 'unknown'}, "
            f"running {sklearn.__version__})",
            path=path,
            hint="load it with the library versions it was saved with and re-save it",
        )
    top = module.split(".")[0]
    from alphapulse_onnx.converters.encoders import missing_extra_hint

    extra = missing_extra_hint(module)
    if extra is not None:
        return ModelLoadError(
            f"the file needs {dotted}, from a library that is not installed", path=path, hint=extra
        )
    if top == "__main__":
        hint = (
            f"{name} was defined in the training script itself: move it into an importable "
            f"module, re-save the model, and trust that module with --trust"
        )
    elif top in sys.stdlib_module_names or top in ("__builtin__", "copy_reg"):
        hint = "model files never need Python's own functions: do not use this file"
    elif top in MODEL_LIBRARIES:
        # Present here but not admitted: not an estimator or a fitted helper type, so a fitted
        # model never holds it; the names attackers chain (forwarders, callers) look like this.
        hint = (
            f"a fitted {top} model never holds {dotted}: do not use this file; only if you "
            f"made it yourself, rerun with --trust {dotted}"
        )
    else:
        hint = (
            f"if you trust this file and its code, rerun with --trust {dotted} "
            "and a converter plugin"
        )
    return UntrustedModelError(
        f"refused to load: the file references {dotted}, which apo's loader does not admit "
        "(nothing from the file was run)",
        path=path,
        hint=hint,
    )


def _missing_here(module: str, name: str) -> bool:
    """Whether a model library's ``module.name`` is absent from the installed release.

    Only a module that is already imported is looked into, through its ``__dict__`` (a module
    ``__getattr__`` could import more): checking never imports what the file names.
    """
    loaded = sys.modules.get(module)
    if loaded is not None:
        return name.split(".")[0] not in vars(loaded)
    parent = module.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return False
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def _unpickle(path: Path, policy: TrustPolicy, limit: int) -> _Read:
    meter = Meter(limit)
    # joblib sniffs the compressor (zlib, gzip, bz2, lzma, lz4) and hands back a reader.
    with (
        path.open("rb") as raw,
        numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _),
    ):
        if isinstance(handle, str):  # joblib before 0.10: arrays in files beside this one
            return _unpickle_old_joblib(path, policy, meter)
        # A plain pickle from joblib before 0.10 names its arrays' files beside it.
        obj, done = machine.unpickle(handle, meter, _trusted_lookup(policy), bool(policy.trusted),
                                     side_files=machine.SideFiles(path))  # fmt: skip
    done.notes.extend(upgrades.moved_names(done.renamed))
    used = done.side_files.used if done.side_files is not None else []
    return _Read(obj, done.notes, done.versions, tuple(dict.fromkeys(used)))


def _unpickle_old_joblib(path: Path, policy: TrustPolicy, meter: Meter) -> _Read:
    """joblib's format before 0.10: a pickle (zlib "Z-file" when compressed) whose arrays are
    in ``<name>_<n>.npy`` / ``.z`` files beside it, read by the loader without pickles."""
    import io

    with path.open("rb") as raw:
        if raw.read(len(machine.ZFILE_PREFIX)) == machine.ZFILE_PREFIX:
            raw.seek(0)
            stream: Any = io.BytesIO(machine.read_zfile(raw, meter.remaining))
        else:
            raw.seek(0)
            stream = io.BytesIO(raw.read(meter.remaining + 1))
    obj, done = machine.unpickle(stream, meter, _trusted_lookup(policy), bool(policy.trusted),
                                 side_files=machine.SideFiles(path))  # fmt: skip
    done.notes.extend(upgrades.moved_names(done.renamed))
    used = done.side_files.used if done.side_files is not None else []
    return _Read(obj, done.notes, done.versions, tuple(dict.fromkeys(used)))


def _trusted_lookup(policy: TrustPolicy) -> Any:
    """``(module, name) -> admitted object`` for names the user trusts with ``--trust``."""

    def lookup(module: str, name: str) -> Any:
        if not policy.trusted or not policy.trusts(module, name):
            return None
        try:
            target: Any = importlib.import_module(module)
            for part in name.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(
                f"the file needs {module}.{name}, trusted with --trust, which cannot be "
                f"imported here ({type(exc).__name__}: {exc})",
                hint="install the package that defines it, or put it on PYTHONPATH",
            ) from None
        if isinstance(target, type):
            return Name(f"{module}.{name}", "model", target, trusted=True)
        return target

    return lookup


def _unpickle_unsafe(path: Path) -> Any:
    """``--unsafe-load``: joblib's own unpickler, with no checks at all (the CLI warns)."""
    with (
        path.open("rb") as raw,
        numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _),
    ):
        return numpy_pickle.NumpyUnpickler(str(path), handle, ensure_native_byte_order=True).load()


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
        for dotted in untrusted:
            module, _, name = dotted.rpartition(".")
            if not (policy.trusts(module, name) or _admitted_for_skops(module, name)):
                raise machine.NotAdmitted(module, name)
    return sio.load(path, trusted=untrusted)


def _admitted_for_skops(module: str, name: str) -> bool:
    """skops builds objects itself: admit model classes and inert values, not stand-ins."""
    admitted = roles.admit(module, name)
    if isinstance(admitted, tuple):
        return True
    if not isinstance(admitted, Name) or admitted.dotted in roles.STANDINS:
        return False
    return admitted.role == "model" or isinstance(admitted.target, type)


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
            f"the {kind} in this file has an incomplete or corrupt state ({described(exc, 120)})",
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
            f"the {kind} in this file is not a usable estimator ({described(exc, 120)})", path=path
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
    truncated = ("truncated", "ran out", "eof:", "end of stream", "compressed file ended",
                 "ends early", "exhausted")  # fmt: skip
    if isinstance(exc, EOFError) or any(word in text.lower() for word in truncated):
        return "the file is truncated (the pickle data ends early)"
    if isinstance(exc, MemoryError):
        return "the file asks for more memory than this machine has (corrupt or hostile)"
    if looks_like_pickle:
        detail = f": {text.splitlines()[0][:120]}" if text else ""
        return f"the file is corrupt ({type(exc).__name__}{detail})"
    return "not a pickle or joblib file"
