"""apo's own skl2onnx converters, for what skl2onnx lacks or gets wrong in real-world registries.

- ``imputer``: ``SimpleImputer`` (most_frequent / constant) on string columns whose missing values
  are ``NaN``/``None`` (skl2onnx only accepts a string sentinel). In ONNX a missing text cell is the
  empty string ``""``.
- ``function_transformer``: ``FunctionTransformer`` whose ``func`` is one of the pure numpy ufuncs
  the safe loader allows (``np.log1p``, ``np.sqrt``...), mapped to ONNX operators.
- ``boosters``: LightGBM and XGBoost through onnxmltools, when the ``boost`` extra is installed.

``register_all()`` is idempotent; ``alphapulse_onnx.plugins.register_builtin_converters`` calls it
before any user plugin, so a plugin may still override what apo registers.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_done = False


def register_all() -> None:
    global _done
    with _LOCK:
        if _done:
            return
        from alphapulse_onnx.converters import boosters, function_transformer, imputer

        imputer.register()
        function_transformer.register()
        boosters.register()
        _done = True
