"""Hostile pickles: every one is refused with exit code 2, a message naming the file and what was
wrong, no traceback and nothing written, and each bound trips BEFORE the memory or time it
guards is spent (the files here are a few kilobytes; nothing large is allocated).

The cases: files that are not regular (a named pipe would block, /dev/zero never ends) or too
large; more opcodes than the bound; shared references multiplied past the object bound ("billion
laughs"), nesting past the depth bound, a container inside itself, huge integers, a nested tuple
as a dict key (hashing it is exponential); numpy reconstructions that would allocate (a shape
asked of `_reconstruct`, `numpy.ndarray` called or created directly, array states whose shape
needs more bytes than they carry, one data block shared by many arrays), tampered dtypes; and
static arguments describing networks beyond the size bounds."""

from __future__ import annotations

import hashlib
import os
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from progan_dsl.cli import _run
from progan_dsl.errors import UserError
from progan_dsl.pretrained import convert_pickle, unpickle
from progan_dsl.pretrained.cli import main
from progan_dsl.pretrained.official import MAX_CHANNELS, MAX_RESOLUTION
from progan_dsl.pretrained.unpickle import (
    MAX_DEPTH,
    MAX_OBJECTS,
    MAX_PICKLE_BYTES,
    check_structure,
    read_official_pickle,
)
from progan_dsl.pretrained.weights import MAX_PARAMETERS
from tests.pretrained.conftest import SMALL
from tests.pretrained.official_format import (
    FakeNetwork,
    OfficialFormatPickler,
    d_shapes,
    dumps,
    network_state,
    official_tuple,
)

G16 = SMALL | {"resolution": 16}
TINY = dict(num_channels=1, resolution=8, fmap_base=16, fmap_max=8)  # a few KB of weights
RECONSTRUCT = np.zeros(1).__reduce__()[0]  # written as numpy.core.multiarray._reconstruct
LOADED = ". Nothing from the file was run."
G_LABEL = "G (network 'G', G_paper)"


class Raw:
    """Opcodes written as they are where this object is pickled: they push one object and use
    no memo (so they cannot clash with the pickler's)."""

    def __init__(self, opcodes: bytes) -> None:
        self.opcodes = opcodes

    @classmethod
    def of(cls, obj: Any) -> Raw:
        """The opcodes that push `obj` (protocol 2, memo stores optimized away)."""
        return cls(pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1])


class RawPickler(OfficialFormatPickler):
    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if isinstance(obj, Raw):
            self.write(obj.opcodes)
            return
        super().save(obj, save_persistent_id)


class Call:
    """Pickles as func(*args), then BUILD with `state` when given."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


def array_call(shape: tuple[int, ...], data: bytes, dtype: Any = None) -> Call:
    """A float32 array as numpy pickles one, with the given state (shape and data may lie)."""
    dtype = np.dtype("f4") if dtype is None else dtype
    return Call(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


def write(tmp_path: Path, obj: Any, name: str = "hostile.pkl", protocol: int = 4) -> Path:
    path = tmp_path / name
    with open(path, "wb") as fh:
        RawPickler(fh, protocol=protocol).dump(obj)
    return path


def with_static(key: str, value: Any) -> tuple[FakeNetwork, ...]:
    """An official (G, D, Gs) whose G has one more static argument (or one changed)."""
    fake = official_tuple(TINY, TINY)
    fake[0].state["static_kwargs"][key] = value
    return fake


def with_variable(value: Any) -> tuple[FakeNetwork, ...]:
    """An official (G, D, Gs) whose G's first weight is `value`."""
    fake = official_tuple(TINY, TINY)
    variables = fake[0].state["variables"]
    variables[1] = (variables[1][0], value)
    return fake


def declared(g: dict[str, Any], d: dict[str, Any]) -> tuple[FakeNetwork, ...]:
    """(G, D, Gs) with these static arguments and no weights: the size bounds come first."""
    lod = [("lod", np.float32(0))]
    return (
        FakeNetwork(network_state("G", "G_paper", g, lod)),
        FakeNetwork(network_state("D", "D_paper", d, lod)),
        FakeNetwork(network_state("Gs", "G_paper", g, lod)),
    )


def billion_laughs() -> list[Any]:
    laughs: list[Any] = ["lol"] * 10
    for _ in range(8):
        laughs = [laughs] * 10  # 10**9 strings when expanded, 10 distinct lists
    return laughs


def nested_tuple_key() -> Raw:
    """{t: 1} where t = (t', t') sixty deep: 2**60 leaves to hash, 61 distinct tuples."""
    t: Any = ("x",)
    for _ in range(60):
        t = (t, t)
    body = pickle.dumps(t, protocol=2)[2:-1]  # without PROTO and STOP; memo indices from 0
    return Raw(b"}" + body + b"K\x01s")  # EMPTY_DICT, key, BININT1 1, SETITEM


# ---- each case: (build the file in tmp_path, what the message says after "PATH: ") ------------

Case = tuple[Callable[[Path], Path], str]


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.pkl"
    os.mkfifo(path)
    return path


def too_large(tmp_path: Path) -> Path:
    path = tmp_path / "huge.pkl"
    with open(path, "wb") as fh:
        fh.truncate(MAX_PICKLE_BYTES + 1)  # sparse: nothing is written to disk
    return path


CASES: dict[str, Case] = {
    "fifo": (fifo, "is a named pipe, not a regular file; give the network .pkl file"),
    "too-large": (
        too_large,
        f"refused to load: it is {MAX_PICKLE_BYTES + 1:,} bytes, more than the "
        f"{MAX_PICKLE_BYTES:,} progan-import reads (the official 1024x1024 CelebA-HQ pickle is "
        "277 MB)",
    ),
    "opcodes": (
        lambda t: write(t, Raw(b"N0" * (MAX_OBJECTS // 2 + 1) + b"N")),  # NONE, POP, ...
        f"refused to load: it runs more than {MAX_OBJECTS:,} pickle opcodes (an official "
        f"network pickle runs about 5,000){LOADED}",
    ),
    "billion-laughs": (
        lambda t: write(t, with_static("structure", billion_laughs())),
        f"refused to load: its contents expand to more than {MAX_OBJECTS:,} objects (a shared "
        f"object counts at each place it is used; an official pickle has about 600){LOADED}",
    ),
    "deep-tuples": (
        lambda t: write(t, with_static("structure", Raw(b")" + b"\x85" * 1000))),
        f"refused to load: containers nested deeper than {MAX_DEPTH} levels (an official "
        f"pickle nests 5: tuple > Network > state > variables > (name, array)){LOADED}",
    ),
    "cycle": (
        lambda t: write(t, with_static("structure", (lambda a: a.append(a) or a)([]))),
        f"refused to load: a container contains itself (an official pickle has no cycles){LOADED}",
    ),
    "huge-int": (
        lambda t: write(t, with_static("fmap_base", 10**400)),
        f"refused to load: an integer of 1,329 bits (the numbers of a network pickle fit in "
        f"64){LOADED}",
    ),
    "hashing": (
        lambda t: write(t, nested_tuple_key()),  # alone: its memo is the file's
        "refused to load: a dict key or set item (((...), (...)), ((...), (...))) refused (a "
        "network pickle's dicts have string keys; hashing a nested value can take exponential "
        f"time){LOADED}",
    ),
    "reconstruct-256GB": (
        lambda t: write(t, with_variable(Call(RECONSTRUCT, (np.ndarray, (1 << 38,), b"b")))),
        "refused to load: array reconstruction of shape (274877906944,) and type b'b' refused "
        "(numpy writes shape (0,) and type 'b' there, and the data in the array's state)"
        f"{LOADED}",
    ),
    "uninitialised-weights": (  # right shape, no data: what made a 3 KB file a 990 MB checkpoint
        lambda t: write(t, with_variable(Call(RECONSTRUCT, (np.ndarray, (8, 128), b"f")))),
        "refused to load: array reconstruction of shape (8, 128) and type b'f' refused (numpy "
        f"writes shape (0,) and type 'b' there, and the data in the array's state){LOADED}",
    ),
    "ndarray-called": (
        lambda t: write(t, with_variable(Call(np.ndarray, ((1 << 40,),)))),
        "refused to load: calling numpy.ndarray refused (a network pickle calls only numpy's "
        f"reconstruction functions and _codecs.encode){LOADED}",
    ),
    "ndarray-created": (
        lambda t: write(  # GLOBAL numpy.ndarray, ((1 << 40,),), NEWOBJ
            t, with_variable(Raw(b"cnumpy\nndarray\n" + Raw.of(((1 << 40,),)).opcodes + b"\x81"))
        ),
        "refused to load: creating numpy.ndarray with arguments ((1099511627776,),) refused (a "
        f"network pickle creates only tfutil.Network, without arguments){LOADED}",
    ),
    "dtype-spec": (
        lambda t: write(t, with_variable(array_call((1,), b"", Call(np.dtype, ("(9,)f4",))))),
        "refused to load: numpy dtype '(9,)f4' refused (only numeric dtypes: b1, i1, i2, i4, i8, "
        f"u1, u2, u4, u8, f2, f4, f8; a network pickle holds float weights){LOADED}",
    ),
    "dtype-state": (
        lambda t: write(
            t,
            with_variable(
                array_call(
                    (1,),
                    b"\0" * 4,
                    Call(
                        np.dtype,
                        ("f4", False, True),
                        (3, "<", (np.dtype("f4"), (1 << 20,)), None, None, -1, -1, 0),
                    ),
                )
            ),
        ),
        "refused to load: numpy dtype state (3, '<', (dtype('float32'), (...)), None, None, -1, "
        "...) refused (numpy writes (3, '<', None, None, None, -1, -1, 0) for f4, at most "
        f"changing the byte order){LOADED}",
    ),
    "resolution": (
        lambda t: write(t, declared(G16 | {"resolution": 65536}, G16 | {"resolution": 65536})),
        f"{G_LABEL}: static argument resolution=65536: progan-import builds networks of up to "
        f"{MAX_RESOLUTION}x{MAX_RESOLUTION} (the official ones are at most 1024x1024)",
    ),
    "widths": (
        lambda t: write(
            t,
            declared(
                G16 | {"fmap_base": 8192, "fmap_max": 8192, "latent_size": 512},
                G16 | {"fmap_base": 8192, "fmap_max": 8192},
            ),
        ),
        f"{G_LABEL}: fmap_base=8192, fmap_decay=1, fmap_max=8192 give layers of 8,192 feature "
        f"maps; progan-import builds layers of up to {MAX_CHANNELS} (the official networks: 512)",
    ),
    "latent": (
        lambda t: write(t, declared(G16 | {"latent_size": 1 << 20}, G16)),
        f"{G_LABEL}: static argument latent_size=1048576: at most {MAX_CHANNELS} (official 512)",
    ),
    "fmap-decay": (
        lambda t: write(t, declared(G16 | {"fmap_decay": 1e300}, G16 | {"fmap_decay": 1e300})),
        f"{G_LABEL}: static argument fmap_decay=1e+300: at most 16 (official 1.0)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_exit_2_the_file_and_the_reason_and_nothing_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, message = CASES[case]
    path = build(tmp_path)
    assert path.stat().st_size < 128_000 or case == "too-large"  # hostile files are small
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "imported"
    rc = _run(main, [str(path), "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert (rc, stdout) == (2, "")
    assert stderr == f"error: {path}: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temp left


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_unread(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    with pytest.raises(UserError) as err:
        read_official_pickle(device)
    assert str(err.value) == (
        f"{device}: is a character device, not a regular file; give the network .pkl file"
    )


def test_static_arguments_past_the_parameter_bound(tmp_path: Path) -> None:
    """Twice the official widths at 1024x1024: G has 83.9M parameters (within the bound), D
    92.3M (past it); refused from the static arguments alone, before any weight is looked at."""
    g = dict(num_channels=3, resolution=1024, fmap_base=16384, fmap_max=1024, latent_size=512)
    d = dict(num_channels=3, resolution=1024, fmap_base=16384, fmap_max=1024)
    count = sum(int(np.prod(s)) for s in d_shapes(d).values())  # from the official source
    assert count == 92_307_233 > MAX_PARAMETERS == 89_478_485
    path = write(tmp_path, declared(g, d))
    with pytest.raises(UserError) as err:
        convert_pickle(path)
    assert str(err.value) == (
        f"{path}: the static arguments describe a D of 92,307,233 parameters; progan-import "
        "converts networks of up to 89,478,485 (the official 1024x1024 G has 23,079,115)"
    )


# ---- the mechanisms: each bound trips before the cost ---------------------------------------


def test_a_shared_object_counts_at_each_place_it_is_used() -> None:
    shared = [1, 2, 3]
    assert check_structure((shared, shared)) == 1 + 2 * (1 + 3)
    assert check_structure("leaf") == 1
    assert check_structure({"a": [None], "b": 2}) == 1 + 4 + 1  # the dict, 2 keys, 2 values, []


def test_an_official_pickle_is_well_inside_the_bounds(write_pickle) -> None:
    path = write_pickle(G16, G16)
    with open(path, "rb") as fh:
        reader = unpickle._BoundedReader(fh, path.stat().st_size)
        unpickler = unpickle.RestrictedUnpickler(reader, path, path.stat().st_size)
        obj = unpickler.load()
    assert check_structure(obj) < MAX_OBJECTS // 100 and unpickler.opcodes < MAX_OBJECTS // 20
    assert unpickler.array_bytes == sum(
        a.nbytes for n in read_official_pickle(path).networks for a in n.variables.values()
    )


def test_reconstruction_is_only_ever_asked_for_an_empty_array(tmp_path, monkeypatch) -> None:
    calls: list[tuple[Any, ...]] = []
    real = unpickle._RECONSTRUCT
    monkeypatch.setattr(unpickle, "_RECONSTRUCT", lambda *a: calls.append(a[1:]) or real(*a))
    path = write(tmp_path, official_tuple(G16, G16), name="good.pkl")
    read_official_pickle(path)
    assert calls and set(calls) == {((0,), b"b")}
    calls.clear()
    bad = write(tmp_path, with_variable(Call(RECONSTRUCT, (np.ndarray, (1 << 38,), b"b"))))
    with pytest.raises(UserError, match="array reconstruction of shape"):
        read_official_pickle(bad)
    assert ((1 << 38,), b"b") not in calls


def test_array_bytes_are_counted_before_numpy_fills_the_array(tmp_path) -> None:
    """A state claiming a 16 TiB array with 4 bytes of data, and 64 arrays sharing one 16 KiB
    block (a real pickle stores each array's bytes): both past the file's own size."""
    lie = write(tmp_path, with_variable(array_call((1 << 21, 1 << 21), b"\0" * 4)), name="lie.pkl")
    block = b"\0" * (1 << 14)
    shared = official_tuple(TINY, TINY)
    shared[0].state["variables"] += [(f"x{i}", array_call((1 << 12,), block)) for i in range(64)]
    many = write(tmp_path, shared, name="shared.pkl")
    assert many.stat().st_size < 64 * len(block) // 8
    for path in (lie, many):
        with pytest.raises(UserError) as err:
            read_official_pickle(path)
        assert str(err.value) == (
            f"{path}: refused to load: its arrays add up to more than {path.stat().st_size:,} "
            "bytes (its arrays cannot hold more than the file itself: shared references or a "
            f"reconstruction multiply them){LOADED}"
        )


def test_the_array_byte_bound_applies_to_large_files_too(write_pickle, monkeypatch) -> None:
    path = write_pickle(G16, G16)
    monkeypatch.setattr(unpickle, "MAX_ARRAY_BYTES", 1000)
    with pytest.raises(UserError) as err:
        read_official_pickle(path)
    assert str(err.value) == (
        f"{path}: refused to load: its arrays add up to more than 1,000 bytes (progan-import's "
        f"limit){LOADED}"
    )


@pytest.mark.parametrize(
    "opcodes",
    [b"B" + (1 << 31).to_bytes(4, "little"), b"\x96" + (1 << 40).to_bytes(8, "little")],
    ids=["BINBYTES-2GiB", "BYTEARRAY8-1TiB"],
)
def test_lengths_are_never_read_or_allocated_past_the_file(tmp_path, opcodes) -> None:
    path = tmp_path / "short.pkl"
    path.write_bytes(b"\x80\x05" + opcodes + b"abc.")
    with pytest.raises(UserError) as err:
        read_official_pickle(path)
    n = int.from_bytes(opcodes[1:], "little")
    assert str(err.value) == (
        f"{path}: not a readable network pickle (UnpicklingError: pickle data was truncated (it "
        f"asks for {n:,} bytes; the file has 4 left))"
    )


def test_big_endian_arrays_load_and_leave_numpys_dtypes_alone(tmp_path) -> None:
    """A dtype's state may set the byte order: on a private copy, not on numpy's float32."""
    fake = official_tuple(G16, G16)
    name, value = fake[0].state["variables"][1]
    fake[0].state["variables"][1] = (name, value.astype(">f4"))
    pkl = read_official_pickle(write(tmp_path, fake))
    np.testing.assert_array_equal(pkl.G.variables[name], value)
    assert np.dtype("f4").byteorder == "=" and np.dtype("float32").isnative


def test_protocol_2_and_trailing_bytes_are_hashed_whole(tmp_path) -> None:
    path = tmp_path / "p2.pkl"
    path.write_bytes(dumps(official_tuple(G16, G16), protocol=2) + b"trailing bytes")
    pkl = read_official_pickle(path)
    assert pkl.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
