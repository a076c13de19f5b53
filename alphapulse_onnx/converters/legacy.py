"""skl2onnx converters for apo's legacy classes (``loading.legacy``): their parents' converters.

The loader gives an old model one of these subclasses to keep behaviour scikit-learn removed.
skl2onnx's converters for the parent classes already read the settings that behaviour depends
on (``multi_class``, ``algorithm``), so each subclass is registered under its parent's alias.
"""

from __future__ import annotations


def register() -> None:
    from skl2onnx._supported_operators import sklearn_operator_name_map

    from alphapulse_onnx.loading.legacy import LEGACY_CLASSES

    for parent, legacy in LEGACY_CLASSES.items():
        sklearn_operator_name_map[legacy] = sklearn_operator_name_map[parent]
