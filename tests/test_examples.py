"""The examples are documentation that runs: each must work as a newcomer would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example") / "models"
    _run("examples/train_registry.py", "--out", str(out))
    return out


def test_train_registry_rebuilds_the_shipped_registry(trained: Path) -> None:
    built = sorted(p.relative_to(trained).as_posix() for p in trained.rglob("*") if p.is_file())
    shipped = sorted(
        p.relative_to(ROOT / "models").as_posix()
        for p in (ROOT / "models").rglob("*")
        if p.is_file() and "onnx" not in p.relative_to(ROOT / "models").parts
    )
    assert built == shipped


def test_serve_patterns_scores_every_symbol_through_the_batch_predictor(trained: Path) -> None:
    _run("-m", "alphapulse_onnx", "convert", str(trained))
    done = _run("examples/serve_patterns.py", "--store", str(trained / "onnx"),
                "--bars", "60", "--rounds", "1")  # fmt: skip
    for symbol in ("BTCUSDT", "ETHUSDT", "ADAUSDT"):
        assert symbol in done.stdout
    assert "onnxruntime" in done.stdout
