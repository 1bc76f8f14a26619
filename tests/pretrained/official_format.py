"""Test pickles in the official format, written by test code (no TensorFlow, nothing from NVIDIA).

What tkarras/progressive_growing_of_gans writes (`misc.save_pkl((G, D, Gs), f)` with
`pickle.HIGHEST_PROTOCOL`, 4 on its Python 3.6): the tuple of three `tfutil.Network` objects, each
pickled as its `__getstate__` dict, and numpy arrays as numpy 1.x pickles them
(`numpy.core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`, and
`numpy.core.multiarray.scalar` for the 0-d `lod`). `OfficialFormatPickler` reproduces those
global names exactly: the stand-in class is written as `tfutil.Network` and numpy 2's
`numpy._core.*` reconstructors under their numpy 1.x names.

Variables are named and shaped as networks.py G_paper / D_paper create them (derived here from
the official source independently of `progan_dsl.pretrained.weights`), class-conditional ones
(label_size > 0) included: G's 4x4/Dense takes latent + label_size inputs, D's 4x4/Dense1 gives
1 + label_size outputs.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# The same global names as a pickle written by numpy 1.13 and the official tfutil.
RENAMES: dict[int, tuple[str, str]] = {
    id(np.zeros(1).__reduce__()[0]): ("numpy.core.multiarray", "_reconstruct"),
    id(np.float32(0).__reduce__()[0]): ("numpy.core.multiarray", "scalar"),
}
NETWORKS_SRC = "# networks.py as the official code embeds it; progan-import never runs it\n"


class FakeNetwork:
    """Pickles like tfutil.Network: its state is what Network.__getstate__ returns."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __getstate__(self) -> dict[str, Any]:
        return self.state


RENAMES[id(FakeNetwork)] = ("tfutil", "Network")


class TfutilNetwork(FakeNetwork):
    """FakeNetwork under the official class path, for the standard pickler (`tfutil_module`)."""

    __module__ = "tfutil"
    __qualname__ = "Network"


@contextmanager
def tfutil_module() -> Iterator[None]:
    """A fake module `tfutil` holding `Network`, registered in sys.modules only while pickling."""
    assert "tfutil" not in sys.modules
    module = types.ModuleType("tfutil")
    module.Network = TfutilNetwork  # type: ignore[attr-defined]
    sys.modules["tfutil"] = module
    try:
        yield
    finally:
        del sys.modules["tfutil"]


class OfficialFormatPickler(pickle._Pickler):  # type: ignore[misc, name-defined]
    """The pure-Python pickler, writing the official global names (see module docstring)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        target = RENAMES.get(id(obj))
        if target is None:
            return super().save_global(obj, name)
        module, qualname = target
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
        self.memoize(obj)
        return None


def dumps(obj: Any, protocol: int = 4) -> bytes:
    buf = io.BytesIO()
    OfficialFormatPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def dump(obj: Any, path: Path, protocol: int = 4) -> Path:
    with open(path, "wb") as fh:
        OfficialFormatPickler(fh, protocol=protocol).dump(obj)
    return path


# ---- official variables (networks.py) ----------------------------------------------------------


def nf(stage: int, kw: dict[str, Any]) -> int:
    return min(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_max"])


G_DEFAULTS = dict(
    num_channels=1,
    resolution=32,
    label_size=0,
    fmap_base=8192,
    fmap_decay=1.0,
    fmap_max=512,
    latent_size=None,
    normalize_latents=True,
    use_wscale=True,
    use_pixelnorm=True,
    pixelnorm_epsilon=1e-8,
    use_leakyrelu=True,
    dtype="float32",
    fused_scale=True,
)
D_DEFAULTS = dict(
    num_channels=1,
    resolution=32,
    label_size=0,
    fmap_base=8192,
    fmap_decay=1.0,
    fmap_max=512,
    use_wscale=True,
    mbstd_group_size=4,
    dtype="float32",
    fused_scale=True,
)


# The official CIFAR-10 conditional configuration (config.py '-cifar10' with '-cond'): the dataset
# gives 3 channels, 32x32 and its 10 one-hot labels (label_size); G_paper / D_paper defaults else.
CIFAR10_COND = dict(num_channels=3, resolution=32, label_size=10)


def g_shapes(kw: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """G_paper's trainable variables in creation order (linear structure)."""
    k = G_DEFAULTS | kw
    R = int(np.log2(k["resolution"]))
    latent = k["latent_size"] if k["latent_size"] is not None else nf(0, k)
    out: dict[str, tuple[int, ...]] = {
        "4x4/Dense/weight": (latent + k["label_size"], nf(1, k) * 16),
        "4x4/Dense/bias": (nf(1, k),),
        "4x4/Conv/weight": (3, 3, nf(1, k), nf(1, k)),
        "4x4/Conv/bias": (nf(1, k),),
        f"ToRGB_lod{R - 2}/weight": (1, 1, nf(1, k), k["num_channels"]),
        f"ToRGB_lod{R - 2}/bias": (k["num_channels"],),
    }
    for res in range(3, R + 1):
        s = f"{2**res}x{2**res}"
        if k["fused_scale"]:
            out[f"{s}/Conv0_up/weight"] = (3, 3, nf(res - 1, k), nf(res - 2, k))
            out[f"{s}/Conv0_up/bias"] = (nf(res - 1, k),)
        else:
            out[f"{s}/Conv0/weight"] = (3, 3, nf(res - 2, k), nf(res - 1, k))
            out[f"{s}/Conv0/bias"] = (nf(res - 1, k),)
        out[f"{s}/Conv1/weight"] = (3, 3, nf(res - 1, k), nf(res - 1, k))
        out[f"{s}/Conv1/bias"] = (nf(res - 1, k),)
        out[f"ToRGB_lod{R - res}/weight"] = (1, 1, nf(res - 1, k), k["num_channels"])
        out[f"ToRGB_lod{R - res}/bias"] = (k["num_channels"],)
    return out


def d_shapes(kw: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """D_paper's trainable variables in creation order (linear structure)."""
    k = D_DEFAULTS | kw
    R = int(np.log2(k["resolution"]))
    out: dict[str, tuple[int, ...]] = {
        "FromRGB_lod0/weight": (1, 1, k["num_channels"], nf(R - 1, k)),
        "FromRGB_lod0/bias": (nf(R - 1, k),),
    }
    for res in range(R, 2, -1):
        s = f"{2**res}x{2**res}"
        out[f"{s}/Conv0/weight"] = (3, 3, nf(res - 1, k), nf(res - 1, k))
        out[f"{s}/Conv0/bias"] = (nf(res - 1, k),)
        down = "Conv1_down" if k["fused_scale"] else "Conv1"
        out[f"{s}/{down}/weight"] = (3, 3, nf(res - 1, k), nf(res - 2, k))
        out[f"{s}/{down}/bias"] = (nf(res - 2, k),)
        out[f"FromRGB_lod{R - res + 1}/weight"] = (1, 1, k["num_channels"], nf(res - 2, k))
        out[f"FromRGB_lod{R - res + 1}/bias"] = (nf(res - 2, k),)
    mbstd = 1 if k["mbstd_group_size"] > 1 else 0
    out["4x4/Conv/weight"] = (3, 3, nf(1, k) + mbstd, nf(1, k))
    out["4x4/Conv/bias"] = (nf(1, k),)
    out["4x4/Dense0/weight"] = (nf(1, k) * 16, nf(0, k))
    out["4x4/Dense0/bias"] = (nf(0, k),)
    out["4x4/Dense1/weight"] = (nf(0, k), 1 + k["label_size"])
    out["4x4/Dense1/bias"] = (1 + k["label_size"],)
    return out


def random_variables(
    shapes: dict[str, tuple[int, ...]],
    rng: np.random.Generator,
    *,
    bias_std: float = 0.1,
    lod: float = 0.0,
    he_scaled: bool = False,
) -> list[tuple[str, Any]]:
    """(name, value) pairs as Network.__getstate__ lists them: N(0, 1) weights (what use_wscale
    stores; `he_scaled`: divided by sqrt(fan_in), roughly what use_wscale=False stores), small
    random biases, and the non-trainable `lod` as a numpy float32 scalar."""
    out: list[tuple[str, Any]] = [("lod", np.float32(lod))]
    for name, shape in shapes.items():
        if name.endswith("/bias"):
            value = (rng.standard_normal(shape, dtype=np.float32) * bias_std).astype(np.float32)
        else:
            value = rng.standard_normal(shape, dtype=np.float32)
            if he_scaled:
                value *= np.float32(1.0 / np.sqrt(np.prod(shape[:-1])))
        out.append((name, value))
    return out


def network_state(
    name: str, func: str, static_kwargs: dict[str, Any], variables: list[tuple[str, Any]]
) -> dict[str, Any]:
    return {
        "version": 2,
        "name": name,
        "static_kwargs": dict(static_kwargs),
        "build_module_src": NETWORKS_SRC,
        "build_func_name": func,
        "variables": variables,
    }


def official_tuple(
    g_kwargs: dict[str, Any], d_kwargs: dict[str, Any], *, seed: int = 0, lod: float = 0.0
) -> tuple[FakeNetwork, ...]:
    """(G, D, Gs) as train.py pickles them: Gs has G's arguments and its own (EMA) values."""
    rng = np.random.default_rng(seed)
    args = {"lod": lod}
    G = random_variables(
        g_shapes(g_kwargs), rng, he_scaled=g_kwargs.get("use_wscale") is False, **args
    )
    D = random_variables(
        d_shapes(d_kwargs), rng, he_scaled=d_kwargs.get("use_wscale") is False, **args
    )
    Gs = random_variables(
        g_shapes(g_kwargs), rng, he_scaled=g_kwargs.get("use_wscale") is False, **args
    )
    return (
        FakeNetwork(network_state("G", "G_paper", g_kwargs, G)),
        FakeNetwork(network_state("D", "D_paper", d_kwargs, D)),
        FakeNetwork(network_state("Gs", "G_paper", g_kwargs, Gs)),
    )


def variables_of(net: FakeNetwork) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in net.state["variables"]}
