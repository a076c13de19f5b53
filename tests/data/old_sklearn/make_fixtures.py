"""Make the old-release fixtures: run with the Python of an environment holding one old
scikit-learn release (see README.md). Writes <version>/<name>.pkl (pickle protocol 2, as those
releases' users often did) and <version>/answers.npz (the models' answers on fixed rows)."""

import contextlib
import os
import pickle
import sys
import warnings

import numpy as np
import sklearn
from sklearn import ensemble, linear_model, neighbors, svm, tree

warnings.filterwarnings("ignore")
with contextlib.suppress(ImportError):
    from sklearn.experimental import enable_hist_gradient_boosting  # noqa: F401 (0.21-0.23)

out = os.path.join(sys.argv[1], sklearn.__version__)
os.makedirs(out, exist_ok=True)
rng = np.random.RandomState(0)
X = rng.normal(size=(200, 4))
y3 = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1).astype(int)
yr = X[:, 0] * 3 + X[:, 1] ** 2
rows = rng.normal(size=(40, 4)) * 1.5
models = {
    "tree": tree.DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y3),
    "boosting": ensemble.GradientBoostingClassifier(
        n_estimators=5, max_depth=2, random_state=0
    ).fit(X, y3),
    "boosting_reg": ensemble.GradientBoostingRegressor(
        n_estimators=5, max_depth=2, random_state=0
    ).fit(X, yr),
    "knn": neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(X, y3),
    "sgd_log": linear_model.SGDClassifier(loss="log", max_iter=50, tol=1e-3, random_state=0).fit(
        X, y3
    ),
    "svr": svm.SVR(gamma="scale").fit(X, yr),
    "logistic": linear_model.LogisticRegression(solver="liblinear").fit(X, y3),
}
if hasattr(ensemble, "HistGradientBoostingClassifier"):
    models["histogram"] = ensemble.HistGradientBoostingClassifier(max_iter=5).fit(X, y3)
answers = {"rows": rows}
for name, model in models.items():
    with open(os.path.join(out, name + ".pkl"), "wb") as handle:
        pickle.dump(model, handle, protocol=2)
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(model, method):
            answers[name + "." + method] = np.asarray(getattr(model, method)(rows), dtype=float)
np.savez(os.path.join(out, "answers.npz"), **answers)  # type: ignore[arg-type]
print(out, len(models))
