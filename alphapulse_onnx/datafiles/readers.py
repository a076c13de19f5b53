"""Rows for ``apo predict``, streamed in chunks so memory is bounded by the chunk size.

``open_table`` reads ``.csv`` (with or without a header), ``.npy`` (memory-mapped), ``.parquet``
(needs pyarrow, the ``[parquet]`` extra) and ``.jsonl`` (an object or an array a line), or CSV/JSONL
on stdin (``-``). Each reader yields ``Chunk``s: a DataFrame or a 2-D array, and where it starts.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from alphapulse_onnx.datafiles._formats import (
    STDIO,
    is_number,
    looks_like_header,
    require_pyarrow,
    suffix,
)
from alphapulse_onnx.errors import DataFileError, first_line

INPUT_SUFFIXES = (".csv", ".npy", ".parquet", ".jsonl")


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of an input: a DataFrame (named or numbered columns) or a 2-D array."""

    rows: Any
    first_row: int  # 0-based position of its first row among the file's data rows


class TableReader(Protocol):
    path: str
    total_rows: int | None  # known up front for .npy and .parquet

    def __iter__(self) -> Iterator[Chunk]: ...


class _Rewound:
    """A text stream whose first line was already read (to sniff it): hands it back first."""

    def __init__(self, head: str, rest: IO[str] | _Rewound) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            head, self._head = self._head, ""
            return head + self._rest.read()
        if self._head:
            head, self._head = self._head[:size], self._head[size:]
            return head
        return self._rest.read(size)

    def readline(self, size: int | None = -1) -> str:
        if self._head:
            head, self._head = self._head, ""
            return head
        return self._rest.readline()

    def __iter__(self) -> Iterator[str]:
        while line := self.readline():
            yield line


def _csv_has_header(cells: list[str], feature_names: Sequence[str] | None) -> bool:
    """A header names model features, or (numeric models) has a cell that is not a number."""
    stripped = [c.strip() for c in cells]
    if feature_names and set(stripped) & set(feature_names):
        return True
    if feature_names:
        return all(c and not is_number(c) for c in stripped)
    return looks_like_header(stripped)


class CsvReader:
    """CSV through pandas in chunks; the first line is sniffed to tell a header from data."""

    def __init__(
        self,
        path: str,
        handle: IO[str] | _Rewound,
        *,
        chunk_size: int,
        feature_names: Sequence[str] | None,
    ) -> None:
        self.path = path
        self.total_rows: int | None = None
        self._handle = handle
        self._chunk_size = chunk_size
        self._feature_names = feature_names

    def __iter__(self) -> Iterator[Chunk]:
        import pandas as pd

        try:
            head = ""
            while not head.strip():
                head = self._handle.readline()
                if not head:
                    return  # empty input: no rows
        except UnicodeDecodeError:
            raise DataFileError("not a UTF-8 text CSV file", path=self.path) from None
        cells = next(csv.reader([head]))
        header = _csv_has_header(cells, self._feature_names)
        stream = _Rewound(head, self._handle)
        first = 0
        try:
            reader = pd.read_csv(
                stream,
                header=0 if header else None,
                chunksize=self._chunk_size,
                skip_blank_lines=True,
                skipinitialspace=True,
            )
            for frame in reader:
                if header:
                    frame.columns = [str(c).strip() for c in frame.columns]
                yield Chunk(frame, first)
                first += len(frame)
        except pd.errors.EmptyDataError:
            return
        except pd.errors.ParserError as exc:
            message = (
                str(exc).strip().splitlines()[0].replace("Error tokenizing data. C error: ", "")
            )
            raise DataFileError(f"malformed CSV: {message}", path=self.path) from None
        except UnicodeDecodeError:
            raise DataFileError("not a UTF-8 text CSV file", path=self.path) from None


class JsonlReader:
    """One JSON object (named columns) or array (positional) a line; every line the same shape."""

    def __init__(self, path: str, handle: IO[str] | _Rewound, *, chunk_size: int) -> None:
        self.path = path
        self.total_rows: int | None = None
        self._handle = handle
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[Chunk]:
        keys: list[str] | None = None
        width: int | None = None
        batch: list[Any] = []
        first = 0
        try:
            for number, line in enumerate(self._handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFileError(
                        f"line {number}: not valid JSON ({exc.msg})", path=self.path
                    ) from None
                if isinstance(value, dict):
                    if width is not None:
                        raise DataFileError(
                            f"line {number}: an object among arrays", path=self.path
                        )
                    if keys is None:
                        keys = list(value)
                    elif len(value) != len(keys) or any(k not in value for k in keys):
                        missing = [k for k in keys if k not in value]
                        extra = [k for k in value if k not in keys]
                        raise DataFileError(
                            f"line {number}: keys differ from the first row's (missing: "
                            f"{', '.join(missing[:5]) or '-'}; "
                            f"extra: {', '.join(extra[:5]) or '-'})",
                            path=self.path,
                        )
                elif isinstance(value, list):
                    if keys is not None:
                        raise DataFileError(
                            f"line {number}: an array among objects", path=self.path
                        )
                    if width is None:
                        width = len(value)
                    elif len(value) != width:
                        raise DataFileError(
                            f"line {number}: {len(value)} values, the first row has {width}",
                            path=self.path,
                        )
                else:
                    raise DataFileError(
                        f"line {number}: expected an object or an array, "
                        f"got {type(value).__name__}",
                        path=self.path,
                    )
                batch.append(value)
                if len(batch) >= self._chunk_size:
                    yield Chunk(self._rows(batch, keys), first)
                    first += len(batch)
                    batch = []
        except UnicodeDecodeError:
            raise DataFileError("not a UTF-8 text file", path=self.path) from None
        if batch:
            yield Chunk(self._rows(batch, keys), first)

    @staticmethod
    def _rows(batch: list[Any], keys: list[str] | None) -> Any:
        if keys is not None:
            import pandas as pd

            return pd.DataFrame.from_records(batch, columns=keys)
        try:
            return np.asarray(batch, dtype=np.float64)
        except (ValueError, TypeError):
            array = np.empty((len(batch), len(batch[0])), dtype=object)
            array[:] = batch
            return array


class NpyReader:
    """A 2-D ``.npy`` array, memory-mapped: each chunk is copied out, the file never all loaded."""

    def __init__(self, path: Path, *, chunk_size: int) -> None:
        self.path = str(path)
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise DataFileError(
                f"not a readable .npy file ({first_line(exc)})", path=path
            ) from None
        except OSError as exc:
            raise DataFileError(f"cannot read: {exc.strerror or exc}", path=path) from None
        if (
            not isinstance(self._array, np.ndarray)
            or self._array.ndim != 2
            or (self._array.dtype.kind not in "fiubUS")
        ):
            raise DataFileError(
                f"expected a 2-D array of rows, got shape {getattr(self._array, 'shape', '?')} "
                f"of {getattr(self._array, 'dtype', '?')}",
                path=path,
            )
        self.total_rows: int | None = int(self._array.shape[0])
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[Chunk]:
        for start in range(0, self._array.shape[0], self._chunk_size):
            yield Chunk(np.array(self._array[start : start + self._chunk_size]), start)


class ParquetReader:
    """A Parquet file, batch by batch through pyarrow, as DataFrames."""

    def __init__(self, path: Path, *, chunk_size: int) -> None:
        pa = require_pyarrow()
        self.path = str(path)
        try:
            self._file = pa.parquet.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataFileError(
                f"not a readable Parquet file ({first_line(exc)})", path=path
            ) from None
        self.total_rows: int | None = int(self._file.metadata.num_rows)
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[Chunk]:
        first = 0
        for batch in self._file.iter_batches(batch_size=self._chunk_size):
            frame = batch.to_pandas()
            yield Chunk(frame, first)
            first += len(frame)


@contextlib.contextmanager
def open_table(
    source: str | Path,
    *,
    chunk_size: int = 10_000,
    feature_names: Sequence[str] | None = None,
    stdin: IO[str] | None = None,
) -> Iterator[TableReader]:
    """Stream rows from ``source`` (a path, or ``-`` for CSV/JSONL on stdin) in chunks.

    ``feature_names`` helps tell a CSV header from a first row of data.
    """
    if chunk_size < 1:
        raise DataFileError("the chunk size must be at least 1")
    name = str(source)
    if name == STDIO:
        stream = stdin if stdin is not None else sys.stdin
        head = ""
        while not head.strip():
            head = stream.readline()
            if not head:
                break
        rewound = _Rewound(head, stream)
        if head.lstrip().startswith(("{", "[")):
            yield JsonlReader("<stdin>", rewound, chunk_size=chunk_size)
        else:
            yield CsvReader("<stdin>", rewound, chunk_size=chunk_size, feature_names=feature_names)
        return
    path = Path(source)
    kind = suffix(name)
    if kind not in INPUT_SUFFIXES:
        raise DataFileError(
            f"unsupported input type {kind or '(none)'!r}; use {', '.join(INPUT_SUFFIXES)} or - "
            "for stdin",
            path=path,
        )
    if not path.is_file():
        raise DataFileError("no such file", path=path)
    if kind == ".npy":
        yield NpyReader(path, chunk_size=chunk_size)
        return
    if kind == ".parquet":
        yield ParquetReader(path, chunk_size=chunk_size)
        return
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataFileError(f"cannot read: {exc.strerror}", path=path) from None
    with handle:
        if kind == ".jsonl":
            yield JsonlReader(str(path), handle, chunk_size=chunk_size)
        else:
            yield CsvReader(str(path), handle, chunk_size=chunk_size, feature_names=feature_names)
