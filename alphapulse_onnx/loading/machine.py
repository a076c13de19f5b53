"""The restricted pickle machine: reads joblib and pickle files, builds data, runs nothing else.

It is Python's own pure-Python unpickler with every opcode that can reach code replaced:

- ``GLOBAL``/``STACK_GLOBAL``/``INST`` resolve names through ``roles.admit`` only; names of
  role (a) and (b) become opaque ``Name`` tokens, never the object itself.
- ``REDUCE``, ``NEWOBJ``, ``NEWOBJ_EX``, ``OBJ`` and ``INST`` call only a role-(b)
  reconstructor through its argument checker, or make a bare instance of a role-(a) class.
  Calling an instance, a method, a value or anything else is refused.
- ``BUILD`` sets state only on an object this load has just created and not yet given state
  (never a class, never twice), through ``state.setter_for``.
- ``APPEND``/``SETITEM``/``ADDITEMS`` touch only exact lists, dicts and sets (and apo's
  stand-ins), through the built-in methods, so no attribute of a loaded object is looked up.
- ``PERSID``, ``BINPERSID`` and the ``EXT`` opcodes are refused.

Everything read is counted before it is allocated (``Meter``): the bytes of the (decompressed)
stream, the arrays and trees the reconstructors make, and an estimate per container. Tuples and
frozensets, the containers Python hashes recursively, are capped in nesting depth as they are
built; the finished graph is walked once for depth and for any token left in it.
"""

from __future__ import annotations

import functools
import pickle
import pickletools
import sys
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

from alphapulse_onnx.loading import checks, integrity, reconstructors, roles, standins, state
from alphapulse_onnx.loading.budget import Meter, MeteredReader
from alphapulse_onnx.loading.checks import Name, Refused, type_name

MAX_DEPTH = 200
_CONTAINER = 64  # bytes charged per container made: about an empty dict's size
_SLOT = 16  # bytes charged per item stored in a container
_SETTLE = 2**20  # small structures are tallied locally and charged a MiB at a time
_CHUNK = 16 * 1024 * 1024


class ArraySpec:
    """joblib's ``NumpyArrayWrapper`` as the loader rebuilds it: a description, then the data."""


class SideFiles:
    """The array files beside a pickle in joblib's format before 0.10: only names that joblib
    wrote for this file (``<file>_<n>.npy`` / ``.z``), in its folder, read without pickles."""

    def __init__(self, path: Path) -> None:
        self.folder = path.parent
        self.prefix = f"{path.name}_"
        self.used: list[Path] = []  # in the order read, for the manifest's hashes

    def resolve(self, name: Any) -> Path:
        if (type(name) is not str or not name.startswith(self.prefix) or "/" in name
                or "\\" in name or name in (".", "..")
                or not name.endswith((".npy", ".z"))):  # fmt: skip
            raise Refused(f"the file names {name!r} as an array file beside it")
        found = self.folder / name
        if not found.is_file():
            raise Refused(f"the array file {name} beside the model is missing")
        return found


class Load(state.LoadContext):
    """One file's load: its policy, meter, and what is created but not yet given state."""

    def __init__(self, stream: MeteredReader, trust: Callable[[str, str], Any],
                 trusts_any: bool = False) -> None:  # fmt: skip
        self.stream = stream
        self.trusts_any = trusts_any
        self.meter = stream.meter
        self.trust = trust  # (module, name) -> trusted object, or None
        self.fresh_objects: dict[int, Any] = {}
        self.fresh_arrays = 0  # how many of those are arrays or dtypes (see ``sealed``)
        self.tuple_depth: dict[int, tuple[int, Any]] = {}
        self.notes: list[str] = []
        self.versions: dict[int, str] = {}
        self.renamed: list[tuple[str, str]] = []  # (old name, today's or "retired")
        self.links: list[tuple[Any, Any, Any, int | None]] = []
        self.side_files: SideFiles | None = None
        self.checked_dtypes: dict[int, Any] = {}

    # -- Context --
    def charge(self, nbytes: int, what: str) -> None:
        self.meter.charge(nbytes, what)

    def fresh(self, obj: Any) -> Any:
        self.fresh_objects[id(obj)] = obj
        if isinstance(obj, (np.ndarray, np.dtype)):
            self.fresh_arrays += 1
        return obj

    def refuse(self, message: str) -> Refused:
        return Refused(message)

    def unbuilt(self, obj: Any) -> bool:
        return self.fresh_objects.get(id(obj)) is obj

    def instantiate(self, cls: Any, *, via: str) -> Any:
        if isinstance(cls, Name):
            if cls.role == "model" or cls.trusted:
                target = cls.target
                self.charge(_CONTAINER, "an object")
                return self.fresh(target.__new__(target))
            reconstructor = reconstructors.RECONSTRUCTORS[cls.dotted]
            if reconstructor.bare is not None:  # hook for frames.py: a pandas manager, made bare
                self.charge(_CONTAINER, "an object")
                return self.fresh(reconstructor.bare())
            if reconstructor.instantiable:
                return self.fresh(ArraySpec())
            raise Refused(
                f"the file makes an instance of {cls.dotted} through {via}; it is a function the "
                "loader calls only with checked arguments"
            )
        raise Refused(f"the file makes an instance of {_describe(cls)} through {via}")

    # -- names and calls --
    def resolve(self, module: str, name: str, proto: int) -> Any:
        if proto < 3:
            module, name = roles.python3_name(module, name)
        trusted = self.trust(module, name)
        if trusted is not None:
            return trusted
        admitted = roles.admit(module, name)
        if admitted is None:
            moved = roles.admit_moved(module, name)
            if moved is None:
                raise NotAdmitted(module, name)
            admitted, current = moved
            self.renamed.append((f"{module}.{name}", current))
        return admitted[0] if isinstance(admitted, tuple) else admitted

    def call(self, func: Any, args: Any) -> Any:
        if type(args) is not tuple:
            raise Refused(f"the file calls {_describe(func)} with {type_name(args)} as arguments")
        if self.fresh_arrays:
            self.sealed(args, func)
        if isinstance(func, Name):
            if func.trusted:
                return func.target(*args)  # the user's own code, trusted by name
            if func.role == "reconstructor":
                reconstructor = reconstructors.RECONSTRUCTORS[func.dotted]
                return reconstructor.build(func.target, args, self)
            raise Refused(
                f"the file calls the model class {func.dotted} with arguments; model classes are "
                "rebuilt from their saved state, never called"
            )
        raise Refused(f"the file calls {_describe(func)}; only listed reconstructors are called")

    def set_state(self, inst: Any, saved: Any) -> Any:
        """BUILD: the object with its state set (joblib's array wrappers become their array)."""
        if self.fresh_objects.pop(id(inst), None) is not inst:
            if isinstance(inst, (Name, type)):
                raise Refused(f"the file sets attributes on {_describe(inst)}")
            raise Refused(
                f"the file sets the state of {_describe(inst)} that it did not just create "
                "(or sets it twice)"
            )
        cls = type(inst)
        if cls is ArraySpec:
            return self.read_wrapped_array(saved)
        if cls is np.ndarray or isinstance(inst, (np.ndarray, np.dtype)):
            self.fresh_arrays -= 1
        if self.fresh_arrays:
            self.sealed(saved.values() if type(saved) is dict else saved, inst)
        trusted = self.trusts_any and self.trust(cls.__module__, cls.__qualname__) is not None
        setter = state.setter_for(cls, trusted)
        if setter is None:
            owner = state.definer(cls, "__setstate__")
            raise Refused(
                f"{type_name(inst)} restores its state with {type_name(owner)}.__setstate__, "
                "which apo's loader has not vetted"
            )
        setter(inst, saved, self)
        return inst

    def sealed(self, values: Any, user: Any) -> None:
        """Arrays and dtypes handed on must have their state: setting it later would change
        memory that something built from them already relies on."""
        if type(values) not in (tuple, list, type({}.values())):
            return
        for value in values:
            if isinstance(value, (np.ndarray, np.dtype)) and self.unbuilt(value):
                raise Refused(f"the file hands {_describe(user)} a numpy {type(value).__name__} "
                              "before its state is set")  # fmt: skip

    # -- joblib's arrays, stored after their wrapper in the stream --
    def read_wrapped_array(self, saved: Any) -> Any:
        if type(saved) is dict and "filename" in saved:
            return self.read_side_array(saved)
        if type(saved) is not dict or not saved.keys() <= _WRAPPER_KEYS:
            raise Refused("the file gives joblib's array wrapper an unknown state")
        subclass = saved.get("subclass")
        if type(subclass) is not Name or subclass.dotted not in ("numpy.ndarray", "numpy.matrix"):
            raise Refused(f"the file wraps an array of type {type_name(subclass)}")
        shape = checks.shape_of(saved.get("shape"), self, "joblib's array")
        dtype = checks.check_dtype(saved.get("dtype"), self, "joblib's array")
        order = saved.get("order", "C")
        if order not in ("C", "F"):
            raise Refused(f"the file gives joblib's array the order {order!r}")
        count = checks.size_of(shape)
        if dtype.hasobject:
            self.charge(8 * count, "an object array")
            array = RestrictedUnpickler(self).load()
            if not (isinstance(array, np.ndarray) and array.dtype.hasobject
                    and array.shape == shape):  # fmt: skip
                raise Refused("the file's object array does not match its description")
            return array
        alignment = saved.get("numpy_array_alignment_bytes")
        raw = self.stream.raw
        if alignment is not None:
            padding = raw.read(1)
            if len(padding) != 1:
                raise EOFError("the array's padding is missing")
            raw.read(padding[0])
        nbytes = count * dtype.itemsize
        self.charge(nbytes, "an array")
        array = np.empty(count, dtype=dtype)
        view = memoryview(array.view(np.uint8).reshape(-1).data) if nbytes else memoryview(b"")
        offset = 0
        while offset < nbytes:
            got = raw.readinto(view[offset : offset + _CHUNK])  # type: ignore[attr-defined]
            if not got:
                raise EOFError("the array data ends early")
            offset += got
        array = array.reshape(shape[::-1]).transpose() if order == "F" else array.reshape(shape)
        if dtype.byteorder not in ("=", "|") and dtype.byteorder != _NATIVE:
            array = array.byteswap().view(dtype.newbyteorder("="))
        return array

    def read_side_array(self, saved: dict[str, Any]) -> Any:
        """joblib before 0.10: the array is in a ``.npy`` file (or a zlib ``.z`` file holding
        the raw bytes, described in the pickle) beside the model."""
        if self.side_files is None:
            raise Refused("the file refers to array files beside it, which only joblib files do")
        if not saved.keys() <= _SIDE_WRAPPER_KEYS:
            raise Refused("the file gives joblib's old array wrapper an unknown state")
        path = self.side_files.resolve(saved["filename"])
        self.side_files.used.append(path)
        subclass = saved.get("subclass")
        if subclass is not None and (
            type(subclass) is not Name or subclass.dotted not in ("numpy.ndarray", "numpy.matrix")
        ):
            raise Refused(f"the file wraps an array of type {type_name(subclass)}")  # fmt: skip
        if "state" not in saved:
            self.charge(path.stat().st_size, "an array file")
            return np.load(path, allow_pickle=False, mmap_mode=None)
        # ZNDArrayWrapper: (1, shape, dtype, is_fortran) here, the raw bytes zlib-compressed there
        described = saved["state"]
        if type(described) is not tuple or len(described) != 4:
            raise Refused("the file describes an old compressed array wrongly")
        shape = checks.shape_of(described[1], self, "joblib's old array")
        dtype = checks.check_dtype(described[2], self, "joblib's old array")
        if dtype.hasobject:
            raise Refused("the file keeps an object array in a side file")
        nbytes = checks.size_of(shape) * dtype.itemsize
        self.charge(nbytes, "an array")
        with path.open("rb") as handle:
            data = read_zfile(handle, nbytes)
        flat = np.frombuffer(data, dtype=dtype)
        return (flat.reshape(shape[::-1]).T if described[3] else flat.reshape(shape)).copy()

    # -- depth of hashable containers --
    def nested(self, container: Any, items: Any) -> Any:
        deepest = 0
        for item in items:  # a plain loop: this runs for every tuple in the file
            kind = type(item)
            if kind is tuple or kind is frozenset:
                known = self.tuple_depth.get(id(item))
                deepest = max(deepest, known[0] if known else 1)
        if not deepest:
            return container
        if deepest + 1 > MAX_DEPTH:
            raise Refused(f"the file nests tuples or frozensets more than {MAX_DEPTH} deep")
        self.tuple_depth[id(container)] = (deepest + 1, container)
        return container


_HASHED = (tuple, frozenset)
_WRAPPER_KEYS = frozenset(
    {"subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"}
)
_NATIVE = "<" if sys.byteorder == "little" else ">"
_SIDE_WRAPPER_KEYS = frozenset({"filename", "subclass", "allow_mmap", "init_args", "state"})
ZFILE_PREFIX = b"ZF"  # joblib before 0.10: "ZF", the length in hex (padded), then zlib data
_ZFILE_LENGTH = 19


def read_zfile(handle: BinaryIO, limit: int) -> bytes:
    """One zlib "Z-file" of joblib before 0.10, decompressed to at most ``limit`` bytes."""
    import zlib

    header = handle.read(len(ZFILE_PREFIX) + _ZFILE_LENGTH)
    if not header.startswith(ZFILE_PREFIX):
        raise Refused("an old joblib compressed file without its header")
    try:
        length = int(header[len(ZFILE_PREFIX) :].strip(), 16)
    except ValueError:
        raise Refused("an old joblib compressed file with an unreadable length") from None
    if length > limit:
        raise Refused(f"an old joblib compressed file declares {length} bytes, over the limit")
    following = handle.read(1)
    body = (b"" if following == b" " else following) + handle.read()
    decompressor = zlib.decompressobj()
    data = decompressor.decompress(body, length)
    if len(data) != length or decompressor.unconsumed_tail:
        raise Refused("an old joblib compressed file whose data does not match its length")
    return data


class NotAdmitted(Refused):
    """A global that no role admits."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


def _describe(value: Any) -> str:
    if isinstance(value, Name):
        return value.dotted
    if isinstance(value, type):
        return f"the class {type_name(value)}"
    if isinstance(value, (type(len), type(_describe))) or (
        callable(value) and hasattr(value, "__qualname__")
    ):
        module = getattr(value, "__module__", None) or "?"
        return f"the function {module}.{getattr(value, '__qualname__', '?')}"
    if hasattr(value, "__self__") and callable(value):
        return f"a method of {type_name(value.__self__)}"
    return f"an instance of {type_name(value)}"


_DICT_TYPES = (dict, OrderedDict, defaultdict, standins.LoadedBunch, standins.LoadedDict)
_BASE: dict[int, Callable[[Any], None]] = pickle._Unpickler.dispatch  # type: ignore[attr-defined]
_LIST_TYPES = (list, standins.RemainderColsList)


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined, misc]
    """Python's unpickler with every opcode that can reach code replaced (module docstring)."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    # The pure-Python unpickler's working state (untyped in typeshed).
    stack: list[Any]
    metastack: list[list[Any]]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]
    readline: Callable[[], bytes]
    proto: int
    memo: dict[int, Any]

    def __init__(self, load: Load) -> None:
        super().__init__(load.stream, fix_imports=True, encoding="latin1")
        self._load = load
        self._charge = load.meter.charge
        self._held = 0  # small structures (marks, memo slots, empty containers) not yet charged

    def _settle(self) -> None:
        held, self._held = self._held, 0
        self._charge(held, "small objects")

    def load(self) -> Any:
        root = super().load()
        self._settle()
        return root

    # -- names --
    def load_global(self) -> None:
        module = self.readline()[:-1].decode("utf-8")
        name = self.readline()[:-1].decode("utf-8")
        self.append(self._load.resolve(module, name, self.proto))

    def load_stack_global(self) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        if type(name) is not str or type(module) is not str:
            raise pickle.UnpicklingError("STACK_GLOBAL requires str")
        self.append(self._load.resolve(module, name, self.proto))

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        cls = self._load.resolve(module, name, self.proto)
        self._instantiate_marked(cls, self.pop_mark())

    def load_obj(self) -> None:
        args = self.pop_mark()
        cls = args.pop(0)
        self._instantiate_marked(cls, args)

    def _instantiate_marked(self, cls: Any, args: list[Any]) -> None:
        if args:
            self.append(self._load.call(cls, tuple(args)))
        else:
            self.append(self._load.instantiate(cls, via="OBJ/INST"))

    # -- calls --
    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        stack[-1] = self._load.call(stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._newobj(cls, args, {}))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._newobj(cls, args, kwargs))

    def _newobj(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if isinstance(cls, Name) and cls.trusted:
            target = cls.target
            return self._load.fresh(target.__new__(target, *args, **kwargs))
        if (isinstance(cls, Name) and cls.role == "reconstructor" and kwargs == {}
                and type(args) is tuple and args
                and reconstructors.RECONSTRUCTORS[cls.dotted].tuple_subclass):  # fmt: skip
            # A namedtuple's values are its constructor arguments: built through the checker.
            return self._load.call(cls, args)
        if args != () or kwargs != {}:
            raise Refused(
                f"the file makes an instance of {_describe(cls)} with constructor arguments; "
                "model classes are rebuilt from their saved state"
            )
        return self._load.instantiate(cls, via="NEWOBJ")

    # -- state --
    def load_build(self) -> None:
        saved = self.stack.pop()
        self.stack[-1] = self._load.set_state(self.stack[-1], saved)

    # -- containers: built-in methods on exact types only --
    def load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        if type(target) not in _LIST_TYPES:
            raise Refused(f"the file appends to {_describe(target)}")
        self._charge(_SLOT, "a list")
        list.append(target, value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) not in _LIST_TYPES:
            raise Refused(f"the file appends to {_describe(target)}")
        self._charge(_SLOT * len(items), "a list")
        list.extend(target, items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def _set_items(self, target: Any, items: list[Any]) -> None:
        kind = type(target)
        if kind not in _DICT_TYPES:
            raise Refused(f"the file sets items on {_describe(target)}")
        self._charge(_SLOT * len(items), "a dict")
        bunch = kind is standins.LoadedBunch
        setitem = dict.__setitem__ if bunch or kind is standins.LoadedDict else kind.__setitem__
        for i in range(0, len(items), 2):
            key = items[i]
            if type(key) is not str and not _key(key):
                raise Refused(f"the file uses {_describe(key)} as a dictionary key")
            if bunch and type(key) is str and key.startswith("__") and key.endswith("__"):
                raise Refused(f"the file sets {key} on a Bunch, which no model does")
            setitem(target, key, items[i + 1])

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise Refused(f"the file adds items to {_describe(target)}")
        if not all(_key(i) for i in items):
            raise Refused("the file puts something other than plain values in a set")
        self._charge(_SLOT * 2 * len(items), "a set")
        set.update(target, items)

    def load_dict(self) -> None:
        items = self.pop_mark()
        self.append({})
        self._set_items(self.stack[-1], items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        if not all(_key(i) for i in items):
            raise Refused("the file puts something other than plain values in a frozenset")
        self._charge(_CONTAINER + _SLOT * 2 * len(items), "a frozenset")
        self.append(self._load.nested(frozenset(items), items))

    def load_list(self) -> None:
        items = self.pop_mark()
        self._charge(_CONTAINER + _SLOT * len(items), "a list")
        self.append(items)

    def load_tuple(self) -> None:
        items = self.pop_mark()
        self._held += _CONTAINER + 8 * len(items)
        if self._held > _SETTLE:
            self._settle()
        self.append(self._load.nested(tuple(items), items))

    def load_tuple1(self) -> None:
        self.stack[-1] = self._load.nested((self.stack[-1],), self.stack[-1:])

    def load_tuple2(self) -> None:
        items = [self.stack.pop()]
        items.insert(0, self.stack.pop())
        self.append(self._load.nested(tuple(items), items))

    def load_tuple3(self) -> None:
        items = self.stack[-3:]
        del self.stack[-3:]
        self.append(self._load.nested(tuple(items), items))

    def load_empty_dictionary(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        self.append({})

    def load_empty_list(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        self.append([])

    def load_empty_set(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        self.append(set())

    # -- bookkeeping that holds memory of its own: a mark is a new list, a memo slot an entry --
    def load_mark(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        self.metastack.append(self.stack)
        self.stack = []
        self.append = self.stack.append

    def load_memoize(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        memo = self.memo
        memo[len(memo)] = self.stack[-1]

    def load_put(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        _BASE[pickle.PUT[0]](self)

    def load_binput(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        _BASE[pickle.BINPUT[0]](self)

    def load_long_binput(self) -> None:
        self._held += _CONTAINER
        if self._held > _SETTLE:
            self._settle()
        _BASE[pickle.LONG_BINPUT[0]](self)

    # -- what a model file never needs --
    def load_persid(self) -> None:
        raise Refused("the file uses persistent ids (PERSID), which model files never need")

    def load_ext(self) -> None:
        raise Refused("the file uses the extension registry (EXT1/2/4), which model files "
                      "never need")  # fmt: skip

    def load_stop(self) -> None:
        root = self.stack.pop()
        if isinstance(root, (Name, ArraySpec)):
            raise Refused(f"the file's whole content is {_describe(root)}")
        raise pickle._Stop(root)  # type: ignore[attr-defined]

    for _opcode, _method in (
        (pickle.GLOBAL, load_global), (pickle.STACK_GLOBAL, load_stack_global),
        (pickle.INST, load_inst), (pickle.OBJ, load_obj), (pickle.REDUCE, load_reduce),
        (pickle.NEWOBJ, load_newobj), (pickle.NEWOBJ_EX, load_newobj_ex),
        (pickle.BUILD, load_build), (pickle.APPEND, load_append),
        (pickle.APPENDS, load_appends), (pickle.SETITEM, load_setitem),
        (pickle.SETITEMS, load_setitems), (pickle.ADDITEMS, load_additems),
        (pickle.DICT, load_dict), (pickle.FROZENSET, load_frozenset), (pickle.LIST, load_list),
        (pickle.TUPLE, load_tuple), (pickle.TUPLE1, load_tuple1), (pickle.TUPLE2, load_tuple2),
        (pickle.TUPLE3, load_tuple3), (pickle.EMPTY_DICT, load_empty_dictionary),
        (pickle.EMPTY_LIST, load_empty_list), (pickle.EMPTY_SET, load_empty_set),
        (pickle.PERSID, load_persid), (pickle.BINPERSID, load_persid),
        (pickle.EXT1, load_ext), (pickle.EXT2, load_ext), (pickle.EXT4, load_ext),
        (pickle.STOP, load_stop), (pickle.MARK, load_mark), (pickle.MEMOIZE, load_memoize),
        (pickle.PUT, load_put), (pickle.BINPUT, load_binput),
        (pickle.LONG_BINPUT, load_long_binput),
    ):  # fmt: skip
        dispatch[_opcode[0]] = _method
    del _opcode, _method


def _key(value: Any) -> bool:
    """Dict keys and set members: plain values, so hashing them runs no code of the file's."""
    if type(value) in (str, int, float, bool, bytes, type(None), complex) or isinstance(
        value, np.generic
    ):
        return True
    return type(value) in (tuple, frozenset) and all(_key(v) for v in value)


# Opcodes kept from Python's unpickler: they push plain values or move them between the stack
# and the memo, and none of them looks up or calls anything (a test holds the list complete).
PURE_OPCODES = frozenset(
    op.name for op in pickletools.opcodes
    if op.name not in {
        "GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
        "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "DICT", "FROZENSET", "LIST",
        "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET",
        "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "STOP", "MARK", "MEMOIZE", "PUT",
        "BINPUT", "LONG_BINPUT",
    }
)  # fmt: skip


def walk(root: Any, limit: int) -> None:
    """Refuse a finished graph that still holds a token or nests deeper than ``MAX_DEPTH``.

    Iterative, so a deep graph cannot overflow the stack here; ``limit`` caps the objects
    visited (the meter has already bounded how many there can be).
    """
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        obj, depth = stack.pop()
        kind = type(obj)
        if kind in _ATOMS or (kind is np.ndarray and not obj.dtype.hasobject):
            continue
        if kind is Name or kind is ArraySpec:
            raise Refused(f"the file stores {_describe(obj)} inside the model as data")
        if id(obj) in seen or isinstance(obj, (np.generic, np.dtype, type)):
            continue
        if depth > MAX_DEPTH:
            raise Refused(f"the file nests objects more than {MAX_DEPTH} deep")
        seen.add(id(obj))
        if len(seen) > limit:
            raise Refused("the file holds more objects than its size allows")
        depth += 1
        if kind is dict or isinstance(obj, dict):
            stack.extend((child, depth) for child in obj.values())
        elif kind in (list, tuple, set, frozenset) or isinstance(obj, (list, tuple, set)):
            stack.extend((child, depth) for child in obj)
        elif isinstance(obj, np.ndarray):
            stack.extend((child, depth) for child in obj.ravel().tolist())
        elif kind is functools.partial:
            stack.extend(((obj.args, depth), (obj.keywords, depth)))
        try:
            attributes = object.__getattribute__(obj, "__dict__")
        except AttributeError:
            continue
        if type(attributes) is dict:
            stack.extend((value, depth) for value in attributes.values())


_ATOMS = frozenset({str, bytes, bytearray, int, float, complex, bool, type(None)})


def unpickle(handle: BinaryIO, meter: Meter, trust: Callable[[str, str], Any], trusts_any: bool,
             side_files: SideFiles | None = None) -> tuple[Any, Load]:  # fmt: skip
    """Read one pickle (joblib's or plain) from ``handle``; return the object and its load.

    ``side_files``: where the arrays of joblib's format before 0.10 live (``model.pkl_01.npy``
    beside ``model.pkl``), for files written in it."""
    load = Load(MeteredReader(handle, meter), trust, trusts_any)
    load.side_files = side_files
    root = RestrictedUnpickler(load).load()
    integrity.check_links(load.links, load)
    walk(root, limit=max(meter.limit // _CONTAINER, 1))
    return root, load
