"""Origin checks that need no environment: what files record, how installer failures read,
offline mode, models whose versions run here, the manifest record and the command line."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import pytest
import sklearn
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from alphapulse_onnx.cli import app, normalize_args
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.manifest import ManifestEntry, OriginRecord, SourceInfo
from alphapulse_onnx.origin import check as origin_check
from alphapulse_onnx.origin import environments, recorded

from .conftest import save_model

runner = CliRunner()
OLD_FIXTURE = Path(__file__).parent / "data" / "origin" / "logreg_sklearn_1_0_2.pkl"


def _convert(args: list[str]) -> Any:
    return runner.invoke(app, normalize_args(["convert", *args]))


def test_a_file_records_the_scikit_learn_that_saved_it(
    tmp_path: Path, small_models: dict[str, Any]
) -> None:
    path = save_model(small_models["iris_rf"], tmp_path / "rf.joblib")
    assert recorded.read(path) == recorded.Recorded(sklearn=sklearn.__version__)
    assert recorded.read(OLD_FIXTURE).sklearn == "1.0.2"
    choice = origin_check.wanted(OLD_FIXTURE)
    assert isinstance(choice, environments.Spec)
    assert choice.requirements[0] == "scikit-learn==1.0.2" and choice.label == "scikit-learn 1.0.2"


def test_a_file_saved_here_is_answered_in_this_environment(
    tmp_path: Path, small_models: dict[str, Any]
) -> None:
    path = save_model(small_models["cancer_logreg"], tmp_path / "logreg.pkl")
    choice = origin_check.wanted(path)
    assert isinstance(choice, origin_check.InThisEnvironment)
    assert choice.versions["scikit-learn"] == sklearn.__version__


def test_an_xgboost_model_records_its_booster_version(tmp_path: Path) -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = load_iris(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=2, max_depth=2).fit(X, y)
    for path in (tmp_path / "xgb.pkl", tmp_path / "xgb.joblib"):
        if path.suffix == ".pkl":
            path.write_bytes(pickle.dumps(model))
        else:
            joblib.dump(model, path, compress=3)
        found = recorded.read(path)
        assert found.xgboost and found.xgboost_version == xgboost.__version__
    assert recorded.xgboost_version(b'{"learner": {}, "version": [1, 7, 6]}') == "1.7.6"


def test_a_skops_file_is_skipped_with_the_reason(tmp_path: Path) -> None:
    choice = origin_check.wanted(tmp_path / "model.skops")
    assert isinstance(choice, origin_check.Skipped) and "skops" in choice.reason


PIP_NO_WHEEL = """\
ERROR: Could not find a version that satisfies the requirement scikit-learn==1.0.2 (from \
versions: 1.1.3, 1.2.0, 1.9.1)
ERROR: No matching distribution found for scikit-learn==1.0.2
"""
# uv 0.13's own words.
UV_NO_WHEEL = """\
error: No solution found when resolving dependencies
  cause: Because scikit-learn==1.0.2 has no usable wheels and you require scikit-learn==1.0.2, \
we can conclude that your requirements are unsatisfiable.
"""
UV_NO_WHEEL_FOR_A_PIN = """\
error: No solution found when resolving dependencies
  cause: Because scikit-learn==1.3.2 depends on numpy>=1.17.3,<2.0 and numpy>=1.17.3,<=1.22.4 \
has no usable wheels, we can conclude that scikit-learn==1.3.2 depends on numpy>=1.23.0,<2.0.
"""
PIP_OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after \
connection broken by 'NewConnectionError(...: Failed to establish a new connection: [Errno -3] \
Temporary failure in name resolution')': /simple/scikit-learn/
ERROR: Could not find a version that satisfies the requirement scikit-learn==1.3.2 (from \
versions: none)
ERROR: No matching distribution found for scikit-learn==1.3.2
"""


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        pytest.param(PIP_NO_WHEEL, "no wheel of scikit-learn 1.0.2 for Python 3.11", id="pip"),
        pytest.param(UV_NO_WHEEL, "no wheel of scikit-learn 1.0.2 for Python 3.11", id="uv"),
        pytest.param(
            UV_NO_WHEEL_FOR_A_PIN,
            "no wheel of numpy>=1.17.3,<=1.22.4 for Python 3.11",
            id="uv-a-pin",
        ),
        pytest.param(
            "  × No solution found\n  ╰─▶ Because there is no version of scikit-learn==9.9 and "
            "you require scikit-learn==9.9, we can conclude ...\n",
            "no wheel of scikit-learn 9.9 for Python 3.11",
            id="uv-no-such-release",
        ),
        pytest.param(
            "ERROR: No matching distribution found for numpy<1.23,>=1.14.6\n",
            "no wheel of numpy<1.23,>=1.14.6 for Python 3.11",
            id="a-pin",
        ),
        pytest.param(
            PIP_OFFLINE,
            "cannot reach the package index to install scikit-learn 1.3.2",
            id="offline",
        ),
        pytest.param(
            "ERROR: disk full\n", "cannot install scikit-learn 1.3.2: ERROR: disk full", id="other"
        ),
    ],
)
def test_installer_failures_read_as_one_line(output: str, reason: str) -> None:
    label = "scikit-learn 1.0.2" if "1.0.2" in output else "scikit-learn 1.3.2"
    assert environments.install_failure(output, label, "3.11").startswith(reason)


def test_uv_gets_the_index_settings_pip_uses() -> None:
    settings = {
        "global.index-url": "https://mirror.example/simple",
        "global.extra-index-url": "file:///opt/a file:///opt/b",
        "global.find-links": "/opt/old",
        ":env:.find-links": "/opt/wheels",  # PIP_FIND_LINKS beats the config file, as in pip
        "global.cert": "/etc/ssl/certs/ca-certificates.crt",  # not an index setting
    }
    assert environments.uv_index_options(settings) == [
        "--index-url",
        "https://mirror.example/simple",
        "--extra-index-url",
        "file:///opt/a",
        "--extra-index-url",
        "file:///opt/b",
        "--find-links",
        "/opt/wheels",
    ]
    assert environments.uv_index_options({"install.no-index": "true"}) == ["--no-index"]


def test_the_cache_folder_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(environments.CACHE_ENV, str(tmp_path / "cache"))
    assert environments.default_cache() == tmp_path / "cache"
    assert origin_check.OriginOptions().cache_dir == tmp_path / "cache"
    monkeypatch.delenv(environments.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert environments.default_cache() == tmp_path / "xdg" / "apo" / "origin"


def test_offline_with_an_empty_cache_skips_with_the_reason(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    shutil.copy(OLD_FIXTURE, registry / "old_logreg.pkl")
    cache = tmp_path / "cache"
    args = [str(registry), "--origin-offline", "--origin-cache", str(cache), "--json"]
    result = _convert([*args, "--origin"])
    assert result.exit_code == 0, result.stderr
    origin = json.loads(result.stdout)["entries"][0]["origin"]
    assert origin["status"] == "skipped"
    assert origin["reason"] == "no cached environment for scikit-learn 1.0.2 (--origin-offline)"
    assert origin["versions"] == {"scikit-learn": "1.0.2"}
    assert not cache.exists() or not any(cache.iterdir())  # offline makes nothing

    required = _convert([*args, "--origin=require"])
    assert required.exit_code == 1
    entry = json.loads(required.stdout)["entries"][0]
    assert entry["status"] == "failed" and entry["origin"]["status"] == "skipped"
    assert entry["error"] == (
        "old_logreg.pkl: LogisticRegression: origin check skipped, and --origin=require: "
        "no cached environment for scikit-learn 1.0.2 (--origin-offline)"
    )


def test_models_saved_here_pass_in_this_environment_and_make_nothing(
    registry: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    result = _convert([str(registry), "--origin=require", "--origin-cache", str(cache), "--json"])
    assert result.exit_code == 0, result.stderr
    for entry in json.loads(result.stdout)["entries"]:
        origin = entry["origin"]
        assert origin["status"] == "passed", entry
        assert origin["environment"] is None  # apo's own: the versions the files record
        assert origin["versions"]["scikit-learn"] == sklearn.__version__
        assert origin["rows"] == entry["validation"]["rows"]
    manifest = json.loads((registry / "onnx" / "manifest.json").read_text())
    assert all(m["validation"]["origin"]["status"] == "passed" for m in manifest["models"])
    assert not cache.exists()

    validated = runner.invoke(
        app, ["validate", str(registry), "--origin", "--origin-cache", str(cache), "--json"]
    )
    assert validated.exit_code == 0, validated.stderr
    assert all(r["origin"]["status"] == "passed" for r in json.loads(validated.stdout)["results"])


def test_a_conversion_without_origin_is_redone_for_origin(registry: Path, tmp_path: Path) -> None:
    assert _convert([str(registry)]).exit_code == 0
    again = _convert([str(registry), "--origin", "--origin-cache", str(tmp_path), "--json"])
    summary = json.loads(again.stdout)
    assert summary["reused"] == 0 and all(e["origin"] for e in summary["entries"])
    third = _convert([str(registry), "--origin", "--origin-cache", str(tmp_path), "--json"])
    assert json.loads(third.stdout)["reused"] == 3  # now passed: nothing to redo
    assert json.loads(_convert([str(registry), "--json"]).stdout)["reused"] == 3


def test_the_origin_record_is_kept_inside_validation() -> None:
    record = OriginRecord(
        "failed",
        {"scikit-learn": "1.3.2", "numpy": "1.26.4"},
        environment="scikit-learn-1.3.2-py3.11-abc",
        rows=10,
        label_agreement=0.9,
        max_abs_diff=0.2,
        ties=0,
        mismatches=1,
        reason="1 of 10 labels differ",
    )
    parity = {
        "passed": True,
        "probe": "statistics",
        "rows": 10,
        "max_abs_diff": 1e-7,
        "max_rel_diff": None,
        "label_agreement": 1.0,
        "ties": 0,
        "mismatches": 0,
        "reason": None,
    }
    raw = {
        "name": "m",
        "status": "ok",
        "source": {"path": "m.pkl", "sha256": "0"},
        "validation": {**parity, "origin": record.to_json()},
    }
    entry = ManifestEntry.from_json(raw, where="manifest.json")
    assert entry.origin == record
    assert entry.to_json()["validation"]["origin"] == record.to_json()
    plain = ManifestEntry("m", "ok", SourceInfo("m.pkl", "0"))
    assert "origin" not in plain.to_json()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["convert", "r", "--origin"], ["convert", "r", "--origin"]),
        (["convert", "r", "--origin=require"], ["convert", "r", "--origin-require"]),
        (["convert", "r", "--origin=check"], ["convert", "r", "--origin"]),
        (["convert", "--", "--origin=require"], ["convert", "--", "--origin=require"]),
    ],
)
def test_origin_equals_require_is_normalised(args: list[str], expected: list[str]) -> None:
    assert normalize_args(args) == expected


def test_origin_takes_no_other_value() -> None:
    with pytest.raises(InputError, match=r"--origin takes no value, or =require \(got 'yes'\)"):
        normalize_args(["convert", "r", "--origin=yes"])


def test_offline_without_origin_is_a_usage_error(registry: Path) -> None:
    result = _convert([str(registry), "--origin-offline"])
    assert result.exit_code == 2
    assert "--origin-offline applies to origin checks: add --origin" in result.stderr


def test_each_set_of_versions_has_its_own_readable_folder() -> None:
    plain, later = origin_check.spec_for("1.3.2"), origin_check.spec_for("1.6.1")
    boosted = origin_check.spec_for("1.3.2", xgboost="1.7.6")
    assert plain.key.startswith(f"scikit-learn-1.3.2-py{environments.PYTHON}-")
    assert boosted.key.startswith(f"scikit-learn-1.3.2-xgboost-1.7.6-py{environments.PYTHON}-")
    assert len({plain.key, later.key, boosted.key}) == 3
    assert origin_check.spec_for("1.3.2").key == plain.key  # the same versions share one


def test_an_unfinished_environment_is_not_taken(tmp_path: Path) -> None:
    spec = origin_check.spec_for("1.3.2")
    python = environments.python_in(tmp_path / spec.key)
    python.parent.mkdir(parents=True)
    python.touch()
    assert environments.find(spec, tmp_path) is None  # no marker: its build never finished
    marker = {"versions": {"scikit-learn": "1.3.2", "numpy": "1.26.4"}}
    (tmp_path / spec.key / environments.MARKER).write_text(json.dumps(marker))
    found = environments.find(spec, tmp_path)
    assert found is not None and found.versions == marker["versions"]


def test_a_second_builder_waits_for_the_first(tmp_path: Path) -> None:
    order: list[str] = []
    lock = tmp_path / ".locks" / "one.lock"
    first_holds = threading.Event()

    def first() -> None:
        with environments._locked(lock):
            order.append("first in")
            first_holds.set()
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_holds.wait(timeout=10)
    with environments._locked(lock):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
