"""Conversion time and artifact size per model family, as `apo convert` measures them.

Fits one realistic model per family on scikit-learn's bundled data sets, converts the registry
with apo (serially, so times are per model), and prints a Markdown table from the manifest.

    python examples/compile_report.py [--out /tmp/apo-compile-report]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import joblib
from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, svm, tree
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from alphapulse_onnx.commands.convert import ConvertOptions, run
from alphapulse_onnx.manifest import ManifestEntry


def families() -> dict[str, tuple[str, Any]]:
    def scaled(est: Any) -> Any:
        return make_pipeline(StandardScaler(), est)

    return {
        "RandomForestClassifier(100, depth 10)": (
            "cancer",
            ensemble.RandomForestClassifier(100, max_depth=10, random_state=0),
        ),
        "ExtraTreesRegressor(100, depth 10)": (
            "diabetes",
            ensemble.ExtraTreesRegressor(100, max_depth=10, random_state=0),
        ),
        "DecisionTreeClassifier": ("iris", tree.DecisionTreeClassifier(random_state=0)),
        "GradientBoostingClassifier(100, depth 3)": (
            "cancer",
            ensemble.GradientBoostingClassifier(random_state=0),
        ),
        "HistGradientBoostingClassifier(100)": (
            "cancer",
            ensemble.HistGradientBoostingClassifier(random_state=0),
        ),
        "HistGradientBoostingRegressor(100)": (
            "diabetes",
            ensemble.HistGradientBoostingRegressor(random_state=0),
        ),
        "LogisticRegression (scaled)": ("cancer", scaled(linear_model.LogisticRegression())),
        "Ridge": ("diabetes", linear_model.Ridge()),
        "SVC (scaled)": ("cancer", scaled(svm.SVC())),
        "SVR": ("diabetes", svm.SVR()),
        "KNeighborsClassifier (scaled)": ("iris", scaled(neighbors.KNeighborsClassifier())),
        "GaussianNB": ("iris", naive_bayes.GaussianNB()),
        "MLPClassifier(64,32) (scaled)": (
            "cancer",
            scaled(neural_network.MLPClassifier((64, 32), max_iter=500, random_state=0)),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="apo-compile-report-"))
    shutil.rmtree(root, ignore_errors=True)
    data = {
        "cancer": load_breast_cancer(return_X_y=True),
        "iris": load_iris(return_X_y=True),
        "diabetes": load_diabetes(return_X_y=True),
    }
    names = {}
    for i, (label, (dataset, estimator)) in enumerate(families().items()):
        X, y = data[dataset]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(X, y)
        path = root / f"m{i:02d}.joblib"
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(estimator, path)
        names[f"m{i:02d}"] = label
    entries = [
        e for e in run(ConvertOptions(registry=root, jobs=1)) if isinstance(e, ManifestEntry)
    ]
    print("| family | status | precision | convert s | validate s | probe rows | artifact |")
    print("|---|---|---|---|---|---|---|")
    for entry in entries:
        art = entry.artifact
        print(
            f"| {names[entry.name]} | {entry.status} | {art.precision if art else '-'} "
            f"| {entry.timings.get('convert_s', 0):.3f} | {entry.timings.get('validate_s', 0):.3f} "
            f"| {entry.validation.rows if entry.validation else '-'} "
            f"| {(art.size_bytes / 1024 if art else 0):.1f} KB |"
        )


if __name__ == "__main__":
    main()
