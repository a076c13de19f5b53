"""``SimpleImputer`` on text columns whose missing marker is ``NaN``/``None``.

skl2onnx converts a string imputer only when ``missing_values`` is itself a string (and then only
for a single input: it joins columns with FeatureVectorizer, which refuses text); scikit-learn's
default marker is ``np.nan``, which a string tensor cannot hold. apo's convention: a missing text
cell is fed as the empty string ``""``. This converter replaces ``""`` (or the string
``missing_values``, if one was set) by the fitted fill value, column by column; numeric imputers
stay with skl2onnx's converter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alphapulse_onnx.errors import UnsupportedModelError

MISSING_TEXT = ""


def _is_missing_marker(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def register() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import _converter_pool, get_converter, get_shape_calculator
    from sklearn.impute import SimpleImputer

    alias = "SklearnImputer"
    original = get_converter(alias)

    def convert(scope: Any, operator: Any, container: Any) -> Any:
        from skl2onnx.common.data_types import StringTensorType

        if isinstance(operator.inputs[0].type, StringTensorType):
            return _convert_string(scope, operator, container)
        return original(scope, operator, container)

    update_registered_converter(
        SimpleImputer,
        alias,
        get_shape_calculator(alias),
        convert,
        options=_converter_pool[alias].get_allowed_options(),
        overwrite=True,
    )


def _convert_string(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common._apply_operation import apply_concat

    op = operator.raw_operator
    statistics = np.asarray(op.statistics_, dtype=object)
    if any(_is_missing_marker(v) for v in statistics):
        raise UnsupportedModelError(
            "SimpleImputer on text has a column with no fill value (all missing when fitted)"
        )
    if getattr(op, "add_indicator", False):
        raise UnsupportedModelError("SimpleImputer(add_indicator=True) on text columns")
    marker = op.missing_values
    if not (_is_missing_marker(marker) or isinstance(marker, str)):
        raise UnsupportedModelError(f"SimpleImputer on text with missing_values={marker!r}")
    keys = [MISSING_TEXT if _is_missing_marker(marker) else str(marker)]
    joined = operator.inputs[0].full_name
    if len(operator.inputs) > 1:  # FeatureVectorizer takes numbers only: Concat keeps text
        joined = scope.get_unique_variable_name("apo_imp_joined")
        apply_concat(scope, [v.full_name for v in operator.inputs], joined, container, axis=1)
    outputs = []
    for i, fill in enumerate(statistics):
        index = scope.get_unique_variable_name(f"apo_imp_index{i}")
        container.add_initializer(index, TensorProto.INT64, [1], [i])
        column = scope.get_unique_variable_name(f"apo_imp_col{i}")
        container.add_node(
            "ArrayFeatureExtractor",
            [joined, index],
            [column],
            op_domain="ai.onnx.ml",
            name=scope.get_unique_operator_name("ArrayFeatureExtractor"),
        )
        flag = scope.get_unique_variable_name(f"apo_imp_missing{i}")
        container.add_node(
            "LabelEncoder",
            [column],
            [flag],
            keys_strings=keys,
            values_int64s=[1] * len(keys),
            default_int64=0,
            op_domain="ai.onnx.ml",
            op_version=2,
            name=scope.get_unique_operator_name("LabelEncoder"),
        )
        flag_bool = scope.get_unique_variable_name(f"apo_imp_missing_b{i}")
        container.add_node(
            "Cast",
            [flag],
            [flag_bool],
            to=TensorProto.BOOL,
            name=scope.get_unique_operator_name("Cast"),
        )
        value = scope.get_unique_variable_name(f"apo_imp_fill{i}")
        container.add_initializer(value, TensorProto.STRING, [1], [str(fill).encode()])
        filled = scope.get_unique_variable_name(f"apo_imp_out{i}")
        container.add_node(
            "Where",
            [flag_bool, value, column],
            [filled],
            name=scope.get_unique_operator_name("Where"),
        )
        outputs.append(filled)
    apply_concat(scope, outputs, operator.outputs[0].full_name, container, axis=1)
