"""apo: compile scikit-learn model registries to ONNX, prove parity, benchmark and serve them."""

from __future__ import annotations

__version__ = "0.1.0"

from alphapulse_onnx.errors import (  # noqa: E402  (re-exported after __version__, which manifest reads)
    ApoError,
    ConversionError,
    DataFileError,
    ExitCode,
    InputError,
    ManifestError,
    ModelLoadError,
    ParityError,
    TamperError,
    UnsupportedModelError,
    UntrustedModelError,
)

__all__ = [
    "ApoError",
    "ConversionError",
    "DataFileError",
    "ExitCode",
    "InputError",
    "ManifestError",
    "ModelLoadError",
    "ParityError",
    "TamperError",
    "UnsupportedModelError",
    "UntrustedModelError",
    "__version__",
]
