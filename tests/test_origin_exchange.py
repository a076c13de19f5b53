"""The exchange format between apo and the origin worker: what goes in comes out, no pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphapulse_onnx.origin import exchange

ODD_NAMES = ["price ($)", "a/b\\c", "ünï cødé", "", "0", "__meta__", "1.values", 'quo"te\n']


def test_numeric_arrays_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    X[3, 1] = np.nan
    arrays = {
        "X": X,
        "counts": np.arange(7, dtype=np.int64),
        "flags": np.array([True, False, True]),
        "single": rng.normal(size=(5, 2)).astype(np.float32),
    }
    exchange.save(tmp_path / "rows.npz", arrays, {"layout": "matrix", "names": None})
    back, meta = exchange.load(tmp_path / "rows.npz")
    assert meta == {"layout": "matrix", "names": None}
    assert list(back) == list(arrays)
    for name, values in arrays.items():
        assert back[name].dtype == values.dtype
        np.testing.assert_array_equal(back[name], values)


def test_text_with_missing_cells_round_trips_with_none_in_the_gaps(tmp_path: Path) -> None:
    town = np.array(["oslo", None, "", np.nan, pd.NA, "zürich"], dtype=object)
    exchange.save(tmp_path / "rows.npz", {"town": town, "label": np.array(["up", "down"])})
    back, _ = exchange.load(tmp_path / "rows.npz")
    assert back["town"].dtype == object
    assert back["town"].tolist() == ["oslo", None, "", None, None, "zürich"]
    assert back["label"].tolist() == ["up", "down"]


def test_column_names_with_any_characters_come_back(tmp_path: Path) -> None:
    arrays = {name: np.arange(3, dtype=np.float64) + i for i, name in enumerate(ODD_NAMES)}
    exchange.save(tmp_path / "rows.npz", arrays)
    back, _ = exchange.load(tmp_path / "rows.npz")
    assert list(back) == ODD_NAMES
    for name, values in arrays.items():
        np.testing.assert_array_equal(back[name], values)


def test_object_arrays_of_numbers_travel_as_numbers(tmp_path: Path) -> None:
    exchange.save(
        tmp_path / "rows.npz",
        {"ints": np.array([1, 2, 3], dtype=object), "gaps": np.array([1.5, None], dtype=object)},
    )
    back, _ = exchange.load(tmp_path / "rows.npz")
    assert back["ints"].dtype == np.int64 and back["ints"].tolist() == [1, 2, 3]
    assert back["gaps"].dtype == np.float64 and np.isnan(back["gaps"][1])


def test_the_file_holds_no_pickle(tmp_path: Path) -> None:
    path = tmp_path / "rows.npz"
    exchange.save(path, {"town": np.array(["a", None], dtype=object)}, {"k": [1, "v"]})
    with np.load(path, allow_pickle=False) as data:  # raises on any pickled (object) array
        assert all(data[key].dtype != object for key in data.files)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array(["a", 1], dtype=object), "mixes values of types int, str"),
        (np.array([b"raw"], dtype=object), "mixes values of types bytes"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "cannot be exchanged"),
    ],
)
def test_what_cannot_travel_faithfully_is_refused(
    tmp_path: Path, values: np.ndarray, message: str
) -> None:
    with pytest.raises(exchange.ExchangeError, match=message):
        exchange.save(tmp_path / "rows.npz", {"column": values})


def test_a_file_in_another_format_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", X=np.zeros(3))
    with pytest.raises(exchange.ExchangeError, match="not an exchange file"):
        exchange.load(tmp_path / "other.npz")
