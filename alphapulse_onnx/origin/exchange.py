"""The format rows and answers cross the process boundary in: named arrays in one ``.npz``.

Both sides read it whatever their numpy (1.23 and later) or pandas, and nothing in it is a
pickle: ``numpy.load(..., allow_pickle=False)`` reads it. Numeric and boolean arrays are stored
as they are. Text (object arrays of strings with gaps, or unicode arrays) is stored as a unicode
array plus a mask of missing cells, and read back as an object array holding ``None`` in the
gaps. Names, which may hold any character, and each array's kind are in a JSON document stored
in the same file (``__meta__``), with whatever metadata the writer adds.

This module imports numpy and the standard library only: the origin worker imports it inside
environments that have neither apo's dependencies nor today's numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "apo-exchange/1"
_META = "__meta__"


class ExchangeError(ValueError):
    """An array that this format cannot carry faithfully, or a file that is not in it."""


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT: the gaps a text column may hold (pandas not imported)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def _encode(name: str, values: Any) -> tuple[str, dict[str, np.ndarray]]:
    """One array as ``(kind, stored arrays)``: ``numeric`` or ``text`` (values and a gap mask)."""
    array = np.asarray(values)
    kind = array.dtype.kind
    if kind in "biuf":
        return "numeric", {"values": array}
    if kind == "U":
        return "text", {"values": array, "missing": np.zeros(array.shape, dtype=bool)}
    if kind != "O":
        raise ExchangeError(f"column {name!r}: arrays of {array.dtype} cannot be exchanged")
    flat = array.ravel()
    missing = np.fromiter((_missing(v) for v in flat), dtype=bool, count=flat.size)
    present = [v for v, gap in zip(flat, missing, strict=True) if not gap]
    if all(isinstance(v, str) for v in present):
        text = np.array(["" if gap else v for v, gap in zip(flat, missing, strict=True)], dtype=str)
        shape = array.shape
        return "text", {"values": text.reshape(shape), "missing": missing.reshape(shape)}
    if all(isinstance(v, (bool, np.bool_)) for v in present) and not missing.any():
        return "numeric", {"values": flat.astype(bool).reshape(array.shape)}
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
           for v in present):  # fmt: skip
        if not missing.any() and all(isinstance(v, (int, np.integer)) for v in present):
            return "numeric", {"values": flat.astype(np.int64).reshape(array.shape)}
        numbers = np.array(
            [math.nan if gap else v for v, gap in zip(flat, missing, strict=True)], dtype=float
        )
        return "numeric", {"values": numbers.reshape(array.shape)}
    kinds = sorted({type(v).__name__ for v in present})
    raise ExchangeError(f"column {name!r} mixes values of types {', '.join(kinds)}")


def _decode(kind: str, stored: Mapping[str, np.ndarray]) -> np.ndarray:
    values = stored["values"]
    if kind == "numeric":
        return np.asarray(values)
    out = values.astype(object)
    out[np.asarray(stored["missing"], dtype=bool)] = None
    return np.asarray(out)


def save(path: Path, arrays: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
    """Write ``arrays`` (name -> array) and JSON-serialisable ``meta`` to ``path`` (``.npz``)."""
    stored: dict[str, np.ndarray] = {}
    columns = []
    for i, (name, values) in enumerate(arrays.items()):
        kind, parts = _encode(name, values)
        columns.append({"name": name, "kind": kind})
        for part, array in parts.items():
            stored[f"{i}.{part}"] = array
    document = {"format": FORMAT, "columns": columns, "meta": dict(meta or {})}
    stored[_META] = np.array(json.dumps(document))
    with open(path, "wb") as handle:
        # No allow_pickle= here: older numpy would store it as one more array. Nothing is
        # pickled anyway: every array is numeric, boolean or unicode.
        np.savez(handle, **stored)  # type: ignore[arg-type]


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` as ``save`` wrote them; text arrays come back as objects with None."""
    with np.load(path, allow_pickle=False) as data:
        if _META not in data.files:
            raise ExchangeError(f"{path}: not an exchange file (no {_META})")
        document = json.loads(str(data[_META]))
        if document.get("format") != FORMAT:
            raise ExchangeError(f"{path}: format {document.get('format')!r}, expected {FORMAT}")
        arrays: dict[str, np.ndarray] = {}
        for i, column in enumerate(document["columns"]):
            prefix = f"{i}."
            stored = {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}
            arrays[column["name"]] = _decode(column["kind"], stored)
    return arrays, dict(document.get("meta") or {})
