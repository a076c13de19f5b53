"""The only onnxruntime import: sessions, and which execution providers *actually run* here.

onnxruntime lists a provider when its library is in the wheel, not when it works: a CUDA provider
whose CUDA/cuDNN libraries are missing is listed, then silently replaced by CPU when a session is
made. So a provider counts as running only after a tiny model ran on it and the session still
reports it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from alphapulse_onnx.errors import first_line

try:  # onnxruntime is a dependency, but a broken or absent install must leave the fallback working
    import onnxruntime as ort
except ImportError:  # pragma: no cover - exercised by the Store fallback tests in a subprocess
    ort = None

# Preference order for choosing a provider automatically: fastest first.
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)
# Only providers apo selects on its own; TensorRT builds engines for minutes, so it is opt-in.
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


def is_available() -> bool:
    return ort is not None


def version() -> str | None:
    return None if ort is None else str(ort.__version__)


def provider_name(name: str) -> str:
    """``cuda`` or ``CUDA`` or ``CUDAExecutionProvider`` -> ``CUDAExecutionProvider``."""
    short = name.strip().lower().removesuffix("executionprovider")
    return SHORT_NAMES.get(short, name)


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    listed: bool
    runs: bool
    reason: str | None = None
    device: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProvidersReport:
    providers: tuple[ProviderStatus, ...]
    versions: dict[str, str | None]
    warnings: tuple[str, ...] = field(default=())

    def runs(self, name: str) -> bool:
        wanted = provider_name(name)
        return any(p.name == wanted and p.runs for p in self.providers)

    def to_json(self) -> dict[str, Any]:
        return {
            "providers": [p.to_json() for p in self.providers],
            "versions": self.versions,
            "warnings": list(self.warnings),
        }


def _tiny_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    # onnxruntime's C++ logger writes provider-load failures straight to fd 2; we report them.
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def probe_provider(name: str) -> ProviderStatus:
    """Run a 1x4 Add on ``name`` alone and check that the session really used it."""
    if ort is None:
        return ProviderStatus(name, listed=False, runs=False, reason="onnxruntime is not installed")
    listed = name in ort.get_available_providers()
    if not listed:
        return ProviderStatus(
            name, listed=False, runs=False, reason="not in this onnxruntime build"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        with _quiet_native_stderr():
            session = ort.InferenceSession(_tiny_model(), options, providers=[name])
            used = session.get_providers()
            result = session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})[0]
    except Exception as exc:
        return ProviderStatus(name, listed=True, runs=False, reason=first_line(exc))
    if name not in used:
        return ProviderStatus(
            name, listed=True, runs=False,
            reason=f"listed, but its libraries failed to load (session fell back to {used[0]}); "
            "check the CUDA/cuDNN versions this onnxruntime build needs",
        )  # fmt: skip
    if not np.allclose(result, 2.0):
        return ProviderStatus(
            name, listed=True, runs=False, reason="ran, but computed wrong values"
        )
    return ProviderStatus(name, listed=True, runs=True, device=_device_name(name))


def _device_name(provider: str) -> str | None:
    if provider == "CPUExecutionProvider":
        return cpu_name()
    if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return _gpu_names()
    return None


@functools.cache
def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpu_names() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return ", ".join(names) or None


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def stack_versions() -> dict[str, str | None]:
    return {
        "onnxruntime": version(),
        "onnxruntime (cpu wheel)": _installed("onnxruntime"),
        "onnxruntime-gpu (wheel)": _installed("onnxruntime-gpu"),
        "onnx": _installed("onnx"),
        "skl2onnx": _installed("skl2onnx"),
        "scikit-learn": _installed("scikit-learn"),
        "numpy": _installed("numpy"),
    }


_probe_lock = threading.Lock()
_probe_cache: dict[str, ProviderStatus] = {}


def probe_all(*, refresh: bool = False) -> ProvidersReport:
    """Probe every provider this onnxruntime lists (cached per process)."""
    warnings: list[str] = []
    if _installed("onnxruntime") and _installed("onnxruntime-gpu"):
        warnings.append(
            "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's "
            "files, so uninstall both and install only onnxruntime-gpu (apo's [gpu] extra)"
        )
    if ort is None:
        return ProvidersReport((), stack_versions(), (*warnings, "onnxruntime is not installed"))
    names = list(ort.get_available_providers())
    for wanted in AUTO_PROVIDERS:
        if wanted not in names:
            names.append(wanted)
    statuses = []
    with _probe_lock:
        for name in names:
            if refresh or name not in _probe_cache:
                _probe_cache[name] = probe_provider(name)
            statuses.append(_probe_cache[name])
    order = {n: i for i, n in enumerate(PREFERRED_PROVIDERS)}
    statuses.sort(key=lambda p: (not p.runs, order.get(p.name, len(order)), p.name))
    return ProvidersReport(tuple(statuses), stack_versions(), tuple(warnings))


def runnable_providers(requested: Sequence[str] | None = None) -> list[str]:
    """Providers to hand a session, best first: the requested ones that run, else CUDA then CPU."""
    report = probe_all()
    if requested:
        wanted = [provider_name(r) for r in requested]
        return [w for w in wanted if report.runs(w)]
    return [p for p in AUTO_PROVIDERS if report.runs(p)]


ExecutionMode = Literal["sequential", "parallel"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]
_CHOICES = {
    "execution_mode": get_args(ExecutionMode),
    "graph_optimization": get_args(GraphOptimization),
}


@dataclass(frozen=True)
class SessionSettings:
    """Session options worth tuning; the defaults are onnxruntime's own."""

    intra_op_threads: int = 0  # 0: onnxruntime decides (one per physical core)
    inter_op_threads: int = 0
    execution_mode: ExecutionMode = "sequential"
    graph_optimization: GraphOptimization = "all"
    allow_spinning: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> SessionSettings:
        if not raw:
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        for key, choices in _CHOICES.items():  # a hand-edited value outside the set: the default
            if key in known and known[key] not in choices:
                del known[key]
        return cls(**known)


def session_options(settings: SessionSettings) -> Any:
    if ort is None:
        raise RuntimeError("onnxruntime is not installed")
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if settings.execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.graph_optimization]
    options.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    options.log_severity_level = 3
    return options


def make_session(model: bytes | str | os.PathLike[str], providers: Sequence[str] | None = None,
                 settings: SessionSettings | None = None) -> Any:  # fmt: skip
    """An ``InferenceSession`` on the given providers (CPU when none are given)."""
    if ort is None:
        raise RuntimeError("onnxruntime is not installed")
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        source,
        session_options(settings or SessionSettings()),
        providers=list(providers or ["CPUExecutionProvider"]),
    )


def run(session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return list(session.run(None, feeds))
