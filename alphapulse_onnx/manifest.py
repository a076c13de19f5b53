"""manifest.json: dataclasses in memory, a versioned JSON document on disk.

The format is documented in docs/reference/manifest.md.

Paths inside are relative (sources to the registry, artifacts to the manifest's folder, the
registry to the manifest's folder) so a registry can be moved or checked out elsewhere as a whole.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from alphapulse_onnx import __version__
from alphapulse_onnx._fsutil import atomic_write_text, sha256_bytes, sha256_file
from alphapulse_onnx.errors import (
    InputError,
    ManifestError,
    TamperError,
    UnknownModelError,
    quoted,
)
from alphapulse_onnx.input_contract import InputContract
from alphapulse_onnx.measurements import BenchRecord, Machine, SessionRecord, json_object
from alphapulse_onnx.parity import ParityReport, Tolerance
from alphapulse_onnx.runtime import SessionSettings
from alphapulse_onnx.signature import TensorSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
Status = Literal["ok", "failed"]
OriginStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class SourceInfo:
    path: str  # relative to the registry folder, POSIX separators
    sha256: str
    format: str | None = None
    estimator: str | None = None  # dotted class name
    sklearn_version: str | None = None  # the version that pickled it, when recorded
    size_bytes: int | None = None
    mtime_ns: int | None = None
    # What the loader changed to run it on today's release (one phrase per upgrade).
    upgrades: list[str] | None = None
    # When the file wraps the model: where it was (``pipeline``, ``best_estimator_``) and the
    # plain values saved beside it (a threshold, a feature list).
    selected: str | None = None
    metadata: dict[str, Any] | None = None
    # Files beside it holding part of the model (joblib before 0.10): relative path -> sha256.
    companions: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """Fields that older apo did not write are left out while empty."""
        raw = asdict(self)
        for optional in ("upgrades", "selected", "metadata", "companions"):
            if not raw[optional]:
                del raw[optional]
        return raw


@dataclass(frozen=True)
class ArtifactInfo:
    path: str  # relative to the manifest's folder
    sha256: str
    size_bytes: int
    opset: int
    ml_opset: int
    precision: str  # float32 or float64


@dataclass(frozen=True)
class OriginRecord:
    """``validation.origin``: the artifact against the model as its own library versions ran it
    (``apo convert --origin``). ``versions`` are those the answers came from, or, when skipped,
    those the check needed; ``environment`` names the cached environment (None: apo's own, when
    the file's versions are the ones running). ``reason`` says what differed, or why skipped."""

    status: OriginStatus
    versions: dict[str, str]
    environment: str | None = None
    rows: int | None = None
    label_agreement: float | None = None  # None for regressors
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    ties: int | None = None
    mismatches: int | None = None
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> OriginRecord | None:
        if not isinstance(raw, dict):
            return None
        known: dict[str, Any] = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        known["versions"] = {str(k): str(v) for k, v in dict(raw.get("versions") or {}).items()}
        return cls(**known)


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    status: Status
    source: SourceInfo
    error: str | None = None
    stage: str | None = None  # where a failure happened: load, signature, convert, parity, write
    cause: str | None = None  # why, in one word (``causes.Cause``): user-code, no-converter, ...
    artifact: ArtifactInfo | None = None
    task: str | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    classes: tuple[Any, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    has_proba: bool | None = None
    validation: ParityReport | None = None
    origin: OriginRecord | None = None  # written inside ``validation`` as ``validation.origin``
    tolerance: Tolerance = field(default_factory=Tolerance)
    providers: tuple[str, ...] = ()
    timings: dict[str, float | bool] = field(default_factory=dict)  # reused: a bool
    warnings: tuple[str, ...] = ()
    build_key: str | None = None  # hash of apo version + options: unchanged means reusable
    session: SessionRecord | None = None  # tuned onnxruntime settings (apo bench)
    bench: BenchRecord | None = None
    # What rows it takes: NaN, infinities, magnitudes (``input_contract``); None: an older apo's.
    input_contract: InputContract | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def session_settings(self) -> SessionSettings:
        """What to open this model's sessions with: the recorded settings, else the defaults."""
        return self.session.settings if self.session is not None else SessionSettings()

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["source"] = self.source.to_json()
        raw["inputs"] = [spec.to_json() for spec in self.inputs]
        raw["outputs"] = [spec.to_json() for spec in self.outputs]
        for key in ("classes", "feature_names", "providers", "warnings"):
            if raw[key] is not None:
                raw[key] = list(raw[key])
        origin = raw.pop("origin")
        if raw["validation"] is not None and origin is not None:
            raw["validation"]["origin"] = origin
        raw["session"] = self.session.to_json() if self.session is not None else None
        raw["bench"] = self.bench.to_json() if self.bench is not None else None
        raw.pop("input_contract")
        if self.input_contract is not None:  # older apo wrote none: leave it out, as they did
            raw["input_contract"] = self.input_contract.to_json()
        return raw

    @classmethod
    def from_json(cls, raw: Any, *, where: str) -> ManifestEntry:
        if not isinstance(raw, dict):
            raise ManifestError(f"{where}: a model entry is not an object")
        try:
            artifact = raw.get("artifact")
            validation = raw.get("validation")
            session = json_object(raw.get("session"))
            bench = json_object(raw.get("bench"))
            entry = cls(
                name=str(raw["name"]),
                status=raw["status"],
                source=SourceInfo(**raw["source"]),
                error=raw.get("error"),
                stage=raw.get("stage"),
                cause=raw.get("cause"),
                artifact=ArtifactInfo(**artifact) if artifact else None,
                task=raw.get("task"),
                inputs=tuple(TensorSpec.from_json(s) for s in raw.get("inputs") or ()),
                outputs=tuple(TensorSpec.from_json(s) for s in raw.get("outputs") or ()),
                classes=tuple(raw["classes"]) if raw.get("classes") is not None else None,
                feature_names=tuple(raw["feature_names"])
                if raw.get("feature_names") is not None
                else None,
                has_proba=raw.get("has_proba"),
                validation=ParityReport.from_json(validation) if validation else None,
                origin=OriginRecord.from_json(validation.get("origin"))
                if isinstance(validation, dict)
                else None,
                tolerance=Tolerance.from_json(raw.get("tolerance")),
                providers=tuple(raw.get("providers") or ()),
                timings=_timings(raw.get("timings")),
                warnings=tuple(raw.get("warnings") or ()),
                build_key=raw.get("build_key"),
                session=SessionRecord.from_json(session) if session else None,
                bench=BenchRecord.from_json(bench) if bench else None,
                input_contract=InputContract.from_json(raw["input_contract"])
                if raw.get("input_contract") is not None
                else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = raw.get("name", "?")
            raise ManifestError(f"{where}: model {name!r}: bad or missing field ({exc})") from None
        _confined(entry, where)
        return entry


def _escapes(rel: str) -> bool:
    """Whether ``rel`` leaves the folder it is relative to: absolute, a drive, or ``..``."""
    posix = rel.replace("\\", "/")
    return (
        not rel.strip()
        or PurePosixPath(posix).is_absolute()
        or bool(PureWindowsPath(rel).drive)
        or ".." in PurePosixPath(posix).parts
    )


def _confined(entry: ManifestEntry, where: str) -> None:
    """Artifacts stay in the manifest's folder, sources (and their side files) in the registry:
    a manifest naming any other file is refused before anything is read or served."""
    paths = [("source", entry.source.path), *(("source", p) for p in entry.source.companions or ())]
    if entry.artifact is not None:
        paths.append(("artifact", entry.artifact.path))
    if entry.bench is not None:
        paths += [("artifact", v.artifact) for v in entry.bench.variants.values() if v.artifact]
    for kind, rel in paths:
        if _escapes(rel):
            folder = "the manifest's folder" if kind == "artifact" else "the registry"
            raise ManifestError(
                f"{where}: model {entry.name!r}: {kind} path {quoted(rel)} leaves {folder}",
                hint="paths in a manifest are relative and stay inside; rerun `apo convert`",
            )


def _timings(raw: Any) -> dict[str, float | bool]:
    """``timings`` as recorded, ``reused`` as a bool (older manifests wrote ``1.0``)."""
    timings: dict[str, float | bool] = dict(raw or {})
    if "reused" in timings:
        timings["reused"] = bool(timings["reused"])
    return timings


def _dist(name: str) -> str | None:
    try:
        return dist_version(name)
    except PackageNotFoundError:
        return None


def tool_versions() -> dict[str, str | None]:
    return {
        "apo": __version__,
        "python": platform.python_version(),
        "scikit-learn": _dist("scikit-learn"),
        "skl2onnx": _dist("skl2onnx"),
        "onnx": _dist("onnx"),
        "onnxruntime": _dist("onnxruntime") or _dist("onnxruntime-gpu"),
        "numpy": _dist("numpy"),
    }


@dataclass(frozen=True)
class Manifest:
    registry: str  # the registry folder, relative to the manifest's folder
    models: tuple[ManifestEntry, ...]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    tool: dict[str, str | None] = field(default_factory=tool_versions)
    machine: Machine | None = None  # described by apo bench
    schema_version: int = SCHEMA_VERSION
    # The one model file convert was given, when not a folder: its siblings are not the registry's.
    registry_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "registry": self.registry,
            "tool": self.tool,
            "machine": self.machine.to_json() if self.machine is not None else None,
            "models": [entry.to_json() for entry in self.models],
            **({"registry_file": self.registry_file} if self.registry_file is not None else {}),
        }

    def entry(self, key: str) -> ManifestEntry:
        """Look a model up by name, or by its source path relative to the registry."""
        normalized = key.replace(os.sep, "/")
        for entry in self.models:
            if entry.name == normalized:
                return entry
        for entry in self.models:
            if entry.source.path == normalized:
                return entry
        # By source path without its suffix: m.joblib and m.pkl both answer to "m".
        matches = [e for e in self.models if e.source.path.rsplit(".", 1)[0] == normalized]
        if len(matches) > 1:
            listed = ", ".join(e.name for e in matches)
            raise UnknownModelError(
                f"model name {key!r} is ambiguous: it matches {listed}",
                hint="name one of them, with its suffix",
            )
        if matches:
            return matches[0]
        names = ", ".join(e.name for e in self.models[:10])
        raise KeyError(f"no model named {key!r} in the manifest (models: {names})")

    def replace_entry(self, new: ManifestEntry) -> Manifest:
        return replace(self, models=tuple(new if e.name == new.name else e for e in self.models))


ArtifactState = Literal["ok", "missing", "changed"]
SourceState = Literal["ok", "missing", "stale"]


@dataclass(frozen=True)
class Verification:
    """One model's files against the sha256 the manifest recorded for each: the tamper check
    that convert, validate, bench, the runtime and the Dask engine all use."""

    artifact: ArtifactState | None  # None: the entry lists no artifact
    source: SourceState | None  # None: not asked for
    artifact_bytes: bytes | None  # the artifact as read (when it could be), hashed once
    problems: tuple[str, ...] = ()  # one line each, naming the file and what to do

    @property
    def intact(self) -> bool:
        return not self.problems

    def raise_if_tampered(self, path: Path | str | None = None) -> None:
        if self.problems:
            raise TamperError(self.problems[0], path=path)


def verify(
    entry: ManifestEntry, manifest_dir: Path, source_dir: Path | None = None
) -> Verification:
    """Hash the entry's artifact (in ``manifest_dir``) and, given ``source_dir``, its source."""
    problems: list[str] = []
    artifact_state: ArtifactState | None = None
    data = None
    if entry.artifact is not None:
        rel = entry.artifact.path
        try:
            data = (manifest_dir / rel).read_bytes()
        except FileNotFoundError:
            artifact_state = "missing"
            problems.append(f"artifact {rel} is missing")
        except OSError as exc:
            artifact_state = "missing"
            problems.append(f"artifact {rel} cannot be read: {exc.strerror}")
        else:
            artifact_state = "ok" if sha256_bytes(data) == entry.artifact.sha256 else "changed"
            if artifact_state == "changed":
                problems.append(
                    f"artifact {rel} changed since conversion (sha256 mismatch): "
                    "rerun `apo convert`"
                )
    source_state: SourceState | None = None
    if source_dir is not None:
        rel = entry.source.path
        try:
            source_state = "ok" if sha256_file(source_dir / rel) == entry.source.sha256 else "stale"
        except FileNotFoundError:
            source_state = "missing"
            problems.append(f"source model {rel} is missing from {source_dir}")
        except OSError as exc:
            source_state = "missing"
            problems.append(f"source model {rel} cannot be read: {exc.strerror}")
        for companion, digest in (entry.source.companions or {}).items():
            try:
                same = sha256_file(source_dir / companion) == digest
            except OSError:
                same = False
            if not same and source_state == "ok":
                source_state = "stale"
                problems.append(
                    f"stale: {companion}, part of source {rel}, changed or is missing since "
                    "conversion; rerun `apo convert`"
                )
        if source_state == "stale" and not any(p.startswith("stale") for p in problems):
            problems.append(f"stale: source {rel} changed since conversion; rerun `apo convert`")
    return Verification(artifact_state, source_state, data, tuple(problems))


def registry_dir(manifest_path: Path, manifest: Manifest) -> Path:
    return (manifest_path.parent / manifest.registry).resolve()


def resolve_path(target: Path) -> Path:
    """A manifest file, a folder holding ``manifest.json``, or a registry whose ``onnx/`` does."""
    if not target.is_dir():
        return target
    here = target / MANIFEST_NAME
    default_out = target / "onnx" / MANIFEST_NAME  # `apo convert REGISTRY` writes REGISTRY/onnx
    return default_out if not here.is_file() and default_out.is_file() else here


LISTING_SEARCH_DEPTH = 8  # folders above an artifact searched for the manifest that lists it


def listing_of(artifact: Path, hint: str) -> tuple[Path, Manifest, ManifestEntry]:
    """The manifest beside or above ``artifact`` that lists it (its path, the manifest and the
    artifact's entry): how `apo predict` and `apo info` take an artifact's path. A missing or
    unlisted artifact is an input error with ``hint``."""
    if not artifact.is_file():
        raise InputError("no such artifact", path=artifact)
    target = artifact.resolve()
    folder = target.parent
    for _ in range(LISTING_SEARCH_DEPTH):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            manifest = read(candidate)
            for entry in manifest.models:
                if entry.artifact and (folder / entry.artifact.path).resolve() == target:
                    return candidate, manifest, entry
        if folder.parent == folder:
            break
        folder = folder.parent
    raise InputError(
        f"no {MANIFEST_NAME} beside or above it lists this artifact", path=artifact, hint=hint
    )


def read(path: Path) -> Manifest:
    path = resolve_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            "no manifest here", path=path, hint="run `apo convert REGISTRY` first"
        ) from None
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest: {exc.strerror}", path=path) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"not valid JSON (line {exc.lineno}): {exc.msg}", path=path) from None
    except RecursionError:
        raise ManifestError("not a manifest: JSON nested too deeply to read", path=path) from None
    if not isinstance(raw, dict) or "models" not in raw:
        raise ManifestError("not an apo manifest (no 'models' list)", path=path)
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"schema_version {version!r} is not supported (this apo reads {SCHEMA_VERSION})",
            path=path,
            hint="rebuild it with `apo convert --force`",
        )
    models = raw["models"]
    if not isinstance(models, list):
        raise ManifestError("'models' is not a list", path=path)
    machine = json_object(raw.get("machine"))
    registry_file = raw.get("registry_file")
    if registry_file is not None and (
        not isinstance(registry_file, str) or _escapes(registry_file)
    ):
        raise ManifestError(f"registry_file {quoted(registry_file)} leaves the registry", path=path)
    return Manifest(
        registry=str(raw.get("registry", "..")),
        models=tuple(ManifestEntry.from_json(m, where=str(path)) for m in models),
        created=str(raw.get("created", "")),
        tool=dict(raw.get("tool") or {}),
        machine=Machine.from_json(machine) if machine else None,
        schema_version=SCHEMA_VERSION,
        registry_file=registry_file,
    )


def write(path: Path, manifest: Manifest) -> None:
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=False, default=_json_default)
    atomic_write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def python_info() -> str:
    return sys.version.split()[0]
