"""Why a model failed, in a few words: the one classification behind the cause a failed manifest
entry records (``cause``), the convert table's cell and the summary that groups failures.

``cause_of`` reads the error's class (``errors``) and the stage it stopped at; the message only
tells apart causes that share a class (user code from other refused content, a trusted class
that cannot be imported, a file from other library versions). ``detail_of`` names what to list
beside a group: the refused class, the estimator without a converter, or the file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, get_args

from alphapulse_onnx.errors import (
    ConversionError,
    InputError,
    ModelLoadError,
    ParityError,
    UnsupportedModelError,
    UntrustedModelError,
)
from alphapulse_onnx.loading import MODEL_LIBRARIES
from alphapulse_onnx.loading.roles import THIRD_PARTY_ESTIMATORS

Cause = Literal[
    "user-code",
    "refused",
    "not-importable",
    "library-versions",
    "unreadable",
    "no-converter",
    "converter-failed",
    "parity",
    "origin",
    "input",
    "crash",
    "internal",
]
CAUSES: tuple[Cause, ...] = get_args(Cause)

# (table cell, summary phrase after the count, as in "3 refused: user code (...)").
LABELS: dict[Cause, tuple[str, str]] = {
    "user-code": ("refused: user code", "refused: user code"),
    "refused": ("refused: unsafe file", "refused as unsafe"),
    "not-importable": ("trusted code missing", "trusted code that cannot be imported here"),
    "library-versions": ("other library versions", "saved by library versions apo cannot bridge"),
    "unreadable": ("corrupt or not a model", "corrupt or not a model"),
    "no-converter": ("no converter", "without an ONNX converter"),
    "converter-failed": ("converter failed", "failed in the converter"),
    "parity": ("parity failed", "answer unlike scikit-learn (parity)"),
    "origin": ("origin check failed", "failed the origin check"),
    "input": ("bad input", "with bad input (--sample, options)"),
    "crash": ("worker died", "lost with their worker (crash or out of memory)"),
    "internal": ("internal error", "hit an internal error (a bug; rerun with --debug)"),
}

_REFERENCES = re.compile(r"references ([\w.]+), which")
_NEEDS = re.compile(r"needs ([\w.]+), ")
_NO_CONVERTER = re.compile(r"no ONNX converter for ([\w.]+)")
_SAVED_BY = re.compile(r"saved by \S+ [\d.]+: ")


# Packages whose names a file may reference without being user code: a refused name from one of
# them (sklearn.base.BaseEstimator, FrozenEstimator) is a gadget the loader does not admit.
_LIBRARIES = frozenset(
    {*MODEL_LIBRARIES, *(package.split(".")[0] for package in THIRD_PARTY_ESTIMATORS)}
    | {"pandas", "pyarrow", "joblib", "__builtin__", "copy_reg"}
)


def _is_user_code(message: str) -> bool:
    """A refusal that names a class outside Python's and the model libraries' own code (code
    from the training run)."""
    found = _REFERENCES.search(message)
    if found is None:
        return False
    top = found.group(1).split(".")[0]
    return top not in sys.stdlib_module_names and top not in _LIBRARIES


def _load_cause(message: str) -> Cause:
    if "trusted with --trust" in message and "cannot be imported" in message:
        return "not-importable"
    if "which the installed libraries lack" in message or _SAVED_BY.search(message):
        return "library-versions"
    return "unreadable"


_BY_STAGE: dict[str, Cause] = {
    "signature": "no-converter",
    "convert": "converter-failed",
    "parity": "parity",
    "origin": "origin",
    "probe": "input",
    "write": "internal",
}


def cause_of(exc: BaseException | None, stage: str | None, message: str = "") -> Cause:
    """The cause of a failure: from the exception's class when there is one, else (an entry read
    back from a manifest that recorded none) from the stage; ``message`` (the error line) tells
    apart causes that share a class."""
    text = message or (str(exc) if exc is not None else "")
    if exc is None:
        if "worker process" in text and "died" in text:
            return "crash"
        if stage == "load":
            if "refused to load" in text:
                return "user-code" if _is_user_code(text) else "refused"
            return _load_cause(text)
        if stage == "convert" and _NO_CONVERTER.search(text):
            return "no-converter"
        return _BY_STAGE.get(stage or "", "internal")
    if isinstance(exc, UntrustedModelError):
        return "user-code" if _is_user_code(text) else "refused"
    if isinstance(exc, ModelLoadError):
        return _load_cause(text)
    if isinstance(exc, UnsupportedModelError):
        return "no-converter"
    if isinstance(exc, ConversionError):
        return "converter-failed"
    if isinstance(exc, ParityError):
        return "parity"
    if isinstance(exc, InputError):
        return "input"
    return "internal"


def recorded(cause: str | None, stage: str | None, error: str | None) -> Cause:
    """A failed manifest entry's cause: the one it recorded, else (manifests written before
    causes were) classified from its stage and error line."""
    for known in CAUSES:
        if cause == known:
            return known
    return cause_of(None, stage, error or "")


def detail_of(cause: Cause, message: str, estimator: str | None, source: str) -> str:
    """What a failure is listed by beside its group: the refused or missing class for loading
    causes, the file for unreadable or refused files and crashes, else the estimator's class."""
    if cause in ("user-code", "refused"):
        found = _REFERENCES.search(message)
        return found.group(1) if found else PurePosixPath(source).name
    if cause in ("not-importable", "library-versions"):
        found = _NEEDS.search(message)
        return found.group(1) if found else PurePosixPath(source).name
    if cause in ("unreadable", "crash", "input"):
        return PurePosixPath(source).name
    if cause == "no-converter":
        found = _NO_CONVERTER.search(message)
        if found:
            return found.group(1)
    return (estimator or "?").rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Failure:
    """One failed model, as grouping needs it."""

    name: str
    cause: Cause
    detail: str


@dataclass(frozen=True)
class Group:
    """The failures that share a cause: how many, which models, and what each is listed by."""

    cause: Cause
    models: tuple[str, ...]
    details: tuple[tuple[str, int], ...]  # (detail, count), most frequent first

    @property
    def count(self) -> int:
        return len(self.models)

    @property
    def label(self) -> str:
        return LABELS[self.cause][0]

    def line(self, *, times: str = "x", limit: int = 4) -> str:
        """``3 refused: user code (__main__.ColumnDropper x2, src.prep.Cleaner)``."""
        shown = [f"{d} {times}{n}" if n > 1 else d for d, n in self.details[:limit]]
        if len(self.details) > limit:
            shown.append(f"{len(self.details) - limit} more")
        return f"{self.count} {LABELS[self.cause][1]} ({', '.join(shown)})"

    def to_json(self) -> dict[str, object]:
        return {
            "cause": self.cause,
            "label": self.label,
            "count": self.count,
            "models": list(self.models),
            "details": dict(self.details),
        }


def group(failures: Iterable[Failure]) -> list[Group]:
    """Failures by cause, the most frequent cause first (ties in ``CAUSES`` order)."""
    by_cause: dict[Cause, list[Failure]] = {}
    for failure in failures:
        by_cause.setdefault(failure.cause, []).append(failure)
    groups = []
    for cause, members in by_cause.items():
        counts: dict[str, int] = {}
        for member in members:
            counts[member.detail] = counts.get(member.detail, 0) + 1
        ordered = sorted(counts.items(), key=lambda item: -item[1])
        groups.append(Group(cause, tuple(m.name for m in members), tuple(ordered)))
    return sorted(groups, key=lambda g: (-g.count, CAUSES.index(g.cause)))
