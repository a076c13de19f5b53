"""Scoring datasets past one machine: ``apo predict --engine dask`` (optional extra ``[dask]``).

``score_dataset`` reads a folder, a glob or a partitioned Parquet dataset (CSV too) with
``dask.dataframe`` and scores every partition on a Dask cluster: a ``LocalCluster`` of worker
processes on this machine by default, or an existing cluster given its scheduler address.

- **One session per worker process.** A partition task looks its model up in a module-level cache
  keyed by (manifest, model, artifact sha256); the first task on a worker opens it through
  ``Store`` (the same feeds, engine and output columns as ``apo predict --engine local``) and
  every later partition reuses it. ``session_stats()`` reports the cache, run it with
  ``client.run``.
- **Nothing lost, nothing twice.** Partition ``i`` is written as ``part-<i>.parquet`` to a temp
  name in OUTPUT_DIR, fsynced, then renamed. A worker killed mid-run leaves at most a temp file
  (removed at the end); Dask reruns its task elsewhere and the rename lands the same name, so each
  input row appears exactly once. Parts of an earlier run that this run did not write are removed,
  and ``_apo_scoring.json`` records what was written (readers skip ``_``-names).
- **Shared paths.** Workers read INPUT, the manifest's artifacts and write OUTPUT_DIR by path:
  on a remote cluster these must be the same paths on every machine (a shared file system).
- **The local engine's rows.** Each partition is scored in ``--chunk-size`` pieces by
  ``prediction_columns.score_rows``, as ``apo predict --engine local`` scores its chunks: the same
  input contract, ``--invalid-rows`` and ``--keep-columns``; workers open the store with the same
  ``--provider`` and loading policy. CSV is read in blocks by apo's own CSV reader (a short or long
  row is named, as locally), Parquet through ``dask.dataframe``.

Dask and pyarrow are imported only here, and only when called.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx._fsutil import atomic_write_bytes, atomic_write_text
from alphapulse_onnx.errors import (
    ApoError,
    DataFileError,
    InputError,
    InvalidInputError,
    first_line,
)
from alphapulse_onnx.prediction_columns import (
    InvalidRows,
    Scored,
    moved,
    output_schema,
    score_rows,
)

if TYPE_CHECKING:
    from alphapulse_onnx.datafiles.readers import Chunk
    from alphapulse_onnx.loading import TrustPolicy

INSTALL_HINT = "pip install 'alphapulse-onnx[dask]'"
PART_PREFIX = "part-"
SUMMARY_NAME = "_apo_scoring.json"
_TMP_SUFFIX = ".tmp"
_CACHE_SIZE = 8  # models kept open per worker process

# --------------------------------------------------------------------------- worker-side state
# Lives in each worker process (this module is imported there by the first task).
_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, str], Any] = {}  # (manifest, model, artifact sha256) -> Model
_SESSIONS_CREATED: dict[str, int] = {}  # artifact sha256 -> sessions opened in this process
_PARTITIONS_SCORED: dict[str, int] = {}  # artifact sha256 -> partitions scored in this process


def session_stats() -> dict[str, Any]:
    """This process's cache: run ``client.run(session_stats)`` to read every worker's."""
    with _LOCK:
        return {
            "pid": os.getpid(),
            "sessions_created": dict(_SESSIONS_CREATED),
            "partitions_scored": dict(_PARTITIONS_SCORED),
            "peak_rss_bytes": peak_rss_bytes(),
        }


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass(frozen=True)
class _Task:
    """What every partition task needs: small, pickled into each task."""

    manifest: str  # absolute path of manifest.json
    model: str
    artifact_sha256: str
    columns: tuple[str, ...] | None  # feature columns to take (None: all, by position)
    names: tuple[str, ...]  # prediction columns, as apo predict writes them
    proba: bool
    keep_columns: bool
    output_dir: str
    invalid_rows: InvalidRows = "error"
    chunk_size: int = 10_000
    providers: tuple[str, ...] | None = None  # None: the best that run on the worker
    policy: TrustPolicy | None = None  # None: the default loading policy


def _model_for(task: _Task) -> Any:
    """The worker's open model for ``task``: created on first use, then reused."""
    key = (task.manifest, task.model, task.artifact_sha256)
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from alphapulse_onnx import runtime
            from alphapulse_onnx.store import Store

            # Dask runs one task per worker thread: one onnxruntime thread each, no spinning.
            settings = runtime.SessionSettings(intra_op_threads=1, inter_op_threads=1,
                                               allow_spinning=False)  # fmt: skip
            if task.policy is not None:
                store = Store.open(task.manifest, settings=settings, providers=task.providers,
                                   policy=task.policy)  # fmt: skip
            else:
                store = Store.open(task.manifest, settings=settings, providers=task.providers)
            model = store[task.model]
            if model.engine != "onnxruntime":  # opens the session (or says why it cannot)
                raise ApoError(
                    f"model {task.model!r} cannot be served by onnxruntime on worker "
                    f"pid {os.getpid()}: {model.fallback_reason}",
                    hint="rerun `apo convert`; the workers must see the manifest folder",
                )
            if len(_MODELS) >= _CACHE_SIZE:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[key] = model
            _SESSIONS_CREATED[task.artifact_sha256] = (
                _SESSIONS_CREATED.get(task.artifact_sha256, 0) + 1
            )
    return model


def _pieces(rows: Any, malformed: tuple[tuple[int, str], ...],
            size: int) -> Iterator[tuple[int, Any, tuple[tuple[int, str], ...]]]:  # fmt: skip
    """A partition's rows in pieces of at most ``size`` (counting malformed rows): each piece's
    offset, its rows, and its malformed rows by position within it."""
    total = len(rows) + len(malformed)
    taken = 0
    for start in range(0, max(total, 1), size):
        stop = min(start + size, total)
        bad = tuple((p - start, d) for p, d in malformed if start <= p < stop)
        count = (stop - start) - len(bad)
        if isinstance(rows, np.ndarray):
            part = rows[taken : taken + count]
        else:
            part = rows.iloc[taken : taken + count].reset_index(drop=True)
        taken += count
        yield start, part, bad


def _score_pieces(task: _Task, rows: Any,
                  malformed: tuple[tuple[int, str], ...]) -> list[tuple[int, Scored]]:  # fmt: skip
    """Each ``--chunk-size`` piece of a partition scored as the local engine scores a chunk,
    with its offset; an error names the row within the partition."""
    model = _model_for(task)
    scored = []
    for offset, part, bad in _pieces(rows, malformed, task.chunk_size):
        try:
            result = score_rows(model, part, names=task.names, proba=task.proba,
                                invalid_rows=task.invalid_rows, malformed=bad,
                                keep_columns=task.keep_columns, features=task.columns)  # fmt: skip
        except InvalidInputError as exc:
            raise moved(exc, exc.row + offset) if exc.row is not None else exc from None
        scored.append((offset, result))
    return scored


def part_name(index: int) -> str:
    return f"{PART_PREFIX}{index:05d}.parquet"


def _score_partition(piece: Any, index: int, task: _Task) -> dict[str, Any]:
    """Score partition ``index`` (a frame, or a ``Chunk`` of a CSV block) and land it
    atomically as ``part-<index>.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, malformed = (piece.rows, piece.malformed) if hasattr(piece, "malformed") else (piece, ())
    try:
        pieces = _score_pieces(task, rows, malformed)
    except InvalidInputError as exc:
        where = f"row {exc.row + 1}: {exc.detail}" if exc.row is not None else exc.message
        raise DataFileError(f"input partition {index}, {where}") from None
    tables = [_table(pa, scored) for _, scored in pieces]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    first = next(((offset, s.first_invalid) for offset, s in pieces
                  if s.first_invalid is not None), None)  # fmt: skip
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    target = Path(task.output_dir) / part_name(index)
    atomic_write_bytes(target, sink.getvalue().to_pybytes())  # temp name, fsync, rename
    with _LOCK:
        _PARTITIONS_SCORED[task.artifact_sha256] = (
            _PARTITIONS_SCORED.get(task.artifact_sha256, 0) + 1
        )
    invalid = sum(scored.invalid for _, scored in pieces)
    first_invalid: str | None = None
    if first is not None:
        offset, invalid_error = first
        row = (f"row {invalid_error.row + offset + 1}: {invalid_error.detail}"
               if invalid_error.row is not None else invalid_error.message)  # fmt: skip
        first_invalid = f"input partition {index}, {row}"
    return {"partition": index, "rows": table.num_rows, "invalid": invalid,
            "first_invalid": first_invalid, "file": target.name, "pid": os.getpid()}  # fmt: skip


def _table(pa: Any, scored: Scored) -> Any:
    """One scored piece as a pyarrow table, with pandas' conventions as the local writer's."""
    arrays = {}
    for name, values in scored.columns.items():
        rows = scored.empty.get(name)
        mask = rows if rows is not None and rows.any() else None
        arrays[name] = pa.array(np.asarray(values), mask=mask, from_pandas=True)
    return pa.table(arrays)


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True)
class ScoreResult:
    model: str
    input: str
    output_dir: Path
    rows: int
    partitions: int
    files: tuple[str, ...]
    columns: tuple[str, ...]
    scheduler: str  # "local (N worker processes)" or the address used
    workers: int
    seconds: float
    worker_peak_rss_bytes: dict[str, int] = field(default_factory=dict)  # worker address -> bytes
    invalid_rows: InvalidRows = "error"
    invalid: int = 0  # rows skipped (skip) or left empty (null)
    first_invalid: str | None = None  # the first such row (partition and row), and why

    @property
    def skipped(self) -> int:
        return self.invalid if self.invalid_rows == "skip" else 0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input,
            "output_dir": str(self.output_dir),
            "engine": "dask",
            "rows": self.rows,
            "partitions": self.partitions,
            "files": list(self.files),
            "columns": list(self.columns),
            "scheduler": self.scheduler,
            "workers": self.workers,
            "seconds": round(self.seconds, 4),
            "rows_per_s": round(self.rows_per_s, 1),
            "worker_peak_rss_bytes": dict(self.worker_peak_rss_bytes),
            "invalid_rows": self.invalid_rows,
            "invalid": self.invalid,
            "skipped": self.skipped,
            "first_invalid": self.first_invalid,
        }


def _require_dask() -> None:
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"--engine dask needs Dask and pyarrow ({exc.name} is not installed)",
            hint=INSTALL_HINT,
        ) from None


def _input_files(source: str) -> tuple[list[str], str]:
    """The files INPUT names, and their format (parquet or csv)."""
    path = Path(source)
    if any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source, recursive=True))
        if not files:
            raise InputError("no files match this pattern", path=source)
    elif path.is_dir():
        files = sorted(
            str(p) for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(("_", ".")) for part in
                                       p.relative_to(path).parts)
        )  # fmt: skip
        files = [f for f in files if Path(f).suffix.lower() in (".parquet", ".pq", ".csv")]
        if not files:
            raise InputError("no .parquet or .csv files in this folder", path=source)
    elif path.is_file():
        files = [str(path)]
    else:
        raise InputError("no such file, folder or pattern", path=source)
    kinds = {"csv" if Path(f).suffix.lower() == ".csv" else "parquet" for f in files}
    unknown = [f for f in files if Path(f).suffix.lower() not in (".parquet", ".pq", ".csv")]
    if unknown:
        raise InputError(f"not a .parquet or .csv file: {unknown[0]}", path=source)
    if len(kinds) > 1:
        raise InputError("mixes .parquet and .csv files; point it at one kind", path=source)
    return files, kinds.pop()


@dataclass(frozen=True)
class _Input:
    """The dataset to score: its column names, and one delayed piece per partition (a pandas
    frame, or a ``Chunk`` of a CSV block with its malformed rows)."""

    columns: list[str]
    pieces: list[Any]


CSV_BLOCK = 64 * 2**20


def _read(source: str, *, partitions: int | None, feature_names: tuple[str, ...] | None) -> _Input:
    import dask.dataframe as dd

    files, kind = _input_files(source)
    path = Path(source)
    if kind == "csv":
        return _read_csv(source, files, partitions=partitions, feature_names=feature_names)
    try:
        # A folder is read as a dataset, so hive partition folders (symbol=BTC/) become columns.
        frame = dd.read_parquet(str(path) if path.is_dir() else files)
    except (OSError, ValueError) as exc:
        raise DataFileError(
            f"cannot read it as a dataset: {first_line(exc)}", path=source
        ) from None
    if partitions is not None:
        frame = frame.repartition(npartitions=partitions)
    return _Input([str(c) for c in frame.columns], list(frame.to_delayed()))


def _read_csv(source: str, files: list[str], *, partitions: int | None,
              feature_names: tuple[str, ...] | None) -> _Input:  # fmt: skip
    """CSV files in blocks of whole lines, each parsed by apo's CSV reader (as locally), with
    the file's header line given again to every block after the first. ``partitions`` sets the
    block size: the files' bytes over that many."""
    from dask.bytes.core import read_bytes
    from dask.delayed import delayed

    from alphapulse_onnx.datafiles.readers import csv_header

    def head(file: str) -> tuple[str | None, list[str]]:
        try:
            with open(file, encoding="utf-8", newline="") as handle:
                return csv_header(handle, feature_names)
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"cannot read it as CSV: {first_line(exc)}", path=file) from None

    heads = [head(file) for file in files]
    columns = next((cells for _, cells in heads if cells), [])
    size = sum(os.path.getsize(f) for f in files)
    blocksize = max(1, -(-size // partitions)) if partitions else CSV_BLOCK
    try:
        _, blocks = read_bytes(files, delimiter=b"\n", blocksize=blocksize, sample=False)
    except (OSError, ValueError) as exc:
        raise DataFileError(
            f"cannot read it as a dataset: {first_line(exc)}", path=source
        ) from None
    pieces = []
    for (header, _), file, file_blocks in zip(heads, files, blocks, strict=True):
        for i, block in enumerate(file_blocks):
            pieces.append(delayed(_parse_block, pure=True)(block, file, header, i == 0))
    return _Input(columns, pieces)


def _parse_block(data: bytes, file: str, header: str | None, first: bool) -> Chunk:
    """One CSV block as one chunk (malformed rows reported), read as ``apo predict`` reads."""
    import io

    from alphapulse_onnx.datafiles.readers import read_csv_block

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError("not a UTF-8 text CSV file", path=file) from None
    if header is not None and not first:
        text = header + text
    return read_csv_block(io.StringIO(text), file, header=header is not None)


def _prepare_output(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError("OUTPUT_DIR is a file; give a folder", path=output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    foreign = [
        p.name for p in output_dir.iterdir()
        if not (p.name.startswith(PART_PREFIX) or p.name == SUMMARY_NAME
                or p.name.startswith(f".{PART_PREFIX}"))
    ]  # fmt: skip
    if foreign:
        raise InputError(
            f"OUTPUT_DIR holds files apo did not write ({', '.join(sorted(foreign)[:3])})",
            path=output_dir,
            hint="choose an empty or new folder",
        )


def _tidy_output(output_dir: Path, written: set[str]) -> None:
    """Remove temp files of killed attempts and parts of earlier runs."""
    for path in output_dir.iterdir():
        stale_part = path.name.startswith(PART_PREFIX) and path.name not in written
        leftover = path.name.startswith(f".{PART_PREFIX}") and path.name.endswith(_TMP_SUFFIX)
        if stale_part or leftover:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def _client(scheduler: str | None, n_workers: int | None) -> Iterator[tuple[Any, str]]:
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"cannot reach the Dask scheduler at {scheduler}: {first_line(exc)}",
                hint="check --scheduler (tcp://HOST:8786), or leave it out for a local cluster",
            ) from None
        with client:
            yield client, scheduler
        return
    workers = n_workers or os.cpu_count() or 1
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        yield client, f"local ({workers} worker processes)"


def score_dataset(
    manifest_path: Path,
    model_name: str,
    input: str | Path,
    output_dir: Path,
    *,
    scheduler: str | None = None,
    partitions: int | None = None,
    keep_columns: bool = False,
    proba: bool = True,
    n_workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    invalid_rows: InvalidRows = "error",
    chunk_size: int = 10_000,
    providers: tuple[str, ...] | None = None,
    policy: TrustPolicy | None = None,
) -> ScoreResult:
    """Score INPUT with one model on Dask and write Parquet partitions to ``output_dir``.

    ``manifest_path``: a manifest.json or the folder holding it. ``partitions``: repartition the
    input into this many pieces first. ``proba``: add ``proba_<class>`` columns when the model
    gives them. ``n_workers``: worker processes of the local cluster (default: CPU cores; ignored
    with ``scheduler``). ``on_progress(done, total)`` is called as partitions land.
    ``invalid_rows``, ``chunk_size``, ``providers`` and ``policy`` mean what they mean for
    ``apo predict --engine local``: rows it cannot answer, rows per call, onnxruntime's execution
    providers, the loading policy (workers open the store with them).
    """
    _require_dask()
    from distributed import as_completed

    from alphapulse_onnx.feeds import FeedBuilder
    from alphapulse_onnx.store import Store

    started = time.perf_counter()
    if partitions is not None and partitions < 1:
        raise InputError("--partitions must be at least 1")
    if chunk_size < 1:
        raise InputError("--chunk-size must be at least 1")
    manifest_file = manifest_io.resolve_path(Path(manifest_path)).resolve()
    if policy is not None:
        store = Store.open(manifest_file, providers=providers, policy=policy)
    else:
        store = Store.open(manifest_file, providers=providers)
    model = store[model_name]  # UnknownModelError names the models there
    entry = model.entry
    if not entry.ok or entry.artifact is None:
        raise InputError(
            f"model {entry.name!r} has no ONNX artifact ({entry.error or 'conversion failed'})",
            hint="fix it and rerun `apo convert`, or use --engine local (scikit-learn fallback)",
        )
    manifest_io.verify(entry, manifest_file.parent).raise_if_tampered(path=manifest_file)
    classifier = entry.task == "classification"
    want_proba = proba and classifier and entry.has_proba is not False
    names = tuple(name for name, _ in output_schema(model, want_proba))

    builder = FeedBuilder(entry.inputs, entry.feature_names, model=entry.name)
    dataset = _read(str(input), partitions=partitions, feature_names=entry.feature_names)
    available = dataset.columns
    columns: tuple[str, ...] | None
    if builder.names is not None:
        missing = [n for n in builder.names if n not in available]
        if missing:
            raise DataFileError(
                f"missing feature columns for model {entry.name!r}: {', '.join(missing[:5])}",
                path=str(input),
            )
        columns = builder.names
    else:
        if builder.n_features is not None and len(available) != builder.n_features:
            raise DataFileError(
                f"model {entry.name!r} records no feature names and takes {builder.n_features} "
                f"columns; the input has {len(available)}",
                path=str(input),
                hint="write the dataset with exactly the model's columns, in order",
            )
        columns = None

    output_dir = Path(output_dir).resolve()
    _prepare_output(output_dir)
    task = _Task(
        manifest=str(manifest_file),
        model=entry.name,
        artifact_sha256=entry.artifact.sha256,
        columns=columns,
        names=names,
        proba=want_proba,
        keep_columns=keep_columns,
        output_dir=str(output_dir),
        invalid_rows=invalid_rows,
        chunk_size=chunk_size,
        providers=providers,
        policy=policy,
    )
    from dask.delayed import delayed

    token = uuid.uuid4().hex[:8]
    pieces = dataset.pieces
    work = [
        delayed(_score_partition, pure=False)(
            piece, i, task, dask_key_name=f"apo-score-{token}-{i}"
        )
        for i, piece in enumerate(pieces)
    ]
    summaries: list[dict[str, Any]] = []
    with _client(scheduler, n_workers) as (client, where):
        futures = client.compute(work)
        try:
            landed = as_completed(futures)  # type: ignore[no-untyped-call]
            for done, future in enumerate(landed, start=1):
                summaries.append(future.result())
                if on_progress is not None:
                    on_progress(done, len(work))
        except ApoError:
            raise
        except Exception as exc:
            raise ApoError(
                f"scoring on Dask failed: {type(exc).__name__}: {first_line(exc)}",
                path=str(input),
            ) from exc
        finally:
            client.cancel(futures)
        stats = client.run(session_stats)
        worker_count = len(client.scheduler_info().get("workers", {}))
    summaries.sort(key=lambda s: s["partition"])
    written = {s["file"] for s in summaries}
    _tidy_output(output_dir, written)
    result = ScoreResult(
        model=entry.name,
        input=str(input),
        output_dir=output_dir,
        rows=sum(int(s["rows"]) for s in summaries),
        partitions=len(summaries),
        files=tuple(s["file"] for s in summaries),
        columns=(*([c for c in available if c not in names] if keep_columns else []), *names),
        scheduler=where,
        workers=worker_count,
        seconds=time.perf_counter() - started,
        worker_peak_rss_bytes={addr: int(s["peak_rss_bytes"]) for addr, s in stats.items()},
        invalid_rows=invalid_rows,
        invalid=sum(int(s.get("invalid", 0)) for s in summaries),
        first_invalid=next((s["first_invalid"] for s in summaries if s.get("first_invalid")), None),
    )
    summary = {**result.to_json(), "artifact_sha256": entry.artifact.sha256}
    atomic_write_text(output_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return result
