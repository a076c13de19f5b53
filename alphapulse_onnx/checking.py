"""The parity check that convert runs after compiling and validate runs again later.

Both must see the same rows and the same comparison, so both call these two functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import conversion, parity, probing, runtime
from alphapulse_onnx.column_probes import from_frame, generate_columns
from alphapulse_onnx.datafiles.samples import select_features
from alphapulse_onnx.errors import ApoError, ConversionError, InputError
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.signature import InputSignature


def probe_for(model: Any, signature: InputSignature, *, sample_path: Path | None,
              sample: tuple[np.ndarray, list[str] | None] | None, sample_error: str | None,
              probe_rows: int) -> probing.Probe:  # fmt: skip
    """The rows parity is checked on: ``--sample`` rows when given, else probes from the model."""
    if signature.per_column:
        if sample_path is not None:
            return frame_sample(sample_path, signature)
        return generate_columns(model, signature, rows=probe_rows)
    if sample_error is not None:
        raise InputError(f"--sample: {sample_error}")
    if sample is not None:
        X, header = sample
        try:
            rows = select_features(X, header, signature.feature_names, signature.n_features)
        except ApoError as exc:
            raise InputError(f"--sample {sample_path}: {exc.message}") from None
        return probing.from_sample(rows)
    return probing.generate(model, signature.n_features, rows=probe_rows)


def read_table(path: Path) -> Any:
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"unsupported table type {path.suffix!r}; use .csv or .parquet")


def readable_table(path: Path) -> bool:
    try:
        read_table(path)
    except Exception:  # any reader failure: not a table we can use
        return False
    return True


def frame_sample(path: Path, signature: InputSignature) -> probing.Probe:
    """``--sample`` for a per-column model: a CSV/Parquet table with mixed columns, by name."""
    try:
        return from_frame(read_table(path), signature)
    except ApoError as exc:
        raise InputError(f"--sample {path}: {exc.message}") from None
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(f"--sample {path}: cannot read it as a table: {exc}") from None


def check_artifact(
    model: Any,
    signature: InputSignature,
    artifact: conversion.Artifact,
    probe: probing.Probe,
    *,
    providers: tuple[str, ...],
    tolerance: parity.Tolerance,
) -> tuple[parity.ParityReport, tuple[str, ...]]:
    """Parity on CPU, then on every other provider that runs here; all must pass."""
    rows: parity.Rows = probe.columns if probe.columns is not None else probe.X
    feeds = probe_feeds(artifact.inputs, rows)
    ran: list[str] = []
    report: parity.ParityReport | None = None
    for provider in providers:
        try:
            session = runtime.make_session(artifact.onnx_bytes, [provider])
            outputs = runtime.run(session, feeds)
        except Exception as exc:
            raise ConversionError(
                f"onnxruntime ({provider}) rejected the artifact: {str(exc).splitlines()[0][:200]}"
            ) from exc
        current = parity.compare(model, signature, rows, outputs, probe=probe.kind,
                                 precision=artifact.precision, tolerance=tolerance)  # fmt: skip
        ran.append(provider)
        if report is None or not current.passed:
            report = current
        if not current.passed:
            break
    assert report is not None
    return report, tuple(ran)
