"""The restricted unpickler: official-format pickles load (protocols 2, 4, 5) with exactly the
globals such files reference; every other global is refused by name, with exit code 2, before
anything runs (payloads that would create a file leave no file)."""

from __future__ import annotations

import _codecs
import builtins
import collections
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from progan_dsl.errors import UserError
from progan_dsl.pretrained.unpickle import RefusedGlobal, read_official_pickle
from tests.conftest import ROOT
from tests.pretrained.conftest import SMALL
from tests.pretrained.official_format import (
    FakeNetwork,
    TfutilNetwork,
    dump,
    dumps,
    network_state,
    official_tuple,
    tfutil_module,
    variables_of,
)

G16 = SMALL | {"resolution": 16}
OFFICIAL_GLOBALS = {
    "tfutil.Network",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
}


class Payload:
    """A `__reduce__` payload: unpickling it would call func(*args)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def test_official_format_protocol_4_loads_with_exactly_the_official_globals(write_pickle):
    path = write_pickle(G16, G16)
    pkl = read_official_pickle(path)
    assert pkl.protocol == 4
    assert set(pkl.globals_used) == OFFICIAL_GLOBALS
    written = official_tuple(G16, G16)
    for state, fake in zip(pkl.networks, written):
        assert (
            state.name == fake.state["name"]
            and state.build_func_name == fake.state["build_func_name"]
        )
        assert dict(state.static_kwargs) == fake.state["static_kwargs"]
        expected = variables_of(fake)
        assert list(state.variables) == list(expected)  # order kept
        for name, value in expected.items():
            assert state.variables[name].dtype == np.float32
            np.testing.assert_array_equal(state.variables[name], value)
    assert [n.role for n in pkl.networks] == ["G", "D", "Gs"]
    assert float(pkl.G.variables["lod"]) == 0.0 and pkl.G.variables["lod"].shape == ()


def test_protocol_2_uses_codecs_encode_and_loads_the_same_values(write_pickle):
    p2 = read_official_pickle(write_pickle(G16, G16, name="p2.pkl", protocol=2))
    p4 = read_official_pickle(write_pickle(G16, G16, name="p4.pkl", protocol=4))
    assert p2.protocol == 2
    assert set(p2.globals_used) == OFFICIAL_GLOBALS | {"_codecs.encode"}
    for a, b in zip(p2.networks, p4.networks):
        assert list(a.variables) == list(b.variables)
        for name in a.variables:
            np.testing.assert_array_equal(a.variables[name], b.variables[name])


def test_protocol_5_numpy_2_names_load(tmp_path):
    """A pickle re-saved by numpy 2 with protocol 5 (numpy._core names, _frombuffer), written by
    the standard pickler with a fake `tfutil` module registered only while pickling."""
    fake = official_tuple(G16, G16)
    with tfutil_module():
        data = pickle.dumps(tuple(TfutilNetwork(f.state) for f in fake), protocol=5)
    path = tmp_path / "p5.pkl"
    path.write_bytes(data)
    pkl = read_official_pickle(path)
    assert pkl.protocol == 5
    assert set(pkl.globals_used) == {
        "tfutil.Network",
        "numpy._core.numeric._frombuffer",
        "numpy.dtype",
        "numpy._core.multiarray.scalar",
    }
    assert "tfutil" not in sys.modules
    for name, value in variables_of(fake[2]).items():
        np.testing.assert_array_equal(pkl.Gs.variables[name], value)


# ---- refused -----------------------------------------------------------------------------------


def _malicious(tmp_path: Path, payload: Any, *, inside: bool) -> Path:
    """A pickle carrying `payload`: at the top, or inside an otherwise official G state."""
    if inside:
        fake = list(official_tuple(G16, G16))
        fake[0].state["static_kwargs"]["fmap_base"] = payload
        obj: Any = tuple(fake)
    else:
        obj = payload
    return dump(obj, tmp_path / "evil.pkl")


@pytest.mark.parametrize("inside", [False, True], ids=["top", "inside-G-state"])
@pytest.mark.parametrize(
    ("make", "global_name"),
    [
        (lambda marker: Payload(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        (
            lambda marker: Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
            "builtins.exec",
        ),
        (lambda marker: Payload(builtins.eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
        (
            lambda marker: Payload(subprocess.check_call, ["touch", str(marker)]),
            "subprocess.check_call",
        ),
        (lambda marker: collections.OrderedDict(a=1), "collections.OrderedDict"),
    ],
    ids=["os.system", "exec", "eval", "subprocess", "foreign-class"],
)
def test_other_globals_are_refused_by_name_and_nothing_runs(tmp_path, make, global_name, inside):
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path, make(marker), inside=inside)
    with pytest.raises(RefusedGlobal) as err:
        read_official_pickle(path)
    assert err.value.global_name == global_name
    assert str(err.value) == (
        f"{path}: refused to load: the pickle references {global_name}, not part of a ProGAN "
        "network pickle (allowed: tfutil.Network, numpy arrays, dtypes and scalars, plain "
        "containers); the file may be malicious. Nothing from the file was run."
    )
    assert not marker.exists()


def test_the_cli_refuses_with_exit_2_no_traceback_and_creates_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path, Payload(os.system, f"touch {marker}"), inside=True)
    out = tmp_path / "imported"
    proc = subprocess.run(
        [sys.executable, "-m", "progan_dsl.pretrained", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"error: {path}: refused to load: the pickle references {os.system.__module__}.system"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not marker.exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pkl"]


def test_theano_network_class_gets_its_own_message(tmp_path):
    path = tmp_path / "theano.pkl"  # protocol 2: GLOBAL network.Network, NEWOBJ, BUILD
    path.write_bytes(b"\x80\x02cnetwork\nNetwork\nq\x00)\x81q\x01}q\x02b.")
    with pytest.raises(
        RefusedGlobal,
        match=r"references network\.Network, a network of the "
        r"original Theano implementation; only pickles of the TensorFlow version "
        r"\(tfutil\.Network\) can be imported",
    ):
        read_official_pickle(path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (np.array([object()], dtype=object)[:0], "numpy dtype 'O8' refused (only numeric dtypes"),
        (Payload(_codecs.encode, "x", "rot13"), "_codecs.encode(str, 'rot13') refused"),
    ],
    ids=["object-array", "codecs-rot13"],
)
def test_allowed_globals_refuse_unsafe_arguments(tmp_path, obj, message):
    path = dump(obj, tmp_path / "odd.pkl", protocol=2)
    with pytest.raises(UserError) as err:
        read_official_pickle(path)
    assert str(err.value).startswith(f"{path}: refused to load: {message}")
    assert str(err.value).endswith("Nothing from the file was run.")


# ---- not an official pickle ------------------------------------------------------------------


def _state(**changes: Any) -> dict[str, Any]:
    state = network_state("G", "G_paper", G16, [("lod", np.float32(0))])
    state.update(changes)
    return state


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"G": 1}, "an official network pickle holds the tuple (G, D, Gs); this one holds a dict"),
        (
            (1, 2),
            "an official network pickle holds the tuple (G, D, Gs); this one holds a tuple of 2",
        ),
        (
            (1, FakeNetwork(_state()), FakeNetwork(_state())),
            "G (item 1 of the (G, D, Gs) tuple) is not a pickled tfutil.Network",
        ),
        (
            (FakeNetwork(_state()), FakeNetwork({"version": 2}), FakeNetwork(_state())),
            "D (item 2 of the (G, D, Gs) tuple): network state lacks name, static_kwargs, "
            "build_module_src, build_func_name, variables (an official version-2 state has "
            "version, name, static_kwargs, build_module_src, build_func_name, variables)",
        ),
        (
            (FakeNetwork(_state()), FakeNetwork(_state()), FakeNetwork(_state(version=1))),
            "Gs (item 3 of the (G, D, Gs) tuple): network state version 1 is not supported "
            "(supported: 2)",
        ),
        (
            (FakeNetwork(_state(variables=[("lod", np.float32(0)), ("lod", np.float32(0))])),) * 3,
            "G (item 1 of the (G, D, Gs) tuple): variable lod appears twice",
        ),
        (
            (FakeNetwork(_state(variables=[("x", np.zeros(2, np.int32))])),) * 3,
            "G (item 1 of the (G, D, Gs) tuple): variable x is not a float array (int32)",
        ),
        (
            (FakeNetwork(_state(static_kwargs=[1])),) * 3,
            "G (item 1 of the (G, D, Gs) tuple): static_kwargs must be a dict of argument names",
        ),
    ],
    ids=["dict", "pair", "not-network", "no-keys", "version", "twice", "int-var", "kwargs"],
)
def test_structure_errors_name_the_network(tmp_path, obj, message):
    path = dump(obj, tmp_path / "x.pkl")
    with pytest.raises(UserError) as err:
        read_official_pickle(path)
    assert str(err.value) == f"{path}: {message}"


def test_damaged_and_missing_files(tmp_path):
    good = dumps(official_tuple(G16, G16))
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match=r"cut\.pkl: not a readable network pickle \("):
        read_official_pickle(cut)
    with pytest.raises(UserError, match=r"nope\.pkl: cannot read: No such file or directory"):
        read_official_pickle(tmp_path / "nope.pkl")
    with pytest.raises(UserError) as err:
        read_official_pickle(tmp_path)
    assert (
        str(err.value) == f"{tmp_path}: is a folder, not a regular file; give the network .pkl file"
    )
    text = tmp_path / "text.pkl"
    text.write_text("hello")
    with pytest.raises(UserError, match=r"text\.pkl: not a readable network pickle"):
        read_official_pickle(text)
