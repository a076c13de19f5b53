"""Behaviour that scikit-learn removed but fitted models still rely on, as apo's own subclasses.

A model pickled by an older release keeps its saved state when a later release changes what
``predict`` does with it. Two such changes turn old models' answers silently wrong:

- ``LogisticRegression(multi_class="ovr")`` (the default before 0.22, and "auto" with liblinear)
  gave one-vs-rest probabilities; since 1.8 every multiclass model gets softmax probabilities.
- ``AdaBoostClassifier(algorithm="SAMME.R")`` (the default before 1.4) combined its trees'
  probabilities; since 1.6 only SAMME (their votes) remains.

and one changes raw scores: multiclass gradient boosting before 1.4 started from log(prior)
rather than the centred logit (``UncenteredMultinomialLink``).

The loader's upgrade gives such a model one of these classes (same state, the old ``predict``),
so scikit-learn fallback, parity and the ONNX artifact (skl2onnx reads ``multi_class`` and
``algorithm`` itself) all give the answers the model gave when it was trained. The code is
scikit-learn 1.5's, which computed these answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn._loss.link import MultinomialLogit
from sklearn.ensemble import AdaBoostClassifier
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV


def _ovr_probabilities(model: Any, X: Any) -> Any:
    decision = model.decision_function(X)
    if decision.ndim == 1:  # binary: the same as today's
        positive = expit(decision)
        return np.column_stack([1 - positive, positive])
    probabilities = expit(decision)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities


class OneVsRestLogisticRegression(LogisticRegression):  # type: ignore[misc]
    """A ``LogisticRegression`` fitted one-vs-rest: each class's sigmoid, normalised."""

    def predict_proba(self, X: Any) -> Any:
        return _ovr_probabilities(self, X)

    def predict_log_proba(self, X: Any) -> Any:
        return np.log(self.predict_proba(X))


class OneVsRestLogisticRegressionCV(LogisticRegressionCV):  # type: ignore[misc]
    """``LogisticRegressionCV`` fitted one-vs-rest (see ``OneVsRestLogisticRegression``)."""

    def predict_proba(self, X: Any) -> Any:
        return _ovr_probabilities(self, X)

    def predict_log_proba(self, X: Any) -> Any:
        return np.log(self.predict_proba(X))


def _samme_r_scores(estimator: Any, n_classes: int, X: Any) -> Any:
    """Zhu et al. (2009), algorithm 4, step 2c: a tree's centred log-probabilities."""
    proba = estimator.predict_proba(X)
    np.clip(proba, np.finfo(proba.dtype).eps, None, out=proba)
    log_proba = np.log(proba)
    return (n_classes - 1) * (log_proba - (1.0 / n_classes) * log_proba.sum(axis=1)[:, np.newaxis])


class SammeRAdaBoostClassifier(AdaBoostClassifier):  # type: ignore[misc]
    """An ``AdaBoostClassifier`` fitted with ``algorithm="SAMME.R"``."""

    def decision_function(self, X: Any) -> Any:
        X = self._check_X(X)
        n_classes = self.n_classes_
        pred = sum(_samme_r_scores(tree, n_classes, X) for tree in self.estimators_)
        pred = np.asarray(pred, dtype=np.float64) / self.estimator_weights_.sum()
        if n_classes == 2:
            pred[:, 0] *= -1
            return pred.sum(axis=1)
        return pred

    def predict(self, X: Any) -> Any:
        pred = self.decision_function(X)
        if self.n_classes_ == 2:
            return self.classes_.take(pred > 0, axis=0)
        return self.classes_.take(np.argmax(pred, axis=1), axis=0)

    def predict_proba(self, X: Any) -> Any:
        n_classes = self.n_classes_
        if n_classes == 1:
            return np.ones((len(X), 1))
        decision = self.decision_function(X)
        if n_classes == 2:
            decision = np.vstack([-decision, decision]).T / 2
        else:
            decision = decision / (n_classes - 1)
        return softmax(decision, axis=1)

    def predict_log_proba(self, X: Any) -> Any:
        return np.log(self.predict_proba(X))


class UncenteredMultinomialLink(MultinomialLogit):  # type: ignore[misc]
    """Multiclass gradient boosting before 1.4 started each class's raw score at log(prior)
    (0.20: at the prior itself), not centred over the classes. Probabilities are the same softmax;
    raw scores (``decision_function``) differ by a constant unless the start is kept."""

    def __init__(self, start: str = "log") -> None:
        self.start = start

    def link(self, y_pred: Any) -> Any:
        return np.log(y_pred) if self.start == "log" else np.asarray(y_pred, dtype=np.float64)


def uncentered_multinomial(loss: Any, start: str) -> Any:
    """``loss`` (today's multinomial loss) with the old start of raw scores."""
    loss.link = UncenteredMultinomialLink(start)
    return loss


# Which subclass each legacy setting gets, by the class it was saved as.
LEGACY_CLASSES: dict[type, type] = {
    LogisticRegression: OneVsRestLogisticRegression,
    LogisticRegressionCV: OneVsRestLogisticRegressionCV,
    AdaBoostClassifier: SammeRAdaBoostClassifier,
}
