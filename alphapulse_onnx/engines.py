"""What ``apo bench`` times: scikit-learn, a plain onnxruntime session, and apo's own ``Store``.

Each engine turns one batch of float64 rows into a zero-argument call made the way its user would
make it, for the harness in ``benchmark`` to time. They live apart from the harness so that the
harness (and ``tuning``, which builds its own engines) stays free of scikit-learn, pandas and
``Store``: timing needs only a call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import benchmark, parity, runtime
from alphapulse_onnx.runtime import SessionSettings
from alphapulse_onnx.signature import InputSignature

SKLEARN = benchmark.BASELINE
APO = "onnx"  # apo's own path: what Store delivers
BARE = "ort-bare"  # a bare onnxruntime session, default settings: run(None, {"X": X as float32})


def sklearn_engine(model: Any, signature: InputSignature) -> benchmark.Engine:
    """The model's ``predict_proba`` (``predict`` without one), on rows shaped as it was fitted."""
    method = model.predict_proba if signature.has_proba else model.predict

    def prepare(X: np.ndarray) -> benchmark.Call:
        frame = parity.sklearn_input(X, signature)
        return lambda: method(frame)

    return benchmark.Engine(SKLEARN, "-", None, prepare)


def session_engine(
    name: str,
    variant: str,
    provider: str,
    onnx_bytes: bytes,
    *,
    input_name: str,
    dtype: type,
    settings: SessionSettings | None,
) -> benchmark.Engine:
    """A session on ``provider``, called as its user would: ``run(None, {"X": float32 rows})``."""
    session = runtime.make_session(onnx_bytes, [provider], settings)

    def prepare(X: np.ndarray) -> benchmark.Call:
        # Callers hold float64 rows: converting them is part of every real call (and a fresh
        # array each call is what onnxruntime sees in practice, not one array reused).
        return lambda: session.run(None, {input_name: np.ascontiguousarray(X, dtype=dtype)})

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

    def prepare(X: np.ndarray) -> benchmark.Call:
        return lambda: method(X)

    return benchmark.Engine(APO, "fp32", provider, prepare)
