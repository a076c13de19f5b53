"""``FeedBuilder``: user rows in every accepted form become the same onnxruntime feeds, and bad
rows are refused with the row and column named."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from alphapulse_onnx import conversion
from alphapulse_onnx.errors import InvalidInputError
from alphapulse_onnx.feeds import STRING_MISSING, FeedBuilder, probe_feeds
from alphapulse_onnx.signature import TensorSpec, infer

NAMES = ("a", "b", "c", "d")
MATRIX = (TensorSpec("X", "float32", (None, 4)),)
COLUMNS = (
    TensorSpec("city", "string", (None, 1)),
    TensorSpec("rooms", "int64", (None, 1)),
    TensorSpec("area", "float64", (None, 1)),
)
ROWS = [["oslo", 2, 50.5], [None, 3, 70.0]]


def test_matrix_feed_from_an_array_is_typed_and_contiguous() -> None:
    X = np.asfortranarray(np.arange(8, dtype=np.float64).reshape(2, 4) + 0.1)
    (feed,) = FeedBuilder(MATRIX, None).feeds(X).values()
    assert feed.dtype == np.float32 and feed.flags.c_contiguous
    np.testing.assert_array_equal(feed, X.astype(np.float32))
    double = (TensorSpec("X", "float64", (None, 4)),)
    assert FeedBuilder(double, None).feeds(X)["X"].tolist() == X.tolist()  # nothing rounded


def test_matrix_feed_from_a_list_or_a_frame_in_any_column_order() -> None:
    X = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    builder = FeedBuilder(MATRIX, NAMES)
    expected = builder.feeds(X)["X"]
    np.testing.assert_array_equal(builder.feeds(X.tolist())["X"], expected)
    shuffled = pd.DataFrame(X, columns=list(NAMES))[["d", "b", "a", "c"]]
    np.testing.assert_array_equal(builder.feeds(shuffled)["X"], expected)
    by_name = [dict(zip(NAMES, row, strict=True)) for row in X.tolist()]
    np.testing.assert_array_equal(builder.feeds(by_name)["X"], expected)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        pytest.param(
            np.zeros((2, 3)), r"takes 4 features per row \(a, b, c, d\), got 3", id="width"
        ),
        pytest.param(np.zeros(4), "takes 2-D rows", id="one-dimensional"),
        pytest.param([[1, 2, 3, 4], [1, 2, 3]], "row 1 has 3 values, row 0 has 4", id="ragged"),
        pytest.param(
            pd.DataFrame(np.zeros((1, 4)), columns=["a", "b", "c", "e"]),
            "missing columns: d; unexpected columns: e",
            id="columns",
        ),
    ],
)
def test_matrix_rows_of_the_wrong_shape_are_refused(rows: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        FeedBuilder(MATRIX, NAMES, model="flowers").feeds(rows)


def test_a_cell_that_is_not_a_number_is_named_by_row_and_column() -> None:
    rows = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, "wide"], "c": [0.0, 0.0], "d": [0.0, 0.0]})
    with pytest.raises(
        InvalidInputError, match="row 1, column 'b': 'wide' is not a number"
    ) as caught:
        FeedBuilder(MATRIX, NAMES).feeds(rows)
    assert (caught.value.row, caught.value.column) == (1, "b")
    with pytest.raises(InvalidInputError, match="row 0, column 2: 'x' is not a number") as caught:
        FeedBuilder(MATRIX, None).feeds([[1, 2, "x", 4]])
    assert (caught.value.row, caught.value.column) == (0, 2)


def _expect_house_feeds(feeds: dict[str, np.ndarray]) -> None:
    assert list(feeds) == ["city", "rooms", "area"]
    assert feeds["city"].dtype == object and feeds["city"].tolist() == [["oslo"], [STRING_MISSING]]
    assert feeds["rooms"].dtype == np.int64 and feeds["rooms"].tolist() == [[2], [3]]
    assert feeds["area"].dtype == np.float64 and feeds["area"].tolist() == [[50.5], [70.0]]


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(ROWS, id="list-of-rows"),
        pytest.param(np.array(ROWS, dtype=object), id="object-array"),
        pytest.param(
            pd.DataFrame(ROWS, columns=["city", "rooms", "area"])[["area", "city", "rooms"]],
            id="frame-any-order",
        ),
        pytest.param(
            {"rooms": [2, 3], "area": [50.5, 70.0], "city": ["oslo", np.nan]}, id="mapping"
        ),
        pytest.param(
            [{"area": 50.5, "rooms": 2, "city": "oslo"}, {"city": pd.NA, "rooms": 3, "area": 70}],
            id="records",
        ),
    ],
)
def test_per_column_feeds_from_every_form_of_rows(rows: Any) -> None:
    _expect_house_feeds(FeedBuilder(COLUMNS, ("city", "rooms", "area")).feeds(rows))


@pytest.mark.parametrize(
    ("rows", "message", "row", "column"),
    [
        pytest.param(
            [["oslo", 2.5, 1.0]],
            r"row 0, column 'rooms': 2\.5 is not a whole number",
            0,
            "rooms",
            id="whole-number",
        ),
        pytest.param(
            [["oslo", 2, 1.0], ["bergen", 1, "big"]],
            "row 1, column 'area': 'big' is not a number",
            1,
            "area",
            id="number",
        ),
    ],
)
def test_per_column_cells_of_the_wrong_type_are_named(
    rows: Any, message: str, row: int, column: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        FeedBuilder(COLUMNS, ("city", "rooms", "area")).feeds(rows)
    assert (caught.value.row, caught.value.column) == (row, column)


def test_per_column_rows_with_missing_columns_or_values_are_refused() -> None:
    builder = FeedBuilder(COLUMNS, ("city", "rooms", "area"), model="houses")
    with pytest.raises(InvalidInputError, match="model 'houses': missing columns: area"):
        builder.feeds(pd.DataFrame({"city": ["oslo"], "rooms": [2]}))
    with pytest.raises(InvalidInputError, match="takes 3 features per row"):
        builder.feeds([["oslo", 2]])


def test_probe_feeds_leave_out_columns_the_artifact_does_not_take() -> None:
    cells = {
        "area": np.array([50.5, 70.0]),
        "dropped": np.array(["x", "y"], dtype=object),
        "city": np.array(["oslo", np.nan], dtype=object),
        "rooms": np.array([2, 3]),
    }
    _expect_house_feeds(probe_feeds(COLUMNS, cells))
    matrix = probe_feeds(MATRIX, np.ones((3, 4)))
    assert list(matrix) == ["X"] and matrix["X"].dtype == np.float32


def test_feeds_from_a_reordered_frame_give_scikit_learn_answers() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["oslo", "rome", "lima"], 80).astype(object),
            "rooms": rng.integers(1, 5, 80),
            "area": rng.normal(60.0, 15.0, 80),
        }
    )
    frame.loc[::5, "city"] = np.nan
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "city",
                    make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()),
                    ["city"],
                ),
                ("rooms", OneHotEncoder(handle_unknown="ignore"), ["rooms"]),
            ],
            remainder="passthrough",
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, frame["area"] > 60)
    signature = infer(model)
    artifact = conversion.convert(model, signature)
    session = ort.InferenceSession(artifact.onnx_bytes, providers=["CPUExecutionProvider"])
    builder = FeedBuilder(artifact.inputs, signature.feature_names)
    rows = frame.head(20)
    _, proba = session.run(None, builder.feeds(rows[["area", "rooms", "city"]]))
    np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-5)


def test_per_column_inputs_are_fed_under_onnx_names_from_the_users_columns() -> None:
    renamed = (
        TensorSpec("city_", "string", (None, 1), column="city (EU)"),
        TensorSpec("_2nd", "int64", (None, 1), column="2nd"),
        TensorSpec("area_m2", "float64", (None, 1), column="area.m2"),
    )
    builder = FeedBuilder(renamed, None, model="houses")
    assert builder.names == ("city (EU)", "2nd", "area.m2")
    frame = pd.DataFrame({"area.m2": [50.5], "2nd": [2], "city (EU)": ["oslo"]})
    feeds = builder.feeds(frame)
    assert list(feeds) == ["city_", "_2nd", "area_m2"]
    assert (feeds["city_"].tolist(), feeds["_2nd"].tolist()) == ([["oslo"]], [[2]])
    assert list(builder.frame(frame).columns) == ["city (EU)", "2nd", "area.m2"]
    by_column = {"city (EU)": np.array(["oslo"], dtype=object), "2nd": np.array([2]),
                 "area.m2": np.array([50.5])}  # fmt: skip
    assert probe_feeds(renamed, by_column)["area_m2"].tolist() == [[50.5]]
    with pytest.raises(InvalidInputError, match=r"missing columns: area\.m2"):
        builder.feeds(frame.drop(columns=["area.m2"]))
