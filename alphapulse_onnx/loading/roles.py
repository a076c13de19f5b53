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

import _codecs
import builtins
import collections
import datetime
import decimal
import functools
import importlib
import inspect
import itertools
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

Role = Literal["model", "reconstructor", "value"]

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
        for bits in ("32", "64")
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

# --- role (c): inert values -------------------------------------------------------------------

# numpy ufuncs that FunctionTransformer(func=np.log1p) and friends pickle by name: arithmetic.
SAFE_UFUNCS = frozenset(
    {
        "log1p", "expm1", "log", "log2", "log10", "exp", "exp2", "sqrt", "cbrt", "square",
        "abs", "absolute", "fabs", "negative", "reciprocal", "sign", "tanh", "sinh", "cosh",
        "arcsinh", "arctan", "sin", "cos", "floor", "ceil", "rint", "trunc",
    }
)  # fmt: skip
# numpy reductions used as pooling functions (FeatureAgglomeration(pooling_func=np.mean)).
_NUMPY_REDUCTIONS = frozenset(
    {"mean", "median", "sum", "max", "min", "amax", "amin", "std", "var", "nanmean",
     "nanmedian", "average"}
)  # fmt: skip
# numpy scalar types, held as ``dtype=`` parameters.
_NUMPY_TYPES = frozenset(
    {"float16", "float32", "float64", "longdouble", "int8", "int16", "int32", "int64", "intp",
     "uint8", "uint16", "uint32", "uint64", "uintp", "bool_", "bool", "object_", "str_",
     "bytes_", "complex64", "complex128", "datetime64", "timedelta64", "number", "integer",
     "floating", "generic"}
)  # fmt: skip
_BUILTIN_TYPES = ("object", "int", "float", "bool", "str", "list", "dict", "tuple")
# Score functions a fitted estimator keeps: SelectKBest's statistics, check_array in the
# FunctionTransformer that HistGradientBoosting builds for categorical features.
_INERT_FUNCTIONS = (
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
    "sklearn.feature_selection._univariate_selection.r_regression",
    "sklearn.feature_selection._univariate_selection.chi2",
    "sklearn.feature_selection._mutual_info.mutual_info_classif",
    "sklearn.feature_selection._mutual_info.mutual_info_regression",
    "sklearn.utils.validation.check_array",
    "sklearn.metrics._scorer._passthrough_scorer",
    "sklearn.cluster._kmeans._kmeans_single_lloyd",  # BisectingKMeans keeps its fit routine
    "sklearn.cluster._kmeans._kmeans_single_elkan",
)


@dataclass(frozen=True, eq=False)
class Name:
    """A role-(a) or role-(b) global, as the pickle machine holds it: opaque, never callable.

    Only the loader's own checks unwrap ``target``; a ``Name`` left in a loaded object graph is
    refused after loading, so nothing downstream ever receives one.
    """

    dotted: str
    role: Role
    target: Any
    trusted: bool = False

    __hash__ = None  # type: ignore[assignment]  # never a dict key or set member

    def __repr__(self) -> str:
        return f"<{self.role} {self.dotted}>"


class Context(Protocol):
    """What a reconstructor may ask of the pickle machine that calls it."""

    def charge(self, nbytes: int, what: str) -> None: ...
    def fresh(self, obj: Any) -> Any: ...
    def refuse(self, message: str) -> Refused: ...
    def instantiate(self, cls: Any, *, via: str) -> Any: ...
    def unbuilt(self, obj: Any) -> bool: ...

    checked_dtypes: dict[int, Any]


class Refused(Exception):
    """The file tried something the loader does not do; ``str`` is the reason, one line."""


Builder = Callable[[Any, tuple[Any, ...], Context], Any]


@dataclass(frozen=True)
class Reconstructor:
    """A callable the loader may call, with the checker that validates its arguments first."""

    locate: tuple[str, str]  # (module, attribute) to import: our choice, never the file's
    build: Builder
    instantiable: bool = False  # may stand as the class of NEWOBJ (joblib's array wrapper)


# --- argument checks --------------------------------------------------------------------------

_MAX_DIMS = 32
_DTYPE_CODE = re.compile(r"^[A-Za-z?][A-Za-z0-9]{0,15}$")
PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def is_int(value: Any) -> bool:
    return type(value) is int or (isinstance(value, np.integer) and not isinstance(value, bool))


def _ints(args: tuple[Any, ...], ctx: Context, what: str) -> tuple[int, ...]:
    if all(type(a) is int for a in args):
        return args
    if not all(is_int(a) for a in args):
        raise ctx.refuse(f"{what} was given {_kinds(args)}, not whole numbers")
    return tuple(int(a) for a in args)


def _kinds(args: Iterable[Any]) -> str:
    return "(" + ", ".join(type_name(a) for a in args) + ")"


def type_name(value: Any) -> str:
    """How a refusal names a value: a global by its dotted name, anything else by its type."""
    if isinstance(value, Name):
        return value.dotted
    if not isinstance(value, type) and callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', None) or '?'}.{value.__qualname__}"
    cls = value if isinstance(value, type) else type(value)
    return f"{cls.__module__}.{cls.__qualname__}".removeprefix("builtins.")


def shape_of(value: Any, ctx: Context, what: str) -> tuple[int, ...]:
    if type(value) is not tuple or len(value) > _MAX_DIMS:
        raise ctx.refuse(f"{what} has a shape that is not a short tuple: {type_name(value)}")
    for dim in value:
        if type(dim) is not int and not is_int(dim):
            raise ctx.refuse(f"{what}'s shape holds {type_name(dim)}, not a whole number")
        if dim < 0:
            raise ctx.refuse(f"{what} has a negative dimension {value}")
    return tuple(int(d) for d in value) if any(type(d) is not int for d in value) else value


def size_of(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def check_dtype(value: Any, ctx: Context, what: str) -> np.dtype[Any]:
    """A numpy dtype whose state is set (and can no longer change), with a safe layout."""
    if not isinstance(value, np.dtype):
        raise ctx.refuse(f"{what} was given {type_name(value)} where a numpy dtype belongs")
    if id(value) in ctx.checked_dtypes:
        return value
    if ctx.unbuilt(value):
        raise ctx.refuse(f"{what} was given a numpy dtype before its state was set")
    if value.names is not None or value.subdtype is not None:
        check_layout(value, ctx)
    ctx.checked_dtypes[id(value)] = value  # its state is set: it can no longer change
    return value


def check_layout(dtype: np.dtype[Any], ctx: Context) -> None:
    """Refuse record dtypes that could make numpy read one field as another (objects, overlap)."""
    if dtype.names is None:
        if dtype.subdtype is not None and dtype.subdtype[0].hasobject:
            raise ctx.refuse("the file declares a sub-array dtype of Python objects")
        return
    spans = []
    for name in dtype.names:
        field = dtype.fields[name]  # type: ignore[index]
        field_dtype, offset = field[0], field[1]
        if field_dtype.hasobject:
            raise ctx.refuse(f"the file declares a record dtype with an object field {name!r}")
        if offset < 0 or offset + field_dtype.itemsize > dtype.itemsize:
            raise ctx.refuse(f"the file declares a record field {name!r} outside its record")
        spans.append((offset, offset + field_dtype.itemsize))
    spans.sort()
    if any(end > start for (_, end), (start, _) in itertools.pairwise(spans)):
        raise ctx.refuse("the file declares a record dtype whose fields overlap")


def model_target(value: Any, ctx: Context, what: str) -> type:
    """The class behind a role-(a) token (or a trusted class), for a reconstructor argument."""
    if isinstance(value, Name) and (value.role == "model" or value.trusted):
        target: type = value.target
        return target
    raise ctx.refuse(f"{what} was given {type_name(value)}, which is not a model class")


def data_bytes(value: Any, ctx: Context, what: str) -> bytes | bytearray:
    if isinstance(value, (bytes, bytearray)):
        return value
    if type(value) is str:  # Python 2 pickles read with encoding="latin1"
        return value.encode("latin1")
    raise ctx.refuse(f"{what} was given {type_name(value)} where raw bytes belong")


# --- reconstructors ---------------------------------------------------------------------------


def _copyreg_reconstructor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 3:
        raise ctx.refuse("copyreg._reconstructor takes (class, base, state)")
    cls, base, state = args
    if base is object and state is None:
        return ctx.instantiate(cls, via="copyreg._reconstructor")
    target = model_target(cls, ctx, "copyreg._reconstructor")
    if base in (list, dict) and issubclass(target, base) and type(state) is base:
        obj = base.__new__(target)  # type: ignore[call-overload]
        base.__init__(obj, state)  # type: ignore[misc]  # list/dict fill from plain data only
        return ctx.fresh(obj)
    raise ctx.refuse(
        f"copyreg._reconstructor was given base {type_name(base)} with {type_name(state)}"
    )


def _newobj(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1:
        raise ctx.refuse("copyreg.__newobj__ was given constructor arguments")
    return ctx.instantiate(args[0], via="copyreg.__newobj__")


def _newobj_ex(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 3 or args[1] != () or args[2] != {}:
        raise ctx.refuse("copyreg.__newobj_ex__ was given constructor arguments")
    return ctx.instantiate(args[0], via="copyreg.__newobj_ex__")


_ARRAY_TYPES = ("numpy.ndarray", "numpy.matrix", "numpy.matrixlib.defmatrix.matrix",
                "numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray")  # fmt: skip


def _array_type(value: Any, ctx: Context, what: str) -> type:
    if isinstance(value, Name) and value.dotted in _ARRAY_TYPES:
        target: type = value.target
        return target
    raise ctx.refuse(f"{what} was given {type_name(value)}, not a numpy array type")


def _np_reconstruct(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 3:
        raise ctx.refuse("numpy's _reconstruct takes (type, shape, dtype)")
    subtype = _array_type(args[0], ctx, "numpy's _reconstruct")
    shape = shape_of(args[1], ctx, "numpy's _reconstruct")
    if size_of(shape) != 0 or args[2] not in (b"b", "b"):
        raise ctx.refuse(f"numpy's _reconstruct was asked to allocate shape {shape}")
    return ctx.fresh(fn(subtype, shape, args[2]))  # an empty array; BUILD gives it its data


def _np_scalar(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) not in (1, 2):
        raise ctx.refuse("numpy's scalar takes (dtype, data)")
    dtype = check_dtype(args[0], ctx, "numpy's scalar")
    if dtype.hasobject:
        return args[1] if len(args) == 2 else None
    data = data_bytes(args[1], ctx, "numpy's scalar") if len(args) == 2 else b""
    if len(data) != dtype.itemsize:
        raise ctx.refuse(f"numpy's scalar was given {len(data)} bytes for a {dtype.itemsize}-byte"
                         " value")  # fmt: skip
    return fn(dtype, bytes(data))


def _np_frombuffer(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) not in (4, 5):
        raise ctx.refuse("numpy's _frombuffer takes (buffer, dtype, shape, order)")
    buf, dtype, shape, order = args[:4]
    if not isinstance(buf, (bytes, bytearray)):
        raise ctx.refuse(f"numpy's _frombuffer was given {type_name(buf)} as its buffer")
    dtype = check_dtype(dtype, ctx, "numpy's _frombuffer")
    dims = shape_of(shape, ctx, "numpy's _frombuffer")
    if dtype.hasobject or size_of(dims) * dtype.itemsize != len(buf):
        raise ctx.refuse("numpy's _frombuffer was given a buffer that does not fit its shape")
    if order not in ("C", "F", "A", "K"):
        raise ctx.refuse(f"numpy's _frombuffer was given order {order!r}")
    axis_order = args[4] if len(args) == 5 else None
    if axis_order is not None and sorted(_ints(axis_order, ctx, "axis order")) != list(
        range(len(dims))
    ):
        raise ctx.refuse("numpy's _frombuffer was given an axis order that is no permutation")
    return fn(buf, dtype, dims, order, axis_order)


def _np_dtype(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not 1 <= len(args) <= 3 or type(args[0]) is not str or not _DTYPE_CODE.match(args[0]):
        raise ctx.refuse(f"numpy.dtype was given {_kinds(args)}")
    align = bool(args[1]) if len(args) > 1 else False
    # copy=True always: a dtype rebuilt without a copy is numpy's shared singleton, and setting
    # its state would change float64 for the whole process.
    return ctx.fresh(np.dtype(args[0], align, True))


def _ma_reconstruct(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 4:
        raise ctx.refuse("numpy.ma's _mareconstruct takes four arguments")
    subtype = _array_type(args[0], ctx, "numpy.ma's _mareconstruct")
    baseclass = _array_type(args[1], ctx, "numpy.ma's _mareconstruct")
    shape = shape_of(args[2], ctx, "numpy.ma's _mareconstruct")
    if (
        not issubclass(subtype, np.ma.MaskedArray)
        or size_of(shape) != 0
        or args[3]
        not in (
            b"b",
            "b",
        )
    ):
        raise ctx.refuse("numpy.ma's _mareconstruct was asked for something other than an "
                         "empty masked array")  # fmt: skip
    return ctx.fresh(fn(subtype, baseclass, shape, args[3]))


def _bit_generator(value: Any, ctx: Context) -> Any:
    from numpy.random import _pickle

    generators: dict[str, Any] = dict(_pickle.BitGenerators)
    if type(value) is str and value in generators:
        return ctx.fresh(generators[value]())
    if isinstance(value, Name) and value.target in generators.values():
        return ctx.fresh(value.target())
    if isinstance(value, np.random.BitGenerator):
        return value  # built earlier in this file, by this checker
    raise ctx.refuse(f"numpy's random-state rebuilder was given {type_name(value)}")


def _bit_generator_args(args: tuple[Any, ...], ctx: Context, what: str) -> Any:
    if len(args) > 2:
        raise ctx.refuse(f"{what} takes at most two arguments")
    if len(args) == 2 and not (
        isinstance(args[1], Name) and args[1].dotted.endswith("__bit_generator_ctor")
    ):
        raise ctx.refuse(f"{what} was given {type_name(args[1])} as its bit-generator factory")
    return _bit_generator(args[0] if args else "MT19937", ctx)


def _randomstate_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    bit_generator = _bit_generator_args(args, ctx, "numpy's RandomState rebuilder")
    return ctx.fresh(np.random.RandomState(bit_generator))


def _generator_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    bit_generator = _bit_generator_args(args, ctx, "numpy's Generator rebuilder")
    return ctx.fresh(np.random.Generator(bit_generator))


def _bit_generator_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) > 1:
        raise ctx.refuse("numpy's bit-generator rebuilder takes one argument")
    return _bit_generator(args[0] if args else "MT19937", ctx)


def _legacy_randomstate_ctor(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if args:
        raise ctx.refuse("numpy's legacy RandomState rebuilder takes no arguments")
    return ctx.fresh(np.random.RandomState(0))


def _pyx_unpickle(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """Cython's ``__pyx_unpickle_Cls(type, checksum, state)`` for the class it is named after."""
    if len(args) != 3 or not is_int(args[1]) or not (args[2] is None or type(args[2]) is tuple):
        raise ctx.refuse(f"{fn.__name__} was given {_kinds(args)}")
    owner = getattr(sys.modules[fn.__module__], fn.__name__.removeprefix("__pyx_unpickle_"))
    cls = args[0]
    target = cls.target if isinstance(cls, Name) else None
    if not (isinstance(target, type) and issubclass(target, owner)):
        raise ctx.refuse(f"{fn.__name__} was given {type_name(cls)}, not {owner.__name__}")
    return ctx.fresh(fn(target, int(args[1]), args[2]))


def _tree(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """``Tree(n_features, n_classes, n_outputs)``: sizes checked before its arrays exist."""
    if len(args) != 3:
        raise ctx.refuse("sklearn's Tree takes (n_features, n_classes, n_outputs)")
    n_features, n_outputs = _ints((args[0], args[2]), ctx, "sklearn's Tree")
    n_classes = args[1]
    if not isinstance(n_classes, np.ndarray) or n_classes.ndim != 1 or n_classes.dtype.kind != "i":
        raise ctx.refuse("sklearn's Tree was given n_classes that is not an integer vector")
    if not (0 < n_features < 2**31 and 0 < n_outputs <= 2**20 and len(n_classes) == n_outputs):
        raise ctx.refuse(f"sklearn's Tree was given sizes ({n_features}, {n_outputs})")
    if n_classes.size and not (n_classes.min() > 0 and n_classes.max() < 2**31):
        raise ctx.refuse("sklearn's Tree was given class counts out of range")
    ctx.charge(n_outputs * 16, "tree header")
    return ctx.fresh(fn(n_features, n_classes.astype(np.intp), n_outputs))


def _float_args(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """Cython loss objects that pickle as ``Loss(*parameters)``: at most two numbers."""
    if len(args) > 2 or not all(type(a) in (float, int) for a in args):
        raise ctx.refuse(f"{fn.__name__} was given {_kinds(args)}, not its numeric parameters")
    return fn(*args)


def _new_obj(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    """scikit-learn's ``newObj(cls)`` for KD/ball trees and distance metrics of its own module."""
    if len(args) != 1:
        raise ctx.refuse("newObj takes one class")
    target = model_target(args[0], ctx, "newObj")
    if target.__module__ != fn.__module__:
        raise ctx.refuse(f"newObj of {fn.__module__} was given {type_name(args[0])}")
    return ctx.fresh(fn(target))


def _plain_hashable(value: Any) -> bool:
    if type(value) in PLAIN_SCALARS or isinstance(value, np.generic):
        return True
    return type(value) in (tuple, frozenset) and all(_plain_hashable(v) for v in value)


def _items(args: tuple[Any, ...], ctx: Context, what: str) -> list[Any]:
    if not args:
        return []
    if len(args) != 1 or type(args[0]) not in (list, tuple):
        raise ctx.refuse(f"{what} was given {_kinds(args)}")
    items = list(args[0])
    if not all(_plain_hashable(item) for item in items):
        raise ctx.refuse(f"{what} was given members that are not plain values")
    ctx.charge(64 + 16 * len(items), what)
    return items


def _set(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return set(_items(args, ctx, "set"))


def _frozenset(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return frozenset(_items(args, ctx, "frozenset"))


def _slice(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not 1 <= len(args) <= 3 or not all(a is None or is_int(a) for a in args):
        raise ctx.refuse(f"slice was given {_kinds(args)}")
    return slice(*args)


def _range(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return range(*_ints(args, ctx, "range")) if 1 <= len(args) <= 3 else _too_many("range", ctx)


def _too_many(what: str, ctx: Context) -> Any:
    raise ctx.refuse(f"{what} was given the wrong number of arguments")


def _complex(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) > 2 or not all(type(a) in (int, float) for a in args):
        raise ctx.refuse(f"complex was given {_kinds(args)}")
    return complex(*args)


def _bytearray(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes):
        return bytearray(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin-1", "latin1"):
        ctx.charge(len(args[0]), "bytearray")
        return bytearray(args[0], "latin-1")
    raise ctx.refuse(f"bytearray was given {_kinds(args)}")


def _bytes(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise ctx.refuse(f"bytes was given {_kinds(args)}")


_TEXT_CODECS = frozenset({"latin1", "latin-1", "ascii", "utf-8", "utf8"})


def _codecs_encode(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 2 or type(args[0]) is not str or args[1] not in _TEXT_CODECS:
        raise ctx.refuse(f"_codecs.encode was given {_kinds(args)}")
    ctx.charge(len(args[0]), "bytes")
    return _codecs.encode(args[0], args[1])


def _ordered_dict(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if args:
        raise ctx.refuse("OrderedDict was given arguments (its items follow separately)")
    return collections.OrderedDict()


# What a defaultdict may make for a missing key: empty containers and zero values.
_FACTORIES = (None, list, dict, set, frozenset, tuple, int, float, str, bool,
              collections.OrderedDict, collections.defaultdict)  # fmt: skip


def _defaultdict(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    factory = args[0] if args else None
    if isinstance(factory, Name):  # OrderedDict, set...: admitted reconstructors, used as types
        factory = factory.target
    if len(args) > 1 or not any(factory is allowed for allowed in _FACTORIES):
        raise ctx.refuse(f"defaultdict was given {_kinds(args)} as its default factory")
    return collections.defaultdict(factory)


def _counter(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) > 1 or (args and type(args[0]) is not dict):
        raise ctx.refuse(f"Counter was given {_kinds(args)}")
    counts = args[0] if args else {}
    if not all(is_int(v) for v in counts.values()):
        raise ctx.refuse("Counter was given counts that are not whole numbers")
    return collections.Counter(counts)


def _partial(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1 or not is_inert_callable(args[0]):
        raise ctx.refuse(f"functools.partial was given {_kinds(args)}, not an admitted function")
    return ctx.fresh(functools.partial(args[0]))


def _datetime_like(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    # datetime/date/time pickle as their packed bytes (and a tzinfo); the types check the rest.
    if not 1 <= len(args) <= 2 or not isinstance(args[0], (bytes, str)):
        raise ctx.refuse(f"{fn.__name__} was given {_kinds(args)}")
    if len(args) == 2 and not (args[1] is None or isinstance(args[1], datetime.tzinfo)):
        raise ctx.refuse(f"{fn.__name__} was given {type_name(args[1])} as its time zone")
    if isinstance(args[0], str):
        return fn(args[0].encode("latin1"), *args[1:])
    return fn(*args)


def _timedelta(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    return datetime.timedelta(*_ints(args, ctx, "timedelta")) if len(args) <= 3 else None


def _timezone(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if not 1 <= len(args) <= 2 or not isinstance(args[0], datetime.timedelta):
        raise ctx.refuse(f"timezone was given {_kinds(args)}")
    if len(args) == 2 and type(args[1]) is not str:
        raise ctx.refuse("timezone was given a name that is not text")
    return datetime.timezone(*args)


def _decimal(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    if len(args) != 1 or type(args[0]) is not str or len(args[0]) > 1000:
        raise ctx.refuse(f"Decimal was given {_kinds(args)}")
    return decimal.Decimal(args[0])


def _array_wrapper(fn: Any, args: tuple[Any, ...], ctx: Context) -> Any:
    raise ctx.refuse("joblib's array wrapper was called instead of rebuilt")


_NP = ("numpy._core", "numpy.core")
RECONSTRUCTORS: dict[str, Reconstructor] = {
    "copyreg._reconstructor": Reconstructor(("copyreg", "_reconstructor"),
                                            _copyreg_reconstructor),
    "copyreg.__newobj__": Reconstructor(("copyreg", "__newobj__"), _newobj),
    "copyreg.__newobj_ex__": Reconstructor(("copyreg", "__newobj_ex__"), _newobj_ex),
    **{f"{np_}.multiarray._reconstruct": Reconstructor(("numpy._core.multiarray", "_reconstruct"),
                                                       _np_reconstruct) for np_ in _NP},
    **{f"{np_}.multiarray.scalar": Reconstructor(("numpy._core.multiarray", "scalar"),
                                                 _np_scalar) for np_ in _NP},
    **{f"{np_}.numeric._frombuffer": Reconstructor(("numpy._core.numeric", "_frombuffer"),
                                                   _np_frombuffer) for np_ in _NP},
    "numpy.dtype": Reconstructor(("numpy", "dtype"), _np_dtype),
    "numpy.ma.core._mareconstruct": Reconstructor(("numpy.ma.core", "_mareconstruct"),
                                                  _ma_reconstruct),
    "numpy.random._pickle.__randomstate_ctor": Reconstructor(
        ("numpy.random._pickle", "__randomstate_ctor"), _randomstate_ctor),
    "numpy.random._pickle.__generator_ctor": Reconstructor(
        ("numpy.random._pickle", "__generator_ctor"), _generator_ctor),
    "numpy.random._pickle.__bit_generator_ctor": Reconstructor(
        ("numpy.random._pickle", "__bit_generator_ctor"), _bit_generator_ctor),
    "numpy.random.__RandomState_ctor": Reconstructor(("numpy.random", "RandomState"),
                                                     _legacy_randomstate_ctor),
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": Reconstructor(
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"), _pyx_unpickle),
    "joblib.numpy_pickle.NumpyArrayWrapper": Reconstructor(
        ("joblib.numpy_pickle", "NumpyArrayWrapper"), _array_wrapper, instantiable=True),
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper": Reconstructor(
        ("joblib.numpy_pickle", "NumpyArrayWrapper"), _array_wrapper, instantiable=True),
    "sklearn.tree._tree.Tree": Reconstructor(("sklearn.tree._tree", "Tree"), _tree),
    **{f"sklearn.neighbors.{m}.newObj": Reconstructor((f"sklearn.neighbors.{m}", "newObj"),
                                                      _new_obj)
       for m in ("_kd_tree", "_ball_tree")},
    "sklearn.metrics._dist_metrics.newObj": Reconstructor(("sklearn.metrics._dist_metrics",
                                                           "newObj"), _new_obj),
    "builtins.set": Reconstructor(("builtins", "set"), _set),
    "builtins.frozenset": Reconstructor(("builtins", "frozenset"), _frozenset),
    "builtins.slice": Reconstructor(("builtins", "slice"), _slice),
    "builtins.range": Reconstructor(("builtins", "range"), _range),
    "builtins.complex": Reconstructor(("builtins", "complex"), _complex),
    "builtins.bytearray": Reconstructor(("builtins", "bytearray"), _bytearray),
    "builtins.bytes": Reconstructor(("builtins", "bytes"), _bytes),
    "_codecs.encode": Reconstructor(("_codecs", "encode"), _codecs_encode),
    "collections.OrderedDict": Reconstructor(("collections", "OrderedDict"), _ordered_dict),
    "collections.defaultdict": Reconstructor(("collections", "defaultdict"), _defaultdict),
    "collections.Counter": Reconstructor(("collections", "Counter"), _counter),
    "functools.partial": Reconstructor(("functools", "partial"), _partial),
    **{f"datetime.{n}": Reconstructor(("datetime", n), _datetime_like)
       for n in ("datetime", "date", "time")},
    "datetime.timedelta": Reconstructor(("datetime", "timedelta"), _timedelta),
    "datetime.timezone": Reconstructor(("datetime", "timezone"), _timezone),
    "decimal.Decimal": Reconstructor(("decimal", "Decimal"), _decimal),
}  # fmt: skip
# Cython losses that pickle as ``Loss(*parameters)`` (scikit-learn's, by release).
_CYTHON_LOSSES = {
    "sklearn._loss._loss": (
        "CyAbsoluteError", "CyExponentialLoss", "CyHalfBinomialLoss", "CyHalfGammaLoss",
        "CyHalfMultinomialLoss", "CyHalfPoissonLoss", "CyHalfSquaredError", "CyHalfTweedieLoss",
        "CyHalfTweedieLossIdentity", "CyHuberLoss", "CyPinballLoss",
    ),
    "sklearn.linear_model._sgd_fast": (
        "Hinge", "SquaredHinge", "ModifiedHuber", "Log", "SquaredLoss", "Huber",
        "EpsilonInsensitive", "SquaredEpsilonInsensitive",
    ),
}  # fmt: skip
for _module, _names in _CYTHON_LOSSES.items():
    for _name in _names:
        RECONSTRUCTORS[f"{_module}.{_name}"] = Reconstructor((_module, _name), _float_args)
        RECONSTRUCTORS[f"{_module}.__pyx_unpickle_{_name}"] = Reconstructor(
            (_module, f"__pyx_unpickle_{_name}"), _pyx_unpickle
        )
for _name in ("Classification", "Regression"):  # the SGD losses' Cython base classes
    RECONSTRUCTORS[f"sklearn.linear_model._sgd_fast.__pyx_unpickle_{_name}"] = Reconstructor(
        ("sklearn.linear_model._sgd_fast", f"__pyx_unpickle_{_name}"), _pyx_unpickle
    )


# --- resolving a name -------------------------------------------------------------------------


def _import_attr(module: str, attr: str) -> Any:
    return getattr(importlib.import_module(module), attr)


@functools.cache
def _inert_values() -> dict[str, Any]:
    """Role (c), by dotted name, resolved once per process."""
    values: dict[str, Any] = {}
    for ufunc in SAFE_UFUNCS:
        values[f"numpy.{ufunc}"] = getattr(np, ufunc)
    for reduction in _NUMPY_REDUCTIONS:
        if hasattr(np, reduction):
            values[f"numpy.{reduction}"] = getattr(np, reduction)
    for numpy_type in _NUMPY_TYPES:
        if hasattr(np, numpy_type):
            values[f"numpy.{numpy_type}"] = getattr(np, numpy_type)
    for builtin in _BUILTIN_TYPES:
        values[f"builtins.{builtin}"] = getattr(builtins, builtin)
    for dotted in (*_INERT_FUNCTIONS, *_metric_functions()):
        module, _, name = dotted.rpartition(".")
        try:
            values[dotted] = _import_attr(module, name)
        except (ImportError, AttributeError):
            continue  # a function this scikit-learn release does not have
    return values


def _metric_functions() -> frozenset[str]:
    """Score functions of scikit-learn's named scorers (a fitted search keeps its scorer's)."""
    from sklearn.metrics import get_scorer, get_scorer_names

    names: set[str] = set()
    for scorer_name in get_scorer_names():
        func = getattr(get_scorer(scorer_name), "_score_func", None)
        if func is not None and inspect.isfunction(func):
            names.add(f"{func.__module__}.{func.__qualname__}")
    return frozenset(names)


@functools.cache
def inert_callables() -> frozenset[int]:
    return frozenset(id(v) for v in _inert_values().values() if callable(v))


def is_inert_callable(value: Any) -> bool:
    return id(value) in inert_callables() and not isinstance(value, type)


@functools.cache
def inert_types() -> frozenset[type]:
    return frozenset(v for v in _inert_values().values() if isinstance(v, type))


def _estimator_class(module: str, name: str) -> type | None:
    """A public estimator the pickle names by its defining module, or ``None``.

    Only the listed package is imported; the defining module must be one its import loaded.
    """
    for package, names in SKLEARN_ESTIMATORS.items():
        if name in names and (module == package or module.startswith(package + ".")):
            enabler = _EXPERIMENTAL.get(name)
            importlib.import_module(enabler or package)
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
    inert = _inert_values()
    if dotted in inert:
        return (inert[dotted],)
    reconstructor = RECONSTRUCTORS.get(dotted)
    if reconstructor is not None:
        try:
            target = _import_attr(*reconstructor.locate)
        except (ImportError, AttributeError):
            return None
        return Name(dotted, "reconstructor", target)
    standin = STANDINS.get(dotted)
    if standin is not None:
        from alphapulse_onnx.loading import standins

        return Name(dotted, "model", getattr(standins, standin))
    found = _helper_class(module, name) or (
        _estimator_class(module, name) if module.startswith("sklearn.") else None
    )
    return None if found is None else Name(dotted, "model", found)


def admitted_names() -> dict[Role, set[str]]:
    """Every name the lists admit, by role (for the test that enumerates them)."""
    roles: dict[Role, set[str]] = {"model": set(), "reconstructor": set(), "value": set()}
    roles["value"].update(_inert_values())
    roles["reconstructor"].update(RECONSTRUCTORS)
    roles["model"].update(STANDINS)
    for module, names in MODEL_HELPERS.items():
        roles["model"].update(f"{module}.{name}" for name in names)
    for package, names in SKLEARN_ESTIMATORS.items():
        for name in names:
            importlib.import_module(_EXPERIMENTAL.get(name, package))
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
