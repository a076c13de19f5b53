"""``apo predict --engine dask``: the model resolved as for the local engine, then scored on Dask.

``run()`` finds the manifest and model that ``--store`` and MODEL name (a name, or a path to
an artifact) and hands them to ``distributed.score_dataset``, which writes Parquet partitions to
OUTPUT_DIR. It returns the ``ScoreResult`` and never prints: progress reaches the caller through
``on_progress(done, total)`` as partitions land.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alphapulse_onnx import distributed
from alphapulse_onnx.commands.predict import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_STORE,
    check_output_options,
    resolve_manifest,
)
from alphapulse_onnx.loading import DEFAULT_POLICY, TrustPolicy
from alphapulse_onnx.prediction_columns import InvalidRows


@dataclass(frozen=True)
class DaskPredictOptions:
    model: str  # a name in the manifest, or a path to a .onnx artifact
    input: str  # a file, a folder or a glob of Parquet or CSV files
    output_dir: Path
    store: Path = DEFAULT_STORE
    proba: bool | None = None  # False: no proba_<class> columns; else when the model gives them
    scheduler: str | None = None  # None: a local cluster of worker processes
    partitions: int | None = None  # None: the input's own partitions
    keep_columns: bool = False
    invalid_rows: InvalidRows = "error"  # as apo predict --engine local
    provider: str | None = None  # onnxruntime's execution provider on the workers
    chunk_size: int = DEFAULT_CHUNK_SIZE  # rows per onnxruntime call within a partition
    policy: TrustPolicy = DEFAULT_POLICY


def run(
    options: DaskPredictOptions, *, on_progress: Callable[[int, int], None] | None = None
) -> distributed.ScoreResult:
    """Score every row of ``options.input`` on Dask; see ``distributed.score_dataset``."""
    check_output_options("parquet", options.invalid_rows, options.keep_columns)
    manifest_path, name = resolve_manifest(options.model, options.store)
    return distributed.score_dataset(
        manifest_path,
        name,
        options.input,
        options.output_dir,
        scheduler=options.scheduler,
        partitions=options.partitions,
        keep_columns=options.keep_columns,
        proba=options.proba is not False,
        on_progress=on_progress,
        invalid_rows=options.invalid_rows,
        chunk_size=options.chunk_size,
        providers=(options.provider,) if options.provider else None,
        policy=options.policy,
    )
