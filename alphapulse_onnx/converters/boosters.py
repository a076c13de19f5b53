"""LightGBM and XGBoost through onnxmltools (the optional ``boost`` extra).

Registered only when the extra is installed; a booster model without it fails with one line that
names the install command. onnxmltools' converters are registered under skl2onnx's registry with
the shape calculators skl2onnx ships for them, so a booster converts alone or as a pipeline's last
step, and its tree ensemble uses the same ai.onnx.ml opset as the rest of the graph.

A LightGBM model fitted on a DataFrame with pandas ``category`` columns splits on each category's
code: its position in the categories it saw (``booster.pandas_categorical``), a missing or unseen
value being NaN, which every categorical split sends right. Such a model takes one input per
column (``category_inputs``): the category columns as text (or int64 for integer categories),
mapped to those codes by a LabelEncoder (anything else to NaN), the other columns as numbers;
onnxmltools turns each categorical split into a chain of ``BRANCH_EQ`` nodes on the codes.
scikit-learn-side rows need the same columns as pandas categories again (``with_categories``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from alphapulse_onnx.errors import UnsupportedModelError

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
        if alias.startswith("LightGbm"):
            shape, converter = _reading_categories(shape), _mapping_categories(converter)
        update_registered_converter(
            model_type, alias, shape, converter, options=options, overwrite=True
        )


_RETRAIN_HINT = (
    "retrain it on the category columns as integer codes (df[col].cat.codes), passing "
    "categorical_feature= to keep categorical splits"
)


def pandas_categories(model: Any) -> dict[int, list[Any]]:
    """A LightGBM model fitted on pandas ``category`` columns: feature index -> categories, in
    code order. Empty for every other model."""
    if type(model).__module__.split(".")[0] != "lightgbm":
        return {}
    booster = getattr(model, "_Booster", None)  # what ``booster_`` reads, without raising
    categories = getattr(booster, "pandas_categorical", None) or []
    if not categories:
        return {}
    columns = _categorical_columns(booster)
    if columns is None or len(columns) != len(categories):
        raise UnsupportedModelError(
            f"{type(model).__name__} was fitted on pandas category columns, but its booster "
            "does not say which features they are",
            hint=_RETRAIN_HINT,
        )
    return {column: list(values) for column, values in zip(columns, categories, strict=True)}


def _categorical_columns(booster: Any) -> list[int] | None:
    """The features LightGBM treats as categorical, from its parameters or its model text."""
    declared = (getattr(booster, "params", None) or {}).get("categorical_column")
    if declared is None:
        found = re.search(r"^\[categorical_feature: ([^\]]*)\]$",
                          booster.model_to_string(num_iteration=0), re.MULTILINE)  # fmt: skip
        declared = found.group(1) if found else None
    if isinstance(declared, str):
        declared = [item for item in declared.split(",") if item.strip()]
    try:
        return None if declared is None else [int(item) for item in declared]
    except (TypeError, ValueError):  # feature names instead of indices
        return None


def _category_dtype(model: Any, name: str, values: list[Any]) -> str:
    """How one category column travels: ``string`` for text categories, ``int64`` for integers."""
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "int64"
    kinds = sorted({type(v).__name__ for v in values})
    raise UnsupportedModelError(
        f"{type(model).__name__}: pandas category column {name!r} holds {'/'.join(kinds)} "
        "categories; apo converts text or integer categories",
        hint=_RETRAIN_HINT,
    )


def category_inputs(model: Any, dtype: str = "float32") -> tuple[Any, ...] | None:
    """One input per column for a LightGBM model fitted on pandas category columns (category
    columns as text or int64, the others as ``dtype``); ``None`` for every other model."""
    from alphapulse_onnx.signature import TensorSpec

    categories = pandas_categories(model)
    names = getattr(model, "feature_names_in_", None)
    if not categories or names is None:
        return None
    names = [str(n) for n in names]
    return tuple(
        TensorSpec(name, _category_dtype(model, name, categories[i]) if i in categories
                   else dtype, (None, 1))  # type: ignore[arg-type]
        for i, name in enumerate(names)
    )  # fmt: skip


def category_columns(model: Any) -> dict[str, list[Any]]:
    """Column name -> categories, for a LightGBM model fitted on pandas category columns."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return {}
    return {str(names[i]): values for i, values in pandas_categories(model).items()}


def with_categories(model: Any, frame: Any) -> Any:
    """``frame`` with the columns ``model`` read as pandas categories made categories again (a
    copy); LightGBM refuses text in their place. Any other model's frame is returned as is."""
    import pandas as pd

    columns = category_columns(model) if hasattr(frame, "columns") else {}
    if not columns:
        return frame
    frame = frame.copy()
    for name, values in columns.items():
        if name in frame.columns:
            # A value that is no category (unseen, or a gap) becomes NaN, as LightGBM reads it.
            codes = pd.Index(values).get_indexer(pd.Series(frame[name]).astype(object))
            frame[name] = pd.Categorical.from_codes(codes, categories=values)
    return frame


class _JoinedInput:
    """``operator`` as onnxmltools needs to see it: one float matrix input, the codes joined."""

    def __init__(self, operator: Any, joined: Any) -> None:
        self._operator = operator
        self.inputs = [joined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)

    @property
    def input_full_names(self) -> list[str]:
        return [variable.full_name for variable in self.inputs]


def _joined_variable(operator: Any, name: str) -> Any:
    from skl2onnx.common._topology import Variable
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    double = any(isinstance(v.type, DoubleTensorType) for v in operator.inputs)
    tensor = DoubleTensorType if double else FloatTensorType
    rows = operator.inputs[0].get_first_dimension()
    return Variable(name, name, None, tensor([rows, len(operator.inputs)]))


def _reading_categories(shape: Any) -> Any:
    def calculate(operator: Any) -> Any:
        if not pandas_categories(operator.raw_operator) or len(operator.inputs) == 1:
            return shape(operator)
        return shape(_JoinedInput(operator, _joined_variable(operator, "apo_lgbm_codes")))

    return calculate


def _mapping_categories(converter: Any) -> Any:
    # skl2onnx checks the converter's arity: exactly (scope, operator, container).
    def convert(scope: Any, operator: Any, container: Any) -> Any:
        model = operator.raw_operator
        categories = pandas_categories(model)
        if not categories:
            truncated = _truncating_categorical_features(scope, operator, container)
            return converter(scope, operator if truncated is None else truncated, container)
        names = [str(n) for n in getattr(model, "feature_names_in_", [])]
        if len(operator.inputs) != len(names) or len(names) != model.n_features_in_:
            listed = ", ".join(repr(names[i]) for i in sorted(categories) if i < len(names))
            raise UnsupportedModelError(
                f"{type(model).__name__} splits on pandas category columns ({listed}), which "
                "this artifact would read as plain numbers, as LightGBM does not",
                hint=_RETRAIN_HINT,
            )
        joined = _joined_variable(operator, scope.get_unique_variable_name("apo_lgbm_codes"))
        _join_codes(scope, operator, container, categories, joined)
        return converter(scope, _JoinedInput(operator, joined), container)

    return convert


def _truncating_categorical_features(scope: Any, operator: Any, container: Any) -> Any:
    """``operator`` reading its categorical features truncated to integers, or ``None``.

    LightGBM reads a categorical feature's value as ``static_cast<int>``: 2.7 is category 2 (and
    -0.5 category 0), where ONNX's ``BRANCH_EQ`` would match no category. Truncating those
    columns first (NaN stays NaN: no category) makes the chains of equalities decide as it does.
    """
    from skl2onnx.common._topology import Variable

    booster = getattr(operator.raw_operator, "_Booster", None)
    columns = _categorical_columns(booster) if booster is not None else None
    source = operator.inputs[0]
    if not columns or len(operator.inputs) != 1 or "Int" in type(source.type).__name__:
        return None
    width = source.type.shape[1] if len(source.type.shape) > 1 else None
    n_features = int(width) if isinstance(width, int) else int(operator.raw_operator.n_features_in_)
    mask = np.zeros((1, n_features), dtype=bool)
    mask[0, [c for c in columns if c < n_features]] = True

    def node(op_type: str, inputs: list[str], **attrs: Any) -> str:
        out: str = scope.get_unique_variable_name(f"apo_lgbm_{op_type.lower()}")
        container.add_node(op_type, inputs, [out], name=scope.get_unique_operator_name(op_type),
                           **attrs)  # fmt: skip
        return out

    x = source.full_name
    whole = node("Mul", [node("Sign", [x]), node("Floor", [node("Abs", [x])])])
    flags = scope.get_unique_variable_name("apo_lgbm_categorical")
    container.add_initializer(flags, None, list(mask.shape), _tensor(mask))
    name = scope.get_unique_variable_name("apo_lgbm_truncated")
    container.add_node("Where", [flags, whole, x], [name],
                       name=scope.get_unique_operator_name("Where"))  # fmt: skip
    return _JoinedInput(operator, Variable(name, name, None, source.type))


def _tensor(array: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(array)


def _join_codes(scope: Any, operator: Any, container: Any, categories: dict[int, list[Any]],
                joined: Any) -> None:  # fmt: skip
    """Each category column to its LightGBM code (NaN when no category), the others cast to the
    joined float type, then one [N, F] matrix."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, Int64TensorType, StringTensorType

    model = operator.raw_operator
    elem = TensorProto.DOUBLE if isinstance(joined.type, DoubleTensorType) else TensorProto.FLOAT
    parts = []
    for i, variable in enumerate(operator.inputs):
        column = variable.full_name
        if i in categories:
            values = categories[i]
            name = str(model.feature_names_in_[i])
            expected = _category_dtype(model, name, values)
            given = variable.type
            if (expected == "string") != isinstance(given, StringTensorType) or (
                expected == "int64" and not isinstance(given, Int64TensorType)
            ):
                raise UnsupportedModelError(
                    f"{type(model).__name__}: category column {name!r} must be given as "
                    f"{expected}, not {type(given).__name__}",
                    hint=_RETRAIN_HINT,
                )
            keys: dict[str, Any] = (
                {"keys_strings": [str(v) for v in values]}
                if expected == "string"
                else {"keys_int64s": [int(v) for v in values]}
            )
            codes = scope.get_unique_variable_name(f"apo_lgbm_code{i}")
            container.add_node(
                "LabelEncoder", [column], [codes], op_domain="ai.onnx.ml", op_version=2,
                name=scope.get_unique_operator_name("LabelEncoder"),
                values_floats=[float(code) for code in range(len(values))],
                default_float=float("nan"), **keys,
            )  # fmt: skip
            column = codes
            if elem == TensorProto.FLOAT:
                parts.append(column)
                continue
        elif isinstance(variable.type, StringTensorType):
            raise UnsupportedModelError(
                f"{type(model).__name__}: column {i} is text but was no category column",
                hint=_RETRAIN_HINT,
            )
        elif isinstance(variable.type, DoubleTensorType) == (elem == TensorProto.DOUBLE) and (
            not isinstance(variable.type, Int64TensorType)
        ):
            parts.append(column)  # already the joined float type
            continue
        cast = scope.get_unique_variable_name(f"apo_lgbm_num{i}")
        container.add_node("Cast", [column], [cast], to=elem,
                           name=scope.get_unique_operator_name("Cast"))  # fmt: skip
        parts.append(cast)
    container.add_node("Concat", parts, [joined.full_name], axis=1,
                       name=scope.get_unique_operator_name("Concat"))  # fmt: skip
