"""Provider probing and sessions with real onnxruntime; CUDA is tested by its fallback behaviour."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from alphapulse_onnx import runtime
from alphapulse_onnx._fsutil import atomic_write_bytes, sha256_bytes, sha256_file
from alphapulse_onnx.conversion import max_opset_for_onnxruntime, target_opset


def test_cpu_provider_really_runs() -> None:
    status = runtime.probe_provider("CPUExecutionProvider")
    assert status.listed and status.runs and status.reason is None


def test_unlisted_provider_is_reported_with_a_reason() -> None:
    status = runtime.probe_provider("NoSuchExecutionProvider")
    assert not status.runs and not status.listed
    assert status.reason


def test_cuda_is_either_running_or_explained() -> None:
    status = runtime.probe_provider("CUDAExecutionProvider")
    if not status.runs:
        assert status.reason  # "not in this build" on CPU wheels, "failed to load" on broken GPUs
    report = runtime.probe_all()
    assert report.runs("cpu")
    assert report.runs("cuda") == status.runs
    assert runtime.runnable_providers()[-1] == "CPUExecutionProvider"
    assert runtime.runnable_providers(["cpu"]) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("cuda", "CUDAExecutionProvider"), ("CPU", "CPUExecutionProvider"),
     ("CUDAExecutionProvider", "CUDAExecutionProvider"), ("TensorRT", "TensorrtExecutionProvider")],
)  # fmt: skip
def test_provider_short_names(given: str, expected: str) -> None:
    assert runtime.provider_name(given) == expected


@pytest.mark.parametrize(
    "settings",
    [
        runtime.SessionSettings(),
        runtime.SessionSettings(intra_op_threads=1, allow_spinning=False),
        runtime.SessionSettings(execution_mode="parallel", graph_optimization="basic"),
    ],
)
def test_session_settings_apply_and_round_trip(settings: runtime.SessionSettings) -> None:
    from alphapulse_onnx.runtime import _tiny_model

    session = runtime.make_session(_tiny_model(), settings=settings)
    result = runtime.run(session, {"x": np.ones((2, 4), dtype=np.float32)})[0]
    np.testing.assert_array_equal(result, 2.0)
    assert runtime.SessionSettings.from_json(settings.to_json()) == settings


def test_opset_follows_the_installed_runtime() -> None:
    assert max_opset_for_onnxruntime("1.16.3") == 19
    assert max_opset_for_onnxruntime("1.20.1") == 21
    assert max_opset_for_onnxruntime("1.32.0") == 23
    assert 17 <= target_opset() <= max_opset_for_onnxruntime(runtime.version() or "0")


def test_atomic_write_replaces_whole_file_with_readable_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sha256_file(target) == sha256_bytes(b"new contents")
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]  # no temp files left behind
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & 0o044  # group/other can read, like any file the user's umask allows
