"""Numbers as apo writes them: each with the digits its precision carries, and no more.

A float32 artifact answers in float32. Widened to float64 (as the serving engines return every
answer), its probability 0.41309044 prints as ``0.41309043765068054``: eight digits of noise
that suggest a precision the answer never had. ``carried`` gives each such value back as the
float64 nearest to the shortest decimal that reads back as the same float32, so every writer
(CSV, JSON lines, Parquet, .npy) shows ``0.41309044``. float64 answers (float64 outputs, the
scikit-learn fallback) already print as their shortest repr and stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # types only: this module stays light for the writers
    from alphapulse_onnx.signature import TensorSpec

Precision = Literal["float32", "float64"]


def served_precision(engine: str, outputs: Sequence[TensorSpec]) -> Precision:
    """The precision a model's answers carry: its artifact's float outputs' when onnxruntime
    serves it (float32 unless one is float64), float64 when scikit-learn does."""
    if engine != "onnxruntime":
        return "float64"
    floats = {spec.dtype for spec in outputs if spec.dtype in ("float32", "float64")}
    return "float32" if floats == {"float32"} else "float64"


def carried(values: np.ndarray, precision: str) -> np.ndarray:
    """``values`` (floats, whatever their dtype) with the digits ``precision`` carries: for
    float32, each the float64 nearest to the shortest decimal of its float32 value (NaN and
    infinities kept); anything else, or non-float arrays (labels), unchanged."""
    array = np.asarray(values)
    if precision != "float32" or array.dtype.kind != "f":
        return array
    single = array.astype(np.float32).reshape(-1)
    out = single.astype(np.float64)
    with np.errstate(all="ignore"):
        at = np.flatnonzero(np.isfinite(out) & (out != 0))
        out[at] = _shortest(out[at], single[at])
    return out.reshape(array.shape)


def _shortest(wide: np.ndarray, single: np.ndarray) -> np.ndarray:
    """For each float32 (``single``, ``wide`` its float64): the float64 nearest to the shortest
    decimal that reads back as it. Vectorised: for 6, 7, 8, 9 significant digits, the nearest
    such decimal, kept where it reads back; m / 10**k (an integer m below 2**53, 10**k exact) is
    the float64 nearest to that decimal, whose own repr is those digits. Values whose scale needs
    a power of ten beyond 1e22 go through numpy's own shortest repr."""
    result: np.ndarray = np.array(wide, dtype=np.float64)
    magnitude = np.abs(wide)
    exponent = np.floor(np.log10(magnitude)).astype(np.int64)
    exponent[10.0**exponent > magnitude] -= 1  # log10 a hair off at a power of ten
    exponent[10.0 ** (exponent + 1) <= magnitude] += 1
    pending = np.arange(len(wide))
    left: list[np.ndarray] = []  # beyond the exact powers of ten: numpy's repr decides
    # From six digits: six-digit decimals lie over 1e-6 of a value apart, a float32's rounding
    # interval spans under 1.2e-7 of it, so at most one lies within it, and a shorter decimal
    # that reads back is that one (with trailing zeros).
    for digits in range(6, 10):
        k = digits - 1 - exponent[pending]
        usable = np.abs(k) <= 22
        left.append(pending[~usable])
        pending, k = pending[usable], k[usable]
        x = wide[pending]
        scale = 10.0 ** np.abs(k)
        candidate = np.where(k >= 0, np.round(x * scale) / scale, np.round(x / scale) * scale)
        fits = candidate.astype(np.float32) == single[pending]
        result[pending[fits]] = candidate[fits]
        pending = pending[~fits]
    rest = np.concatenate([*left, pending])
    if len(rest):
        result[rest] = np.asarray(single[rest].astype(str), dtype=np.float64)
    return result


def carried_columns(columns: Mapping[str, np.ndarray], precision: str) -> dict[str, np.ndarray]:
    """Every float column of a predictions table through ``carried``; labels untouched."""
    return {name: carried(values, precision) for name, values in columns.items()}


def text(value: float, precision: str = "float64") -> str:
    """One number as apo prints it: the shortest decimal that reads back as ``value`` at
    ``precision`` (``0.41309044`` for a float32, Python's repr for a float64)."""
    if precision == "float32":
        return str(np.float32(value))
    return repr(float(value))
