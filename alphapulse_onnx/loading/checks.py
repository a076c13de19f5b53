"""What the loader's checks share: the token a pickle's globals become, the refusal, the
context a reconstructor may ask of the pickle machine, and the argument checks themselves.

Kept apart from the lists (``roles``) and the reconstructors that use them, so each of those
modules reads as one table plus its own logic.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

Role = Literal["model", "reconstructor", "value"]


@dataclass(frozen=True, eq=False)
class Name:
    """A role-(a) or role-(b) global, as the pickle machine holds it: opaque, never callable.

    Only the loader's own checks unwrap ``target``; a ``Name`` left in a loaded object graph is
    refused after loading, so nothing downstream ever receives one.
    """

    dotted: str
    role: Role
    target: Any
    trusted: bool = False

    __hash__ = None  # type: ignore[assignment]  # never a dict key or set member

    def __repr__(self) -> str:
        return f"<{self.role} {self.dotted}>"


class Context(Protocol):
    """What a reconstructor may ask of the pickle machine that calls it."""

    def charge(self, nbytes: int, what: str) -> None: ...
    def fresh(self, obj: Any) -> Any: ...
    def refuse(self, message: str) -> Refused: ...
    def instantiate(self, cls: Any, *, via: str) -> Any: ...
    def unbuilt(self, obj: Any) -> bool: ...

    checked_dtypes: dict[int, Any]


class Refused(Exception):
    """The file tried something the loader does not do; ``str`` is the reason, one line."""


_MAX_DIMS = 32
DTYPE_CODE = re.compile(r"^[A-Za-z?][A-Za-z0-9]{0,15}$")  # numpy type codes: f8, V64, O8...
PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def is_int(value: Any) -> bool:
    return type(value) is int or (isinstance(value, np.integer) and not isinstance(value, bool))


def whole_numbers(args: tuple[Any, ...], ctx: Context, what: str) -> tuple[int, ...]:
    if all(type(a) is int for a in args):
        return args
    if not all(is_int(a) for a in args):
        raise ctx.refuse(f"{what} was given {kinds(args)}, not whole numbers")
    return tuple(int(a) for a in args)


def kinds(args: Iterable[Any]) -> str:
    return "(" + ", ".join(type_name(a) for a in args) + ")"


def type_name(value: Any) -> str:
    """How a refusal names a value: a global by its dotted name, anything else by its type."""
    if isinstance(value, Name):
        return value.dotted
    if not isinstance(value, type) and callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', None) or '?'}.{value.__qualname__}"
    cls = value if isinstance(value, type) else type(value)
    return f"{cls.__module__}.{cls.__qualname__}".removeprefix("builtins.")


def shape_of(value: Any, ctx: Context, what: str) -> tuple[int, ...]:
    if type(value) is not tuple or len(value) > _MAX_DIMS:
        raise ctx.refuse(f"{what} has a shape that is not a short tuple: {type_name(value)}")
    for dim in value:
        if type(dim) is not int and not is_int(dim):
            raise ctx.refuse(f"{what}'s shape holds {type_name(dim)}, not a whole number")
        if dim < 0:
            raise ctx.refuse(f"{what} has a negative dimension {value}")
    return tuple(int(d) for d in value) if any(type(d) is not int for d in value) else value


def size_of(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def check_dtype(value: Any, ctx: Context, what: str) -> np.dtype[Any]:
    """A numpy dtype whose state is set (and can no longer change), with a safe layout."""
    if not isinstance(value, np.dtype):
        raise ctx.refuse(f"{what} was given {type_name(value)} where a numpy dtype belongs")
    if id(value) in ctx.checked_dtypes:
        return value
    if ctx.unbuilt(value):
        raise ctx.refuse(f"{what} was given a numpy dtype before its state was set")
    if value.names is not None or value.subdtype is not None:
        check_layout(value, ctx)
    ctx.checked_dtypes[id(value)] = value  # its state is set: it can no longer change
    return value


def check_layout(dtype: np.dtype[Any], ctx: Context) -> None:
    """Refuse record dtypes that could make numpy read one field as another (objects, overlap)."""
    if dtype.names is None:
        if dtype.subdtype is not None and dtype.subdtype[0].hasobject:
            raise ctx.refuse("the file declares a sub-array dtype of Python objects")
        return
    spans = []
    for name in dtype.names:
        field = dtype.fields[name]  # type: ignore[index]
        field_dtype, offset = field[0], field[1]
        if field_dtype.hasobject:
            raise ctx.refuse(f"the file declares a record dtype with an object field {name!r}")
        if offset < 0 or offset + field_dtype.itemsize > dtype.itemsize:
            raise ctx.refuse(f"the file declares a record field {name!r} outside its record")
        spans.append((offset, offset + field_dtype.itemsize))
    spans.sort()
    if any(end > start for (_, end), (start, _) in itertools.pairwise(spans)):
        raise ctx.refuse("the file declares a record dtype whose fields overlap")


def model_target(value: Any, ctx: Context, what: str) -> type:
    """The class behind a role-(a) token (or a trusted class), for a reconstructor argument."""
    if isinstance(value, Name) and (value.role == "model" or value.trusted):
        target: type = value.target
        return target
    raise ctx.refuse(f"{what} was given {type_name(value)}, which is not a model class")


def data_bytes(value: Any, ctx: Context, what: str) -> bytes | bytearray:
    if isinstance(value, (bytes, bytearray)):
        return value
    if type(value) is str:  # Python 2 pickles read with encoding="latin1"
        return value.encode("latin1")
    raise ctx.refuse(f"{what} was given {type_name(value)} where raw bytes belong")
