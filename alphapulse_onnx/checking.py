"""The parity check that convert runs after compiling and validate runs again later.

Both must see the same rows and the same comparison, so both call these functions: the probe
rows (``probe_for``), the parity check (``check_artifact``), and the proof of the model's input
contract on rows holding missing values, infinities or huge values (``prove_contract``,
``recheck_contract``).

A ``--sample`` applies to the models whose features it holds (by column name; by position when
it has no header); the others are probed with generated rows, and their probe says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import conversion, input_contract, parity, probing, runtime
from alphapulse_onnx.column_probes import from_frame, generate_columns
from alphapulse_onnx.datafiles.samples import select_features
from alphapulse_onnx.errors import ApoError, ConversionError, InputError, first_line
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.input_contract import WHAT, InputContract, Kind
from alphapulse_onnx.signature import InputSignature


def probe_for(model: Any, signature: InputSignature, *, sample_path: Path | None,
              sample: tuple[np.ndarray, list[str] | None] | None, sample_error: str | None,
              probe_rows: int, positional_strict: bool = False) -> probing.Probe:  # fmt: skip
    """The rows parity is checked on: ``--sample`` rows when they hold the model's features,
    else probes from the model (with a ``note`` saying why the sample was not used).

    Matched by column name, a sample that lacks a model's columns is meant for other models of
    the registry. Matched by position (no names on either side), a width that differs is only
    a note for convert, but ``positional_strict`` (validate, the CI gate) makes it an error: there
    nothing says the rows were meant for another model."""
    if signature.per_column:
        if sample_path is not None:
            try:
                return frame_sample(sample_path, signature)
            except _SampleMisses as miss:
                return _generated(model, signature, probe_rows, note=str(miss))
        return generate_columns(model, signature, rows=probe_rows)
    if sample_error is not None:
        assert sample_path is not None
        try:  # a table with text columns still holds this model's numeric columns by name
            rows = _numeric_columns(read_table(sample_path), signature)
        except _SampleMisses as miss:
            return _generated(model, signature, probe_rows, note=str(miss))
        return probing.from_sample(rows)
    if sample is not None:
        X, header = sample
        try:
            rows = select_features(X, header, signature.feature_names, signature.n_features)
        except ApoError as exc:
            if positional_strict and not (header and signature.feature_names):
                raise InputError(f"--sample {sample_path}: {exc.message}") from None
            note = f"--sample does not fit it ({exc.message}); parity used generated probes"
            return _generated(model, signature, probe_rows, note=note)
        return probing.from_sample(rows)
    return probing.generate(model, signature.n_features, rows=probe_rows)


class _SampleMisses(Exception):  # a case, not a failure: the model is probed instead
    """A ``--sample`` table that lacks a model's columns."""


def _generated(model: Any, signature: InputSignature, rows: int, *, note: str) -> probing.Probe:
    from dataclasses import replace

    if signature.per_column:
        probe = generate_columns(model, signature, rows=rows)
    else:
        probe = probing.generate(model, signature.n_features, rows=rows)
    return replace(probe, note=note)


def _numeric_columns(frame: Any, signature: InputSignature) -> np.ndarray:
    names = list(signature.feature_names or ())
    missing = [n for n in names if n not in frame.columns]
    if not names or missing:
        lacks = (f"lacks its columns {', '.join(missing[:5])}" if missing
                 else "has no names to match")  # fmt: skip
        raise _SampleMisses(f"--sample {lacks}; parity used generated probes")
    try:
        return np.asarray(frame[names].to_numpy(dtype=np.float64, na_value=np.nan))
    except (ValueError, TypeError):
        raise _SampleMisses(
            "--sample holds its columns, but not as numbers; parity used generated probes"
        ) from None


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
        frame = read_table(path)
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(f"--sample {path}: cannot read it as a table: {first_line(exc)}") from None
    missing = [n for n in signature.feature_names or () if n not in frame.columns]
    if missing:
        raise _SampleMisses(
            f"--sample lacks its columns {', '.join(map(str, missing[:5]))}; parity used "
            "generated probes"
        )
    try:
        return from_frame(frame, signature)
    except ApoError as exc:
        raise InputError(f"--sample {path}: {exc.message}") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"--sample {path}: cannot read it as a table: {first_line(exc)}") from None


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


def _hostile_probe(rows: parity.Rows, kind: str) -> probing.Probe:
    if isinstance(rows, np.ndarray):
        return probing.Probe(X=rows, kind=kind)
    return probing.Probe(X=np.empty((parity.n_rows(rows), 0)), kind=kind, columns=dict(rows))


def prove_contract(model: Any, signature: InputSignature, artifact: conversion.Artifact,
                   probe: probing.Probe, contract: InputContract, *, providers: tuple[str, ...],
                   tolerance: parity.Tolerance,
                   ) -> tuple[InputContract, tuple[str, ...]]:  # fmt: skip
    """The contract ``artifact`` serves: scikit-learn's own (``contract``), limited to what the
    artifact holds (float32 range), less each kind of value the artifact does not answer as
    scikit-learn does on probe rows holding it; with a note for each kind so refused."""
    served = input_contract.served(contract, artifact.precision)
    notes: list[str] = []
    for kind, hostile, failed in _hostile_parity(
        model, signature, artifact, probe, served, providers=providers, tolerance=tolerance
    ):
        if failed is None:
            served = served.with_proven(kind, hostile.rows)
            continue
        reason = f"its artifact does not answer {WHAT[kind]} as scikit-learn does ({failed})"
        served = served.refusing(kind, reason)
        notes.append(f"{WHAT[kind]} are refused: {reason}")
    return served, tuple(notes)


def _hostile_parity(model: Any, signature: InputSignature, artifact: conversion.Artifact,
                    probe: probing.Probe, contract: InputContract, *,
                    providers: tuple[str, ...], tolerance: parity.Tolerance,
                    ) -> Iterator[tuple[Kind, probing.Probe, str | None]]:  # fmt: skip
    """Parity on probe rows holding each kind of value ``contract`` admits: the kind, its probe,
    and why the artifact failed on it (None when it answered as scikit-learn does)."""
    for kind, rows in input_contract.hostile_probes(contract, signature, probe).items():
        hostile = _hostile_probe(rows, f"{probe.kind}+{kind}")
        try:
            report, _ = check_artifact(model, signature, artifact, hostile, providers=providers,
                                       tolerance=tolerance)  # fmt: skip
        except Exception as exc:  # scikit-learn refusing some such rows, or onnxruntime failing
            yield kind, hostile, first_line(exc, 120)
        else:
            yield kind, hostile, None if report.passed else (report.reason or "parity failed")


def recheck_contract(model: Any, signature: InputSignature, artifact: conversion.Artifact,
                     probe: probing.Probe, recorded: InputContract, *,
                     providers: tuple[str, ...],
                     tolerance: parity.Tolerance) -> tuple[str, ...]:  # fmt: skip
    """What no longer holds of a recorded contract (for ``apo validate``): values it accepts that
    scikit-learn now refuses, or that the artifact no longer answers as scikit-learn does."""
    problems: list[str] = []
    own = input_contract.determine(model, signature, probe)
    labels = input_contract.column_labels(signature)
    for kind in input_contract.KINDS:
        if kind == "big":
            now_refused = [
                label
                for label in labels
                if _beyond(recorded.rule(label).max_abs, own.rule(label).max_abs)
            ]
        else:
            now_refused = [
                label
                for label in labels
                if recorded.rule(label).allows(kind) and not own.rule(label).allows(kind)
            ]
        if now_refused:
            problems.append(
                f"scikit-learn now refuses {WHAT[kind]} in column {now_refused[0]!r}, which the "
                "manifest's input contract accepts; rerun `apo convert`"
            )
    if problems:
        return tuple(problems)
    for kind, _, failed in _hostile_parity(
        model, signature, artifact, probe, recorded, providers=providers, tolerance=tolerance
    ):
        if failed is not None:
            problems.append(f"parity on rows with {WHAT[kind]} failed: {failed}")
    return tuple(problems)


def _beyond(recorded: float | None, own: float | None) -> bool:
    """Whether a recorded limit lets through values that scikit-learn's own limit refuses."""
    if own is None:
        return False
    return recorded is None or recorded > own
