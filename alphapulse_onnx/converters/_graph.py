"""A small typed helper around skl2onnx's scope and container for apo's hand-written graphs.

``neighbors`` and ``iterative_imputer`` build straight-line graphs node by node; this keeps their
code to one line per operator and hides the two opset differences they meet (where a reduction
takes its axes, and unique names).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

# Reductions take their axes as an input from these opsets on (an attribute before).
_AXES_AS_INPUT = {"ReduceSum": 13}
_AXES_AS_INPUT_DEFAULT = 18


class Graph:
    """Nodes and constants of one converter, in the float type of its input (float or double)."""

    def __init__(self, scope: Any, container: Any, *, double: bool, prefix: str) -> None:
        self.scope = scope
        self.container = container
        self.double = double
        self.dtype: type[np.floating[Any]] = np.float64 if double else np.float32
        self.elem_type = TensorProto.DOUBLE if double else TensorProto.FLOAT
        self.prefix = prefix

    @property
    def opset(self) -> int:
        return int(self.container.target_opset)

    def name(self, hint: str) -> str:
        unique: str = self.scope.get_unique_variable_name(f"{self.prefix}_{hint}")
        return unique

    def op(self, op_type: str, inputs: list[str], *, out: str | None = None, **attrs: Any) -> str:
        """Add one single-output node; its output's name."""
        return self.ops(op_type, inputs, 1, outs=None if out is None else [out], **attrs)[0]

    def ops(self, op_type: str, inputs: list[str], count: int, *, outs: list[str] | None = None,
            **attrs: Any) -> list[str]:  # fmt: skip
        names = outs or [self.name(op_type.lower()) for _ in range(count)]
        self.container.add_node(op_type, inputs, names,
                                name=self.scope.get_unique_operator_name(f"{self.prefix}_{op_type}"),
                                **attrs)  # fmt: skip
        return names

    def const(self, value: Any, dtype: Any = None) -> str:
        """An initializer; floats take the graph's float type and integers int64 unless ``dtype``
        says otherwise; booleans stay booleans."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif array.dtype.kind == "f":
            array = array.astype(self.dtype)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        name = self.name("const")
        if array.dtype.kind in "OUS":
            data = [str(v).encode("utf-8") for v in array.ravel()]
            self.container.add_initializer(name, TensorProto.STRING, list(array.shape), data)
        else:
            self.container.add_initializer(name, None, list(array.shape),
                                           numpy_helper.from_array(array))  # fmt: skip
        return name

    def cast(self, x: str, to: int | None = None) -> str:
        return self.op("Cast", [x], to=self.elem_type if to is None else to)

    def reduce(self, op_type: str, x: str, axes: list[int], *, keepdims: bool) -> str:
        """``ReduceSum``/``ReduceMax``/... over ``axes``, in this opset's form."""
        if self.opset >= _AXES_AS_INPUT.get(op_type, _AXES_AS_INPUT_DEFAULT):
            return self.op(op_type, [x, self.const(np.asarray(axes, dtype=np.int64))],
                           keepdims=int(keepdims))  # fmt: skip
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))
