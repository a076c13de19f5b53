"""Choose onnxruntime session settings by measuring them, per model and batch size.

onnxruntime's defaults (one intra-op thread per core, threads that spin while waiting for work)
suit a quiet machine and big batches; on a small shared machine they can lose to scikit-learn
on large batches, and single rows pay for waking a thread pool. So we time the settings that
matter, interleaved on the same rows with the benchmark harness:

1. intra-op threads 1..cores (and 0, onnxruntime's own choice), each with spinning on and off;
2. from the best of those: the parallel execution mode and the lower graph optimisation levels.

scikit-learn is timed alongside. The best settings at each batch size are recorded ("bands"),
and one setting for the model as a whole: the one whose worst slowdown against the best at any
batch size is smallest, among those that stay clearly ahead of scikit-learn everywhere; when
none does, the one that comes closest to it where apo is weakest (``choose``). That one goes to
the top level of the manifest entry's ``session`` (``SessionRecord``), which is what ``Store``
and ``apo predict`` open sessions with (``ManifestEntry.session_settings``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from alphapulse_onnx import benchmark, runtime
from alphapulse_onnx.measurements import SessionBand, SessionRecord, TuningSummary
from alphapulse_onnx.runtime import SessionSettings

MAX_THREAD_CANDIDATES = 6
# A setting that takes at most this fraction of scikit-learn's time at every batch size is "safe".
SAFE_FRACTION = 0.8
CLOSE = 0.05  # fractions of scikit-learn's time this close count as equal


def thread_counts(cores: int) -> list[int]:
    """1..cores, thinned to powers of two (plus ``cores``) on big machines."""
    cores = max(1, cores)
    if cores <= MAX_THREAD_CANDIDATES:
        return list(range(1, cores + 1))
    counts = sorted({2**k for k in range(int(math.log2(cores)) + 1)} | {cores})
    return counts


def first_stage(cores: int) -> list[SessionSettings]:
    out = [SessionSettings()]  # onnxruntime's defaults, always a candidate
    out.append(SessionSettings(allow_spinning=False))
    for threads in thread_counts(cores):
        if threads == 1:  # no thread pool: spinning means nothing
            out.append(SessionSettings(intra_op_threads=1, allow_spinning=False))
            continue
        out.extend(
            SessionSettings(intra_op_threads=threads, allow_spinning=spin) for spin in (True, False)
        )
    return out


def second_stage(best: SessionSettings) -> list[SessionSettings]:
    return [
        best,
        replace(best, execution_mode="parallel"),
        replace(best, graph_optimization="extended"),
        replace(best, graph_optimization="basic"),
    ]


@dataclass(frozen=True)
class Trial:
    settings: SessionSettings
    batch_size: int
    p50_s: float


@dataclass(frozen=True)
class TuneResult:
    best: SessionSettings
    bands: dict[int, tuple[SessionSettings, float]]  # batch size -> (best settings, p50 seconds)
    trials: tuple[Trial, ...]
    provider: str
    worst_regret: float  # best.p50 / fastest p50, at the batch size where ``best`` loses most
    baseline_p50: dict[int, float] = field(default_factory=dict)  # scikit-learn, when timed

    def default_p50(self, batch_size: int) -> float | None:
        for trial in self.trials:
            if trial.batch_size == batch_size and trial.settings == SessionSettings():
                return trial.p50_s
        return None

    def session_record(self, *, cpu: str, cores: int) -> SessionRecord:
        """The manifest's ``session``: the best settings (what Store reads), then why."""
        return SessionRecord(
            settings=self.best,
            tuned=TuningSummary(
                provider=self.provider,
                cpu=cpu,
                cores=cores,
                worst_regret=round(self.worst_regret, 4),
                candidates=len({t.settings for t in self.trials}),
            ),
            bands=tuple(
                SessionBand(
                    batch_size=size,
                    settings=settings,
                    p50_ms=round(p50 * 1e3, 6),
                    default_p50_ms=_ms(self.default_p50(size)),
                    sklearn_p50_ms=_ms(self.baseline_p50.get(size)),
                )
                for size, (settings, p50) in sorted(self.bands.items())
            ),
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 6)


Feeds = Callable[[Any], dict[str, np.ndarray]]


def _engine(
    model: bytes, provider: str, settings: SessionSettings, feeds: Feeds
) -> benchmark.Engine:
    session = runtime.make_session(model, [provider], settings)

    def prepare(X: Any) -> benchmark.Call:
        ready = feeds(X)  # every candidate alike: only the session differs
        return lambda: session.run(None, ready)

    return benchmark.Engine(
        name=_label(settings), variant="fp32", provider=provider, prepare=prepare
    )


def _label(settings: SessionSettings) -> str:
    return repr(settings)


def _time_all(
    candidates: Sequence[SessionSettings],
    model: bytes,
    provider: str,
    batches: Mapping[int, Any],
    feeds: Feeds,
    budget_s: float,
    repeat: int | None,
    baseline: benchmark.Engine | None,
) -> tuple[list[Trial], dict[int, float]]:
    """Candidates (and the baseline, when given) timed together per batch size."""
    engines = [_engine(model, provider, s, feeds) for s in candidates]
    if baseline is not None:
        engines.append(baseline)
    trials = []
    reference: dict[int, float] = {}
    for size, X in batches.items():
        timings = benchmark.measure(engines, X, budget_s=budget_s, repeat=repeat)
        for settings, timing in zip(candidates, timings, strict=False):
            trials.append(Trial(settings, size, timing.p50_s))
        if baseline is not None:
            reference[size] = timings[-1].p50_s
    return trials, reference


def choose(
    trials: Sequence[Trial], baseline: Mapping[int, float] | None = None
) -> tuple[SessionSettings, float]:
    """Pick one setting for every batch size; returns it and its worst slowdown against the best.

    Without a baseline: the setting whose worst slowdown against the fastest, over all batch
    sizes, is smallest (ties: the smaller geometric mean). With scikit-learn's times as the
    baseline, first stay ahead of it: among settings that take at most ``SAFE_FRACTION`` of
    scikit-learn's time at every batch size, the rule above decides; when none does, the setting
    that comes closest to scikit-learn where apo is weakest wins (within ``CLOSE`` of the best
    such fraction, the rule above decides). Being 2x slower than the best setting on one row,
    where apo is 400x ahead of scikit-learn, matters less than losing to it on 16384 rows.
    """
    fastest: dict[int, float] = {}
    for t in trials:
        fastest[t.batch_size] = min(fastest.get(t.batch_size, math.inf), t.p50_s)
    by_settings: dict[SessionSettings, dict[int, float]] = {}
    for t in trials:
        by_settings.setdefault(t.settings, {})[t.batch_size] = t.p50_s
    complete = {s: p for s, p in by_settings.items() if len(p) == len(fastest)} or by_settings

    def regrets(p50s: dict[int, float]) -> list[float]:
        return [p / max(fastest[b], 1e-12) for b, p in p50s.items()]

    def by_regret(settings: SessionSettings) -> tuple[float, float]:
        values = regrets(complete[settings])
        return (round(max(values), 2), float(np.exp(np.mean(np.log(values)))))

    pool = list(complete)
    reference = {b: v for b, v in (baseline or {}).items() if v > 0}
    if reference:

        def fraction(settings: SessionSettings) -> float:
            p50s = complete[settings]
            return max(p / reference[b] for b, p in p50s.items() if b in reference)

        safe = [s for s in pool if fraction(s) <= SAFE_FRACTION]
        if safe:
            pool = safe
        else:
            closest = min(fraction(s) for s in pool)
            pool = [s for s in pool if fraction(s) <= closest * (1 + CLOSE)]
    best = min(pool, key=by_regret)
    return best, max(regrets(complete[best]))


def tune(
    model: bytes,
    batches: Mapping[int, Any],
    *,
    provider: str = "CPUExecutionProvider",
    dtype: type = np.float32,
    feeds: Feeds | None = None,
    budget_s: float = 0.2,
    repeat: int | None = None,
    cores: int | None = None,
    baseline: benchmark.Engine | None = None,
) -> TuneResult:
    """Measure the candidate settings on ``batches`` (rows by batch size) and choose.

    ``feeds`` turns a batch into the session's feeds (default: float64 rows as ``X`` of
    ``dtype``; per-column models pass their own). ``baseline`` (scikit-learn's engine) is timed
    alongside, so the choice can favour settings that keep apo ahead of it where that is close
    (see ``choose``)."""
    cores = cores or os.cpu_count() or 1
    if feeds is None:

        def feeds(X: Any) -> dict[str, np.ndarray]:
            return {"X": np.ascontiguousarray(X, dtype=dtype)}

    args = (model, provider, batches, feeds, budget_s, repeat, baseline)
    trials, reference = _time_all(first_stage(cores), *args)
    stage_one, _ = choose(trials, reference)
    second, reference = _time_all(second_stage(stage_one), *args)
    # The final choice compares candidates timed together in one run; the stage-one winner is one.
    best, regret = choose(second, reference)
    # Settings timed in both stages keep their second (latest) figures for the per-band record.
    latest: dict[tuple[SessionSettings, int], Trial] = {}
    for t in [*trials, *second]:
        latest[(t.settings, t.batch_size)] = t
    final = list(latest.values())
    bands: dict[int, tuple[SessionSettings, float]] = {}
    for t in final:
        if t.batch_size not in bands or t.p50_s < bands[t.batch_size][1]:
            bands[t.batch_size] = (t.settings, t.p50_s)
    return TuneResult(
        best=best,
        bands=bands,
        trials=tuple(final),
        provider=provider,
        worst_regret=regret,
        baseline_p50=reference,
    )
