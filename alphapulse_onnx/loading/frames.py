"""pandas objects inside fitted models, rebuilt from their data without pandas' unpickling code.

Models trained on DataFrames keep pandas objects: a ColumnTransformer's column ``Index`` (before
1.0), category_encoders' mappings (``Series`` and ``DataFrame``), string arrays backed by
pyarrow. pandas rebuilds them through internal functions (``_new_Index``, ``_unpickle_block``,
block managers, pyarrow's ``_restore_array``) that trust their arguments. The loader admits
those names only through the checkers here, which validate the saved data and build the object
with pandas' public constructors.

Wiring (the rest of the loader reads these tables): ``RECONSTRUCTORS`` joins role (b),
``STANDINS`` maps pandas' internal classes to apo's data holders (role a), ``MODEL_CLASSES``
lists the pandas classes a file may make bare instances of, and ``SETTERS`` gives each its
vetted state setter, keyed by the class that defines ``__setstate__``.
"""

from __future__ import annotations

from typing import Any

from alphapulse_onnx.loading.reconstructors import Reconstructor

RECONSTRUCTORS: dict[str, Reconstructor] = {}
STANDINS: dict[str, type] = {}
MODEL_CLASSES: dict[str, tuple[str, str]] = {}  # dotted name in pickles -> (module, class)
SETTERS: dict[str, Any] = {}
