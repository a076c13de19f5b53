"""Write the old-pandas pickles in this folder, with the real old libraries (see README.md).

Run with each environment's own interpreter:  python make_old_pandas.py OUT_FOLDER
It writes OUT_FOLDER/frames.pkl: a fitted FunctionTransformer whose ``frames_`` attribute holds
one pandas object of each kind, and, with scikit-learn 0.24, ct_pipeline.pkl: a
ColumnTransformer pipeline fitted on a DataFrame (it keeps ``_df_columns``, a pandas Index),
with the rows it was asked about and its answers. Python 3.7 and later; no randomness.
"""

import os
import pickle
import sys

import numpy as np
import pandas as pd
import sklearn
from sklearn.preprocessing import FunctionTransformer

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
version = tuple(int(p) for p in pd.__version__.split(".")[:2])

frames = {
    "index_text": pd.Index(["a", "b", None], dtype=object, name="town"),
    "index_int": pd.Index([3, 1, 2]),
    "index_float": pd.Index([0.5, np.nan]),
    "range": pd.RangeIndex(0, 6, 2, name="r"),
    "multi": pd.MultiIndex.from_arrays([["a", "b", "a"], [1, 2, 2]], names=["k", "n"]),
    "categorical_index": pd.CategoricalIndex(["x", "y", "x"], name="c"),
    "datetime_index": pd.DatetimeIndex(["2020-01-01", None], name="d"),
    "series_float": pd.Series(
        [1.0, 2.5, np.nan], index=pd.Index(["a", "b", "c"], dtype=object), name="s"
    ),
    "series_int": pd.Series([1, 2, -2], index=["x", "y", np.nan]),
    "series_text": pd.Series(["u", None, np.nan, 3], dtype=object),
    "series_category": pd.Series(pd.Categorical(["a", "b", "a", None], categories=["b", "a"])),
    "series_datetime": pd.Series(pd.to_datetime(["2020-01-01", None])),
    "frame": pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [1.5, np.nan, -1.0],
            "o": ["x", None, "z"],
            "b": [True, False, True],
            "d": pd.to_datetime(["2021-02-03", "2022-01-01", None]),
            "j": [4, 5, 6],
        },
        index=pd.Index([10, 20, 30], name="row"),
    ),
}
if version >= (1, 0):
    frames["series_string"] = pd.Series(["a", None, "c"], dtype="string", name="t")
try:
    import pyarrow  # noqa: F401

    frames["series_arrow"] = pd.Series(["a", None, "c"], dtype="string[pyarrow]", name="p")
    frames["index_arrow"] = pd.Index(["x", "y"], dtype="string[pyarrow]")
except ImportError:
    pass

holder = FunctionTransformer(validate=False).fit(np.zeros((2, 2)))
holder.frames_ = frames
with open(os.path.join(out, "frames.pkl"), "wb") as fh:
    pickle.dump(holder, fh, protocol=2)

if sklearn.__version__.startswith("0.24."):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x = np.linspace(-2.0, 2.0, 24)
    rows = pd.DataFrame(
        {"size": x, "weight": np.cos(x) * 3, "town": ["a", "b", "c", "a", "b", "a"] * 4}
    )
    target = (x + (rows["town"] == "b") > 0).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["size", "weight"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["town"]),
            ]
        ),
        LogisticRegression(),
    ).fit(rows, target)
    with open(os.path.join(out, "ct_pipeline.pkl"), "wb") as fh:
        pickle.dump(model, fh, protocol=2)
    probe = rows.iloc[::5].reset_index(drop=True)
    probe.to_csv(os.path.join(out, "ct_rows.csv"), index=False)
    np.save(os.path.join(out, "ct_proba.npy"), model.predict_proba(probe))

print(out, "pandas", pd.__version__, "scikit-learn", sklearn.__version__, sorted(frames))
