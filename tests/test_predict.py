"""``apo predict`` end to end through the CLI: every answer checked against scikit-learn."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from alphapulse_onnx.cli import app
from alphapulse_onnx.commands.convert import ConvertOptions
from alphapulse_onnx.commands.convert import run as convert_run
from alphapulse_onnx.commands.predict import PredictOptions, PredictResult
from alphapulse_onnx.commands.predict import run as predict_run
from alphapulse_onnx.prediction_columns import output_columns, output_schema
from alphapulse_onnx.store import Store

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
runner = CliRunner()


@pytest.fixture(scope="module")
def models(iris: Any, diabetes: Any) -> dict[str, Any]:
    Xi, yi = iris
    Xd, yd = diabetes
    words = np.array(["setosa", "versicolor", "virginica"])[yi]
    return {
        "forest": RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(Xi, yi),
        "named": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
            pd.DataFrame(Xi, columns=NAMES), words
        ),
        "gbr": GradientBoostingRegressor(n_estimators=10, random_state=0).fit(Xd, yd),
    }


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Any]) -> Path:
    root = tmp_path_factory.mktemp("predict") / "registry"
    (root / "sub").mkdir(parents=True)
    joblib.dump(models["forest"], root / "forest.joblib")
    joblib.dump(models["named"], root / "sub" / "named.joblib")
    joblib.dump(models["gbr"], root / "gbr.joblib")
    options = ConvertOptions(registry=root, jobs=1)
    list(convert_run(options))
    return options.out_dir


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory, iris: Any) -> Path:
    path = tmp_path_factory.mktemp("data") / "iris.csv"
    pd.DataFrame(iris[0], columns=NAMES).to_csv(path, index=False)
    return path


def predict(manifest_dir: Path, *args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["predict", *args, "--store", str(manifest_dir)], input=input)


def _check_classifier(out: pd.DataFrame, model: Any, X: Any, *, proba: bool = True) -> None:
    frame: Any = np.asarray(X, dtype=np.float64)
    if hasattr(model, "feature_names_in_"):
        frame = pd.DataFrame(frame, columns=NAMES)
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(frame))
    columns = ["label"] + ([f"proba_{c}" for c in model.classes_] if proba else [])
    assert list(out.columns) == columns
    if proba:
        np.testing.assert_allclose(
            out[columns[1:]].to_numpy(), model.predict_proba(frame), atol=1e-5
        )


def test_csv_to_stdout(
    manifest_dir: Path, iris_csv: Path, models: dict[str, Any], iris: Any
) -> None:
    result = predict(manifest_dir, "named", str(iris_csv))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    _check_classifier(pd.read_csv(io.StringIO(result.stdout)), models["named"], iris[0])


def test_csv_without_header_and_with_reordered_columns(
    manifest_dir: Path, tmp_path: Path, models: dict[str, Any], iris: Any
) -> None:
    frame = pd.DataFrame(iris[0], columns=NAMES)
    frame.to_csv(tmp_path / "plain.csv", index=False, header=False)
    frame[NAMES[::-1]].to_csv(tmp_path / "reordered.csv", index=False)
    for name in ("plain.csv", "reordered.csv"):
        result = predict(manifest_dir, "forest", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
        out = pd.read_csv(io.StringIO(result.stdout))
        if name == "plain.csv":
            _check_classifier(out, models["forest"], iris[0])
        else:  # the forest was fit without names: a header is matched by position
            assert next(iter(out.columns)) == "label"


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".parquet", ".jsonl"])
def test_each_input_format(
    manifest_dir: Path, tmp_path: Path, models: dict[str, Any], iris: Any, suffix: str
) -> None:
    frame = pd.DataFrame(iris[0], columns=NAMES)
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".npy":
        np.save(path, iris[0])
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    result = predict(manifest_dir, "named", str(path))
    assert result.exit_code == 0, result.stderr
    _check_classifier(pd.read_csv(io.StringIO(result.stdout)), models["named"], iris[0])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".npy", ".parquet"])
def test_each_output_format_and_json_summary(
    manifest_dir: Path,
    iris_csv: Path,
    tmp_path: Path,
    models: dict[str, Any],
    iris: Any,
    suffix: str,
) -> None:
    out = tmp_path / f"out{suffix}"
    result = predict(manifest_dir, "named", str(iris_csv), "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 150 and summary["engine"] == "onnxruntime"
    assert summary["provider"] == "CPUExecutionProvider" and summary["output"] == str(out)
    assert summary["format"] == suffix[1:] and summary["seconds"] > 0
    if suffix == ".csv":
        table = pd.read_csv(out)
    elif suffix == ".jsonl":
        table = pd.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
    elif suffix == ".npy":
        array = np.load(out)
        table = pd.DataFrame({name: array[name] for name in array.dtype.names})
    else:
        table = pd.read_parquet(out)
    _check_classifier(table, models["named"], iris[0])


def test_stdin_csv_and_jsonl(manifest_dir: Path, models: dict[str, Any], iris: Any) -> None:
    X = iris[0][:20]
    csv_text = pd.DataFrame(X, columns=NAMES).to_csv(index=False)
    jsonl_text = "".join(json.dumps(row) + "\n" for row in X.tolist())
    for text in (csv_text, jsonl_text):
        result = predict(manifest_dir, "forest", "-", input=text)
        assert result.exit_code == 0, result.stderr
        _check_classifier(pd.read_csv(io.StringIO(result.stdout)), models["forest"], X)


def test_no_proba_and_regressors(
    manifest_dir: Path,
    iris_csv: Path,
    tmp_path: Path,
    models: dict[str, Any],
    iris: Any,
    diabetes: Any,
) -> None:
    result = predict(manifest_dir, "named", str(iris_csv), "--no-proba")
    assert result.exit_code == 0, result.stderr
    _check_classifier(
        pd.read_csv(io.StringIO(result.stdout)), models["named"], iris[0], proba=False
    )
    np.save(tmp_path / "d.npy", diabetes[0])
    result = predict(manifest_dir, "gbr", str(tmp_path / "d.npy"))
    assert result.exit_code == 0, result.stderr
    out = pd.read_csv(io.StringIO(result.stdout))
    assert list(out.columns) == ["prediction"]
    np.testing.assert_allclose(out.prediction, models["gbr"].predict(diabetes[0]), rtol=1e-4)


def test_model_given_as_artifact_path(manifest_dir: Path, iris_csv: Path) -> None:
    # the manifest sits one folder above sub/named.onnx
    result = runner.invoke(
        app, ["predict", str(manifest_dir / "sub" / "named.onnx"), str(iris_csv), "--no-proba"]
    )
    assert result.exit_code == 0, result.stderr
    assert pd.read_csv(io.StringIO(result.stdout)).label.iloc[0] == "setosa"


def test_chunks_change_nothing(manifest_dir: Path, iris_csv: Path) -> None:
    whole = predict(manifest_dir, "forest", str(iris_csv))
    chunked = predict(manifest_dir, "forest", str(iris_csv), "--chunk-size", "7")
    assert whole.exit_code == chunked.exit_code == 0
    one, many = (pd.read_csv(io.StringIO(r.stdout)) for r in (whole, chunked))
    np.testing.assert_array_equal(one.label, many.label)
    # onnxruntime sums a forest's trees in an order that depends on the batch: last-bit float32
    np.testing.assert_allclose(one.to_numpy(), many.to_numpy(), atol=1e-6)


def test_command_streams_chunk_by_chunk(manifest_dir: Path, iris_csv: Path) -> None:
    stream = io.StringIO()
    options = PredictOptions(model="forest", input=str(iris_csv), store=manifest_dir, chunk_size=40)
    events = list(predict_run(options, stdout=stream))
    assert [getattr(e, "rows_done", None) for e in events[:-1]] == [40, 80, 120, 150]
    assert isinstance(events[-1], PredictResult) and events[-1].rows == 150
    assert len(stream.getvalue().splitlines()) == 151


def test_output_columns_are_named_and_filled_from_the_model(
    manifest_dir: Path, models: dict[str, Any], iris: Any, diabetes: Any
) -> None:
    store = Store.open(manifest_dir)
    named, gbr = store["named"], store["gbr"]
    schema = output_schema(named, proba=True)
    names = [name for name, _ in schema]
    assert names == ["label", "proba_setosa", "proba_versicolor", "proba_virginica"]
    assert [np.dtype(dtype).kind for _, dtype in schema] == ["U", "f", "f", "f"]
    assert output_schema(named, proba=False) == schema[:1]
    rows = pd.DataFrame(iris[0][:5], columns=NAMES)
    columns = output_columns(names, named.run_prepared(named.prepare(rows), proba=True))
    assert list(columns) == names
    np.testing.assert_array_equal(columns["label"], models["named"].predict(rows))
    proba = np.column_stack([columns[name] for name in names[1:]])
    np.testing.assert_allclose(proba, models["named"].predict_proba(rows), atol=1e-5)

    assert output_schema(gbr, proba=False) == [("prediction", np.float64)]
    X = diabetes[0][:5]
    values = output_columns(["prediction"], gbr.run_prepared(gbr.prepare(X), proba=False))
    np.testing.assert_allclose(values["prediction"], models["gbr"].predict(X), rtol=1e-4)


def _one_error_line(result: Any, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_non_numeric_cell_names_row_and_column(
    manifest_dir: Path, iris: Any, tmp_path: Path
) -> None:
    frame = pd.DataFrame(iris[0], columns=NAMES).astype(object)
    frame.loc[97, "petal_width"] = "oops"  # data row 98, in the third chunk of 40
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out.csv"
    result = predict(manifest_dir, "named", str(path), "--chunk-size", "40", "-o", str(out))
    _one_error_line(
        result, 2, "bad.csv", "row 98", "column 'petal_width'", "'oops' is not a number"
    )
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["nope", "{csv}"], 2, ["no model named 'nope'"]),
        (["forest", "{tmp}/missing.csv"], 2, ["missing.csv", "no such file"]),
        (["forest", "{csv}", "-o", "{tmp}/x.xlsx"], 2, ["unsupported output type"]),
        (["forest", "{csv}", "--json"], 2, ["--json", "-o FILE"]),
        (["gbr", "{csv}", "--proba"], 2, ["regressor"]),
        (["{tmp}/nomanifest/m.onnx", "{csv}"], 2, ["lists this artifact"]),
        (["forest", "{csv}", "--provider", "nope"], 1, ["does not run here"]),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    manifest_dir: Path,
    iris_csv: Path,
    tmp_path: Path,
    args: list[str],
    code: int,
    fragments: list[str],
) -> None:
    (tmp_path / "nomanifest").mkdir()
    (tmp_path / "nomanifest" / "m.onnx").write_bytes(b"x")
    filled = [a.format(csv=iris_csv, tmp=tmp_path) for a in args]
    _one_error_line(predict(manifest_dir, *filled), code, *fragments)


def test_wrong_columns(manifest_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    _one_error_line(
        predict(manifest_dir, "named", str(tmp_path / "cols.csv")),
        2,
        "cols.csv",
        "missing columns: sepal_length",
    )
    (tmp_path / "narrow.csv").write_text("1,2\n3,4\n")
    _one_error_line(
        predict(manifest_dir, "forest", str(tmp_path / "narrow.csv")),
        2,
        "takes 4 features per row",
        "got 2",
    )


def test_deleted_artifact_falls_back_with_one_warning(
    manifest_dir: Path, iris_csv: Path, tmp_path: Path, models: dict[str, Any], iris: Any
) -> None:
    copy = tmp_path / "registry"
    shutil.copytree(manifest_dir.parent, copy)
    (copy / "onnx" / "forest.onnx").unlink()
    out = tmp_path / "out.csv"
    result = predict(copy / "onnx", "forest", str(iris_csv), "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "sklearn" and summary["provider"] is None
    assert "missing" in summary["fallback_reason"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "forest" in warnings[0] and "scikit-learn" in warnings[0]
    table = pd.read_csv(out)
    np.testing.assert_array_equal(table.label, models["forest"].predict(iris[0]))
    np.testing.assert_allclose(
        table[["proba_0", "proba_1", "proba_2"]].to_numpy(),
        models["forest"].predict_proba(iris[0]),
        rtol=0,
        atol=1e-15,
    )


def test_old_names_of_the_store_still_work(
    manifest_dir: Path, iris_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.1 called the store a (converted) registry: --registry, APO_REGISTRY, Registry."""
    import alphapulse_onnx

    assert alphapulse_onnx.Registry is alphapulse_onnx.Store
    new = runner.invoke(app, ["predict", "forest", str(iris_csv), "--store", str(manifest_dir)])
    old = runner.invoke(app, ["predict", "forest", str(iris_csv), "--registry", str(manifest_dir)])
    monkeypatch.setenv("APO_REGISTRY", str(manifest_dir))
    by_env = runner.invoke(app, ["predict", "forest", str(iris_csv)])
    assert new.exit_code == old.exit_code == by_env.exit_code == 0, old.stderr
    assert new.stdout == old.stdout == by_env.stdout
    assert "--registry" not in runner.invoke(app, ["predict", "--help"]).stdout
