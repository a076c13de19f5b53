"""What ``apo bench`` times: scikit-learn, a plain onnxruntime session, and apo's own ``Store``.

Each engine turns one batch of rows into a zero-argument call made the way its user would make
it, for the harness in ``benchmark`` to time. A batch is what the model's callers hold: float64
rows (a numpy matrix) for a model with one numeric input, a DataFrame (text columns included)
for a DataFrame pipeline with one input per column. They live apart from the harness so that the
harness (and ``tuning``, which builds its own engines) stays free of scikit-learn, pandas and
``Store``: timing needs only a call.

The names are the ones ``apo bench`` reports, in its table, its ``--json`` and the manifest:
``sklearn`` (the source model), ``onnx`` (apo's path: what ``Store`` delivers) and ``ort-bare``
(a bare onnxruntime session with its default settings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import benchmark, parity, runtime
from alphapulse_onnx.runtime import SessionSettings
from alphapulse_onnx.signature import InputSignature, TensorSpec

SKLEARN = benchmark.BASELINE
APO = "onnx"  # apo's own path: what Store delivers
BARE = "ort-bare"  # a bare onnxruntime session, default settings: run(None, {"X": X as float32})
ENGINES = (SKLEARN, APO, BARE)

Feeds = Callable[[Any], dict[str, np.ndarray]]
_NUMPY = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


def sklearn_engine(model: Any, signature: InputSignature) -> benchmark.Engine:
    """The model's ``predict_proba`` (``predict`` without one), on rows shaped as it was fitted."""
    method = model.predict_proba if signature.has_proba else model.predict

    def prepare(X: Any) -> benchmark.Call:
        frame = parity.sklearn_input(X, signature) if isinstance(X, np.ndarray) else X
        return lambda: method(frame)

    return benchmark.Engine(SKLEARN, "-", None, prepare)


def feeds_for(inputs: Sequence[TensorSpec]) -> Feeds:
    """How a caller of a bare session turns a batch into its feeds, on every call.

    One numeric input: the rows as a contiguous array of its dtype (``X.astype(np.float32)``).
    One input per column: each DataFrame column as a ``[rows, 1]`` array of its input's dtype,
    text with gaps as empty strings (what the artifact reads as missing).
    """
    if len(inputs) == 1 and inputs[0].dtype in ("float32", "float64"):
        name, dtype = inputs[0].name, _NUMPY[inputs[0].dtype]

        def matrix(X: Any) -> dict[str, np.ndarray]:
            return {name: np.ascontiguousarray(X, dtype=dtype)}

        return matrix
    specs = [(spec.name, spec.column_name, spec.dtype) for spec in inputs]

    def columns(frame: Any) -> dict[str, np.ndarray]:
        feeds = {}
        for name, column, dtype in specs:
            values = frame[column]
            if dtype == "string":
                cells = values.to_numpy(dtype=object)
                gaps = values.isna().to_numpy()
                if gaps.any():
                    cells = cells.copy()
                    cells[gaps] = ""
            else:
                cells = values.to_numpy(dtype=_NUMPY[dtype])
            feeds[name] = cells.reshape(-1, 1)
        return feeds

    return columns


def session_engine(
    name: str,
    variant: str,
    provider: str,
    onnx_bytes: bytes,
    *,
    feeds: Feeds,
    settings: SessionSettings | None,
) -> benchmark.Engine:
    """A session on ``provider``, called as its user would: ``run(None, feeds(rows))``."""
    session = runtime.make_session(onnx_bytes, [provider], settings)

    def prepare(X: Any) -> benchmark.Call:
        # Callers hold float64 rows or a DataFrame: converting them is part of every real call
        # (and a fresh array each call is what onnxruntime sees in practice, not one reused).
        return lambda: session.run(None, feeds(X))

    return benchmark.Engine(name, variant, provider, prepare)


def store_engine(
    manifest_path: Path, model_name: str, signature: InputSignature, provider: str
) -> benchmark.Engine | None:
    """apo's public path, ``Store``, serving the model on ``provider`` (None if it cannot)."""
    try:
        from alphapulse_onnx.store import Store
    except ImportError:
        return None
    try:
        served = Store.open(manifest_path, providers=[provider])[model_name]
        if served.engine != "onnxruntime" or served.provider != provider:
            return None
    except Exception:  # whatever stops the Store serving it here, bench times a session instead
        return None
    method = served.predict_proba if signature.has_proba else served.predict

    def prepare(X: Any) -> benchmark.Call:
        return lambda: method(X)

    return benchmark.Engine(APO, "fp32", provider, prepare)
