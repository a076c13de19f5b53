"""Rows of features from data files, and prediction tables back out to them.

For ``apo convert --sample``: ``read_sample`` reads a whole ``.npy`` or ``.csv`` (with or without a
header of names). For ``apo predict``: ``open_table`` streams ``.csv`` (with or without a header),
``.npy`` (memory-mapped), ``.parquet`` (needs pyarrow, the ``[parquet]`` extra) and ``.jsonl`` (an
object or an array a line), or CSV/JSONL on stdin (``-``), in chunks of rows; ``open_writer``
writes ``.csv`` (also to stdout), ``.jsonl``, ``.npy`` (a structured array, one field per column)
and ``.parquet`` chunk by chunk, atomically for files. Memory is bounded by the chunk size.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from alphapulse_onnx.errors import DataFileError, first_line


def _looks_like_header(cells: list[str]) -> bool:
    for cell in cells:
        if not _is_number(cell):
            return bool(cell.strip())
    return False


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
    header = [c.strip() for c in rows[0]] if _looks_like_header(rows[0]) else None
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


# --------------------------------------------------------------------------- streaming input

INPUT_SUFFIXES = (".csv", ".npy", ".parquet", ".jsonl")
OUTPUT_SUFFIXES = (".csv", ".jsonl", ".npy", ".parquet")
STDIN = "-"
PARQUET_HINT = "install the [parquet] extra: pip install 'alphapulse-onnx[parquet]'"


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of an input: a DataFrame (named or numbered columns) or a 2-D array."""

    rows: Any
    first_row: int  # 0-based position of its first row among the file's data rows


class TableReader(Protocol):
    path: str
    total_rows: int | None  # known up front for .npy and .parquet

    def __iter__(self) -> Iterator[Chunk]: ...


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataFileError("Parquet needs pyarrow", hint=PARQUET_HINT) from None
    return pyarrow


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


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_has_header(cells: list[str], feature_names: Sequence[str] | None) -> bool:
    """A header names model features, or (numeric models) has a cell that is not a number."""
    stripped = [c.strip() for c in cells]
    if feature_names and set(stripped) & set(feature_names):
        return True
    if feature_names:
        return all(c and not _is_number(c) for c in stripped)
    return _looks_like_header(stripped)


class CsvReader:
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
    def __init__(self, path: Path, *, chunk_size: int) -> None:
        pa = _pyarrow()
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
    if name == STDIN:
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
    suffix = _suffix(name)
    if suffix not in INPUT_SUFFIXES:
        raise DataFileError(
            f"unsupported input type {suffix or '(none)'!r}; use {', '.join(INPUT_SUFFIXES)} or - "
            "for stdin",
            path=path,
        )
    if not path.is_file():
        raise DataFileError("no such file", path=path)
    if suffix == ".npy":
        yield NpyReader(path, chunk_size=chunk_size)
        return
    if suffix == ".parquet":
        yield ParquetReader(path, chunk_size=chunk_size)
        return
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataFileError(f"cannot read: {exc.strerror}", path=path) from None
    with handle:
        if suffix == ".jsonl":
            yield JsonlReader(str(path), handle, chunk_size=chunk_size)
        else:
            yield CsvReader(str(path), handle, chunk_size=chunk_size, feature_names=feature_names)


# -------------------------------------------------------------------------- streaming output


class _AtomicFile:
    """A temp file beside ``target`` that replaces it on commit (streaming atomic_write_bytes)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        with self.tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self.tmp, 0o666 & ~mask)
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class TableWriter(Protocol):
    def write(self, columns: dict[str, np.ndarray]) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, handle: IO[str], names: Sequence[str]) -> None:
        self._handle = handle
        self._names = list(names)
        self._header = True

    def write(self, columns: dict[str, np.ndarray]) -> None:
        import pandas as pd

        pd.DataFrame(columns, copy=False).to_csv(
            self._handle, header=self._header, index=False, lineterminator="\n"
        )
        self._header = False

    def close(self) -> None:
        if self._header:  # no rows at all: still write the header
            self._handle.write(",".join(self._names) + "\n")
        self._handle.flush()


class JsonlWriter:
    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def write(self, columns: dict[str, np.ndarray]) -> None:
        keys = list(columns)
        values = [np.asarray(c).tolist() for c in columns.values()]
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

    def write(self, columns: dict[str, np.ndarray]) -> None:
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
    def __init__(self, path: Path, schema: Sequence[tuple[str, Any]]) -> None:
        self._pa = _pyarrow()
        self._path = path
        self._schema = schema
        self._writer: Any = None

    def write(self, columns: dict[str, np.ndarray]) -> None:
        pa = self._pa
        table = pa.table({k: pa.array(np.asarray(v)) for k, v in columns.items()})
        if self._writer is None:
            self._writer = pa.parquet.ParquetWriter(self._path, table.schema)
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


def output_format(target: str | Path | None) -> str:
    """``csv``/``jsonl``/``npy``/``parquet`` from the output's suffix (stdout: csv)."""
    if target is None or str(target) == STDIN:
        return "csv"
    suffix = _suffix(str(target))
    if suffix not in OUTPUT_SUFFIXES:
        raise DataFileError(
            f"unsupported output type {suffix or '(none)'!r}; use {', '.join(OUTPUT_SUFFIXES)}",
            path=target,
        )
    if suffix == ".parquet":
        _pyarrow()
    return suffix[1:]


@contextlib.contextmanager
def open_writer(
    target: str | Path | None, schema: Sequence[tuple[str, Any]], *, stdout: IO[str] | None = None
) -> Iterator[TableWriter]:
    """Write tables of ``schema`` (column name, numpy dtype) to ``target`` (``None``/``-``: stdout).

    A file appears only when everything was written (temp file + rename); on error it is untouched.
    """
    fmt = output_format(target)
    names = [name for name, _ in schema]
    if target is None or str(target) == STDIN:
        writer = CsvWriter(stdout if stdout is not None else sys.stdout, names)
        yield writer
        writer.close()
        return
    atomic = _AtomicFile(Path(target))
    try:
        if fmt == "parquet":
            writer_p = ParquetWriter(atomic.tmp, schema)
            yield writer_p
            writer_p.close()
        elif fmt == "npy":
            with atomic.tmp.open("wb") as binary:
                writer_n = NpyWriter(binary, schema)
                yield writer_n
                writer_n.close()
        else:
            with atomic.tmp.open("w", encoding="utf-8", newline="") as text:
                if fmt == "csv":
                    writer_c = CsvWriter(text, names)
                    yield writer_c
                    writer_c.close()
                else:
                    writer_j = JsonlWriter(text)
                    yield writer_j
                    writer_j.close()
    except BaseException:
        atomic.abort()
        raise
    atomic.commit()
