"""Where every name an old pickle uses lives today: one table for scikit-learn 0.20 to now.

scikit-learn made most modules private in 0.22-0.24 (``sklearn.ensemble.forest`` is now
``sklearn.ensemble._forest``), moved the distance metrics to ``sklearn.metrics`` (1.0) and gave
their float64 versions a suffix (1.3). Some classes were retired with no successor class: their
saved state becomes one of apo's placeholders (``standins``), which ``upgrades`` translates to
what the running release uses, or refuses by name. Nothing here imports a module that a file
names; the answers are table lookups plus the loader's own positive lists.
"""

from __future__ import annotations

import importlib
import sys

_DIST_METRICS = "sklearn.metrics._dist_metrics"
# Modules renamed by hand (the rest follow the 0.22 rule: ``sklearn.a.b`` -> ``sklearn.a._b``).
MODULE_MOVES: dict[str, str] = {
    "sklearn.tree.tree": "sklearn.tree._classes",
    "sklearn.neighbors.dist_metrics": "sklearn.metrics._dist_metrics",
    "sklearn.neighbors._dist_metrics": "sklearn.metrics._dist_metrics",  # 1.0
    "sklearn.ensemble.gradient_boosting": "sklearn.ensemble._gb",
    "sklearn.ensemble.voting_classifier": "sklearn.ensemble._voting",
    "sklearn.ensemble.voting": "sklearn.ensemble._voting",
    "sklearn.ensemble.iforest": "sklearn.ensemble._iforest",
    "sklearn.utils.bunch": "sklearn.utils._bunch",
    "sklearn.externals.joblib.numpy_pickle": "joblib.numpy_pickle",
    # scikit-learn 1.5's build named its Cython loss module without the package.
    "_loss": "sklearn._loss._loss",
}
# Single names that moved somewhere the module rule cannot find.
NAME_MOVES: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy", "round_"): ("numpy", "round"),  # removed in numpy 2.0
    ("sklearn.utils", "Bunch"): ("sklearn.utils._bunch", "Bunch"),
}
# Classes retired without a successor class, by the placeholder their saved state becomes.
RETIRED: dict[str, str] = {
    # gradient boosting's loss objects (replaced by sklearn._loss in 1.4) and, before 0.21, its
    # initial estimators (replaced by DummyClassifier/DummyRegressor)
    **{f"{module}.{name}": "RetiredBoostingLoss"
       for module in ("sklearn.ensemble._gb_losses", "sklearn.ensemble.gradient_boosting")
       for name in ("BinomialDeviance", "MultinomialDeviance", "ExponentialLoss",
                    "LeastSquaresError", "LeastAbsoluteError", "HuberLossFunction",
                    "QuantileLossFunction")},
    **{f"sklearn.ensemble.gradient_boosting.{name}": f"Old{name}"
       for name in ("LogOddsEstimator", "ScaledLogOddsEstimator", "PriorProbabilityEstimator",
                    "MeanEstimator", "QuantileEstimator", "ZeroEstimator")},
    # HistGradientBoosting's loss objects before 1.1
    **{f"sklearn.ensemble._hist_gradient_boosting.loss.{name}": "RetiredBoostingLoss"
       for name in ("LeastSquares", "LeastAbsoluteDeviation", "BinaryCrossEntropy",
                    "CategoricalCrossEntropy", "Poisson")},
    "sklearn.utils.deprecation.DeprecationDict": "LoadedDict",  # GridSearchCV.cv_results_ (0.20)
}  # fmt: skip
# Cython loss objects of SGD that later releases removed (fit-only state; dropped on upgrade).
RETIRED_SGD_LOSSES = ("Log", "SquaredLoss", "Huber")


def current_module(module: str) -> str | None:
    """Today's name for an old scikit-learn module, or ``None`` when it never moved."""
    moved = MODULE_MOVES.get(module)
    if moved is not None:
        return moved
    parts = module.split(".")
    if len(parts) == 3 and parts[0] == "sklearn" and not parts[2].startswith("_"):
        return f"{parts[0]}.{parts[1]}._{parts[2]}"
    return None


def successor(module: str, name: str, estimators: dict[str, frozenset[str]]) -> tuple[str, str]:
    """The ``(module, name)`` to look up instead of an old one the running release lacks.

    ``estimators`` is the loader's list of public estimators by package: a public estimator
    named from any old module of its package resolves to where its package defines it today.
    Returns the input unchanged when nothing is known.
    """
    if module == _DIST_METRICS and name.endswith("Distance"):
        return module, f"{name}64"  # EuclideanDistance -> EuclideanDistance64 (1.3)
    if (module, name) in NAME_MOVES:
        return NAME_MOVES[(module, name)]
    if module.startswith("numpy.core"):  # numpy 2.0 renamed numpy.core to numpy._core
        return "numpy._core" + module.removeprefix("numpy.core"), name
    for package, names in estimators.items():
        if name in names and (module == package or module.startswith(package + ".")):
            defined = getattr(importlib.import_module(package), name, None)
            if isinstance(defined, type):
                return defined.__module__, name
    moved = current_module(module)
    if moved is not None:
        return moved, name
    return module, name


def missing_in_release(module: str, name: str) -> bool:
    """Whether an imported scikit-learn module lacks ``name`` (checked without importing)."""
    loaded = sys.modules.get(module)
    return loaded is not None and name not in vars(loaded)
