"""Worked example: a registry model with a user class, converted with a converter plugin.

1. train ``ColumnDropper -> StandardScaler -> LogisticRegression`` and save it with joblib;
2. ``apo convert`` refuses it: the pickle names a class outside the allowlist;
3. ``apo convert --trust column_dropper.ColumnDropper --plugin column_dropper_onnx`` loads it, runs
   the plugin's converter and checks parity against scikit-learn.

Usage::

    python examples/custom_converter/run_example.py [--out DIR]

Exits 0 when the refusal and the conversion behave as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from column_dropper import ColumnDropper  # this folder is on sys.path when run as a script
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def train(registry: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 5)), columns=["a", "b", "c", "row_id", "d"])
    frame["row_id"] = np.arange(400.0)  # a leaky column the author drops inside the pipeline
    target = (frame["a"] - frame["c"] > 0).astype(int)
    model = make_pipeline(ColumnDropper(drop=("row_id",)), StandardScaler(), LogisticRegression())
    model.fit(frame, target)
    registry.mkdir(parents=True, exist_ok=True)
    path = registry / "dropper_logreg.joblib"
    joblib.dump(model, path)
    return path


def apo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "alphapulse_onnx", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temp dir).")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        registry = (args.out or Path(scratch)) / "registry"
        train(registry)

        refused = apo("convert", str(registry), "--json")
        manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
        error = manifest["models"][0]["error"] or ""
        print(f"without --trust: exit {refused.returncode}: {error}")
        if refused.returncode != 1 or "column_dropper.ColumnDropper" not in error:
            return 1

        done = apo(
            "convert",
            str(registry),
            "--trust",
            "column_dropper.ColumnDropper",
            "--plugin",
            "column_dropper_onnx",
            "--json",
            "--force",
        )
        entry = json.loads((registry / "onnx" / "manifest.json").read_text())["models"][0]
        validation = entry.get("validation") or {}
        print(
            f"with --trust and --plugin: exit {done.returncode}: {entry['status']}; "
            f"{validation.get('rows')} probe rows, label agreement "
            f"{validation.get('label_agreement')}, max |dp| {validation.get('max_abs_diff')}"
        )
        if done.returncode != 0 or entry["status"] != "ok":
            print(done.stderr, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
