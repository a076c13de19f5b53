"""The origin worker: runs INSIDE an origin environment, with the model's own library versions.

Started as a script (``python -I .../alphapulse_onnx/origin/worker.py``), never imported by apo.
The environment has scikit-learn, numpy, scipy, pandas and joblib of the model's era and nothing
of apo's, so this imports only apo's loader (``alphapulse_onnx.loading`` and
``alphapulse_onnx.errors``) and ``alphapulse_onnx.origin.exchange``, from apo's own source
folder, through a stand-in for apo's package ``__init__`` (which would import onnxruntime).

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout, until stdin
closes. A request names the model file, a rows file and where to write the answers (both in
``exchange``'s format), what to compute, and the trust policy. A reply is ``{"ok": true,
"versions": ..., "sklearn_version": ..., "warnings": [...]}`` or ``{"ok": false, "stage": ...,
"error": "one line"}``. Anything the libraries print goes to stderr, never into the replies.

The answers are computed as ``parity.reference_answers`` computes today's: ``predict``, then
``predict_proba`` and the score method when asked, on a DataFrame when the model learnt
feature names (text columns holding NaN in their gaps, as ``parity.sklearn_input`` makes them).
"""

from __future__ import annotations

import json
import os
import sys
import types
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# What the reply's "versions" lists, where installed (read from metadata, never imported).
REPORTED = ("scikit-learn", "numpy", "scipy", "pandas", "joblib", "xgboost", "xgboost-cpu",
            "lightgbm")  # fmt: skip


def _install_package_stub() -> None:
    """``alphapulse_onnx`` as a bare package over apo's source folder: its submodules import,
    its ``__init__`` (onnxruntime, skl2onnx, ...) never runs."""
    if "alphapulse_onnx" in sys.modules:
        return
    stub = types.ModuleType("alphapulse_onnx")
    stub.__path__ = [str(PACKAGE_ROOT)]
    stub.__file__ = str(PACKAGE_ROOT / "__init__.py")
    sys.modules["alphapulse_onnx"] = stub


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """The Python and library versions this environment runs (xgboost-cpu named xgboost)."""
    found = {"python": ".".join(str(part) for part in sys.version_info[:3])}
    for name in REPORTED:
        version = _version(name)
        if version is not None:
            found[name.replace("-cpu", "")] = version
    return found


def _frame(rows: Any, meta: dict[str, Any]) -> Any:
    """The rows as the model was fitted on them: a matrix, or a DataFrame when it learnt names."""
    import numpy as np

    if meta["layout"] == "matrix":
        X = rows["X"]
        names = meta.get("feature_names")
        if names is None:
            return X
        import pandas as pd

        return pd.DataFrame(X, columns=list(names))
    import pandas as pd

    columns = {}
    text = set(meta["text"])
    for name in meta["order"]:
        values = rows[name]
        if name in text:  # every gap as NaN, scikit-learn's marker
            column = pd.Series(values, dtype=object)
            columns[name] = column.where(column.notna(), np.nan)
        else:
            columns[name] = pd.Series(values)
    return pd.DataFrame(columns, columns=list(meta["order"]))


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Load the model with apo's loader and write its answers on the rows; the reply."""
    import numpy as np

    from alphapulse_onnx import loading
    from alphapulse_onnx.origin import exchange

    stage = "load"
    try:
        policy = loading.TrustPolicy(
            trusted=tuple(request["policy"]["trusted"]),
            unsafe=bool(request["policy"]["unsafe"]),
            max_model_memory=request["policy"]["max_model_memory"],
            select=request["policy"].get("select"),
        )
        loaded = loading.load(Path(request["model"]), policy)
        stage = "predict"
        rows, meta = exchange.load(Path(request["rows"]))
        frame = _frame(rows, meta)
        model = loaded.estimator
        answers: dict[str, Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as parity.reference_answers: overflow on probes
            answers["predictions"] = np.asarray(model.predict(frame))
            if request["proba"]:
                answers["probabilities"] = np.asarray(model.predict_proba(frame), np.float64)
            if request["scores"]:
                scores = getattr(model, request["scores"])(frame)
                answers["scores"] = np.asarray(scores, dtype=np.float64)
        exchange.save(Path(request["answers"]), answers)
    except Exception as exc:  # one model's failure is its reply; the worker goes on
        text = str(exc).strip().splitlines()
        detail = text[0][:300] if text else ""
        error = detail if type(exc).__module__.startswith("alphapulse_onnx") else (
            f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)  # fmt: skip
        return {"ok": False, "stage": stage, "error": error}
    return {
        "ok": True,
        "sklearn_version": loaded.sklearn_version,
        "warnings": list(loaded.warnings),
    }


def main() -> int:
    # Replies travel on the original stdout; fd 1 becomes stderr so that nothing a library
    # prints (C code included) can break a reply line.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _install_package_stub()
    hello: dict[str, Any] = {"ok": True, "versions": versions()}
    try:
        from alphapulse_onnx import loading  # noqa: F401  (fails here, once, if it cannot run)
        from alphapulse_onnx.origin import exchange  # noqa: F401
    except Exception as exc:
        hello = {"ok": False, "stage": "import", "error": f"{type(exc).__name__}: {exc}"}
    replies.write(json.dumps(hello) + "\n")
    replies.flush()
    if not hello["ok"]:
        return 1
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = answer(json.loads(line))
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
