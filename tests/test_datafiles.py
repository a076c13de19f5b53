"""Data files: streaming readers and writers for apo predict, and the sample reader for convert."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphapulse_onnx.datafiles import readers, samples, writers
from alphapulse_onnx.errors import DataFileError

NAMES = ("a", "b", "c")


def _rows(source: str | Path, **kwargs: object) -> list[readers.Chunk]:
    with readers.open_table(source, **kwargs) as reader:  # type: ignore[arg-type]
        return list(reader)


def _frame(chunks: list[readers.Chunk]) -> np.ndarray:
    return np.concatenate([np.asarray(c.rows, dtype=np.float64) for c in chunks])


def test_csv_with_header_streams_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    data = np.arange(30, dtype=np.float64).reshape(10, 3)
    pd.DataFrame(data, columns=list(NAMES)).to_csv(path, index=False)
    chunks = _rows(path, chunk_size=4, feature_names=NAMES)
    assert [len(c.rows) for c in chunks] == [4, 4, 2]
    assert [c.first_row for c in chunks] == [0, 4, 8]
    assert list(chunks[0].rows.columns) == list(NAMES)
    np.testing.assert_array_equal(_frame(chunks), data)


def test_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("1,2,3\n\n4,5,6\n")
    chunks = _rows(path, chunk_size=10, feature_names=NAMES)
    assert list(chunks[0].rows.columns) == [0, 1, 2]
    np.testing.assert_array_equal(_frame(chunks), [[1, 2, 3], [4, 5, 6]])


def test_csv_header_told_apart_from_text_data(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("red,1.5\nblue,2.5\n")  # a text column, no header: first row is data
    chunks = _rows(path, feature_names=("color", "size"))
    assert len(chunks[0].rows) == 2
    path.write_text("size,color\n1.5,red\n")  # header in another order
    chunks = _rows(path, feature_names=("color", "size"))
    assert list(chunks[0].rows.columns) == ["size", "color"]


def test_csv_on_stdin() -> None:
    stream = io.StringIO("a,b,c\n1,2,3\n4,5,6\n")
    chunks = _rows("-", stdin=stream, feature_names=NAMES)
    np.testing.assert_array_equal(_frame(chunks), [[1, 2, 3], [4, 5, 6]])


def test_jsonl_on_stdin_objects_and_arrays() -> None:
    objects = io.StringIO('{"a": 1, "b": 2, "c": 3}\n\n{"c": 6, "a": 4, "b": 5}\n')
    chunks = _rows("-", stdin=objects)
    assert list(chunks[0].rows.columns) == list(NAMES)
    np.testing.assert_array_equal(_frame(chunks), [[1, 2, 3], [4, 5, 6]])
    arrays = io.StringIO("[1, 2, 3]\n[4, 5, 6]\n")
    np.testing.assert_array_equal(_frame(_rows("-", stdin=arrays)), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n{"b": 2}\n', "line 2: keys differ.*missing: a; extra: b"),
        ("[1, 2]\n[1, 2, 3]\n", "line 2: 3 values, the first row has 2"),
        ("[1, 2]\nnot json\n", "line 2: not valid JSON"),
        ('[1, 2]\n{"a": 1}\n', "line 2: an object among arrays"),
        ("3\n", "line 1: expected an object or an array, got int"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(text)
    with pytest.raises(DataFileError, match=message):
        _rows(path)


def test_npy_is_memory_mapped_and_chunked(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(25, 3))
    np.save(tmp_path / "x.npy", data)
    with readers.open_table(tmp_path / "x.npy", chunk_size=10) as reader:
        assert reader.total_rows == 25
        chunks = list(reader)
    assert [len(c.rows) for c in chunks] == [10, 10, 5]
    assert all(isinstance(c.rows, np.ndarray) and not isinstance(c.rows, np.memmap) for c in chunks)
    np.testing.assert_array_equal(_frame(chunks), data)


def test_npy_must_be_2d(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(DataFileError, match="expected a 2-D array"):
        _rows(tmp_path / "x.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match=r"not a readable \.npy"):
        _rows(tmp_path / "o.npy")


def test_parquet_round_trip(tmp_path: Path) -> None:
    data = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    data.to_parquet(tmp_path / "x.parquet")
    with readers.open_table(tmp_path / "x.parquet", chunk_size=2) as reader:
        assert reader.total_rows == 3
        chunks = list(reader)
    assert [len(c.rows) for c in chunks] == [2, 1]
    assert pd.concat([c.rows for c in chunks]).b.tolist() == ["x", "y", "z"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow blocked for this test')\n")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    script = textwrap.dedent(
        f"""
        from alphapulse_onnx.datafiles import readers, writers
        from alphapulse_onnx.errors import DataFileError
        for call in (lambda: readers.open_table({str(tmp_path / "x.parquet")!r}).__enter__(),
                     lambda: writers.output_format("out.parquet")):
            try:
                call()
            except DataFileError as exc:
                print(exc)
        """
    )
    path = os.pathsep.join([str(tmp_path / "blocker"), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=60,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert all("[parquet]" in line and "pyarrow" in line for line in lines)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x.txt", "unsupported input type '.txt'"),
        ("missing.csv", "no such file"),
    ],
)
def test_input_errors(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "x.txt").write_text("1,2\n")
    with pytest.raises(DataFileError, match=message):
        _rows(tmp_path / source)


def test_malformed_csv_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(DataFileError, match="malformed CSV") as caught:
        _rows(path)
    assert "\n" not in str(caught.value)


SCHEMA = [("label", np.dtype("<U5")), ("proba_x", np.float64)]


def _table(n: int, offset: int = 0) -> dict[str, np.ndarray]:
    return {
        "label": np.array([("up", "down")[i % 2] for i in range(offset, offset + n)]),
        "proba_x": np.arange(offset, offset + n) / 10,
    }


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".npy", ".parquet"])
def test_writers_stream_chunks(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    with writers.open_writer(target, SCHEMA) as writer:
        writer.write(_table(3))
        writer.write(_table(2, offset=3))
    expected = pd.DataFrame(_table(5))
    if suffix == ".csv":
        got = pd.read_csv(target)
    elif suffix == ".jsonl":
        got = pd.DataFrame([json.loads(line) for line in target.read_text().splitlines()])
    elif suffix == ".npy":
        array = np.load(target)
        assert array.dtype.names == ("label", "proba_x")
        got = pd.DataFrame({name: array[name] for name in array.dtype.names})
    else:
        got = pd.read_parquet(target)
    assert got.label.tolist() == expected.label.tolist()
    np.testing.assert_array_equal(got.proba_x.to_numpy(), expected.proba_x.to_numpy())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".parquet"])
def test_writers_with_no_rows(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    with writers.open_writer(target, SCHEMA):
        pass
    if suffix == ".csv":
        assert target.read_text() == "label,proba_x\n"
    elif suffix == ".npy":
        assert np.load(target).shape == (0,)
    else:
        assert list(pd.read_parquet(target).columns) == ["label", "proba_x"]


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def write_then_fail() -> None:
        with writers.open_writer(target, SCHEMA) as writer:
            writer.write(_table(2))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_csv_to_stdout_stream() -> None:
    stream = io.StringIO()
    with writers.open_writer(None, SCHEMA, stdout=stream) as writer:
        writer.write(_table(2))
    assert stream.getvalue() == "label,proba_x\nup,0.0\ndown,0.1\n"


def test_unknown_output_suffix() -> None:
    with pytest.raises(DataFileError, match=r"unsupported output type '\.xlsx'"):
        writers.output_format("out.xlsx")


def test_read_sample_still_reads_csv_and_npy(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3,4\n")
    X, header = samples.read_sample(tmp_path / "s.csv")
    assert header == ["a", "b"] and X.tolist() == [[1, 2], [3, 4]]
    np.save(tmp_path / "s.npy", np.ones((2, 2)))
    assert samples.read_sample(tmp_path / "s.npy")[0].shape == (2, 2)
    assert samples.select_features(X, header, ("b", "a"), 2).tolist() == [[2, 1], [4, 3]]
