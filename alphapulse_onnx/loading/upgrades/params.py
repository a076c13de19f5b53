"""Constructor parameters that the running class has and an older pickle lacks.

Every later release adds parameters; an estimator unpickled from before has no attribute for
them, and scikit-learn's ``get_params``/``clone``/``repr`` fail on it. Each missing parameter
gets the value that reproduces how the model behaved when it was saved:

1. a parameter that was renamed takes the old one's value (``RENAMED``);
2. one whose old behaviour differs from today's default takes the recorded value
   (``OLD_BEHAVIOUR``);
3. otherwise today's default, which for the additions scikit-learn made keeps the old behaviour
   (a new option defaults to "as before": ``monotonic_cst=None``, ``transform_input=None``...).
"""

from __future__ import annotations

from typing import Any

# (class name, old parameter, today's name)
RENAMED: tuple[tuple[str, str, str], ...] = (
    *((owner, "base_estimator", "estimator") for owner in (
        "AdaBoostClassifier", "AdaBoostRegressor", "BaggingClassifier", "BaggingRegressor",
        "CalibratedClassifierCV", "RANSACRegressor", "SelfTrainingClassifier",
    )),  # 1.2
    ("OneHotEncoder", "sparse", "sparse_output"),  # 1.2
    ("AgglomerativeClustering", "affinity", "metric"),  # 1.2
    ("FeatureAgglomeration", "affinity", "metric"),  # 1.2
    ("SGDClassifier", "n_iter", "max_iter"),  # 0.21
    ("SGDRegressor", "n_iter", "max_iter"),
)  # fmt: skip
# (class name, parameter, the value that reproduces the old behaviour) where today's default
# does not. Most only change how a refit would train; recorded so get_params tells the truth.
OLD_BEHAVIOUR: dict[tuple[str, str], Any] = {
    **{(nb, "force_alpha"): False
       for nb in ("MultinomialNB", "ComplementNB", "BernoulliNB", "CategoricalNB")},  # 1.2-1.4
    ("KMeans", "n_init"): 10,  # default "auto" since 1.4
    ("MiniBatchKMeans", "n_init"): 3,
    ("LinearSVC", "dual"): True,  # default "auto" since 1.5
    ("LinearSVR", "dual"): True,
    ("HistGradientBoostingClassifier", "categorical_features"): None,  # "from_dtype" since 1.6
    ("HistGradientBoostingRegressor", "categorical_features"): None,
}  # fmt: skip
# (class name, parameter) -> {old value: today's value}, for option values that were renamed.
VALUE_RENAMES: dict[tuple[str, str], dict[Any, Any]] = {
    ("SGDClassifier", "loss"): {"log": "log_loss"},  # 1.1
    ("GradientBoostingClassifier", "loss"): {"deviance": "log_loss"},  # 1.1
    ("GradientBoostingRegressor", "loss"): {"ls": "squared_error", "lad": "absolute_error"},
    ("HistGradientBoostingClassifier", "loss"): {
        "auto": "log_loss", "binary_crossentropy": "log_loss",
        "categorical_crossentropy": "log_loss"},  # 1.1-1.3
    ("HistGradientBoostingRegressor", "loss"): {
        "least_squares": "squared_error", "least_absolute_deviation": "absolute_error"},
    **{(tree, "criterion"): {"mse": "squared_error", "mae": "absolute_error"}  # 1.0
       for tree in ("DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor",
                    "ExtraTreesRegressor")},
    ("GradientBoostingClassifier", "criterion"): {"mse": "squared_error"},
    ("GradientBoostingRegressor", "criterion"): {"mse": "squared_error"},
    **{(tree, "max_features"): {"auto": "sqrt"}  # 1.3: "auto" meant "sqrt" for classifiers
       for tree in ("DecisionTreeClassifier", "ExtraTreeClassifier", "RandomForestClassifier",
                    "ExtraTreesClassifier")},
    **{(tree, "max_features"): {"auto": 1.0}  # and all features for regressors
       for tree in ("DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor",
                    "ExtraTreesRegressor")},
}  # fmt: skip
_RENAMED_BY_CLASS: dict[str, list[tuple[str, str]]] = {}
for _owner, _old, _new in RENAMED:
    _RENAMED_BY_CLASS.setdefault(_owner, []).append((_old, _new))
# Fitted attributes renamed with their parameter (``base_estimator_`` -> ``estimator_``).
_RENAMED_FITTED = {"base_estimator": ("base_estimator_", "estimator_")}


def fill(estimator: Any, notes: list[str]) -> None:
    """Give ``estimator`` every constructor parameter it lacks (see the module docstring)."""
    cls = type(estimator)
    names = _parameter_names(cls)
    attributes = estimator.__dict__
    missing = [name for name in names if name not in attributes]
    if not missing:
        return
    renamed = {new: old for old, new in _renamed_for(cls) if old in attributes}
    defaults: dict[str, Any] = {}
    for klass in reversed(_constructors(cls)):  # the most derived class's default wins
        defaults.update(_defaults(klass))
    filled: list[str] = []
    for name in missing:
        owner_name = _owner_with(cls, name)
        if name in renamed:
            old = renamed[name]
            attributes[name] = attributes.pop(old)
            filled.append(f"{name} (was {old})")
            fitted_old, fitted_new = _RENAMED_FITTED.get(old, (None, None))
            if fitted_old and fitted_old in attributes and fitted_new not in attributes:
                attributes[fitted_new] = attributes.pop(fitted_old)
            continue
        if (owner_name, name) in OLD_BEHAVIOUR:
            attributes[name] = OLD_BEHAVIOUR[(owner_name, name)]
            filled.append(f"{name}={attributes[name]!r}")
            continue
        if name in defaults:
            attributes[name] = defaults[name]
            filled.append(f"{name}={defaults[name]!r}")
    if filled:
        notes.append(f"{cls.__name__}: added {', '.join(filled)}")


def _constructors(cls: type) -> list[type]:
    """The classes whose constructor parameters ``get_params`` reads: the class, and parents
    with their own ``__init__`` that a wrapper's ``get_params`` also asks (XGBoost's
    ``XGBClassifier`` reads ``XGBModel``'s)."""

    def asked(klass: type) -> bool:
        return ("__init__" in vars(klass) and hasattr(klass, "_get_param_names")
                and klass.__module__.split(".")[0] not in ("sklearn", "builtins"))  # fmt: skip

    return [klass for klass in cls.__mro__ if klass is cls or asked(klass)]


def _parameter_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in _constructors(cls):
        try:
            found = klass._get_param_names()  # type: ignore[attr-defined]
        except Exception:  # noqa: S112 (a signature scikit-learn cannot read: left as saved)
            continue
        names.extend(name for name in found if name not in names)
    return names


def rename_values(estimator: Any, notes: list[str]) -> None:
    """Option values that were renamed (``loss="deviance"`` is ``loss="log_loss"``)."""
    attributes = estimator.__dict__
    cls_name = type(estimator).__name__
    for name in [name for cls, name in VALUE_RENAMES if cls in _class_names(estimator)]:
        value = attributes.get(name)
        renames = VALUE_RENAMES.get((_owner_with(type(estimator), name, VALUE_RENAMES), name))
        if renames is None or not isinstance(value, (str, int, float)) or value not in renames:
            continue
        attributes[name] = renames[value]
        notes.append(f"{cls_name}({name}={value!r}) is now {name}={renames[value]!r}")


def _class_names(estimator: Any) -> set[str]:
    return {klass.__name__ for klass in type(estimator).__mro__}


def _renamed_for(cls: type) -> list[tuple[str, str]]:
    for klass in cls.__mro__:
        if klass.__name__ in _RENAMED_BY_CLASS:
            return _RENAMED_BY_CLASS[klass.__name__]
    return []


def _owner_with(cls: type, name: str, table: Any = None) -> str:
    """The scikit-learn class a table entry is keyed by (apo's legacy subclasses share their
    parent's)."""
    table = OLD_BEHAVIOUR if table is None else table
    for klass in cls.__mro__:
        if klass.__module__.startswith("sklearn.") and (klass.__name__, name) in table:
            return klass.__name__
    return cls.__name__


def _defaults(cls: type) -> dict[str, Any]:
    import inspect

    constructor: Any = cls.__init__  # type: ignore[misc]
    init = getattr(constructor, "deprecated_original", constructor)
    try:
        parameters = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
