"""``apo providers``: which ONNX Runtime execution providers are listed, and which really run."""

from __future__ import annotations

from collections.abc import Sequence

from alphapulse_onnx import runtime
from alphapulse_onnx.runtime import ProvidersReport


def run() -> ProvidersReport:
    return runtime.probe_all(refresh=True)


def missing(report: ProvidersReport, required: Sequence[str]) -> list[str]:
    """The required providers (``cuda``, ``CUDAExecutionProvider``...) that do not run here."""
    return [runtime.provider_name(r) for r in required if not report.runs(r)]
