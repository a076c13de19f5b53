"""Shared fixtures: small REAL fitted estimators and registries written to disk as joblib/pickle."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from alphapulse_onnx.loading import TrustPolicy

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core (pytest -n auto): BLAS and OpenMP pools that each want every core spin
    # against the other worker's (one test ran 7x slower). One thread each, here and in the
    # processes tests start.
    threadpool_limits(1)
    for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_pool, "1")


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def small_models(iris: Any, breast_cancer: Any, diabetes: Any) -> dict[str, Any]:
    """Three quick, real models: a forest, a scaled logistic regression, a boosted regressor."""
    Xi, yi = iris
    Xb, yb = breast_cancer
    Xd, yd = diabetes
    return {
        "iris_rf": RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0).fit(Xi, yi),
        "cancer_logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
            Xb, yb
        ),
        "diabetes_gbr": GradientBoostingRegressor(n_estimators=20, random_state=0).fit(Xd, yd),
    }


def save_model(obj: Any, path: Path) -> Path:
    """Write ``obj`` as the suffix says: joblib for .joblib, pickle for .pkl/.pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".joblib":
        joblib.dump(obj, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


@pytest.fixture
def make_registry(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Build a registry folder from ``{"relative/path.joblib": estimator}``."""

    def build(models: dict[str, Any]) -> Path:
        root = tmp_path / "registry"
        for rel, obj in models.items():
            save_model(obj, root / rel)
        return root

    return build


@pytest.fixture
def registry(make_registry: Callable[[dict[str, Any]], Path], small_models: dict[str, Any]) -> Path:
    return make_registry(
        {
            "iris_rf.joblib": small_models["iris_rf"],
            "classifiers/cancer_logreg.pkl": small_models["cancer_logreg"],
            "regressors/diabetes_gbr.joblib": small_models["diabetes_gbr"],
        }
    )


# --- real old scikit-learn releases ----------------------------------------------------------


@pytest.fixture(scope="session")
def origin_cache() -> Path:
    """Where environments with old releases live: ``APO_ORIGIN_CACHE`` (``.ci/run`` sets it),
    else ``.cache/apo-origin`` in the repository (git-ignored). Made once, reused by later runs."""
    import os

    from alphapulse_onnx.origin import environments

    configured = os.environ.get(environments.CACHE_ENV)
    root = Path(__file__).resolve().parent.parent
    return Path(configured) if configured else root / ".cache" / "apo-origin"


@pytest.fixture(scope="session")
def old_release(origin_cache: Path) -> Callable[[str], Any]:
    """The environment with a scikit-learn release and its era's libraries: the very one
    ``apo convert --origin`` uses for files that release saved."""
    from alphapulse_onnx.origin import check, environments

    def get(version: str) -> Any:
        return environments.create(check.spec_for(version), origin_cache)

    return get


# --- the red-team sink ---------------------------------------------------------------------------
# A function that touches a marker file: what hostile test files try to reach. Trusting it by name
# (SINK_POLICY) lets a file name it, so a refusal proves the loader refused the call, not the name.
SINK = "apo_redteam_sink.touch"
SINK_POLICY = TrustPolicy(trusted=(SINK,))
_SINK_MODULE = """
import os
from pathlib import Path

def touch(*args, **kwargs):
    Path(os.environ["APO_REDTEAM_MARKER"]).touch()
    return 0
"""


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The marker file the sink touches (it must never appear), with the sink importable."""
    folder = tmp_path / "sinklib"
    folder.mkdir()
    (folder / "apo_redteam_sink.py").write_text(_SINK_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    path = tmp_path / "PWNED"
    monkeypatch.setenv("APO_REDTEAM_MARKER", str(path))
    return path


def sink() -> Callable[..., Any]:
    """The sink function itself (after ``marker``), for tests that pickle a real call to it."""
    import apo_redteam_sink  # type: ignore[import-not-found]  # written by ``marker``

    return apo_redteam_sink.touch  # type: ignore[no-any-return]
