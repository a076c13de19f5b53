"""BatchPredictor: hundreds of concurrent callers each get their own rows; bad ones fail alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from alphapulse_onnx import BatchPredictor, Store
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.errors import InputError, InvalidInputError


@pytest.fixture(scope="module")
def models(iris: Any, diabetes: Any) -> dict[str, Any]:
    Xi, yi = iris
    Xd, yd = diabetes
    labels = np.array(["setosa", "versicolor", "virginica"])[yi]
    return {
        "forest": RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(Xi, yi),
        "words": LogisticRegression(max_iter=500).fit(Xi, labels),
        "gbr": GradientBoostingRegressor(n_estimators=10, random_state=0).fit(Xd, yd),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Any]) -> Store:
    root = tmp_path_factory.mktemp("batching") / "registry"
    root.mkdir()
    for name, model in models.items():
        joblib.dump(model, root / f"{name}.joblib")
    options = ConvertOptions(registry=root, jobs=1)
    list(convert_run(options))
    return Store.open(options.out_dir)


def _slice(X: np.ndarray, i: int) -> np.ndarray:
    start = (i * 7) % (len(X) - 5)
    return X[start : start + 1 + i % 5]  # 1 to 5 rows each, overlapping windows


def test_hundreds_of_callers_each_get_their_own_rows(
    store: Store, models: dict[str, Any], iris: Any, diabetes: Any
) -> None:
    Xi, Xd = iris[0], diabetes[0]

    async def main() -> tuple[list[Any], dict[str, Any]]:
        async with BatchPredictor(store, max_batch_size=64, max_delay_ms=5) as bp:

            async def caller(i: int) -> tuple[Any, ...]:
                rows = _slice(Xi, i)
                await asyncio.sleep(0.0005 * (i % 3))  # arrive at different times
                return (
                    await bp.predict("forest", rows),
                    await bp.predict_proba("words", rows),
                    await bp.predict("words", rows),
                    await bp.predict("gbr", _slice(Xd, i)),
                )

            results = await asyncio.gather(*(caller(i) for i in range(300)))
            return results, bp.stats()

    results, stats = asyncio.run(main())
    for i, (forest, proba, words, gbr) in enumerate(results):
        rows = _slice(Xi, i)
        np.testing.assert_array_equal(forest, models["forest"].predict(rows))
        np.testing.assert_allclose(proba, models["words"].predict_proba(rows), atol=1e-5)
        np.testing.assert_array_equal(words, models["words"].predict(rows))
        np.testing.assert_allclose(gbr, models["gbr"].predict(_slice(Xd, i)), rtol=1e-4)
        assert forest.shape == (len(rows),) and proba.shape == (len(rows), 3)
    forest_stats = stats["forest"]
    assert forest_stats["requests"] == 300
    assert forest_stats["batches"] < 300  # requests were really gathered
    assert 1 <= forest_stats["mean_batch_size"] <= 64
    assert forest_stats["latency_p99_ms"] >= forest_stats["latency_p50_ms"] > 0
    assert stats["words"]["requests"] == 600


def test_batches_never_exceed_max_batch_size(store: Store, iris: Any) -> None:
    async def main() -> dict[str, Any]:
        async with BatchPredictor(store, max_batch_size=8, max_delay_ms=50) as bp:
            await asyncio.gather(*(bp.predict("forest", iris[0][i : i + 3]) for i in range(40)))
            return bp.stats()["forest"]

    stats = asyncio.run(main())
    assert stats["rows"] == 120
    assert stats["mean_batch_size"] <= 8
    assert stats["batches"] >= 120 / 8


def test_a_bad_caller_fails_alone(store: Store, models: dict[str, Any], iris: Any) -> None:
    X = iris[0]

    async def main() -> list[Any]:
        async with BatchPredictor(store, max_batch_size=256, max_delay_ms=5) as bp:
            bad = {
                10: bp.predict("forest", [[1.0, 2.0]]),  # wrong width
                20: bp.predict("forest", [[1.0, "x", 3.0, 4.0]]),  # not a number
                30: bp.predict_proba("gbr", X[:2]),  # a regressor has no probabilities
                40: bp.predict("nope", X[:2]),  # no such model
            }
            calls = [bad.get(i) or bp.predict("forest", X[i : i + 2]) for i in range(50)]
            results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
            return results

    results = asyncio.run(main())
    assert isinstance(results[10], InvalidInputError) and "4 features" in str(results[10])
    assert isinstance(results[20], InvalidInputError) and "'x' is not a number" in str(results[20])
    assert isinstance(results[30], InputError)
    assert isinstance(results[40], KeyError)
    for i, result in enumerate(results):
        if i not in (10, 20, 30, 40):
            np.testing.assert_array_equal(result, models["forest"].predict(X[i : i + 2]))


def test_stop_drains_pending_requests(store: Store, models: dict[str, Any], iris: Any) -> None:
    X = iris[0]

    async def main() -> tuple[list[np.ndarray], BatchPredictor]:
        bp = BatchPredictor(store, max_batch_size=4, max_delay_ms=200)
        await bp.start()
        tasks = [asyncio.ensure_future(bp.predict("forest", X[i : i + 1])) for i in range(30)]
        await asyncio.sleep(0)  # the requests are queued, most not yet run
        await bp.stop()
        assert all(t.done() for t in tasks)
        return [t.result() for t in tasks], bp

    results, bp = asyncio.run(main())
    np.testing.assert_array_equal(np.concatenate(results), models["forest"].predict(X[:30]))

    async def after_stop() -> None:
        await bp.predict("forest", X[:1])

    with pytest.raises(RuntimeError, match="stopped"):
        asyncio.run(after_stop())


def test_sklearn_fallback_is_batched_too(
    tmp_path: Path, models: dict[str, Any], store: Store, iris: Any
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    (copy / "onnx" / "words.onnx").unlink()
    fallback = Store.open(copy / "onnx")
    X = iris[0]

    async def main() -> list[np.ndarray]:
        async with BatchPredictor(fallback, max_batch_size=32) as bp:
            return await asyncio.gather(
                *(bp.predict_proba("words", X[i : i + 3]) for i in range(0, 147, 3))
            )

    results = asyncio.run(main())
    assert fallback["words"].engine == "sklearn"
    np.testing.assert_array_equal(np.concatenate(results), models["words"].predict_proba(X[:147]))


def test_bad_settings_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchPredictor(store, max_batch_size=0)
    with pytest.raises(ValueError, match="max_delay_ms"):
        BatchPredictor(store, max_delay_ms=-1)


def test_serve_patterns_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/serve_patterns.py on a small pattern registry of its own features."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    from ohlcv_features import engineer_features, generate_ohlcv  # type: ignore[import-not-found]
    from serve_patterns import main  # type: ignore[import-not-found]

    features = engineer_features(generate_ohlcv("BTCUSDT", 400, 3))
    direction = np.where(features["log_ret_3"] > 0, "up", "down")
    root = tmp_path / "patterns"
    root.mkdir()
    joblib.dump(LogisticRegression(max_iter=300).fit(features, direction), root / "trend.joblib")
    joblib.dump(
        GradientBoostingRegressor(n_estimators=5).fit(features, features["volatility_24"]),
        root / "vol.joblib",
    )
    options = ConvertOptions(registry=root, jobs=1)
    list(convert_run(options))
    assert main(["--store", str(options.out_dir), "--rounds", "2", "--bars", "200"]) == 0
    out = capsys.readouterr().out
    for symbol in ("BTCUSDT", "ETHUSDT", "ADAUSDT"):
        assert out.count(symbol) == 4  # 2 models x 2 bars
    assert out.count("onnxruntime") >= 12 and "all 6 requests answered" in out
    assert "trend" in out and "mean batch" in out
