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


def renamed_attributes(estimator: Any, saved: Version, notes: list[str]) -> None:
    owners = {klass.__name__ for klass in type(estimator).__mro__}
    attributes = estimator.__dict__
    for owner, old, new in RENAMED_ATTRIBUTES:
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
    "BaseEstimator": (renamed_attributes, derived_attributes),
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
