"""Which files of a registry are models, and the name each one goes by.

A registry is a folder of trained model files (searched recursively; hidden folders and the
output folder skipped) or a single model file. A model is named by its file's stem, or by its
path relative to the registry when two files share a stem; its artifact mirrors that path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alphapulse_onnx.errors import InputError
from alphapulse_onnx.loading import MODEL_SUFFIXES


@dataclass(frozen=True)
class ModelRef:
    path: Path
    rel: str  # POSIX path relative to the registry root
    name: str
    artifact_rel: str  # POSIX path relative to the output folder


def registry_root(registry: Path) -> Path:
    """The folder model paths are relative to: the registry itself, or a single file's folder."""
    return registry if registry.is_dir() else registry.parent


def iter_model_files(root: Path) -> Iterable[Path]:
    """Model files under ``root`` (recursive), sorted, skipping hidden folders and outputs."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
            yield path


def discover(registry: Path, out_dir: Path) -> list[ModelRef]:
    """The registry's model files, named by stem unless two share one (then by relative path)."""
    if not registry.exists():
        raise InputError("no such file or folder", path=registry)
    if registry.is_file():
        if registry.suffix.lower() not in MODEL_SUFFIXES:
            raise InputError(
                f"not a model file (expected {', '.join(MODEL_SUFFIXES)})", path=registry
            )
        files = [registry]
    else:
        out = out_dir.resolve()
        files = [p for p in iter_model_files(registry) if out not in p.resolve().parents]
    root = registry_root(registry)
    rels = [p.relative_to(root).as_posix() for p in files]
    stems: dict[str, int] = {}
    for rel in rels:
        stem = Path(rel).stem
        stems[stem] = stems.get(stem, 0) + 1
    without_suffix: dict[str, int] = {}
    for rel in rels:
        key = rel.rsplit(".", 1)[0]
        without_suffix[key] = without_suffix.get(key, 0) + 1
    refs = []
    for path, rel in zip(files, rels, strict=True):
        stem_rel = rel.rsplit(".", 1)[0]
        name = Path(rel).stem if stems[Path(rel).stem] == 1 else stem_rel
        # a.joblib and a.pkl side by side would share a.onnx: keep the suffix for those.
        artifact = f"{stem_rel}.onnx" if without_suffix[stem_rel] == 1 else f"{rel}.onnx"
        if without_suffix[stem_rel] > 1:
            name = rel
        refs.append(ModelRef(path=path, rel=rel, name=name, artifact_rel=artifact))
    return refs
