"""A user transformer of the kind real registries carry: drop some columns, keep the rest.

It lives in an importable module (not ``__main__``), so a pickle names it as
``column_dropper.ColumnDropper`` and ``apo convert --trust column_dropper.ColumnDropper`` can
load it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class ColumnDropper(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Drop the columns at ``drop`` (positions or, for DataFrames, names)."""

    def __init__(self, drop: tuple[Any, ...] = ()) -> None:
        self.drop = drop

    def fit(self, X: Any, y: Any = None) -> ColumnDropper:
        names = getattr(X, "columns", None)
        self.n_features_in_ = int(np.shape(X)[1])
        if names is not None:
            self.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
        positions = [
            list(self.feature_names_in_).index(d) if isinstance(d, str) else int(d)
            for d in self.drop
        ]
        self.keep_ = np.array([i for i in range(self.n_features_in_) if i not in positions])
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, self.keep_]
