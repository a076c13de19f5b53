"""Which library versions a model file records, read from its bytes without loading it.

scikit-learn pickles ``_sklearn_version`` with every fitted estimator (``upgrades`` reads it).
An XGBoost model keeps its booster's own version inside the raw model bytes (JSON in 1.x, UBJSON
from 2.1 on: ``"version": [2, 0, 3]``). A LightGBM model text records only its format (``v4``),
so LightGBM comes from the scikit-learn era.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from alphapulse_onnx.loading.upgrades import saved_sklearn_version

_SCAN_LIMIT = 64 * 1024 * 1024
# Module names as a pickle spells them (GLOBAL "xgboost.sklearn\n", or SHORT_BINUNICODE).
_XGBOOST = re.compile(rb"xgboost\.(?:sklearn|core)")
_LIGHTGBM = re.compile(rb"lightgbm\.(?:sklearn|basic)")
_JSON_VERSION = re.compile(rb'"version"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')
# UBJSON: the key (a length-prefixed "version"), then an array of three integers, optionally
# typed and counted: [ [$t] [#<count>] then each number as <type><bytes>.
_UBJ_KEY = b"\x07version["
_UBJ_INT_SIZES = {b"i": 1, b"U": 1, b"I": 2, b"l": 4, b"L": 8}


@dataclass(frozen=True)
class Recorded:
    """What a file says about the libraries that wrote it; ``None`` where it does not say."""

    sklearn: str | None
    xgboost: bool = False  # the model holds an XGBoost booster
    xgboost_version: str | None = None
    lightgbm: bool = False  # the model holds a LightGBM booster


def read(path: Path) -> Recorded:
    """The versions ``path`` records (a skops file records none that this reads)."""
    if zipfile.is_zipfile(path):
        return Recorded(sklearn=None)
    data = _pickle_bytes(path)
    xgboost = bool(_XGBOOST.search(data))
    return Recorded(
        sklearn=saved_sklearn_version(path),
        xgboost=xgboost,
        xgboost_version=xgboost_version(data) if xgboost else None,
        lightgbm=bool(_LIGHTGBM.search(data)),
    )


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of a joblib or pickle file, decompressed by joblib's own reader."""
    from joblib import numpy_pickle

    try:
        with (
            path.open("rb") as raw,
            numpy_pickle._validate_fileobject_and_memmap(raw, str(path), None) as (handle, _),
        ):
            if isinstance(handle, str):
                return b""
            data: bytes = handle.read(_SCAN_LIMIT)
            return data
    except Exception:  # unreadable: loading the model will say why
        return b""


def xgboost_version(data: bytes) -> str | None:
    """The version an XGBoost booster in ``data`` was saved by, from its JSON or UBJSON."""
    match = _JSON_VERSION.search(data)
    if match is not None:
        return ".".join(part.decode() for part in match.groups())
    start = data.find(_UBJ_KEY)
    while start >= 0:
        parsed = _ubjson_ints(data, start + len(_UBJ_KEY))
        if parsed is not None and len(parsed) == 3:
            return ".".join(str(n) for n in parsed)
        start = data.find(_UBJ_KEY, start + 1)
    return None


def _ubjson_ints(data: bytes, at: int) -> list[int] | None:
    """A UBJSON array of integers starting just after its ``[``, or None if it is not one."""
    typed: bytes | None = None
    count: int | None = None
    if data[at : at + 1] == b"$":
        typed = data[at + 1 : at + 2]
        at += 2
    if data[at : at + 1] == b"#":
        size = _UBJ_INT_SIZES.get(data[at + 1 : at + 2])
        if size is None:
            return None
        count = int.from_bytes(data[at + 2 : at + 2 + size], "big", signed=True)
        at += 2 + size
    numbers: list[int] = []
    while count is None or len(numbers) < count:
        if count is None and data[at : at + 1] == b"]":
            break
        kind = typed or data[at : at + 1]
        if typed is None:
            at += 1
        size = _UBJ_INT_SIZES.get(kind)
        if size is None or len(numbers) > 3:
            return None
        numbers.append(int.from_bytes(data[at : at + size], "big", signed=kind != b"U"))
        at += size
    return numbers
