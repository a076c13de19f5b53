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
from typing import Any

from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx._fsutil import atomic_write_bytes, atomic_write_text
from alphapulse_onnx.errors import (
    ApoError,
    DataFileError,
    InputError,
    InvalidInputError,
    first_line,
)
from alphapulse_onnx.prediction_columns import output_columns, output_schema

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
            store = Store.open(task.manifest, settings=settings)
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


def _predict_frame(task: _Task, frame: Any) -> Any:
    """Prediction columns (plus the input's with keep_columns) for one pandas partition."""
    import pandas as pd

    model = _model_for(task)
    rows = frame[list(task.columns)] if task.columns is not None else frame
    prepared = model.prepare(rows)
    outputs = model.run_prepared(prepared, proba=task.proba)
    columns = output_columns(task.names, outputs)
    result = pd.DataFrame(columns)
    if task.keep_columns:
        kept = frame.reset_index(drop=True)
        result = pd.concat([kept.drop(columns=list(columns), errors="ignore"), result], axis=1)
    return result


def part_name(index: int) -> str:
    return f"{PART_PREFIX}{index:05d}.parquet"


def _score_partition(frame: Any, index: int, task: _Task) -> dict[str, Any]:
    """Score partition ``index`` and land it atomically as ``part-<index>.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        result = _predict_frame(task, frame)
    except InvalidInputError as exc:
        where = f"row {exc.row + 1}: {exc.detail}" if exc.row is not None else exc.message
        raise DataFileError(f"input partition {index}, {where}") from None
    table = pa.Table.from_pandas(result, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    target = Path(task.output_dir) / part_name(index)
    atomic_write_bytes(target, sink.getvalue().to_pybytes())  # temp name, fsync, rename
    with _LOCK:
        _PARTITIONS_SCORED[task.artifact_sha256] = (
            _PARTITIONS_SCORED.get(task.artifact_sha256, 0) + 1
        )
    return {"partition": index, "rows": len(result), "file": target.name, "pid": os.getpid()}


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


def _read(source: str) -> Any:
    import dask.dataframe as dd

    files, kind = _input_files(source)
    path = Path(source)
    try:
        if kind == "csv":
            return dd.read_csv(files, blocksize="64MB")
        # A folder is read as a dataset, so hive partition folders (symbol=BTC/) become columns.
        return dd.read_parquet(str(path) if path.is_dir() else files)
    except (OSError, ValueError) as exc:
        raise DataFileError(
            f"cannot read it as a dataset: {first_line(exc)}", path=source
        ) from None


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
) -> ScoreResult:
    """Score INPUT with one model on Dask and write Parquet partitions to ``output_dir``.

    ``manifest_path``: a manifest.json or the folder holding it. ``partitions``: repartition the
    input into this many pieces first. ``proba``: add ``proba_<class>`` columns when the model
    gives them. ``n_workers``: worker processes of the local cluster (default: CPU cores; ignored
    with ``scheduler``). ``on_progress(done, total)`` is called as partitions land.
    """
    _require_dask()
    from distributed import as_completed

    from alphapulse_onnx.feeds import FeedBuilder
    from alphapulse_onnx.store import Store

    started = time.perf_counter()
    if partitions is not None and partitions < 1:
        raise InputError("--partitions must be at least 1")
    manifest_file = manifest_io.resolve_path(Path(manifest_path)).resolve()
    store = Store.open(manifest_file)
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

    frame = _read(str(input))
    builder = FeedBuilder(entry.inputs, entry.feature_names, model=entry.name)
    available = [str(c) for c in frame.columns]
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
    if partitions is not None:
        frame = frame.repartition(npartitions=partitions)

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
    )
    from dask.delayed import delayed

    token = uuid.uuid4().hex[:8]
    pieces = frame.to_delayed()
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
    )
    summary = {**result.to_json(), "artifact_sha256": entry.artifact.sha256}
    atomic_write_text(output_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return result
