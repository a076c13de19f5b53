"""The command line itself: usage errors in one line, help without ``<bool>``, shell completion,
``apo providers --require`` with unknown names, ``--jobs 0``, stores without a manifest, trusted
classes that cannot be imported, and ``timings.reused`` as a boolean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from alphapulse_onnx import manifest
from alphapulse_onnx.cli import app

runner = CliRunner()
BOX = ("\u256d", "\u2502", "\u2570")  # the frame of Typer's error panel


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(["convert", "{reg}", "--nope"], "No such option: --nope", id="option"),
        pytest.param(["convert"], "Missing argument 'REGISTRY'", id="argument"),
        pytest.param(["convert", "{reg}", "--jobs", "x"], "'--jobs'", id="type"),
        pytest.param(["bench", "{reg}", "--repeat", "0"], "'--repeat'", id="range"),
        pytest.param(["predict", "m", "x.csv", "--engine", "spark"], "'--engine'", id="choice"),
        pytest.param(["conver"], "No such command 'conver'", id="command"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(registry: Path, args: list[str], says: str) -> None:
    result = runner.invoke(app, [a.replace("{reg}", str(registry)) for a in args])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: apo") and says in result.stderr
    assert "--help" in result.stderr
    assert not any(mark in result.stderr for mark in BOX)


@pytest.mark.parametrize(
    "command", ["convert", "validate", "bench", "predict", "info", "providers"]
)
def test_help_shows_no_bool_type_for_flags(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    assert "--json" in result.stdout


def test_arguments_read_alike_and_engine_lists_its_choices() -> None:
    convert = runner.invoke(app, ["convert", "--help"], terminal_width=200).stdout
    predict = runner.invoke(app, ["predict", "--help"], terminal_width=200).stdout
    assert "{REGISTRY}" in convert and "{registry}" not in convert
    assert "{MODEL} {INPUT}" in predict
    assert "local|dask" in predict


def test_root_help_lists_completion_and_no_bool() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    assert "<bool>" not in result.stdout
    assert "info" in result.stdout


@pytest.mark.parametrize(("shell", "says"), [("bash", "complete -o"), ("zsh", "#compdef apo"),
                                            ("fish", "complete --command apo")])  # fmt: skip
def test_show_completion_prints_the_script_of_the_shell_named(shell: str, says: str) -> None:
    # Named after the flag: whatever shell runs the tests (sh under CI, where Typer alone says
    # "Shell sh not supported." and exits 1).
    script = runner.invoke(app, ["--show-completion", shell])
    assert script.exit_code == 0, script.stderr
    assert "_APO_COMPLETE" in script.stdout and says in script.stdout


def test_show_completion_without_a_shell_it_knows_is_a_usage_error() -> None:
    unknown = runner.invoke(app, ["--show-completion", "tcsh"])
    assert unknown.exit_code == 2 and unknown.stderr.count("\n") == 1
    assert "no completion for the shell 'tcsh'" in unknown.stderr and "zsh" in unknown.stderr
    # Under sh (neither the parent shell nor $SHELL one apo completes): say how to name one.
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh here")
    apo = Path(sys.executable).with_name("apo")
    done = subprocess.run([sh, "-c", f"'{apo}' --show-completion"], capture_output=True,
                          text=True, env={**os.environ, "SHELL": sh}, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot tell which shell" in done.stderr and "--show-completion bash" in done.stderr


def test_shell_completion_completes_commands_and_options() -> None:
    words = runner.invoke(
        app, [], env={"_APO_COMPLETE": "complete_bash", "COMP_WORDS": "apo con", "COMP_CWORD": "1"}
    )
    assert words.stdout.split() == ["convert"]
    options = runner.invoke(
        app,
        [],
        env={"_APO_COMPLETE": "complete_bash", "COMP_WORDS": "apo bench --bud", "COMP_CWORD": "2"},
    )
    assert options.stdout.split() == ["--budget-s"]


def test_bash_completes_apo_with_the_script_it_shows(tmp_path: Path) -> None:
    """The script ``apo --show-completion bash`` prints, sourced by a real bash, completes a
    command and an option through the installed ``apo``."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    script = tmp_path / "apo.bash"
    script.write_text(runner.invoke(app, ["--show-completion", "bash"]).stdout)
    probe = (
        f"source '{script}'\n"
        'COMP_WORDS=(apo pred); COMP_CWORD=1; _apo_completion apo; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(apo info --st); COMP_CWORD=2; _apo_completion apo; echo "${COMPREPLY[@]}"\n'
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run([bash, "--norc", "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PATH": path}, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["predict", "--store"]


def test_providers_require_an_unknown_name_is_a_usage_error() -> None:
    result = runner.invoke(app, ["providers", "--require", "cdua"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "unknown provider 'cdua'" in result.stderr
    assert "cpu" in result.stderr and "cuda" in result.stderr
    assert runner.invoke(app, ["bench", "--providers", "gpu0"]).exit_code == 2


def test_providers_listing_explains_each_provider_that_needs_it() -> None:
    result = runner.invoke(app, ["providers", "--json"])
    listed = {p["name"]: p for p in json.loads(result.stdout)["providers"]}
    for name, provider in listed.items():
        if not provider["runs"]:
            assert provider["note"] and provider["reason"] in provider["note"]
        if name == "AzureExecutionProvider":  # registered, even runs, but of no use here
            assert "Azure endpoints" in provider["note"] and "never picks it" in provider["note"]
    cpu = listed["CPUExecutionProvider"]
    assert cpu["runs"] and cpu["note"] is None
    text = runner.invoke(app, ["providers"]).stdout
    for name, provider in listed.items():
        if provider["note"]:
            assert f"{name.removesuffix('ExecutionProvider')}: " in text


def test_jobs_0_means_one_worker_per_core_and_negative_is_an_error(registry: Path) -> None:
    result = runner.invoke(app, ["convert", str(registry), "--jobs", "0", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] == 3
    bad = runner.invoke(app, ["convert", str(registry), "--jobs", "-1"])
    assert bad.exit_code == 2 and "--jobs takes 0 (one per CPU core)" in bad.stderr


def test_bench_on_a_folder_without_a_manifest_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "no manifest.json in this folder" in result.stderr


def test_a_trusted_class_that_cannot_be_imported_says_so(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    (root / "clip.pkl").write_bytes(b"cno_such_module_xyz\nClip\n)\x81.")
    result = runner.invoke(app, ["convert", str(root), "--trust", "no_such_module_xyz.Clip"])
    assert result.exit_code == 1
    assert "no_such_module_xyz.Clip, trusted with --trust, which cannot be imported" in (
        result.stderr
    )
    assert "library" not in result.stderr.split("hint:")[0]  # not blamed on library versions
    assert "trusted code missing" in result.stdout


def test_reused_is_a_boolean_in_the_manifest(registry: Path) -> None:
    assert runner.invoke(app, ["convert", str(registry)]).exit_code == 0
    again = runner.invoke(app, ["convert", str(registry), "--json"])
    assert [e["reused"] for e in json.loads(again.stdout)["entries"]] == [True] * 3
    path = registry / "onnx" / "manifest.json"
    raw = json.loads(path.read_text())
    assert all(m["timings"]["reused"] is True for m in raw["models"])
    schema = json.loads(files("alphapulse_onnx").joinpath("manifest.schema.json").read_text())
    jsonschema.validate(raw, schema)
    raw["models"][0]["timings"]["reused"] = 1.0  # as older apo wrote it
    path.write_text(json.dumps(raw))
    entry = manifest.read(path).models[0]
    assert entry.timings["reused"] is True
    raw["models"][0]["timings"]["reused"] = 1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, schema)


def test_install_completion_writes_the_named_shells_script(tmp_path: Path) -> None:
    apo = Path(sys.executable).with_name("apo")
    home = {**os.environ, "HOME": str(tmp_path)}  # the rc files it edits: this test's own
    done = subprocess.run([str(apo), "--install-completion", "bash"], capture_output=True,
                          text=True, env=home, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "apo.sh"
    assert "_APO_COMPLETE" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
    assert f"bash completion for apo installed in {script}" in done.stderr
