"""`progan-import`: NVIDIA's pretrained ProGAN pickles -> a spec and a checkpoint (thin CLI).

Owns argument parsing and the printed summary; `import_pickle` does the work. Errors the user can
fix are `UserError`s, printed by `progan_dsl.cli` without a traceback (exit 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from progan_dsl.cliutil import UserErrorParser, add_common

EXAMPLES = """\
examples:
  progan-import karras2018iclr-celebahq-1024x1024.pkl --out imported/celebahq
  progan-import karras2018iclr-lsun-bedroom-256x256.pkl --out imported/bedroom --name bedroom
  progan-import network-snapshot-010000.pkl --out imported/run23 --force

The pickle is read without TensorFlow and without running anything from it: only tfutil.Network
states and numpy arrays are accepted (any other global is refused, exit 2), from a regular file,
within bounds on its size, its contents and the networks it describes. DIR receives
spec.yaml (the networks in the spec language) and checkpoint-000000000.pt (G, D and G_ema = the
pickle's Gs), which progan-export, progan-generate, progan-metrics and progan-train accept.
"""


def parser() -> argparse.ArgumentParser:
    p = UserErrorParser(
        prog="progan-import",
        description="Import an official ProGAN network pickle "
        "(tkarras/progressive_growing_of_gans: the (G, D, Gs) tuple of tfutil.Network) as a "
        "progan-dsl spec and checkpoint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("network", type=Path, metavar="NETWORK.pkl", help="the official pickle")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="new or empty folder for spec.yaml and checkpoint-000000000.pt",
    )
    p.add_argument("--name", help="spec name (default: from the file name)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty DIR (replaces only spec.yaml and the checkpoint)",
    )
    add_common(p)
    return p


def next_commands(checkpoint: Path, spec: Path, stem: str) -> list[str]:
    """What to run next, as printed after an import."""
    return [
        f"progan-export --network {checkpoint} --out {stem}.onnx",
        f"progan-generate --network {checkpoint} --num 16 --seed 0 --out {stem}-grid.png",
        f"progan-metrics --data DATASET --network {checkpoint} --metrics swd",
        f"progan-train {spec} --data DATASET --resume {checkpoint}   # fine-tune",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from progan_dsl.pretrained.importer import check_name, check_target, import_pickle

    if args.name is not None:
        check_name(args.name)
    check_target(args.out, force=args.force)
    imported, written = import_pickle(args.network, args.out, name=args.name, force=args.force)
    if args.quiet:
        return 0
    pkl, nets, stage = imported.pickle, imported.nets, imported.stage
    names = ", ".join(f"{n.role} '{n.name}'" for n in pkl.networks)
    print(
        f"read {pkl.path} ({names}; pickle protocol {pkl.protocol}, lod {nets.lod:g}); "
        "nothing in it was run"
    )
    for net, what in (("G", "toRGB"), ("D", "fromRGB")):
        c = imported.counts[net]
        rest = (
            (
                f" + {c.growing_only:,} in the {what} layers of lower resolutions (used only "
                "while growing; not stored)"
            )
            if c.growing_only
            else ""
        )
        print(f"  {net}: {c.pickle:,} parameters = {c.stage:,} in the {stage} {net}{rest}")
    spec = imported.loaded.spec
    print(
        f"wrote {written.spec} (spec '{spec.name}', sha256 {imported.loaded.hash[:12]}, "
        f"fused_scale={'on' if spec.architecture.fused_scale else 'off'})"
    )
    size = written.checkpoint.stat().st_size / 1e6
    print(f"wrote {written.checkpoint} (stage {stage}: G, D, G_ema = Gs; {size:.1f} MB)")
    for path in written.shadowed_by:
        print(
            f"note: {path} is newer; used as a run folder, {args.out} resolves to it, so name "
            f"the checkpoint file itself"
        )
    print("next:")
    for line in next_commands(written.checkpoint, written.spec, spec.name):
        print(f"  {line}")
    return 0
