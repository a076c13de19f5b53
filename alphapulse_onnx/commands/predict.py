"""``apo predict``: score a data file (or stdin) with one model of a store.

``run()`` streams the input in chunks through ``Store`` (onnxruntime, or the scikit-learn
fallback) and writes each chunk's predictions as it goes, so memory is bounded by the chunk size.
It yields a ``ChunkDone`` per chunk (for the progress bar) and ends with a ``PredictResult``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx.datafiles.readers import open_table
from alphapulse_onnx.datafiles.writers import open_writer, output_format
from alphapulse_onnx.errors import InputError, InvalidInputError
from alphapulse_onnx.loading import DEFAULT_POLICY, TrustPolicy
from alphapulse_onnx.prediction_columns import output_columns, output_schema
from alphapulse_onnx.store import Model, Store

DEFAULT_STORE = Path("models/onnx")
DEFAULT_CHUNK_SIZE = 10_000
_MANIFEST_SEARCH_DEPTH = 8  # folders above an artifact searched for its manifest


@dataclass(frozen=True)
class PredictOptions:
    model: str  # a name in the manifest, or a path to a .onnx artifact
    input: str  # a data file, or "-" for stdin
    store: Path = DEFAULT_STORE
    output: Path | None = None  # None: CSV on stdout
    proba: bool | None = None  # None: whenever the model gives probabilities
    provider: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    policy: TrustPolicy = DEFAULT_POLICY


@dataclass(frozen=True)
class ChunkDone:
    rows_done: int
    total_rows: int | None


@dataclass(frozen=True)
class PredictResult:
    model: str
    rows: int
    engine: str
    provider: str | None
    output: str | None  # None: stdout
    format: str
    columns: tuple[str, ...]
    seconds: float
    fallback_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rows": self.rows,
            "engine": self.engine,
            "provider": self.provider,
            "output": self.output,
            "format": self.format,
            "columns": list(self.columns),
            "seconds": round(self.seconds, 4),
            "fallback_reason": self.fallback_reason,
        }


def _manifest_listing(artifact: Path) -> tuple[Path, str] | None:
    """The manifest beside or above ``artifact`` that lists it, and the model's name there."""
    target = artifact.resolve()
    folder = target.parent
    for _ in range(_MANIFEST_SEARCH_DEPTH):
        candidate = folder / manifest_io.MANIFEST_NAME
        if candidate.is_file():
            manifest = manifest_io.read(candidate)
            for entry in manifest.models:
                if entry.artifact and (folder / entry.artifact.path).resolve() == target:
                    return candidate, entry.name
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def resolve_manifest(spec: str, store: Path) -> tuple[Path, str]:
    """The manifest and model name ``spec`` means, without opening any session.

    ``spec`` is a model name in ``store``'s manifest, or a path to an artifact that a manifest
    beside or above it lists (``store`` is then not used).
    """
    path = Path(spec)
    if spec.lower().endswith(".onnx") or (path.suffix and path.is_file()):
        if not path.is_file():
            raise InputError("no such artifact", path=path)
        found = _manifest_listing(path)
        if found is None:
            raise InputError(
                f"no {manifest_io.MANIFEST_NAME} beside or above it lists this artifact",
                path=path,
                hint="pass the model's name with --store, or rerun `apo convert`",
            )
        return found
    manifest_path = manifest_io.resolve_path(store)
    manifest = manifest_io.read(manifest_path)
    try:
        return manifest_path, manifest.entry(spec).name
    except KeyError as exc:
        raise InputError(str(exc.args[0]), path=manifest_path) from None


def open_model(options: PredictOptions) -> tuple[Store, Model]:
    """The store and model ``options.model`` names (a manifest name or an artifact path)."""
    providers = [options.provider] if options.provider else None
    manifest_path, name = resolve_manifest(options.model, options.store)
    store = Store.open(manifest_path, providers=providers, policy=options.policy)
    return store, store[name]


def _in_file(exc: InvalidInputError, source: str, first_row: int) -> InvalidInputError:
    """Restate a bad cell in the file's terms: rows and columns counted from 1."""
    if exc.row is None:
        return InvalidInputError(exc.message, path=source, hint=exc.hint)
    row = first_row + exc.row + 1
    if isinstance(exc.column, str):
        where = f"row {row}, column {exc.column!r}"
    elif isinstance(exc.column, int):
        where = f"row {row}, column {exc.column + 1}"
    else:
        where = f"row {row}"
    return InvalidInputError(
        f"{where}: {exc.detail}",
        path=source,
        hint=exc.hint,
        row=row - 1,
        column=exc.column,
        detail=exc.detail,
    )


def run(
    options: PredictOptions, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None
) -> Iterator[ChunkDone | PredictResult]:
    """Predict every row of ``options.input``; yields progress, then the result."""
    started = time.perf_counter()
    if options.chunk_size < 1:
        raise InputError("--chunk-size must be at least 1")
    fmt = output_format(options.output)
    _, model = open_model(options)
    classifier = model.task == "classification"
    if options.proba and not classifier:
        raise InputError(f"model {model.name!r} is a regressor: --proba does not apply")
    if options.proba and not model.has_proba:
        raise InputError(
            f"model {model.name!r} has no predict_proba (its estimator only decides)",
            hint="drop --proba",
        )
    want_proba = classifier and model.has_proba and options.proba is not False
    schema = output_schema(model, want_proba)
    names = [name for name, _ in schema]
    rows = 0
    source = options.input
    with (
        open_table(
            source, chunk_size=options.chunk_size, feature_names=model.feature_names, stdin=stdin
        ) as reader,
        open_writer(options.output, schema, stdout=stdout) as writer,
    ):
        for chunk in reader:
            try:
                prepared = model.prepare(chunk.rows)
            except InvalidInputError as exc:
                raise _in_file(exc, reader.path, chunk.first_row) from None
            outputs = model.run_prepared(prepared, proba=want_proba)
            columns = output_columns(names, outputs)
            writer.write(columns)
            rows += len(columns[names[0]])
            yield ChunkDone(rows, reader.total_rows)
    yield PredictResult(
        model=model.name,
        rows=rows,
        engine=model.engine,
        provider=model.provider,
        output=None
        if options.output is None or str(options.output) == "-"
        else str(options.output),
        format=fmt,
        columns=tuple(names),
        seconds=time.perf_counter() - started,
        fallback_reason=model.fallback_reason,
    )
