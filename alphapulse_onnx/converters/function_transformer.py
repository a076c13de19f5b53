"""``FunctionTransformer(func=<numpy ufunc>)``: element-wise ONNX operators for pure ufuncs.

skl2onnx converts a ``FunctionTransformer`` only when ``func`` is ``None``. Real registries use
``FunctionTransformer(np.log1p)`` and friends; the safe loader admits exactly the ufuncs in
``alphapulse_onnx.loading.SAFE_UFUNCS``, and each of them has an exact ONNX counterpart in
``UFUNCS`` below, which also records its numpy inverse and domain for the probe generator.
Anything else (a lambda, a user function, ``kw_args``) stays unsupported, with a message that says
which function it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphapulse_onnx.errors import UnsupportedModelError

# One ufunc as ONNX: (graph, x) -> the result's name. ``graph.op(op_type, inputs, **attrs)`` adds
# one node; ``graph.const(value)`` adds a scalar of the input's float type.
Builder = Callable[["_Graph", str], str]


class _Graph:
    """A small helper around skl2onnx's scope/container for straight-line element-wise graphs."""

    def __init__(self, scope: Any, container: Any, elem_type: int) -> None:
        self.scope = scope
        self.container = container
        self.elem_type = elem_type

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        out: str = self.scope.get_unique_variable_name(f"apo_ft_{op_type.lower()}")
        self.container.add_node(
            op_type, inputs, [out], name=self.scope.get_unique_operator_name(op_type), **attrs
        )
        return out

    def const(self, value: float) -> str:
        name: str = self.scope.get_unique_variable_name("apo_ft_const")
        self.container.add_initializer(name, self.elem_type, [], [value])
        return name


def _unary(op_type: str) -> Builder:
    return lambda g, x: g.op(op_type, [x])


def _log_base(base: float) -> Builder:
    return lambda g, x: g.op("Div", [g.op("Log", [x]), g.const(float(np.log(base)))])


def _native_in_float(op_type: str, composed: Builder) -> Builder:
    """onnxruntime implements some math ops for float only: compose them from exp/log in double."""

    def build(g: _Graph, x: str) -> str:
        from onnx import TensorProto

        return g.op(op_type, [x]) if g.elem_type == TensorProto.FLOAT else composed(g, x)

    return build


def _sinh(g: _Graph, x: str) -> str:
    diff = g.op("Sub", [g.op("Exp", [x]), g.op("Exp", [g.op("Neg", [x])])])
    return g.op("Mul", [diff, g.const(0.5)])


def _cosh(g: _Graph, x: str) -> str:
    total = g.op("Add", [g.op("Exp", [x]), g.op("Exp", [g.op("Neg", [x])])])
    return g.op("Mul", [total, g.const(0.5)])


def _asinh(g: _Graph, x: str) -> str:
    magnitude = g.op("Abs", [x])
    root = g.op("Sqrt", [g.op("Add", [g.op("Mul", [magnitude, magnitude]), g.const(1.0)])])
    return g.op("Mul", [g.op("Sign", [x]), g.op("Log", [g.op("Add", [magnitude, root])])])


def _atan_via_float(g: _Graph, x: str) -> str:
    from onnx import TensorProto

    as_float = g.op("Cast", [x], to=TensorProto.FLOAT)
    return g.op("Cast", [g.op("Atan", [as_float])], to=TensorProto.DOUBLE)


def _cbrt(g: _Graph, x: str) -> str:
    magnitude = g.op("Pow", [g.op("Abs", [x]), g.const(1.0 / 3.0)])
    return g.op("Mul", [g.op("Sign", [x]), magnitude])


def _trunc(g: _Graph, x: str) -> str:
    return g.op("Mul", [g.op("Sign", [x]), g.op("Floor", [g.op("Abs", [x])])])


@dataclass(frozen=True)
class SafeUfunc:
    """What apo knows about one ufunc the safe loader admits."""

    onnx: Builder  # the same function as ONNX operators
    # numpy's inverse, where it has one: probes drawn after the function map back to raw inputs
    inverse: Callable[[np.ndarray], np.ndarray] | None = None
    # NaN below zero (log1p below -1): matrix probes through it are folded to |x|; column probes
    # stay inside the domain through ``inverse``, which every such ufunc has
    nonnegative: bool = False


# One row per name in ``alphapulse_onnx.loading.SAFE_UFUNCS``; the converter and the probe
# generator both read it.
UFUNCS: dict[str, SafeUfunc] = {
    "log1p": SafeUfunc(
        lambda g, x: g.op("Log", [g.op("Add", [x, g.const(1.0)])]), np.expm1, nonnegative=True
    ),
    "expm1": SafeUfunc(lambda g, x: g.op("Sub", [g.op("Exp", [x]), g.const(1.0)]), np.log1p),
    "log": SafeUfunc(_unary("Log"), np.exp, nonnegative=True),
    "log2": SafeUfunc(_log_base(2.0), np.exp2, nonnegative=True),
    "log10": SafeUfunc(_log_base(10.0), lambda v: np.power(10.0, v), nonnegative=True),
    "exp": SafeUfunc(_unary("Exp"), np.log),
    "exp2": SafeUfunc(lambda g, x: g.op("Pow", [g.const(2.0), x]), np.log2),
    "sqrt": SafeUfunc(_unary("Sqrt"), np.square, nonnegative=True),
    "cbrt": SafeUfunc(_cbrt, lambda v: np.power(v, 3.0)),
    "square": SafeUfunc(lambda g, x: g.op("Mul", [x, x]), lambda v: np.sqrt(np.abs(v))),
    "abs": SafeUfunc(_unary("Abs")),
    "absolute": SafeUfunc(_unary("Abs")),
    "fabs": SafeUfunc(_unary("Abs")),
    "negative": SafeUfunc(_unary("Neg"), np.negative),
    "reciprocal": SafeUfunc(_unary("Reciprocal"), np.reciprocal),
    "sign": SafeUfunc(_unary("Sign")),
    "tanh": SafeUfunc(_unary("Tanh")),
    "sinh": SafeUfunc(_native_in_float("Sinh", _sinh), np.arcsinh),
    "cosh": SafeUfunc(_native_in_float("Cosh", _cosh)),
    "arcsinh": SafeUfunc(_native_in_float("Asinh", _asinh), np.sinh),
    # float precision in double graphs: onnxruntime has no double Atan
    "arctan": SafeUfunc(_native_in_float("Atan", _atan_via_float)),
    "sin": SafeUfunc(_unary("Sin")),
    "cos": SafeUfunc(_unary("Cos")),
    "floor": SafeUfunc(_unary("Floor")),
    "ceil": SafeUfunc(_unary("Ceil")),
    "rint": SafeUfunc(_unary("Round")),  # both round half to even
    "trunc": SafeUfunc(_trunc),
}


def ufunc_name(transformer: Any) -> str | None:
    """The ufunc name of a convertible ``FunctionTransformer``; ``None`` for the identity."""
    func = transformer.func
    if func is None:
        return None
    if not isinstance(func, np.ufunc) or func.__name__ not in UFUNCS:
        what = getattr(func, "__qualname__", None) or type(func).__name__
        module = getattr(func, "__module__", None) or "numpy"
        raise UnsupportedModelError(
            f"FunctionTransformer(func={module}.{what}) has no ONNX form "
            f"(apo converts the numpy ufuncs {', '.join(sorted(UFUNCS))})"
        )
    if transformer.kw_args:
        raise UnsupportedModelError(f"FunctionTransformer({func.__name__}) with kw_args")
    return str(func.__name__)


def _shape(operator: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    ufunc_name(operator.raw_operator)  # refuse early, with the function's name
    first = operator.inputs[0].type
    n = operator.inputs[0].get_first_dimension()
    width: int | None = 0
    for variable in operator.inputs:
        dim = variable.type.shape[1]
        width = None if dim is None or width is None else width + dim
    if isinstance(first, (FloatTensorType, DoubleTensorType)):
        out = copy.deepcopy(first)
    else:
        out = FloatTensorType()
    out.shape = [n, width]
    operator.outputs[0].type = out


def _convert(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType

    name = ufunc_name(operator.raw_operator)
    double = isinstance(operator.outputs[0].type, DoubleTensorType)
    elem_type = TensorProto.DOUBLE if double else TensorProto.FLOAT
    graph = _Graph(scope, container, elem_type)
    out_type = type(operator.outputs[0].type)
    parts = [
        v.full_name
        if isinstance(v.type, out_type)
        else graph.op("Cast", [v.full_name], to=elem_type)
        for v in operator.inputs
    ]
    # Concat, not FeatureVectorizer: the latter rounds doubles through float32.
    joined = parts[0] if len(parts) == 1 else graph.op("Concat", parts, axis=1)
    result = joined if name is None else UFUNCS[name].onnx(graph, joined)
    container.add_node(
        "Identity",
        [result],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Identity"),
    )


def register() -> None:
    from skl2onnx import update_registered_converter
    from sklearn.preprocessing import FunctionTransformer

    update_registered_converter(
        FunctionTransformer, "SklearnFunctionTransformer", _shape, _convert, overwrite=True
    )
