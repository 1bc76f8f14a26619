"""Reading NVIDIA's ProGAN network pickles without TensorFlow and without running any of their code.

Owns the restricted unpickler, its bounds, and the typed record of what a pickle holds. An
official pickle (tkarras/progressive_growing_of_gans, `misc.save_pkl((G, D, Gs), ...)`) is a
tuple of three `tfutil.Network` objects; each pickles its `__getstate__` dict: version 2, name,
static_kwargs (the build function's arguments), build_module_src (the Python source of
networks.py, which the official `__setstate__` would EXECUTE), build_func_name and variables
(pairs of local variable name and numpy array).

`find_class` resolves only the globals such a file needs; every other global (os.system,
builtins.eval, subprocess.Popen, a foreign class, ...) is refused before anything is called:
- `tfutil.Network` -> `NetworkStandIn`, a plain object that records its state and does nothing;
- numpy array and scalar reconstruction (`numpy.core.multiarray._reconstruct` / `scalar` as numpy
  1.x writes them, `numpy._core...` as numpy 2 writes them, `numpy.core.numeric._frombuffer` for
  protocol 5), `numpy.ndarray`, `numpy.dtype` (the numeric dtypes of `DTYPE_CODES` only);
- `_codecs.encode(text, 'latin1')`, which protocol 2 uses for byte strings.
Containers, strings and numbers need no globals. `build_module_src` is kept only as a hash.

A few bytes of pickle can ask for any amount of memory or time, so the unpickler is Python's
own pure-Python one (`pickle._Unpickler`, whose opcodes can be checked one by one; the C
unpickler offers only `find_class`), with every step that could cost more than the file's size
checked BEFORE it is taken:
- the file: a regular file (a named pipe or device is refused before it is read) of at most
  `MAX_PICKLE_BYTES`, never read past the size it had when opened;
- opcodes run: at most `MAX_OBJECTS`; each creates or references at most one object;
- the loaded structure, walked without recursion: at most `MAX_OBJECTS` objects when a shared
  one counts at each place it is used ("billion laughs" through the memo), containers nested at
  most `MAX_DEPTH` deep, no container inside itself, integers of at most `MAX_INT_BITS` bits;
- dict keys and set items: plain strings and numbers only (hashing a shared nested tuple takes
  time exponential in its depth);
- numpy: only the calls numpy itself writes, with the arguments it writes (`_reconstruct` of
  shape (0,), array states of `DTYPE_CODES` dtypes whose data has exactly the bytes the shape
  needs, dtype states that only set the byte order), the bytes of all arrays together at most
  `MAX_ARRAY_BYTES` and never more than the file holds, counted before an array is filled.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import reprlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from progan_dsl.errors import UserError
from progan_dsl.fsutil import NotRegularFileError, open_regular

NETWORK_CLASS = ("tfutil", "Network")  # official tfutil.py: class Network
NETWORK_STATE_VERSION = 2  # official tfutil.Network.__getstate__: 'version': 2
ROLES = ("G", "D", "Gs")  # official train.py: misc.save_pkl((G, D, Gs), ...)
STATE_KEYS = (
    "version",
    "name",
    "static_kwargs",
    "build_module_src",
    "build_func_name",
    "variables",
)
THEANO_CLASS = ("network", "Network")  # the original Theano implementation's class
# The dtypes an array or scalar may have, as numpy names them in a pickle (np.dtype('f4', ...)):
# bool, signed and unsigned integers and IEEE floats. Weights are float32; nothing else (object,
# structured, subarray, string, datetime or platform-dependent long double dtypes) is needed.
DTYPE_CODES = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")
BYTE_ORDERS = ("<", ">", "|")  # what numpy writes in a dtype's state: little, big, not applicable

# ---- bounds -------------------------------------------------------------------------------------
# The official CelebA-HQ 1024x1024 pickle holds three networks of about 23.1M float32 parameters:
# 277 MB as written (protocol 4), 417 MB re-saved with protocol 2 (latin-1 text); 4,825 pickle
# opcodes (5,768 with protocol 2) building 566 objects; containers nested 5 deep (tuple > Network >
# state dict > variables list > (name, array) pair).
MAX_PICKLE_BYTES = 1 << 30  # 1 GiB: 3.9x the CelebA-HQ pickle, 2.6x its protocol-2 form
# All arrays together. A real pickle stores every byte of its arrays, so they are also held to the
# file's own size: more means shared references or a reconstruction multiplied them.
MAX_ARRAY_BYTES = MAX_PICKLE_BYTES
# Opcodes run, and objects in the loaded structure (a shared one counted at each place it is
# used, as every later repr, comparison or save visits it): 17x the CelebA-HQ pickle's opcodes,
# 170x its objects; that many take about a second to load and walk.
MAX_OBJECTS = 100_000
# Containers nested inside each other: 6x the official 5, and far below Python's recursion limit
# (1000), which repr, comparisons and saving the checkpoint's provenance rely on.
MAX_DEPTH = 32
MAX_INT_BITS = 64  # numpy's shapes and the static arguments are machine integers
MAX_DIMS = 8  # array dimensions: official variables have at most 4 (conv kernels [k, k, in, out])


class NetworkStandIn:
    """Takes the place of `tfutil.Network` while unpickling: keeps the state, runs nothing."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Brief(reprlib.Repr):
    """repr for messages about hostile values: bounded in length, depth and work."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 2, 40, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > MAX_INT_BITS:
            return f"<{x.bit_length()}-bit integer>"  # repr itself refuses over 4300 digits
        return super().repr_int(x, level)


brief = _Brief().repr


# The real numpy reconstructors, found through numpy's own pickling (so the numpy 1.x and 2.x
# module names both resolve to whatever this numpy uses).
_RECONSTRUCT: Any = np.zeros(1).__reduce__()[0]
_SCALAR: Any = np.float32(0).__reduce__()[0]
_FROMBUFFER: Any = np.zeros(1).__reduce_ex__(5)[0]
_RECONSTRUCT_ARGS = ((0,), (b"b", "b"))  # numpy's ndarray.__reduce__: the data follows in BUILD


def _check_dtype(dtype: Any, what: str) -> np.dtype:
    if not (
        isinstance(dtype, np.dtype)
        and dtype.fields is None
        and dtype.subdtype is None
        and f"{dtype.kind}{dtype.itemsize}" in DTYPE_CODES
    ):
        raise UserError(f"{what} of dtype {brief(dtype)} refused (only numeric dtypes)")
    return dtype


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not (
        type(shape) is tuple
        and len(shape) <= MAX_DIMS
        and all(type(n) is int and 0 <= n < 1 << MAX_INT_BITS for n in shape)
    ):
        raise UserError(
            f"{what} of shape {brief(shape)} refused (a shape is a tuple of at most {MAX_DIMS} "
            "sizes)"
        )
    return shape


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> Any:
    if cls is not np.ndarray:
        raise UserError(f"array reconstruction of {brief(cls)} refused (only numpy.ndarray)")
    if shape != _RECONSTRUCT_ARGS[0] or typecode not in _RECONSTRUCT_ARGS[1]:
        raise UserError(
            f"array reconstruction of shape {brief(shape)} and type {brief(typecode)} refused "
            "(numpy writes shape (0,) and type 'b' there, and the data in the array's state)"
        )
    return _RECONSTRUCT(cls, shape, typecode)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if spec not in DTYPE_CODES or align is not False:
        raise UserError(
            f"numpy dtype {brief(spec)} refused (only numeric dtypes: {', '.join(DTYPE_CODES)}; "
            "a network pickle holds float weights)"
        )
    return np.dtype(spec, copy=True)  # a private copy: its state (byte order) may follow


def _build_dtype(dtype: np.dtype, state: Any) -> None:
    """A dtype's BUILD: only the state numpy writes for a numeric dtype, byte order aside."""
    canonical = np.dtype(f"{dtype.kind}{dtype.itemsize}").__reduce__()[2]
    if not (
        type(state) is tuple
        and len(state) == len(canonical)
        and state[0] == canonical[0]
        and state[1] in BYTE_ORDERS
        and state[2:] == canonical[2:]
    ):
        raise UserError(
            f"numpy dtype state {brief(state)} refused (numpy writes {canonical!r} for "
            f"{dtype.kind}{dtype.itemsize}, at most changing the byte order)"
        )
    dtype.__setstate__(state)  # type: ignore[attr-defined]


def _scalar(dtype: Any, data: Any = None) -> Any:
    _check_dtype(dtype, "numpy scalar")
    if type(data) is not bytes or len(data) != dtype.itemsize:
        raise UserError(f"numpy scalar of data {brief(data)} refused (raw bytes of its dtype)")
    return _SCALAR(dtype, data)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    _check_dtype(dtype, "numpy buffer")
    shape = _check_shape(shape, "numpy buffer")
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)) or order not in (
        "C",
        "F",
    ):
        raise UserError(f"numpy buffer of {brief(buf)} in order {brief(order)} refused")
    needed = math.prod(shape) * dtype.itemsize
    with memoryview(buf) as view:
        if view.nbytes != needed:
            raise UserError(
                f"numpy buffer of {view.nbytes:,} bytes for shape {shape} of {dtype} refused "
                f"(that needs {needed:,})"
            )
    return _FROMBUFFER(buf, dtype, shape, order)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UserError(
            f"_codecs.encode({type(text).__name__}, {brief(encoding)}) refused "
            "(protocol 2 byte strings use 'latin1' only)"
        )
    return text.encode("latin1")


ALLOWED: dict[tuple[str, str], Any] = {
    NETWORK_CLASS: NetworkStandIn,
    ("numpy", "ndarray"): np.ndarray,  # only as _reconstruct's first argument
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED[(_module, "_reconstruct")] = _reconstruct
    ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED[(_module, "_frombuffer")] = _frombuffer
# What the pickle may call (REDUCE): the checked functions above. The classes are not called:
# tfutil.Network is created empty (NEWOBJ) and filled by BUILD; numpy.ndarray is never created
# directly (numpy.ndarray((1 << 40,)) would allocate a terabyte).
CALLABLE: tuple[Callable[..., Any], ...] = (_reconstruct, _dtype, _scalar, _frombuffer, _encode)
KEY_TYPES = (str, bytes, int, float, bool, type(None))  # dict keys and set items: cheap to hash


class RefusedGlobal(UserError):
    """The pickle names a global outside `ALLOWED`; nothing was called."""

    def __init__(self, path: Path, module: str, name: str) -> None:
        self.global_name = f"{module}.{name}"
        if (module, name) == THEANO_CLASS:
            why = (
                "a network of the original Theano implementation; only pickles of the "
                "TensorFlow version (tfutil.Network) can be imported"
            )
        else:
            why = (
                "not part of a ProGAN network pickle (allowed: tfutil.Network, numpy arrays, "
                "dtypes and scalars, plain containers); the file may be malicious"
            )
        super().__init__(
            f"{path}: refused to load: the pickle references {self.global_name}, "
            f"{why}. Nothing from the file was run."
        )


class _BoundedReader:
    """The file as the unpickler reads it: never past the size it had when opened (a length
    field cannot make a read allocate more), hashed on the way."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.left, self.hash = fh, size, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if not 0 <= n <= self.left:
            raise pickle.UnpicklingError(
                f"pickle data was truncated (it asks for {n:,} bytes; the file has "
                f"{self.left:,} left)"
            )
        return self._took(self.fh.read(n))

    def readline(self) -> bytes:
        return self._took(self.fh.readline(self.left))

    def _took(self, data: bytes) -> bytes:
        self.left -= len(data)
        self.hash.update(data)
        return data

    def sha256(self) -> str:
        """The hash of the whole file (reading what the unpickler left, in blocks)."""
        while self.left > 0 and self._took(self.fh.read(min(self.left, 1 << 22))):
            pass
        return self.hash.hexdigest()


# Python's pure-Python unpickler: the same opcodes as the C one, one method each (typeshed lists
# only its public API, hence Any).
_PurePythonUnpickler: Any = pickle._Unpickler


class RestrictedUnpickler(_PurePythonUnpickler):
    """The pure-Python unpickler with `find_class` limited to `ALLOWED`, every opcode counted,
    and the opcodes that call, create, fill or hash objects checked first (module docstring)."""

    def __init__(self, file: Any, path: Path, array_budget: int) -> None:
        super().__init__(file, encoding="latin1")  # as the official misc.load_pkl
        self.path = path
        self.globals_used: list[str] = []
        self.names: dict[int, str] = {}  # id of a resolved global -> its name, for messages
        self.opcodes = 0
        self.array_bytes = 0
        self.array_budget = array_budget  # min(MAX_ARRAY_BYTES, the file's size)

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise RefusedGlobal(self.path, module, name)
        qualified = f"{module}.{name}"
        if qualified not in self.globals_used:
            self.globals_used.append(qualified)
        self.names[id(found)] = qualified
        return found

    def _name(self, obj: Any) -> str:
        return self.names.get(id(obj), f"a {type(obj).__name__}")

    def count_array(self, nbytes: int) -> None:
        """Count an array's bytes before it is filled; refuse past the budget."""
        self.array_bytes += nbytes
        if self.array_bytes > self.array_budget:
            why = (
                "its arrays cannot hold more than the file itself: shared references or a "
                "reconstruction multiply them"
                if self.array_budget < MAX_ARRAY_BYTES
                else "progan-import's limit"
            )
            raise UserError(f"its arrays add up to more than {self.array_budget:,} bytes ({why})")

    # ---- calling and creating -----------------------------------------------------------------

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if not any(func is allowed for allowed in CALLABLE) or type(args) is not tuple:
            raise UserError(
                f"calling {self._name(func)} refused (a network pickle calls only numpy's "
                "reconstruction functions and _codecs.encode)"
            )
        value = func(*args)
        if isinstance(value, (np.ndarray, np.generic)):
            self.count_array(value.nbytes)
        self.stack[-1] = value

    def _new(self, cls: Any, args: Any) -> NetworkStandIn:
        if cls is not NetworkStandIn or type(args) not in (tuple, list) or args:
            raise UserError(
                f"creating {self._name(cls)} with arguments {brief(args)} refused (a network "
                "pickle creates only tfutil.Network, without arguments)"
            )
        return NetworkStandIn()

    def _instantiate(self, klass: Any, args: Any) -> None:  # INST, OBJ (protocols 0 and 1)
        self.append(self._new(klass, args))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, () if kwargs else args))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is NetworkStandIn:
            inst.__setstate__(state)
        elif type(inst) is np.ndarray:
            self._build_array(inst, state)
        elif isinstance(inst, np.dtype):
            _build_dtype(inst, state)
        else:
            raise UserError(
                f"setting the state of {brief(inst)} refused (a network pickle sets the state of "
                "tfutil.Network, numpy arrays and dtypes only)"
            )

    def _build_array(self, array: np.ndarray, state: Any) -> None:
        """An array's BUILD: numpy's (1, shape, dtype, is_fortran, data), its bytes counted and
        their number checked before numpy sees them."""
        if type(state) is not tuple or len(state) not in (4, 5) or state[:-4] not in ((), (1,)):
            raise UserError(
                f"array state {brief(state)} refused (numpy writes (1, shape, dtype, is_fortran, "
                "data))"
            )
        shape, dtype, fortran, data = state[-4:]
        shape = _check_shape(shape, "array")
        _check_dtype(dtype, "array")
        if type(fortran) is not bool or type(data) not in (bytes, bytearray, str):
            raise UserError(
                f"array state with order {brief(fortran)} and data {brief(data)} refused (numpy "
                "writes a flag and the raw bytes)"
            )
        needed = math.prod(shape) * dtype.itemsize
        self.count_array(needed)
        if len(data) != needed:
            raise UserError(
                f"array data of {len(data):,} bytes for shape {shape} of {dtype} refused (that "
                f"needs {needed:,})"
            )
        array.__setstate__(state)

    # ---- reading --------------------------------------------------------------------------------

    def load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)  # bounded by the file; the stock version allocates n bytes first
        if len(data) != n:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))

    # ---- hashing (dict keys, set items) -----------------------------------------------------

    def load_setitem(self) -> None:
        _check_keys(self.stack[-2:-1])
        super().load_setitem()

    def load_setitems(self) -> None:
        _check_keys(self.stack[::2])  # the items since MARK: key, value, key, value, ...
        super().load_setitems()

    def load_dict(self) -> None:
        _check_keys(self.stack[::2])
        super().load_dict()

    def load_additems(self) -> None:
        _check_keys(self.stack)
        super().load_additems()

    def load_frozenset(self) -> None:
        _check_keys(self.stack)
        super().load_frozenset()


def _check_keys(keys: Iterable[Any]) -> None:
    for key in keys:
        if type(key) not in KEY_TYPES:
            raise UserError(
                f"a dict key or set item {brief(key)} refused (a network pickle's dicts have "
                "string keys; hashing a nested value can take exponential time)"
            )


def _counted(op: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: RestrictedUnpickler) -> None:
        self.opcodes += 1
        if self.opcodes > MAX_OBJECTS:
            raise UserError(
                f"it runs more than {MAX_OBJECTS:,} pickle opcodes (an official network pickle "
                "runs about 5,000)"
            )
        op(self)

    return run


# Every opcode through its (possibly overridden) method, counted.
RestrictedUnpickler.dispatch = {
    code: _counted(getattr(RestrictedUnpickler, op.__name__))
    for code, op in _PurePythonUnpickler.dispatch.items()
}


def _children(obj: Any) -> tuple[Any, ...] | list[Any] | None:
    """What a container refers to (None for anything else)."""
    kind = type(obj)
    if kind is tuple or kind is list:
        return obj  # type: ignore[no-any-return]
    if kind is dict:
        return [x for pair in obj.items() for x in pair]
    if kind is set or kind is frozenset:
        return list(obj)
    if kind is NetworkStandIn:
        return (obj.state,)
    return None


def check_structure(root: Any) -> int:
    """The size of the loaded structure with a shared object counted at each place it is used,
    computed without recursion from each distinct object once; `UserError` past `MAX_OBJECTS`,
    `MAX_DEPTH` or `MAX_INT_BITS`, or for a container inside itself."""
    sizes: dict[int, int] = {}  # id -> size, for finished containers (all alive under root)
    on_path: set[int] = set()
    path: list[list[Any]] = []  # [container, its children, next child, size so far]

    def enter(obj: Any) -> int:
        """Push a container (0) or return a leaf's or finished container's size."""
        known = sizes.get(id(obj))
        if known is not None:
            return known
        if id(obj) in on_path:
            raise UserError("a container contains itself (an official pickle has no cycles)")
        kids = _children(obj)
        if kids is None:
            if type(obj) is int and obj.bit_length() > MAX_INT_BITS:
                raise UserError(
                    f"an integer of {obj.bit_length():,} bits (the numbers of a network pickle "
                    f"fit in {MAX_INT_BITS})"
                )
            return 1
        if len(path) >= MAX_DEPTH:
            raise UserError(
                f"containers nested deeper than {MAX_DEPTH} levels (an official pickle nests 5: "
                "tuple > Network > state > variables > (name, array))"
            )
        path.append([obj, kids, 0, 1])
        on_path.add(id(obj))
        return 0

    def add(size: int) -> None:
        if not path:
            return
        path[-1][3] += size
        if path[-1][3] > MAX_OBJECTS:
            raise UserError(
                f"its contents expand to more than {MAX_OBJECTS:,} objects (a shared object "
                "counts at each place it is used; an official pickle has about 600)"
            )

    total = enter(root)
    while path:
        frame = path[-1]
        obj, kids, i, size = frame
        if i < len(kids):
            frame[2] = i + 1
            add(enter(kids[i]))
        else:
            path.pop()
            on_path.discard(id(obj))
            sizes[id(obj)] = size
            add(size)
            total = size
    return total


@dataclass(frozen=True, eq=False)
class NetworkState:
    """One pickled `tfutil.Network` (version 2 state), its code left unrun."""

    role: str  # "G", "D" or "Gs": its place in the (G, D, Gs) tuple
    name: str  # the Network's name ('G', 'Gs', or 'G_paper' for converted Theano networks)
    build_func_name: str  # 'G_paper' / 'D_paper'
    static_kwargs: Mapping[str, Any]  # the build function's arguments
    variables: Mapping[str, np.ndarray]  # local variable name -> value, in the pickle's order
    build_module_src_sha256: str  # the embedded networks.py source, hashed, never executed

    @property
    def label(self) -> str:
        return f"{self.role} (network '{self.name}', {self.build_func_name})"


@dataclass(frozen=True, eq=False)
class OfficialPickle:
    """The three networks of an official pickle file."""

    path: Path
    G: NetworkState
    D: NetworkState
    Gs: NetworkState
    protocol: int  # pickle protocol of the file
    globals_used: tuple[str, ...]  # the globals it referenced (all of them allowed)
    sha256: str  # of the whole file

    @property
    def networks(self) -> tuple[NetworkState, NetworkState, NetworkState]:
        return (self.G, self.D, self.Gs)


def _protocol(head: bytes) -> int:
    """The protocol of a pickle from its first opcode (PROTO n for protocol >= 2)."""
    if len(head) >= 2 and head[0] == pickle.PROTO[0]:
        return head[1]
    return 1 if head[:1] in (b"}", b"]", b")", b"(") else 0


def _network(raw: Any, role: str, path: Path) -> NetworkState:
    where = f"{path}: {role} (item {ROLES.index(role) + 1} of the (G, D, Gs) tuple)"
    if not isinstance(raw, NetworkStandIn) or not isinstance(raw.state, dict):
        raise UserError(f"{where} is not a pickled tfutil.Network")
    state = raw.state
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise UserError(
            f"{where}: network state lacks {', '.join(missing)} (an official "
            f"version-{NETWORK_STATE_VERSION} state has {', '.join(STATE_KEYS)})"
        )
    if state["version"] != NETWORK_STATE_VERSION:
        raise UserError(
            f"{where}: network state version {state['version']!r} is not supported "
            f"(supported: {NETWORK_STATE_VERSION})"
        )
    for key in ("name", "build_func_name", "build_module_src"):
        if not isinstance(state[key], str):
            raise UserError(f"{where}: {key} must be a string, got {type(state[key]).__name__}")
    kwargs = state["static_kwargs"]
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise UserError(f"{where}: static_kwargs must be a dict of argument names")
    variables: dict[str, np.ndarray] = {}
    pairs = state["variables"]
    if not isinstance(pairs, (list, tuple, dict)):
        raise UserError(f"{where}: variables must be a list of (name, array) pairs")
    items = list(pairs.items()) if isinstance(pairs, dict) else pairs
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise UserError(f"{where}: variables must be (name, array) pairs, got {item!r:.80}")
        name, value = item
        if name in variables:
            raise UserError(f"{where}: variable {name} appears twice")
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            what = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise UserError(f"{where}: variable {name} is not a float array ({what})")
        variables[name] = value
    digest = hashlib.sha256(state["build_module_src"].encode("utf-8", "replace")).hexdigest()
    return NetworkState(
        role=role,
        name=state["name"],
        build_func_name=state["build_func_name"],
        static_kwargs=dict(kwargs),
        variables=variables,
        build_module_src_sha256=digest,
    )


def read_official_pickle(path: str | Path) -> OfficialPickle:
    """Read an official network pickle: (G, D, Gs) states, with nothing in the file executed.

    `UserError` (exit 2) for a missing, unreadable or too large file, or one that is not a
    regular file; a refused global (`RefusedGlobal`); a pickle past the bounds (module
    docstring), damaged, or whose contents are not three version-2 network states."""
    path = Path(path)
    try:
        fh = open_regular(path)
    except NotRegularFileError as err:
        raise UserError(f"{path}: {err.strerror}; give the network .pkl file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_PICKLE_BYTES:
            raise UserError(
                f"{path}: refused to load: it is {size:,} bytes, more than the "
                f"{MAX_PICKLE_BYTES:,} progan-import reads (the official 1024x1024 CelebA-HQ "
                "pickle is 277 MB)"
            )
        head = fh.read(2)
        fh.seek(0)
        reader = _BoundedReader(fh, size)
        unpickler = RestrictedUnpickler(reader, path, min(MAX_ARRAY_BYTES, size))
        try:
            obj = unpickler.load()
            check_structure(obj)
        except RefusedGlobal:
            raise
        except UserError as err:  # a bound, or a reconstructor refused its arguments
            raise UserError(
                f"{path}: refused to load: {err}. Nothing from the file was run."
            ) from None
        except MemoryError:
            raise UserError(
                f"{path}: not a network pickle (it asks for more memory than this machine has)"
            ) from None
        except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file to the user
            first = (str(err).splitlines() or [""])[0][:200]
            raise UserError(
                f"{path}: not a readable network pickle ({type(err).__name__}: {first})"
            ) from None
        sha256 = reader.sha256()
    if not (isinstance(obj, tuple) and len(obj) == len(ROLES)):
        what = f"a {type(obj).__name__}" + (f" of {len(obj)}" if isinstance(obj, tuple) else "")
        raise UserError(
            f"{path}: an official network pickle holds the tuple (G, D, Gs); this one holds {what}"
        )
    G, D, Gs = (_network(item, role, path) for item, role in zip(obj, ROLES))
    return OfficialPickle(
        path=path,
        G=G,
        D=D,
        Gs=Gs,
        protocol=_protocol(head),
        globals_used=tuple(unpickler.globals_used),
        sha256=sha256,
    )


__all__ = [
    "ALLOWED",
    "MAX_ARRAY_BYTES",
    "MAX_DEPTH",
    "MAX_OBJECTS",
    "MAX_PICKLE_BYTES",
    "NetworkStandIn",
    "NetworkState",
    "OfficialPickle",
    "RefusedGlobal",
    "RestrictedUnpickler",
    "check_structure",
    "read_official_pickle",
]
