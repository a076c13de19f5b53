"""Converter plugins: --plugin, the entry-point group, user classes and the worked example."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from alphapulse_onnx import plugins
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.loading import TrustPolicy
from tests.coverage_table import convert_models

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_converter" / "run_example.py"

# A user transformer (halves every value) and its plugin, written as real modules at test time.
USER_CLASS = textwrap.dedent(
    """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin

    class Halver(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.n_features_in_ = np.shape(X)[1]
            return self

        def transform(self, X):
            return np.asarray(X, dtype=np.float64) / 2
    """
)
USER_PLUGIN = textwrap.dedent(
    """
    import copy
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from {module} import Halver

    def shape(operator):
        operator.outputs[0].type = copy.deepcopy(operator.inputs[0].type)

    def convert(scope, operator, container):
        half = scope.get_unique_variable_name("half")
        container.add_initializer(half, TensorProto.FLOAT, [], [0.5])
        container.add_node("Mul", [operator.inputs[0].full_name, half],
                           [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Halve"))

    update_registered_converter(Halver, "TestHalver{module}", shape, convert)
    """
)


def _write_user_modules(folder: Path, stem: str) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.py").write_text(USER_CLASS)
    (folder / f"{stem}_onnx.py").write_text(USER_PLUGIN.format(module=stem))
    return stem, f"{stem}_onnx"


def _fit_with(module: str, folder: Path) -> object:
    sys.path.insert(0, str(folder))
    try:
        halver = __import__(module).Halver
    finally:
        sys.path.remove(str(folder))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    return make_pipeline(halver(), LogisticRegression()).fit(X, X[:, 0] > 0)


def test_worked_example_runs_and_passes_parity() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "column_dropper.ColumnDropper" in result.stdout
    assert "label agreement 1.0" in result.stdout


def test_missing_plugin_is_one_usage_line() -> None:
    with pytest.raises(InputError) as info:
        plugins.load_plugin("no_such_apo_plugin_module")
    assert "no_such_apo_plugin_module" in str(info.value)
    assert "\n" not in str(info.value)


def test_user_class_refused_then_unsupported_without_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = _write_user_modules(tmp_path / "code", "apo_user_halver_a")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    model = _fit_with(module, tmp_path / "code")
    refused = convert_models(tmp_path / "a", {"halved": model})["halved"]
    assert not refused.ok
    assert f"{module}.Halver" in refused.error
    assert f"--trust {module}.Halver" in refused.error
    assert "converter plugin" in refused.error
    trusted = TrustPolicy(trusted=(f"{module}.Halver",))
    unsupported = convert_models(tmp_path / "b", {"halved": model}, policy=trusted)["halved"]
    assert not unsupported.ok
    assert "no ONNX converter for Halver" in unsupported.error
    assert "custom-converters" in unsupported.error


def test_plugin_option_converts_the_user_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, plugin = _write_user_modules(tmp_path / "code", "apo_user_halver_b")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    model = _fit_with(module, tmp_path / "code")
    trusted = TrustPolicy(trusted=(f"{module}.Halver",))
    entry = convert_models(tmp_path, {"halved": model}, policy=trusted, plugins=(plugin,))["halved"]
    assert entry.ok, entry.error
    assert entry.validation.label_agreement == 1.0


def test_entry_point_group_plugin_is_loaded_without_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "site"
    module, plugin = _write_user_modules(code, "apo_user_halver_c")
    dist = code / "apo_halver_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: apo-halver-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\nhalver = {plugin}\n")
    monkeypatch.syspath_prepend(str(code))  # an installed distribution advertising the plugin
    model = _fit_with(module, code)
    plugins.register_builtin_converters()
    assert plugin in sys.modules
    trusted = TrustPolicy(trusted=(f"{module}.Halver",))
    entry = convert_models(tmp_path, {"halved": model}, policy=trusted)["halved"]
    assert entry.ok, entry.error
