"""`progan-export --source DIR`: the generator as plain PyTorch code plus safetensors weights.

Owns the layout of that folder, for users who would rather ship torch than ONNX:

    DIR/
      progan_<spec>/          the generated package (`progan-compile --emit-source`): every stage's
                              G and D module and `layers.py`; imports with nothing but torch
      G_ema.safetensors       the exported stage's generator weights (state-dict names)
      spec.yaml               the spec the run was compiled from
      generate.py             `python generate.py --n 16 --seed 0 --out grid.png`

The code comes from the one codegen path (`codegen.emit_package`), so it is the same module that
was trained and exported to ONNX. `generate.py` uses the project's latent recipe and uint8
conversion, so it draws the same images as `progan-generate` for a seed. The folder is built
beside DIR and renamed into place; an existing DIR is replaced only when it holds an earlier
export (its G_ema.safetensors).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from progan_dsl.codegen import class_name, emit_package
from progan_dsl.compiler import Program
from progan_dsl.errors import UserError
from progan_dsl.fsutil import replace_dir
from progan_dsl.ir import Stage

WEIGHTS_FILE = "G_ema.safetensors"

GENERATE_PY = '''\
"""Draw images with the {spec_name} generator ({stage}) exported by progan-dsl.

    python generate.py --n 16 --seed 0 --out grid.png

Needs torch, safetensors, numpy and Pillow. Latents: numpy default_rng(seed).standard_normal,
float32; images are [N, C, H, W] in [-1, 1], saved as rint((x + 1) * 127.5) clipped to 0..255.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from {package} import {class_name}  # noqa: E402

LATENT_SIZE = {latent_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    parser.add_argument("--out", default="grid.png", help="PNG grid to write (default grid.png)")
    args = parser.parse_args()

    G = {class_name}()
    G.load_state_dict(load_file(str(HERE / "{weights}")))
    G.eval()
    z = np.random.default_rng(args.seed).standard_normal((args.n, LATENT_SIZE)).astype(np.float32)
    with torch.no_grad():
        images = G(torch.from_numpy(z)).numpy()  # [N, C, H, W]
    images = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)

    n, c, h, w = images.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    canvas = np.zeros((rows * h, cols * w, c), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i].transpose(1, 2, 0)
    picture = canvas[:, :, 0] if c == 1 else canvas
    Image.fromarray(picture, "L" if c == 1 else "RGB").save(args.out)
    print(f"wrote {{args.out}} ({{n}} images, {{c}}x{{h}}x{{w}})")


if __name__ == "__main__":
    main()
'''


def package_name(program: Program) -> str:
    """`progan_<spec name>`: a valid module name (spec names are validated identifiers)."""
    return f"progan_{program.spec.name}"


def write_torch_source(
    program: Program,
    stage: Stage,
    G: nn.Module,
    folder: str | Path,
    *,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write the folder described in the module docstring for stable stage `stage`; return it."""
    out = Path(folder)
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / WEIGHTS_FILE).is_file())
    ):
        raise UserError(f"{out}: exists and is not an earlier --source export; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        package = package_name(program)
        emit_package(program.graphs, tmp / package)
        weights = {name: t.detach().to("cpu").contiguous() for name, t in G.state_dict().items()}
        info = {
            "spec_name": program.spec.name,
            "spec_hash": program.loaded.hash,
            "stage": str(stage),
            "class": class_name("G", stage),
            "package": package,
        }
        info.update({key: str(value) for key, value in (metadata or {}).items()})
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata=info)
        (tmp / "spec.yaml").write_text(program.loaded.doc.text)
        (tmp / "generate.py").write_text(
            GENERATE_PY.format(
                spec_name=program.spec.name,
                stage=stage,
                package=package,
                class_name=class_name("G", stage),
                latent_size=program.spec.architecture.latent_size,
                weights=WEIGHTS_FILE,
            )
        )
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
