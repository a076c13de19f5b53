"""What a CI log shows: apo's tables with stdout piped (80 columns), as a subprocess sees it.

A registry with long, nested model names and failures of several causes: every line fits the
width, every model's name appears whole, a row's cells sit on one line (beside its name, or on
the line under it), an estimator is whole or cut with an ellipsis on that same line, failed rows
name their cause, and the failures are grouped by cause under the table.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sklearn.cluster import BisectingKMeans
from sklearn.datasets import load_iris
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from alphapulse_onnx import render
from alphapulse_onnx.render import Column

from .conftest import save_model

WIDTH = 80
NESTED = "team_analytics/2024/q3/experiments/customer_churn"


TRAINING_SCRIPT = """
import sys
import joblib
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


class ColumnDropper(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


X, y = load_iris(return_X_y=True)
model = make_pipeline(ColumnDropper(), LogisticRegression(max_iter=500)).fit(X, y)
for path in sys.argv[1:]:
    joblib.dump(model, path)
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = load_iris(return_X_y=True)
    root = tmp_path_factory.mktemp("wide") / "registry"
    logreg = LogisticRegression(max_iter=500).fit(X, y)
    # Two files with one stem in different folders: both are named by their nested path.
    save_model(logreg, root / NESTED / "v12" / "gradient_boosted_churn_model.joblib")
    save_model(logreg, root / NESTED / "v13" / "gradient_boosted_churn_model.joblib")
    boosted = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y)
    save_model(boosted, root / "boosted_classifier_with_a_descriptive_name.joblib")
    save_model(BisectingKMeans(n_clusters=2, random_state=0).fit(X), root / "segments.pkl")
    (root / "truncated_upload.pkl").write_bytes(b"\x80\x05garbage")
    # User code, as a training script saves it: its class lives in __main__.
    script = root.parent / "train.py"
    script.write_text(TRAINING_SCRIPT)
    subprocess.run([sys.executable, str(script), str(root / "dropper_a.joblib"),
                    str(root / "dropper_b.joblib")], check=True)  # fmt: skip
    return root


def apo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """apo as CI runs it: stdout and stderr are pipes, no COLUMNS from a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    return subprocess.run(
        [sys.executable, "-m", "alphapulse_onnx", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module")
def converted(registry: Path) -> subprocess.CompletedProcess[str]:
    return apo("convert", str(registry))


def row_line(lines: list[str], name: str, *cells: str) -> str:
    """The line holding ``name``'s cells: its own line, or (stacked layout) the next one."""
    for i, line in enumerate(lines):
        if name not in line.split():
            continue
        if all(cell in line for cell in cells):
            return line
        following = lines[i + 1] if i + 1 < len(lines) else ""
        assert all(cell in following for cell in cells), (name, cells, line, following)
        assert following.startswith("  ")  # indented under its name
        return following
    raise AssertionError(f"{name} is not on any line, whole:\n" + "\n".join(lines))


def test_convert_table_fits_80_columns_and_splits_no_word(
    converted: subprocess.CompletedProcess[str], registry: Path
) -> None:
    assert converted.returncode == 1, converted.stderr
    lines = converted.stdout.splitlines()
    names = {
        e["name"] for e in json.loads(apo("convert", str(registry), "--json").stdout)["entries"]
    }
    # Only a name longer than the width passes it: whole, on a line of its own.
    assert all(len(line) <= WIDTH or line in names for line in lines), lines
    ellipsis = "\u2026" if "\u2026" in converted.stdout else "..."
    ok = {
        f"{NESTED}/v12/gradient_boosted_churn_model": "LogisticRegression",
        f"{NESTED}/v13/gradient_boosted_churn_model": "LogisticRegression",
        "boosted_classifier_with_a_descriptive_name": "GradientBoostingClassifier",
    }
    for name, estimator in ok.items():
        line = row_line(lines, name, "ok", "float32", "100%")
        cut = [w for w in line.split() if estimator.startswith(w.rstrip(ellipsis.strip(".")))]
        whole = estimator in line.split()
        shortened = any(w.endswith(ellipsis) and estimator.startswith(w[: -len(ellipsis)])
                        for w in line.split())  # fmt: skip
        assert whole or shortened, (estimator, line, cut)
    failed = {
        "segments": "no converter",
        "truncated_upload": "corrupt or not a model",
        "dropper_a": "refused: user code",
        "dropper_b": "refused: user code",
    }
    for name, cause in failed.items():
        line = row_line(lines, name, "failed")
        assert cause in line  # the cause, not the stage ("load", "convert")
        assert " load " not in f" {line} " and " convert " not in f" {line} "
    # The parity figures are explained under the table.
    legend = " ".join(line.strip() for line in lines)
    assert "% labels as scikit-learn's" in legend and "p largest probability gap" in legend


def test_failures_are_grouped_by_cause_in_one_line_each(
    converted: subprocess.CompletedProcess[str], registry: Path
) -> None:
    lines = converted.stdout.splitlines()
    groups = [line for line in lines if line[:1].isdigit()]
    assert (
        groups[0] == "2 refused: user code (__main__.ColumnDropper \u00d72)"
        or groups[0] == "2 refused: user code (__main__.ColumnDropper x2)"
    )
    assert "1 corrupt or not a model (truncated_upload.pkl)" in groups
    assert "1 without an ONNX converter (BisectingKMeans)" in groups
    assert len(groups) == 3
    summary = json.loads(apo("convert", str(registry), "--json").stdout)
    by_cause = {g["cause"]: g for g in summary["failures_by_cause"]}
    assert list(by_cause) == ["user-code", "unreadable", "no-converter"]
    assert by_cause["user-code"]["count"] == 2
    assert by_cause["user-code"]["details"] == {"__main__.ColumnDropper": 2}
    assert sorted(by_cause["user-code"]["models"]) == ["dropper_a", "dropper_b"]
    assert by_cause["no-converter"]["details"] == {"BisectingKMeans": 1}
    causes = {e["name"]: e["cause"] for e in summary["entries"]}
    assert causes["segments"] == "no-converter"
    assert causes["boosted_classifier_with_a_descriptive_name"] is None
    recorded = json.loads((registry / "onnx" / "manifest.json").read_text())
    assert {m["name"]: m["cause"] for m in recorded["models"]} == causes


def test_validate_and_info_fit_80_columns(
    converted: subprocess.CompletedProcess[str], registry: Path
) -> None:
    validated = apo("validate", str(registry / "onnx"))
    lines = validated.stdout.splitlines()
    assert all(len(line) <= WIDTH or line.startswith(NESTED) for line in lines)
    row_line(lines, f"{NESTED}/v12/gradient_boosted_churn_model", "pass")
    row_line(lines, "dropper_a", "FAIL")
    shown = apo("info", f"{NESTED}/v13/gradient_boosted_churn_model", "--store",
                str(registry / "onnx"))  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{NESTED}/v13/gradient_boosted_churn_model"  # whole, however long
    tables = [line for line in lines if line[:1] in "┃│┗┏┡└"]
    assert tables and all(len(line) <= WIDTH for line in tables)
    for column in ("sepal", "x0"):  # iris was fitted on an array: columns by position
        assert column not in shown.stdout
    assert "no header, 4 numbers per row" in shown.stdout


def test_providers_listing_fits_80_columns() -> None:
    listed = apo("providers")
    assert listed.returncode == 0, listed.stderr
    table = [line for line in listed.stdout.splitlines() if "ExecutionProvider" in line]
    assert table and all(len(line) <= WIDTH for line in table)
    assert any("CPUExecutionProvider" in line.split() for line in table)


# ---------------------------------------------------------------------------- the layouts


def _rendered(table: Any, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(table, crop=False)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_every_layout_keeps_a_row_on_one_line(width: int) -> None:
    names = ["a", "b/c/d/a_rather_long_model_name_that_runs_on", "mid_sized_name"]
    columns = [Column("model", name=True), Column("estimator", shrink="end"),
               Column("status"), Column("size", justify="right")]  # fmt: skip
    rows = [[n, "HistGradientBoostingClassifier", "ok", "1.2 KB"] for n in names]
    lines = _rendered(render.table(columns, rows, width=width), width)
    for name in names:
        line = row_line(lines, name, "ok", "1.2 KB")
        assert len(line) <= width
    # Only a name longer than the width itself passes it: whole, on a line of its own.
    assert all(len(line) <= width or line.strip() in names for line in lines)
    if width >= 120:  # room for everything: the boxed table, nothing cut
        assert sum("HistGradientBoostingClassifier" in line for line in lines) == 3


def test_progress_shows_time_left_where_the_total_is_known() -> None:
    now = [0.0]  # the bar's clock, stepped by hand: no timing in the test
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False, color_system=None)
    bar = render.progress_bar()
    progress = type(bar)(*bar.columns, console=console, get_time=lambda: now[0])
    known = progress.add_task("converting", total=10, status="")
    unknown = progress.add_task("scoring partitions", total=None, status="")
    for step in (1.0, 2.0):  # two models a second: six left, three seconds
        now[0] = step
        progress.advance(known, 2)
        progress.advance(unknown, 1)
    console.print(progress.make_tasks_table(progress.tasks))
    converting, scoring = buffer.getvalue().splitlines()
    assert "4/10" in converting and "eta 0:00:03" in converting
    assert "eta" not in scoring  # no total: no estimate
