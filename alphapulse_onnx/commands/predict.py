"""``apo predict``: score a data file (or stdin) with one model of a store.

``run()`` streams the input in chunks through ``Store`` (onnxruntime, or the scikit-learn
fallback) and writes each chunk's predictions as it goes, so memory is bounded by the chunk size.
It yields a ``ChunkDone`` per chunk (for the progress bar) and ends with a ``PredictResult``.

A row the model cannot answer (a malformed row, a cell that is not a number, a value its input
contract refuses, a row its artifact overflows on) ends the run naming it (``--invalid-rows
error``), is left out and counted (``skip``), or gets empty predictions (``null``); see
``prediction_columns.score_rows``, which the Dask engine shares.
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
from alphapulse_onnx.errors import InputError, InvalidInputError, UnknownModelError
from alphapulse_onnx.loading import DEFAULT_POLICY, TrustPolicy
from alphapulse_onnx.prediction_columns import (
    INVALID_ROWS,
    InvalidRows,
    output_schema,
    score_rows,
)
from alphapulse_onnx.store import Model, Store

DEFAULT_STORE = Path("models/onnx")
DEFAULT_CHUNK_SIZE = 10_000


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
    invalid_rows: InvalidRows = "error"  # rows it cannot answer: end the run, skip or leave empty
    keep_columns: bool = False  # the input's columns before the predictions


def invalid_rows_option(value: str) -> InvalidRows:
    """``--invalid-rows`` checked: error, skip or null."""
    for choice in INVALID_ROWS:
        if value == choice:
            return choice
    raise InputError(f"--invalid-rows takes {', '.join(INVALID_ROWS)}, not {value!r}")


def check_output_options(fmt: str, invalid_rows: str, keep_columns: bool) -> None:
    """Refuse what an output format cannot hold, before any work (both engines)."""
    if invalid_rows not in INVALID_ROWS:
        raise InputError(f"--invalid-rows takes {', '.join(INVALID_ROWS)}, not {invalid_rows!r}")
    if fmt == "npy" and invalid_rows == "null":
        raise InputError(
            "--invalid-rows null leaves empty cells, which .npy cannot hold",
            hint="write .csv, .jsonl or .parquet, or use --invalid-rows skip",
        )
    if fmt == "npy" and keep_columns:
        raise InputError(
            "--keep-columns writes the input's columns, which .npy cannot hold by name",
            hint="write .csv, .jsonl or .parquet",
        )


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
    input: str = "-"
    invalid_rows: InvalidRows = "error"
    invalid: int = 0  # rows skipped (skip) or left empty (null)
    first_invalid: str | None = None  # the first such row, and why

    @property
    def skipped(self) -> int:
        return self.invalid if self.invalid_rows == "skip" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input,
            "rows": self.rows,
            "engine": self.engine,
            "provider": self.provider,
            "output": self.output,
            "format": self.format,
            "columns": list(self.columns),
            "seconds": round(self.seconds, 4),
            "fallback_reason": self.fallback_reason,
            "invalid_rows": self.invalid_rows,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "first_invalid": self.first_invalid,
        }


def resolve_manifest(spec: str, store: Path) -> tuple[Path, str]:
    """The manifest and model name ``spec`` means, without opening any session.

    ``spec`` is a model name in ``store``'s manifest, or a path to an artifact that a manifest
    beside or above it lists (``store`` is then not used).
    """
    path = Path(spec)
    if spec.lower().endswith(".onnx") or (path.suffix and path.is_file()):
        manifest_path, _, entry = manifest_io.listing_of(
            path, hint="pass the model's name with --store, or rerun `apo convert`"
        )
        return manifest_path, entry.name
    manifest_path = manifest_io.resolve_path(store)
    manifest = manifest_io.read(manifest_path)
    try:
        return manifest_path, manifest.entry(spec).name
    except UnknownModelError as exc:  # a name that matches several models
        raise UnknownModelError(exc.message, path=manifest_path, hint=exc.hint) from None
    except KeyError as exc:
        raise InputError(str(exc.args[0]), path=manifest_path) from None


def open_model(options: PredictOptions) -> tuple[Store, Model]:
    """The store and model ``options.model`` names (a manifest name or an artifact path)."""
    providers = [options.provider] if options.provider else None
    manifest_path, name = resolve_manifest(options.model, options.store)
    store = Store.open(manifest_path, providers=providers, policy=options.policy)
    return store, store[name]


INVALID_ROWS_HINT = "or pass --invalid-rows skip (leave such rows out) or null (empty predictions)"


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
        hint=f"{exc.hint}, {INVALID_ROWS_HINT}" if exc.hint else INVALID_ROWS_HINT,
        row=row - 1,
        column=exc.column,
        detail=exc.detail,
    )


def _features(model: Any, rows: Any, options: PredictOptions) -> tuple[str, ...] | None:
    """With ``--keep-columns``, the model's columns of a table that holds others to keep (as
    ``--engine dask`` takes them); otherwise the table must hold the model's columns only."""
    names = model.feature_names
    columns = getattr(rows, "columns", None)
    if not options.keep_columns or not names or columns is None or len(columns) == 0:
        return None
    if not set(names) <= set(columns) or len(columns) == len(names):
        return None  # missing columns: the model's own error names them
    return tuple(names)


def in_file_terms(exc: InvalidInputError, first_row: int) -> str:
    """``row N, column 'c': what`` with rows counted from 1 in the file (for summaries)."""
    return _in_file(exc, "", first_row).message


def run(
    options: PredictOptions, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None
) -> Iterator[ChunkDone | PredictResult]:
    """Predict every row of ``options.input``; yields progress, then the result."""
    started = time.perf_counter()
    if options.chunk_size < 1:
        raise InputError("--chunk-size must be at least 1")
    fmt = output_format(options.output)
    check_output_options(fmt, options.invalid_rows, options.keep_columns)
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
    rows = invalid = 0
    first_invalid: str | None = None
    written_names: tuple[str, ...] = tuple(names)
    source = options.input
    with (
        open_table(source, chunk_size=options.chunk_size, feature_names=model.feature_names,
                   stdin=stdin, malformed="report") as reader,
        open_writer(options.output, schema, stdout=stdout) as writer,
    ):  # fmt: skip
        for chunk in reader:
            try:
                scored = score_rows(model, chunk.rows, names=names, proba=want_proba,
                                    invalid_rows=options.invalid_rows, malformed=chunk.malformed,
                                    keep_columns=options.keep_columns,
                                    features=_features(model, chunk.rows, options))  # fmt: skip
            except InvalidInputError as exc:
                raise _in_file(exc, reader.path, chunk.first_row) from None
            writer.write(scored.columns, scored.empty)
            written_names = tuple(scored.columns)
            rows += scored.written
            invalid += scored.invalid
            if first_invalid is None and scored.first_invalid is not None:
                first_invalid = in_file_terms(scored.first_invalid, chunk.first_row)
            yield ChunkDone(rows + (invalid if options.invalid_rows == "skip" else 0),
                            reader.total_rows)  # fmt: skip
    yield PredictResult(
        model=model.name,
        rows=rows,
        engine=model.engine,
        provider=model.provider,
        output=None
        if options.output is None or str(options.output) == "-"
        else str(options.output),
        format=fmt,
        columns=written_names,
        seconds=time.perf_counter() - started,
        fallback_reason=model.fallback_reason,
        input="<stdin>" if source == "-" else str(source),
        invalid_rows=options.invalid_rows,
        invalid=invalid,
        first_invalid=first_invalid,
    )
