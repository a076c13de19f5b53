"""``apo convert``: every model file in a registry becomes a checked ONNX artifact plus a manifest.

``run()`` yields one ``ManifestEntry`` per model as it finishes (ok or failed); the CLI owns
progress and rendering. One model's failure, whatever it is, becomes a failed entry for that model
only. The manifest is rewritten atomically as work completes, so an interrupted run leaves a
readable manifest that the next run completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import (
    __version__,
    checking,
    conversion,
    discovery,
    input_contract,
    loading,
    parallel,
    parity,
    plugins,
    probing,
    runtime,
)
from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx._fsutil import atomic_write_bytes, sha256_bytes, sha256_file
from alphapulse_onnx.causes import cause_of
from alphapulse_onnx.commands.events import (
    EnvironmentReady,
    EnvironmentStarted,
    Started,
    prepare_environments,
)
from alphapulse_onnx.datafiles.samples import read_sample
from alphapulse_onnx.discovery import ModelRef
from alphapulse_onnx.errors import ApoError, InputError, failure_line
from alphapulse_onnx.input_contract import InputContract
from alphapulse_onnx.lock import OutputLock
from alphapulse_onnx.manifest import ArtifactInfo, Manifest, ManifestEntry, SourceInfo
from alphapulse_onnx.origin import check as origin_check
from alphapulse_onnx.signature import infer

MANIFEST_WRITE_INTERVAL_S = 2.0
# What the manifest records of a model's inputs; a new value rebuilds artifacts recorded without.
INPUT_CONTRACT_VERSION = 1
# What a conversion worker imports anyway: loaded once into the pool's fork server.
WORKER_PRELOAD = ("alphapulse_onnx.commands.convert", "skl2onnx", "onnxruntime")


@dataclass(frozen=True)
class ConvertOptions:
    registry: Path
    out: Path | None = None
    sample: Path | None = None
    opset: int | None = None
    tolerance: parity.Tolerance = field(default_factory=parity.Tolerance)
    force: bool = False
    policy: loading.TrustPolicy = loading.DEFAULT_POLICY
    plugins: tuple[str, ...] = ()
    jobs: int | None = 1  # None: automatic (cores, for registries large enough to pay off)
    probe_rows: int = probing.DEFAULT_ROWS
    origin: origin_check.OriginOptions | None = None  # --origin: the versions that saved it, too

    @property
    def registry_root(self) -> Path:
        return discovery.registry_root(self.registry)

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else self.registry_root / "onnx"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / manifest_io.MANIFEST_NAME


def build_key(options: ConvertOptions, sample_sha: str | None) -> str:
    """What, besides the source file, decides an artifact: unchanged key + source = reusable."""
    payload = {
        "apo": __version__,
        "opset": options.opset or conversion.target_opset(),
        "tolerance": options.tolerance.to_json(),
        "sample": sample_sha,
        "probe_rows": options.probe_rows,
        "plugins": sorted(options.plugins),
        "select": options.policy.select,
        "onnxruntime": runtime.version(),
        "input_contract": INPUT_CONTRACT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Job:
    """Everything one worker needs for one model (picklable for process pools)."""

    ref: ModelRef
    options: ConvertOptions
    out_dir: Path
    key: str
    sample: tuple[np.ndarray, list[str] | None] | None
    runnable: tuple[str, ...]
    sample_error: str | None = None  # the sample is a mixed table: only per-column models take it
    origin: origin_check.Choice | None = None  # where --origin answers come from for this model


def _source_info(ref: ModelRef, sha: str, stat: os.stat_result, **extra: Any) -> SourceInfo:
    return SourceInfo(path=ref.rel, sha256=sha, size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns,
                      **extra)  # fmt: skip


def _failed(
    ref: ModelRef,
    source: SourceInfo,
    stage: str,
    message: str,
    *,
    exc: BaseException | None = None,
    **extra: Any,
) -> ManifestEntry:
    return ManifestEntry(name=ref.name, status="failed", source=source, stage=stage, error=message,
                         cause=cause_of(exc, stage, message), **extra)  # fmt: skip


def _reusable(previous: ManifestEntry | None, sha: str, key: str, out_dir: Path,
              options: ConvertOptions) -> bool:  # fmt: skip
    if previous is None or not previous.ok or previous.artifact is None:
        return False
    if previous.source.sha256 != sha or previous.build_key != key:
        return False
    if options.origin is not None and (previous.origin is None or not previous.origin.passed):
        return False  # --origin asks for a check the last run did not pass (or did not make)
    artifact = out_dir / previous.artifact.path
    return artifact.is_file() and sha256_file(artifact) == previous.artifact.sha256


def _source_sha(path: Path, stat: os.stat_result, previous: ManifestEntry | None, *,
                force: bool) -> str:  # fmt: skip
    """Issue 7: trust the recorded sha256 when size and mtime_ns match it (``--force`` rehashes)."""
    recorded = previous.source if previous is not None else None
    if (
        not force
        and recorded is not None
        and recorded.sha256
        and (recorded.size_bytes, recorded.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    ):
        return recorded.sha256
    return sha256_file(path)


def reused(job: _Job, previous: ManifestEntry | None) -> ManifestEntry | None:
    """Issue 7: the previous entry when nothing changed, checked cheaply (parallel asks first)."""
    if previous is None or job.options.force:
        return None
    try:
        stat = job.ref.path.stat()
        sha = _source_sha(job.ref.path, stat, previous, force=False)
    except OSError:
        return None
    if not _reusable(previous, sha, job.key, job.out_dir, job.options):
        return None
    return replace(previous, source=replace(previous.source, size_bytes=stat.st_size,
                                            mtime_ns=stat.st_mtime_ns),
                   timings={**previous.timings, "reused": True})  # fmt: skip


def convert_one(job: _Job, previous: ManifestEntry | None = None) -> ManifestEntry:
    """Load, compile, check and write one model; every failure becomes a failed entry."""
    ref, options = job.ref, job.options
    started = time.perf_counter()
    for module in options.plugins:  # issue 7: a spawned worker must load them itself (cached)
        plugins.load_plugin(module)
    try:
        stat = ref.path.stat()
        sha = _source_sha(ref.path, stat, previous, force=options.force)
    except OSError as exc:
        empty = SourceInfo(path=ref.rel, sha256="")
        return _failed(ref, empty, "load", f"{ref.rel}: cannot read: {exc.strerror}")
    source = _source_info(ref, sha, stat)
    if (
        not options.force
        and _reusable(previous, sha, job.key, job.out_dir, options)
        and (_companions_unchanged(ref, previous))
    ):
        assert previous is not None
        return replace(previous, source=replace(previous.source, size_bytes=stat.st_size,
                                                mtime_ns=stat.st_mtime_ns),
                       timings={**previous.timings, "reused": True})  # fmt: skip
    stage = "load"
    contract: InputContract | None = None  # scikit-learn's own, once known
    try:
        loaded = loading.load(ref.path, options.policy)
        source = _source_info(ref, sha, stat, format=loaded.format, estimator=loaded.estimator_type,
                              sklearn_version=loaded.sklearn_version,
                              upgrades=list(loaded.upgrades) or None, selected=loaded.selected,
                              metadata=loaded.metadata or None,
                              companions=_companions(ref, loaded.companions))  # fmt: skip
        stage = "signature"
        signature = infer(loaded.estimator)
        stage = "probe"
        probe = checking.probe_for(loaded.estimator, signature, sample_path=options.sample,
                                   sample=job.sample, sample_error=job.sample_error,
                                   probe_rows=options.probe_rows)  # fmt: skip
        contract = input_contract.determine(loaded.estimator, signature, probe)
        stage = "convert"
        entry_fields = _compile_and_check(loaded, signature, probe, job, started, contract)
    except Exception as exc:  # one model's failure (or a library bug) fails this model only
        return _failed(ref, source, stage, failure_line(ref.rel, exc, stage=stage), exc=exc,
                       input_contract=contract)  # fmt: skip
    status, fields = entry_fields
    notes = (probe.note,) if probe.note else ()
    warnings = tuple(loaded.warnings) + notes + tuple(fields.pop("warnings", ()))
    if status == "failed":
        stage = fields.pop("stage", "parity")
        return _failed(ref, source, stage, fields.pop("error"), warnings=warnings, **fields)
    return ManifestEntry(name=ref.name, status="ok", source=source, warnings=warnings,
                         build_key=job.key, **fields)  # fmt: skip


def _companions(ref: ModelRef, paths: tuple[Path, ...]) -> dict[str, str] | None:
    """Files beside the source that hold part of it, by path relative to the registry."""
    if not paths:
        return None
    root = ref.path.parent
    base = Path(ref.rel).parent
    return {(base / p.relative_to(root)).as_posix(): sha256_file(p) for p in paths}


def _companions_unchanged(ref: ModelRef, previous: ManifestEntry | None) -> bool:
    recorded = previous.source.companions if previous is not None else None
    if not recorded:
        return True
    root = ref.path.parent
    try:
        return all(sha256_file(root / Path(rel).name) == digest for rel, digest in recorded.items())
    except OSError:
        return False


def _compile_and_check(loaded: loading.LoadedModel, signature: Any, probe: probing.Probe,
                       job: _Job, started: float,
                       contract: InputContract) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """float32 first; when its parity fails, double precision; keep the first that passes.
    Then the input contract it serves: what it answers as scikit-learn does, proven on probe
    rows holding missing values, infinities and huge values where scikit-learn takes them."""
    options = job.options
    notes: list[str] = []
    last: tuple[conversion.Artifact, parity.ParityReport] | None = None
    convert_s = validate_s = 0.0
    for precision in ("float32", "float64"):
        t0 = time.perf_counter()
        try:
            artifact = conversion.convert(loaded.estimator, signature, precision=precision,
                                          opset=options.opset)  # fmt: skip
        except ApoError:
            if last is None:
                raise
            notes.append(f"double precision could not be built: {precision}")
            break
        convert_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        report, providers = checking.check_artifact(
            loaded.estimator, signature, artifact, probe, providers=job.runnable,
            tolerance=options.tolerance,
        )  # fmt: skip
        validate_s += time.perf_counter() - t0
        last = (artifact, report)
        if report.passed:
            break
        notes.append(
            f"{precision} parity failed ({report.reason}); trying double precision"
            if precision == "float32"
            else f"{precision} parity failed ({report.reason})"
        )
    assert last is not None
    artifact, report = last
    fields: dict[str, Any] = {
        "task": signature.task,
        "inputs": artifact.inputs,
        "outputs": artifact.outputs,
        "classes": signature.classes,
        "feature_names": signature.feature_names,
        "has_proba": signature.has_proba if signature.task == "classification" else None,
        "validation": report,
        "tolerance": options.tolerance,
        "warnings": tuple(notes) if report.passed and artifact.precision == "float64" else (),
        "input_contract": contract,  # scikit-learn's own: what its fallback serves
    }
    if not report.passed:
        fields["error"] = (
            f"{job.ref.rel}: {type(loaded.estimator).__name__}: parity failed in float32 and "
            f"float64: {report.reason}"
            if artifact.precision == "float64"
            else f"{job.ref.rel}: {type(loaded.estimator).__name__}: parity failed: {report.reason}"
        )
        fields["warnings"] = tuple(notes)
        return "failed", fields
    if options.origin is not None and job.origin is not None:
        record = origin_check.check(
            job.origin, model_path=job.ref.path, model=loaded.estimator, signature=signature,
            probe=probe, onnx_bytes=artifact.onnx_bytes, inputs=artifact.inputs,
            precision=artifact.precision, tolerance=options.tolerance,
            policy=loading.selecting(options.policy, loaded.selected),
        )  # fmt: skip
        fields["origin"] = record
        if record.status == "skipped":
            fields["warnings"] = (*fields["warnings"], f"origin check skipped: {record.reason}")
        why = origin_check.failure(record, required=options.origin.required)
        if why is not None:
            name = type(loaded.estimator).__name__
            fields.update(stage="origin", error=f"{job.ref.rel}: {name}: {why}")
            fields["warnings"] = tuple(notes)
            return "failed", fields
    served, refused = checking.prove_contract(
        loaded.estimator, signature, artifact, probe, contract, providers=providers,
        tolerance=options.tolerance,
    )  # fmt: skip
    fields["input_contract"] = served
    fields["warnings"] = (*fields["warnings"], *refused)
    target = job.out_dir / job.ref.artifact_rel
    atomic_write_bytes(target, artifact.onnx_bytes)
    fields["artifact"] = ArtifactInfo(
        path=job.ref.artifact_rel,
        sha256=sha256_bytes(artifact.onnx_bytes),
        size_bytes=len(artifact.onnx_bytes),
        opset=artifact.opset,
        ml_opset=artifact.ml_opset,
        precision=artifact.precision,
    )
    fields["providers"] = providers
    fields["timings"] = {
        "convert_s": round(convert_s, 4),
        "validate_s": round(validate_s, 4),
        "total_s": round(time.perf_counter() - started, 4),
    }
    return "ok", fields


def previous_manifest(options: ConvertOptions) -> Manifest | None:
    try:
        return manifest_io.read(options.manifest_path)
    except ApoError:
        return None  # unreadable or absent: rebuild everything


class ManifestWriter:
    """Keeps manifest.json current as models finish: every couple of seconds, and at the end."""

    def __init__(
        self, options: ConvertOptions, refs: Sequence[ModelRef], previous: Manifest | None
    ) -> None:
        self._path = options.manifest_path
        self._order = [ref.name for ref in refs]
        self._entries: dict[str, ManifestEntry] = {}
        if previous is not None:
            # Until a model is redone, its previous entry (and artifact) stay as they were.
            wanted = set(self._order)
            self._entries = {e.name: e for e in previous.models if e.name in wanted}
        self._registry = os.path.relpath(options.registry_root.resolve(), options.out_dir.resolve())
        # A single file converted: validate must not take its neighbours for the registry's.
        self._file = options.registry.name if options.registry.is_file() else None
        self._last_write = 0.0

    def add(self, entry: ManifestEntry) -> None:
        before = self._entries.get(entry.name)
        self._entries[entry.name] = entry
        rewrote_recorded_artifact = (
            before is not None and before.artifact is not None and before != entry
            and not entry.timings.get("reused")
        )  # fmt: skip
        # A rebuilt artifact replaced one the manifest on disk vouches for: record it now, so the
        # window in which the two disagree is one write, not the flush interval.
        if (
            rewrote_recorded_artifact
            or time.monotonic() - self._last_write >= MANIFEST_WRITE_INTERVAL_S
        ):
            self.flush()

    def flush(self) -> Manifest:
        models = tuple(self._entries[n] for n in self._order if n in self._entries)
        manifest = Manifest(registry=Path(self._registry).as_posix(), models=models,
                            registry_file=self._file)  # fmt: skip
        manifest_io.write(self._path, manifest)
        self._last_write = time.monotonic()
        return manifest


ConvertEvent = EnvironmentStarted | EnvironmentReady | Started | ManifestEntry


def run(options: ConvertOptions) -> Iterator[ConvertEvent]:
    """Convert every model: with ``--origin``, the environments it needs made first (each
    ``EnvironmentStarted`` then ``EnvironmentReady``); ``Started(count)``; then each finished
    entry (in registry order)."""
    from alphapulse_onnx import plugins

    for module in options.plugins:
        plugins.load_plugin(module)
    refs = discovery.discover(options.registry, options.out_dir)
    if not refs:
        raise InputError(
            f"no model files ({', '.join(loading.MODEL_SUFFIXES)}) found", path=options.registry
        )
    sample = None
    sample_sha = None
    sample_error: str | None = None
    if options.sample is not None:
        try:
            sample = read_sample(options.sample)
        except ApoError as exc:
            # A table with text columns (or a Parquet file) still serves per-column models.
            if not checking.readable_table(options.sample):
                raise
            sample_error = str(exc)
        sample_sha = sha256_file(options.sample)
    out_dir = options.out_dir
    make_output_folder(out_dir)
    with OutputLock(out_dir):
        previous = previous_manifest(options)
        by_name = {e.name: e for e in previous.models} if previous else {}
        writer = ManifestWriter(options, refs, previous)
        key = build_key(options, sample_sha)
        runnable = tuple(runtime.runnable_providers()) or ("CPUExecutionProvider",)
        jobs = [_Job(ref, options, out_dir, key, sample, runnable, sample_error) for ref in refs]
        if options.origin is not None:
            jobs = yield from _with_origin(jobs, options.origin, by_name)
        yield Started(len(jobs))
        workers = options.jobs if options.jobs is not None else auto_workers(len(jobs))
        if workers > 1 and len(jobs) > 1:
            entries = parallel.run_ordered(
                convert_one, jobs, by_name, workers, on_worker_death=_worker_died,
                key=lambda job: job.ref.name, quick=reused, preload=WORKER_PRELOAD,
            )  # fmt: skip
        else:
            entries = (convert_one(job, by_name.get(job.ref.name)) for job in jobs)
        for entry in entries:
            writer.add(entry)
            yield entry
        writer.flush()


OriginProgress = Generator[EnvironmentStarted | EnvironmentReady, None, list["_Job"]]


def _with_origin(jobs: list[_Job], options: origin_check.OriginOptions,
                 previous: dict[str, ManifestEntry]) -> OriginProgress:  # fmt: skip
    """The jobs, each told where its origin answers come from; the environments that models
    about to be converted need are made first (models reused unchanged need none)."""
    planner = origin_check.Planner(options)
    todo = [job for job in jobs if reused(job, previous.get(job.ref.name)) is None]
    for job in todo:
        planner.add(job.ref.path)
    yield from prepare_environments(planner)
    chosen = {job.ref.name: planner.choice(job.ref.path) for job in todo}
    return [replace(job, origin=chosen.get(job.ref.name)) for job in jobs]


def make_output_folder(out_dir: Path) -> None:
    """``--out``, made if need be: a file in the way, or a folder apo may not write, is the
    user's to fix (exit 2), not an internal error."""
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(
                    f"--out: {folder} is a file, not a folder", path=out_dir,
                    hint="name a folder for the artifacts (default: REGISTRY/onnx)",
                )  # fmt: skip
            break
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out: cannot make the folder: {exc.strerror}", path=out_dir) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(
            "--out: this folder is read-only for you", path=out_dir,
            hint="name a folder you can write, or fix its permissions",
        )  # fmt: skip


def auto_workers(n_models: int) -> int:
    """Cores, but no pool for a registry too small to repay starting one (about 3 s)."""
    return min(os.cpu_count() or 1, n_models // parallel.MIN_JOBS_PER_WORKER)


def _worker_died(job: _Job, reason: str | None = None) -> ManifestEntry:
    source = SourceInfo(path=job.ref.rel, sha256=_safe_sha(job.ref.path))
    message = reason or "the worker process running it died (crash or out-of-memory kill)"
    return _failed(job.ref, source, "convert", f"{job.ref.rel}: {message}")


def _safe_sha(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError:
        return ""
