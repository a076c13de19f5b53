"""Rows for ``apo predict``, streamed in chunks so memory is bounded by the chunk size.

``open_table`` reads ``.csv`` (with or without a header), ``.npy`` (memory-mapped), ``.parquet``
(needs pyarrow, the ``[parquet]`` extra) and ``.jsonl`` (an object or an array a line), or CSV/JSONL
on stdin (``-``). Each reader yields ``Chunk``s: a DataFrame or a 2-D array, and where it starts.

A row that cannot be read as a row of the table (a CSV row with fewer or more cells than the
header, a JSONL line that is not JSON or not shaped like the first) is an error naming it; with
``malformed="report"`` it is left out of the chunk's rows and listed in ``Chunk.malformed`` instead,
so a caller can skip it or mark it (``apo predict --invalid-rows``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import numpy as np

from alphapulse_onnx.datafiles._formats import (
    STDIO,
    is_number,
    looks_like_header,
    require_pyarrow,
    suffix,
)
from alphapulse_onnx.errors import DataFileError, first_line, quoted

INPUT_SUFFIXES = (".csv", ".npy", ".parquet", ".jsonl")
Malformed = Literal["raise", "report"]


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of an input: a DataFrame (named or numbered columns) or a 2-D array.

    ``malformed``: rows that could not be read, each (position in this chunk, what is wrong);
    they are not in ``rows``, which holds the others in order."""

    rows: Any
    first_row: int  # 0-based position of its first row among the file's data rows
    malformed: tuple[tuple[int, str], ...] = ()

    @property
    def size(self) -> int:
        """Rows it covers: those read, and those that could not be."""
        return len(self.rows) + len(self.malformed)


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


class _Lines:
    """A text stream's lines, each kept until taken: the raw text of the record csv just read."""

    def __init__(self, stream: IO[str] | _Rewound) -> None:
        self._stream = stream
        self.taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._stream.readline()
        if not line:
            raise StopIteration
        self.taken.append(line)
        return line

    def take(self) -> list[str]:
        taken, self.taken = self.taken, []
        return taken


class CsvReader:
    """CSV in chunks; the first line is sniffed to tell a header from data.

    Every record is counted (Python's csv module) before pandas reads the chunk's well-formed
    rows, so a row with fewer cells than the header is named, as a row with more is: pandas alone
    pads a short row with NaN and answers it.
    """

    def __init__(
        self,
        path: str,
        handle: IO[str] | _Rewound,
        *,
        chunk_size: int,
        feature_names: Sequence[str] | None,
        malformed: Malformed = "raise",
        header: bool | None = None,
    ) -> None:
        self.path = path
        self.total_rows: int | None = None
        self._handle = handle
        self._chunk_size = chunk_size
        self._feature_names = feature_names
        self._malformed = malformed
        self._header = header  # None: told from the first line

    def __iter__(self) -> Iterator[Chunk]:
        try:
            yield from self._chunks()
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise DataFileError("not a UTF-8 text CSV file", path=self.path) from None
        except csv.Error as exc:
            raise DataFileError(f"malformed CSV: {first_line(exc)}", path=self.path) from None

    def _chunks(self) -> Iterator[Chunk]:
        head = ""
        while not head.strip():
            head = self._handle.readline()
            if not head:
                return  # empty input: no rows
        cells = next(csv.reader([head], skipinitialspace=True), [])
        header = (
            _csv_has_header(cells, self._feature_names) if self._header is None else self._header
        )
        width = len(cells)
        lines = _Lines(self._handle if header else _Rewound(head, self._handle))
        line_no = 1 if header else 0
        first = 0
        good: list[str] = []
        bad: list[tuple[int, str]] = []
        count = 0
        for record in csv.reader(lines, skipinitialspace=True):
            raw = lines.take()
            line_no += len(raw)
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            if len(record) != width:
                what = "the header has" if header else "the first row has"
                line = line_no - len(raw) + 1
                detail = f"{len(record)} cells where {what} {width} (line {line})"
                if self._malformed == "raise":
                    raise DataFileError(
                        f"malformed CSV: row {first + count + 1} has {detail}", path=self.path
                    )
                bad.append((count, f"has {detail}"))
            else:
                good.append("".join(raw))
            count += 1
            if count >= self._chunk_size:
                yield self._chunk(head if header else None, good, bad, first, width)
                first += count
                good, bad, count = [], [], 0
        if count or (header and first == 0):
            yield self._chunk(head if header else None, good, bad, first, width)

    def _chunk(self, head: str | None, good: list[str], bad: list[tuple[int, str]], first: int,
               width: int) -> Chunk:  # fmt: skip
        import pandas as pd

        text = "".join(good)
        if head is not None:
            text = head if head.endswith("\n") else head + "\n"
            text += "".join(good)
        try:
            if head is None and not good:
                frame = pd.DataFrame(columns=range(width))
            else:
                frame = pd.read_csv(io.StringIO(text), header=0 if head is not None else None,
                                    skip_blank_lines=True, skipinitialspace=True)  # fmt: skip
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame(columns=range(width))
        except pd.errors.ParserError as exc:
            message = first_line(exc).replace("Error tokenizing data. C error: ", "")
            raise DataFileError(f"malformed CSV: {message}", path=self.path) from None
        if head is not None:
            frame.columns = [str(c).strip() for c in frame.columns]
        return Chunk(frame, first, tuple(bad))


def csv_header(
    handle: IO[str], feature_names: Sequence[str] | None
) -> tuple[str | None, list[str]]:
    """A CSV file's header line (None: it has none) and its column names (stripped)."""
    head = ""
    while not head.strip():
        head = handle.readline()
        if not head:
            return None, []
    cells = [c.strip() for c in next(csv.reader([head], skipinitialspace=True), [])]
    if _csv_has_header(cells, feature_names):
        return (head if head.endswith("\n") else head + "\n"), cells
    return None, [str(j) for j in range(len(cells))]


def read_csv_block(handle: IO[str], path: str, *, header: bool) -> Chunk:
    """A block of a CSV file (the whole file, or whole lines of it after its header line) as
    one chunk, malformed rows reported: the Dask engine's pieces, read as ``apo predict`` reads."""
    chunks = list(CsvReader(path, handle, chunk_size=2**62, feature_names=None,
                            malformed="report", header=header))  # fmt: skip
    if not chunks:
        import pandas as pd

        return Chunk(pd.DataFrame(), 0)
    return chunks[0]


class JsonlReader:
    """One JSON object (named columns) or array (positional) a line; every line the same shape."""

    def __init__(self, path: str, handle: IO[str] | _Rewound, *, chunk_size: int,
                 malformed: Malformed = "raise") -> None:  # fmt: skip
        self.path = path
        self.total_rows: int | None = None
        self._handle = handle
        self._chunk_size = chunk_size
        self._malformed = malformed
        self._keys: list[str] | None = None
        self._width: int | None = None

    def __iter__(self) -> Iterator[Chunk]:
        batch: list[Any] = []
        bad: list[tuple[int, str]] = []
        first = 0
        try:
            for number, line in enumerate(self._handle, start=1):
                if not line.strip():
                    continue
                problem = self._problem(number, line)
                if isinstance(problem, str):
                    if self._malformed == "raise":
                        raise DataFileError(problem, path=self.path)
                    bad.append((len(batch) + len(bad), problem))
                else:
                    batch.append(problem[0])
                if len(batch) + len(bad) >= self._chunk_size:
                    yield Chunk(self._rows(batch), first, tuple(bad))
                    first += len(batch) + len(bad)
                    batch, bad = [], []
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise DataFileError("not a UTF-8 text file", path=self.path) from None
        if batch or bad:
            yield Chunk(self._rows(batch), first, tuple(bad))

    def _problem(self, number: int, line: str) -> str | tuple[Any]:
        """What is wrong with one line, or its value (in a 1-tuple)."""
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number}: not valid JSON ({exc.msg})"
        except RecursionError:
            return f"line {number}: not a row: JSON nested too deeply"
        if isinstance(value, dict):
            if self._width is not None:
                return f"line {number}: an object among arrays"
            if self._keys is None:
                self._keys = list(value)
            elif len(value) != len(self._keys) or any(k not in value for k in self._keys):
                missing = [k for k in self._keys if k not in value]
                extra = [k for k in value if k not in self._keys]
                return (
                    f"line {number}: keys differ from the first row's (missing: "
                    f"{', '.join(quoted(k, 40, repr_=False) for k in missing[:5]) or '-'}; "
                    f"extra: {', '.join(quoted(k, 40, repr_=False) for k in extra[:5]) or '-'})"
                )
        elif isinstance(value, list):
            if self._keys is not None:
                return f"line {number}: an array among objects"
            if self._width is None:
                self._width = len(value)
            elif len(value) != self._width:
                return f"line {number}: {len(value)} values, the first row has {self._width}"
        else:
            return f"line {number}: expected an object or an array, got {type(value).__name__}"
        return (value,)

    def _rows(self, batch: list[Any]) -> Any:
        if self._keys is not None:
            import pandas as pd

            return pd.DataFrame.from_records(batch, columns=self._keys)
        if not batch:
            return np.empty((0, self._width or 0), dtype=np.float64)
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
    malformed: Malformed = "raise",
) -> Iterator[TableReader]:
    """Stream rows from ``source`` (a path, or ``-`` for CSV/JSONL on stdin) in chunks.

    ``feature_names`` helps tell a CSV header from a first row of data. ``malformed``: raise for
    a row that cannot be read, or report it in its chunk (``Chunk.malformed``).
    """
    if chunk_size < 1:
        raise DataFileError("the chunk size must be at least 1")
    name = str(source)
    if name == STDIO:
        stream = stdin if stdin is not None else _stdin_text()
        head = ""
        try:
            while not head.strip():
                head = stream.readline()
                if not head:
                    break
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise DataFileError("not UTF-8 text (CSV or JSONL)", path="<stdin>") from None
        rewound = _Rewound(head, stream)
        if head.lstrip().startswith(("{", "[")):
            yield JsonlReader("<stdin>", rewound, chunk_size=chunk_size, malformed=malformed)
        else:
            yield CsvReader("<stdin>", rewound, chunk_size=chunk_size,
                            feature_names=feature_names, malformed=malformed)  # fmt: skip
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
            yield JsonlReader(str(path), handle, chunk_size=chunk_size, malformed=malformed)
        else:
            yield CsvReader(str(path), handle, chunk_size=chunk_size,
                            feature_names=feature_names, malformed=malformed)  # fmt: skip


def _stdin_text() -> IO[str]:
    """stdin as strict UTF-8 text, whatever the locale: bytes that are not UTF-8 are an error,
    never text with stand-in characters that fail later."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="strict", newline="")
