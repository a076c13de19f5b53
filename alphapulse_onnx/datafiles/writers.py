"""Prediction tables out of ``apo predict``, written chunk by chunk as they are computed.

``open_writer`` writes ``.csv`` (also to stdout), ``.jsonl``, ``.npy`` (a structured array, one
field per column) and ``.parquet`` (needs pyarrow). A file appears only once every chunk is in
(``_fsutil.atomic_file``); on error the old file, if any, is left as it was.

``write(columns, empty)`` takes, per column, the rows to leave empty (``apo predict --invalid-rows
null``): an empty CSV cell, a JSON ``null``, a Parquet null; a ``.npy`` array has no empty value,
so it refuses them.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from alphapulse_onnx._fsutil import atomic_file
from alphapulse_onnx.datafiles._formats import STDIO, require_pyarrow, suffix
from alphapulse_onnx.errors import DataFileError, first_line

OUTPUT_SUFFIXES = (".csv", ".jsonl", ".npy", ".parquet")


Empty = Mapping[str, np.ndarray]  # column -> which rows to leave empty
NO_EMPTY: Empty = {}


class TableWriter(Protocol):
    def write(self, columns: dict[str, np.ndarray], empty: Empty = NO_EMPTY) -> None: ...

    def close(self) -> None: ...


def _with_empty(columns: dict[str, np.ndarray], empty: Empty) -> dict[str, np.ndarray]:
    """Columns with ``None`` in the rows left empty (object arrays only where needed)."""
    if not empty:
        return columns
    out = dict(columns)
    for name, rows in empty.items():
        if name in out and rows.any():
            values = np.asarray(out[name]).astype(object)
            values[rows] = None
            out[name] = values
    return out


class CsvWriter:
    """CSV with a header line, even when there are no rows."""

    def __init__(self, handle: IO[str], names: Sequence[str]) -> None:
        self._handle = handle
        self._names = list(names)
        self._header = True

    def write(self, columns: dict[str, np.ndarray], empty: Empty = NO_EMPTY) -> None:
        import pandas as pd

        pd.DataFrame(_with_empty(columns, empty), copy=False).to_csv(
            self._handle, header=self._header, index=False, lineterminator="\n"
        )
        self._header = False

    def close(self) -> None:
        if self._header:  # no rows at all: still write the header
            self._handle.write(",".join(self._names) + "\n")
        self._handle.flush()


class JsonlWriter:
    """One JSON object a row, keyed by column name."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def write(self, columns: dict[str, np.ndarray], empty: Empty = NO_EMPTY) -> None:
        columns = _with_empty(columns, empty)
        keys = list(columns)
        values = [_plain(np.asarray(c).tolist()) for c in columns.values()]
        write = self._handle.write
        for row in zip(*values, strict=True):
            write(json.dumps(dict(zip(keys, row, strict=True))) + "\n")

    def close(self) -> None:
        self._handle.flush()


class NpyWriter:
    """A structured array, one field per column, streamed; the header gets the row count last."""

    _HEADER_BYTES = 256

    def __init__(self, handle: IO[bytes], schema: Sequence[tuple[str, Any]]) -> None:
        self._handle = handle
        self._dtype = np.dtype([(name, np.dtype(dtype)) for name, dtype in schema])
        self._rows = 0
        handle.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        descr = np.lib.format.dtype_to_descr(self._dtype)
        text = repr({"descr": descr, "fortran_order": False, "shape": (rows,)})
        prefix = b"\x93NUMPY\x01\x00"
        room = self._HEADER_BYTES - len(prefix) - 2
        if len(text) + 1 > room:  # very wide schemas: a v2 header (4-byte length)
            raise DataFileError("too many output columns for the .npy writer")
        body = text.ljust(room - 1) + "\n"
        return prefix + len(body).to_bytes(2, "little") + body.encode("latin1")

    def write(self, columns: dict[str, np.ndarray], empty: Empty = NO_EMPTY) -> None:
        if any(rows.any() for rows in empty.values()):
            raise DataFileError(
                ".npy has no empty value for rows left unanswered",
                hint="write .csv, .jsonl or .parquet with --invalid-rows null",
            )
        n = len(next(iter(columns.values())))
        out = np.empty(n, dtype=self._dtype)
        for name, values in columns.items():
            out[name] = values
        self._handle.write(out.tobytes())
        self._rows += n

    def close(self) -> None:
        self._handle.seek(0)
        self._handle.write(self._header(self._rows))
        self._handle.flush()


class ParquetWriter:
    """Parquet through pyarrow, one row group a chunk; the file's schema is the first chunk's."""

    def __init__(self, path: Path, schema: Sequence[tuple[str, Any]]) -> None:
        self._pa = require_pyarrow()
        self._path = path
        self._schema = schema
        self._writer: Any = None

    def write(self, columns: dict[str, np.ndarray], empty: Empty = NO_EMPTY) -> None:
        pa = self._pa
        arrays = {}
        for name, values in columns.items():
            rows = empty.get(name)
            mask = rows if rows is not None and rows.any() else None
            # pandas' conventions (a NaN or None is null), as the Dask engine's parts are written
            arrays[name] = pa.array(np.asarray(values), mask=mask, from_pandas=True)
        table = pa.table(arrays)
        if self._writer is None:
            self._writer = pa.parquet.ParquetWriter(self._path, table.schema)
        elif table.schema != self._writer.schema:
            try:  # a column pandas typed otherwise in this chunk (ints, then a gap: floats)
                table = table.cast(self._writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise DataFileError(
                    f"a column changes type between chunks ({first_line(exc)})",
                    path=self._path,
                    hint="use a larger --chunk-size, or write .csv or .jsonl",
                ) from None
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is None:  # no rows: an empty table with the right columns
            pa = self._pa
            empty = {
                name: pa.array(np.empty(0, dtype=np.dtype(dtype))) for name, dtype in self._schema
            }
            pa.parquet.write_table(pa.table(empty), self._path)
            return
        self._writer.close()


def _plain(values: list[object]) -> list[object]:
    """NaN as JSON null: ``json.dumps`` would write ``NaN``, which is not JSON."""
    return [None if isinstance(v, float) and v != v else v for v in values]


def output_format(target: str | Path | None) -> str:
    """``csv``/``jsonl``/``npy``/``parquet`` from the output's suffix (stdout: csv)."""
    if target is None or str(target) == STDIO:
        return "csv"
    kind = suffix(str(target))
    if kind not in OUTPUT_SUFFIXES:
        raise DataFileError(
            f"unsupported output type {kind or '(none)'!r}; use {', '.join(OUTPUT_SUFFIXES)}",
            path=target,
        )
    if kind == ".parquet":
        require_pyarrow()
    return kind[1:]


@contextlib.contextmanager
def open_writer(
    target: str | Path | None, schema: Sequence[tuple[str, Any]], *, stdout: IO[str] | None = None
) -> Iterator[TableWriter]:
    """Write tables of ``schema`` (column name, numpy dtype) to ``target`` (``None``/``-``: stdout).

    A file appears only when everything was written (temp file + rename); on error it is untouched.
    """
    fmt = output_format(target)
    names = [name for name, _ in schema]
    if target is None or str(target) == STDIO:
        writer = CsvWriter(stdout if stdout is not None else sys.stdout, names)
        yield writer
        writer.close()
        return
    with atomic_file(Path(target)) as tmp:
        if fmt == "parquet":
            writer_p = ParquetWriter(tmp, schema)
            yield writer_p
            writer_p.close()
        elif fmt == "npy":
            with tmp.open("wb") as binary:
                writer_n = NpyWriter(binary, schema)
                yield writer_n
                writer_n.close()
        else:
            with tmp.open("w", encoding="utf-8", newline="") as text:
                if fmt == "csv":
                    writer_c = CsvWriter(text, names)
                    yield writer_c
                    writer_c.close()
                else:
                    writer_j = JsonlWriter(text)
                    yield writer_j
                    writer_j.close()
