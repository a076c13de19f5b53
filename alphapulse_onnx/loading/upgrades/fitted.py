"""Fitted state that later scikit-learn releases keep differently, translated class by class.

Each translation reads what the old release saved and writes what today's ``predict`` reads,
with the running release's own functions where there is one (a loss object comes from the
estimator's ``_get_loss``, path lengths from the trees' node arrays). When the old answers
cannot be reproduced, the translation refuses with the reason (``Untranslatable``); it never
leaves a model that answers differently from how it did when it was saved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import sklearn
from sklearn.base import ClassifierMixin

from alphapulse_onnx.loading import standins

Version = tuple[int, ...]
Translation = Callable[[Any, Version, list[str]], None]


class Untranslatable(Exception):
    """Saved state whose old behaviour the running release cannot reproduce."""


def version_tuple(version: str | None) -> Version:
    """``"1.3.2"`` -> ``(1, 3, 2)``; unknown or pre-0.18 files (no version recorded) -> 0.17."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if match is None:
        return (0, 17)
    return tuple(int(part) for part in match.groups() if part is not None)


RUNNING: Version = version_tuple(sklearn.__version__)


# --- trees ---------------------------------------------------------------------------------------


def tree_fractions(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Classifier trees before 1.4 stored weighted class counts per node; 1.4 stores fractions
    and ``predict_proba`` no longer divides by the total (so old trees answer counts)."""
    if saved >= (1, 4) or RUNNING < (1, 4):
        return
    tree = estimator.__dict__.get("tree_")
    if tree is None or not isinstance(estimator, ClassifierMixin):
        return
    state = tree.__getstate__()
    values = state["values"]
    if values.ndim != 3:
        return
    totals = values.sum(axis=2, keepdims=True)
    fractions = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    tree.__setstate__({**state, "values": fractions})
    notes.append("tree class counts as fractions (the layout since 1.4)")


def isolation_forest(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Path lengths per tree, precomputed by ``fit`` since 1.5, from the trees themselves."""
    if estimator.__dict__.get("behaviour") == "old":
        raise Untranslatable(
            "IsolationForest(behaviour='old') labels rows with a threshold that scikit-learn "
            "removed in 0.22; re-fit it with a current release"
        )
    if "_decision_path_lengths" in estimator.__dict__ or RUNNING < (1, 5):
        return
    from sklearn.ensemble._iforest import _average_path_length

    pairs = [(_average_path_length(tree.tree_.n_node_samples), tree.tree_.compute_node_depths())
             for tree in estimator.estimators_]  # fmt: skip
    estimator._average_path_length_per_tree = tuple(p[0] for p in pairs)
    estimator._decision_path_lengths = tuple(p[1] for p in pairs)
    notes.append("IsolationForest path lengths computed from its trees")


# --- renamed fitted attributes --------------------------------------------------------------

# (class name, old attribute, today's attribute)
RENAMED_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("GaussianNB", "sigma_", "var_"),  # 1.0
    ("BaseLibSVM", "probA_", "_probA"),  # 0.23
    ("BaseLibSVM", "probB_", "_probB"),
    ("BaseLibSVM", "n_support_", "_n_support"),  # 0.21
    ("BaseEstimator", "n_features_", "n_features_in_"),  # 1.0
    ("BaseEnsemble", "base_estimator", "estimator"),  # 1.2 (forests hold their tree template)
    ("BaseEnsemble", "base_estimator_", "estimator_"),
    ("BaseHistGradientBoosting", "bin_mapper_", "_bin_mapper"),  # 0.23
)
_STILL_READ = frozenset({"n_features_", "n_support_"})  # old names today's code also reads


# (class name, old attribute) pairs the table above must not rename: RFE's ``n_features_`` is
# the number of features it selected, not its input width.
_NOT_RENAMED = frozenset({("RFE", "n_features_")})


def renamed_attributes(estimator: Any, saved: Version, notes: list[str]) -> None:
    owners = {klass.__name__ for klass in type(estimator).__mro__}
    attributes = estimator.__dict__
    for owner, old, new in RENAMED_ATTRIBUTES:
        if any((name, old) in _NOT_RENAMED for name in owners):
            continue
        if owner in owners and old in attributes and new not in attributes:
            attributes[new] = attributes[old]
            if old not in _STILL_READ:
                del attributes[old]
            notes.append(f"{type(estimator).__name__}.{old} is now {new}")


def derived_attributes(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Fitted attributes added later that are functions of what the model already holds."""
    attributes = estimator.__dict__
    name = type(estimator).__name__
    if "_fit_X" in attributes and "n_samples_fit_" not in attributes:  # neighbors, 1.0
        attributes["n_samples_fit_"] = attributes["_fit_X"].shape[0]
        notes.append(f"{name}.n_samples_fit_ set")
    if "statistics_" in attributes and "_fit_dtype" not in attributes and name == "SimpleImputer":
        attributes["_fit_dtype"] = np.asarray(attributes["statistics_"]).dtype  # 1.1
        notes.append("SimpleImputer._fit_dtype set")
    if name == "_BinMapper" and "is_categorical_" not in attributes:  # 0.24
        attributes["is_categorical_"] = np.zeros(len(attributes["bin_thresholds_"]), np.uint8)
        notes.append("HistGradientBoosting bins: no categorical features")


# --- input width (n_features_in_, 0.24) and column names (feature_names_in_, 1.0) ---------------


def _last(value: Any) -> int | None:
    """An array's column count (its last axis), or a shape tuple's last entry."""
    if value is None:
        return None
    if isinstance(value, tuple) and value and all(isinstance(v, (int, np.integer)) for v in value):
        return int(value[-1])
    shape: tuple[int, ...] = tuple(np.shape(value)) if hasattr(value, "shape") else ()
    return int(shape[-1]) if shape else None


def _length(value: Any) -> int | None:
    return None if value is None or isinstance(value, str) else len(value)


def _first_rows(value: Any) -> int | None:
    """A network's first weight matrix: (inputs, units)."""
    return int(np.shape(value[0])[0]) if isinstance(value, (list, tuple)) and value else None


def _tree_features(value: Any) -> int | None:
    width = getattr(value, "n_features", None)
    return int(width) if isinstance(width, (int, np.integer)) else None


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) else None


# How wide the input of a fitted estimator is, read from state its release saved:
# (class name in the MRO, attribute, reading). The first rule that answers wins; where none
# does, ``n_features_in_`` stays absent and the signature says the input is unknown.
INPUT_WIDTH: tuple[tuple[str, str, Callable[[Any], int | None]], ...] = (
    ("RFE", "support_", _length),  # (its n_features_ counts the features kept)
    ("BaseEstimator", "n_features_", _number),  # trees, forests, boosting, bagging before 1.0
    ("ColumnTransformer", "_n_features", _number),
    ("PolynomialFeatures", "n_input_features_", _number),
    ("LinearModel", "coef_", _last),  # (n_targets, n_features) or (n_features,)
    ("LinearClassifierMixin", "coef_", _last),  # (n_classes, n_features)
    ("BaseSGD", "coef_", _last),
    ("_GeneralizedLinearRegressor", "coef_", _last),
    ("BaseLibSVM", "shape_fit_", _last),  # (n_samples, n_features); precomputed: n_samples
    ("NeighborsBase", "_fit_X", _last),
    ("NearestCentroid", "centroids_", _last),
    ("GaussianNB", "theta_", _last),
    ("_BaseDiscreteNB", "feature_count_", _last),
    ("BaseMultilayerPerceptron", "coefs_", _first_rows),
    ("BaseDecisionTree", "tree_", _tree_features),
    ("StandardScaler", "mean_", _length),
    ("StandardScaler", "scale_", _length),
    ("StandardScaler", "var_", _length),
    ("MinMaxScaler", "min_", _length),
    ("MaxAbsScaler", "max_abs_", _length),
    ("RobustScaler", "center_", _length),
    ("RobustScaler", "scale_", _length),
    ("SimpleImputer", "statistics_", _length),
    ("_BaseEncoder", "categories_", _length),  # OneHotEncoder, OrdinalEncoder
    ("KBinsDiscretizer", "bin_edges_", _length),
    ("QuantileTransformer", "quantiles_", _last),
    ("PowerTransformer", "lambdas_", _length),
    ("VarianceThreshold", "variances_", _length),
    ("_BaseFilter", "scores_", _length),  # SelectKBest, SelectPercentile, ...
    ("_BasePCA", "components_", _last),
    ("TruncatedSVD", "components_", _last),
    ("KMeans", "cluster_centers_", _last),
    ("_BaseKMeans", "cluster_centers_", _last),
    ("BaseMixture", "means_", _last),
    ("QuadraticDiscriminantAnalysis", "means_", _last),
    ("KernelPCA", "X_fit_", _last),
    ("KernelRidge", "X_fit_", _last),
    ("GaussianProcessRegressor", "X_train_", _last),
)

# Meta-estimators whose fitted parts all read the whole input: (class name in the MRO, attribute
# holding the parts). Bagging (and IsolationForest) is absent on purpose: its parts may see a
# subset of the columns (it records ``n_features_`` itself); so is one-vs-one, whose parts of a
# precomputed kernel see a subset of its columns.
INPUT_WIDTH_PARTS: tuple[tuple[str, str], ...] = (
    ("Pipeline", "steps"),  # its first step that is not passthrough
    ("FeatureUnion", "transformer_list"),
    ("BaseSearchCV", "best_estimator_"),
    ("BaseForest", "estimators_"),
    ("BaseGradientBoosting", "estimators_"),
    ("BaseWeightBoosting", "estimators_"),  # AdaBoost (and apo's SAMME.R class)
    ("_BaseVoting", "estimators_"),
    ("_BaseStacking", "estimators_"),
    ("OneVsRestClassifier", "estimators_"),
    ("OutputCodeClassifier", "estimators_"),
    ("_MultiOutputEstimator", "estimators_"),
    ("_BaseChain", "estimators_"),  # the first of the chain reads the input alone
    ("RANSACRegressor", "estimator_"),
    ("SelectFromModel", "estimator_"),
    ("TransformedTargetRegressor", "regressor_"),
)
# Parts after the first read something else (a pipeline's later steps, a chain's later links
# read the input and the earlier links' answers): only the first may say.
_FIRST_PART_ONLY = frozenset({"Pipeline", "_BaseChain"})
_MAX_WIDTH_DEPTH = 12


def input_width(estimator: Any, depth: int = 0) -> tuple[int, str] | None:
    """The input width a fitted estimator's own state gives, and the attribute it came from;
    ``None`` when nothing it saved says (a stateless transformer, an unfitted template)."""
    attributes = getattr(estimator, "__dict__", {})
    if _number(attributes.get("n_features_in_")) is not None:
        return int(attributes["n_features_in_"]), "n_features_in_"
    owners = {klass.__name__ for klass in type(estimator).__mro__}
    for owner, attribute, read in INPUT_WIDTH:
        if owner in owners and attribute in attributes:
            try:
                width = read(attributes[attribute])
            except (TypeError, ValueError, IndexError):
                width = None
            if width is not None and width > 0:
                return width, attribute
    if depth >= _MAX_WIDTH_DEPTH:
        return None
    for owner, attribute in INPUT_WIDTH_PARTS:
        if owner in owners and attribute in attributes:
            first_only = owner in _FIRST_PART_ONLY
            for i, part in enumerate(_fitted_parts(attributes[attribute], first_only=first_only)):
                found = input_width(part, depth + 1)
                if found is not None:
                    return found[0], f"{attribute}[{i}].{found[1]}"
    return None


def _fitted_parts(value: Any, first_only: bool) -> list[Any]:
    """The estimators a meta-estimator holds, in order: lists, (name, estimator) pairs, object
    arrays; "drop"/"passthrough" skipped (a pipeline's passthrough keeps the input as it is)."""
    from sklearn.base import BaseEstimator

    if isinstance(value, BaseEstimator):
        return [value]
    items = value.ravel() if isinstance(value, np.ndarray) and value.dtype == object else value
    if not isinstance(items, (list, tuple, np.ndarray)):
        return []
    parts = []
    for item in items:
        if isinstance(item, tuple) and len(item) >= 2:
            item = item[1]
        if item is None or isinstance(item, str):
            continue
        if isinstance(item, BaseEstimator):
            parts.append(item)
        if first_only:
            break  # a pipeline's width is its first real step's, whatever that step knows
    return parts


def _width_is_derived(cls: type) -> bool:
    """Classes whose ``n_features_in_`` is a property (pipelines, searches, voting, stacking):
    they read it from their parts, which get their own."""
    for klass in cls.__mro__:
        if "n_features_in_" in vars(klass):
            return isinstance(vars(klass)["n_features_in_"], property)
    return False


def input_width_upgrade(estimator: Any, saved: Version, notes: list[str]) -> None:
    """``n_features_in_`` (recorded at fit since 0.24; 1.0 for a few) from the fitted state that
    gives the width: today's ``predict`` checks it, and the signature reads it."""
    if "n_features_in_" in estimator.__dict__ or _width_is_derived(type(estimator)):
        return
    found = input_width(estimator)
    if found is None:
        return
    estimator.__dict__["n_features_in_"] = found[0]
    notes.append(f"{type(estimator).__name__}.n_features_in_ set from {found[1]}")


def column_transformer_names(estimator: Any, saved: Version, notes: list[str]) -> None:
    """A ColumnTransformer fit on a DataFrame before 1.0 recorded the frame's columns privately
    (``_feature_names_in`` 0.22-0.24, ``_df_columns`` from 0.20 when it selected by name): they
    become ``feature_names_in_``, and each transformer's columns their positions in it
    (``_transformer_to_input_indices``), which today's ``transform`` selects by name with."""
    attributes = estimator.__dict__
    transformers = attributes.get("transformers_")
    if "feature_names_in_" in attributes or not isinstance(transformers, list):
        return
    recorded = attributes.get("_feature_names_in")
    if recorded is None:
        recorded = attributes.get("_df_columns")
    if recorded is None:
        return  # fit on an array: its columns have no names, and need none
    names = np.asarray([str(name) for name in recorded], dtype=object)
    if len(set(names)) != len(names) or (attributes.get("_n_features") not in (None, len(names))):
        return
    indices: dict[str, list[int]] = {}
    for item in transformers:
        if not (isinstance(item, tuple) and len(item) == 3):
            return
        picked = _column_positions(item[2], list(names))
        if picked is None:
            return  # a selector apo cannot resolve to positions: leave the model as it was
        indices[str(item[0])] = picked
    if "remainder" not in indices:
        remainder = attributes.get("_remainder")
        rest = remainder[2] if isinstance(remainder, tuple) and len(remainder) == 3 else None
        indices["remainder"] = _column_positions(rest, list(names)) or []
    attributes["feature_names_in_"] = names
    if "_transformer_to_input_indices" not in attributes:
        attributes["_transformer_to_input_indices"] = indices
    notes.append("ColumnTransformer.feature_names_in_ set from the columns it was fit on")


def column_transformer_passthrough(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Since 1.4 a fitted ColumnTransformer holds its passthrough columns' identity transformer
    in ``transformers_``, and ``transform`` no longer replaces the string "passthrough" itself."""
    transformers = estimator.__dict__.get("transformers_")
    if RUNNING < (1, 4) or not isinstance(transformers, list):
        return
    from sklearn.preprocessing import FunctionTransformer

    fitted = estimator.__dict__.get("_name_to_fitted_passthrough") or {}  # 1.2-1.3 kept it here
    names = estimator.__dict__.get("feature_names_in_")
    changed = False
    for i, item in enumerate(transformers):
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[1], str)
                and item[1] == "passthrough"):  # fmt: skip
            continue
        identity = fitted.get(item[0])
        if identity is None:
            identity = FunctionTransformer(accept_sparse=True, check_inverse=False,
                                           feature_names_out="one-to-one")  # fmt: skip
            positions = _column_positions(item[2], list(names) if names is not None else [])
            if positions is not None:
                identity.n_features_in_ = len(positions)
                if names is not None:
                    identity.feature_names_in_ = np.asarray(names)[positions]
        transformers[i] = (item[0], identity, item[2])
        changed = True
    if changed:
        notes.append("ColumnTransformer passthrough columns as an identity FunctionTransformer "
                     "(the layout since 1.4)")  # fmt: skip


def _column_positions(columns: Any, names: list[str]) -> list[int] | None:
    """A saved column selector as positions among the fitted columns; ``None`` if unknown."""
    if columns is None:
        return []
    position = {name: i for i, name in enumerate(names)}
    if isinstance(columns, str):
        return [position[columns]] if columns in position else None
    if isinstance(columns, (int, np.integer)) and not isinstance(columns, (bool, np.bool_)):
        return [int(columns)]
    if isinstance(columns, slice):
        if all(isinstance(e, (str, type(None))) for e in (columns.start, columns.stop)):
            start = position.get(columns.start, 0) if columns.start is not None else 0
            stop = position.get(columns.stop) if columns.stop is not None else len(names) - 1
            if stop is None or (columns.start is not None and columns.start not in position):
                return None
            return list(range(start, stop + 1))  # label slices include their end
        return list(range(len(names)))[columns]
    if callable(columns) or not hasattr(columns, "__iter__"):
        return None
    items = list(columns)
    if items and all(isinstance(c, (bool, np.bool_)) for c in items):
        return [i for i, keep in enumerate(items) if keep] if len(items) == len(names) else None
    out = []
    for item in items:
        if isinstance(item, str) and item in position:
            out.append(position[item])
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            out.append(int(item))
        else:
            return None
    return out


def one_hot_encoder(estimator: Any, saved: Version, notes: list[str]) -> None:
    """State of the infrequent-category grouping (1.1) and per-feature output counts."""
    attributes = estimator.__dict__
    if attributes.get("_legacy_mode"):
        raise Untranslatable(
            "OneHotEncoder in its 0.20 legacy mode (n_values/categorical_features) encodes "
            "integers in a way scikit-learn removed in 0.22"
        )
    if "categories_" not in attributes:
        return  # an unfitted template (a ColumnTransformer's ``transformers`` parameter)
    added = []
    grouped = attributes.get("drop_idx_")
    for attribute, value in (("drop_idx_", None), ("_infrequent_enabled", False),
                             ("_drop_idx_after_grouping", grouped)):  # fmt: skip
        if attribute not in attributes:
            attributes[attribute] = value
            added.append(attribute)
    if "_n_features_outs" not in attributes and hasattr(estimator, "_compute_n_features_outs"):
        attributes["_n_features_outs"] = estimator._compute_n_features_outs()
        added.append("_n_features_outs")
    if added:
        notes.append(f"OneHotEncoder gained {', '.join(added)}")


def libsvm(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Before 0.21, regression and one-class SVMs saved ``n_support_`` uninitialised."""
    attributes = estimator.__dict__
    if saved >= (0, 21) or getattr(estimator, "_impl", None) not in (
        "epsilon_svr",
        "nu_svr",
        "one_class",
    ):
        return
    count = len(attributes["support_vectors_"])
    attributes["_n_support"] = np.array([count, count], dtype=np.int32)
    notes.append(f"{type(estimator).__name__} support vector count recomputed")


def ovr_confidences_note(estimator: Any, saved: Version, notes: list[str]) -> None:
    attributes = estimator.__dict__
    if (saved < (0, 21) and attributes.get("decision_function_shape") == "ovr"
            and len(attributes.get("classes_", ())) > 2):  # fmt: skip
        notes.append(f"{type(estimator).__name__}: decision_function scales one-vs-rest "
                     "confidences per row, not per batch (labels unchanged)")  # fmt: skip


# --- gradient boosting ----------------------------------------------------------------------


def boosting_loss(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Loss objects from before 1.4 (1.1 for histogram GB) become today's, made by the
    estimator's own ``_get_loss`` from its parameters; old loss names get today's names."""
    attributes = estimator.__dict__
    name = type(estimator).__name__
    loss = attributes.get("loss")
    saved_loss = attributes.get("_loss", attributes.get("loss_"))
    # A loss object of another release may lack what today's code reads: rebuild it from the
    # parameters unless it was saved by this very release.
    if saved_loss is None or (not _retired(saved_loss) and saved[:2] == RUNNING[:2]):
        return
    if "Classifier" in name and "n_trees_per_iteration_" not in attributes:
        attributes["n_trees_per_iteration_"] = _trees_per_iteration(estimator)
    try:
        attributes["_loss"] = estimator._get_loss(sample_weight=None)
    except (AttributeError, ValueError, TypeError) as exc:
        raise Untranslatable(f"{name}'s loss {loss!r} has no successor ({exc})") from None
    attributes.pop("loss_", None)
    notes.append(f"{name} loss object rebuilt for today's release")
    multiclass = attributes["_loss"].is_multiclass
    if name == "GradientBoostingClassifier" and saved < (1, 4) and multiclass:
        from alphapulse_onnx.loading.legacy import uncentered_multinomial

        # Before 1.4 multiclass boosting started from log(prior), not centred (0.20: the
        # priors themselves, see boosting_init): keep its raw scores.
        attributes["_loss"] = uncentered_multinomial(attributes["_loss"], start="log")
        notes.append("multiclass raw scores start from log(prior) as before 1.4")


def _trees_per_iteration(estimator: Any) -> int:
    classes = estimator.__dict__.get("n_classes_") or len(estimator.classes_)
    return 1 if classes <= 2 else int(classes)


def boosting_init(estimator: Any, saved: Version, notes: list[str]) -> None:
    """Gradient boosting's initial estimator before 0.21, as the Dummy model that replaced it."""
    init = estimator.__dict__.get("init_")
    if not isinstance(init, standins.Retired):
        if "n_trees_per_iteration_" not in estimator.__dict__ and hasattr(estimator, "estimators_"):
            estimator.n_trees_per_iteration_ = int(estimator.estimators_.shape[1])
        return
    from scipy.special import expit
    from sklearn.dummy import DummyClassifier, DummyRegressor

    state = init.__dict__
    dummy: Any
    if isinstance(init, standins.OldZeroEstimator):
        estimator.init_ = "zero"
        notes.append("GradientBoosting initial estimator: ZeroEstimator is now init='zero'")
        return
    if isinstance(init, (standins.OldLogOddsEstimator, standins.OldScaledLogOddsEstimator)):
        scale = 2.0 if isinstance(init, standins.OldScaledLogOddsEstimator) else 1.0
        positive = float(expit(scale * float(state["prior"])))
        dummy = _dummy_classifier(DummyClassifier, estimator, np.array([1 - positive, positive]))
    elif isinstance(init, standins.OldPriorProbabilityEstimator):
        from alphapulse_onnx.loading.legacy import uncentered_multinomial

        # 0.20 started multiclass models at the priors themselves (not their logs).
        dummy = _dummy_classifier(DummyClassifier, estimator, np.asarray(state["priors"]))
        estimator._loss = uncentered_multinomial(estimator._loss, start="identity")
        notes.append("multiclass raw scores start from the priors as in 0.20")
    elif isinstance(init, (standins.OldMeanEstimator, standins.OldQuantileEstimator)):
        value = float(state["mean"] if "mean" in state else state["quantile"])
        dummy = DummyRegressor(strategy="constant", constant=value)
        dummy.constant_ = np.array([[value]])
        dummy.n_outputs_ = 1
        dummy.n_features_in_ = estimator.n_features_in_
    else:
        raise Untranslatable(f"gradient boosting initial estimator {type(init).__name__}")
    estimator.init_ = dummy
    notes.append(f"GradientBoosting initial estimator is now {type(dummy).__name__}")


def _dummy_classifier(cls: Any, estimator: Any, priors: Any) -> Any:
    dummy = cls(strategy="prior")
    dummy.classes_ = estimator.classes_
    dummy.n_classes_ = len(estimator.classes_)
    dummy.class_prior_ = np.asarray(priors, dtype=np.float64)
    dummy.n_outputs_ = 1
    dummy._strategy = "prior"
    dummy.n_features_in_ = estimator.n_features_in_
    dummy.sparse_output_ = False
    return dummy


def histogram_boosting(estimator: Any, saved: Version, notes: list[str]) -> None:
    """HistGradientBoosting state added since 0.21: no categorical features, no preprocessor."""
    attributes = estimator.__dict__
    for attribute, value in (("_preprocessor", None), ("is_categorical_", None),
                             ("_is_categorical_remapped", None)):  # fmt: skip
        if attribute not in attributes:
            attributes[attribute] = value
    baseline = attributes.get("_baseline_prediction")
    if isinstance(baseline, np.ndarray) and baseline.ndim == 2 and baseline.shape[0] != 1:
        attributes["_baseline_prediction"] = baseline.T  # (n_trees, 1) before 1.1
        notes.append("HistGradientBoosting baseline in today's shape")


# --- behaviour that moved into apo's legacy classes ----------------------------------------------


def one_vs_rest_logistic(estimator: Any, saved: Version, notes: list[str]) -> None:
    from alphapulse_onnx.loading.legacy import LEGACY_CLASSES

    attributes = estimator.__dict__
    multi_class = attributes.get("multi_class")
    classes = attributes.get("classes_")
    if classes is None or len(classes) <= 2 or multi_class is None:
        return
    solver = attributes.get("solver")
    # "warn" was 0.20-0.21's default (one-vs-rest); "auto" and 1.5-1.7's "deprecated" meant
    # one-vs-rest with liblinear, which has no multinomial mode.
    ovr = multi_class in ("ovr", "warn") or (
        multi_class in ("auto", "deprecated") and solver == "liblinear"
    )
    if not ovr or type(estimator) not in LEGACY_CLASSES or _has_parameter(estimator, "multi_class"):
        return  # (a release that still has multi_class answers one-vs-rest itself)
    estimator.__class__ = LEGACY_CLASSES[type(estimator)]
    estimator.multi_class = "ovr"
    notes.append(f"{type(estimator).__name__}: one-vs-rest probabilities as when fitted "
                 "(removed in 1.8)")  # fmt: skip


def samme_r_boosting(estimator: Any, saved: Version, notes: list[str]) -> None:
    from alphapulse_onnx.loading.legacy import LEGACY_CLASSES

    if estimator.__dict__.get("algorithm") != "SAMME.R" or type(estimator) not in LEGACY_CLASSES:
        return
    if _has_parameter(estimator, "algorithm"):
        return  # a release that still runs SAMME.R itself
    estimator.__class__ = LEGACY_CLASSES[type(estimator)]
    notes.append("AdaBoostClassifier: SAMME.R answers as when fitted (removed in 1.6)")


def sgd_loss(estimator: Any, saved: Version, notes: list[str]) -> None:
    """SGD's loss object is training state (removed from fitted models in 1.6)."""
    for attribute in ("loss_function_", "_loss_function_"):
        if _retired(estimator.__dict__.get(attribute)):
            del estimator.__dict__[attribute]
            notes.append(f"{type(estimator).__name__}: dropped its training loss object")


def _has_parameter(estimator: Any, name: str) -> bool:
    return name in type(estimator)._get_param_names()


def _retired(value: Any) -> bool:
    return isinstance(value, (standins.Retired, standins.RetiredSGDLoss))


# Class name (any in the MRO) -> translations, applied in order to each estimator in a model.
TRANSLATIONS: dict[str, tuple[Translation, ...]] = {
    "BaseEstimator": (renamed_attributes, derived_attributes, input_width_upgrade),
    "ColumnTransformer": (column_transformer_names, column_transformer_passthrough),
    "BaseLibSVM": (libsvm,),
    "OneHotEncoder": (one_hot_encoder,),
    "BaseSVC": (ovr_confidences_note,),
    "BaseDecisionTree": (tree_fractions,),
    "IsolationForest": (isolation_forest,),
    "BaseGradientBoosting": (boosting_loss, boosting_init),
    "BaseHistGradientBoosting": (boosting_loss, histogram_boosting),
    "LogisticRegression": (one_vs_rest_logistic,),
    "AdaBoostClassifier": (samme_r_boosting,),
    "BaseSGD": (sgd_loss,),
}


def translations_for(cls: type) -> list[Translation]:
    found: list[Translation] = []
    for klass in reversed(cls.__mro__):
        for translation in TRANSLATIONS.get(klass.__name__, ()):
            if translation not in found:
                found.append(translation)
    return found
