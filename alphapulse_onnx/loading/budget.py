"""Memory a model file makes the loader hold, counted before it is allocated.

``Meter`` is one file's budget; ``MeteredReader`` is the (decompressed) stream the pickle
machine reads, which asks the meter before every read, so a declared length or a decompression
bomb is refused before its bytes exist. Reconstructors and setters charge what they allocate.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from alphapulse_onnx.loading.checks import Refused


class Meter:
    """The data a file makes the loader hold, against its limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise Refused(
                f"the file declares more than {_size(self.limit)} of data, the memory limit for "
                f"this file (reached at {what})"
            )

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


class MeteredReader:
    """The (decompressed) stream, read only in sizes the meter has already allowed."""

    def __init__(self, raw: BinaryIO, meter: Meter) -> None:
        self.raw = raw
        self.meter = meter

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise Refused("the file asks to read to its end at once")
        self.meter.charge(n, "pickle data")
        return self.raw.read(n)

    def readline(self) -> bytes:
        line = self.raw.readline(self.meter.remaining + 1)
        self.meter.charge(len(line), "pickle text")
        return line

    def readinto(self, buffer: Any) -> int:
        self.meter.charge(len(buffer), "pickle data")
        return self.raw.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
