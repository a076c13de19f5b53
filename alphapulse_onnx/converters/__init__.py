"""apo's own skl2onnx converters, for what skl2onnx lacks or gets wrong in real-world registries.

- ``imputer``: ``SimpleImputer`` (most_frequent / constant) on string columns whose missing values
  are ``NaN``/``None`` (skl2onnx only accepts a string sentinel). In ONNX a missing text cell is the
  empty string ``""``.
- ``function_transformer``: ``FunctionTransformer`` whose ``func`` is one of the pure numpy ufuncs
  the safe loader allows (``np.log1p``, ``np.sqrt``...), mapped to ONNX operators.
- ``boosters``: LightGBM and XGBoost through onnxmltools, when the ``boost`` extra is installed.
- ``legacy``: apo's subclasses that keep behaviour scikit-learn removed (one-vs-rest logistic
  regression, SAMME.R AdaBoost), under their parents' converters.
- ``neighbors``: k-neighbour models with distance weights and radius models, which skl2onnx
  answers wrongly; ``iterative_imputer``: ``IterativeImputer`` with linear estimators;
  ``calibrated``: ``CalibratedClassifierCV`` around a pipeline that reads DataFrame columns.
- ``encoders``: category_encoders' one-hot, ordinal, target, binary and base-N encoders, and
  ``imblearn_pipeline``: imbalanced-learn pipelines without their samplers, when the ``encoders``
  extra is installed.

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
        from alphapulse_onnx.converters import (
            boosters,
            calibrated,
            encoders,
            function_transformer,
            imblearn_pipeline,
            imputer,
            iterative_imputer,
            legacy,
            neighbors,
        )

        imputer.register()
        function_transformer.register()
        boosters.register()
        encoders.register()
        imblearn_pipeline.register()
        legacy.register()
        neighbors.register()
        iterative_imputer.register()
        calibrated.register()
        _done = True
