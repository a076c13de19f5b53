"""LightGBM and XGBoost through onnxmltools (the optional ``boost`` extra).

Registered only when the extra is installed; a booster model without it fails with one line that
names the install command. onnxmltools' converters are registered under skl2onnx's registry with
the shape calculators skl2onnx ships for them, so a booster converts alone or as a pipeline's last
step, and its tree ensemble uses the same ai.onnx.ml opset as the rest of the graph.
"""

from __future__ import annotations

from typing import Any

BOOST_HINT = "pip install 'alphapulse-onnx[boost]'"
BOOSTER_MODULES = ("lightgbm", "xgboost")


def extra_installed() -> bool:
    try:
        import onnxmltools  # noqa: F401
    except ImportError:
        return False
    return True


def missing_extra_message(model: Any) -> str | None:
    """A one-line error for a booster model when the extra is absent, else ``None``."""
    for step in _walk(model):
        module = type(step).__module__.split(".")[0]
        if module in BOOSTER_MODULES and not extra_installed():
            return f"{type(step).__name__} ({module}) needs the boost extra: {BOOST_HINT}"
    return None


def _walk(model: Any) -> list[Any]:
    found = [model]
    for attr in ("steps", "transformers_", "transformer_list"):
        for item in getattr(model, attr, None) or []:
            child = item[1] if isinstance(item, tuple) and len(item) >= 2 else item
            if not isinstance(child, str):
                found.extend(_walk(child))
    return found


def register() -> None:
    if not extra_installed():
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    pairs: list[tuple[Any, str, Any, Any]] = []
    try:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        pairs += [
            (
                lightgbm.LGBMClassifier,
                "LightGbmLGBMClassifier",
                calculate_linear_classifier_output_shapes,
                convert_lightgbm,
            ),
            (
                lightgbm.LGBMRegressor,
                "LightGbmLGBMRegressor",
                calculate_linear_regressor_output_shapes,
                convert_lightgbm,
            ),
        ]
    except ImportError:
        pass
    try:
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        pairs += [
            (
                xgboost.XGBClassifier,
                "XGBoostXGBClassifier",
                calculate_linear_classifier_output_shapes,
                convert_xgboost,
            ),
            (
                xgboost.XGBRegressor,
                "XGBoostXGBRegressor",
                calculate_linear_regressor_output_shapes,
                convert_xgboost,
            ),
        ]
    except ImportError:
        pass
    for model_type, alias, shape, converter in pairs:
        options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
        if "Classifier" not in alias:
            options = {}
        update_registered_converter(
            model_type, alias, shape, converter, options=options, overwrite=True
        )
