"""Make the old-release fixtures: run with the Python of an environment holding one old
scikit-learn release (see README.md). Writes <version>/<name>.pkl (pickle protocol 2, as those
releases' users often did) and <version>/answers.npz (the models' answers on fixed rows)."""

import contextlib
import os
import pickle
import sys
import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, svm, tree
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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
# Models whose input width releases before 0.24 did not record (n_features_in_): read from
# their coefficients, means, layers, parts.
models["scaled_mlp"] = make_pipeline(
    StandardScaler(),
    neural_network.MLPClassifier(hidden_layer_sizes=(8,), max_iter=60, random_state=0),
).fit(X, y3)
models["vote"] = ensemble.VotingClassifier(
    [
        ("linear", linear_model.LogisticRegression(solver="lbfgs", multi_class="multinomial")),
        ("bayes", naive_bayes.GaussianNB()),
    ],
    voting="soft",
).fit(X, y3)
answers = {"rows": rows}
for name, model in models.items():
    with open(os.path.join(out, name + ".pkl"), "wb") as handle:
        pickle.dump(model, handle, protocol=2)
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(model, method):
            answers[name + "." + method] = np.asarray(getattr(model, method)(rows), dtype=float)

# ColumnTransformers on a DataFrame (before 1.0 they kept its column names privately). The
# rows are kept as their numbers and towns ("frame_numbers", "frame_towns").
pick = np.random.RandomState(1)
frame = pd.DataFrame(X[:, :3], columns=["size", "age", "score"])
frame["town"] = np.array(["north", "south", "east"])[pick.randint(0, 3, len(X))]
frame.loc[::17, "age"] = np.nan
frame_rows = pd.DataFrame(rows[:, :3], columns=["size", "age", "score"])
frame_rows["town"] = np.array(["north", "south", "east", "west"])[pick.randint(0, 4, len(rows))]
frame_models = {
    "frame_named": make_pipeline(
        ColumnTransformer(
            [
                (
                    "numbers",
                    make_pipeline(SimpleImputer(), StandardScaler()),
                    ["size", "age", "score"],
                ),
                ("towns", OneHotEncoder(handle_unknown="ignore"), ["town"]),
            ]
        ),
        linear_model.LogisticRegression(solver="lbfgs", multi_class="multinomial"),
    ).fit(frame, y3),
    "frame_passthrough": make_pipeline(
        ColumnTransformer(
            [
                ("towns", OneHotEncoder(handle_unknown="ignore"), ["town"]),
                ("age", SimpleImputer(), ["age"]),
            ],
            remainder="passthrough",
        ),
        tree.DecisionTreeClassifier(max_depth=4, random_state=0),
    ).fit(frame, y3),
}
for name, model in frame_models.items():
    with open(os.path.join(out, name + ".pkl"), "wb") as handle:
        pickle.dump(model, handle, protocol=2)
    for method in ("predict", "predict_proba"):
        answers[name + "." + method] = np.asarray(getattr(model, method)(frame_rows), dtype=float)
answers["frame_numbers"] = frame_rows[["size", "age", "score"]].to_numpy(dtype=float)
answers["frame_towns"] = frame_rows["town"].to_numpy().astype(str)
models.update(frame_models)
np.savez(os.path.join(out, "answers.npz"), **answers)  # type: ignore[arg-type]
print(out, len(models))
