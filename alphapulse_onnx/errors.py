"""The error tree and exit codes: the contract that CI scripts rely on."""

from __future__ import annotations

import traceback
from enum import IntEnum
from pathlib import Path
from typing import ClassVar


class ExitCode(IntEnum):
    """Process exit codes, documented in the README and docs/reference/cli.md."""

    OK = 0
    FAILED = 1  # the work ran and something failed: a model, a parity or tamper check
    USAGE = 2  # the work could not start: bad flags, missing path, unreadable data or manifest
    INTERRUPTED = 130


class ApoError(Exception):
    """A failure a user can act on; its ``str`` is the one line they see."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED

    def __init__(
        self, message: str, *, path: Path | str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        line = f"{self.path}: {self.message}" if self.path else self.message
        return one_line(f"{line}; hint: {self.hint}" if self.hint else line)


class InputError(ApoError):
    """Bad input given to a command: a missing path, an unreadable data file, bad options."""

    exit_code = ExitCode.USAGE


class ManifestError(InputError):
    """A manifest that cannot be read or does not follow the schema."""


class DataFileError(InputError):
    """A data file (samples, prediction inputs) that cannot be read as rows of features."""


class InvalidInputError(DataFileError, ValueError):
    """Rows a model cannot take: wrong shape or columns, a cell that is not a number.

    ``row`` (0-based position in the rows given) and ``column`` locate a bad cell when known, so a
    caller reading a file can restate them in the file's own terms.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None,
                 row: int | None = None, column: str | int | None = None,
                 detail: str | None = None) -> None:  # fmt: skip
        super().__init__(message, path=path, hint=hint)
        self.row = row
        self.column = column
        self.detail = detail or message


class UnknownModelError(InputError, KeyError):
    """A model name that the store's manifest does not list."""

    def __str__(self) -> str:  # KeyError would quote the message
        return ApoError.__str__(self)


class ModelLoadError(ApoError):
    """A model file that cannot be loaded: empty, truncated, not a model, unfitted."""


class UntrustedModelError(ModelLoadError):
    """A model file that references code outside the allowlist; nothing of it was run."""


class UnsupportedModelError(ApoError):
    """An estimator that no registered converter handles."""


class ConversionError(ApoError):
    """A converter that failed, or produced a graph that onnx or onnxruntime reject."""


class ParityError(ApoError):
    """An artifact whose answers differ from its source model beyond the tolerances."""


class TamperError(ApoError):
    """An artifact or source whose hash no longer matches the manifest."""


class ProviderError(ApoError):
    """An execution provider that was asked for but does not run here."""


class LockError(InputError):
    """Another apo process holds the output folder."""


QUOTE_LIMIT = 80  # characters of a user's value (a cell, a column name) quoted in an error


def quoted(value: object, limit: int = QUOTE_LIMIT, *, repr_: bool = True) -> str:
    """``value`` as an error line quotes it: its repr (or text), at most ``limit`` characters
    plus a count of the rest, so a huge cell never floods the terminal."""
    text = repr(value) if repr_ else one_line(str(value))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def one_line(text: str) -> str:
    """``text`` with line breaks shown as escapes: an error is always one line."""
    if "\n" not in text and "\r" not in text:
        return text
    return text.replace("\r", "\\r").replace("\n", "\\n")


def first_line(value: object, limit: int = 200) -> str:
    """The first line of an exception's (or any value's) text, shortened; its type if empty."""
    lines = str(value).strip().splitlines()
    return (lines[0] if lines else type(value).__name__)[:limit]


def described(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line`` for an exception apo did not raise itself."""
    return (
        f"{type(exc).__name__}: {first_line(exc, limit)}"
        if str(exc).strip()
        else (type(exc).__name__)
    )


def failure_line(subject: str | None, exc: BaseException, *, stage: str) -> str:
    """The one line a model that failed shows: apo's own error as it reads (prefixed with
    ``subject``, the model, when it names no file), anything else as an internal error at
    ``stage`` and where it was raised (a bug in apo or a library; ``--debug`` shows more)."""
    prefix = f"{subject}: " if subject else ""
    if isinstance(exc, ApoError):
        return str(exc) if exc.path else f"{prefix}{exc}"
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    at = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{prefix}internal error during {stage}: {described(exc)}{at}"
