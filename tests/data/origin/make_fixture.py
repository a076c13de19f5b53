"""Writes logreg_sklearn_1_0_2.pkl: a LogisticRegression saved by scikit-learn 1.0.2.

scikit-learn 1.0.2 has no wheel for Python 3.11 or later, so an origin check of this file is
skipped ("no wheel of scikit-learn 1.0.2 for Python 3.11"). Run it with Python 3.8 and
scikit-learn 1.0.2 (see README.md); it refuses any other scikit-learn.
"""

import pickle
import sys

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

assert sklearn.__version__ == "1.0.2", sklearn.__version__
rng = np.random.RandomState(0)
X = rng.normal(size=(200, 4))
y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 3] > 0).astype(int)
model = LogisticRegression().fit(X, y)
with open(sys.argv[1] if len(sys.argv) > 1 else "logreg_sklearn_1_0_2.pkl", "wb") as handle:
    pickle.dump(model, handle, protocol=4)
