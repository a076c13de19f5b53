"""``apo bench``: scikit-learn against apo's compiled path, side by side, on this machine.

For every selected model of a manifest: check that the source and artifact are the ones the
manifest describes, tune the session settings (``tuning``), build and validate the requested
variants (``variants``), then time at each batch size, interleaved in one run: scikit-learn, apo's
own path (``Registry`` when available, else a session with the manifest's settings), a bare
onnxruntime session with default settings, and each kept variant, on each requested provider that
really runs. Figures go into the manifest entry's ``bench``, tuned settings into its ``session``
and the machine description into the manifest's ``machine``; every write is atomic.

``run()`` yields ``Step`` events (for the CLI's progress bar) and finally one ``BenchOutcome``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from alphapulse_onnx import (
    __version__,
    benchmark,
    checking,
    engines,
    loading,
    parity,
    runtime,
    tuning,
    variants,
)
from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx.datafiles.samples import read_sample
from alphapulse_onnx.engines import APO, BARE, SKLEARN
from alphapulse_onnx.errors import ApoError, InputError, ProviderError, failure_line
from alphapulse_onnx.lock import OutputLock
from alphapulse_onnx.manifest import ArtifactInfo, Manifest, ManifestEntry
from alphapulse_onnx.measurements import (
    ApoPath,
    BenchRecord,
    BenchResult,
    Machine,
    MachineProvider,
    SessionRecord,
    VariantName,
    VariantReport,
)
from alphapulse_onnx.parity import ParityReport
from alphapulse_onnx.runtime import SessionSettings
from alphapulse_onnx.signature import infer

DEFAULT_BATCH_SIZES = (1, 64, 1024, 16384)
DEFAULT_BUDGET_S = 0.5
PARITY_ROWS = 2048


@dataclass(frozen=True)
class BenchOptions:
    target: Path = Path("models/onnx")
    models: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    fp16: bool = False
    int8: bool = False
    providers: tuple[str, ...] = ()  # none: every provider apo would pick that runs here
    repeat: int | None = None
    budget_s: float = DEFAULT_BUDGET_S
    tune: bool = True
    tolerance: parity.Tolerance | None = None  # None: each entry's own (from apo convert)
    min_speedup: float | None = None
    policy: loading.TrustPolicy = loading.DEFAULT_POLICY
    sample: Path | None = None  # rows to time (and check parity) on, instead of probe rows
    seed: int = 0

    @property
    def manifest_path(self) -> Path:
        return manifest_io.resolve_path(self.target)

    @property
    def variant_names(self) -> tuple[VariantName, ...]:
        names: list[VariantName] = []
        if self.fp16:
            names.append("fp16")
        if self.int8:
            names.append("int8")
        return tuple(names)


@dataclass(frozen=True)
class Step:
    model: str
    stage: Literal["load", "tune", "time"]  # timing includes building and checking variants
    index: int  # 0-based model index
    total: int


@dataclass(frozen=True)
class Row:
    """One line of the report: an engine/variant on a provider at a batch size."""

    model: str
    timing: benchmark.Timing
    speedup: float | None  # scikit-learn p50 / this p50, measured in the same run
    parity: ParityReport | None  # what was timed, against scikit-learn; None: scikit-learn itself

    @property
    def parity_cell(self) -> str:
        """Parity as reported: "reference" (scikit-learn itself), "passed" or "failed: REASON"."""
        if self.parity is None:
            return "reference"
        return "passed" if self.parity.passed else f"failed: {self.parity.reason}"

    def record(self) -> BenchResult:
        t = self.timing
        return BenchResult(
            engine=t.engine,
            variant=t.variant,
            provider=t.provider,
            batch_size=t.batch_size,
            p50_ms=t.p50_s * 1e3,
            p99_ms=t.p99_s * 1e3,
            mean_ms=t.mean_s * 1e3,
            min_ms=t.min_s * 1e3,
            calls=t.calls,
            rows_per_s=t.rows_per_s,
            speedup_vs_sklearn=self.speedup,
            parity=self.parity_cell,
        )


@dataclass(frozen=True)
class Headline:
    """apo's path against scikit-learn on one provider: speedups at the smallest and the
    largest batch size timed (scikit-learn p50 / apo p50)."""

    provider: str
    smallest_batch: int
    smallest: float | None
    largest_batch: int
    largest: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "batch_sizes": [self.smallest_batch, self.largest_batch],
            "speedups": [self.smallest, self.largest],
        }


@dataclass(frozen=True)
class ModelBench:
    name: str
    status: Literal["ok", "failed", "skipped"]
    error: str | None = None
    rows: tuple[Row, ...] = ()
    variants: tuple[VariantReport, ...] = ()
    session: SessionRecord | None = None
    apo_path: ApoPath | None = None
    estimator: str | None = None
    tuned: bool = False  # session settings measured in this run (else the manifest's, or defaults)
    drawn_from: str | None = None  # the rows timed: "sample" (--sample), or the probes' kind
    note: str | None = None  # why not the rows asked for (a --sample that misses its columns)

    def headlines(self) -> list[Headline]:
        """Per provider, apo's fp32 path at the smallest and the largest batch size."""
        apo: dict[str, dict[int, float | None]] = {}
        for r in self.rows:
            t = r.timing
            if t.engine == APO and t.variant == "fp32" and t.provider is not None:
                apo.setdefault(t.provider, {})[t.batch_size] = r.speedup
        out = []
        for provider, by_size in apo.items():
            low, high = min(by_size), max(by_size)
            out.append(Headline(provider, low, by_size[low], high, by_size[high]))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "estimator": self.estimator,
            "apo_path": self.apo_path,
            "session": self.session.to_json() if self.session is not None else None,
            "tuned": self.tuned,
            "rows_from": self.drawn_from,
            "note": self.note,
            "variants": [v.to_json() for v in self.variants],
            "results": [r.record().to_json() for r in self.rows],
            "summary": [h.to_json() for h in self.headlines()],
        }


@dataclass(frozen=True)
class GateFailure:
    model: str
    provider: str
    batch_size: int
    speedup: float

    def line(self, threshold: float) -> str:
        return (
            f"{self.model}: apo's ONNX path on {self.provider} is {self.speedup:.3g}x scikit-learn "
            f"at batch size {self.batch_size} (--min-speedup {threshold:g})"
        )


@dataclass(frozen=True)
class BenchOutcome:
    manifest_path: Path
    machine: Machine
    providers: tuple[runtime.ProviderStatus, ...]  # requested, with whether each runs here
    models: tuple[ModelBench, ...]
    batch_sizes: tuple[int, ...]
    min_speedup: float | None = None
    gate_failures: tuple[GateFailure, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return bool(self.gate_failures) or any(m.status == "failed" for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_path.as_posix(),
            "machine": self.machine.to_json(),
            "batch_sizes": list(self.batch_sizes),
            "providers": [p.to_json() for p in self.providers],
            "models": [m.to_json() for m in self.models],
            "min_speedup": {
                "threshold": self.min_speedup,
                "passed": not self.gate_failures,
                "failures": [
                    {
                        "model": f.model,
                        "provider": f.provider,
                        "batch_size": f.batch_size,
                        "speedup": f.speedup,
                    }
                    for f in self.gate_failures
                ],
            },
            "warnings": list(self.warnings),
            "ok": not self.failed,
        }


def machine_description(statuses: tuple[runtime.ProviderStatus, ...]) -> Machine:
    return Machine(
        cpu=runtime.cpu_name(),
        cores=os.cpu_count(),
        platform=platform.platform(),
        python=sys.version.split()[0],
        apo=__version__,
        providers={p.name: MachineProvider(p.runs, p.reason, p.device) for p in statuses},
        versions=runtime.stack_versions(),
        measured=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # Other work on the machine moves every figure; ratios measured together move less.
        load_average_1m=_load_average(),
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def provider_statuses(requested: tuple[str, ...]) -> tuple[runtime.ProviderStatus, ...]:
    """The requested providers, each with whether it runs here; none requested: those apo
    picks on its own that run here (CUDA where it runs, and CPU)."""
    report = runtime.probe_all()
    names = [runtime.provider_name(p) for p in requested] or runtime.runnable_providers()
    out = []
    for name in dict.fromkeys(names):
        found = next((p for p in report.providers if p.name == name), None)
        out.append(
            found
            or runtime.ProviderStatus(
                name, listed=False, runs=False, reason="not in this onnxruntime build"
            )
        )
    return tuple(out)


def select(manifest: Manifest, names: tuple[str, ...], path: Path) -> list[ManifestEntry]:
    if not names:
        return list(manifest.models)
    out: list[ManifestEntry] = []
    for name in names:
        try:
            entry = manifest.entry(name)
        except KeyError as exc:
            raise InputError(
                str(exc.args[0]), path=path, hint="see `apo convert`'s table"
            ) from None
        if entry not in out:
            out.append(entry)
    return out


class NotBenchmarked(Exception):
    """A model apo bench cannot time (reported as skipped, not as a failure)."""


@dataclass(frozen=True)
class Sample:
    """``--sample``, read once: rows for one-input models, or why only per-column ones take it."""

    path: Path
    rows: tuple[np.ndarray, list[str] | None] | None
    error: str | None  # a table with text columns (or Parquet): per-column models only


def read_bench_sample(path: Path | None) -> Sample | None:
    if path is None:
        return None
    try:
        return Sample(path, read_sample(path), None)
    except ApoError as exc:
        if not checking.readable_table(path):
            raise
        return Sample(path, None, str(exc))


@dataclass
class _Context:
    """What one model's bench needs, loaded and checked once."""

    entry: ManifestEntry  # replaced once tuning has recorded new session settings
    artifact: ArtifactInfo
    onnx_bytes: bytes
    feeds: engines.Feeds  # a batch to the session's feeds, as a bare caller converts it
    reference: variants.Reference  # scikit-learn, the probe rows and the tolerance


def _load(
    entry: ManifestEntry, manifest: Manifest, options: BenchOptions, sample: Sample | None
) -> _Context:
    path = options.manifest_path
    if entry.artifact is None:
        raise InputError(f"{entry.name}: no artifact in the manifest", path=path)
    if not entry.inputs:
        raise NotBenchmarked(f"{entry.name}: not benchmarked: the manifest lists no inputs")
    registry = manifest_io.registry_dir(path, manifest)
    source = registry / entry.source.path
    files = manifest_io.verify(entry, path.parent, registry)
    files.raise_if_tampered(path=path)
    assert files.artifact_bytes is not None
    onnx_bytes = files.artifact_bytes
    loaded = loading.load(source, loading.selecting(options.policy, entry.source.selected))
    signature = infer(loaded.estimator)
    probe = checking.probe_for(
        loaded.estimator,
        signature,
        sample_path=sample.path if sample else None,
        sample=sample.rows if sample else None,
        sample_error=sample.error if sample else None,
        probe_rows=PARITY_ROWS,
    )
    return _Context(
        entry=entry,
        artifact=entry.artifact,
        onnx_bytes=onnx_bytes,
        feeds=engines.feeds_for(entry.inputs),
        reference=variants.Reference(
            model=loaded.estimator,
            signature=signature,
            probe=probe,
            inputs=entry.inputs,
            tolerance=options.tolerance or entry.tolerance,
        ),
    )


def timing_rows(ctx: _Context, max_rows: int, seed: int) -> Any:
    """``max_rows`` rows drawn from the probe (thresholds, statistics, or ``--sample``):
    realistic and reproducible. Float64 rows for a one-input model; a DataFrame, as the model
    was fitted, for a per-column model."""
    rng = np.random.default_rng(seed)
    probe = ctx.reference.probe
    picked = rng.integers(0, probe.rows, size=max_rows)
    if probe.columns is not None:
        columns = {name: values[picked] for name, values in probe.columns.items()}
        return parity.sklearn_input(columns, ctx.reference.signature)
    return np.ascontiguousarray(probe.X[picked], dtype=np.float64)


def head(rows: Any, size: int) -> Any:
    """The first ``size`` rows of an array or a DataFrame."""
    return rows[:size] if isinstance(rows, np.ndarray) else rows.iloc[:size]


def _parity(ctx: _Context, provider: str) -> ParityReport:
    """The artifact itself against scikit-learn on ``provider``, at the artifact's precision."""
    reference = ctx.reference
    session = runtime.make_session(ctx.onnx_bytes, [provider])
    outputs = runtime.run(session, reference.feeds())
    return parity.compare(
        reference.model,
        reference.signature,
        reference.rows,
        outputs,
        probe=reference.probe.kind,
        precision=ctx.artifact.precision,
        tolerance=reference.tolerance,
    )


# ---------------------------------------------------------------------------- one model


def _sklearn_engine(ctx: _Context) -> benchmark.Engine:
    return engines.sklearn_engine(ctx.reference.model, ctx.reference.signature)


def _session_engine(
    name: str,
    variant: str,
    provider: str,
    onnx_bytes: bytes,
    ctx: _Context,
    settings: SessionSettings | None,
) -> benchmark.Engine:
    return engines.session_engine(
        name, variant, provider, onnx_bytes, feeds=ctx.feeds, settings=settings
    )


def _tune(ctx: _Context, batches: dict[int, Any], options: BenchOptions) -> tuning.TuneResult:
    return tuning.tune(
        ctx.onnx_bytes,
        batches,
        provider="CPUExecutionProvider",
        feeds=ctx.feeds,
        budget_s=max(options.budget_s / 2, 0.01),
        repeat=options.repeat,
        baseline=_sklearn_engine(ctx),
    )


def bench_model(
    ctx: _Context, options: BenchOptions, running: list[str], settings: SessionSettings
) -> ModelBench:
    """Validate variants, then time every engine at every batch size, interleaved."""
    # The parity behind each timed (variant, provider): the artifact is checked on every
    # provider, a variant once, on the first, before it is kept and timed on all of them.
    checked: dict[tuple[str, str | None], ParityReport] = {
        ("fp32", provider): _parity(ctx, provider) for provider in running
    }
    reports: list[VariantReport] = []
    kept: list[tuple[VariantName, str, bytes]] = []  # (variant, provider, bytes)
    for name in options.variant_names:
        report, onnx_bytes = variants.make(
            name,
            ctx.artifact,
            ctx.onnx_bytes,
            ctx.reference,
            provider=running[0],
            manifest_dir=options.manifest_path.parent,
        )
        reports.append(report)
        if onnx_bytes is not None and report.parity is not None:
            kept.extend((name, p, onnx_bytes) for p in running)
            checked.update({(name, p): report.parity for p in running})
    timed = [_sklearn_engine(ctx)]
    apo_path: ApoPath = "session"
    for provider in running:
        via_store = engines.store_engine(
            options.manifest_path, ctx.entry.name, ctx.reference.signature, provider
        )
        if via_store is not None:
            timed.append(via_store)
            apo_path = "store"
        else:
            timed.append(_session_engine(APO, "fp32", provider, ctx.onnx_bytes, ctx, settings))
        timed.append(_session_engine(BARE, "fp32", provider, ctx.onnx_bytes, ctx, None))
    for variant, provider, onnx_bytes in kept:
        timed.append(_session_engine(APO, variant, provider, onnx_bytes, ctx, settings))
    X_all = timing_rows(ctx, max(options.batch_sizes), options.seed)
    rows: list[Row] = []
    for size in options.batch_sizes:
        timings = benchmark.measure(
            timed, head(X_all, size), budget_s=options.budget_s, repeat=options.repeat
        )
        base = benchmark.baseline_of(timings, size)
        for t in timings:
            against = None if t.engine == SKLEARN else checked[(t.variant, t.provider)]
            rows.append(Row(ctx.entry.name, t, benchmark.speedup(t, base), against))
    return ModelBench(
        name=ctx.entry.name,
        status="ok",
        rows=tuple(rows),
        variants=tuple(reports),
        session=ctx.entry.session,
        apo_path=apo_path,
        estimator=ctx.entry.source.estimator,
        drawn_from=ctx.reference.probe.kind,
        note=ctx.reference.probe.note,
    )


def bench_record(
    result: ModelBench,
    options: BenchOptions,
    settings: SessionSettings,
    statuses: tuple[runtime.ProviderStatus, ...],
) -> BenchRecord:
    """What goes into the manifest entry's ``bench``."""
    return BenchRecord(
        measured=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        batch_sizes=options.batch_sizes,
        budget_s=options.budget_s,
        repeat=options.repeat,
        apo_path=result.apo_path,
        settings=settings,
        providers={
            p.name: "runs" if p.runs else f"does not run here: {p.reason}" for p in statuses
        },
        variants={v.name: v for v in result.variants},
        results=tuple(r.record() for r in result.rows),
    )


def gate(models: tuple[ModelBench, ...], threshold: float | None) -> tuple[GateFailure, ...]:
    if threshold is None:
        return ()
    failures = []
    for m in models:
        for r in m.rows:
            t = r.timing
            if (
                t.engine == APO
                and t.variant == "fp32"
                and r.speedup is not None
                and r.speedup < threshold
            ):
                failures.append(GateFailure(m.name, t.provider or "-", t.batch_size, r.speedup))
    return tuple(failures)


# ---------------------------------------------------------------------------- the command


def _failure(entry: ManifestEntry, exc: BaseException) -> ModelBench:
    message = failure_line(entry.name, exc, stage="the bench")
    return ModelBench(entry.name, "failed", error=message, estimator=entry.source.estimator)


def run(options: BenchOptions) -> Iterator[Step | BenchOutcome]:
    path = options.manifest_path
    if not path.exists():
        if options.target.is_dir():
            raise InputError(
                f"no {manifest_io.MANIFEST_NAME} in this folder, so no store to bench",
                path=options.target,
                hint="pass the store `apo convert` wrote (REGISTRY/onnx), or run "
                "`apo convert REGISTRY` first",
            )
        raise InputError(
            "no such file or folder",
            path=options.target,
            hint="pass the store `apo convert` wrote (default models/onnx)",
        )
    sample = read_bench_sample(options.sample)
    statuses = provider_statuses(options.providers)
    running = [p.name for p in statuses if p.runs]
    if not running:
        wanted = ", ".join(f"{p.name} ({p.reason})" for p in statuses)
        raise ProviderError(
            f"none of the requested providers runs here: {wanted}",
            hint="see `apo providers`; --providers cpu always runs",
        )
    warnings = [
        f"{p.name} does not run here: {p.reason}; not benchmarked" for p in statuses if not p.runs
    ]
    machine = machine_description(statuses)
    results: list[ModelBench] = []
    with OutputLock(path.parent):
        manifest = manifest_io.read(path)
        entries = select(manifest, options.models, path)
        total = len(entries)
        for index, entry in enumerate(entries):
            if not entry.ok:
                results.append(
                    ModelBench(
                        entry.name,
                        "skipped",
                        estimator=entry.source.estimator,
                        error=f"{entry.name}: not benchmarked: its conversion failed "
                        f"({entry.error})",
                    )
                )
                continue
            yield Step(entry.name, "load", index, total)
            try:
                ctx = _load(entry, manifest, options, sample)
                settings = entry.session_settings
                tuned_now = options.tune and "CPUExecutionProvider" in running
                if tuned_now:
                    yield Step(entry.name, "tune", index, total)
                    rows = timing_rows(ctx, max(options.batch_sizes), options.seed)
                    batches = {size: head(rows, size) for size in options.batch_sizes}
                    tuned = _tune(ctx, batches, options)
                    settings = tuned.best
                    session = tuned.session_record(
                        cpu=runtime.cpu_name(), cores=os.cpu_count() or 1
                    )
                    ctx.entry = replace(entry, session=session)
                    # Written now, so that Registry (re-reading the manifest) serves these settings.
                    manifest = manifest.replace_entry(ctx.entry)
                    manifest_io.write(path, manifest)
                yield Step(entry.name, "time", index, total)
                result = replace(bench_model(ctx, options, running, settings), tuned=tuned_now)
            except NotBenchmarked as exc:
                results.append(
                    ModelBench(
                        entry.name, "skipped", error=str(exc), estimator=entry.source.estimator
                    )
                )
                continue
            except Exception as exc:  # one model's failure never stops the others
                results.append(_failure(entry, exc))
                continue
            results.append(result)
            manifest = manifest.replace_entry(
                replace(ctx.entry, bench=bench_record(result, options, settings, statuses))
            )
            manifest = replace(manifest, machine=machine)
            manifest_io.write(path, manifest)
        if results:
            manifest_io.write(path, replace(manifest, machine=machine))
    outcome_models = tuple(results)
    yield BenchOutcome(
        manifest_path=path,
        machine=machine,
        providers=statuses,
        models=outcome_models,
        batch_sizes=options.batch_sizes,
        min_speedup=options.min_speedup,
        gate_failures=gate(outcome_models, options.min_speedup),
        warnings=tuple(warnings),
    )
