"""Raw LightGBM and XGBoost ``Booster`` objects, given their scikit-learn wrapper.

A training script that calls ``lightgbm.train`` or ``xgboost.train`` pickles a ``Booster``, not
an ``LGBMClassifier``. The booster knows its objective and feature count, which is all the
wrapper needs: classifiers for binary and multiclass objectives (classes ``0..n-1``, as the
booster answers), regressors for the rest. Rankers are refused: their scores are not labels or
probabilities that parity can check.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

_LIGHTGBM_CLASSIFIERS = ("binary", "multiclass", "softmax", "multiclassova", "multiclass_ova",
                         "ova", "ovr")  # fmt: skip
_RANKING = ("lambdarank", "rank_xendcg", "xendcg", "rank:")


class BoosterObjectiveError(ValueError):
    """A booster whose objective apo does not convert."""


def is_booster(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "Booster" and cls.__module__.split(".")[0] in ("lightgbm", "xgboost")


def as_estimator(booster: Any) -> tuple[Any, str]:
    """The scikit-learn wrapper around ``booster`` and a note saying what it was made from."""
    if type(booster).__module__.startswith("lightgbm"):
        return _lightgbm(booster)
    return _xgboost(booster)


def _lightgbm(booster: Any) -> tuple[Any, str]:
    import lightgbm
    from sklearn.preprocessing import LabelEncoder

    objective = str(booster.dump_model(num_iteration=0).get("objective", "regression"))
    name = objective.split()[0]
    if name.startswith(_RANKING):
        raise BoosterObjectiveError(f"a LightGBM ranking booster (objective {name})")
    n_features = booster.num_feature()
    model: Any
    if name in _LIGHTGBM_CLASSIFIERS:
        n_classes = max(booster.num_model_per_iteration(), 2)
        model = lightgbm.LGBMClassifier(objective=name)
        classes = np.arange(n_classes)
        model._n_classes = n_classes
        model._classes = classes
        model._le = LabelEncoder().fit(classes)
        model._class_map = None
    else:
        model = lightgbm.LGBMRegressor(objective=name)
    model._Booster = booster
    model._objective = name
    model._n_features = n_features
    model._n_features_in = n_features
    model.fitted_ = True
    return model, f"a raw LightGBM Booster (objective {name}), converted as {type(model).__name__}"


def _xgboost(booster: Any) -> tuple[Any, str]:
    import xgboost

    config = json.loads(booster.save_config())
    name = str(config["learner"]["objective"]["name"])
    if name.startswith(_RANKING):
        raise BoosterObjectiveError(f"an XGBoost ranking booster (objective {name})")
    cls = xgboost.XGBClassifier if name.startswith(("binary:", "multi:")) else xgboost.XGBRegressor
    model = cls()
    # The wrapper reads the objective and class count from the model itself (JSON, not pickle).
    model.load_model(bytearray(booster.save_raw("json")))
    return model, f"a raw XGBoost Booster (objective {name}), converted as {cls.__name__}"
