"""pandas objects inside model files: rebuilt by ``loading.frames`` from checked data.

Round trips: models holding each kind of pandas object (and real category_encoders encoders,
whose mappings are Series and DataFrames) load equal to what ``joblib.load`` gives. Old layouts:
files that real old pandas and scikit-learn releases wrote (``tests/data/old_pandas``, see its
README) load equal to what today's pandas makes of them. Red team: hostile files written the way
an attacker writes them (``__reduce__`` tuples naming the functions pandas unpickles with), each
refused in one line, and a sink function the file stores never runs.
"""

from __future__ import annotations

import copyreg
import datetime
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import category_encoders as ce
import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.core.indexes.base import _new_Index
from pandas.core.internals import managers
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from alphapulse_onnx import loading
from alphapulse_onnx.errors import ModelLoadError
from alphapulse_onnx.loading import TrustPolicy, frames

from .conftest import SINK, SINK_POLICY, sink

OLD_PANDAS = Path(__file__).parent / "data" / "old_pandas"
ENCODERS = TrustPolicy(trusted=("category_encoders",))


def _holding(obj: Any) -> FunctionTransformer:
    """A fitted estimator that keeps ``obj``, as fitted models keep pandas objects."""
    model = FunctionTransformer().fit(np.zeros((2, 2)))
    model.frames_ = obj
    return model


def _objects() -> dict[str, Any]:
    text = ["a", None, "c"]
    frame = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [1.5, np.nan, -1.0],
            "s": ["x", None, "z"],  # pandas 3: str, backed by pyarrow
            "o": pd.Series(["x", None, 3], dtype=object),
            "b": [True, False, True],
            "d": pd.to_datetime(["2021-02-03", "2022-01-01", None]),
            "c": pd.Categorical(["u", "v", "u"]),
            "j": [4, 5, 6],  # a second integer column: one block, two placements
        },
        index=pd.Index([10, 20, 30], name="row"),
    )
    attrs = frame.copy()
    attrs.attrs = {"source": "survey", "version": 2}
    return {
        "index-object": pd.Index(["a", "b", None], dtype=object, name="town"),
        "index-str": pd.Index(text),
        "index-int": pd.Index([3, 1, 2], name=("a", 1)),
        "index-float": pd.Index([0.5, np.nan]),
        "index-bool": pd.Index([True, False]),
        "range-index": pd.RangeIndex(0, 10, 3, name="r"),
        "multi-index": pd.MultiIndex.from_arrays([["a", "b", "a"], [1, 2, 2]], names=["k", "n"]),
        "categorical-index": pd.CategoricalIndex(["x", "y", "x"], name="c"),
        "datetime-index": pd.DatetimeIndex(["2020-01-01", None], name="d"),
        "series-float": pd.Series([1.0, 2.5, np.nan], index=pd.Index(["a", "b", "c"]), name="s"),
        "series-int-nan-label": pd.Series([1, 2, -2], index=pd.Index(["x", "y", np.nan])),
        "series-object": pd.Series(
            ["u", None, np.nan, 3, b"raw", pd.NA, pd.NaT, datetime.date(2020, 1, 2), True],
            dtype=object,
        ),
        "series-str": pd.Series(text, dtype="str"),
        "series-string-python": pd.Series(text, dtype=pd.StringDtype("python")),
        "series-string-pyarrow": pd.Series(text, dtype=pd.StringDtype("pyarrow")),
        "series-category": pd.Series(
            pd.Categorical(["a", "b", None], categories=["b", "a"], ordered=True)
        ),
        "series-datetime": pd.Series(pd.to_datetime(["2020-01-01", None]), name="when"),
        "series-timedelta": pd.Series(pd.to_timedelta([1, None], unit="s")),
        "frame": frame,
        "frame-duplicate-columns": pd.DataFrame([[1, 2.0], [3, 4.0]], columns=["a", "a"]),
        "frame-multiindex-columns": pd.DataFrame(
            np.arange(6).reshape(2, 3),
            columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)]),
        ),
        "frame-no-columns": pd.DataFrame(index=pd.RangeIndex(3)),
        "frame-attrs": attrs,
        "dtypes": [
            pd.StringDtype("pyarrow", na_value=np.nan),
            pd.CategoricalDtype(["a", "b"], ordered=True),
            np.dtype("float64"),
        ],
    }


def _assert_same(got: Any, expected: Any) -> None:
    assert type(got) is type(expected)
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_flags=True)
        assert got.attrs == expected.attrs
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(got, expected, check_exact=True, check_flags=True)
    elif isinstance(expected, pd.Index):
        pd.testing.assert_index_equal(got, expected, exact=True, check_exact=True)
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for left, right in zip(got, expected, strict=True):
            _assert_same(left, right)
    else:
        assert got == expected


def _write(path: Path, obj: Any, protocol: int | None = None) -> Path:
    if path.suffix == ".joblib":
        joblib.dump(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("name", list(_objects()))
@pytest.mark.parametrize(("suffix", "protocol"), [(".joblib", None), (".pkl", 2), (".pkl", 5)])
def test_pandas_objects_load_equal_to_joblib(
    tmp_path: Path, name: str, suffix: str, protocol: int | None
) -> None:
    path = _write(tmp_path / f"model{suffix}", _holding(_objects()[name]), protocol)
    loaded = loading.load(path).estimator.frames_
    expected = joblib.load(path).frames_  # noqa: TID251  # the reference, on our own file
    _assert_same(loaded, expected)


def test_loaded_frames_behave_like_pandas_ones(tmp_path: Path) -> None:
    objects = _objects()
    path = _write(tmp_path / "model.joblib", _holding(objects))
    loaded = loading.load(path).estimator.frames_
    frame, series = loaded["frame"], loaded["series-float"]
    assert frame.loc[20, "f"] != frame.loc[20, "f"]  # NaN
    assert frame.loc[30, "s"] == "z" and frame.s.tolist()[0] == "x"  # attribute access too
    assert frame.values.shape == (3, 8) and frame[["i", "j"]].to_numpy().tolist()[0] == [1, 4]
    assert frame.equals(objects["frame"]) and (frame["i"] == objects["frame"]["i"]).all()
    assert series.map({1.0: "one"}).tolist()[0] == "one"
    assert loaded["series-string-python"].str.upper().tolist()[0] == "A"
    changed = frame.copy()
    changed.loc[10, "i"] = 99  # copy-on-write: the loaded frame keeps its value
    assert frame.loc[10, "i"] == 1 and changed.loc[10, "i"] == 99
    frame.flags.allows_duplicate_labels = False  # the flags belong to this very object
    assert frame.flags.allows_duplicate_labels is False
    with pytest.raises(pd.errors.DuplicateLabelError):
        loaded["frame-duplicate-columns"].set_flags(allows_duplicate_labels=False)
    assert list(loaded["range-index"]) == [0, 3, 6, 9]


# --- category_encoders: real encoders, whose mappings are Series and DataFrames ------------------

_TRAIN = pd.DataFrame(
    {
        "town": ["a", "b", None, "a", "c", "b", "a", "c"],
        "size": ["s", "m", "m", None, "s", "l", "l", "s"],
        "x": [1.0, 2, 3, 4, 5, 6, 7, 8],
    }
)
_TEST = pd.DataFrame(
    {"town": ["a", "zz", None, "c"], "size": ["l", "s", None, "q"], "x": [1.0, 2, 3, 4]}
)
ENCODER_KINDS: dict[str, Callable[[], Any]] = {
    "ordinal": lambda: ce.OrdinalEncoder(cols=["town", "size"]),
    "one-hot": lambda: ce.OneHotEncoder(cols=["town"], use_cat_names=True),
    "target": lambda: ce.TargetEncoder(cols=["town", "size"]),
}


@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting")  # category_encoders' own
@pytest.mark.parametrize("kind", list(ENCODER_KINDS))
def test_category_encoders_load_and_transform_as_saved(tmp_path: Path, kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the encoders' own deprecation chatter
        encoder = ENCODER_KINDS[kind]().fit(_TRAIN, pd.Series([0, 1, 0, 1, 1, 0, 1, 0]))
    path = _write(tmp_path / "encoder.joblib", encoder)
    loaded = loading.load(path, ENCODERS).estimator
    reference = joblib.load(path)  # noqa: TID251  # the reference, on our own file
    pd.testing.assert_frame_equal(loaded.transform(_TEST), reference.transform(_TEST))
    pd.testing.assert_frame_equal(loaded.transform(_TEST), encoder.transform(_TEST))
    mappings = loaded.mapping if isinstance(loaded.mapping, list) else [loaded.mapping]
    held = [m["mapping"] for m in mappings if "mapping" in m] or list(mappings[0].values())
    assert held and all(isinstance(m, (pd.Series, pd.DataFrame)) for m in held)
    for got, expected in zip(
        mappings,
        reference.mapping if isinstance(reference.mapping, list) else [reference.mapping],
        strict=True,
    ):
        for key in got:
            _assert_same(got[key], expected[key])


@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting")
def test_category_encoders_load_without_trust_and_their_odd_parts_do_not(tmp_path: Path) -> None:
    encoder = ce.OrdinalEncoder(cols=["town"]).fit(_TRAIN)
    loaded = loading.load(_write(tmp_path / "encoder.joblib", encoder)).estimator
    pd.testing.assert_frame_equal(loaded.transform(_TRAIN), encoder.transform(_TRAIN))
    # category_encoders' own modules are admitted by class, not wholesale: a helper is not.
    from category_encoders import utils

    encoder.helper = utils.convert_input  # a function held where a model keeps data
    with pytest.raises(ModelLoadError, match=r"category_encoders\.utils\.convert_input"):
        loading.load(_write(tmp_path / "odd.joblib", encoder))


# --- files written by old pandas and scikit-learn ----------------------------------------------

OLD_FOLDERS = sorted(p.parent for p in OLD_PANDAS.glob("*/frames.pkl"))


def _old_reference(path: Path) -> dict[str, Any]:
    """What today's pandas makes of an old file (``pd.read_pickle`` maps pandas' old names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's version warning
        reference: dict[str, Any] = pd.read_pickle(path).frames_
    return reference


def test_every_old_pandas_release_is_there() -> None:
    assert [p.name for p in OLD_FOLDERS] == [
        "pandas-1.0.5",
        "pandas-1.2.5",
        "pandas-1.5.3",
        "pandas-2.2.3",
        "pandas-2.2.3-pyarrow-15",
    ]


@pytest.mark.parametrize("folder", OLD_FOLDERS, ids=[p.name for p in OLD_FOLDERS])
def test_old_pandas_objects_load_as_today_s_pandas_reads_them(folder: Path) -> None:
    loaded = loading.load(folder / "frames.pkl").estimator.frames_
    reference = _old_reference(folder / "frames.pkl")
    assert set(loaded) == set(reference) and len(loaded) >= 14
    for name, expected in reference.items():
        if name == "series_string" and folder.name < "pandas-1.3":
            # pandas 3 cannot read 1.0-1.2's StringDtype (it lacks the storage they predate);
            # the loader reads it as what it was: text with <NA>, stored in Python objects.
            expected = pd.Series(["a", None, "c"], dtype=pd.StringDtype("python"), name="t")
        _assert_same(loaded[name], expected)


def test_old_column_transformer_keeps_its_columns_and_answers() -> None:
    folder = OLD_PANDAS / "pandas-1.2.5"
    model = loading.load(folder / "ct_pipeline.pkl").estimator
    columns = model.steps[0][1]._df_columns
    pd.testing.assert_index_equal(columns, pd.Index(["size", "weight", "town"], dtype=object))
    rows = pd.read_csv(folder / "ct_rows.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fitted without feature names by 0.24
        proba = model.predict_proba(rows)
    np.testing.assert_allclose(proba, np.load(folder / "ct_proba.npy"), rtol=0, atol=1e-12)


# --- red team ------------------------------------------------------------------------------------


class _Call:
    """Pickles as ``fn(*args)``, then ``BUILD state`` when given: how an attacker writes a file
    (pickle itself writes the bytes, from the names of the functions pandas unpickles with)."""

    def __init__(self, fn: Any, *args: Any, state: Any = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _bare(cls: type, state: Any) -> _Call:
    """A bare instance given ``state`` (``BUILD``), as protocols 0 and 1 make one."""
    return _Call(copyreg._reconstructor, cls, object, None, state=state)  # type: ignore[attr-defined]


def _block(values: Any, placement: Any, ndim: int = 2) -> _Call:
    from pandas._libs.internals import _unpickle_block

    return _Call(_unpickle_block, values, placement, ndim)


def _frame(blocks: list[_Call], columns: list[str], rows: int) -> _Call:
    manager = _Call(managers.BlockManager, tuple(blocks), [pd.Index(columns), pd.RangeIndex(rows)])
    return _bare(
        pd.DataFrame,
        {
            "_mgr": manager,
            "_typ": "dataframe",
            "_metadata": [],
            "attrs": {},
            "_flags": {"allows_duplicate_labels": True},
        },
    )


def _series(axis: Any, values: Any, placement: Any, **state: Any) -> _Call:
    layout = {"axes": [axis], "blocks": [{"values": values, "mgr_locs": placement}]}
    manager = _bare(managers.SingleBlockManager, ([], [], [], {"0.14.1": layout}))
    return _bare(
        pd.Series, {"_mgr": manager, "_typ": "series", "_metadata": ["_name"], "attrs": {}, **state}
    )


def _index(cls: Any, data: Any) -> _Call:
    return _Call(_new_Index, cls, {"data": data, "name": None})


def _arrow_strings(
    offsets: list[int], data: bytes, length: int, mask: bytes | None = None, missing: int = 0
) -> _Call:
    kind = _Call(pa.lib.type_for_alias, "large_string")
    buffers = [
        None if mask is None else _Call(pa.py_buffer, mask),
        _Call(pa.py_buffer, np.array(offsets, dtype=np.int64).tobytes()),
        _Call(pa.py_buffer, data),
    ]
    array = _Call(pa.lib._restore_array, (kind, length, missing, 0, buffers, [], None))
    return _bare(
        pd.arrays.ArrowStringArray, {"_pa_array": array, "_dtype": pd.StringDtype("pyarrow")}
    )


def _hostile(sink: Callable[..., Any]) -> dict[str, tuple[Any, str]]:
    """Name -> (object to pickle, what the refusal must say)."""
    two_rows = np.zeros((1, 2))
    return {
        "placement-out-of-range": (
            _frame([_block(two_rows, slice(0, 1)), _block(two_rows, slice(5, 6))], ["a", "b"], 2),
            "overlap or leave columns out",
        ),
        "placements-overlapping": (
            _frame([_block(two_rows, slice(0, 1)), _block(two_rows, np.array([0]))], ["a", "b"], 2),
            "overlap or leave columns out",
        ),
        "block-longer-than-the-index": (
            _frame([_block(np.zeros((1, 3)), slice(0, 1))], ["a"], 2),
            "a pandas block of 3 values for 2 rows",
        ),
        "series-shorter-than-its-index": (
            _series(pd.RangeIndex(3), np.zeros(2), slice(0, 2, 1)),
            "a pandas block of 2 values for 3 rows",
        ),
        "placement-declaring-a-trillion-columns": (
            _frame([_block(two_rows, slice(0, 10**12))], ["a"], 2),
            "places a pandas block of 1 columns",
        ),
        "arrow-offsets-past-the-data": (
            _index(pd.Index, _arrow_strings([0, 1, 1000], b"ab", 2)),
            "pyarrow rejects the file's string array",
        ),
        "arrow-invalid-utf8": (
            _index(pd.Index, _arrow_strings([0, 1, 2], b"\xff\xfe", 2)),
            "Invalid UTF8",
        ),
        "arrow-missing-count-that-lies": (
            _index(pd.Index, _arrow_strings([0, 1, 2], b"ab", 2, mask=b"\x01", missing=0)),
            "counts missing values its mask does not have",
        ),
        "arrow-offsets-longer-than-the-buffer": (
            _index(pd.Index, _arrow_strings([0, 1], b"ab", 5)),
            "buffers shorter than its length",
        ),
        "new-index-of-a-model-class": (
            _index(LogisticRegression, np.array(["a"], dtype=object)),
            "LogisticRegression, not a pandas Index class",
        ),
        "new-index-of-a-callable": (_index(sink, np.array(["a"])), "not a pandas Index class"),
        "pandas-index-called-directly": (_Call(pd.Index, ["a"]), "calls a pandas Index class"),
        "index-holding-the-sink": (
            _index(pd.Index, np.array(["a", sink], dtype=object)),
            f"stores the callable {SINK} in",
        ),
        "index-holding-an-estimator": (
            _index(pd.Index, np.array([LogisticRegression()], dtype=object)),
            "stores sklearn.linear_model._logistic.LogisticRegression in",
        ),
        "frame-column-holding-the-sink": (
            _frame([_block(np.array([[sink, 1]], dtype=object), slice(0, 1))], ["a"], 2),
            f"stores the callable {SINK} in a pandas block",
        ),
        "series-named-by-the-sink": (
            _series(pd.RangeIndex(1), np.zeros(1), slice(0, 1, 1), _name=sink),
            "names a pandas Series with",
        ),
        "series-of-a-dict": (
            _bare(pd.Series, {"_mgr": {"blocks": []}, "_typ": "series"}),
            "data that is not a checked manager",
        ),
        "categorical-codes-past-the-categories": (
            _series(
                pd.RangeIndex(2),
                _Call(
                    pd._libs.arrays.__pyx_unpickle_NDArrayBacked,
                    pd.Categorical,
                    0,
                    None,
                    state=(pd.CategoricalDtype(["a"]), np.array([0, 7], dtype=np.int8)),
                ),
                slice(0, 2, 1),
            ),
            "a Categorical's codes point outside their 1 values",
        ),
        "range-index-of-a-quadrillion": (
            pd.RangeIndex(10**15),
            "declares more than",
        ),
        "string-dtype-of-the-sink": (
            _Call(pd.StringDtype, "python", sink),
            "StringDtype was given storage",
        ),
    }


def test_the_sink_runs_when_called(marker: Path) -> None:
    sink()()
    assert marker.exists()  # so its absence below means nothing called it


@pytest.mark.parametrize("name", list(_hostile(print)))
def test_hostile_pandas_data_is_refused_in_one_line(
    tmp_path: Path, marker: Path, name: str
) -> None:
    obj, expected = _hostile(sink())[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ModelLoadError) as info:
        loading.load(path, SINK_POLICY)
    message = str(info.value)
    assert "refused to load" in message and expected in message, message
    assert "\n" not in message and "Traceback" not in message
    assert not marker.exists()


def test_the_hostile_files_are_well_formed_but_for_their_payload(tmp_path: Path) -> None:
    """The same constructions with consistent data load: each refusal above is the check's."""
    good = {
        "frame": _frame(
            [_block(np.zeros((1, 2)), slice(0, 1)), _block(np.ones((1, 2)), np.array([1]))],
            ["a", "b"],
            2,
        ),
        "series": _series(pd.RangeIndex(2), np.zeros(2), slice(0, 2, 1), _name="s"),
        "arrow": _index(pd.Index, _arrow_strings([0, 1, 2], b"ab", 2)),
        "arrow-missing": _index(pd.Index, _arrow_strings([0, 1, 1], b"a", 2, b"\x01", 1)),
    }
    path = tmp_path / "good.pkl"
    path.write_bytes(pickle.dumps(_holding(good), protocol=2))
    loaded = loading.load(path).estimator.frames_
    _assert_same(loaded["frame"], pd.DataFrame({"a": [0.0, 0.0], "b": [1.0, 1.0]}))
    _assert_same(loaded["series"], pd.Series([0.0, 0.0], name="s"))
    _assert_same(loaded["arrow"], pd.Index(["a", "b"], dtype=pd.StringDtype("pyarrow")))
    _assert_same(loaded["arrow-missing"], pd.Index(["a", None], dtype=pd.StringDtype("pyarrow")))


def test_the_admitted_pandas_names_have_their_roles() -> None:
    from alphapulse_onnx.loading import roles

    admitted = roles.admitted_names()
    assert set(frames.RECONSTRUCTORS) <= admitted["reconstructor"]
    assert set(frames.STANDINS) | set(frames.MODEL_CLASSES) <= admitted["model"]
    assert set(frames.VALUES) <= admitted["value"]
    # The class pickles call "_unpickle_block" with is never admitted: blocks are apo's holders.
    assert "pandas.core.internals.blocks.Block" not in admitted["model"]
