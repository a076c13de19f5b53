"""imbalanced-learn's ``Pipeline`` (the ``encoders`` extra): a scikit-learn pipeline without its
samplers.

imblearn's pipeline resamples only while fitting: at predict time it skips every step that has
``fit_resample`` (``RandomUnderSampler``, ``SMOTE``...) and every ``None``/``"passthrough"`` step.
skl2onnx parses it as a scikit-learn ``Pipeline`` (a subclass), so it would look for a converter for
the sampler; this parser walks the steps imblearn runs at predict time, as skl2onnx's own pipeline
parser does.
"""

from __future__ import annotations

from typing import Any


def predict_steps(pipeline: Any) -> list[tuple[str, Any]]:
    """The steps an imblearn pipeline runs at predict time, in order."""
    return [
        (name, step)
        for name, step in pipeline.steps
        if step is not None and not isinstance(step, str) and not hasattr(step, "fit_resample")
    ]


def _parse(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> Any:
    from skl2onnx._parse import _parse_sklearn
    from sklearn.base import is_classifier

    for _, step in predict_steps(model):
        given = scope.options or {}
        if is_classifier(step) and id(step) not in given and type(step) not in given:
            # As skl2onnx's pipeline parser does: the classifier takes the pipeline's options.
            scope.add_options(id(step), scope.get_options(model, {"zipmap": True}))
        inputs = _parse_sklearn(scope, step, inputs, custom_parsers=custom_parsers)
    return inputs


def _shape(operator: Any) -> None:
    raise RuntimeError("an imblearn Pipeline is parsed into its steps, never converted whole")


def _convert(scope: Any, operator: Any, container: Any) -> None:
    _shape(operator)


def register() -> None:
    """Register the parser when imbalanced-learn is installed."""
    try:
        from imblearn.pipeline import Pipeline
    except ImportError:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import _converter_pool
    from sklearn.pipeline import Pipeline as SklearnPipeline

    # The options a scikit-learn pipeline takes (zipmap, nocl...), which pass to its classifier.
    alias = sklearn_operator_name_map[SklearnPipeline]
    options = _converter_pool[alias].get_allowed_options()
    update_registered_converter(
        Pipeline,
        "ImblearnPipeline",
        _shape,
        _convert,
        overwrite=True,
        parser=_parse,
        options=options,
    )
