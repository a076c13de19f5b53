"""Property tests: whatever bytes or cells arrive, apo answers with its own one-line errors.

The loader gets random bytes, pickle-looking bytes and mutations of a real model file; it may load
a model (a mutated coefficient is still a model) or raise ``ModelLoadError``, and nothing else:
no other exception, and nothing written. The data readers get random cells and random bytes and
may only return rows or raise ``DataFileError``.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import tempfile
import zlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from alphapulse_onnx import loading
from alphapulse_onnx.datafiles.samples import read_csv_matrix, read_sample
from alphapulse_onnx.errors import DataFileError, ModelLoadError

FUZZ = settings(
    max_examples=int(os.environ.get("APO_FUZZ_EXAMPLES", "100")),  # raise it for a long hunt
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.too_slow],
)


def _model_bytes() -> tuple[bytes, bytes]:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X[:, :2], y)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return pickle.dumps(model, protocol=2), buffer.getvalue()


PICKLED, JOBLIBBED = _model_bytes()


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 64))]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


MODEL_BYTES = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=256).map(lambda b: b"\x80\x04\x95" + b),  # a pickle header, then noise
    st.binary(max_size=256).map(lambda b: b"\x78\x9c" + b),  # a zlib header, then noise
    st.binary(max_size=256).map(lambda b: b"ZF" + b),  # joblib's old zlib prefix
    st.binary(max_size=256).map(lambda b: zlib.compress(b"\x80\x04" + b)),
    mutated(PICKLED),
    mutated(JOBLIBBED),
)


@FUZZ
@given(data=MODEL_BYTES, suffix=st.sampled_from([".joblib", ".pkl"]))
def test_loader_only_raises_model_load_errors(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(data)
        try:
            loaded = loading.load(path)
        except ModelLoadError as exc:
            message = str(exc)
            assert "\n" not in message
            assert message.startswith(str(path))
        else:
            assert hasattr(loaded.estimator, "predict")
        assert sorted(p.name for p in Path(folder).iterdir()) == [path.name]  # nothing written


CELL = st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "0x10", "1_000", "\x00", '"', ","]),
)


def _check_rows(result: tuple[np.ndarray, list[str] | None]) -> None:
    X, header = result
    assert X.ndim == 2
    assert X.dtype == np.float64
    if header is not None:
        assert len(header) == X.shape[1]


def _rows_or_one_line_error(reader: Any, path: Path) -> None:
    try:
        result = reader(path)
    except DataFileError as exc:
        message = str(exc)
        assert "\n" not in message
        return
    _check_rows(result)


@FUZZ
@given(rows=st.lists(st.lists(CELL, min_size=1, max_size=5), max_size=6))
def test_csv_readers_only_raise_data_file_errors(rows: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.csv"
        with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as handle:
            csv.writer(handle).writerows(rows)
        for reader in (read_csv_matrix, read_sample):
            _rows_or_one_line_error(reader, path)


@FUZZ
@given(data=st.binary(max_size=1024), suffix=st.sampled_from([".csv", ".npy"]))
def test_sample_reader_on_random_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sample{suffix}"
        path.write_bytes(data)
        _rows_or_one_line_error(read_sample, path)


@pytest.mark.parametrize("payload", [PICKLED, JOBLIBBED])
def test_the_unmutated_seed_files_load(tmp_path: Path, payload: Any) -> None:
    # The mutation strategy starts from files that load: a failure above is the mutation's doing.
    path = tmp_path / "model.joblib"
    path.write_bytes(payload)
    assert loading.load(path).estimator_type.endswith("LogisticRegression")
