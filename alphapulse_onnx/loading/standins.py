"""apo's stand-ins for scikit-learn classes whose behaviour forwards or calls what they hold.

A fitted search keeps its scorer (whose ``__call__`` looks up a method by a name stored in the
file), a VotingClassifier its ``named_estimators_`` Bunch (attribute access forwards to items),
a ColumnTransformer its ``make_column_selector`` (called on data), a calibrated model its
``FrozenEstimator`` (forwards every attribute to what it holds). Loaded as themselves, each is a
step an attacker can chain. The loader rebuilds them as these classes instead: the same saved
data, and only the behaviour inference needs, by fixed names.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator

# public since 1.0 (the origin worker runs older releases)
from sklearn.utils.metaestimators import available_if


class LoadedBunch(dict):  # type: ignore[type-arg]
    """A ``sklearn.utils.Bunch`` as a plain dict: items by key, no attribute forwarding."""

    def __setstate__(self, state: Any) -> None:
        pass  # Bunch ignores its pickled __dict__ too; its items come as dict items


class RemainderColsList(list):  # type: ignore[type-arg]
    """scikit-learn 1.5-1.6's private remainder column list (removed in 1.7): a plain list."""

    def __setstate__(self, state: Any) -> None:
        pass  # its attributes only steered a deprecation warning


class InertScorer:
    """A scorer's saved data (score function, sign, options); never called by apo."""

    def __repr__(self) -> str:
        func = self.__dict__.get("_score_func")
        return f"InertScorer({getattr(func, '__name__', 'passthrough')})"


class InertColumnSelector:
    """``make_column_selector``'s saved pattern and dtypes; fitted models use resolved columns."""

    def __repr__(self) -> str:
        fields = ("pattern", "dtype_include", "dtype_exclude")
        return (
            "InertColumnSelector("
            + ", ".join(f"{f}={self.__dict__.get(f)!r}" for f in fields)
            + ")"
        )


def _inner_has(method: str) -> Any:
    return lambda self: hasattr(self.estimator, method)


class FrozenModel(BaseEstimator):  # type: ignore[misc]
    """``sklearn.frozen.FrozenEstimator``: the fitted estimator it holds, for inference only."""

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def __sklearn_tags__(self) -> Any:
        return self.estimator.__sklearn_tags__()

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> Any:
        return self.estimator.classes_

    @property
    def n_features_in_(self) -> Any:
        return self.estimator.n_features_in_

    @available_if(_inner_has("predict"))  # type: ignore[untyped-decorator]
    def predict(self, X: Any) -> Any:
        return self.estimator.predict(X)

    @available_if(_inner_has("predict_proba"))  # type: ignore[untyped-decorator]
    def predict_proba(self, X: Any) -> Any:
        return self.estimator.predict_proba(X)

    @available_if(_inner_has("predict_log_proba"))  # type: ignore[untyped-decorator]
    def predict_log_proba(self, X: Any) -> Any:
        return self.estimator.predict_log_proba(X)

    @available_if(_inner_has("decision_function"))  # type: ignore[untyped-decorator]
    def decision_function(self, X: Any) -> Any:
        return self.estimator.decision_function(X)

    @available_if(_inner_has("transform"))  # type: ignore[untyped-decorator]
    def transform(self, X: Any) -> Any:
        return self.estimator.transform(X)

    @available_if(_inner_has("score_samples"))  # type: ignore[untyped-decorator]
    def score_samples(self, X: Any) -> Any:
        return self.estimator.score_samples(X)


class LoadedDict(dict):  # type: ignore[type-arg]
    """A dict subclass of scikit-learn's that warned on access (0.20's ``DeprecationDict``)."""

    def __setstate__(self, state: Any) -> None:
        pass  # its attributes only named the warnings to give


# --- placeholders for retired classes (``upgrades.names.RETIRED``) -------------------------------
# Their saved state is kept as data; ``upgrades`` replaces each with what the running release
# uses, or refuses the file naming it. Nothing ever calls them.


class Retired:
    """Saved state of a class that scikit-learn retired."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class RetiredBoostingLoss(Retired):
    """A gradient-boosting loss object from before scikit-learn 1.4 (1.1 for histogram GB)."""


class RetiredSGDLoss:
    """An SGD loss object that later releases removed (training-time state only)."""

    def __init__(self, *parameters: float) -> None:
        self.parameters = parameters

    def __repr__(self) -> str:
        return f"RetiredSGDLoss{self.parameters!r}"


# Gradient boosting's initial estimators before 0.21 (then DummyClassifier/DummyRegressor).
class OldLogOddsEstimator(Retired):
    """``prior``: the log odds of the positive class."""


class OldScaledLogOddsEstimator(Retired):
    """``prior``: half the log odds (the exponential loss's scale)."""


class OldPriorProbabilityEstimator(Retired):
    """``priors``: class frequencies."""


class OldMeanEstimator(Retired):
    """``mean``: the training target's mean."""


class OldQuantileEstimator(Retired):
    """``quantile``: the training target's ``alpha`` quantile."""


class OldZeroEstimator(Retired):
    """Predicts zero."""
