"""Coverage table of estimator/transformer families, generated from the test suite.

Tests that convert a family call ``convert_models()`` (below) and ``record(family, entry)``; when
``APO_COVERAGE_OUT`` names a file, every record is appended to it as one JSON line. Regenerate the
table in ``docs/reference/coverage.md`` with::

    python tests/coverage_table.py

which runs the recording test files and rewrites the document from what they measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reference" / "coverage.md"
RECORDING_TESTS = (
    "tests/test_dataframe_pipelines.py",
    "tests/test_converters.py",
    "tests/test_boosters.py",
    "tests/test_plugins.py",
    "tests/test_converter_gaps.py",
)


def convert_models(tmp_path: Path, models: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Write ``models`` as .joblib files and run ``apo convert`` on them: name -> manifest entry."""
    import joblib

    from alphapulse_onnx.commands import convert
    from alphapulse_onnx.manifest import ManifestEntry

    registry = tmp_path / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        joblib.dump(model, registry / f"{name}.joblib")
    run_options = convert.ConvertOptions(registry=registry, probe_rows=512, **options)
    entries = [o for o in convert.run(run_options) if isinstance(o, ManifestEntry)]
    return {entry.name: entry for entry in entries}


def record(family: str, entry: Any) -> None:
    """Append one family's parity figures to ``$APO_COVERAGE_OUT`` (no-op when unset)."""
    out = os.environ.get("APO_COVERAGE_OUT")
    if not out:
        return
    report = entry.validation
    line = {
        "family": family,
        "task": entry.task,
        "status": entry.status,
        "precision": entry.artifact.precision if entry.artifact else None,
        "inputs": len(entry.inputs),
        "probe": report.probe if report else None,
        "rows": report.rows if report else None,
        "max_abs_diff": report.max_abs_diff if report else None,
        "max_rel_diff": report.max_rel_diff if report else None,
        "label_agreement": report.label_agreement if report else None,
    }
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2g}" if value < 0.01 else f"{value:.4f}"
    return str(value)


def render(lines: list[dict[str, Any]]) -> str:
    best: dict[str, dict[str, Any]] = {}
    for line in lines:  # one row per family: the last record wins
        best[line["family"]] = line
    out = [
        "# Coverage: model families converted with parity",
        "",
        "Generated from the test suite by `tests/coverage_table.py` (do not edit by hand).",
        "Each row is one family converted by `apo convert` in a test, with the parity figures",
        "measured on its probe rows: the largest absolute difference in probabilities",
        "(classifiers) or predictions (regressors), the largest relative difference (regressors)",
        "and the fraction of identical labels (classifiers). Boosters appear only when the",
        "`boost` extra was installed while generating.",
        "",
        "`inputs` counts the artifact's inputs: 1 is a float matrix `X`; more are DataFrame-fit",
        "models with one `[None, 1]` input per column the model reads (typed `string`, `int64` or",
        "float). Columns a `ColumnTransformer` drops are not inputs. Probes: `thresholds` rows sit",
        "next to the trees' split points, `statistics` rows follow the scalers and imputers (and,",
        "per column, the encoders' categories, unseen categories and missing cells).",
        "",
        "Regenerate: `python tests/coverage_table.py` (runs the recording tests, about a minute).",
        "",
        "| family | task | status | precision | inputs | probe | rows | max abs diff "
        "| max rel diff | label agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family in sorted(best):
        row = best[family]
        cells = [
            family,
            row["task"],
            row["status"],
            row["precision"],
            row["inputs"],
            row["probe"],
            row["rows"],
            row["max_abs_diff"],
            row["max_rel_diff"],
            row["label_agreement"],
        ]
        out.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(out) + "\n"


def main() -> int:
    records = ROOT / ".coverage_records.jsonl"
    records.unlink(missing_ok=True)
    env = {**os.environ, "APO_COVERAGE_OUT": str(records)}
    tests = [t for t in RECORDING_TESTS if (ROOT / t).exists()]
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT, env=env
    )
    if not records.exists():
        print("no records written", file=sys.stderr)
        return 1
    lines = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    records.unlink()
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(lines), encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} ({len({line['family'] for line in lines})} families)")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
