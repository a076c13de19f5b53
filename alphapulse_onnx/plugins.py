"""Converter plugins: where skl2onnx has no converter, a plugin module registers one.

A plugin is a module that, when imported, calls ``skl2onnx.update_registered_converter`` for its
estimator classes (a shape calculator and a converter). apo imports plugins from the
``alphapulse_onnx.converters`` entry-point group and from ``--plugin module`` on the command line.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points

from alphapulse_onnx.errors import InputError

ENTRY_POINT_GROUP = "alphapulse_onnx.converters"
_LOCK = threading.Lock()
_loaded: set[str] = set()


def load_plugin(module: str) -> None:
    """Import a plugin module once; a missing or broken one is a usage error naming it."""
    from alphapulse_onnx import converters

    converters.register_all()  # apo's converters first, so the plugin's registration wins
    with _LOCK:
        if module in _loaded:
            return
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise InputError(
                f"converter plugin {module!r} failed to import: {type(exc).__name__}: {exc}",
                hint="check --plugin and that the module is importable (PYTHONPATH)",
            ) from exc
        _loaded.add(module)


def register_builtin_converters() -> None:
    """Register apo's own converters, then import every plugin of the entry-point group.

    User plugins come last, so a plugin may replace a converter apo ships.
    """
    from alphapulse_onnx import converters

    converters.register_all()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        load_plugin(entry.module)
