"""Never a silent wrong answer: rows holding NaN, +-inf or huge values, compared with
scikit-learn row by row on each family of the example models, through ``Store``, the
scikit-learn fallback and ``apo predict``.

Each row either gets scikit-learn's answer, or is refused (``InvalidInputError`` naming its row
and column, exit 2): where scikit-learn refuses it, or, for values beyond float32 range, where a
float32 artifact cannot hold them or its arithmetic overflows. Never a different answer.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from alphapulse_onnx import BatchPredictor, Store, loading
from alphapulse_onnx.cli import app
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.errors import InvalidInputError
from alphapulse_onnx.input_contract import FLOAT32_MAX
from alphapulse_onnx.manifest import ManifestEntry

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
VALUES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "1e300": 1e300, "-3e38": -3.0e38,
          "3.3e38": 3.3e38}  # fmt: skip


def _convert(root: Path) -> Path:
    options = ConvertOptions(registry=root, jobs=1)
    entries = [e for e in convert_run(options) if isinstance(e, ManifestEntry)]
    assert all(e.ok for e in entries), [e.error for e in entries if not e.ok]
    return options.out_dir


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example registry (five families), converted afresh."""
    root = tmp_path_factory.mktemp("examples") / "models"
    shutil.copytree(ROOT / "models", root, ignore=shutil.ignore_patterns("onnx"))
    _convert(root)
    return root


def _sklearn(model: Any, row: pd.DataFrame) -> Any:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            proba = model.predict_proba(row) if hasattr(model, "predict_proba") else None
            return model.predict(row), proba
    except ValueError:
        return None


def _hostile(examples: Path, names: list[str], value: float, seed: int) -> np.ndarray:
    frame = pd.read_csv(examples / "sample_features.csv")[names].head(20)
    rows: np.ndarray = np.array(frame.to_numpy(float), copy=True)
    rng = np.random.default_rng(seed)
    for i in range(len(rows)):
        rows[i, rng.integers(len(names))] = value
    return rows


def _compare(examples: Path, store: Store) -> dict[str, int]:
    """Every model, every kind of value, row by row; returns how each row ended."""
    seen = {"agree": 0, "both refuse": 0, "apo refuses": 0}
    for entry in store.manifest.models:
        model = loading.load(examples / entry.source.path).estimator
        names = list(entry.feature_names or ())
        for seed, (kind, value) in enumerate(VALUES.items()):
            for i, row in enumerate(_hostile(examples, names, value, seed)):
                frame = pd.DataFrame([row], columns=names)
                expected = _sklearn(model, frame)
                where = f"{entry.name} {kind} row {i}"
                refused: InvalidInputError | None = None
                try:
                    labels = store.predict(entry.name, frame)
                    with_proba = expected is not None and expected[1] is not None
                    proba = store.predict_proba(entry.name, frame) if with_proba else None
                except InvalidInputError as exc:
                    refused = exc
                if refused is not None:
                    assert refused.row == 0, refused
                    if expected is None:
                        seen["both refuse"] += 1
                        assert refused.column in names, refused  # the column of the bad cell
                    else:
                        # scikit-learn answers; apo may refuse only what float32 cannot hold.
                        assert abs(value) > FLOAT32_MAX or "overflow" in str(refused), (
                            f"{where}: refused but scikit-learn answers: {refused}"
                        )
                        seen["apo refuses"] += 1
                    continue
                assert expected is not None, f"{where}: apo answered {labels}, scikit-learn refuses"
                if labels.dtype.kind == "f":
                    np.testing.assert_allclose(labels, expected[0], rtol=1e-4, err_msg=where)
                else:
                    np.testing.assert_array_equal(labels, expected[0], err_msg=where)
                if proba is not None:
                    np.testing.assert_allclose(proba, expected[1], atol=1e-4, err_msg=where)
                seen["agree"] += 1
    return seen


def test_hostile_values_get_sklearns_answer_or_a_refusal(examples: Path) -> None:
    seen = _compare(examples, Store.open(examples / "onnx"))
    # 5 models x 6 kinds x 20 rows; the forest and the imputing pipeline answer NaN rows, all
    # five answer -3e38 (within float32 range).
    assert sum(seen.values()) == 5 * 6 * 20
    assert seen["agree"] >= 2 * 20 + 5 * 20 and seen["both refuse"] > 0, seen


def test_the_sklearn_fallback_refuses_the_same_rows(examples: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(examples, copy)
    for artifact in (copy / "onnx").rglob("*.onnx"):
        artifact.unlink()  # every model served by scikit-learn now
    store = Store.open(copy / "onnx")
    seen = _compare(copy, store)
    assert seen["apo refuses"] == 0, seen  # scikit-learn's own answers: nothing more refused
    assert all(store[e.name].engine == "sklearn" for e in store.manifest.models)


def test_contracts_are_recorded_and_proven(examples: Path) -> None:
    raw = json.loads((examples / "onnx" / "manifest.json").read_text())
    contracts = {m["name"]: m["input_contract"] for m in raw["models"]}
    for name in ("reversal_rf", "breakout_pipeline"):  # a forest, an imputing pipeline
        assert contracts[name]["nan"] is True
        assert contracts[name]["proven"]["nan"] > 0  # probes held missing values, parity passed
    for name in ("continuation_logreg", "breakout_mlp", "volatility_gbr"):
        assert contracts[name]["nan"] is False
        assert "scikit-learn refuses" in contracts[name]["reasons"]["nan"]
    for contract in contracts.values():
        assert contract["inf"] is False
        assert contract["max_abs"] == pytest.approx(FLOAT32_MAX)  # float32 artifacts


def test_batch_predictor_refuses_a_nan_row_for_its_caller_only(examples: Path) -> None:
    import asyncio

    entry = Store.open(examples / "onnx").manifest.entry("continuation_logreg")
    names = list(entry.feature_names or ())
    good = pd.read_csv(examples / "sample_features.csv")[names].head(4)
    bad = good.copy()
    bad.iloc[2, 5] = np.nan

    async def main() -> Any:
        async with BatchPredictor(Store.open(examples / "onnx")) as bp:
            return await asyncio.gather(bp.predict("continuation_logreg", good),
                                        bp.predict("continuation_logreg", bad),
                                        return_exceptions=True)  # fmt: skip

    ok, refused = asyncio.run(main())
    assert isinstance(ok, np.ndarray) and len(ok) == 4
    assert isinstance(refused, InvalidInputError)
    assert refused.row == 2 and refused.column == names[5]


def _nan_forest(tmp_path: Path, estimator: Any) -> tuple[Any, np.ndarray, Path]:
    """A tree model fit where missing values mean something: learned to go left or right."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] > 0).astype(int)
    holes = rng.random(X.shape) < 0.2
    X[holes] = np.nan
    y[np.isnan(X[:, 0])] = 0  # missing in feature 0 means class 0 (x0 <= 0: the left branch)
    y[np.isnan(X[:, 1]) & ~np.isnan(X[:, 0])] = 1  # and missing in feature 1, class 1
    model = estimator.fit(X, y)
    root = tmp_path / "nan_trees"
    root.mkdir()
    joblib.dump(model, root / "m.joblib")
    test = rng.normal(size=(400, 4))
    test[rng.random(test.shape) < 0.3] = np.nan
    return model, test, _convert(root)


@pytest.mark.parametrize(
    "estimator",
    [RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
     DecisionTreeClassifier(max_depth=6, random_state=0)],
    ids=["forest", "tree"],
)  # fmt: skip
def test_trees_route_missing_values_as_learned(tmp_path: Path, estimator: Any) -> None:
    model, test, out = _nan_forest(tmp_path, estimator)
    store = Store.open(out)
    entry = store.manifest.entry("m")
    assert entry.input_contract is not None and entry.input_contract.default.nan
    np.testing.assert_array_equal(store.predict("m", test), model.predict(test))
    np.testing.assert_allclose(store.predict_proba("m", test), model.predict_proba(test),
                               atol=1e-5)  # fmt: skip
    # The learned directions reached the artifact: every split scikit-learn sends NaN left
    # down sends it down ONNX's true branch, where skl2onnx alone sends none of them.
    graph = onnx.load(str(out / "m.onnx")).graph
    flags = [v for n in graph.node for a in n.attribute
             if a.name == "nodes_missing_value_tracks_true" for v in a.ints]  # fmt: skip
    trees = [e.tree_ for e in getattr(model, "estimators_", [model])]
    left = sum(int(t.missing_go_to_left[t.feature >= 0].sum()) for t in trees)
    assert left > 0
    assert sum(flags) == left


def _cli_rows(
    examples: Path, tmp_path: Path, name: str, edits: dict[tuple[int, int], float]
) -> Path:
    store = Store.open(examples / "onnx")
    names = list(store.manifest.entry(name).feature_names or ())
    frame = pd.read_csv(examples / "sample_features.csv")[names].head(8)
    for (i, j), value in edits.items():
        frame.iloc[i, j] = value
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def test_cli_refuses_a_nan_row_naming_row_and_column(examples: Path, tmp_path: Path) -> None:
    rows = _cli_rows(examples, tmp_path, "continuation_logreg", {(3, 1): np.nan})
    result = runner.invoke(app, ["predict", "--store", str(examples / "onnx"),
                                 "continuation_logreg", str(rows)])  # fmt: skip
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "row 4" in line and "log_ret_3" in line and "missing value" in line


@pytest.mark.parametrize("mode", ["skip", "null"])
def test_invalid_rows_are_skipped_or_left_empty_and_counted(
    examples: Path, tmp_path: Path, mode: str
) -> None:
    # NaN and inf (refused by scikit-learn), 3.3e38 (the float32 network overflows on it).
    edits = {(1, 2): np.nan, (4, 0): np.inf, (6, 5): 3.3e38}
    rows = _cli_rows(examples, tmp_path, "breakout_mlp", edits)
    out = tmp_path / f"out-{mode}.csv"
    store = str(examples / "onnx")
    args = [str(rows), "-o", str(out), "--invalid-rows", mode, "--json"]
    result = runner.invoke(app, ["predict", "--store", store, "breakout_mlp", *args])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["invalid"] == 3 and summary["invalid_rows"] == mode
    assert "RuntimeWarning" not in result.stderr  # numpy's overflow warnings never leak
    written = pd.read_csv(out)
    model = loading.load(examples / "regime" / "breakout_mlp.pkl").estimator
    good = pd.read_csv(rows).drop(index=[1, 4, 6])
    expected = model.predict(good)
    if mode == "skip":
        assert len(written) == 5
        np.testing.assert_array_equal(written["label"], expected)
    else:
        assert len(written) == 8
        assert written["label"].isna().sum() == 3
        assert written.loc[[1, 4, 6], "label"].isna().all()
        np.testing.assert_array_equal(written["label"].dropna(), expected)


def test_invalid_rows_takes_only_its_three_words(examples: Path, tmp_path: Path) -> None:
    rows = _cli_rows(examples, tmp_path, "continuation_logreg", {})
    store = str(examples / "onnx")
    args = [str(rows), "--invalid-rows", "drop"]
    result = runner.invoke(app, ["predict", "--store", store, "continuation_logreg", *args])
    assert result.exit_code == 2
    assert "error" in result.stderr and "skip" in result.stderr and "null" in result.stderr
