"""``apo validate``: the CI gate. Is every artifact still what ``apo convert`` wrote and checked?

For each model in the manifest: the artifact exists and its sha256 matches; ``onnx.checker``
passes; the source model is unchanged (else it is stale); and the artifact still answers like the
source model, loaded through the safe loader, on the same probe rows (or ``--sample``) within the
tolerances recorded at convert time. The probe and the parity check are convert's own, so
validate judges exactly what convert judged. ``run()`` yields the model count, then one
``ModelCheck`` per model; one model's failure never stops the others.

The registry is checked as a whole too (unless ``--manifest-only``): a model file with no entry
(added later, or left out by an interrupted convert) and an artifact with no entry each fail
validation by name, so a partial registry never passes as "1/1 models valid".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from alphapulse_onnx import checking, conversion, discovery, loading, probing, runtime
from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx.commands.events import (
    EnvironmentReady,
    EnvironmentStarted,
    Started,
    prepare_environments,
)
from alphapulse_onnx.datafiles.samples import read_sample
from alphapulse_onnx.errors import ApoError, InputError, failure_line
from alphapulse_onnx.lock import OutputLock
from alphapulse_onnx.manifest import Manifest, ManifestEntry, OriginRecord
from alphapulse_onnx.origin import check as origin_check
from alphapulse_onnx.parity import ParityReport
from alphapulse_onnx.signature import infer

OK: Final = "ok"
SKIPPED: Final = "-"  # not checked (an earlier check already failed, or nothing to check)
ArtifactCell = Literal["ok", "missing", "changed", "unlisted", "-"]
SourceCell = Literal["ok", "stale", "missing", "unlisted", "-"]
CheckCell = Literal["ok", "failed", "-"]


@dataclass(frozen=True)
class ValidateOptions:
    target: Path  # a manifest file, the folder holding it, or a registry with onnx/manifest.json
    sample: Path | None = None
    policy: loading.TrustPolicy = loading.DEFAULT_POLICY
    probe_rows: int = probing.DEFAULT_ROWS
    origin: origin_check.OriginOptions | None = None  # --origin: the versions that saved it, too
    manifest_only: bool = False  # only the manifest's entries, not files it does not list


@dataclass(frozen=True)
class ModelCheck:
    """One model's verdict; each column is ``ok``, ``-`` (not checked) or what went wrong."""

    name: str
    artifact: ArtifactCell
    source: SourceCell
    checker: CheckCell
    parity: CheckCell
    reasons: tuple[str, ...] = ()
    report: ParityReport | None = None
    providers: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # from loading the source (e.g. another scikit-learn version)
    origin: OriginRecord | None = None  # None: not asked for (no --origin), or parity failed

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "artifact": self.artifact,
            "source": self.source,
            "checker": self.checker,
            "parity": self.parity,
            "reasons": list(self.reasons),
            "validation": self.report.to_json() if self.report else None,
            "providers": list(self.providers),
            "warnings": list(self.warnings),
            "origin": self.origin.to_json() if self.origin else None,
        }


def find_manifest(target: Path) -> Path:
    """The manifest for ``target``: the file itself, ``DIR/manifest.json`` or ``DIR/onnx/...``."""
    if not target.exists():
        if target.name == manifest_io.MANIFEST_NAME and target.parent.is_dir():
            return target  # reading it says "no manifest here" and how to make one
        raise InputError("no such file or folder", path=target)
    return manifest_io.resolve_path(target)


def open_manifest(target: Path) -> tuple[Path, Manifest]:
    path = find_manifest(target)
    return path, manifest_io.read(path)


ValidateEvent = EnvironmentStarted | EnvironmentReady | Started | ModelCheck


def run(options: ValidateOptions) -> Iterator[ValidateEvent]:
    """Yield the number of models, then each model's ``ModelCheck`` in manifest order; with
    ``--origin``, the environments the models need are made first (outside the lock)."""
    path, manifest = open_manifest(options.target)
    sample = read_sample(options.sample) if options.sample is not None else None
    registry = manifest_io.registry_dir(path, manifest)
    runnable = tuple(runtime.runnable_providers()) or ("CPUExecutionProvider",)
    planner = None
    if options.origin is not None:
        planner = origin_check.Planner(options.origin)
        for entry in manifest.models:
            source = registry / entry.source.path
            if entry.ok and source.is_file():
                planner.add(source)
        yield from prepare_environments(planner)
    with OutputLock(path.parent, shared=True):  # not while `apo convert` rewrites the folder
        path, manifest = open_manifest(options.target)  # the state under the lock
        unlisted = [] if options.manifest_only else unlisted_files(path, manifest)
        yield Started(len(manifest.models) + len(unlisted))
        for entry in manifest.models:
            yield check_entry(entry, path.parent, registry, options, sample, runnable, planner)
        yield from unlisted


def unlisted_files(path: Path, manifest: Manifest) -> list[ModelCheck]:
    """Model files of the registry and artifacts of the manifest's folder with no entry."""
    out_dir = path.parent.resolve()
    registry = manifest_io.registry_dir(path, manifest)
    listed_sources = {e.source.path for e in manifest.models}
    listed_artifacts = {e.artifact.path for e in manifest.models if e.artifact is not None}
    for entry in manifest.models:  # apo bench's variants are the manifest's too
        if entry.bench is not None:
            listed_artifacts |= {v.artifact for v in entry.bench.variants.values() if v.artifact}
    checks: list[ModelCheck] = []
    if manifest.registry_file is None and registry.is_dir():
        try:
            refs = discovery.discover(registry, out_dir)
        except ApoError:
            refs = []
        for ref in refs:
            if ref.rel not in listed_sources:
                reason = ("a model file with no manifest entry (added after convert, or left "
                          "out by an interrupted one); rerun `apo convert`")  # fmt: skip
                checks.append(ModelCheck(ref.rel, SKIPPED, "unlisted", SKIPPED, SKIPPED,
                                         reasons=(reason,)))  # fmt: skip
    for artifact in sorted(out_dir.rglob("*.onnx")):
        rel = artifact.relative_to(out_dir)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() in listed_artifacts:
            continue
        reason = ("an artifact with no manifest entry (left by an interrupted convert, or put "
                  "there by hand); rerun `apo convert`, or remove it")  # fmt: skip
        checks.append(ModelCheck(rel.as_posix(), "unlisted", SKIPPED, SKIPPED, SKIPPED,
                                 reasons=(reason,)))  # fmt: skip
    return checks


def _onnx_check(data: bytes) -> str | None:
    """``onnx.checker`` on the artifact's bytes: ``None`` when it passes, else the first line."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError and friends
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__
    return None


def check_entry(entry: ManifestEntry, out_dir: Path, registry: Path, options: ValidateOptions,
                sample: tuple[np.ndarray, list[str] | None] | None, runnable: tuple[str, ...],
                planner: origin_check.Planner | None = None) -> ModelCheck:  # fmt: skip
    """Every check for one model; a failure in one check is recorded and the rest still run."""
    name = entry.name
    if not entry.ok or entry.artifact is None:
        stage = f" at {entry.stage}" if entry.stage else ""
        reason = f"conversion failed{stage}: {entry.error or 'no artifact'}"
        return ModelCheck(name, SKIPPED, SKIPPED, SKIPPED, SKIPPED, reasons=(reason,))
    files = manifest_io.verify(entry, out_dir, registry)
    reasons = list(files.problems)
    data = files.artifact_bytes
    artifact_state, source_state = files.artifact or OK, files.source or OK
    source_path = registry / entry.source.path

    checker_state: CheckCell = SKIPPED
    if data is not None:
        problem = _onnx_check(data)
        checker_state = OK if problem is None else "failed"
        if problem is not None:
            reasons.append(f"onnx.checker rejects the artifact: {problem}")

    parity_state: CheckCell = SKIPPED
    report = None
    providers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    record: OriginRecord | None = None
    if data is not None and not reasons:  # parity only means something on intact files
        choice = planner.choice(source_path) if planner is not None else None
        try:
            report, providers, notes, record, contract = _parity(
                entry, data, source_path, options, sample, runnable, choice
            )  # fmt: skip
        except Exception as exc:  # one model's failure (or a library bug) fails this model only
            parity_state = "failed"
            reasons.append(failure_line(None, exc, stage="the parity check"))
        else:
            parity_state = OK if report.passed and not contract else "failed"
            if not report.passed:
                reasons.append(f"parity failed: {report.reason}")
            reasons.extend(f"input contract: {problem}" for problem in contract)
    if record is not None and options.origin is not None:
        why = origin_check.failure(record, required=options.origin.required)
        if why is not None:
            reasons.append(why)
        elif record.status == "skipped":
            notes = (*notes, f"origin check skipped: {record.reason}")
    return ModelCheck(name, artifact_state, source_state, checker_state, parity_state,
                      reasons=tuple(reasons), report=report, providers=providers,
                      warnings=notes, origin=record)  # fmt: skip


# The parity report, the providers it ran on, the loader's notes, the origin record, and what
# no longer holds of the recorded input contract.
_Checked = tuple[
    ParityReport, tuple[str, ...], tuple[str, ...], OriginRecord | None, tuple[str, ...]
]


def _parity(entry: ManifestEntry, data: bytes, source_path: Path, options: ValidateOptions,
            sample: tuple[np.ndarray, list[str] | None] | None, runnable: tuple[str, ...],
            origin: origin_check.Choice | None) -> _Checked:  # fmt: skip
    """Convert's own probe and parity check, on the recorded artifact and tolerances; then,
    when parity passed, the recorded input contract proven again (scikit-learn still takes what
    it accepts, and the artifact answers rows holding such values as scikit-learn does) and,
    given an ``origin``, the origin check on the same rows."""
    assert entry.artifact is not None
    policy = loading.selecting(options.policy, entry.source.selected)
    loaded = loading.load(source_path, policy)
    signature = infer(loaded.estimator)
    wanted = tuple(p for p in entry.providers if p in runnable) or ("CPUExecutionProvider",)
    probe = checking.probe_for(loaded.estimator, signature, sample_path=options.sample,
                               sample=sample, sample_error=None,
                               probe_rows=options.probe_rows,
                               positional_strict=True)  # fmt: skip
    artifact = conversion.Artifact(
        onnx_bytes=data,
        inputs=entry.inputs,
        outputs=entry.outputs,
        opset=entry.artifact.opset,
        ml_opset=entry.artifact.ml_opset,
        precision=entry.artifact.precision,  # type: ignore[arg-type]
    )
    report, providers = checking.check_artifact(
        loaded.estimator, signature, artifact, probe, providers=wanted, tolerance=entry.tolerance
    )
    contract: tuple[str, ...] = ()
    if report.passed and entry.input_contract is not None:
        contract = checking.recheck_contract(
            loaded.estimator, signature, artifact, probe, entry.input_contract,
            providers=providers, tolerance=entry.tolerance,
        )  # fmt: skip
    record = None
    if origin is not None and report.passed:
        record = origin_check.check(
            origin, model_path=source_path, model=loaded.estimator, signature=signature,
            probe=probe, onnx_bytes=data, inputs=entry.inputs, precision=artifact.precision,
            tolerance=entry.tolerance, policy=policy,
        )  # fmt: skip
    notes = (*loaded.warnings, *((probe.note,) if probe.note else ()))
    return report, providers, notes, record, contract
