"""What a model file may name, by role: the loader's positive lists.

Every global a pickle names is admitted in exactly one role, or refused:

(a) **model classes**: estimators and the helper types they hold. The loader only ever makes a
    bare instance of one (``cls.__new__(cls)``, never ``cls(*args)`` with the file's arguments)
    and then gives it its saved state.
(b) **reconstructors**: functions (and a few extension types) that the loader may call, each
    through a checker here that validates every argument's type, shape and size first.
(c) **inert values**: functions and types a fitted model may *hold* (a ufunc for
    ``FunctionTransformer``, a score function for ``SelectKBest``, ``numpy.float64`` as a
    ``dtype=`` parameter). The loader stores them; it never calls them.

A name of role (a) or (b) reaches the pickle machine as an opaque ``Name`` token, which it can
only hand to the checks here; a value of role (c) is pushed as itself. Scikit-learn classes
that forward attribute access or call what they hold (scorers, ``FrozenEstimator``, ``Bunch``,
``make_column_selector``) are admitted as apo's own stand-ins with the same data and no such
behaviour. See docs/explanation/security.md.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

from alphapulse_onnx.loading import frames
from alphapulse_onnx.loading.checks import Name, Role
from alphapulse_onnx.loading.inert import SAFE_UFUNCS, inert_values
from alphapulse_onnx.loading.reconstructors import RECONSTRUCTORS
from alphapulse_onnx.loading.upgrades import names as old_names

__all__ = ["MODEL_HELPERS", "SAFE_UFUNCS", "SKLEARN_ESTIMATORS", "STANDINS", "admit",
           "admit_moved", "admitted_names", "python3_name"]  # fmt: skip

RECONSTRUCTORS.update(frames.RECONSTRUCTORS)  # pandas' rebuilders, through their checkers

# --- role (a): model classes ------------------------------------------------------------------

# Public estimators by the package that exports them (scikit-learn's ``all_estimators()``; a test
# keeps this list in step with the installed release). A pickle names a class by its defining
# module (``sklearn.ensemble._forest``): the loader imports only the package listed here and
# accepts the class when that package's own import defined it under exactly that name.
SKLEARN_ESTIMATORS: dict[str, frozenset[str]] = {
    "sklearn.calibration": frozenset({"CalibratedClassifierCV"}),
    "sklearn.cluster": frozenset({
        "AffinityPropagation", "AgglomerativeClustering", "Birch", "BisectingKMeans", "DBSCAN",
        "FeatureAgglomeration", "HDBSCAN", "KMeans", "MeanShift", "MiniBatchKMeans", "OPTICS",
        "SpectralBiclustering", "SpectralClustering", "SpectralCoclustering",
    }),
    "sklearn.compose": frozenset({"ColumnTransformer", "TransformedTargetRegressor"}),
    "sklearn.covariance": frozenset({
        "EllipticEnvelope", "EmpiricalCovariance", "GraphicalLasso", "GraphicalLassoCV",
        "LedoitWolf", "MinCovDet", "OAS", "ShrunkCovariance",
    }),
    "sklearn.cross_decomposition": frozenset({"CCA", "PLSCanonical", "PLSRegression", "PLSSVD"}),
    "sklearn.decomposition": frozenset({
        "DictionaryLearning", "FactorAnalysis", "FastICA", "IncrementalPCA", "KernelPCA",
        "LatentDirichletAllocation", "MiniBatchDictionaryLearning", "MiniBatchNMF",
        "MiniBatchSparsePCA", "NMF", "PCA", "SparseCoder", "SparsePCA", "TruncatedSVD",
    }),
    "sklearn.discriminant_analysis": frozenset({
        "LinearDiscriminantAnalysis", "QuadraticDiscriminantAnalysis",
    }),
    "sklearn.dummy": frozenset({"DummyClassifier", "DummyRegressor"}),
    "sklearn.ensemble": frozenset({
        "AdaBoostClassifier", "AdaBoostRegressor", "BaggingClassifier", "BaggingRegressor",
        "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier",
        "GradientBoostingRegressor", "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor", "IsolationForest", "RandomForestClassifier",
        "RandomForestRegressor", "RandomTreesEmbedding", "StackingClassifier",
        "StackingRegressor", "VotingClassifier", "VotingRegressor",
    }),
    "sklearn.feature_extraction": frozenset({
        "CountVectorizer", "DictVectorizer", "FeatureHasher", "HashingVectorizer",
        "PatchExtractor", "TfidfTransformer", "TfidfVectorizer",
    }),
    "sklearn.feature_selection": frozenset({
        "GenericUnivariateSelect", "RFE", "RFECV", "SelectFdr", "SelectFpr", "SelectFromModel",
        "SelectFwe", "SelectKBest", "SelectPercentile", "SequentialFeatureSelector",
        "VarianceThreshold",
    }),
    "sklearn.gaussian_process": frozenset({
        "GaussianProcessClassifier", "GaussianProcessRegressor",
    }),
    "sklearn.impute": frozenset({"IterativeImputer", "KNNImputer", "MissingIndicator",
                                 "SimpleImputer"}),
    "sklearn.isotonic": frozenset({"IsotonicRegression"}),
    "sklearn.kernel_approximation": frozenset({
        "AdditiveChi2Sampler", "Nystroem", "PolynomialCountSketch", "RBFSampler",
        "SkewedChi2Sampler",
    }),
    "sklearn.kernel_ridge": frozenset({"KernelRidge"}),
    "sklearn.linear_model": frozenset({
        "ARDRegression", "BayesianRidge", "ElasticNet", "ElasticNetCV", "GammaRegressor",
        "HuberRegressor", "Lars", "LarsCV", "Lasso", "LassoCV", "LassoLars", "LassoLarsCV",
        "LassoLarsIC", "LinearRegression", "LogisticRegression", "LogisticRegressionCV",
        "MultiTaskElasticNet", "MultiTaskElasticNetCV", "MultiTaskLasso", "MultiTaskLassoCV",
        "OrthogonalMatchingPursuit", "OrthogonalMatchingPursuitCV",
        "PassiveAggressiveClassifier", "PassiveAggressiveRegressor", "Perceptron",
        "PoissonRegressor", "QuantileRegressor", "RANSACRegressor", "Ridge", "RidgeCV",
        "RidgeClassifier", "RidgeClassifierCV", "SGDClassifier", "SGDOneClassSVM",
        "SGDRegressor", "TheilSenRegressor", "TweedieRegressor",
    }),
    "sklearn.manifold": frozenset({
        "ClassicalMDS", "Isomap", "LocallyLinearEmbedding", "MDS", "SpectralEmbedding", "TSNE",
    }),
    "sklearn.mixture": frozenset({"BayesianGaussianMixture", "GaussianMixture"}),
    "sklearn.model_selection": frozenset({
        "FixedThresholdClassifier", "GridSearchCV", "HalvingGridSearchCV",
        "HalvingRandomSearchCV", "RandomizedSearchCV", "TunedThresholdClassifierCV",
    }),
    "sklearn.multiclass": frozenset({
        "OneVsOneClassifier", "OneVsRestClassifier", "OutputCodeClassifier",
    }),
    "sklearn.multioutput": frozenset({
        "ClassifierChain", "MultiOutputClassifier", "MultiOutputRegressor", "RegressorChain",
    }),
    "sklearn.naive_bayes": frozenset({
        "BernoulliNB", "CategoricalNB", "ComplementNB", "GaussianNB", "MultinomialNB",
    }),
    "sklearn.neighbors": frozenset({
        "KNeighborsClassifier", "KNeighborsRegressor", "KNeighborsTransformer", "KernelDensity",
        "LocalOutlierFactor", "NearestCentroid", "NearestNeighbors",
        "NeighborhoodComponentsAnalysis", "RadiusNeighborsClassifier",
        "RadiusNeighborsRegressor", "RadiusNeighborsTransformer",
    }),
    "sklearn.neural_network": frozenset({"BernoulliRBM", "MLPClassifier", "MLPRegressor"}),
    "sklearn.pipeline": frozenset({"FeatureUnion", "Pipeline"}),
    "sklearn.preprocessing": frozenset({
        "Binarizer", "FunctionTransformer", "KBinsDiscretizer", "KernelCenterer",
        "LabelBinarizer", "LabelEncoder", "MaxAbsScaler", "MinMaxScaler", "MultiLabelBinarizer",
        "Normalizer", "OneHotEncoder", "OrdinalEncoder", "PolynomialFeatures",
        "PowerTransformer", "QuantileTransformer", "RobustScaler", "SplineTransformer",
        "StandardScaler", "TargetEncoder",
    }),
    "sklearn.random_projection": frozenset({
        "GaussianRandomProjection", "SparseRandomProjection",
    }),
    "sklearn.semi_supervised": frozenset({
        "LabelPropagation", "LabelSpreading", "SelfTrainingClassifier",
    }),
    "sklearn.svm": frozenset({"LinearSVC", "LinearSVR", "NuSVC", "NuSVR", "OneClassSVM", "SVC",
                              "SVR"}),
    "sklearn.tree": frozenset({
        "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
        "ExtraTreeRegressor",
    }),
}  # fmt: skip
# Estimators of well-known libraries built on scikit-learn's API (the ``encoders`` extra), by
# the package that exports them; admitted like scikit-learn's when the library is installed.
THIRD_PARTY_ESTIMATORS: dict[str, frozenset[str]] = {
    "category_encoders": frozenset({
        "BackwardDifferenceEncoder", "BaseNEncoder", "BinaryEncoder", "CatBoostEncoder",
        "CountEncoder", "GrayEncoder", "HashingEncoder", "HelmertEncoder", "JamesSteinEncoder",
        "LeaveOneOutEncoder", "MEstimateEncoder", "OneHotEncoder", "OrdinalEncoder",
        "PolynomialEncoder", "QuantileEncoder", "RankHotEncoder", "SumEncoder",
        "SummaryEncoder", "TargetEncoder", "WOEEncoder",
    }),
    "imblearn.pipeline": frozenset({"Pipeline"}),
    # Samplers run only in fit; a pipeline keeps them, fitted, and skips them when predicting.
    "imblearn.over_sampling": frozenset({
        "ADASYN", "BorderlineSMOTE", "KMeansSMOTE", "RandomOverSampler", "SMOTE", "SMOTEN",
        "SMOTENC", "SVMSMOTE",
    }),
    "imblearn.under_sampling": frozenset({
        "AllKNN", "ClusterCentroids", "CondensedNearestNeighbour", "EditedNearestNeighbours",
        "InstanceHardnessThreshold", "NearMiss", "NeighbourhoodCleaningRule",
        "OneSidedSelection", "RandomUnderSampler", "RepeatedEditedNearestNeighbours",
        "TomekLinks",
    }),
    "imblearn.combine": frozenset({"SMOTEENN", "SMOTETomek"}),
}  # fmt: skip
# Estimators scikit-learn only exports after an opt-in import of its own.
_EXPERIMENTAL = {
    "IterativeImputer": "sklearn.experimental.enable_iterative_imputer",
    "HalvingGridSearchCV": "sklearn.experimental.enable_halving_search_cv",
    "HalvingRandomSearchCV": "sklearn.experimental.enable_halving_search_cv",
}
# Helper types that fitted estimators hold, by the module that defines them.
MODEL_HELPERS: dict[str, frozenset[str]] = {
    "sklearn._loss.loss": frozenset({
        "AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss",
        "HalfMultinomialLoss", "HalfPoissonLoss", "HalfSquaredError", "HalfTweedieLoss",
        "HalfTweedieLossIdentity", "HuberLoss", "PinballLoss", "HalfBinomialLossArrayAPI",
        "HalfMultinomialLossArrayAPI", "HalfPoissonLossArrayAPI",
    }),
    "sklearn._loss.link": frozenset({
        "HalfLogitLink", "IdentityLink", "Interval", "LogLink", "LogitLink", "MultinomialLogit",
    }),
    "sklearn.ensemble._hist_gradient_boosting.binning": frozenset({"_BinMapper"}),
    # Loss objects of releases that still have them (the origin worker runs those releases;
    # today's loader turns them into placeholders, see ``upgrades.names.RETIRED``).
    "sklearn.ensemble._gb_losses": frozenset({
        "BinomialDeviance", "MultinomialDeviance", "ExponentialLoss", "LeastSquaresError",
        "LeastAbsoluteError", "HuberLossFunction", "QuantileLossFunction",
    }),
    "sklearn.ensemble._hist_gradient_boosting.loss": frozenset({
        "LeastSquares", "LeastAbsoluteDeviation", "BinaryCrossEntropy",
        "CategoricalCrossEntropy", "Poisson",
    }),
    "sklearn.ensemble._hist_gradient_boosting.predictor": frozenset({"TreePredictor"}),
    "sklearn.calibration": frozenset({"_CalibratedClassifier", "_SigmoidCalibration",
                                      "_TemperatureScaling"}),
    "sklearn.gaussian_process._gpc": frozenset({"_BinaryGaussianProcessClassifierLaplace"}),
    # Kernels are called by GaussianProcess*.predict; composite kernels call only the kernels
    # they hold, which ``KERNEL_PARTS`` checks when their state is set.
    "sklearn.gaussian_process.kernels": frozenset({
        "CompoundKernel", "ConstantKernel", "DotProduct", "ExpSineSquared", "Exponentiation",
        "Matern", "PairwiseKernel", "Product", "RBF", "RationalQuadratic", "Sum", "WhiteKernel",
    }),
    "sklearn.neural_network._stochastic_optimizers": frozenset({"AdamOptimizer",
                                                                "SGDOptimizer"}),
    "sklearn.model_selection._split": frozenset({
        "GroupKFold", "GroupShuffleSplit", "KFold", "LeaveOneGroupOut", "LeaveOneOut",
        "LeavePGroupsOut", "LeavePOut", "PredefinedSplit", "RepeatedKFold",
        "RepeatedStratifiedKFold", "ShuffleSplit", "StratifiedGroupKFold", "StratifiedKFold",
        "StratifiedShuffleSplit", "TimeSeriesSplit",
    }),
    "sklearn.cluster._birch": frozenset({"_CFNode", "_CFSubcluster"}),
    "sklearn.cluster._bisect_k_means": frozenset({"_BisectingTree"}),
    "sklearn.multiclass": frozenset({"_ConstantPredictor"}),
    "sklearn.neighbors._kd_tree": frozenset({"KDTree"}),
    "sklearn.neighbors._ball_tree": frozenset({"BallTree"}),
    "sklearn.metrics._dist_metrics": frozenset(
        f"{metric}Distance{bits}"
        for metric in ("BrayCurtis", "Canberra", "Chebyshev", "Dice", "Euclidean", "Hamming",
                       "Haversine", "Jaccard", "Kulsinski", "Mahalanobis", "Manhattan",
                       "Matching", "Minkowski", "RogersTanimoto", "RussellRao", "SEuclidean",
                       "SokalMichener", "SokalSneath")
        for bits in ("", "32", "64")  # no suffix before 1.3
    ),  # not PyFuncDistance: it calls the function it holds
    "numpy": frozenset({"ndarray", "matrix"}),
    "numpy.ma": frozenset({"MaskedArray"}),
    "numpy.ma.core": frozenset({"MaskedArray"}),
    "numpy.matrixlib.defmatrix": frozenset({"matrix"}),
    "numpy.random._mt19937": frozenset({"MT19937"}),
    "numpy.random._pcg64": frozenset({"PCG64", "PCG64DXSM"}),
    "numpy.random._philox": frozenset({"Philox"}),
    "numpy.random._sfc64": frozenset({"SFC64"}),
    "numpy.random.bit_generator": frozenset({"SeedSequence"}),
    "scipy.sparse._csr": frozenset({"csr_matrix", "csr_array"}),
    "scipy.sparse._csc": frozenset({"csc_matrix", "csc_array"}),
    "scipy.sparse._coo": frozenset({"coo_matrix", "coo_array"}),
    "scipy.sparse._bsr": frozenset({"bsr_matrix", "bsr_array"}),
    "lightgbm.sklearn": frozenset({"LGBMClassifier", "LGBMModel", "LGBMRanker",
                                   "LGBMRegressor"}),
    "lightgbm.basic": frozenset({"Booster"}),  # rebuilt from its model text, never from a path
    "xgboost.sklearn": frozenset({"XGBClassifier", "XGBModel", "XGBRanker", "XGBRFClassifier",
                                  "XGBRFRegressor", "XGBRegressor"}),
    "xgboost.core": frozenset({"Booster"}),  # rebuilt from its raw model bytes
}  # fmt: skip
# Stand-ins: scikit-learn classes whose behaviour forwards or calls what they hold, admitted as
# apo classes with the same saved data (``standins``). The loader never builds the original.
STANDINS: dict[str, str] = {
    "sklearn.utils._bunch.Bunch": "LoadedBunch",
    "sklearn.utils.Bunch": "LoadedBunch",
    "sklearn.metrics._scorer._Scorer": "InertScorer",
    "sklearn.metrics._scorer._PassthroughScorer": "InertScorer",
    "sklearn.metrics._scorer._MultimetricScorer": "InertScorer",
    "sklearn.metrics._scorer._CurveScorer": "InertScorer",
    "sklearn.metrics._scorer._PredictScorer": "InertScorer",
    "sklearn.metrics._scorer._ProbaScorer": "InertScorer",
    "sklearn.metrics._scorer._ThresholdScorer": "InertScorer",
    "sklearn.compose._column_transformer.make_column_selector": "InertColumnSelector",
    "sklearn.compose._column_transformer._RemainderColsList": "RemainderColsList",
    "sklearn.frozen._frozen.FrozenEstimator": "FrozenModel",
}


def _import_attr(module: str, attr: str) -> Any:
    return getattr(importlib.import_module(module), attr)


def _locate(module: str, attr: str) -> Any:
    """A reconstructor by our own choice of location; numpy before 2.0 names ``numpy._core``
    ``numpy.core`` (the origin worker runs such releases)."""
    for candidate in dict.fromkeys((module, module.replace("numpy._core", "numpy.core", 1))):
        try:
            return _import_attr(candidate, attr)
        except (ImportError, AttributeError):  # noqa: PERF203 (two tries at most)
            pass
    return None


def _estimator_class(module: str, name: str) -> type | None:
    """A public estimator the pickle names by its defining module, or ``None``.

    Only the listed package is imported; the defining module must be one its import loaded.
    """
    for package, names in (*SKLEARN_ESTIMATORS.items(), *THIRD_PARTY_ESTIMATORS.items()):
        if name in names and (module == package or module.startswith(package + ".")):
            enabler = _EXPERIMENTAL.get(name)
            try:
                importlib.import_module(enabler or package)
            except ImportError:
                return None  # a library not installed here (the refusal names its extra)
            found = getattr(sys.modules.get(module), name, None)
            if (
                isinstance(found, type)
                and found.__module__ == module
                and found.__qualname__ == name
            ):
                return found
    return None


def _helper_class(module: str, name: str) -> type | None:
    if name not in MODEL_HELPERS.get(module, ()):
        return None
    try:
        found = _import_attr(module, name)
    except (ImportError, AttributeError):
        return None  # a library that is not installed, or a release without this class
    return found if isinstance(found, type) else None


@functools.cache
def admit(module: str, name: str) -> Name | tuple[Any] | None:
    """The role of ``module.name``: a ``Name`` token, a 1-tuple holding a role-(c) value, or
    ``None`` when apo's loader does not admit it. Imports only modules on these lists."""
    dotted = f"{module}.{name}"
    inert = inert_values()
    if dotted in inert:
        return (inert[dotted],)
    reconstructor = RECONSTRUCTORS.get(dotted)
    if reconstructor is not None:
        target = _locate(*reconstructor.locate)
        return None if target is None else Name(dotted, "reconstructor", target)
    standin = STANDINS.get(dotted)
    if standin is not None:
        from alphapulse_onnx.loading import standins

        return Name(dotted, "model", getattr(standins, standin))
    if dotted in frames.STANDINS:
        return Name(dotted, "model", frames.STANDINS[dotted])
    if dotted in frames.MODEL_CLASSES:
        target = _locate(*frames.MODEL_CLASSES[dotted])
        return None if target is None else Name(dotted, "model", target)
    found = _helper_class(module, name) or (
        _estimator_class(module, name) if module.startswith(_ESTIMATOR_PACKAGES) else None
    )
    return None if found is None else Name(dotted, "model", found)


@functools.cache
def admit_moved(module: str, name: str) -> tuple[Name | tuple[Any], str] | None:
    """An old name the running release lacks: the role of what replaced it, and its dotted name
    today (``"retired"`` for a placeholder of apo's, see ``upgrades.names``), or ``None``."""
    for _ in range(4):  # a name can move twice (neighbors.dist_metrics -> metrics, then +64)
        dotted = f"{module}.{name}"
        retired = old_names.RETIRED.get(dotted)
        if retired is not None:
            from alphapulse_onnx.loading import standins

            return Name(dotted, "model", getattr(standins, retired)), "retired"
        if module == _SGD_FAST and name in old_names.RETIRED_SGD_LOSSES:
            from alphapulse_onnx.loading import standins

            return Name(dotted, "reconstructor", standins.RetiredSGDLoss), "retired"
        moved = old_names.successor(module, name, SKLEARN_ESTIMATORS)
        if moved == (module, name):
            return None
        module, name = moved
        admitted = admit(module, name)
        if admitted is not None:
            return admitted, f"{module}.{name}"
    return None


_SGD_FAST = "sklearn.linear_model._sgd_fast"
_ESTIMATOR_PACKAGES = ("sklearn.", "category_encoders.", "imblearn.")


def admitted_names() -> dict[Role, set[str]]:
    """Every name the lists admit, by role (for the test that enumerates them)."""
    roles: dict[Role, set[str]] = {"model": set(), "reconstructor": set(), "value": set()}
    roles["value"].update(inert_values())
    roles["reconstructor"].update(RECONSTRUCTORS)
    roles["model"].update(STANDINS)
    roles["model"].update(frames.STANDINS)
    roles["model"].update(frames.MODEL_CLASSES)
    for module, names in MODEL_HELPERS.items():
        roles["model"].update(f"{module}.{name}" for name in names)
    for package, names in (*SKLEARN_ESTIMATORS.items(), *THIRD_PARTY_ESTIMATORS.items()):
        for name in names:
            try:
                importlib.import_module(_EXPERIMENTAL.get(name, package))
            except ImportError:
                continue  # an optional library that is not installed
            roles["model"].update(
                f"{module}.{name}"
                for module in list(sys.modules)
                if (module == package or module.startswith(package + "."))
                and _estimator_class(module, name) is not None
            )
    return roles


def python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocols 0-2 name Python 2 modules (``__builtin__``, ``copy_reg``): map them first."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]  # type: ignore[no-any-return]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name
