"""apo: compile scikit-learn model registries to ONNX, prove parity, benchmark and serve them.

Two folders: a *registry* holds your trained model files; its *store* (``REGISTRY/onnx`` by
default) holds what apo writes: one ONNX artifact per model and ``manifest.json``.

The modules, by job (docs/explanation/architecture.md walks a model and a request through them):

- command line: ``cli`` (flags, one error boundary), ``cli_base`` (parsing: one-line usage
  errors, shell completion), ``commands/`` (one module per verb, ``info`` among them: options
  in, typed events out, never prints), ``views/`` (how each verb looks; ``cells`` shared),
  ``render`` (tables that fit the width, progress, messages).
- contracts: ``errors`` (exit codes, one-line failures), ``causes`` (why a model failed, in a few
  words), ``manifest`` (+ ``measurements``, what bench records), ``numbers`` (floats with the
  digits they carry), ``_fsutil`` (atomic files, hashes), ``lock`` (one writer per store).
- reading models: ``discovery`` (which files are models), ``loading/`` (the only unpickler:
  rebuilds data, never runs the file's code; ``wrappers``, ``boosters``, ``frames``, ``legacy``
  and ``upgrades/`` for what real files hold), ``plugins`` (converter plugins).
- compiling and proving: ``signature`` (what a model takes), ``input_contract`` (missing values,
  infinities, huge magnitudes), ``probing`` and ``column_probes`` (rows that exercise it),
  ``conversion`` and ``converters/`` (skl2onnx and apo's own converters), ``parity`` (does the
  artifact answer alike), ``checking`` (convert's and validate's shared check), ``origin/``
  (the artifact against the library versions that saved the model).
- serving: ``store`` (``Store`` and its models), ``serving`` (onnxruntime and scikit-learn
  engines), ``feeds`` (caller's rows to an engine's input), ``runtime`` (the only onnxruntime
  import), ``batching`` (``BatchPredictor``), ``prediction_columns``, ``datafiles/`` (rows in,
  predictions out), ``distributed`` (Dask).
- measuring and scaling: ``benchmark`` (the timing harness), ``engines`` (what bench times),
  ``tuning``, ``variants`` (FP16/INT8), ``parallel`` (crash-isolating worker pool).
"""

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
