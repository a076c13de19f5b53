"""Benchmark the runtime: single-row latency and micro-batched throughput, as ratios in one run.

1. Single-row latency of each model of a converted store, three ways, interleaved so that
   machine drift hits all alike: scikit-learn called directly on the source model, ``Store``
   (apo's own serving path: input checks, conversion, label mapping), and a bare onnxruntime
   session on the same artifact with the input already converted. Classifiers are timed on
   ``predict_proba``, regressors on ``predict``.
2. Throughput of one model with 1, 16 and 256 concurrent async callers, each sending single-row
   requests: through one ``BatchPredictor`` versus unbatched ``Store.predict_async`` calls
   (one onnxruntime call per request), plus a plain synchronous loop for reference.

Every figure printed is a ratio measured in this run on this machine; absolute times are shown
for context only.

Usage::

    apo convert models/
    python examples/bench_runtime.py [--store models/onnx] [--model reversal_rf]
                                     [--budget-s 1.0] [--threads 0]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import BatchPredictor, Store, loading, runtime

CALLERS = (1, 16, 256)


def per_call_us(fn: Callable[[], Any], budget_s: float) -> float:
    """Median time of one call in µs, over blocks of calls filling ``budget_s``."""
    time.sleep(0.002)  # let the previous engine's spinning worker threads go idle
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    block = max(1, int(0.01 / once))
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(block):
            fn()
        samples.append((time.perf_counter() - t0) / block)
    return statistics.median(samples) * 1e6


def interleaved(
    fns: dict[str, Callable[[], Any]], budget_s: float, rounds: int = 10
) -> dict[str, float]:
    """Each engine timed in ``rounds`` short turns, alternating; the median of its turns."""
    results: dict[str, list[float]] = {k: [] for k in fns}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in fns.items():
                results[name].append(per_call_us(fn, budget_s / rounds / len(fns)))
    finally:
        gc.enable()
    return {k: statistics.median(v) for k, v in results.items()}


def latency_table(store: Store, rows: np.ndarray, budget_s: float) -> list[dict[str, Any]]:
    table = []
    for name in store.names:
        model = store[name]
        if model.engine != "onnxruntime":
            print(f"  {name}: skipped ({model.fallback_reason})")
            continue
        estimator = loading.load(store.root / model.entry.source.path).estimator
        x = rows[:1]
        frame = model.source_rows(x)  # what scikit-learn was fit on
        proba = model.has_proba
        sk_fn = estimator.predict_proba if proba else estimator.predict
        apo_fn = model.predict_proba if proba else model.predict
        bare = runtime.make_session(
            (store.manifest_dir / model.entry.artifact.path).read_bytes()  # type: ignore[union-attr]
        )
        feeds = model.prepare(x)  # the onnxruntime feeds apo builds
        calls: dict[str, Callable[[], Any]] = {
            "sklearn": functools.partial(sk_fn, frame),
            "store": functools.partial(apo_fn, x),
            "bare": functools.partial(bare.run, None, feeds),
        }
        times = interleaved(calls, budget_s)
        table.append({"model": name, **times})
    return table


async def _callers(
    n_callers: int, requests_each: int, call: Callable[[np.ndarray], Any], rows: np.ndarray
) -> float:
    """Rows per second when ``n_callers`` each await ``requests_each`` single-row calls."""

    async def caller(offset: int) -> None:
        for i in range(requests_each):
            j = (offset * 31 + i) % len(rows)
            await call(rows[j : j + 1])

    started = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(n_callers)))
    return n_callers * requests_each / (time.perf_counter() - started)


async def throughput(
    store: Store, name: str, rows: np.ndarray, total_requests: int
) -> list[dict[str, Any]]:
    model = store[name]
    out = []
    for n in CALLERS:
        each = max(1, total_requests // n)
        unbatched = await _callers(n, each, model.predict_async, rows)
        async with BatchPredictor(store, max_batch_size=256, max_delay_ms=1.0) as bp:
            batched = await _callers(n, each, lambda r: bp.predict(name, r), rows)
            stats = bp.stats()[name]
        out.append(
            {
                "callers": n,
                "batched": batched,
                "unbatched": unbatched,
                "mean_batch": stats["mean_batch_size"],
            }
        )
    return out


def sync_loop(store: Store, name: str, rows: np.ndarray, seconds: float) -> float:
    model = store[name]
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict(rows[count % len(rows) : count % len(rows) + 1])
        count += 1
    return count / (time.perf_counter() - started)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("models/onnx"))
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("models/sample_features.csv"),
        help="rows to score (CSV with the models' feature columns)",
    )
    parser.add_argument("--model", default="reversal_rf", help="model for the throughput part")
    parser.add_argument("--budget-s", type=float, default=1.0, help="timing budget per model")
    parser.add_argument("--requests", type=int, default=2048, help="requests per throughput run")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads (default: manifest or onnxruntime's)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    args = parse_args(argv)
    settings = runtime.SessionSettings(intra_op_threads=args.threads) if args.threads else None
    store = Store.open(args.store, settings=settings)
    rows = pd.read_csv(args.data)
    names = store[store.names[0]].feature_names
    X = rows[list(names)].to_numpy() if names else rows.to_numpy()
    print(
        f"runtime benchmark on {runtime.cpu_name()}; onnxruntime {runtime.version()}; "
        f"providers {', '.join(store.providers)}"
    )

    print("\n1. single-row latency (median µs per call; ratios from the same run)")
    print(
        f"  {'model':<22}{'sklearn':>10}{'store':>10}{'bare ort':>10}"
        f"{'sklearn/store':>18}{'store/bare':>15}"
    )
    for row in latency_table(store, X, args.budget_s):
        print(
            f"  {row['model']:<22}{row['sklearn']:>10.1f}{row['store']:>10.1f}"
            f"{row['bare']:>10.1f}"
            f"{row['sklearn'] / row['store']:>17.1f}x{row['store'] / row['bare']:>14.2f}x"
        )

    print(f"\n2. throughput of {args.model!r}, single-row requests (rows/s)")
    loop_rate = sync_loop(store, args.model, X, seconds=min(2.0, args.budget_s * 2))
    print(f"  plain synchronous loop of Store.predict: {loop_rate:,.0f} rows/s")
    print(
        f"  {'callers':>8}{'BatchPredictor':>16}{'unbatched async':>17}{'batched/unbatched':>19}"
        f"{'mean batch':>12}"
    )
    for row in asyncio.run(throughput(store, args.model, X, args.requests)):
        print(
            f"  {row['callers']:>8}{row['batched']:>16,.0f}{row['unbatched']:>17,.0f}"
            f"{row['batched'] / row['unbatched']:>18.2f}x{row['mean_batch']:>12.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
