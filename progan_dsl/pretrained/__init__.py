"""NVIDIA's pretrained ProGAN networks, imported without TensorFlow and without running their code.

The official pickles (tkarras/progressive_growing_of_gans: CelebA-HQ 1024x1024, LSUN at
256x256, ...) hold the tuple (G, D, Gs) of `tfutil.Network` states. This package turns one into a
progan-dsl spec and checkpoint (issue #14, importer part). Data flows one way:

- `unpickle`: the restricted unpickler (only tfutil.Network, numpy arrays and plain data) and
  the typed record of the three network states; nothing embedded is executed;
- `official`: the G_paper / D_paper static arguments -> typed, checked arguments and the spec text
  (what the spec language cannot express is refused, naming the argument);
- `weights`: official variable names, shapes and layouts -> this project's parameters;
- `importer`: the steps in order, with their checks, and the safe writing of DIR;
- `cli`: `progan-import NETWORK.pkl --out DIR` (also `python -m progan_dsl.pretrained`).
"""

from progan_dsl.lazy import lazy_exports

_EXPORTS = {
    "ImportedNetworks": "progan_dsl.pretrained.importer",
    "OfficialPickle": "progan_dsl.pretrained.unpickle",
    "RefusedGlobal": "progan_dsl.pretrained.unpickle",
    "convert_pickle": "progan_dsl.pretrained.importer",
    "import_pickle": "progan_dsl.pretrained.importer",
    "read_official_pickle": "progan_dsl.pretrained.unpickle",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
