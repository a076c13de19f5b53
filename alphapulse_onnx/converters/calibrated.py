"""``CalibratedClassifierCV`` around a pipeline that reads DataFrame columns by name.

skl2onnx's converter hands all of its inputs to each fitted copy of the pipeline (whose
``ColumnTransformer`` finds its columns by name), but its shape calculator accepts one input only,
and it types the uncalibrated scores after its first input (text, for a text column first). Here
the shape calculator and the converter see the inputs with a float one first; the pipeline still
receives every input. A calibrated model whose inputs are all text is refused in one line.
"""

from __future__ import annotations

from typing import Any

from alphapulse_onnx.errors import UnsupportedModelError


class _FloatFirst:
    """``operator`` with its inputs reordered so that the first is a float tensor."""

    def __init__(self, operator: Any, inputs: list[Any]) -> None:
        self._operator = operator
        self.inputs = inputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)

    @property
    def input_full_names(self) -> list[str]:
        return [variable.full_name for variable in self.inputs]


def _float_first(operator: Any) -> Any:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    if len(operator.inputs) == 1:
        return operator
    floats = [v for v in operator.inputs if isinstance(v.type, (FloatTensorType, DoubleTensorType))]
    if not floats:
        raise UnsupportedModelError(
            "CalibratedClassifierCV whose every input column is text or integer: apo converts "
            "it with at least one float column",
            hint="calibrate inside the pipeline: make_pipeline(preprocessing, "
            "CalibratedClassifierCV(classifier))",
        )
    double = [v for v in floats if isinstance(v.type, DoubleTensorType)]
    first = (double or floats)[0]
    return _FloatFirst(operator, [first, *(v for v in operator.inputs if v is not first)])


def _check_pipeline(estimator: Any) -> None:
    """skl2onnx's pipeline converter asks each classifier in it for ``zipmap=False``; a classifier
    without that option (``LinearSVC``, ``SVC`` without probabilities...) makes it fail."""
    from skl2onnx._supported_operators import get_model_alias
    from skl2onnx.common._registration import _converter_pool
    from sklearn.base import is_classifier

    for _, step in getattr(estimator, "steps", None) or ():
        if not is_classifier(step) or getattr(step, "steps", None):
            continue
        try:
            allowed = _converter_pool[get_model_alias(type(step))].get_allowed_options() or {}
        except (KeyError, RuntimeError):  # no converter: skl2onnx names it itself
            continue
        if "zipmap" not in allowed:
            raise UnsupportedModelError(
                f"CalibratedClassifierCV around a pipeline ending in {type(step).__name__}: "
                "skl2onnx's pipeline converter cannot build that classifier inside it",
                hint="calibrate inside the pipeline: make_pipeline(preprocessing, "
                f"CalibratedClassifierCV({type(step).__name__}()))",
            )


def _raw_scores_of_last_step(scope: Any, container: Any, estimator: Any) -> None:
    """A pipeline's calibrators were fitted on its ``decision_function`` where it has one, as
    scikit-learn's ``_get_response_values`` picks: ask its last step for raw scores (skl2onnx asks
    the pipeline itself, which passes the option on to nothing)."""
    steps = getattr(estimator, "steps", None)
    if not steps:
        return
    last = steps[-1][1]
    if getattr(last, "steps", None):
        _raw_scores_of_last_step(scope, container, last)
        return
    if not hasattr(estimator, "decision_function") or not container.has_options(last, "raw_scores"):
        return
    container.add_options(id(last), {"raw_scores": True})
    scope.add_options(id(last), {"raw_scores": True})


def register() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import _converter_pool, get_converter, get_shape_calculator
    from sklearn.calibration import CalibratedClassifierCV

    alias = "SklearnCalibratedClassifierCV"
    shape, converter = get_shape_calculator(alias), get_converter(alias)

    def calculate(operator: Any) -> Any:
        if len(operator.inputs) == 1:
            return shape(operator)
        return shape(_FloatFirst(operator, [_float_first(operator).inputs[0]]))

    # skl2onnx checks the converter's arity: exactly (scope, operator, container).
    def convert(scope: Any, operator: Any, container: Any) -> Any:
        for fitted in operator.raw_operator.calibrated_classifiers_:
            _check_pipeline(fitted.estimator)
            _raw_scores_of_last_step(scope, container, fitted.estimator)
        return converter(scope, _float_first(operator), container)

    update_registered_converter(
        CalibratedClassifierCV,
        alias,
        calculate,
        convert,
        options=_converter_pool[alias].get_allowed_options(),
        overwrite=True,
    )
