"""Score the pattern-model registry for several symbols through a BatchPredictor (the seed system).

The seed trading system scored every pattern model for every symbol as each hourly bar closed. This
reproduces that loop on the shipped registry (``models/``; ``apo convert models/`` writes its store,
``models/onnx``):
synthetic candles for BTCUSDT, ETHUSDT and ADAUSDT (``ohlcv_features.py``; never real market
data), the 16 features of the latest bar, and one request per (symbol, model) sent concurrently
through one ``BatchPredictor``, which gathers them into one onnxruntime call per model. Each
request prints the engine that served it and its inference time; the batcher's statistics follow.

Usage::

    apo convert models/
    python examples/serve_patterns.py [--store models/onnx] [--bars 400] [--rounds 3]
                                      [--threads 1]

Each model runs in its own onnxruntime session; ``--threads 1`` (the default here) gives each
session one intra-op thread, which is what many small concurrent requests on few cores want.
``--threads 0`` keeps the manifest's tuned settings (``apo bench``) or onnxruntime's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

# Sibling module: running this file as a script puts examples/ on sys.path.
from ohlcv_features import engineer_features, generate_ohlcv

from alphapulse_onnx import ApoError, BatchPredictor, Store
from alphapulse_onnx.runtime import SessionSettings

SYMBOLS = ("BTCUSDT", "ETHUSDT", "ADAUSDT")


def features_by_symbol(n_bars: int, seed: int) -> dict[str, pd.DataFrame]:
    """Per symbol, one row of features per closed bar (warm-up bars dropped)."""
    return {s: engineer_features(generate_ohlcv(s, n_bars, seed)) for s in SYMBOLS}


def describe(answer: Any, proba: Any, classes: Any) -> str:
    if classes is None:
        return f"value={float(answer[0]):.4f}"
    if proba is None:
        return f"label={answer[0]}"
    best = proba[0].max()
    return f"label={answer[0]!s:<5} p={best:.2f}"


async def score_bar(
    bp: BatchPredictor, store: Store, symbol: str, name: str, row: pd.DataFrame
) -> str:
    """One request: the label (and its probability when the model has them) for one bar."""
    model = store[name]
    started = time.perf_counter()
    if model.has_proba:
        proba = await bp.predict_proba(name, row)
        answer = model.classes[proba.argmax(axis=1)] if model.classes is not None else proba
    else:
        proba = None
        answer = await bp.predict(name, row)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return (
        f"{symbol:<8} {name:<20} {model.engine:<11} {describe(answer, proba, model.classes):<22} "
        f"{elapsed_ms:6.2f} ms"
    )


async def serve(store: Store, features: dict[str, pd.DataFrame], rounds: int) -> None:
    names = store.names
    async with BatchPredictor(store, max_batch_size=256, max_delay_ms=2.0) as bp:
        for step in range(rounds):
            # the bar that closes now: rounds - step bars before the end of the history
            index = -(rounds - step)
            stamp = next(iter(features.values())).index[index]
            print(f"\nbar closed at {stamp}  ({len(SYMBOLS)} symbols x {len(names)} models)")
            requests = [
                score_bar(bp, store, symbol, name, frame.iloc[[index]])
                for symbol, frame in features.items()
                for name in names
            ]
            started = time.perf_counter()
            lines = await asyncio.gather(*requests)
            total_ms = (time.perf_counter() - started) * 1000
            for line in lines:
                print("  " + line)
            print(f"  all {len(lines)} requests answered in {total_ms:.2f} ms")
        stats = bp.stats()
    print("\nBatchPredictor statistics per model:")
    print(
        f"  {'model':<20} {'requests':>8} {'batches':>8} {'mean batch':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8}"
    )
    for name, figures in stats.items():
        print(
            f"  {name:<20} {figures['requests']:>8} {figures['batches']:>8} "
            f"{figures['mean_batch_size']:>10.1f} {figures['latency_p50_ms']:>8.2f} "
            f"{figures['latency_p99_ms']:>8.2f}"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("models/onnx"),
        help="the store apo convert wrote (apo convert models/ writes models/onnx)",
    )
    parser.add_argument("--bars", type=int, default=400, help="history length per symbol")
    parser.add_argument("--rounds", type=int, default=3, help="bars to score, one after another")
    parser.add_argument("--seed", type=int, default=11, help="seed of the synthetic candles")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads per session (0: manifest's)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = SessionSettings(intra_op_threads=args.threads) if args.threads else None
        store = Store.open(args.store, settings=settings)
    except ApoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    features = features_by_symbol(args.bars, args.seed)
    for name in store.names:  # load every model before the clock starts
        model = store[name]
        print(f"{name:<20} {model.engine:<11} {model.provider or model.fallback_reason}")
    asyncio.run(serve(store, features, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
