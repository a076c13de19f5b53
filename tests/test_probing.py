"""Probe rows drawn from what real fitted models know: split thresholds, statistics, columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from alphapulse_onnx import column_probes, probing
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.signature import infer


@pytest.fixture(scope="module")
def iris_tree(iris: Any) -> DecisionTreeClassifier:
    X, y = iris
    return DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)


def _splits(tree: Any) -> list[tuple[int, float]]:
    inner = tree.tree_.feature >= 0
    return list(
        zip(tree.tree_.feature[inner].tolist(), tree.tree_.threshold[inner].tolist(), strict=True)
    )


def test_tree_probes_sit_below_at_and_above_every_split(iris_tree: Any) -> None:
    probe = probing.generate(iris_tree, 4, rows=64)
    assert probe.kind == "thresholds"
    for feature, threshold in _splits(iris_tree):
        column = set(probe.X[:, feature].tolist())
        as32 = np.float32(threshold)
        expected = {
            threshold,
            float(np.nextafter(threshold, -np.inf)),
            float(np.nextafter(threshold, np.inf)),
            # where float32 kernels compare: the threshold rounded, and its float32 neighbours
            float(as32),
            float(np.nextafter(as32, np.float32(-np.inf))),
            float(np.nextafter(as32, np.float32(np.inf))),
        }
        assert expected <= column, (feature, threshold)


def test_tree_probes_after_a_scaler_step_clearly_either_side(iris: Any) -> None:
    X, y = iris
    model = make_pipeline(
        StandardScaler(), DecisionTreeClassifier(max_depth=3, random_state=0)
    ).fit(X, y)
    probe = probing.generate(model, 4, rows=64)
    assert probe.kind == "thresholds"
    scaled = model[0].transform(probe.X)
    for feature, threshold in _splits(model[-1]):
        # Probes are made in the tree's (scaled) space and mapped back to raw units.
        offsets = (scaled[:, feature] - threshold) / max(abs(threshold), 1e-3)
        assert np.any(np.isclose(offsets, -1e-4, rtol=1e-3)), (feature, threshold)
        assert np.any(np.isclose(offsets, 1e-4, rtol=1e-3)), (feature, threshold)


def test_probes_are_reproducible_for_a_seed(iris_tree: Any, iris: Any) -> None:
    X, y = iris
    scaled = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    for model in (iris_tree, scaled):
        first = probing.generate(model, 4, rows=100, seed=7)
        np.testing.assert_array_equal(first.X, probing.generate(model, 4, rows=100, seed=7).X)
        assert not np.array_equal(first.X, probing.generate(model, 4, rows=100, seed=8).X)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: make_pipeline(StandardScaler(), LogisticRegression()), id="scaler"),
        pytest.param(lambda: make_pipeline(MinMaxScaler(), SVC()), id="min-max"),
        pytest.param(GaussianNB, id="naive-bayes"),
        pytest.param(KNeighborsClassifier, id="neighbours"),
        pytest.param(lambda: LogisticRegression(max_iter=1000), id="bare-linear"),
    ],
)
def test_statistics_probes_have_the_model_width_and_finite_rows(make: Any, iris: Any) -> None:
    X, y = iris
    model = make().fit(X[:, :3], y)
    probe = probing.generate(model, 3, rows=200)
    assert probe.kind == "statistics"
    assert probe.X.shape[1] == 3 and probe.rows >= 200
    assert probe.X.dtype == np.float64 and probe.X.flags.c_contiguous
    assert np.isfinite(probe.X).all()
    model.predict(probe.X)


def test_statistics_probes_follow_the_scaler(iris: Any) -> None:
    X, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X * 100 + 50, y)
    probe = probing.generate(model, 4, rows=2000)
    scaler = model[0]
    assert np.all(np.abs(np.median(probe.X, axis=0) - scaler.mean_) < scaler.scale_ / 4)


@pytest.mark.parametrize("ufunc", [np.log1p, np.log, np.sqrt])
def test_probes_stay_inside_a_function_transformer_domain(ufunc: Any, iris: Any) -> None:
    X, y = iris
    model = make_pipeline(FunctionTransformer(ufunc), StandardScaler(), LogisticRegression())
    model.fit(X, y)
    probe = probing.generate(model, 4, rows=500)
    assert probe.X.shape[1] == 4 and probe.rows > 400
    assert (probe.X >= 0).all()
    with np.errstate(all="raise"):  # a row outside the domain would warn, and raise here
        assert np.isfinite(model[0].transform(probe.X)).all()


def test_from_sample_keeps_user_rows_as_float64() -> None:
    probe = probing.from_sample(np.array([[1, 2], [3, 4]], dtype=np.int32))
    assert probe.kind == "sample" and probe.rows == 2
    assert probe.X.dtype == np.float64 and probe.X.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.fixture(scope="module")
def shop() -> tuple[Any, pd.DataFrame]:
    """Text with gaps, integer categories, a number with gaps and a skewed number, by column."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["paris", "rome", "oslo"], 120).astype(object),
            "kids": rng.integers(0, 3, 120),
            "age": rng.normal(40, 10, 120),
            "income": rng.lognormal(10, 1, 120),
            "plan": rng.choice(["free", "pro"], 120).astype(object),
        }
    )
    frame.loc[::6, "city"] = np.nan
    frame.loc[::5, "age"] = np.nan
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "city",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    ["city"],
                ),
                ("kids", OneHotEncoder(handle_unknown="ignore"), ["kids"]),
                ("age", make_pipeline(SimpleImputer(), StandardScaler()), ["age"]),
                (
                    "income",
                    make_pipeline(FunctionTransformer(np.log), StandardScaler()),
                    ["income"],
                ),
                ("plan", OneHotEncoder(), ["plan"]),
            ]
        ),
        Ridge(),
    ).fit(frame, rng.normal(size=120))
    return model, frame


def test_column_probes_draw_known_unseen_and_missing_values(shop: Any) -> None:
    model, frame = shop
    signature = infer(model)
    probe = column_probes.generate_columns(model, signature, rows=1000)
    assert probe.columns is not None and probe.rows == 1000 and probe.X.shape == (1000, 0)
    city = probe.columns["city"]
    texts = {v for v in city.tolist() if isinstance(v, str)}
    assert texts == {"paris", "rome", "oslo", column_probes.UNSEEN_TEXT}
    assert pd.isna(city).any()  # the imputer fills gaps, so gaps are probed
    kids = probe.columns["kids"]
    assert kids.dtype == np.int64 and set(kids.tolist()) == {0, 1, 2, 3}  # 3 was never seen
    assert set(probe.columns["plan"].tolist()) == {"free", "pro"}  # unknowns would be errors
    age = probe.columns["age"]
    assert np.isnan(age).any()
    assert abs(np.nanmedian(age) - np.nanmedian(frame["age"])) < 5
    # Drawn after the log, mapped back through exp: every income is positive and sensible.
    income = probe.columns["income"]
    assert (income > 0).all()
    assert abs(np.log(np.median(income)) - np.log(np.median(frame["income"]))) < 1


def test_column_probes_are_reproducible_for_a_seed(shop: Any) -> None:
    model, _ = shop
    signature = infer(model)
    first = column_probes.generate_columns(model, signature, rows=200, seed=3)
    again = column_probes.generate_columns(model, signature, rows=200, seed=3)
    assert first.columns is not None and again.columns is not None
    for name, values in first.columns.items():
        assert pd.Series(values).equals(pd.Series(again.columns[name])), name


def test_column_probes_near_tree_thresholds(iris: Any) -> None:
    X, y = iris
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(
        colour=np.where(y == 0, "red", "blue").astype(object)
    )
    model = make_pipeline(
        ColumnTransformer([("colour", OneHotEncoder(), ["colour"])], remainder="passthrough"),
        RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0),
    ).fit(frame, y)
    probe = column_probes.generate_columns(model, infer(model), rows=300)
    assert probe.kind == "thresholds"
    assert probe.columns is not None
    thresholds = np.concatenate(
        [t.tree_.threshold[t.tree_.feature == 2] for t in model[-1].estimators_]
    )  # column "a" is output 2, after the two one-hot columns
    a = probe.columns["a"]
    for threshold in thresholds:
        step = 1e-4 * max(abs(threshold), 1e-3)
        assert np.isclose(a, threshold - step).any() and np.isclose(a, threshold + step).any()


def test_from_frame_reads_user_rows_by_column_name(shop: Any) -> None:
    model, frame = shop
    signature = infer(model)
    sample = frame.head(8)[list(reversed(frame.columns))]
    probe = column_probes.from_frame(sample, signature)
    assert probe.kind == "sample" and probe.rows == 8 and probe.columns is not None
    assert list(probe.columns) == [spec.name for spec in signature.inputs]
    assert probe.columns["kids"].dtype == np.int64
    assert probe.columns["city"].dtype == object and pd.isna(probe.columns["city"][0])
    with pytest.raises(InputError, match="lacks the model's columns age, plan"):
        column_probes.from_frame(frame.drop(columns=["plan", "age"]), signature)
