"""pandas objects inside fitted models, rebuilt from their data without pandas' unpickling code.

Models trained on DataFrames keep pandas objects: a ColumnTransformer's column ``Index`` (before
1.0), category_encoders' mappings (``Series`` and ``DataFrame``), string arrays backed by
pyarrow. pandas rebuilds them through internal functions (``_new_Index``, ``_unpickle_block``,
block managers, pyarrow's ``_restore_array``) that trust their arguments. The loader admits
those names only through the checkers here, which validate the saved data and build the object
with pandas' public constructors (``pd.Index``, ``pd.RangeIndex``, ``pd.MultiIndex``,
``pd.Categorical.from_codes``, ``pd.array``, ``pd.Series``, ``pd.DataFrame``).

pandas' internals (block managers, blocks, extension arrays) become apo's holders: the file's
data, checked, never a pandas object built from the file's state. A ``Series`` or ``DataFrame``
is a bare instance whose state (a manager holder) is checked for consistency (placements cover
each column once, lengths agree with the index), then built anew and moved into the instance.
Cells are plain values only: numbers, text, bytes, booleans, dates and times, missing values.

Wiring (the rest of the loader reads these tables): ``RECONSTRUCTORS`` joins role (b),
``STANDINS`` maps pandas' extension-array classes to apo's data holders (role a),
``MODEL_CLASSES`` lists the pandas classes a file may make bare instances of, ``SETTERS`` gives
each its vetted state setter, keyed by the class that defines ``__setstate__``, and ``VALUES``
joins role (c). Block managers are reconstructors, not stand-ins: pandas 1.3 and later pickle a
DataFrame's as a call (``BlockManager(blocks, axes)``), a Series' as a bare instance and a state
tuple, so both forms give the same holder (``Reconstructor.bare``).

Layouts read: pandas 1.0-3.x (block managers as state tuples or called with their blocks,
``_unpickle_block``, ``NDArrayBacked`` arrays, ``Int64Index`` and friends, pyarrow-backed
strings). Timezone-aware datetimes, periods, intervals, sparse and nullable masked arrays are
not admitted (their names are refused).
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alphapulse_onnx.errors import described
from alphapulse_onnx.loading.checks import Context, Name, is_int, kinds, type_name, whole_numbers
from alphapulse_onnx.loading.reconstructors import Reconstructor

# --- holders: pandas' internals as data ----------------------------------------------------------


class _Holder:
    """Base of apo's holders: given state only by ``SETTERS`` below, never by this method."""

    def __setstate__(self, state: Any) -> None:
        raise TypeError("apo's loader sets this holder's state through frames.SETTERS")


class LoadedManager(_Holder):
    """A pandas block manager: its axes (real ``pd.Index`` objects) and checked blocks."""

    def __init__(self) -> None:
        self.axes: list[Any] | None = None
        self.blocks: list[LoadedBlock] | None = None


class LoadedArray(_Holder):
    """A pandas extension array's saved data; ``array`` is what the checks rebuilt from it."""

    def __init__(self) -> None:
        self.array: Any = None


class LoadedArrowStrings(LoadedArray):
    """``ArrowStringArray``: a pyarrow string array, fully validated, and its ``StringDtype``."""


class LoadedStrings(LoadedArray):
    """``StringArray``: an object array of text and missing values."""


class LoadedCategorical(LoadedArray):
    """``Categorical``: integer codes into the categories of a ``CategoricalDtype``."""


class LoadedDatetimes(LoadedArray):
    """``DatetimeArray`` without a time zone: kept as its ``datetime64`` numpy array."""


class LoadedTimedeltas(LoadedArray):
    """``TimedeltaArray``: kept as its ``timedelta64`` numpy array."""


@dataclass(frozen=True)
class LoadedBlock:
    """One block: a numpy array (1-D or rows x length) or a 1-D pandas array, and the
    positions (``locs``) of the columns it holds."""

    values: Any
    locs: np.ndarray[Any, Any]
    ndim: int


_NDARRAY_BACKED = (LoadedStrings, LoadedCategorical, LoadedDatetimes, LoadedTimedeltas)

# --- plain values --------------------------------------------------------------------------------

_CELLS = frozenset({str, bytes, int, float, bool, complex, type(None), datetime.datetime,
                    datetime.date, datetime.time, datetime.timedelta, decimal.Decimal})  # fmt: skip
_NUMPY_CELLS = (np.number, np.bool_, np.character, np.datetime64, np.timedelta64)
_ARRAY_KINDS = frozenset("biufcMmO")  # numbers, booleans, dates and times, objects (checked)


def _missing(value: Any) -> bool:
    return value is pd.NA or value is pd.NaT


def _cell(value: Any) -> bool:
    return type(value) in _CELLS or isinstance(value, _NUMPY_CELLS) or _missing(value)


def _label(value: Any, depth: int = 0) -> bool:
    """A name or label: a plain scalar, or a tuple of them (a MultiIndex's)."""
    if type(value) is tuple:
        return depth < 8 and all(_label(v, depth + 1) for v in value)
    return _cell(value)


def _plain_data(value: Any, depth: int = 0) -> bool:
    """``attrs``: plain scalars, numeric arrays, and lists and dicts of them."""
    if depth > 32:
        return False
    if type(value) in (list, tuple):
        return all(_plain_data(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_label(k) and _plain_data(v, depth + 1) for k, v in value.items())
    if type(value) is np.ndarray:
        return value.dtype.kind in _ARRAY_KINDS and value.dtype.kind != "O"
    return _cell(value)


def _plain_cells(values: np.ndarray[Any, Any], ctx: Context, what: str) -> None:
    for item in values.ravel().tolist():  # the objects themselves: an object array holds them
        if not _cell(item):
            kind = f"the callable {type_name(item)}" if callable(item) else type_name(item)
            raise ctx.refuse(
                f"the file stores {kind} in {what}; pandas data may hold plain values only"
            )


def _checked_array(value: Any, ctx: Context, what: str, ndims: tuple[int, ...] = (1,)) -> Any:
    """A numpy array this load built and gave its state, of plain values."""
    if type(value) is not np.ndarray:
        raise ctx.refuse(f"{what} was given {type_name(value)} where a numpy array belongs")
    if ctx.unbuilt(value):
        raise ctx.refuse(f"{what} was given a numpy array before its state was set")
    if value.ndim not in ndims:
        raise ctx.refuse(f"{what} was given a {value.ndim}-dimensional array")
    if value.dtype.kind not in _ARRAY_KINDS or value.dtype.names is not None:
        raise ctx.refuse(f"{what} was given an array of {value.dtype}, not plain values")
    if value.dtype.hasobject:
        _plain_cells(value, ctx, what)
    return value


def _codes(value: Any, limit: int, ctx: Context, what: str) -> np.ndarray[Any, Any]:
    """Integer codes into ``limit`` values (-1: missing)."""
    codes = _checked_array(value, ctx, what)
    if codes.dtype.kind not in "iu":
        raise ctx.refuse(f"{what} are {codes.dtype}, not integers")
    if codes.size and (int(codes.min()) < -1 or int(codes.max()) >= limit):
        raise ctx.refuse(f"{what} point outside their {limit} values")
    return codes  # type: ignore[no-any-return]


def _build(make: Callable[[], Any], ctx: Context, what: str) -> Any:
    """Run one of pandas' public constructors on checked data; its refusal becomes ours."""
    try:
        return make()
    except (ValueError, TypeError, NotImplementedError, OverflowError, IndexError,
            KeyError) as exc:  # fmt: skip
        raise ctx.refuse(f"pandas rejects the file's {what} ({described(exc, 120)})") from None


def _nbytes(values: Any) -> int:
    if isinstance(values, np.ndarray):
        return int(values.nbytes)
    return int(getattr(values, "nbytes", 8 * len(values)))


# --- dtypes --------------------------------------------------------------------------------------

_STORAGES = frozenset({"python", "pyarrow", "pyarrow_numpy"})


def _string_dtype(storage: Any, na_value: Any, ctx: Context) -> Any:
    """``pd.StringDtype`` as this pandas spells it ("pyarrow_numpy" was 2.1-2.2's NaN flavour)."""
    nan = type(na_value) is float and math.isnan(na_value)
    if storage not in _STORAGES or not (na_value is pd.NA or nan):
        raise ctx.refuse(
            f"pandas' StringDtype was given storage {storage!r} and {kinds((na_value,))}"
        )
    if storage == "pyarrow_numpy":
        storage, nan = "pyarrow", True
    try:
        return pd.StringDtype(storage, na_value=np.nan if nan else pd.NA)
    except TypeError:  # pandas before 2.3 names the NaN flavour by its storage
        return pd.StringDtype("pyarrow_numpy" if nan else storage)


def _string_dtype_call(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``StringDtype(storage, na_value)`` (pandas 2.3 and later)."""
    if len(args) > 2:
        raise ctx.refuse(f"pandas' StringDtype was given {kinds(args)}")
    storage = args[0] if args else "python"
    return _string_dtype(storage, args[1] if len(args) == 2 else pd.NA, ctx)


def _bare_string_dtype() -> Any:
    # pandas 1.0-1.2 pickle a StringDtype with no state at all: their only storage, python.
    return pd.StringDtype("python")


def string_dtype_state(inst: Any, state: Any, ctx: Context) -> None:
    """pandas 1.3-2.2's ``StringDtype`` state: its storage (``_cache`` is derived, dropped)."""
    if type(state) is not dict or not set(state) <= {"storage", "_cache"}:
        raise ctx.refuse(f"the file gives pandas' StringDtype a state of {type_name(state)}")
    built = _string_dtype(state.get("storage", "python"), pd.NA, ctx)
    _replace_attributes(inst, built)


def categorical_dtype_state(inst: Any, state: Any, ctx: Context) -> None:
    """``CategoricalDtype``: categories (an Index this load built) and whether they're ordered."""
    # "_ordered_from_sentinel": pandas 0.25-1.0's note on how ``ordered`` was given, unused
    if type(state) is not dict or not set(state) <= {"categories", "ordered",
                                                     "_ordered_from_sentinel"}:  # fmt: skip
        raise ctx.refuse(f"the file gives a CategoricalDtype a state of {type_name(state)}")
    categories, ordered = state.get("categories"), state.get("ordered")
    if not (categories is None or isinstance(categories, pd.Index)) or ordered not in (
        None, True, False,
    ):  # fmt: skip
        raise ctx.refuse("the file gives a CategoricalDtype categories that are not an Index")
    built = _build(lambda: pd.CategoricalDtype(categories, bool(ordered)), ctx, "categories")
    _replace_attributes(inst, built)


def _replace_attributes(inst: Any, built: Any) -> None:
    """Give a bare instance the attributes of one pandas' constructor just built."""
    attributes = object.__getattribute__(inst, "__dict__")
    attributes.clear()
    attributes.update(object.__getattribute__(built, "__dict__"))


# --- pyarrow -------------------------------------------------------------------------------------

_ARROW_ALIASES = frozenset({
    "string", "str", "utf8", "large_string", "large_str", "large_utf8", "bool", "boolean",
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
    "float64", "double",
})  # fmt: skip


def _type_for_alias(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1 or type(args[0]) is not str or args[0] not in _ARROW_ALIASES:
        raise ctx.refuse(f"pyarrow's type_for_alias was given {args[:1]!r}")
    return fn(args[0])


def _py_buffer(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1 or not isinstance(args[0], (bytes, bytearray)):
        raise ctx.refuse(f"pyarrow's py_buffer was given {kinds(args)}, not bytes")
    ctx.charge(len(args[0]), "a pyarrow buffer")
    return fn(bytes(args[0]))  # its own immutable copy: nothing can change it once validated


def _restore_array(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """A pyarrow string array: buffers sized for its length, then ``validate(full=True)``."""
    import pyarrow as pa

    if len(args) != 1 or type(args[0]) is not tuple or len(args[0]) != 7:
        raise ctx.refuse(f"pyarrow's _restore_array was given {kinds(args)}")
    kind, length, null_count, offset, buffers, children, dictionary = args[0]
    if not isinstance(kind, pa.DataType) or not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        raise ctx.refuse(f"pyarrow's _restore_array was given type {kind!r}; apo reads strings")
    length, null_count, offset = whole_numbers((length, null_count, offset), ctx, "_restore_array")
    if length < 0 or offset < 0 or not -1 <= null_count <= length or length + offset > 2**48:
        raise ctx.refuse("pyarrow's _restore_array was given a negative or impossible length")
    if type(buffers) is not list or len(buffers) != 3 or children != [] or dictionary is not None:
        raise ctx.refuse("pyarrow's _restore_array was given buffers unlike a string array's")
    validity, offsets, data = buffers
    if not all(b is None or isinstance(b, pa.Buffer) for b in buffers) or offsets is None:
        raise ctx.refuse("pyarrow's _restore_array was given buffers it did not make")
    width = 8 if pa.types.is_large_string(kind) else 4
    end = offset + length
    if offsets.size < (end + 1) * width or (validity is not None and validity.size * 8 < end):
        raise ctx.refuse("pyarrow's _restore_array was given buffers shorter than its length")
    if validity is None and null_count > 0:
        raise ctx.refuse("pyarrow's _restore_array counts missing values it has no mask for")
    # The count of missing values is left for pyarrow to take from the mask (-1: unknown), and
    # compared after: full validation does not check the file's count against the mask.
    unknown = -1 if validity is not None else 0
    array = fn((kind, length, unknown, offset, [validity, offsets, data], [], None))
    try:
        array.validate(full=True)  # offsets inside the data, ascending, and valid UTF-8
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        reason = described(exc, 120)
        raise ctx.refuse(f"pyarrow rejects the file's string array ({reason})") from None
    if null_count not in (-1, array.null_count):
        raise ctx.refuse("pyarrow's _restore_array counts missing values its mask does not have")
    return array


def _arrow_strings(values: Any, dtype: Any, ctx: Context) -> Any:
    try:
        return pd.arrays.ArrowStringArray(values, dtype=dtype)
    except TypeError:  # pandas before 3.0: no dtype argument, the NaN flavour is its own class
        return pd.array(values.to_pylist(), dtype=dtype)


# --- extension arrays ----------------------------------------------------------------------------


def _ndarray_backed(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """Cython's ``__pyx_unpickle_NDArrayBacked(cls, checksum, None)``: a bare holder, which
    ``BUILD`` then gives its ``(dtype, ndarray, attributes)``."""
    if len(args) != 3 or not is_int(args[1]) or args[2] is not None:
        raise ctx.refuse(f"pandas' NDArrayBacked unpickler was given {kinds(args)}")
    cls = args[0]
    target = cls.target if isinstance(cls, Name) and cls.role == "model" else None
    if not (isinstance(target, type) and issubclass(target, _NDARRAY_BACKED)):
        raise ctx.refuse(f"pandas' NDArrayBacked unpickler was given {type_name(cls)}")
    ctx.charge(64, "an object")
    return ctx.fresh(target())


def _backed_state(state: Any, ctx: Context, what: str, keys: dict[str, str]) -> tuple[Any, Any]:
    """``(dtype, data)`` from an NDArrayBacked tuple (pandas 1.3+) or an older attribute dict,
    whose keys for the two are ``keys["dtype"]`` and ``keys["data"]``."""
    if type(state) is tuple and len(state) in (2, 3) and type(state[-1]) in (dict, np.ndarray):
        dtype, data, extra = (*state, {}) if len(state) == 2 else state
        if type(extra) is not dict:
            raise ctx.refuse(f"the file gives a {what} a malformed state")
    elif type(state) is dict:
        dtype, data = state.get(keys["dtype"]), state.get(keys["data"])
        extra = {k: v for k, v in state.items() if k not in (keys["dtype"], keys["data"])}
    else:
        raise ctx.refuse(f"the file gives a {what} a state of {type_name(state)}")
    if not set(extra) <= {"_cache", "_freq", "_readonly"} or extra.get("_freq") is not None:
        raise ctx.refuse(
            f"the file gives a {what} attributes it does not have ({', '.join(extra)})"
        )
    return dtype, data


def arrow_strings_state(inst: Any, state: Any, ctx: Context) -> None:
    import pyarrow as pa

    if type(state) is not dict or not set(state) <= {"_pa_array", "_data", "_dtype", "_cache",
                                                      "_readonly"}:  # fmt: skip
        raise ctx.refuse(f"the file gives an ArrowStringArray a state of {type_name(state)}")
    values = state.get("_pa_array", state.get("_data"))
    if not isinstance(values, pa.Array):  # only _restore_array makes one, validated
        raise ctx.refuse(f"the file gives an ArrowStringArray {type_name(values)} as its data")
    dtype = state.get("_dtype")
    if dtype is None:
        dtype = _string_dtype("pyarrow", pd.NA, ctx)
    if not isinstance(dtype, pd.StringDtype) or dtype.storage not in ("pyarrow", "pyarrow_numpy"):
        raise ctx.refuse(f"the file gives an ArrowStringArray the dtype {type_name(dtype)}")
    ctx.charge(values.nbytes, "a string array")
    inst.array = _build(lambda: _arrow_strings(values, dtype, ctx), ctx, "string array")


def strings_state(inst: Any, state: Any, ctx: Context) -> None:
    dtype, data = _backed_state(state, ctx, "StringArray", {"dtype": "_dtype", "data": "_ndarray"})
    if not isinstance(dtype, pd.StringDtype):
        raise ctx.refuse(f"the file gives a StringArray the dtype {type_name(dtype)}")
    data = _checked_array(data, ctx, "a StringArray")
    if data.dtype.kind != "O" or not all(
        type(v) is str or v is None or _missing(v) or (type(v) is float and math.isnan(v))
        for v in data.tolist()
    ):  # fmt: skip
        raise ctx.refuse("the file gives a StringArray values that are not text")
    ctx.charge(data.nbytes, "a string array")
    inst.array = _build(lambda: pd.array(data, dtype=dtype), ctx, "string array")


def categorical_state(inst: Any, state: Any, ctx: Context) -> None:
    dtype, codes = _backed_state(state, ctx, "Categorical", {"dtype": "_dtype", "data": "_codes"})
    if not isinstance(dtype, pd.CategoricalDtype) or ctx.unbuilt(dtype):
        raise ctx.refuse(f"the file gives a Categorical the dtype {type_name(dtype)}")
    count = 0 if dtype.categories is None else len(dtype.categories)
    codes = _codes(codes, count, ctx, "a Categorical's codes")
    ctx.charge(codes.nbytes, "a Categorical")
    inst.array = _build(lambda: pd.Categorical.from_codes(codes, dtype=dtype), ctx, "Categorical")


def _times_state(kind: str, what: str) -> Callable[[Any, Any, Context], None]:
    def setter(inst: Any, state: Any, ctx: Context) -> None:
        dtype, data = _backed_state(state, ctx, what, {"dtype": "_dtype", "data": "_data"})
        data = _checked_array(data, ctx, f"a {what}", ndims=(1, 2))
        if not isinstance(dtype, np.dtype) or dtype.kind != kind or data.dtype != dtype:
            raise ctx.refuse(f"the file gives a {what} the dtype {type_name(dtype)}")
        inst.array = data  # datetime64/timedelta64: pandas wraps it when the frame is built

    return setter


# --- indexes -------------------------------------------------------------------------------------

# pandas' Index classes, as pickles name them, by what apo builds for each.
_INDEX_CLASSES: dict[str, str] = {
    "pandas.Index": "index", "pandas.core.indexes.base.Index": "index",
    "pandas.core.indexes.numeric.Int64Index": "i", "pandas.core.indexes.numeric.UInt64Index": "u",
    "pandas.core.indexes.numeric.Float64Index": "f",
    "pandas.core.indexes.numeric.NumericIndex": "iuf",
    "pandas.RangeIndex": "range", "pandas.core.indexes.range.RangeIndex": "range",
    "pandas.MultiIndex": "multi", "pandas.core.indexes.multi.MultiIndex": "multi",
    "pandas.CategoricalIndex": "category", "pandas.core.indexes.category.CategoricalIndex":
        "category",
    "pandas.DatetimeIndex": "datetime", "pandas.core.indexes.datetimes.DatetimeIndex": "datetime",
    "pandas.TimedeltaIndex": "timedelta",
    "pandas.core.indexes.timedeltas.TimedeltaIndex": "timedelta",
}  # fmt: skip
_PUBLIC_INDEX = {"index": "Index", "i": "Index", "u": "Index", "f": "Index", "iuf": "Index",
                 "range": "RangeIndex", "multi": "MultiIndex", "category": "CategoricalIndex",
                 "datetime": "DatetimeIndex", "timedelta": "TimedeltaIndex"}  # fmt: skip
_INDEX_KEYS = {
    "range": {"name", "start", "stop", "step"},
    "multi": {"levels", "codes", "labels", "sortorder", "names"},
    "datetime": {"data", "name", "freq", "tz"},
    "timedelta": {"data", "name", "freq"},
}


def _index_class(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    raise ctx.refuse("the file calls a pandas Index class; pickles rebuild indexes through "
                     "_new_Index only")  # fmt: skip


def _index_kind(cls: Any, ctx: Context, what: str) -> str:
    kind = _INDEX_CLASSES.get(cls.dotted) if isinstance(cls, Name) else None
    if kind is None:
        raise ctx.refuse(f"{what} was given {type_name(cls)}, not a pandas Index class")
    return kind


def _new_index(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``_new_Index(cls, attributes)``: checked, then built with pandas' public constructors."""
    if len(args) != 2 or type(args[1]) is not dict:
        raise ctx.refuse(f"pandas' _new_Index was given {kinds(args)}")
    kind = _index_kind(args[0], ctx, "pandas' _new_Index")
    if kind == "datetime":
        raise ctx.refuse("pandas' _new_Index was given DatetimeIndex, which pickles otherwise")
    return _index(kind, args[1], ctx)


def _new_datetime_index(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 2 or type(args[1]) is not dict:
        raise ctx.refuse(f"pandas' _new_DatetimeIndex was given {kinds(args)}")
    if _index_kind(args[0], ctx, "pandas' _new_DatetimeIndex") != "datetime":
        raise ctx.refuse(f"pandas' _new_DatetimeIndex was given {type_name(args[0])}")
    return _index("datetime", args[1], ctx)


def _index(kind: str, attributes: dict[Any, Any], ctx: Context) -> Any:
    what = f"pandas {_PUBLIC_INDEX[kind]}"
    if not set(attributes) <= _INDEX_KEYS.get(kind, {"data", "name"}):
        raise ctx.refuse(f"the file gives a {what} unknown attributes ({kinds(attributes)})")
    if kind in ("datetime", "timedelta") and (attributes.get("freq") is not None
                                              or attributes.get("tz") is not None):  # fmt: skip
        raise ctx.refuse(f"the file gives a {what} a frequency or time zone (not admitted)")
    name = attributes.get("name")
    if not _label(name):
        raise ctx.refuse(f"the file names a {what} with {type_name(name)}")
    if kind == "range":
        return _range_index(attributes, name, ctx)
    if kind == "multi":
        return _multi_index(attributes, ctx)
    data = _index_data(attributes.get("data"), kind, ctx, what)
    ctx.charge(_nbytes(data), what)
    if kind == "category":
        return _build(lambda: pd.CategoricalIndex(data, name=name), ctx, what)
    # dtype given, as pandas' own _new_Index does: no inference (text stays object dtype)
    return _build(lambda: pd.Index(data, dtype=data.dtype, name=name), ctx, what)


def _index_data(value: Any, kind: str, ctx: Context, what: str) -> Any:
    holders = {"category": LoadedCategorical, "datetime": LoadedDatetimes,
               "timedelta": LoadedTimedeltas}  # fmt: skip
    if kind in holders:
        if not isinstance(value, holders[kind]) or value.array is None:
            raise ctx.refuse(f"the file gives a {what} {type_name(value)} as its data")
        data = value.array
        if isinstance(data, np.ndarray) and data.ndim != 1:
            raise ctx.refuse(f"the file gives a {what} {data.ndim}-dimensional data")
        return data
    if isinstance(value, (LoadedArrowStrings, LoadedStrings)) and kind == "index":
        if value.array is None:
            raise ctx.refuse(f"the file gives a {what} a string array before its state was set")
        return value.array
    data = _checked_array(value, ctx, f"a {what}")
    if kind != "index" and data.dtype.kind not in kind:
        raise ctx.refuse(f"the file gives a {what} data of {data.dtype}")
    return data


def _range_index(attributes: dict[Any, Any], name: Any, ctx: Context) -> Any:
    start, stop, step = whole_numbers(
        tuple(attributes.get(k, d) for k, d in (("start", 0), ("stop", 0), ("step", 1))),
        ctx, "pandas RangeIndex",
    )  # fmt: skip
    if step == 0 or max(abs(start), abs(stop), abs(step)) >= 2**63:
        raise ctx.refuse(f"the file gives a pandas RangeIndex the bounds {start}, {stop}, {step}")
    # Lazy in pandas, but whatever uses it may materialize it: charged as if it were.
    ctx.charge(8 * len(range(start, stop, step)), "a pandas RangeIndex")
    return pd.RangeIndex(start, stop, step, name=name)


def _multi_index(attributes: dict[Any, Any], ctx: Context) -> Any:
    levels: Any = attributes.get("levels")
    names = attributes.get("names")
    codes: Any = attributes.get("codes", attributes.get("labels"))
    sortorder = attributes.get("sortorder")
    if type(levels) is not list or not levels or not all(isinstance(x, pd.Index) for x in levels):
        raise ctx.refuse("the file gives a pandas MultiIndex levels that are not indexes")
    if type(codes) not in (list, tuple) or len(codes) != len(levels):
        raise ctx.refuse("the file gives a pandas MultiIndex codes unlike its levels")
    checked = [_codes(c, len(level), ctx, "a MultiIndex's codes")
               for c, level in zip(codes, levels, strict=True)]  # fmt: skip
    if len({len(c) for c in checked}) != 1:
        raise ctx.refuse("the file gives a pandas MultiIndex codes of different lengths")
    if names is not None and (type(names) not in (list, tuple) or len(names) != len(levels)
                              or not all(_label(n) for n in names)):  # fmt: skip
        raise ctx.refuse("the file gives a pandas MultiIndex names that are not labels")
    if not (sortorder is None or is_int(sortorder)):
        raise ctx.refuse(f"the file gives a pandas MultiIndex the sort order {sortorder!r}")
    ctx.charge(sum(c.nbytes for c in checked), "a pandas MultiIndex")
    return _build(
        lambda: pd.MultiIndex(levels=levels, codes=checked, sortorder=sortorder, names=names,
                              verify_integrity=True),
        ctx, "pandas MultiIndex",
    )  # fmt: skip


# --- blocks and managers -------------------------------------------------------------------------


def _block_values(value: Any, ctx: Context) -> Any:
    """A block's values: a numpy array of plain values, or a rebuilt pandas array."""
    if isinstance(value, LoadedArray):
        if value.array is None:
            raise ctx.refuse("the file gives a pandas block an array before its state was set")
        return value.array
    return _checked_array(value, ctx, "a pandas block", ndims=(1, 2))


def _placement(value: Any, count: int, ctx: Context) -> np.ndarray[Any, Any]:
    """Column positions, as a slice or an integer array; ``count`` of them, none negative.

    A slice's length is known without allocating: it must match the block before it becomes
    an array."""
    if type(value) is slice:
        start = 0 if value.start is None else value.start
        step = 1 if value.step is None else value.step
        if not (is_int(start) and is_int(value.stop) and is_int(step)) or start < 0 or step < 1:
            raise ctx.refuse(f"the file places a pandas block at {value!r}")
        if len(range(start, value.stop, step)) != count:
            raise ctx.refuse(f"the file places a pandas block of {count} columns at {value!r}")
        return np.arange(start, value.stop, step, dtype=np.intp)
    locs = _checked_array(value, ctx, "a pandas block's placement")
    if locs.dtype.kind not in "iu" or len(locs) != count or (locs.size and int(locs.min()) < 0):
        raise ctx.refuse(f"the file places a pandas block of {count} columns at other positions")
    return locs.astype(np.intp)  # type: ignore[no-any-return]


def _block(values: Any, placement: Any, ndim: Any, ctx: Context) -> LoadedBlock:
    if not is_int(ndim) or int(ndim) not in (1, 2):
        raise ctx.refuse(f"the file gives a pandas block {ndim!r} dimensions")
    values = _block_values(values, ctx)
    two_d = isinstance(values, np.ndarray) and values.ndim == 2
    if int(ndim) == 1 and two_d:
        raise ctx.refuse("the file gives a one-dimensional pandas block a table")
    count = len(values) if int(ndim) == 1 else (values.shape[0] if two_d else 1)
    return LoadedBlock(values, _placement(placement, count, ctx), int(ndim))


def _unpickle_block(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``_unpickle_block(values, placement, ndim)``: apo's block holder, never pandas' Block."""
    if len(args) != 3:
        raise ctx.refuse(f"pandas' _unpickle_block was given {kinds(args)}")
    return _block(*args, ctx)


def _block_manager(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``BlockManager(blocks, axes)``, as pandas 1.3 and later pickle a DataFrame's data."""
    if len(args) != 2 or type(args[0]) not in (tuple, list) or type(args[1]) is not list:
        raise ctx.refuse(f"pandas' BlockManager was given {kinds(args)}")
    if not all(type(b) is LoadedBlock for b in args[0]):
        raise ctx.refuse("pandas' BlockManager was given blocks it did not get from "
                         "_unpickle_block")  # fmt: skip
    return _manager(LoadedManager(), args[1], list(args[0]), ctx)


def manager_state(inst: Any, state: Any, ctx: Context) -> None:
    """A manager's pickled state: ``(axes, values, items, {"0.14.1": {axes, blocks}})``; the
    first three are for pandas 0.13 and ignored, as pandas itself does."""
    layout = state[3].get("0.14.1") if type(state) is tuple and len(state) == 4 and type(
        state[3]) is dict else None  # fmt: skip
    if type(layout) is not dict or not set(layout) <= {"axes", "blocks"}:
        raise ctx.refuse(f"the file gives a pandas block manager a state of {type_name(state)}")
    axes, blocks = layout.get("axes"), layout.get("blocks")
    if type(axes) is not list or type(blocks) is not list:
        raise ctx.refuse("the file gives a pandas block manager no axes or blocks")
    loaded = []
    for block in blocks:
        if type(block) is not dict or set(block) != {"values", "mgr_locs"}:
            raise ctx.refuse("the file gives a pandas block manager a malformed block")
        loaded.append(_block(block["values"], block["mgr_locs"], len(axes), ctx))
    _manager(inst, axes, loaded, ctx)


def _manager(inst: LoadedManager, axes: list[Any], blocks: list[LoadedBlock],
             ctx: Context) -> LoadedManager:  # fmt: skip
    """Blocks that cover each column exactly once, each as long as the index."""
    if len(axes) not in (1, 2) or not all(isinstance(axis, pd.Index) for axis in axes):
        raise ctx.refuse("the file gives a pandas block manager axes that are not indexes")
    ndim, items, rows = len(axes), len(axes[0]), len(axes[-1])
    if ndim == 1 and len(blocks) != 1:
        raise ctx.refuse("the file gives a pandas Series data of more than one block")
    for block in blocks:
        length = block.values.shape[1] if block.values.ndim == 2 else len(block.values)
        if block.ndim != ndim or length != rows:
            raise ctx.refuse(f"the file gives a pandas block of {length} values for {rows} rows")
    if sum(len(block.locs) for block in blocks) != items:
        raise ctx.refuse(f"the file's pandas blocks do not hold its {items} columns")
    if items:
        locs = np.concatenate([block.locs for block in blocks])
        if int(locs.max()) >= items or not bool(np.all(np.bincount(locs, minlength=items) == 1)):
            raise ctx.refuse("the file's pandas blocks overlap or leave columns out")
    inst.axes, inst.blocks = list(axes), blocks
    return inst


# --- Series and DataFrame ------------------------------------------------------------------------

_FRAME_KEYS = frozenset({"_mgr", "_data", "_typ", "_metadata", "attrs", "_attrs", "_flags",
                         "name", "_name"})  # fmt: skip


def frame_state(inst: Any, state: Any, ctx: Context) -> None:
    """``NDFrame.__setstate__``'s job: the manager holder is checked, a Series or DataFrame is
    built from it with pandas' constructors, and the bare instance takes its attributes."""
    if type(state) is not dict or not set(state) <= _FRAME_KEYS:
        raise ctx.refuse(f"the file gives a {type_name(inst)} a state of {type_name(state)}")
    series = isinstance(inst, pd.Series)
    if not (series or isinstance(inst, pd.DataFrame)):
        raise ctx.refuse(f"the file gives a {type_name(inst)} the state of a pandas object")
    if state.get("_typ") != ("series" if series else "dataframe"):
        raise ctx.refuse(f"the file gives a {type_name(inst)} the state of a {state.get('_typ')}")
    manager = state.get("_mgr", state.get("_data"))
    if type(manager) is not LoadedManager or manager.axes is None or manager.blocks is None:
        raise ctx.refuse(f"the file gives a {type_name(inst)} data that is not a checked manager")
    if len(manager.axes) != (1 if series else 2):
        raise ctx.refuse(f"the file gives a {type_name(inst)} data of the wrong shape")
    metadata = state.get("_metadata", [])
    if type(metadata) is not list or not all(type(m) is str for m in metadata):
        raise ctx.refuse(f"the file gives a {type_name(inst)} malformed metadata")
    attrs = state.get("attrs", state.get("_attrs")) or {}
    flags = state.get("_flags", {"allows_duplicate_labels": True})
    if type(attrs) is not dict or not _plain_data(attrs):
        raise ctx.refuse(f"the file gives a {type_name(inst)} attrs that are not plain data")
    if type(flags) is not dict or set(flags) != {"allows_duplicate_labels"} or flags[
        "allows_duplicate_labels"] not in (True, False):  # fmt: skip
        raise ctx.refuse(f"the file gives a {type_name(inst)} malformed flags")
    built = _series(manager, state, ctx) if series else _frame(manager, ctx)
    attributes = dict(object.__getattribute__(built, "__dict__"))
    attributes["_attrs"] = attrs
    # Flags point back at their object: the instance's own, not the one built here.
    attributes["_flags"] = pd.Flags(inst, allows_duplicate_labels=flags["allows_duplicate_labels"])
    if "_item_cache" in attributes:  # pandas before 3.0: a cache of columns, per object
        attributes["_item_cache"] = {}
    object.__getattribute__(inst, "__dict__").update(attributes)


def _series(manager: LoadedManager, state: dict[str, Any], ctx: Context) -> Any:
    name = state.get("_name", state.get("name"))
    if not _label(name):
        raise ctx.refuse(f"the file names a pandas Series with {type_name(name)}")
    values = manager.blocks[0].values  # type: ignore[index]
    ctx.charge(_nbytes(values), "a pandas Series")
    index = manager.axes[0]  # type: ignore[index]
    return _build(
        lambda: pd.Series(values, index=index, dtype=values.dtype, name=name, copy=False),
        ctx, "Series",
    )  # fmt: skip


def _frame(manager: LoadedManager, ctx: Context) -> Any:
    items, index = manager.axes  # type: ignore[misc]
    columns: list[Any] = [None] * len(items)
    for block in manager.blocks:  # type: ignore[union-attr]
        two_d = isinstance(block.values, np.ndarray) and block.values.ndim == 2
        for row, position in enumerate(block.locs.tolist()):
            columns[position] = block.values[row] if two_d else block.values
    ctx.charge(sum(_nbytes(c) for c in columns), "a pandas DataFrame")

    def build() -> Any:
        # One Series per column, dtype given (pandas 3 would read object text as str), all on
        # the same default index, so nothing is aligned; then the real axes.
        data = {i: pd.Series(c, dtype=c.dtype, copy=False) for i, c in enumerate(columns)}
        frame = pd.DataFrame(data, index=pd.RangeIndex(len(index)))
        frame.index = index
        frame.columns = items
        return frame

    return _build(build, ctx, "DataFrame")


# --- missing values ------------------------------------------------------------------------------


def _nat_unpickle(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if args not in ((), (None,)):
        raise ctx.refuse(f"pandas' NaT unpickler was given {kinds(args)}")
    return pd.NaT


# --- the tables ----------------------------------------------------------------------------------


def _holder_state(inst: Any, state: Any, ctx: Context) -> None:
    setter = _HOLDER_SETTERS.get(type(inst))
    if setter is None:
        raise ctx.refuse(f"the file gives a {type_name(inst)} state")
    setter(inst, state, ctx)


_HOLDER_SETTERS: dict[type, Callable[[Any, Any, Context], None]] = {
    LoadedManager: manager_state,
    LoadedArrowStrings: arrow_strings_state,
    LoadedStrings: strings_state,
    LoadedCategorical: categorical_state,
    LoadedDatetimes: _times_state("M", "DatetimeArray"),
    LoadedTimedeltas: _times_state("m", "TimedeltaArray"),
}

_HERE = "alphapulse_onnx.loading.frames"
_MANAGERS = (
    "pandas.core.internals.managers.BlockManager",
    "pandas.core.internals.managers.SingleBlockManager",
    "pandas.core.internals.BlockManager",
    "pandas.core.internals.SingleBlockManager",
)
RECONSTRUCTORS: dict[str, Reconstructor] = {
    "pandas.core.indexes.base._new_Index": Reconstructor(
        ("pandas.core.indexes.base", "_new_Index"), _new_index),
    "pandas.core.indexes.datetimes._new_DatetimeIndex": Reconstructor(
        ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"), _new_datetime_index),
    **{dotted: Reconstructor(("pandas", _PUBLIC_INDEX[kind]), _index_class)
       for dotted, kind in _INDEX_CLASSES.items()},
    "pandas._libs.internals._unpickle_block": Reconstructor(
        ("pandas._libs.internals", "_unpickle_block"), _unpickle_block),
    # Managers are called with their blocks (pandas 1.3+) or made bare and given a state
    # tuple (Series always, DataFrames before 1.3): both give apo's holder.
    **{dotted: Reconstructor((_HERE, "LoadedManager"), _block_manager, bare=LoadedManager)
       for dotted in _MANAGERS},
    "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked": Reconstructor(
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"), _ndarray_backed),
    **{dotted: Reconstructor(("pandas", "StringDtype"), _string_dtype_call,
                             bare=_bare_string_dtype)
       for dotted in ("pandas.StringDtype", "pandas.core.arrays.string_.StringDtype")},
    **{f"pandas._libs.tslibs.nattype.{name}": Reconstructor(("pandas", "NaT"), _nat_unpickle)
       for name in ("__nat_unpickle", "_nat_unpickle")},
    "pyarrow.lib._restore_array": Reconstructor(("pyarrow.lib", "_restore_array"),
                                                _restore_array),
    "pyarrow.lib.type_for_alias": Reconstructor(("pyarrow.lib", "type_for_alias"),
                                                _type_for_alias),
    "pyarrow.lib.py_buffer": Reconstructor(("pyarrow.lib", "py_buffer"), _py_buffer),
}  # fmt: skip
STANDINS: dict[str, type] = {
    "pandas.arrays.ArrowStringArray": LoadedArrowStrings,
    "pandas.core.arrays.string_arrow.ArrowStringArray": LoadedArrowStrings,
    "pandas.core.arrays.string_arrow.ArrowStringArrayNumpySemantics": LoadedArrowStrings,
    "pandas.arrays.StringArray": LoadedStrings,
    "pandas.core.arrays.string_.StringArray": LoadedStrings,
    "pandas.core.arrays.string_.StringArrayNumpySemantics": LoadedStrings,
    "pandas.Categorical": LoadedCategorical,
    "pandas.core.arrays.categorical.Categorical": LoadedCategorical,
    "pandas.arrays.DatetimeArray": LoadedDatetimes,
    "pandas.core.arrays.datetimes.DatetimeArray": LoadedDatetimes,
    "pandas.arrays.TimedeltaArray": LoadedTimedeltas,
    "pandas.core.arrays.timedeltas.TimedeltaArray": LoadedTimedeltas,
}
MODEL_CLASSES: dict[str, tuple[str, str]] = {  # dotted name in pickles -> (module, class)
    "pandas.DataFrame": ("pandas", "DataFrame"),
    "pandas.core.frame.DataFrame": ("pandas", "DataFrame"),
    "pandas.Series": ("pandas", "Series"),
    "pandas.core.series.Series": ("pandas", "Series"),
    "pandas.CategoricalDtype": ("pandas", "CategoricalDtype"),
    "pandas.core.dtypes.dtypes.CategoricalDtype": ("pandas", "CategoricalDtype"),
}
SETTERS: dict[str, Any] = {
    "pandas.core.generic.NDFrame": frame_state,
    "pandas.CategoricalDtype": categorical_dtype_state,
    "pandas.core.dtypes.dtypes.CategoricalDtype": categorical_dtype_state,
    "pandas.StringDtype": string_dtype_state,
    "pandas.core.arrays.string_.StringDtype": string_dtype_state,
    f"{_HERE}._Holder": _holder_state,
}
VALUES: dict[str, str] = {"pandas.NA": "NA", "pandas._libs.missing.NA": "NA"}  # role (c): pd.NA


def inert_values() -> dict[str, Any]:
    """``VALUES`` resolved, for ``inert.inert_values``."""
    return {dotted: getattr(pd, name) for dotted, name in VALUES.items()}
