"""apo's restricted loader against joblib.load, on the same files, in the same run.

apo never runs code from a model file: it rebuilds the objects with its own pickle machine and
checks what each one is given. This measures what that costs on a 300-tree forest saved three
ways (joblib, joblib with zlib, a plain protocol-5 pickle), as the median of interleaved runs.

    python examples/bench_loading.py [--trees 300] [--repeats 15]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import joblib
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from alphapulse_onnx import loading


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    X, y = make_classification(n_samples=5000, n_features=30, random_state=0)
    forest = RandomForestClassifier(n_estimators=args.trees, max_depth=12, random_state=0)
    forest.fit(X, y)
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "joblib": Path(folder, "forest.joblib"),
            "joblib, zlib 3": Path(folder, "forest.z.joblib"),
            "pickle, protocol 5": Path(folder, "forest.pkl"),
        }
        joblib.dump(forest, files["joblib"])
        joblib.dump(forest, files["joblib, zlib 3"], compress=3)
        files["pickle, protocol 5"].write_bytes(pickle.dumps(forest, protocol=5))
        print(f"| {args.trees}-tree forest | size | joblib.load | apo | apo / joblib.load |")
        print("|---|---|---|---|---|")
        for label, path in files.items():
            baseline: list[float] = []
            ours: list[float] = []
            for _ in range(args.repeats):  # interleaved, so load on the machine hits both
                start = time.perf_counter()
                joblib.load(path)  # noqa: TID251  # the baseline being measured
                baseline.append(time.perf_counter() - start)
                start = time.perf_counter()
                loading.load(path)
                ours.append(time.perf_counter() - start)
            ratio = statistics.median(ours) / statistics.median(baseline)
            size = path.stat().st_size / 2**20
            print(f"| {label} | {size:.1f} MiB | {_median_ms(baseline):.0f} ms | "
                  f"{_median_ms(ours):.0f} ms | {ratio:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
