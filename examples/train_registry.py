"""Build the example model registry shipped in ``models/``.

Trains a handful of scikit-learn models in the spirit of a crypto trading
system's pattern classifiers, on SYNTHETIC candles only (no real market data):

1. draw deterministic hourly OHLCV candles for BTCUSDT, ETHUSDT and ADAUSDT
   (a regime-switching geometric random walk, see ``ohlcv_features.py``);
2. engineer 16 named float features per bar (``engineer_features``);
3. label each bar from FUTURE bars: ``reversal``, ``continuation`` (binary),
   ``breakout`` (``"down"`` / ``"none"`` / ``"up"``) and next-12-bar realized
   volatility (regression);
4. fit on the first 80% of each symbol's history, score on the last 20%
   (after a purge gap so that train labels never peek into the test period),
   and save the models with joblib or pickle, plus ``models/README.md`` and
   ``models/sample_features.csv`` (200 held-out feature rows).

Usage::

    python examples/train_registry.py [--out models] [--seed 7]

The same seed always gives the same data, models and scores.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

# Sibling module: running this file as a script puts examples/ on sys.path.
from ohlcv_features import FEATURE_NAMES, engineer_features, generate_ohlcv
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "ADAUSDT")
N_BARS = 6000
HORIZON = 6  # bars ahead for the pattern labels
TREND_LOOKBACK = 12  # bars behind that define the prior trend
RANGE_LOOKBACK = 20  # bars behind that define the breakout range
VOL_HORIZON = 12  # bars ahead for the realized-volatility target
MOVE_THRESHOLD = 0.25  # a "large" move, in units of sigma_24 * sqrt(HORIZON)
TEST_FRACTION = 0.2
PURGE_BARS = 24  # dropped between train and test: longer than any label horizon
N_SAMPLE_ROWS = 200
BREAKOUT_CLASSES: tuple[str, ...] = ("down", "none", "up")


@dataclass(frozen=True)
class ModelReport:
    """What the README and the summary table say about one trained model."""

    path: str
    estimator: str
    task: str
    target: str
    classes: str
    metric: str
    score: float
    baseline: float
    extra: str
    serialization: str
    size_bytes: int = 0


def make_labels(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Label every bar from the bars that FOLLOW it (NaN where the future is unknown).

    * ``reversal``: the next-6-bar log return has the opposite sign of the
      prior 12-bar trend and is larger than ``0.5 * sigma_24 * sqrt(6)``.
    * ``continuation``: same size test, but the move keeps the trend's sign.
    * ``breakout``: ``"up"`` / ``"down"`` when one of the next 6 bars trades
      above / below the 20-bar high / low known at the bar (the first break
      wins; on a bar that breaks both ways the larger excursion wins),
      ``"none"`` otherwise.
    * ``future_volatility``: standard deviation of the next 12 hourly log
      returns, in percent.
    """
    close, high, low = ohlcv["close"], ohlcv["high"], ohlcv["low"]
    log_close = pd.Series(np.log(close.to_numpy()), index=ohlcv.index)
    log_ret = log_close.diff()
    sigma = log_ret.rolling(24).std()

    trend = log_close - log_close.shift(TREND_LOOKBACK)
    future = log_close.shift(-HORIZON) - log_close
    known = trend.notna() & future.notna() & sigma.notna()
    large = future.abs() > MOVE_THRESHOLD * sigma * np.sqrt(HORIZON)
    same_sign = np.sign(future) == np.sign(trend)
    reversal = (large & ~same_sign & (trend != 0)).astype("float64").where(known)
    continuation = (large & same_sign & (trend != 0)).astype("float64").where(known)

    range_high = high.rolling(RANGE_LOOKBACK).max()
    range_low = low.rolling(RANGE_LOOKBACK).min()
    breakout = pd.Series("none", index=ohlcv.index, dtype=object)
    decided = pd.Series(False, index=ohlcv.index)
    for k in range(1, HORIZON + 1):
        up_excess = high.shift(-k) / range_high - 1.0
        down_excess = 1.0 - low.shift(-k) / range_low
        up = (up_excess > 0) & ~decided
        down = (down_excess > 0) & ~decided
        both = up & down
        breakout[up & ~down] = "up"
        breakout[down & ~up] = "down"
        breakout[both & (up_excess >= down_excess)] = "up"
        breakout[both & (up_excess < down_excess)] = "down"
        decided |= up | down
    breakout_known = range_high.notna() & close.shift(-HORIZON).notna()
    breakout = breakout.where(breakout_known)

    future_volatility = 100.0 * log_ret.rolling(VOL_HORIZON).std().shift(-VOL_HORIZON)

    return pd.DataFrame(
        {
            "reversal": reversal,
            "continuation": continuation,
            "breakout": breakout,
            "future_volatility": future_volatility,
        },
        index=ohlcv.index,
    )


def build_dataset(
    seed: int, n_bars: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return ``(X_train, y_train, X_test, y_test)`` pooled over all symbols.

    Each symbol's history is split in time: the first 80% of labelled bars
    train, the last 20% test, with ``PURGE_BARS`` bars dropped in between.
    """
    train_x, train_y, test_x, test_y = [], [], [], []
    for symbol in SYMBOLS:
        ohlcv = generate_ohlcv(symbol, n_bars, seed)
        features = engineer_features(ohlcv)
        labels = make_labels(ohlcv).loc[features.index]
        usable = labels.notna().all(axis=1)
        features, labels = features[usable], labels[usable]

        n_test = round(len(features) * TEST_FRACTION)
        split = len(features) - n_test
        train_x.append(features.iloc[: split - PURGE_BARS])
        train_y.append(labels.iloc[: split - PURGE_BARS])
        test_x.append(features.iloc[split:])
        test_y.append(labels.iloc[split:])

    def stack(parts: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(parts, ignore_index=True)

    return stack(train_x), stack(train_y), stack(test_x), stack(test_y)


def _majority_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy of always predicting the training set's most common class."""
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)]))


def _binary_labels(labels: pd.Series) -> np.ndarray:
    """Binary float labels as integer classes 0 / 1."""
    return np.asarray(labels.to_numpy(dtype="float64"), dtype=np.int64)


def _string_labels(labels: pd.Series) -> np.ndarray:
    """Multiclass labels as an object array of Python ``str``."""
    return np.asarray([str(label) for label in labels], dtype=object)


def _describe_classes(estimator: BaseEstimator) -> str:
    """List a fitted classifier's ``classes_`` with their numpy dtype."""
    classes = np.asarray(estimator.classes_)
    names = ", ".join(repr(c.item()) if hasattr(c, "item") else repr(c) for c in classes)
    return f"{names} (classes_ dtype {classes.dtype})"


def train_models(
    x_train: pd.DataFrame,
    y_train: pd.DataFrame,
    x_test: pd.DataFrame,
    y_test: pd.DataFrame,
    seed: int,
) -> list[tuple[BaseEstimator, ModelReport]]:
    """Fit every registry model and score it on the held-out period."""
    results: list[tuple[BaseEstimator, ModelReport]] = []

    def binary(name: str, path: str, estimator: BaseEstimator, label: str, kind: str) -> None:
        y_fit, y_true = _binary_labels(y_train[label]), _binary_labels(y_test[label])
        estimator.fit(x_train, y_fit)
        proba = estimator.predict_proba(x_test)[:, 1]
        accuracy = accuracy_score(y_true, estimator.predict(x_test))
        report = ModelReport(
            path=path,
            estimator=name,
            task=f"{label} (binary classification)",
            target=label,
            classes=_describe_classes(estimator),
            metric="accuracy",
            score=float(accuracy),
            baseline=_majority_accuracy(y_fit, y_true),
            extra=f"ROC AUC {roc_auc_score(y_true, proba):.3f}; positive rate {y_true.mean():.1%}",
            serialization=kind,
        )
        results.append((estimator, report))

    binary(
        f"RandomForestClassifier(n_estimators=100, max_depth=8, n_jobs=1, random_state={seed})",
        "reversal_rf.joblib",
        RandomForestClassifier(n_estimators=100, max_depth=8, n_jobs=1, random_state=seed),
        "reversal",
        "joblib, compress=3",
    )
    binary(
        "LogisticRegression(max_iter=1000)",
        "continuation_logreg.joblib",
        LogisticRegression(max_iter=1000),
        "continuation",
        "joblib",
    )

    def multiclass(name: str, path: str, estimator: BaseEstimator, kind: str) -> None:
        y_fit, y_true = _string_labels(y_train["breakout"]), _string_labels(y_test["breakout"])
        estimator.fit(x_train, y_fit)
        accuracy = accuracy_score(y_true, estimator.predict(x_test))
        shares = ", ".join(f"{c} {np.mean(y_true == c):.0%}" for c in BREAKOUT_CLASSES)
        report = ModelReport(
            path=path,
            estimator=name,
            task="breakout (3-class classification)",
            target="breakout",
            classes=_describe_classes(estimator),
            metric="accuracy",
            score=float(accuracy),
            baseline=_majority_accuracy(y_fit, y_true),
            extra=f"held-out class shares: {shares}",
            serialization=kind,
        )
        results.append((estimator, report))

    multiclass(
        "Pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=100, "
        f"random_state={seed}))",
        "breakout_pipeline.joblib",
        Pipeline(
            [
                ("scaler", StandardScaler()),
                ("hgb", HistGradientBoostingClassifier(max_iter=100, random_state=seed)),
            ]
        ),
        "joblib",
    )

    gbr = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=seed)
    y_fit = y_train["future_volatility"].to_numpy(dtype="float64")
    y_true = y_test["future_volatility"].to_numpy(dtype="float64")
    gbr.fit(x_train, y_fit)
    persistence = r2_score(y_true, 100.0 * x_test["volatility_24"].to_numpy())
    results.append(
        (
            gbr,
            ModelReport(
                path="regime/volatility_gbr.joblib",
                estimator="GradientBoostingRegressor(n_estimators=100, max_depth=3, "
                f"random_state={seed})",
                task="next-12-bar realized volatility (regression)",
                target="future_volatility",
                classes="one float64 per row: std of the next 12 hourly log returns, in %",
                metric="R2",
                score=float(r2_score(y_true, gbr.predict(x_test))),
                baseline=float(persistence),
                extra="baseline = R2 of predicting 100 * volatility_24 (persistence)",
                serialization="joblib",
            ),
        )
    )

    # Early stopping on a held-out 10% of the training rows ends training when
    # the validation score stops improving, so the solver converges well
    # inside max_iter instead of raising a ConvergenceWarning.
    multiclass(
        "Pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, "
        f"early_stopping=True, random_state={seed}))",
        "regime/breakout_mlp.pkl",
        Pipeline(
            [
                ("scaler", StandardScaler()),
                (
                    "mlp",
                    MLPClassifier(
                        hidden_layer_sizes=(32, 16),
                        max_iter=300,
                        early_stopping=True,
                        random_state=seed,
                    ),
                ),
            ]
        ),
        "pickle, protocol 5",
    )
    return results


def save_model(estimator: BaseEstimator, report: ModelReport, out: Path) -> ModelReport:
    """Write ``estimator`` under ``out`` as ``report.serialization`` says; return its size."""
    target = out / report.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if report.serialization.startswith("pickle"):
        with target.open("wb") as handle:
            pickle.dump(estimator, handle, protocol=5)
    elif "compress=3" in report.serialization:
        joblib.dump(estimator, target, compress=3)
    else:
        joblib.dump(estimator, target)
    return ModelReport(**{**report.__dict__, "size_bytes": target.stat().st_size})


def write_sample(x_test: pd.DataFrame, out: Path, seed: int) -> Path:
    """Write ``N_SAMPLE_ROWS`` held-out feature rows (floats only) to ``sample_features.csv``."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x_test), size=N_SAMPLE_ROWS, replace=False))
    sample = x_test.iloc[rows].astype("float64")
    path = out / "sample_features.csv"
    sample.to_csv(path, index=False, float_format="%.9g")
    return path


def _human_size(n_bytes: int) -> str:
    """Format a byte count as KiB / MiB."""
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.2f} MiB"
    return f"{n_bytes / 1024:.1f} KiB"


def write_readme(
    reports: Sequence[ModelReport],
    out: Path,
    seed: int,
    n_train: int,
    n_test: int,
) -> Path:
    """Describe every model of the registry in ``README.md``."""
    features = "\n".join(f"{i}. `{name}`" for i, name in enumerate(FEATURE_NAMES, start=1))
    table = "\n".join(
        f"| `{r.path}` | {r.estimator.split('(')[0]} | {r.task} | {r.metric} {r.score:.3f} "
        f"| {r.baseline:.3f} | {_human_size(r.size_bytes)} |"
        for r in reports
    )
    details = "\n\n".join(
        f"### `{r.path}`\n\n"
        f"- Estimator: `{r.estimator}`\n"
        f"- Task: {r.task}; target `{r.target}`\n"
        f"- Classes / output: {r.classes}\n"
        f"- Held-out {r.metric}: {r.score:.3f} (baseline {r.baseline:.3f}); {r.extra}\n"
        f"- Saved with: {r.serialization}"
        for r in reports
    )
    text = f"""# Example model registry

Generated by `python examples/train_registry.py --seed {seed}`; do not edit by
hand, rerun the script instead (the same seed gives the same models and scores).

All models are trained on **synthetic** hourly candles for BTCUSDT, ETHUSDT and
ADAUSDT ({N_BARS} bars each) drawn by `examples/ohlcv_features.py`: a geometric
random walk whose drift, volatility and mean reversion switch between hidden
regimes. No real market data is involved. The scores below only show that the
models learned the synthetic structure; they say nothing about real markets.

Every model takes the same input: a table of the {len(FEATURE_NAMES)} float64
features below, in this order, with `feature_names_in_` set:

{features}

Labels come from FUTURE bars: `reversal` / `continuation` compare the next
{HORIZON}-bar log return with the prior {TREND_LOOKBACK}-bar trend (a move counts when
it exceeds {MOVE_THRESHOLD} x sigma_24 x sqrt({HORIZON})), `breakout` says whether the next
{HORIZON} bars break the {RANGE_LOOKBACK}-bar high (`"up"`) or low (`"down"`) or neither
(`"none"`), and the volatility target is the standard deviation (in %) of the
next {VOL_HORIZON} hourly log returns.

Each symbol's history is split in time: the first 80% trains ({n_train} rows
pooled), the last 20% tests ({n_test} rows pooled), with {PURGE_BARS} bars purged in
between so no training label sees the test period. Baseline = accuracy of always
predicting the most common training class, or for the regressor the R2 of
predicting `100 * volatility_24`.

| file | estimator | task | held-out score | baseline | size |
| --- | --- | --- | --- | --- | --- |
{table}

{details}

## `sample_features.csv`

{N_SAMPLE_ROWS} held-out feature rows (header = feature names, float columns
only), usable as `--sample` data for any model above.
"""
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def print_summary(reports: Sequence[ModelReport]) -> None:
    """Print a plain-text table of model, task and held-out score."""
    rows = [("model", "task", "metric", "score", "baseline", "size")]
    rows += [
        (
            r.path,
            r.task,
            r.metric,
            f"{r.score:.3f}",
            f"{r.baseline:.3f}",
            _human_size(r.size_bytes),
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="registry folder")
    parser.add_argument("--seed", type=int, default=7, help="seed for data and models")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the registry; return the process exit code."""
    args = parse_args(argv)
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    x_train, y_train, x_test, y_test = build_dataset(args.seed, N_BARS)
    print(
        f"data: {len(SYMBOLS)} symbols x {N_BARS} bars -> "
        f"{len(x_train)} train / {len(x_test)} test rows, {x_train.shape[1]} features"
    )
    reports = [
        save_model(estimator, report, out)
        for estimator, report in train_models(x_train, y_train, x_test, y_test, args.seed)
    ]
    write_sample(x_test, out, args.seed)
    write_readme(reports, out, args.seed, len(x_train), len(x_test))

    print_summary(reports)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}/ ({_human_size(total)}) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
