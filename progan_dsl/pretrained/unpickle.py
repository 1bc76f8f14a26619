"""Reading NVIDIA's ProGAN network pickles without TensorFlow and without running any of their code.

Owns the restricted unpickler and the typed record of what a pickle holds. An official pickle
(tkarras/progressive_growing_of_gans, `misc.save_pkl((G, D, Gs), ...)`) is a tuple of three
`tfutil.Network` objects; each pickles its `__getstate__` dict: version 2, name, static_kwargs
(the build function's arguments), build_module_src (the Python source of networks.py, which the
official `__setstate__` would EXECUTE), build_func_name and variables (pairs of local variable
name and numpy array).

`find_class` resolves only the globals such a file needs; every other global (os.system,
builtins.eval, subprocess.Popen, a foreign class, ...) is refused before anything is called:
- `tfutil.Network` -> `NetworkStandIn`, a plain object that records its state and does nothing;
- numpy array and scalar reconstruction (`numpy.core.multiarray._reconstruct` / `scalar` as numpy
  1.x writes them, `numpy._core...` as numpy 2 writes them, `numpy.core.numeric._frombuffer` for
  protocol 5), `numpy.ndarray`, `numpy.dtype` (numeric dtypes only);
- `_codecs.encode(text, 'latin1')`, which protocol 2 uses for byte strings.
Containers, strings and numbers need no globals. `build_module_src` is kept only as a hash.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from progan_dsl.errors import UserError

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
NUMERIC_DTYPE_KINDS = "fiub"  # float, signed, unsigned, bool: all a network pickle holds


class NetworkStandIn:
    """Takes the place of `tfutil.Network` while unpickling: keeps the state, runs nothing."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


# The real numpy reconstructors, found through numpy's own pickling (so the numpy 1.x and 2.x
# module names both resolve to whatever this numpy uses).
_RECONSTRUCT: Any = np.zeros(1).__reduce__()[0]
_SCALAR: Any = np.float32(0).__reduce__()[0]
_FROMBUFFER: Any = np.zeros(1).__reduce_ex__(5)[0]


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> Any:
    if cls is not np.ndarray:
        raise UserError(f"array reconstruction of {cls!r} refused (only numpy.ndarray)")
    return _RECONSTRUCT(cls, shape, typecode)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise UserError(f"numpy dtype {spec!r} refused (only numeric dtypes by name)")
    dtype = np.dtype(spec)
    if dtype.kind not in NUMERIC_DTYPE_KINDS or dtype.fields is not None:
        raise UserError(
            f"numpy dtype {spec!r} refused (only numeric dtypes: a network pickle "
            f"holds float weights)"
        )
    return dtype


def _scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_DTYPE_KINDS:
        raise UserError(f"numpy scalar of dtype {dtype!r} refused (only numeric dtypes)")
    if not isinstance(data, bytes):
        raise UserError("numpy scalar without raw bytes refused")
    return _SCALAR(dtype, data)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_DTYPE_KINDS:
        raise UserError(f"numpy buffer of dtype {dtype!r} refused (only numeric dtypes)")
    return _FROMBUFFER(buf, dtype, shape, order)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UserError(
            f"_codecs.encode({type(text).__name__}, {encoding!r}) refused "
            "(protocol 2 byte strings use 'latin1' only)"
        )
    return text.encode("latin1")


ALLOWED: dict[tuple[str, str], Any] = {
    NETWORK_CLASS: NetworkStandIn,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED[(_module, "_reconstruct")] = _reconstruct
    ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED[(_module, "_frombuffer")] = _frombuffer


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


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose `find_class` knows only `ALLOWED`; records what was asked for."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # as the official misc.load_pkl
        self.path = path
        self.globals_used: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise RefusedGlobal(self.path, module, name)
        qualified = f"{module}.{name}"
        if qualified not in self.globals_used:
            self.globals_used.append(qualified)
        return found


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_official_pickle(path: str | Path) -> OfficialPickle:
    """Read an official network pickle: (G, D, Gs) states, with nothing in the file executed.

    `UserError` (exit 2) for a missing or unreadable file, a refused global (`RefusedGlobal`), a
    damaged pickle, or contents that are not three version-2 network states."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give the network .pkl file")
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    with fh:
        head = fh.read(2)
        fh.seek(0)
        unpickler = RestrictedUnpickler(fh, path)
        try:
            obj = unpickler.load()
        except RefusedGlobal:
            raise
        except UserError as err:  # a reconstructor refused its arguments
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
        sha256=_sha256(path),
    )


__all__ = [
    "ALLOWED",
    "NetworkStandIn",
    "NetworkState",
    "OfficialPickle",
    "RefusedGlobal",
    "RestrictedUnpickler",
    "read_official_pickle",
]
