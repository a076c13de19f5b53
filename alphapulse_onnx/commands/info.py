"""``apo info MODEL``: what a caller needs to use one converted model, from the manifest alone.

Its inputs (columns, types, an example CSV header), outputs and classes, the artifact and its
precision, the parity and origin figures, the speedups of the last ``apo bench``, the source
file with the library versions that saved it, what the loader upgraded, what a wrapper held
beside the model, and the warnings. Nothing is loaded or run: ``info`` reads ``manifest.json``.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx.causes import Cause, recorded
from alphapulse_onnx.engines import APO
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.loading import MODEL_SUFFIXES
from alphapulse_onnx.manifest import Manifest, ManifestEntry
from alphapulse_onnx.measurements import BenchRecord, Machine

KINDS = {"string": "text", "int64": "integer", "float32": "number", "float64": "number"}


@dataclass(frozen=True)
class InfoOptions:
    model: str  # a name in the manifest, a source path, or a path to its .onnx artifact
    store: Path = Path("models/onnx")


@dataclass(frozen=True)
class Column:
    """One input column as a caller gives it: its name, kind and the ONNX input it feeds."""

    name: str | None  # None: unnamed (the model was fitted on an array), taken by position
    kind: str  # text, integer, number
    dtype: str  # the artifact's type for it
    input: str  # the ONNX input it feeds

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dtype": self.dtype, "input": self.input}


@dataclass(frozen=True)
class Speedup:
    """apo's path against scikit-learn, from the last bench, on one provider."""

    provider: str
    by_batch: dict[int, float | None]  # batch size -> scikit-learn p50 / apo p50

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "speedups": {str(k): v for k, v in self.by_batch.items()},
        }


@dataclass(frozen=True)
class ModelInfo:
    manifest_path: Path
    entry: ManifestEntry
    machine: Machine | None  # where the last bench ran
    tool: dict[str, str | None]  # the versions that converted it (the manifest's ``tool``)

    @property
    def columns(self) -> list[Column]:
        """The columns a caller passes, in order."""
        out = []
        names = list(self.entry.feature_names or ())
        for spec in self.entry.inputs:
            width = spec.shape[1] if len(spec.shape) > 1 else 1
            if spec.column is not None or (width == 1 and len(self.entry.inputs) > 1):
                out.append(Column(spec.column_name, KINDS.get(spec.dtype, spec.dtype),
                                  spec.dtype, spec.name))  # fmt: skip
                continue
            count = width if isinstance(width, int) else len(names)
            for i in range(count):
                name = names[i] if i < len(names) else None
                out.append(Column(name, KINDS.get(spec.dtype, spec.dtype), spec.dtype, spec.name))
        return out

    @property
    def csv_header(self) -> str | None:
        """The header line of a CSV ``apo predict`` reads by name (None: columns unnamed)."""
        names = [c.name for c in self.columns]
        if not names or any(name is None for name in names):
            return None
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(names)
        return buffer.getvalue()

    @property
    def cause(self) -> Cause | None:
        e = self.entry
        return None if e.ok else recorded(e.cause, e.stage, e.error)

    @property
    def speedups(self) -> list[Speedup]:
        return speedups(self.entry.bench)

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        bench = e.bench
        return {
            "name": e.name,
            "manifest": self.manifest_path.as_posix(),
            "status": e.status,
            "error": e.error,
            "cause": self.cause,
            "task": e.task,
            "source": e.source.to_json(),
            "converted_with": dict(self.tool),
            "artifact": None if e.artifact is None else asdict(e.artifact),
            "precision": e.artifact.precision if e.artifact else None,
            "inputs": [c.to_json() for c in self.columns],
            "csv_header": self.csv_header,
            "outputs": [spec.to_json() for spec in e.outputs],
            "classes": list(e.classes) if e.classes is not None else None,
            "has_proba": e.has_proba,
            "validation": e.validation.to_json() if e.validation else None,
            "tolerance": e.tolerance.to_json(),
            "providers": list(e.providers),
            "origin": e.origin.to_json() if e.origin else None,
            "bench": None
            if bench is None
            else {
                "measured": bench.measured,
                "machine": self.machine.cpu if self.machine else None,
                "speedups": [s.to_json() for s in self.speedups],
            },
            "session": e.session.to_json() if e.session else None,
            "warnings": list(e.warnings),
        }


def speedups(bench: BenchRecord | None) -> list[Speedup]:
    """apo's fp32 path against scikit-learn per provider and batch size, as last benchmarked."""
    if bench is None:
        return []
    by_provider: dict[str, dict[int, float | None]] = {}
    for result in bench.results:
        if result.engine == APO and result.variant == "fp32" and result.provider:
            by_provider.setdefault(result.provider, {})[result.batch_size] = (
                result.speedup_vs_sklearn
            )
    return [Speedup(p, dict(sorted(sizes.items()))) for p, sizes in by_provider.items()]


def _forms(entry: ManifestEntry) -> set[str]:
    """The names a model also answers to: its source path with or without suffix, and the last
    part of its name (a nested model by its file's stem)."""
    source = entry.source.path
    name = PurePosixPath(entry.name)
    forms = {source, source.rsplit(".", 1)[0], name.name}
    if name.suffix.lower() in MODEL_SUFFIXES:  # a.joblib beside a.pkl: named with suffixes
        forms.update({str(name.with_suffix("")), name.stem})
    return forms


def find_entry(manifest: Manifest, key: str, path: Path) -> ManifestEntry:
    """The one entry ``key`` names: its exact name, else the only entry it is another name for.
    A key several models answer to, or none, is a usage error that lists the candidates."""
    key = key.replace("\\", "/")
    for entry in manifest.models:
        if entry.name == key:
            return entry
    matches = [entry for entry in manifest.models if key in _forms(entry)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        candidates = ", ".join(e.name for e in matches)
        raise InputError(
            f"{key!r} is ambiguous: it names {len(matches)} models ({candidates})",
            path=path,
            hint="pass one of these names",
        )
    names = [e.name for e in manifest.models]
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
    listed = close or names[:10]
    more = "" if close or len(names) <= 10 else f" and {len(names) - 10} more"
    what = "did you mean" if close else "models"
    raise InputError(
        f"no model named {key!r} in the manifest ({what}: {', '.join(listed)}{more})",
        path=path,
        hint="`apo info NAME` takes a name from `apo convert`'s table",
    )


def run(options: InfoOptions) -> ModelInfo:
    spec = options.model
    if spec.lower().endswith(".onnx"):
        manifest_path, manifest, entry = manifest_io.listing_of(
            Path(spec), hint="pass the model's name with --store"
        )
        return ModelInfo(manifest_path, entry, manifest.machine, manifest.tool)
    manifest_path = manifest_io.resolve_path(options.store)
    manifest = manifest_io.read(manifest_path)
    entry = find_entry(manifest, spec, manifest_path)
    return ModelInfo(manifest_path, entry, manifest.machine, manifest.tool)
