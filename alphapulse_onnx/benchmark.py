"""The timing harness: engines timed side by side on the same rows, in the same run.

Every figure apo reports is a ratio measured here, never a number carried over from another run
or another machine. For one batch size, each engine is first warmed up (sessions allocate their
buffers, scikit-learn fills its caches), then the harness picks how many calls each engine gets
from a time budget (or ``repeat``), and runs them *interleaved*, in rounds: every round runs one
block of consecutive calls per engine, in a rotating order, each engine's calls split evenly over
the rounds, so a burst of load on a shared machine hits every engine alike. Blocks, not single
calls, because thread pools interfere: onnxruntime's workers spin for a while after a call and
OpenMP's (scikit-learn's histogram boosting) go to sleep when idle, so alternating single calls
would time one engine's threads fighting another's. Before each block the harness pauses briefly
and makes one untimed call; within a block an engine runs as it would serving one model.
Garbage collection is paused while timing, and a run that overshoots twice its planned time
stops after the round in progress (``calls`` says how many each engine got).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Call = Callable[[], object]
# An engine turns one batch (float64 rows, or a DataFrame for per-column models) into a
# zero-argument call; whatever the engine's own path converts per call (dtype, contiguity,
# columns to arrays) belongs inside the call, not in ``prepare``.
Prepare = Callable[[Any], Call]

DEFAULT_WARMUP = 3
MIN_CALLS = 5
ROUNDS = 5  # each engine's calls come in this many blocks, interleaved with the others' blocks
SETTLE_S = 0.002
MAX_CALLS = 100_000
BASELINE = "sklearn"


@dataclass(frozen=True)
class Engine:
    name: str  # "sklearn", "onnx" (apo's path), "ort-bare" (a default session, no apo)
    variant: str  # "fp32", "fp16", "int8"; "-" for scikit-learn
    provider: str | None  # execution provider; None for scikit-learn
    prepare: Prepare

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.name, self.variant, self.provider)


@dataclass(frozen=True)
class Timing:
    """One engine at one batch size: seconds per call."""

    engine: str
    variant: str
    provider: str | None
    batch_size: int
    p50_s: float
    p99_s: float
    mean_s: float
    min_s: float
    calls: int

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.engine, self.variant, self.provider)

    @property
    def rows_per_s(self) -> float:
        return self.batch_size / self.p50_s if self.p50_s > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


def summarize(engine: Engine, batch_size: int, seconds: Sequence[float]) -> Timing:
    values = np.asarray(seconds, dtype=np.float64)
    return Timing(
        engine=engine.name,
        variant=engine.variant,
        provider=engine.provider,
        batch_size=batch_size,
        p50_s=float(np.percentile(values, 50)),
        p99_s=float(np.percentile(values, 99)),
        mean_s=float(values.mean()),
        min_s=float(values.min()),
        calls=int(values.size),
    )


def plan_calls(estimates: Sequence[float], *, budget_s: float, repeat: int | None) -> list[int]:
    """Timed calls per engine: ``repeat`` each, or as many as fit ``budget_s`` (bounded)."""
    if repeat is not None:
        return [max(1, repeat)] * len(estimates)
    return [int(min(MAX_CALLS, max(MIN_CALLS, budget_s / max(est, 1e-7)))) for est in estimates]


def blocks(calls: Sequence[int], rounds: int) -> list[list[tuple[int, int]]]:
    """Rounds of ``(engine, calls in this block)``: each engine's calls split evenly over the
    rounds, the engine order rotating from one round to the next."""
    n = len(calls)
    plan: list[list[tuple[int, int]]] = []
    for r in range(rounds):
        order = [(r + k) % n for k in range(n)]
        plan.append([(i, (r + 1) * calls[i] // rounds - r * calls[i] // rounds) for i in order])
    return plan


def measure(engines: Sequence[Engine], X: Any, *, budget_s: float,
            repeat: int | None = None, warmup: int = DEFAULT_WARMUP) -> list[Timing]:  # fmt: skip
    """Time every engine on the rows ``X`` (one batch: an array or a DataFrame), interleaved;
    one ``Timing`` per engine."""
    calls = [engine.prepare(X) for engine in engines]
    estimates = []
    for call in calls:
        spent = []
        for _ in range(max(1, warmup)):
            t0 = time.perf_counter()
            call()
            spent.append(time.perf_counter() - t0)
        estimates.append(float(np.median(spent)))
    counts = plan_calls(estimates, budget_s=budget_s, repeat=repeat)
    rounds = max(1, min(ROUNDS, min(counts)))
    # Warm-up calls can flatter an engine and a busy machine slows everyone: past twice the planned
    # time we stop after the current round (every engine keeps the calls it had).
    planned = sum(c * e for c, e in zip(counts, estimates, strict=True)) + rounds * len(calls) * (
        SETTLE_S + max(estimates)
    )
    deadline = None if repeat is not None else time.perf_counter() + 2 * planned + 0.05
    seconds: list[list[float]] = [[] for _ in engines]
    clock = time.perf_counter
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in blocks(counts, rounds):
            for i, n in round_:
                call = calls[i]
                time.sleep(SETTLE_S)  # let the previous engine's spinning threads park
                call()  # untimed: wakes this engine's thread pool after the others ran
                times = seconds[i]
                for _ in range(n):
                    t0 = clock()
                    call()
                    times.append(clock() - t0)
            if deadline is not None and clock() > deadline and all(seconds):
                break
    finally:
        if was_enabled:
            gc.enable()
    return [summarize(e, int(X.shape[0]), s) for e, s in zip(engines, seconds, strict=True)]


def speedup(timing: Timing, baseline: Timing | None) -> float | None:
    """How many times faster than the baseline (median against median); None without one."""
    if baseline is None or timing.p50_s <= 0:
        return None
    return baseline.p50_s / timing.p50_s


def baseline_of(timings: Sequence[Timing], batch_size: int) -> Timing | None:
    for timing in timings:
        if timing.engine == BASELINE and timing.batch_size == batch_size:
            return timing
    return None
