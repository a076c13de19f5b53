"""Benchmark one model of each family against scikit-learn: the table in docs/performance.md.

Builds a throw-away registry on synthetic data with 32 features (no real market data)::

    RandomForestClassifier(100 trees, depth 10)   GradientBoostingClassifier(100, depth 3)
    HistGradientBoostingClassifier()              LogisticRegression()
    StandardScaler + MLPClassifier((64, 32))

then runs ``apo convert`` and ``apo bench --fp16 --int8`` on it (the real command line, in a
subprocess) and prints the measured ratios as Markdown. Every figure is a ratio measured in that
one run on this machine.

Usage::

    python examples/bench_families.py [--out DIR] [--budget-s 0.5] [--batch-sizes 1,64,1024,16384]
                                      [--plot bench.png] [--quick]

``--quick`` trains tiny models and uses a tiny time budget (for smoke tests, not for numbers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

N_FEATURES = 32


def families(quick: bool) -> dict[str, Any]:
    scale = 10 if quick else 1
    return {
        "random_forest": RandomForestClassifier(
            n_estimators=100 // scale, max_depth=10, random_state=0, n_jobs=1
        ),
        "gradient_boosting": GradientBoostingClassifier(
            n_estimators=100 // scale, max_depth=3, random_state=0
        ),
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            max_iter=100 // scale, random_state=0
        ),
        "logistic_regression": LogisticRegression(max_iter=1000),
        "mlp": make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=200 // scale, random_state=0),
        ),
    }


def build_registry(root: Path, *, quick: bool) -> None:
    X, y = make_classification(
        n_samples=2_000 if quick else 20_000,
        n_features=N_FEATURES,
        n_informative=12,
        random_state=7,
    )
    root.mkdir(parents=True, exist_ok=True)
    for name, model in families(quick).items():
        started = time.perf_counter()
        model.fit(X, y)
        joblib.dump(model, root / f"{name}.joblib")
        print(f"trained {name} in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def apo(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "alphapulse_onnx", *args]
    print("$ apo " + " ".join(args), file=sys.stderr)
    return subprocess.run(command, capture_output=True, text=True, check=False)


def markdown(report: dict[str, Any]) -> str:
    """One line per model and batch size: scikit-learn, apo, bare ORT, variants, and the ratios."""
    lines = [
        "| model | batch | sklearn p50 ms | apo p50 ms | apo vs sklearn | apo / bare ORT "
        "| bare ORT (default settings) vs sklearn | fp16 vs sklearn | int8 vs sklearn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in report["models"]:
        by_size: dict[int, dict[str, dict[str, Any]]] = {}
        for r in model["results"]:
            key = r["engine"] if r["variant"] in ("-", "fp32") else r["variant"]
            if r["provider"] not in (None, "CPUExecutionProvider"):
                continue
            by_size.setdefault(r["batch_size"], {})[key] = r
        for size, rows in sorted(by_size.items()):
            sk, ours, bare = rows.get("sklearn"), rows.get("onnx"), rows.get("ort-bare")
            if not (sk and ours and bare):
                continue

            def ratio(row: dict[str, Any] | None) -> str:
                return "-" if row is None else f"{row['speedup_vs_sklearn']:.3g}x"

            lines.append(
                f"| {model['name']} | {size} | {sk['p50_ms']:.3g} | {ours['p50_ms']:.3g} "
                f"| {ratio(ours)} | {ours['p50_ms'] / bare['p50_ms']:.2f} | {ratio(bare)} "
                f"| {ratio(rows.get('fp16'))} | {ratio(rows.get('int8'))} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Keep the registry here.")
    parser.add_argument("--budget-s", default=None, help="apo bench --budget-s")
    parser.add_argument("--batch-sizes", default=None, help="apo bench --batch-sizes")
    parser.add_argument("--atol", default="0.01", help="variant tolerance (apo bench --atol)")
    parser.add_argument("--plot", default=None, help="apo bench --plot FILE.png")
    parser.add_argument("--quick", action="store_true", help="tiny models, tiny budget")
    parser.add_argument("--no-train", action="store_true", help="reuse the models already in --out")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apo-bench-") as tmp:
        root = args.out or Path(tmp) / "registry"
        if not (args.no_train and args.out):
            build_registry(root, quick=args.quick)
        converted = apo("convert", str(root), "--json")
        if converted.returncode != 0:
            print(converted.stdout + converted.stderr, file=sys.stderr)
            return converted.returncode
        budget = args.budget_s or ("0.02" if args.quick else "0.5")
        sizes = args.batch_sizes or ("1,64" if args.quick else "1,64,1024,16384")
        bench_args = [
            str(root / "onnx"),
            "--json",
            "--fp16",
            "--int8",
            "--providers",
            "cpu",
            "--budget-s",
            budget,
            "--batch-sizes",
            sizes,
            "--atol",
            args.atol,
        ]
        if args.plot:
            bench_args += ["--plot", args.plot]
        result = apo("bench", *bench_args)
        if result.stderr.strip():
            print(result.stderr.strip(), file=sys.stderr)
        if result.returncode != 0 or not result.stdout.strip():
            return result.returncode or 1
        report = json.loads(result.stdout)
    machine = report["machine"]
    print(
        f"Measured {machine['measured']} on {machine['cpu']} ({machine['cores']} cores), "
        f"onnxruntime {machine['versions']['onnxruntime']}, "
        f"scikit-learn {machine['versions']['scikit-learn']}, "
        f"load average {machine.get('load_average_1m')} at the start\n"
    )
    print(markdown(report))
    for model in report["models"]:
        session = model.get("session") or {}
        tuned = ", ".join(
            f"{k}={session[k]}"
            for k in ("intra_op_threads", "allow_spinning", "execution_mode", "graph_optimization")
            if k in session
        )
        print(f"\n- {model['name']}: tuned {tuned or '-'}; timed through {model['apo_path']}")
        for variant in model["variants"]:
            print(f"  - {variant['name']}: {variant['status']}: {variant['note']}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
