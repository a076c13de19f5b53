"""apo converter plugin for ``column_dropper.ColumnDropper``.

Importing this module registers, with skl2onnx, a shape calculator (what the step outputs) and a
converter (the ONNX nodes that compute it). Use it with
``apo convert --plugin column_dropper_onnx``, or advertise it to every apo run through the
``alphapulse_onnx.converters`` entry-point group::

    [project.entry-points."alphapulse_onnx.converters"]
    column_dropper = "column_dropper_onnx"
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from column_dropper import ColumnDropper
from onnx import TensorProto
from skl2onnx import update_registered_converter


def column_dropper_shape(operator: Any) -> None:
    """One output of the input's type, with ``len(keep_)`` columns."""
    kept = len(operator.raw_operator.keep_)
    output = copy.deepcopy(operator.inputs[0].type)
    output.shape = [operator.inputs[0].get_first_dimension(), kept]
    operator.outputs[0].type = output


def column_dropper_converter(scope: Any, operator: Any, container: Any) -> None:
    """Gather the kept column positions along axis 1."""
    keep = scope.get_unique_variable_name("keep")
    positions = np.asarray(operator.raw_operator.keep_, dtype=np.int64)
    container.add_initializer(keep, TensorProto.INT64, [len(positions)], positions.tolist())
    container.add_node(
        "Gather",
        [operator.inputs[0].full_name, keep],
        [operator.outputs[0].full_name],
        axis=1,
        name=scope.get_unique_operator_name("ColumnDropper"),
    )


update_registered_converter(
    ColumnDropper, "ApoExampleColumnDropper", column_dropper_shape, column_dropper_converter
)
