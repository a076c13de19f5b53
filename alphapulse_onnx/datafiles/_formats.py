"""What the sample reader, the table readers and the writers agree on about data files.

The ``-`` name for stdin/stdout, suffixes, pyarrow for Parquet (only when a Parquet file is used),
and the rule that tells a CSV header from a first row of numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alphapulse_onnx.errors import DataFileError

STDIO = "-"  # as an input: stdin; as an output: stdout
PARQUET_HINT = "install the [parquet] extra: pip install 'alphapulse-onnx[parquet]'"


def suffix(name: str) -> str:
    return Path(name).suffix.lower()


def require_pyarrow() -> Any:
    """The pyarrow module (with ``pyarrow.parquet`` loaded), or a one-line hint to install it."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataFileError("Parquet needs pyarrow", hint=PARQUET_HINT) from None
    return pyarrow


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def looks_like_header(cells: list[str]) -> bool:
    """The first cell that is not a number decides: a header when it holds text."""
    for cell in cells:
        if not is_number(cell):
            return bool(cell.strip())
    return False
