"""Sample rows for parity checks (``apo convert --sample``, ``apo validate --sample``).

``read_sample`` reads a whole ``.npy`` or ``.csv`` (with or without a header of names) as float64
rows; ``select_features`` takes the model's columns from them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from alphapulse_onnx.datafiles._formats import looks_like_header
from alphapulse_onnx.errors import DataFileError


def read_csv_matrix(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """A numeric CSV as float64 rows plus its header names (``None`` when it has no header)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataFileError(f"cannot read: {exc.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise DataFileError("not a UTF-8 text CSV file", path=path) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DataFileError("the CSV file has no rows", path=path)
    header = [c.strip() for c in rows[0]] if looks_like_header(rows[0]) else None
    body = rows[1:] if header else rows
    width = len(rows[0])
    values = np.empty((len(body), width), dtype=np.float64)
    for i, row in enumerate(body):
        line = i + (2 if header else 1)
        if len(row) != width:
            raise DataFileError(f"line {line} has {len(row)} cells, expected {width}", path=path)
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell) if cell.strip() else np.nan
            except ValueError:  # noqa: PERF203  (the error path: runs once)
                column = header[j] if header else f"column {j + 1}"
                raise DataFileError(
                    f"line {line}, {column}: {cell!r} is not a number", path=path
                ) from None
    return values, header


def read_sample(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Sample rows for parity checks (``--sample``): ``.npy`` or ``.csv``."""
    if not path.is_file():
        raise DataFileError("no such file", path=path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataFileError(f"not a readable .npy file ({exc})", path=path) from None
        if array.ndim != 2 or array.dtype.kind not in "fiub":
            raise DataFileError(
                f"expected a 2-D numeric array, got shape {array.shape} of {array.dtype}",
                path=path,
            )
        return array.astype(np.float64), None
    if suffix == ".csv":
        return read_csv_matrix(path)
    raise DataFileError(f"unsupported sample type {suffix!r}; use .npy or .csv", path=path)


def select_features(
    X: np.ndarray, header: list[str] | None, feature_names: tuple[str, ...] | None, n_features: int
) -> np.ndarray:
    """The model's columns, by name where both sides have names, else by position."""
    if header and feature_names:
        missing = [n for n in feature_names if n not in header]
        if missing:
            raise DataFileError(f"missing columns: {', '.join(missing[:5])}")
        index = [header.index(n) for n in feature_names]
        return np.ascontiguousarray(X[:, index])
    if X.shape[1] != n_features:
        raise DataFileError(f"has {X.shape[1]} columns, the model takes {n_features}")
    return X
