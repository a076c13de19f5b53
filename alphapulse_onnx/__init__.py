"""apo: compile scikit-learn model registries to ONNX, prove parity, benchmark and serve them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from alphapulse_onnx.errors import (
    ApoError,
    ConversionError,
    DataFileError,
    ExitCode,
    InputError,
    InvalidInputError,
    ManifestError,
    ModelLoadError,
    ParityError,
    TamperError,
    UnknownModelError,
    UnsupportedModelError,
    UntrustedModelError,
)

if TYPE_CHECKING:  # imported lazily below: `apo --version` must not load scikit-learn
    from alphapulse_onnx.batching import BatchPredictor
    from alphapulse_onnx.store import Registry, Store

_LAZY = {
    "Store": "alphapulse_onnx.store",
    "Registry": "alphapulse_onnx.store",  # the name of Store before 0.2
    "BatchPredictor": "alphapulse_onnx.batching",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alphapulse_onnx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ApoError",
    "BatchPredictor",
    "ConversionError",
    "DataFileError",
    "ExitCode",
    "InputError",
    "InvalidInputError",
    "ManifestError",
    "ModelLoadError",
    "ParityError",
    "Registry",
    "Store",
    "TamperError",
    "UnknownModelError",
    "UnsupportedModelError",
    "UntrustedModelError",
    "__version__",
]
