"""category_encoders encoders and imbalanced-learn pipelines against the libraries themselves."""

from __future__ import annotations

import sys
from typing import Any

import category_encoders as ce
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline as ImbPipeline
from imblearn.under_sampling import RandomUnderSampler
from skl2onnx import convert_sklearn, to_onnx
from skl2onnx._parse import do_not_merge_columns
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from alphapulse_onnx import conversion
from alphapulse_onnx.converters import encoders, imblearn_pipeline, register_all
from alphapulse_onnx.errors import UnsupportedModelError
from alphapulse_onnx.signature import DType, InputSignature, TensorSpec

# category_encoders' own use of deprecated pandas options, in the transforms the tests compare with.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:category_encoders")

OPSETS = {"": 17, "ai.onnx.ml": 3}
ENCODED = ["color", "shop", "grade", "zone"]


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_all()


def _training(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Text with both kinds of gap, text without gaps, float and integer categories, a number."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue", "violet"], rows, p=[0.4, 0.3, 0.2, 0.1])
    color = color.astype(object)
    color[::7] = None
    color[3::11] = np.nan
    grade = rng.choice([1.0, 2.5, 4.0], rows)
    grade[::9] = np.nan
    frame = pd.DataFrame(
        {
            "color": pd.Series(color, dtype=object),
            "shop": pd.Series(rng.choice(["north", "south", "east"], rows), dtype=object),
            "grade": grade,
            "zone": rng.choice(np.array([10, 20, 30, 40], dtype=np.int64), rows),
            "price": rng.normal(100.0, 15.0, rows),
        }
    )
    signal = (frame["color"] == "red").to_numpy() | (frame["zone"] > 25).to_numpy()
    target = (signal ^ (rng.random(rows) < 0.15)).astype(int)
    return frame, target


# Every known category, unseen ones (orange, west, 3.0, 50), both kinds of gap in a column that
# had gaps when fitted, and a gap in one that had none (shop).
PREDICT = pd.DataFrame(
    {
        "color": pd.Series(
            ["red", "green", "blue", "violet", "orange", None, np.nan, "red"], dtype=object
        ),
        "shop": pd.Series(
            ["north", "south", "east", "west", "north", "south", None, "east"], dtype=object
        ),
        "grade": [1.0, 2.5, 4.0, 3.0, np.nan, 1.0, 2.5, np.nan],
        "zone": np.array([10, 20, 30, 40, 50, 10, 20, 30], dtype=np.int64),
        "price": [90.0, 101.5, 120.25, 80.0, 99.0, 100.0, 111.0, 95.5],
    }
)


def _initial_types(frame: pd.DataFrame, float_type: Any = DoubleTensorType) -> list[Any]:
    types: list[Any] = []
    for name, column in frame.items():
        if not pd.api.types.is_numeric_dtype(column):
            types.append((name, StringTensorType([None, 1])))
        elif pd.api.types.is_integer_dtype(column):
            types.append((name, Int64TensorType([None, 1])))
        else:
            types.append((name, float_type([None, 1])))
    return types


def _feeds(frame: pd.DataFrame, types: list[Any]) -> dict[str, np.ndarray]:
    """A missing text cell is fed as "" (apo's convention); numbers keep NaN."""
    feeds: dict[str, np.ndarray] = {}
    for name, tensor_type in types:
        column = frame[name]
        if isinstance(tensor_type, StringTensorType):
            text = [("" if pd.isna(v) else str(v)) for v in column]
            feeds[name] = np.array(text, dtype=object).reshape(-1, 1)
        elif isinstance(tensor_type, Int64TensorType):
            feeds[name] = column.to_numpy(np.int64).reshape(-1, 1)
        else:
            dtype = np.float64 if isinstance(tensor_type, DoubleTensorType) else np.float32
            feeds[name] = column.to_numpy(dtype).reshape(-1, 1)
    return feeds


def _run(model: Any, frame: pd.DataFrame, float_type: Any = DoubleTensorType) -> list[Any]:
    types = _initial_types(frame, float_type)
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    onx = convert_sklearn(model, initial_types=types, target_opset=OPSETS, options=options)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, _feeds(frame, types)))


ENCODERS = [
    pytest.param(ce.OneHotEncoder(cols=ENCODED), id="onehot"),
    pytest.param(
        ce.OneHotEncoder(
            cols=ENCODED, handle_unknown="indicator", handle_missing="indicator", use_cat_names=True
        ),
        id="onehot-indicator",
    ),
    pytest.param(
        ce.OneHotEncoder(cols=ENCODED, handle_unknown="return_nan", handle_missing="return_nan"),
        id="onehot-return_nan",
    ),
    pytest.param(ce.OneHotEncoder(cols=ENCODED, handle_missing="ignore"), id="onehot-ignore"),
    pytest.param(ce.OneHotEncoder(cols=ENCODED, min_group_size=0.15), id="onehot-min_group"),
    pytest.param(ce.OrdinalEncoder(cols=ENCODED), id="ordinal"),
    pytest.param(
        ce.OrdinalEncoder(cols=ENCODED, handle_unknown="return_nan", handle_missing="return_nan"),
        id="ordinal-return_nan",
    ),
    pytest.param(
        ce.OrdinalEncoder(cols=ENCODED, handle_unknown=-99, handle_missing=-77, index_start=0),
        id="ordinal-numbers",
    ),
    pytest.param(ce.OrdinalEncoder(), id="ordinal-default-cols"),
    pytest.param(ce.TargetEncoder(cols=ENCODED), id="target"),
    pytest.param(
        ce.TargetEncoder(
            cols=ENCODED, handle_unknown="return_nan", handle_missing="return_nan", smoothing=2.0
        ),
        id="target-return_nan",
    ),
    pytest.param(
        ce.TargetEncoder(cols=ENCODED, handle_unknown=0.5, min_samples_leaf=5), id="target-number"
    ),
    pytest.param(ce.BinaryEncoder(cols=ENCODED), id="binary"),
    pytest.param(ce.BinaryEncoder(cols=ENCODED, handle_unknown="indicator"), id="binary-indicator"),
    pytest.param(
        ce.BinaryEncoder(cols=ENCODED, handle_unknown="return_nan", handle_missing="return_nan"),
        id="binary-return_nan",
    ),
    pytest.param(ce.BaseNEncoder(cols=ENCODED, handle_missing="indicator"), id="basen-indicator"),
    pytest.param(ce.BaseNEncoder(cols=ENCODED, base=3), id="base3"),
    pytest.param(ce.BaseNEncoder(cols=ENCODED, base=1), id="base1"),
]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoder_matches_transform_in_float64(encoder: Any) -> None:
    frame, target = _training()
    encoder.fit(frame, target)
    (got,) = _run(encoder, PREDICT)
    expected = encoder.transform(PREDICT).to_numpy(np.float64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("encoder", ENCODERS[:1] + ENCODERS[5:6] + ENCODERS[9:10] + ENCODERS[12:13])
def test_encoder_matches_transform_in_float32(encoder: Any) -> None:
    frame, target = _training()
    encoder.fit(frame, target)
    (got,) = _run(encoder, PREDICT, FloatTensorType)
    assert got.dtype == np.float32
    expected = encoder.transform(PREDICT).to_numpy(np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_drop_invariant_drops_the_same_columns() -> None:
    frame, target = _training()
    frame["shop"] = "north"  # one category: its one-hot column never varies
    encoder = ce.OneHotEncoder(cols=ENCODED, drop_invariant=True).fit(frame, target)
    assert encoder.invariant_cols
    (got,) = _run(encoder, PREDICT)
    expected = encoder.transform(PREDICT)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected.to_numpy(np.float64), atol=1e-12, equal_nan=True)


def test_pandas_categorical_columns_and_an_ordered_mapping() -> None:
    frame, target = _training()
    frame["color"] = pd.Categorical(frame["color"], categories=["violet", "blue", "green", "red"])
    mapping = [{"col": "shop", "mapping": {"east": 3, "north": 1, "south": 2}}]
    supplied = ce.OrdinalEncoder(
        cols=["color", "shop"],
        mapping=[*mapping, {"col": "color", "mapping": {"red": 5, "blue": 6}}],
    )
    for encoder in (ce.OrdinalEncoder(cols=["color", "shop"]), supplied):
        encoder.fit(frame[["color", "shop", "price"]], target)
        rows = PREDICT[["color", "shop", "price"]]
        (got,) = _run(encoder, rows)
        expected = encoder.transform(rows)
        np.testing.assert_allclose(got, expected.to_numpy(np.float64), atol=1e-12, equal_nan=True)


def test_many_numeric_categories_in_int64_float32_and_float64() -> None:
    rng = np.random.default_rng(8)
    codes = rng.integers(10_000, 99_999, 3000)  # zip-code-like: thousands of categories
    frame = pd.DataFrame({"zip": codes, "zip_float": codes / 7.0, "price": rng.normal(size=3000)})
    target = (codes % 3 == 0).astype(int)
    encoder = ce.TargetEncoder(cols=["zip", "zip_float"]).fit(frame, target)
    rows = frame.sample(400, random_state=0).reset_index(drop=True)
    rows.loc[:50, "zip"] = 123_456  # unseen
    rows.loc[60:90, "zip_float"] = rows.loc[60:90, "zip_float"] + 1e-9  # unseen, close to a key
    expected = encoder.transform(rows).to_numpy(np.float64)
    (got,) = _run(encoder, rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # A float32 artifact sees float32 inputs: a value within float32 precision of a category
    # (about 1e-3 at 14 000) reads as that category. Values further away stay unseen.
    rows.loc[60:90, "zip_float"] = rows.loc[60:90, "zip_float"] + 0.25
    (got32,) = _run(encoder, rows, FloatTensorType)
    expected32 = encoder.transform(rows).to_numpy(np.float64)
    np.testing.assert_allclose(got32, expected32, rtol=1e-6, atol=1e-6)


def test_float64_tells_apart_categories_that_float32_cannot() -> None:
    frame, target = _training()
    frame["grade"] = frame["grade"].where(frame.index % 5 > 0, 2.5 + 1e-9)
    encoder = ce.OrdinalEncoder(cols=ENCODED).fit(frame, target)
    rows = pd.concat([PREDICT, frame.head(10)], ignore_index=True)
    (got,) = _run(encoder, rows)
    np.testing.assert_allclose(got, encoder.transform(rows).to_numpy(np.float64), atol=1e-12)


def test_one_numeric_matrix_input_is_read_column_by_column() -> None:
    frame, target = _training()
    numeric = frame[["grade", "zone", "price"]].astype(np.float64)
    encoder = ce.OneHotEncoder(cols=["grade", "zone"]).fit(numeric, target)
    onx = to_onnx(encoder, initial_types=[("X", DoubleTensorType([None, 3]))], target_opset=OPSETS)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = PREDICT[["grade", "zone", "price"]].astype(np.float64)
    (got,) = session.run(None, {"X": rows.to_numpy()})
    np.testing.assert_allclose(got, encoder.transform(rows).to_numpy(np.float64), atol=1e-12)


@pytest.mark.parametrize(
    ("encoder", "bad", "refused"),
    [
        pytest.param(
            ce.OneHotEncoder(cols=["color", "shop"], handle_unknown="error"),
            {"color": "orange"},
            "unknown_category_in_color",
            id="onehot-unknown",
        ),
        pytest.param(
            ce.OrdinalEncoder(cols=["color", "shop"], handle_unknown="error"),
            {"shop": "west"},
            "unknown_category_in_shop",
            id="ordinal-unknown",
        ),
        pytest.param(
            ce.TargetEncoder(cols=["color", "shop", "zone"], handle_missing="error"),
            {"color": None},
            "missing_value_in_color",
            id="target-missing",
        ),
        pytest.param(
            ce.BinaryEncoder(cols=["color", "shop", "zone"], handle_unknown="error"),
            {"zone": 99},
            "unknown_category_in_zone",
            id="binary-unknown-integer",
        ),
    ],
)
def test_error_settings_fail_the_run_where_transform_raises(
    encoder: Any, bad: dict[str, Any], refused: str
) -> None:
    frame, target = _training()
    frame["color"] = frame["color"].fillna("red")  # handle_missing="error" refuses gaps in fit too
    encoder.fit(frame, target)
    good = PREDICT.iloc[[0, 1, 2]].reset_index(drop=True)
    types = _initial_types(good)
    onx = convert_sklearn(encoder, initial_types=types, target_opset=OPSETS)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, _feeds(good, types))
    np.testing.assert_allclose(got, encoder.transform(good).to_numpy(np.float64), atol=1e-12)
    wrong = good.copy()
    for column, value in bad.items():
        wrong[column] = wrong[column].astype(object)
        wrong.loc[1, column] = value
    with pytest.raises(ValueError, match=r"(?i)categor|null|new values"):
        encoder.transform(wrong)
    with pytest.raises(Exception, match=refused):
        session.run(None, _feeds(wrong, types))


def test_sklearn_pipeline_with_scaler_and_logistic_regression() -> None:
    frame, target = _training()
    model = Pipeline(
        [
            ("encode", ce.OneHotEncoder(cols=ENCODED, handle_unknown="indicator")),
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, target)
    label, proba = _run(model, PREDICT)
    assert label.tolist() == model.predict(PREDICT).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(PREDICT), atol=1e-6)


def test_column_transformer_with_encoders_and_a_forest() -> None:
    frame, target = _training()
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("target", ce.TargetEncoder(), ["color", "shop"]),
                        ("binary", ce.BinaryEncoder(cols=["grade", "zone"]), ["grade", "zone"]),
                        ("scale", StandardScaler(), ["price"]),
                    ]
                ),
            ),
            ("forest", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)),
        ]
    ).fit(frame, target)
    label, proba = _run(model, PREDICT)
    assert label.tolist() == model.predict(PREDICT).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(PREDICT), atol=1e-6)


def test_column_transformer_pipeline_through_apo_conversion() -> None:
    frame, target = _training()
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("onehot", ce.OneHotEncoder(handle_missing="indicator"), ["color", "zone"]),
                        ("scale", StandardScaler(), ["price"]),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, target)
    # The signature apo's inference should give it: text, integer and float columns by name.
    dtypes: dict[str, DType] = {"color": "string", "shop": "string", "zone": "int64"}
    signature = InputSignature(
        inputs=tuple(TensorSpec(n, dtypes.get(n, "float32"), (None, 1)) for n in frame.columns),
        n_features=5,
        feature_names=tuple(frame.columns),
        task="classification",
        classes=(0, 1),
        has_proba=True,
        per_column=True,
    )
    artifact = conversion.convert(model, signature)
    session = ort.InferenceSession(artifact.onnx_bytes, providers=["CPUExecutionProvider"])
    names = {spec.name for spec in artifact.inputs}
    types = [(n, t) for n, t in _initial_types(PREDICT, FloatTensorType) if n in names]
    label, proba = session.run(None, _feeds(PREDICT, types))
    assert label.tolist() == model.predict(PREDICT).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(PREDICT), atol=1e-6)


@pytest.mark.parametrize(
    "sampler",
    [
        pytest.param(SMOTE(random_state=0), id="smote"),
        pytest.param(RandomUnderSampler(random_state=0), id="undersampler"),
    ],
)
def test_imblearn_pipeline_skips_its_samplers(sampler: Any) -> None:
    frame, target = _training()
    target[: len(target) * 3 // 4] = 0  # imbalanced, so resampling changes what is learnt
    model = ImbPipeline(
        [
            ("encode", ce.OrdinalEncoder(cols=ENCODED)),
            ("nothing", "passthrough"),
            ("scale", StandardScaler()),
            ("sample", sampler),
            ("classify", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, target)
    assert [name for name, _ in imblearn_pipeline.predict_steps(model)] == [
        "encode",
        "scale",
        "classify",
    ]
    label, proba = _run(model, PREDICT)
    assert label.tolist() == model.predict(PREDICT).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(PREDICT), atol=1e-6)


def test_imblearn_pipeline_with_an_undersampler_first_and_a_forest() -> None:
    frame, target = _training()
    numeric = frame[["grade", "zone", "price"]].astype(np.float64).fillna(0.0)
    model = ImbPipeline(
        [
            ("scale", StandardScaler()),
            ("sample", RandomUnderSampler(random_state=0)),
            ("forest", RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)),
        ]
    ).fit(numeric.to_numpy(), target)
    onx = to_onnx(
        model,
        initial_types=[("X", FloatTensorType([None, 3]))],
        target_opset=OPSETS,
        options={id(model): {"zipmap": False}},
    )
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = PREDICT[["grade", "zone", "price"]].astype(np.float64).fillna(0.0).to_numpy()
    label, proba = session.run(None, {"X": rows.astype(np.float32)})
    assert label.tolist() == model.predict(rows).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-6)


def _handle_unknown(value: Any, mapping: Any) -> float:
    return -5.0


@pytest.mark.parametrize(
    ("make", "frame_change", "message"),
    [
        pytest.param(
            lambda: ce.OrdinalEncoder(cols=ENCODED, handle_unknown=_handle_unknown),
            None,
            "calls a handle_unknown/handle_missing function at transform time",
            id="callable",
        ),
        pytest.param(
            lambda: ce.TargetEncoder(cols=["color"], composite_cols=[("color", "shop")]),
            None,
            "composite_cols",
            id="composite",
        ),
        pytest.param(
            lambda: ce.OneHotEncoder(cols=["color"]),
            None,
            "column 'shop' is text outside cols: it would pass on unencoded",
            id="text-passthrough",
        ),
        pytest.param(
            lambda: ce.OneHotEncoder(cols=ENCODED),
            lambda f: f.assign(shop=f["shop"].where(f.index % 5 > 0, "")),
            "column 'shop' has the empty text category",
            id="empty-text-category",
        ),
        pytest.param(
            lambda: ce.OrdinalEncoder(cols=ENCODED),
            lambda f: f.assign(grade=f["grade"].where(f.index % 5 > 0, 2.5 + 1e-9)),
            "column 'grade' has categories that are equal as float32",
            id="float32-collision",
        ),
    ],
)
def test_unsupported_settings_are_refused_in_one_line(
    make: Any, frame_change: Any, message: str
) -> None:
    frame, target = _training()
    frame = frame_change(frame) if frame_change else frame
    encoder = make().fit(frame, target)
    with pytest.raises(UnsupportedModelError) as info:
        _run(encoder, frame.head(5), FloatTensorType)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_text_column_fed_as_numbers_is_refused() -> None:
    frame, target = _training()
    encoder = ce.OneHotEncoder(cols=["color"]).fit(frame[["color", "price"]], target)
    types = [("color", DoubleTensorType([None, 1])), ("price", DoubleTensorType([None, 1]))]
    with pytest.raises(UnsupportedModelError, match="'color' is given as numbers but was fitted"):
        convert_sklearn(encoder, initial_types=types, target_opset=OPSETS)


def test_column_facts_say_what_each_input_takes() -> None:
    frame, target = _training()
    encoder = ce.OneHotEncoder(cols=ENCODED, handle_unknown="error").fit(frame, target)
    facts = [encoders.column_facts(encoder, i) for i in range(len(frame.columns))]
    assert [f.dtype for f in facts] == ["string", "string", "float32", "int64", "float32"]
    assert set(facts[0].values) == {"red", "green", "blue", "violet"}
    assert set(facts[3].values) == {10, 20, 30, 40}
    assert [(f.unseen, f.missing) for f in facts[:4]] == [(False, True)] * 4
    assert facts[4].values == ()


def test_missing_extra_hint_names_the_extra_only_when_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert encoders.missing_extra_hint("category_encoders.one_hot") is None
    assert encoders.missing_extra_hint("sklearn.pipeline") is None
    monkeypatch.setitem(sys.modules, "imblearn", None)  # what an absent package looks like
    assert (
        encoders.missing_extra_hint("imblearn.pipeline")
        == 'pip install "alphapulse-onnx[encoders]"'
    )
    assert encoders.missing_extra_hint("category_encoders.one_hot") is None


def test_register_does_nothing_without_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from skl2onnx import _parse
    from skl2onnx._supported_operators import sklearn_operator_name_map

    before = (dict(sklearn_operator_name_map), dict(_parse.sklearn_parsers_map))
    merged = _parse.do_not_merge_columns
    monkeypatch.setattr(_parse, "do_not_merge_columns", merged[:1])
    monkeypatch.setitem(sys.modules, "category_encoders", None)
    monkeypatch.setitem(sys.modules, "imblearn", None)
    monkeypatch.setitem(sys.modules, "imblearn.pipeline", None)
    encoders.register()
    imblearn_pipeline.register()
    assert (dict(sklearn_operator_name_map), dict(_parse.sklearn_parsers_map)) == before
    assert _parse.do_not_merge_columns == merged[:1]


def test_registered_encoders_read_column_transformer_columns_apart() -> None:
    from skl2onnx import _parse

    assert ce.OneHotEncoder in _parse.do_not_merge_columns
    assert set(do_not_merge_columns) <= set(_parse.do_not_merge_columns)
