"""Data files in and out: rows of features read from files, prediction tables written back.

- ``samples``: whole ``.npy``/``.csv`` files of rows for ``apo convert/validate --sample``.
- ``readers``: ``open_table`` streams ``.csv``, ``.npy``, ``.parquet``, ``.jsonl`` or stdin in
  chunks of rows for ``apo predict``.
- ``writers``: ``open_writer`` writes prediction tables chunk by chunk, atomically for files.
"""

from __future__ import annotations
