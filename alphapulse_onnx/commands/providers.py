"""``apo providers``: which ONNX Runtime execution providers are listed, and which really run.

Besides whether each runs, the listing says what each is for here: a provider can be registered
and even pass the probe yet be of no use to apo (Azure's calls models hosted on Azure endpoints).
"""

from __future__ import annotations

from collections.abc import Sequence

from alphapulse_onnx import runtime
from alphapulse_onnx.errors import InputError
from alphapulse_onnx.runtime import ProvidersReport

# What a provider is for, when a plain "runs" would mislead or a missing one has a known remedy.
PURPOSE = {
    "AzureExecutionProvider": "calls models hosted on Azure endpoints; not a device apo runs "
    "artifacts on, so apo never picks it",
    "TensorrtExecutionProvider": "builds an engine per model (minutes); apo uses it only when "
    "asked (--provider tensorrt)",
}
REMEDY = {
    "CUDAExecutionProvider": "for NVIDIA GPUs: install onnxruntime-gpu, apo's [gpu] extra "
    "(see docs/how-to/gpu.md)",
}


def run() -> ProvidersReport:
    return runtime.probe_all(refresh=True)


def known_names() -> list[str]:
    """Every provider name onnxruntime knows (listed here or not), short names first."""
    full = set(runtime.SHORT_NAMES.values())
    ort = getattr(runtime, "ort", None)  # runtime's onnxruntime import; None when not installed
    if ort is not None:
        full.update(ort.get_all_providers())
    return [*runtime.SHORT_NAMES, *sorted(full)]


def check_names(names: Sequence[str], *, flag: str) -> list[str]:
    """The full names of ``names`` (``cuda`` -> ``CUDAExecutionProvider``); a name onnxruntime
    does not know is a usage error that lists the known ones."""
    known = set(known_names())
    out = []
    for name in names:
        full = runtime.provider_name(name)
        if full not in known:
            shorts = ", ".join(runtime.SHORT_NAMES)
            raise InputError(
                f"{flag}: unknown provider {name!r}; known: {shorts}, or a full name such as "
                "CUDAExecutionProvider",
                hint="`apo providers` lists those of this onnxruntime build",
            )
        out.append(full)
    return out


def missing(report: ProvidersReport, required: Sequence[str]) -> list[str]:
    """The required providers (``cuda``, ``CUDAExecutionProvider``...) that do not run here."""
    return [runtime.provider_name(r) for r in required if not report.runs(r)]


def notes(report: ProvidersReport) -> dict[str, str]:
    """A line per provider that needs one: why it does not run, or what it is (not) for."""
    out: dict[str, str] = {}
    for p in report.providers:
        parts = []
        if p.name in PURPOSE:
            parts.append(PURPOSE[p.name])
        if not p.runs and p.reason:
            parts.append(p.reason)
        if not p.runs and p.name in REMEDY:
            parts.append(REMEDY[p.name])
        if parts:
            out[p.name] = "; ".join(parts)
    return out
