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
    loading,
    parity,
    probing,
    runtime,
    tuning,
    variants,
)
from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx._fsutil import atomic_write_bytes, sha256_bytes
from alphapulse_onnx.errors import InputError, ProviderError, failure_line, first_line
from alphapulse_onnx.lock import OutputLock
from alphapulse_onnx.manifest import Manifest, ManifestEntry
from alphapulse_onnx.runtime import SessionSettings
from alphapulse_onnx.signature import InputSignature, infer

DEFAULT_BATCH_SIZES = (1, 64, 1024, 16384)
DEFAULT_PROVIDERS = ("cpu", "cuda")
DEFAULT_BUDGET_S = 0.5
PARITY_ROWS = 2048
APO = "onnx"  # apo's own path: what Registry delivers
BARE = "ort-bare"  # a bare onnxruntime session, default settings: run(None, {"X": X as float32})


@dataclass(frozen=True)
class BenchOptions:
    target: Path = Path("models/onnx")
    models: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    fp16: bool = False
    int8: bool = False
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    repeat: int | None = None
    budget_s: float = DEFAULT_BUDGET_S
    tune: bool = True
    tolerance: parity.Tolerance | None = None  # None: each entry's own (from apo convert)
    min_speedup: float | None = None
    policy: loading.TrustPolicy = loading.DEFAULT_POLICY
    seed: int = 0

    @property
    def manifest_path(self) -> Path:
        return manifest_io.resolve_path(self.target)

    @property
    def variant_names(self) -> tuple[variants.VariantName, ...]:
        names: list[variants.VariantName] = []
        if self.fp16:
            names.append("fp16")
        if self.int8:
            names.append("int8")
        return tuple(names)


@dataclass(frozen=True)
class Step:
    model: str
    stage: str  # load, tune, variants, time
    index: int  # 0-based model index
    total: int


@dataclass(frozen=True)
class Row:
    """One line of the report: an engine/variant on a provider at a batch size."""

    model: str
    timing: benchmark.Timing
    speedup: float | None  # scikit-learn p50 / this p50, measured in the same run
    parity: str  # "reference" (scikit-learn), "passed", "failed: ..."

    def to_json(self) -> dict[str, Any]:
        t = self.timing
        return {
            "engine": t.engine,
            "variant": t.variant,
            "provider": t.provider,
            "batch_size": t.batch_size,
            "p50_ms": t.p50_s * 1e3,
            "p99_ms": t.p99_s * 1e3,
            "mean_ms": t.mean_s * 1e3,
            "min_ms": t.min_s * 1e3,
            "calls": t.calls,
            "rows_per_s": t.rows_per_s,
            "speedup_vs_sklearn": self.speedup,
            "parity": self.parity,
        }


@dataclass(frozen=True)
class ModelBench:
    name: str
    status: Literal["ok", "failed", "skipped"]
    error: str | None = None
    rows: tuple[Row, ...] = ()
    variants: tuple[variants.VariantReport, ...] = ()
    session: dict[str, Any] | None = None
    apo_path: str | None = None  # "registry" or "session"
    estimator: str | None = None
    tuned: bool = False  # session settings measured in this run (else the manifest's, or defaults)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "estimator": self.estimator,
            "apo_path": self.apo_path,
            "session": self.session,
            "tuned": self.tuned,
            "variants": [v.to_json() for v in self.variants],
            "results": [r.to_json() for r in self.rows],
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
    machine: dict[str, Any]
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
            "machine": self.machine,
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


def machine_description(statuses: tuple[runtime.ProviderStatus, ...]) -> dict[str, Any]:
    return {
        "cpu": runtime.cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "apo": __version__,
        "providers": {
            p.name: {"runs": p.runs, "reason": p.reason, "device": p.device} for p in statuses
        },
        "versions": runtime.stack_versions(),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # Other work on the machine moves every figure; ratios measured together move less.
        "load_average_1m": _load_average(),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def provider_statuses(requested: tuple[str, ...]) -> tuple[runtime.ProviderStatus, ...]:
    report = runtime.probe_all()
    out = []
    for name in dict.fromkeys(runtime.provider_name(p) for p in requested):
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


@dataclass
class _Context:
    """What one model's bench needs, loaded and checked once."""

    entry: ManifestEntry
    model: Any
    signature: InputSignature
    artifact_path: Path
    onnx_bytes: bytes
    dtype: type
    input_name: str
    probe: probing.Probe
    tolerance: parity.Tolerance


def _load(entry: ManifestEntry, manifest: Manifest, options: BenchOptions) -> _Context:
    path = options.manifest_path
    if entry.artifact is None:
        raise InputError(f"{entry.name}: no artifact in the manifest", path=path)
    if len(entry.inputs) != 1 or entry.inputs[0].dtype not in ("float32", "float64"):
        kinds = ", ".join(sorted({spec.dtype for spec in entry.inputs}))
        raise NotBenchmarked(
            f"{entry.name}: not benchmarked: apo bench times artifacts with one float input "
            f"(this one takes {len(entry.inputs)} inputs: {kinds})"
        )
    artifact_path = path.parent / entry.artifact.path
    registry = manifest_io.registry_dir(path, manifest)
    source = registry / entry.source.path
    files = manifest_io.verify(entry, path.parent, registry)
    files.raise_if_tampered(path=path)
    assert files.artifact_bytes is not None
    onnx_bytes = files.artifact_bytes
    loaded = loading.load(source, options.policy)
    signature = infer(loaded.estimator)
    probe = probing.generate(
        loaded.estimator, signature.n_features, rows=PARITY_ROWS, seed=options.seed
    )
    precision = entry.artifact.precision
    return _Context(
        entry=entry,
        model=loaded.estimator,
        signature=signature,
        artifact_path=artifact_path,
        onnx_bytes=onnx_bytes,
        dtype=np.float64 if precision == "float64" else np.float32,
        input_name=entry.inputs[0].name,
        probe=probe,
        tolerance=options.tolerance or entry.tolerance,
    )


def timing_rows(ctx: _Context, max_rows: int, seed: int) -> np.ndarray:
    """``max_rows`` rows drawn from the probe (thresholds, statistics): realistic, reproducible."""
    rng = np.random.default_rng(seed)
    X = ctx.probe.X
    return np.ascontiguousarray(X[rng.integers(0, X.shape[0], size=max_rows)], dtype=np.float64)


def _parity(ctx: _Context, onnx_bytes: bytes, provider: str) -> parity.ParityReport:
    session = runtime.make_session(onnx_bytes, [provider])
    feeds: dict[str, np.ndarray] = {
        ctx.input_name: np.ascontiguousarray(ctx.probe.X, dtype=ctx.dtype)
    }
    outputs = runtime.run(session, feeds)
    return parity.compare(
        ctx.model,
        ctx.signature,
        ctx.probe.X,
        outputs,
        probe=ctx.probe.kind,
        precision=ctx.entry.artifact.precision if ctx.entry.artifact else "float32",
        tolerance=ctx.tolerance,
    )


def _variant_parity(ctx: _Context, onnx_bytes: bytes, provider: str) -> parity.ParityReport:
    session = runtime.make_session(onnx_bytes, [provider])
    feeds = {ctx.input_name: np.ascontiguousarray(ctx.probe.X, dtype=np.float32)}
    outputs = runtime.run(session, feeds)
    return variants.validate(
        ctx.model,
        ctx.signature,
        ctx.probe.X,
        outputs,
        probe=ctx.probe.kind,
        tolerance=ctx.tolerance,
    )


def _parity_cell(report: parity.ParityReport) -> str:
    return "passed" if report.passed else f"failed: {report.reason}"


# ---------------------------------------------------------------------------- engines


def sklearn_engine(ctx: _Context) -> benchmark.Engine:
    model, signature = ctx.model, ctx.signature
    method = model.predict_proba if signature.has_proba else model.predict

    def prepare(X: np.ndarray) -> benchmark.Call:
        frame = parity.sklearn_input(X, signature)
        return lambda: method(frame)

    return benchmark.Engine("sklearn", "-", None, prepare)


def session_engine(
    name: str,
    variant: str,
    provider: str,
    onnx_bytes: bytes,
    ctx: _Context,
    settings: SessionSettings | None,
) -> benchmark.Engine:
    """A session on ``provider``, called as its user would: ``run(None, {"X": float32 rows})``."""
    session = runtime.make_session(onnx_bytes, [provider], settings)
    input_name, dtype = ctx.input_name, ctx.dtype

    def prepare(X: np.ndarray) -> benchmark.Call:
        # Callers hold float64 rows: converting them is part of every real call (and a fresh
        # array each call is what onnxruntime sees in practice, not one array reused).
        return lambda: session.run(None, {input_name: np.ascontiguousarray(X, dtype=dtype)})

    return benchmark.Engine(name, variant, provider, prepare)


def registry_engine(ctx: _Context, manifest_path: Path, provider: str) -> benchmark.Engine | None:
    """apo's public path, ``Registry``, serving the model on ``provider`` (None if it cannot)."""
    try:
        from alphapulse_onnx.registry import Registry
    except ImportError:
        return None
    try:
        served = Registry.open(manifest_path, providers=[provider])[ctx.entry.name]
        if served.engine != "onnxruntime" or served.provider != provider:
            return None
    except Exception:
        return None
    method = served.predict_proba if ctx.signature.has_proba else served.predict

    def prepare(X: np.ndarray) -> benchmark.Call:
        return lambda: method(X)

    return benchmark.Engine(APO, "fp32", provider, prepare)


# ---------------------------------------------------------------------------- one model


def _tune(
    ctx: _Context, batches: dict[int, np.ndarray], options: BenchOptions
) -> tuning.TuneResult:
    return tuning.tune(
        ctx.onnx_bytes,
        batches,
        provider="CPUExecutionProvider",
        dtype=ctx.dtype,
        budget_s=max(options.budget_s / 2, 0.01),
        repeat=options.repeat,
        baseline=sklearn_engine(ctx),
    )


def _variant(
    ctx: _Context, name: variants.VariantName, provider: str, manifest_dir: Path
) -> tuple[variants.VariantReport, bytes | None]:
    precision = ctx.entry.artifact.precision if ctx.entry.artifact else "float32"
    built = variants.build(name, ctx.onnx_bytes, precision=precision)

    def report(status: variants.Status, note: str, **extra: Any) -> variants.VariantReport:
        return variants.VariantReport(
            name,
            status,
            note,
            nodes_total=built.nodes_total,
            nodes_changed=built.nodes_changed,
            changed_ops=built.changed_ops,
            tool=built.tool,
            **extra,
        )

    if built.onnx_bytes is None:
        failed = "failed" in built.note or "not installed" in built.note
        status: variants.Status = "unchanged" if built.nodes_total and not failed else "unavailable"
        return report(status, built.note), None
    try:
        checked = _variant_parity(ctx, built.onnx_bytes, provider)
    except Exception as exc:
        return report(
            "unavailable", f"{built.note}; does not run on {provider}: {first_line(exc)}"
        ), None
    if not checked.passed:
        note = (
            f"{built.note}; rejected: {checked.reason} (tolerance: proba atol "
            f"{ctx.tolerance.proba_atol:g}, regression rtol {ctx.tolerance.regression_rtol:g})"
        )
        return report("rejected", note, parity=checked), None
    assert ctx.entry.artifact is not None
    rel = _variant_path(ctx.entry.artifact.path, name)
    atomic_write_bytes(manifest_dir / rel, built.onnx_bytes)
    kept = report(
        "kept", built.note, parity=checked, artifact=rel, sha256=sha256_bytes(built.onnx_bytes)
    )
    return kept, built.onnx_bytes


def _variant_path(artifact_rel: str, name: str) -> str:
    stem = artifact_rel[: -len(".onnx")] if artifact_rel.endswith(".onnx") else artifact_rel
    return f"{stem}.{name}.onnx"


def bench_model(
    ctx: _Context, options: BenchOptions, running: list[str], settings: SessionSettings
) -> ModelBench:
    """Validate variants, then time every engine at every batch size, interleaved."""
    manifest_dir = options.manifest_path.parent
    reports: list[variants.VariantReport] = []
    kept: list[tuple[str, str, bytes]] = []  # (variant, provider, bytes)
    parity_by_provider: dict[str, str] = {}
    for provider in running:
        parity_by_provider[provider] = _parity_cell(_parity(ctx, ctx.onnx_bytes, provider))
    if options.variant_names:
        check_on = running[0]
        for name in options.variant_names:
            report, onnx_bytes = _variant(ctx, name, check_on, manifest_dir)
            reports.append(report)
            if onnx_bytes is not None:
                kept.extend((name, p, onnx_bytes) for p in running)
    engines = [sklearn_engine(ctx)]
    apo_path = "session"
    for provider in running:
        via_registry = registry_engine(ctx, options.manifest_path, provider)
        if via_registry is not None:
            engines.append(via_registry)
            apo_path = "registry"
        else:
            engines.append(session_engine(APO, "fp32", provider, ctx.onnx_bytes, ctx, settings))
        engines.append(session_engine(BARE, "fp32", provider, ctx.onnx_bytes, ctx, None))
    for variant, provider, onnx_bytes in kept:
        engines.append(session_engine(APO, variant, provider, onnx_bytes, ctx, settings))
    variant_parity: dict[str, str] = {
        r.name: _parity_cell(r.parity) for r in reports if r.parity is not None
    }
    X_all = timing_rows(ctx, max(options.batch_sizes), options.seed)
    rows: list[Row] = []
    for size in options.batch_sizes:
        timings = benchmark.measure(
            engines, X_all[:size], budget_s=options.budget_s, repeat=options.repeat
        )
        base = benchmark.baseline_of(timings, size)
        for t in timings:
            if t.engine == "sklearn":
                cell = "reference"
            elif t.variant == "fp32":
                cell = parity_by_provider.get(t.provider or "", "-")
            else:
                cell = variant_parity.get(t.variant, "-")
            rows.append(Row(ctx.entry.name, t, benchmark.speedup(t, base), cell))
    return ModelBench(
        name=ctx.entry.name,
        status="ok",
        rows=tuple(rows),
        variants=tuple(reports),
        session=ctx.entry.session,
        apo_path=apo_path,
        estimator=ctx.entry.source.estimator,
    )


def bench_json(
    result: ModelBench,
    options: BenchOptions,
    settings: SessionSettings,
    statuses: tuple[runtime.ProviderStatus, ...],
) -> dict[str, Any]:
    """What goes into the manifest entry's ``bench``."""
    return {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "batch_sizes": list(options.batch_sizes),
        "budget_s": options.budget_s,
        "repeat": options.repeat,
        "apo_path": result.apo_path,
        "settings": settings.to_json(),
        "providers": {
            p.name: "runs" if p.runs else f"does not run here: {p.reason}" for p in statuses
        },
        "variants": {v.name: v.to_json() for v in result.variants},
        "results": [r.to_json() for r in result.rows],
    }


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
        raise InputError(
            "no such file or folder",
            path=options.target,
            hint="pass the folder `apo convert` wrote (default models/onnx)",
        )
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
                ctx = _load(entry, manifest, options)
                settings = SessionSettings.from_json(entry.session)
                if options.tune and "CPUExecutionProvider" in running:
                    yield Step(entry.name, "tune", index, total)
                    rows = timing_rows(ctx, max(options.batch_sizes), options.seed)
                    batches = {size: rows[:size] for size in options.batch_sizes}
                    tuned = _tune(ctx, batches, options)
                    settings = tuned.best
                    session = tuned.to_session_json(
                        cpu=runtime.cpu_name(), cores=os.cpu_count() or 1
                    )
                    ctx.entry = replace(entry, session=session)
                    # Written now, so that Registry (re-reading the manifest) serves these settings.
                    manifest = manifest.replace_entry(ctx.entry)
                    manifest_io.write(path, manifest)
                yield Step(entry.name, "time", index, total)
                result = bench_model(ctx, options, running, settings)
                result = replace(result, tuned=ctx.entry.session is not entry.session)
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
                replace(ctx.entry, bench=bench_json(result, options, settings, statuses))
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
