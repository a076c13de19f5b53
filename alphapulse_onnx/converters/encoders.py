"""category_encoders' encoders as lookup tables (the ``encoders`` extra).

``OneHotEncoder``, ``OrdinalEncoder``, ``TargetEncoder``, ``BinaryEncoder`` and ``BaseNEncoder``
turn each value of an encoded column into a fixed row of numbers, whatever the other columns hold.
In ONNX each encoded column becomes the row number of its value (a LabelEncoder for text, Equal
against the known values for numbers; ``""`` or NaN for a missing cell) and a Gather from a table.
The table is the library's own ``transform`` of one row per known value, one unseen value and one
missing value, so it follows the installed version's ``handle_unknown``/``handle_missing``,
``drop_invariant`` and ``min_group_size`` exactly. A value the library refuses (``"error"``)
selects a row that makes the graph fail at run time, as ``transform`` raises. Columns outside
``cols`` pass through as numbers, in the order ``transform`` gives them.

Missing text is ``""``, apo's convention (see ``imputer``). A float32 artifact compares numeric
inputs and categories in float32: a value within float32 precision of a category reads as it, and
categories that round alike are refused there (the float64 build tells them apart).
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphapulse_onnx.errors import UnsupportedModelError

ENCODERS_HINT = 'pip install "alphapulse-onnx[encoders]"'
EXTRA_PACKAGES = ("category_encoders", "imblearn")
MISSING_TEXT = ""

# How an encoder names the outputs of one input column: the column's own name (one number per
# value), or the columns of the frame it keeps per column in ``mapping`` (one-hot, base-N digits).
_OWN_NAME = "own name"
_MAPPING_FRAME = "mapping frame"
ENCODERS: dict[str, str] = {
    "OneHotEncoder": _MAPPING_FRAME,
    "OrdinalEncoder": _OWN_NAME,
    "TargetEncoder": _OWN_NAME,
    "BinaryEncoder": _MAPPING_FRAME,
    "BaseNEncoder": _MAPPING_FRAME,
}


def missing_extra_hint(module_name: str) -> str | None:
    """The install line for a model class from ``module_name`` when its package is absent."""
    package = module_name.partition(".")[0]
    if package not in EXTRA_PACKAGES:
        return None
    try:
        importlib.import_module(package)
    except ImportError:
        return ENCODERS_HINT
    return None


@dataclass(frozen=True)
class EncodedColumn:
    """One encoded input column: its value selects a row of ``table``.

    Row 0 stands for any value the encoder never saw, rows ``1..len(keys)`` for ``keys`` in order,
    the last row for a missing value. ``raises`` marks the rows the library's transform refuses.
    """

    label: Any  # the column as the encoder was fitted (usually a str)
    keys: tuple[Any, ...]  # str for text columns, int/float for numeric ones
    table: np.ndarray  # float64, [len(keys) + 2, len(outputs)]
    raises: np.ndarray  # bool, [len(keys) + 2]
    outputs: tuple[str, ...]

    @property
    def text(self) -> bool:
        """Fitted on text (its keys are all ``str``; ``_known_values`` refuses a mix)."""
        return any(isinstance(key, str) for key in self.keys)


@dataclass(frozen=True)
class Passthrough:
    """A column the encoder does not encode: it reaches the output unchanged."""

    label: Any


@dataclass(frozen=True)
class EncoderPlan:
    """What one fitted encoder does, column by column, in the order of its input columns."""

    encoder: str
    columns: tuple[EncodedColumn | Passthrough, ...]

    @property
    def width(self) -> int:
        return sum(1 if isinstance(c, Passthrough) else len(c.outputs) for c in self.columns)


def _refuse(encoder: Any, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"category_encoders {type(encoder).__name__}: {why}")


def _is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA: what the library maps through ``fillna(np.nan)``."""
    import pandas as pd

    return value is None or (not isinstance(value, str) and np.ndim(value) == 0 and pd.isna(value))


def plan_for(encoder: Any) -> EncoderPlan:
    """Read ``encoder`` into per-column tables; refuse, in one line, what ONNX cannot reproduce."""
    name = type(encoder).__name__
    naming = ENCODERS.get(name)
    if naming is None:
        raise _refuse(encoder, f"apo converts {', '.join(ENCODERS)} only")
    features = getattr(encoder, "feature_names_in_", None)
    if features is None:
        raise _refuse(
            encoder, "records no feature_names_in_ (fitted before category_encoders 2.6.1)"
        )
    features = list(features)
    if name == "OrdinalEncoder" and (
        callable(encoder.handle_unknown) or callable(encoder.handle_missing)
    ):
        raise _refuse(encoder, "calls a handle_unknown/handle_missing function at transform time")
    if getattr(encoder, "composite_members_", None):
        raise _refuse(encoder, "composite_cols build new columns from several inputs")
    encoded = list(encoder.cols)
    _refuse_text_passthrough(encoder, features, set(encoded))
    keys = {label: _known_values(encoder, label) for label in encoded}
    outputs = {label: _output_names(encoder, label, naming) for label in encoded}
    expected = [str(o) for f in features for o in outputs.get(f, (f,))]
    fitted = getattr(encoder, "feature_names_out_", None)
    if fitted is not None and [str(o) for o in fitted] != expected:
        raise _refuse(encoder, "its output columns do not follow its mapping")
    tables = _library_tables(encoder, features, keys, outputs) if encoded else {}
    columns: list[EncodedColumn | Passthrough] = []
    for label in features:
        if label not in outputs:
            columns.append(Passthrough(label))
            continue
        table, raises = tables[label]
        columns.append(EncodedColumn(label, keys[label], table, raises, outputs[label]))
    return EncoderPlan(name, tuple(columns))


@dataclass(frozen=True)
class ColumnFacts:
    """What signature inference and probe drawing need about one input column of an encoder."""

    dtype: str  # the artifact input it needs: "string", "int64" or "float32"
    values: tuple[Any, ...]  # its known categories (none for a column outside cols)
    unseen: bool  # transform answers a value it never saw (False: it raises)
    missing: bool  # transform answers a missing value (False: it raises)


def column_facts(encoder: Any, index: int) -> ColumnFacts:
    """Facts about the encoder's ``index``-th input column (refuses as ``plan_for`` does)."""
    column = plan_for(encoder).columns[index]
    if isinstance(column, Passthrough):
        return ColumnFacts("float32", (), unseen=True, missing=True)
    fitted = _ordinal_entry(encoder, column.label).get("data_type")
    # An integer column's categories read back as floats once the missing code joins them.
    integers = getattr(fitted, "kind", "f") in "iu" and all(
        float(k).is_integer() for k in column.keys
    )
    dtype = "string" if column.text else "int64" if integers else "float32"
    return ColumnFacts(dtype, column.keys, not column.raises[0], not column.raises[-1])


_UNENCODED_TEXT = "column {label!r} is text outside cols: it would pass on unencoded"


def _refuse_text_passthrough(encoder: Any, features: list[Any], encoded: set[Any]) -> None:
    dtypes = getattr(encoder, "feature_dtypes_in_", None)  # category_encoders >= 2.10
    for label, dtype in zip(features, dtypes or [None] * len(features), strict=True):
        if label not in encoded and getattr(dtype, "kind", "f") not in "biuf":
            raise _refuse(encoder, _UNENCODED_TEXT.format(label=label))


def _ordinal_entry(encoder: Any, label: Any) -> dict[str, Any]:
    """The column's entry in the (inner) ordinal encoder: its ``mapping`` and ``data_type``."""
    ordinal = encoder if type(encoder).__name__ == "OrdinalEncoder" else encoder.ordinal_encoder
    for switch in ordinal.mapping or ():
        if switch.get("col") == label:
            return dict(switch)
    raise _refuse(encoder, f"has no fitted mapping for column {label!r}")


def _known_values(encoder: Any, label: Any) -> tuple[Any, ...]:
    """The values the fitted encoder recognises in one column (its categories, and the labels
    ``min_group_size`` folds into a group), missing values left out; all text or all numbers."""
    values = list(_ordinal_entry(encoder, label)["mapping"].index)
    lumped = (getattr(encoder, "min_group_lumping_", None) or {}).get(label) or {}
    values.extend(lumped)
    known: list[Any] = []
    for value in values:
        if _is_missing(value):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _refuse(encoder, f"column {label!r} has a {type(value).__name__} category")
        known.append(value)
    known = list(dict.fromkeys(known))
    if len({isinstance(v, str) for v in known}) > 1:
        raise _refuse(encoder, f"column {label!r} mixes text and number categories")
    if MISSING_TEXT in known:
        raise _refuse(encoder, f"column {label!r} has the empty text category, apo's missing cell")
    return tuple(known)


def _output_names(encoder: Any, label: Any, naming: str) -> tuple[str, ...]:
    dropped = {str(n) for n in getattr(encoder, "invariant_cols", None) or ()}
    if naming == _OWN_NAME:
        names: list[Any] = [label]
    else:
        frames = [s["mapping"] for s in encoder.mapping or () if s.get("col") == label]
        if not frames:
            raise _refuse(encoder, f"has no fitted mapping for column {label!r}")
        names = list(frames[0].columns)
    return tuple(str(n) for n in names if str(n) not in dropped)


def _unseen(keys: Sequence[Any]) -> Any:
    """A value that is none of ``keys``: the library treats every such value alike."""
    if any(isinstance(k, str) for k in keys):
        text = "\x00apo-unseen"
        while text in keys:
            text += "-"
        return text
    numbers = {float(k) for k in keys}
    largest = max((abs(k) for k in numbers if np.isfinite(k)), default=0.0)
    number = float(np.ceil(largest) + 1.0)
    return number if number not in numbers else float(np.nextafter(largest, np.inf))


Table = tuple[np.ndarray, np.ndarray]  # the rows, and which of them the library refuses


def _library_tables(encoder: Any, features: list[Any], keys: dict[Any, tuple[Any, ...]],
                    outputs: dict[Any, tuple[str, ...]]) -> dict[Any, Table]:  # fmt: skip
    """Each encoded column's table, from the library's own transform: one call for every known
    value, then one for an unseen and one for a missing value in every column (one column at a
    time where the library refuses them, to learn which columns do)."""
    import pandas as pd

    base = {f: (keys[f][0] if keys[f] else np.nan) if f in keys else 0.0 for f in features}

    def transform(varied: dict[Any, list[Any]], rows: int) -> Any:
        data = {
            f: pd.Series(varied.get(f, [base[f]] * rows), dtype=object if f in keys else float)
            for f in features
        }
        frame = pd.DataFrame(data, columns=pd.Index(features, dtype=object))
        try:
            with warnings.catch_warnings():  # the library's pandas deprecations are not the user's
                warnings.simplefilter("ignore")
                out = encoder.transform(frame, override_return_df=True)
        except ValueError:
            return None
        return pd.DataFrame(out)

    rows = max([len(k) for k in keys.values()] + [1])
    known = transform({f: [k[i % len(k)] for i in range(rows)] for f, k in keys.items() if k}, rows)
    if known is None:
        raise _refuse(encoder, "its transform fails on the categories it was fitted on")
    special: list[dict[Any, np.ndarray | None]] = []
    for make in (lambda f: _unseen(keys[f]), lambda f: np.nan):
        together = transform({f: [make(f)] for f in keys}, 1)
        rows_of: dict[Any, np.ndarray | None] = {}
        for f in keys:
            one = together if together is not None else transform({f: [make(f)]}, 1)
            rows_of[f] = None if one is None else _row(one, outputs[f])
        special.append(rows_of)
    tables: dict[Any, Table] = {}
    for f, k in keys.items():
        width = len(outputs[f])
        seen = _row(known, outputs[f], len(k)) if k else np.empty((0, width))
        unknown, missing = special[0][f], special[1][f]
        refused = np.full((1, width), np.nan)  # never read: the run fails first
        table = np.vstack([refused if unknown is None else unknown, seen,
                           refused if missing is None else missing])  # fmt: skip
        raises = np.zeros(len(k) + 2, dtype=bool)
        raises[0], raises[-1] = unknown is None, missing is None
        tables[f] = (table, raises)
    return tables


def _row(out: Any, names: tuple[str, ...], rows: int = 1) -> np.ndarray:
    by_name = {str(c): c for c in out.columns}
    picked = out[[by_name[n] for n in map(str, names)]] if names else out.iloc[:, :0]
    return np.asarray(picked.to_numpy(dtype=np.float64)[:rows], dtype=np.float64)


# ---- ONNX ---------------------------------------------------------------------------------------


class _Graph:
    """Adds nodes and constants to skl2onnx's scope/container under unique names."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope = scope
        self.container = container

    def op(self, op_type: str, inputs: list[str], *, node_name: str | None = None,
           **attrs: Any) -> str:  # fmt: skip
        out: str = self.scope.get_unique_variable_name(f"apo_ce_{op_type.lower()}")
        name = self.scope.get_unique_operator_name(node_name or op_type)
        self.container.add_node(op_type, inputs, [out], name=name, **attrs)
        return out

    def const(self, values: np.ndarray, elem_type: int) -> str:
        name: str = self.scope.get_unique_variable_name("apo_ce_const")
        flat = values.ravel().tolist()
        self.container.add_initializer(name, elem_type, list(values.shape), flat)
        return name


@dataclass(frozen=True)
class _Source:
    """Where one input column is in the graph: a variable, and its column there if it has many."""

    name: str
    type: Any
    position: int | None


def _bind(operator: Any, plan: EncoderPlan) -> list[_Source]:
    """The graph tensor behind each of the encoder's input columns: by name when every input is
    one column named after one, else by position across the inputs' columns."""
    labels = [c.label for c in plan.columns]
    inputs = list(operator.inputs)
    widths = [v.type.shape[1] if len(v.type.shape) == 2 else None for v in inputs]
    if len(inputs) == len(labels) and all(w in (1, None) for w in widths):
        by_name = {v.raw_name: v for v in inputs}
        if {str(label) for label in labels} == set(by_name):
            inputs = [by_name[str(label)] for label in labels]
        return [_Source(v.full_name, v.type, None) for v in inputs]
    if len(inputs) == 1 and widths[0] in (len(labels), None):
        return [_Source(inputs[0].full_name, inputs[0].type, i) for i in range(len(labels))]
    if None not in widths and sum(w for w in widths if w is not None) == len(labels):
        return [
            _Source(v.full_name, v.type, i)
            for v, w in zip(inputs, widths, strict=True)
            for i in range(w or 0)
        ]
    raise UnsupportedModelError(
        f"category_encoders {plan.encoder}: it reads {len(labels)} columns but the graph gives "
        f"it {len(inputs)} inputs of widths {widths}"
    )


def _shape(operator: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    plan = plan_for(operator.raw_operator)
    double = any(isinstance(v.type, DoubleTensorType) for v in operator.inputs)
    n = operator.inputs[0].get_first_dimension()
    out = DoubleTensorType if double else FloatTensorType
    operator.outputs[0].type = out([n, plan.width])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType

    plan = plan_for(operator.raw_operator)
    graph = _Graph(scope, container)
    double = isinstance(operator.outputs[0].type, DoubleTensorType)
    out_type = TensorProto.DOUBLE if double else TensorProto.FLOAT
    pieces: list[str] = []
    for column, source in zip(plan.columns, _bind(operator, plan), strict=True):
        values = _column(graph, source)
        if isinstance(column, Passthrough):
            if _kind(source.type) == "text":
                raise _refuse(operator.raw_operator, _UNENCODED_TEXT.format(label=column.label))
            pieces.append(graph.op("Cast", [values], to=out_type))
        elif column.outputs:
            rows = _row_numbers(graph, plan, column, values, source.type)
            table = graph.const(column.table.astype(np.float64 if double else np.float32), out_type)
            pieces.append(graph.op("Gather", [table, rows], axis=0))
        elif column.raises.any():
            raise UnsupportedModelError(
                f"category_encoders {plan.encoder}: column {column.label!r} has no output left "
                "(drop_invariant) yet refuses some values"
            )
    final = operator.outputs[0].full_name
    if not pieces:
        raise UnsupportedModelError(f"category_encoders {plan.encoder}: it outputs no column")
    op_type = "Concat" if len(pieces) > 1 else "Identity"
    attrs = {"axis": 1} if len(pieces) > 1 else {}
    container.add_node(
        op_type, pieces, [final], name=scope.get_unique_operator_name(op_type), **attrs
    )


def _kind(tensor_type: Any) -> str:
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int32TensorType,
        Int64TensorType,
        StringTensorType,
    )

    if isinstance(tensor_type, StringTensorType):
        return "text"
    if isinstance(tensor_type, (Int64TensorType, Int32TensorType)):
        return "int"
    if isinstance(tensor_type, (FloatTensorType, DoubleTensorType)):
        return "float"
    raise UnsupportedModelError(f"category_encoders: cannot read a {type(tensor_type).__name__}")


def _column(graph: _Graph, source: _Source) -> str:
    """One input column as a ``[N, 1]`` tensor (int32 widened to int64)."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import Int32TensorType

    name = source.name
    if source.position is not None:
        index = graph.const(np.array([source.position], dtype=np.int64), TensorProto.INT64)
        name = graph.op("Gather", [name, index], axis=1)
    if isinstance(source.type, Int32TensorType):
        name = graph.op("Cast", [name], to=TensorProto.INT64)
    return name


def _row_numbers(graph: _Graph, plan: EncoderPlan, column: EncodedColumn, values: str,
                 tensor_type: Any) -> str:  # fmt: skip
    """Each row's line in ``column.table``, as a ``[N]`` int64 tensor; fails the run where the
    library's transform would raise."""
    from onnx import TensorProto

    kind = _kind(tensor_type)
    missing_row = len(column.keys) + 1
    if column.keys and column.text != (kind == "text"):
        fed, fitted = ("text", "numbers") if kind == "text" else ("numbers", "text")
        raise UnsupportedModelError(
            f"category_encoders {plan.encoder}: column {column.label!r} is given as {fed} but "
            f"was fitted on {fitted}"
        )
    if kind == "text":
        rows = graph.op(
            "LabelEncoder",
            [values],
            keys_strings=[*map(str, column.keys), MISSING_TEXT],
            values_int64s=[*range(1, missing_row), missing_row],
            default_int64=0,
            op_domain="ai.onnx.ml",
            op_version=2,
        )
    else:
        rows = _numeric_rows(graph, plan, column, values, tensor_type)
        if kind == "float":
            rows = graph.op(
                "Where",
                [
                    graph.op("IsNaN", [values]),
                    graph.const(np.array(missing_row, dtype=np.int64), TensorProto.INT64),
                    rows,
                ],
            )
    flat = graph.op("Reshape", [rows, graph.const(np.array([-1], np.int64), TensorProto.INT64)])
    if column.raises.any():
        flat = _fail_on(graph, column, flat)
    return flat


def _numeric_rows(graph: _Graph, plan: EncoderPlan, column: EncodedColumn, values: str,
                  tensor_type: Any) -> str:  # fmt: skip
    """Row numbers of a numeric column, through a LabelEncoder keyed on the known values (in O(N),
    whatever the column's cardinality). ai.onnx.ml opset 3 has int64 and float32 keys only: a
    double column is looked up in float32, then kept only where the key equals it exactly."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    double = isinstance(tensor_type, DoubleTensorType)
    if isinstance(tensor_type, FloatTensorType) or double:
        positions = list(range(1, len(column.keys) + 1))
        keys = np.array(column.keys, dtype=np.float32)
    else:  # an integer input never equals 1.5: such rows are unreachable
        positions = [i + 1 for i, key in enumerate(column.keys) if float(key).is_integer()]
        keys = np.array([column.keys[p - 1] for p in positions], dtype=np.int64)
    if not positions:
        return graph.op("ConstantOfShape", [graph.op("Shape", [values])], value=_int64_tensor(0))
    if len(np.unique(keys)) != len(keys):
        if double:
            return _matched_rows(graph, column, values)
        raise UnsupportedModelError(
            f"category_encoders {plan.encoder}: column {column.label!r} has categories that are "
            f"equal as {keys.dtype.name}; convert in float64"
        )
    looked_up = graph.op("Cast", [values], to=TensorProto.FLOAT) if double else values
    by_kind = "keys_int64s" if keys.dtype.kind == "i" else "keys_floats"
    rows = graph.op(
        "LabelEncoder",
        [looked_up],
        values_int64s=positions,
        default_int64=0,
        op_domain="ai.onnx.ml",
        op_version=2,
        **{by_kind: keys.tolist()},
    )
    if not double:
        return rows
    # Each row's value, as the key it found (NaN for row 0, which no value equals).
    row_keys = np.array([np.nan, *map(float, column.keys), np.nan], dtype=np.float64)
    found = graph.op("Gather", [graph.const(row_keys, TensorProto.DOUBLE), rows], axis=0)
    none = graph.const(np.array(0, dtype=np.int64), TensorProto.INT64)
    return graph.op("Where", [graph.op("Equal", [values, found]), rows, none])


def _matched_rows(graph: _Graph, column: EncodedColumn, values: str) -> str:
    """Row numbers of a double column whose categories collide in float32: a one-hot match
    against every known value, times its row number (exact: one match at most per row)."""
    from onnx import TensorProto

    keys = np.array(column.keys, dtype=np.float64).reshape(1, -1)
    hits = graph.op("Equal", [values, graph.const(keys, TensorProto.DOUBLE)])
    hits = graph.op("Cast", [hits], to=TensorProto.FLOAT)
    positions = np.arange(1, keys.size + 1, dtype=np.float32).reshape(-1, 1)
    weights = graph.const(positions, TensorProto.FLOAT)
    return graph.op("Cast", [graph.op("MatMul", [hits, weights])], to=TensorProto.INT64)


def _int64_tensor(value: int) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor("value", TensorProto.INT64, [1], [value])


def _fail_on(graph: _Graph, column: EncodedColumn, rows: str) -> str:
    """``rows`` unchanged, through a Reshape that cannot succeed when any row is one the library
    refuses: onnxruntime then fails the run and names this node, as ``transform`` raises."""
    from onnx import TensorProto

    refused = graph.const(column.raises.astype(np.int64), TensorProto.INT64)
    count = graph.op("ReduceSum", [graph.op("Gather", [refused, rows], axis=0)], keepdims=1)
    size = graph.op("Add", [graph.op("Shape", [rows]), count])
    what = {
        (True, False): "unknown_category",
        (False, True): "missing_value",
        (True, True): "unknown_category_or_missing_value",
    }[bool(column.raises[0]), bool(column.raises[-1])]
    safe = re.sub(r"\W", "_", str(column.label))
    return graph.op("Reshape", [rows, size], node_name=f"category_encoders_error_{what}_in_{safe}")


def register() -> None:
    """Register the encoders with skl2onnx when category_encoders is installed."""
    try:
        import category_encoders
    except ImportError:
        return
    from skl2onnx import _parse, update_registered_converter

    classes = [getattr(category_encoders, name) for name in ENCODERS]
    for cls in classes:
        update_registered_converter(
            cls, f"CategoryEncoders{cls.__name__}", _shape, _convert, overwrite=True
        )
    # A ColumnTransformer merges the columns it gives most transformers into one tensor, which
    # cannot hold text and numbers together; like skl2onnx's own encoders, these read them apart.
    kept = tuple(_parse.do_not_merge_columns)
    _parse.do_not_merge_columns = kept + tuple(c for c in classes if c not in kept)
