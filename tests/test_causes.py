"""Why a model failed: the one classification (``causes.cause_of``) fed with the errors apo's own
loader and converter raise on real files and models, and the grouping the convert summary
prints."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
from sklearn.cluster import BisectingKMeans
from sklearn.datasets import load_iris

from alphapulse_onnx import causes, conversion, loading
from alphapulse_onnx.causes import Failure
from alphapulse_onnx.errors import ApoError, failure_line
from alphapulse_onnx.signature import infer


def _load_error(path: Path, policy: loading.TrustPolicy = loading.DEFAULT_POLICY) -> ApoError:
    with pytest.raises(ApoError) as caught:
        loading.load(path, policy)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "cause", "detail"),
    [
        pytest.param(b"c__main__\nColumnDropper\n)\x81.", "user-code", "__main__.ColumnDropper",
                     id="training-script-class"),
        pytest.param(b"csrc.prep\nCleaner\n)\x81.", "user-code", "src.prep.Cleaner",
                     id="project-module-class"),
        pytest.param(b"(S'echo hi'\nios\nsystem\n.", "refused", "os.system", id="os-system"),
        pytest.param(b"csklearn.frozen\nFrozenEstimator\n)\x81.", "refused",
                     "sklearn.frozen.FrozenEstimator", id="library-gadget-class"),
        pytest.param(b"\x80\x05garbage", "unreadable", "model.pkl", id="corrupt"),
        pytest.param(b"", "unreadable", "model.pkl", id="empty"),
    ],
)  # fmt: skip
def test_loader_errors_are_classified_by_class_and_named(
    tmp_path: Path, raw: bytes, cause: str, detail: str
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(raw)
    exc = _load_error(path)
    line = failure_line("model.pkl", exc, stage="load")
    assert causes.cause_of(exc, "load", line) == cause
    assert causes.detail_of(causes.cause_of(exc, "load", line), line, None, "m/model.pkl") == detail
    # A manifest written before causes were recorded: the stage and line give the same answer.
    assert causes.cause_of(None, "load", line) == cause


def test_a_library_name_the_loader_does_not_admit_is_not_offered_to_trust(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"csklearn.base\nBaseEstimator\n)\x81.")  # a mixin, never a fitted model
    exc = _load_error(path)
    assert causes.cause_of(exc, "load", str(exc)) == "refused"
    assert "never holds sklearn.base.BaseEstimator: do not use this file" in str(exc)


def test_a_trusted_class_that_cannot_be_imported_is_its_own_cause(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"cno_such_module_xyz\nClip\n)\x81.")
    exc = _load_error(path, loading.TrustPolicy(trusted=("no_such_module_xyz.Clip",)))
    line = failure_line("model.pkl", exc, stage="load")
    assert "cannot be imported" in line  # not blamed on library versions
    assert causes.cause_of(exc, "load", line) == "not-importable"
    assert causes.detail_of("not-importable", line, None, "model.pkl") == "no_such_module_xyz.Clip"


def test_an_estimator_without_converter_is_named() -> None:
    X, _ = load_iris(return_X_y=True)
    model = BisectingKMeans(n_clusters=2, random_state=0).fit(X)
    with pytest.raises(ApoError) as caught:
        conversion.convert(model, infer(model))
    line = failure_line("segments.pkl", caught.value, stage="convert")
    assert causes.cause_of(caught.value, "convert", line) == "no-converter"
    assert causes.detail_of("no-converter", line, None, "segments.pkl") == "BisectingKMeans"


def test_errors_apo_did_not_raise_are_internal() -> None:
    table: dict[str, int] = {}
    with pytest.raises(KeyError) as caught:  # a library bug, as convert would meet it
        table["missing"]
    line = failure_line("m.pkl", caught.value, stage="convert")
    assert line.startswith("m.pkl: internal error during convert: KeyError")
    assert causes.cause_of(caught.value, "convert", line) == "internal"


@pytest.mark.parametrize(
    ("stage", "message", "cause"),
    [
        ("parity", "m.pkl: Pipeline: parity failed: labels differ on 3 rows", "parity"),
        ("origin", "m.pkl: Pipeline: origin check failed: ...", "origin"),
        ("convert", "m.pkl: the worker process running it died (crash or kill)", "crash"),
        ("probe", "--sample x.csv: missing columns: a", "input"),
        ("signature", "m.pkl: no ONNX converter for Foo", "no-converter"),
        (None, "", "internal"),
    ],
)
def test_entries_without_a_recorded_cause_fall_back_to_their_stage(
    stage: str | None, message: str, cause: str
) -> None:
    assert causes.recorded(None, stage, message) == cause
    assert causes.recorded("user-code", stage, message) == "user-code"  # recorded wins
    assert causes.recorded("from-a-future-apo", stage, message) == cause


def test_groups_count_and_list_what_failed_most_frequent_first() -> None:
    failures = [
        Failure("a", "no-converter", "BisectingKMeans"),
        Failure("b", "user-code", "__main__.ColumnDropper"),
        Failure("c", "user-code", "src.prep.Cleaner"),
        Failure("d", "user-code", "__main__.ColumnDropper"),
        Failure("e", "unreadable", "e.pkl"),
    ]
    groups = causes.group(failures)
    # Ties keep the order of ``CAUSES``: files refused, unreadable, then converters.
    assert [g.cause for g in groups] == ["user-code", "unreadable", "no-converter"]
    assert groups[0].line() == "3 refused: user code (__main__.ColumnDropper x2, src.prep.Cleaner)"
    assert (
        groups[0]
        .line(times="\u00d7")
        .endswith("(__main__.ColumnDropper \u00d72, src.prep.Cleaner)")
    )
    assert groups[2].line() == "1 without an ONNX converter (BisectingKMeans)"
    assert groups[0].to_json() == {
        "cause": "user-code",
        "label": "refused: user code",
        "count": 3,
        "models": ["b", "c", "d"],
        "details": {"__main__.ColumnDropper": 2, "src.prep.Cleaner": 1},
    }
    many = causes.group(Failure(str(i), "unreadable", f"{i}.pkl") for i in range(7))
    assert many[0].line().endswith("(0.pkl, 1.pkl, 2.pkl, 3.pkl, 3 more)")


def test_the_schema_lists_every_cause() -> None:
    schema = json.loads(files("alphapulse_onnx").joinpath("manifest.schema.json").read_text())
    listed = schema["$defs"]["entry"]["properties"]["cause"]["enum"]
    assert set(listed) == {*causes.CAUSES, None}
    assert set(causes.LABELS) == set(causes.CAUSES)
