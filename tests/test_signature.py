"""``signature.infer``: what a real fitted model takes and gives, read from the model alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import DBSCAN, KMeans
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, OneClassSVM

from alphapulse_onnx.errors import UnsupportedModelError
from alphapulse_onnx.signature import DType, Scores, TensorSpec, infer


def test_array_fit_classifier_takes_one_float_matrix(iris: Any) -> None:
    X, y = iris
    signature = infer(LogisticRegression(max_iter=500).fit(X, y))
    assert signature.inputs == (TensorSpec("X", "float32", (None, 4)),)
    assert (signature.n_features, signature.feature_names) == (4, None)
    assert not signature.per_column
    assert signature.task == "classification"
    assert signature.classes == (0, 1, 2)
    assert all(type(c) is int for c in signature.classes)  # JSON-ready, not numpy scalars
    assert signature.has_proba


def test_double_precision_changes_the_float_input_type(iris: Any) -> None:
    X, y = iris
    signature = infer(LogisticRegression(max_iter=500).fit(X, y), dtype="float64")
    assert signature.inputs == (TensorSpec("X", "float64", (None, 4)),)


def test_dataframe_fit_model_keeps_its_feature_names(iris: Any) -> None:
    X, y = iris
    frame = pd.DataFrame(X, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    signature = infer(make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y))
    assert signature.feature_names == ("sepal_l", "sepal_w", "petal_l", "petal_w")
    # all-float columns still travel as one matrix
    assert signature.inputs == (TensorSpec("X", "float32", (None, 4)),)
    assert not signature.per_column


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dataframe_pipeline_with_text_takes_one_typed_input_per_column(dtype: DType) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "blue"], 60).astype(object),
            "doors": rng.choice([2, 4], 60),
            "length": rng.normal(4.0, 0.5, 60),
        }
    )
    frame.loc[::4, "colour"] = np.nan
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "colour",
                    make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()),
                    ["colour"],
                ),
                ("doors", OneHotEncoder(), ["doors"]),
            ],
            remainder="passthrough",
        ),
        LogisticRegression(),
    ).fit(frame, frame["length"] > 4.0)
    signature = infer(model, dtype=dtype)
    assert signature.per_column
    assert signature.feature_names == ("colour", "doors", "length")
    assert signature.inputs == (
        TensorSpec("colour", "string", (None, 1)),
        TensorSpec("doors", "int64", (None, 1)),
        TensorSpec("length", dtype, (None, 1)),
    )
    assert signature.classes == (False, True)


def test_regressor_has_no_classes_or_probabilities(diabetes: Any) -> None:
    X, y = diabetes
    signature = infer(RandomForestRegressor(n_estimators=2, random_state=0).fit(X, y))
    assert signature.task == "regression"
    assert signature.classes is None and not signature.has_proba
    assert signature.n_features == 10


def test_text_labels_and_a_classifier_without_probabilities(iris: Any) -> None:
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    signature = infer(SVC().fit(X, names))  # probabilities only when asked for
    assert signature.task == "classification"
    assert signature.classes == ("setosa", "versicolor", "virginica")
    assert not signature.has_proba


def test_outlier_detectors_label_minus_one_and_one_from_their_decision_function(
    iris: Any,
) -> None:
    X, _ = iris
    forest = infer(IsolationForest(n_estimators=5, random_state=0).fit(X))
    assert (forest.task, forest.classes, forest.has_proba) == ("outlier_detection", (-1, 1), False)
    assert forest.scores == Scores("decision_function", bounded=True)
    svm = infer(make_pipeline(StandardScaler(), OneClassSVM()).fit(X))
    assert svm.task == "outlier_detection"
    assert svm.scores == Scores("decision_function", bounded=False)  # grows with the data


def test_clusterers_label_cluster_ids_from_distances_or_probabilities(iris: Any) -> None:
    X, _ = iris
    kmeans = infer(make_pipeline(StandardScaler(), KMeans(3, n_init=1, random_state=0)).fit(X))
    assert (kmeans.task, kmeans.classes, kmeans.has_proba) == ("clustering", (0, 1, 2), False)
    assert kmeans.scores == Scores("transform", bounded=False)
    mixture = infer(GaussianMixture(4, random_state=0).fit(X))
    assert (mixture.task, mixture.classes, mixture.has_proba) == ("clustering", (0, 1, 2, 3), True)
    assert mixture.scores is None  # its second output is predict_proba, judged as a classifier's


def test_estimators_that_only_label_their_own_rows_are_refused_with_what_to_do(
    iris: Any,
) -> None:
    X, _ = iris
    with pytest.raises(UnsupportedModelError, match="refit it with novelty=True"):
        infer(LocalOutlierFactor().fit(X))
    with pytest.raises(UnsupportedModelError, match="DBSCAN has no predict for new rows"):
        infer(DBSCAN().fit(X))
    with pytest.raises(
        UnsupportedModelError,
        match="Pipeline is not a classifier, regressor, outlier detector or clusterer",
    ):
        infer(make_pipeline(StandardScaler(), PCA(2)).fit(X))


def test_column_names_survive_the_manifest_round_trip() -> None:
    spec = TensorSpec("price____", "float32", (None, 1), column="price ($)")
    assert TensorSpec.from_json(spec.to_json()) == spec
    assert spec.column_name == "price ($)"
    matrix = TensorSpec("X", "float32", (None, 4))
    assert matrix.to_json() == {"name": "X", "dtype": "float32", "shape": [None, 4]}
    assert TensorSpec.from_json(matrix.to_json()).column is None


def test_an_object_without_an_input_width_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="LogisticRegression does not record"):
        infer(LogisticRegression())  # never fitted: no n_features_in_
    with pytest.raises(UnsupportedModelError, match="dict does not record n_features_in_"):
        infer({"weights": [1.0, 2.0]})
