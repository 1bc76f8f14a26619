"""`progan-dataset`: create, inspect and verify datasets. Thin: parse, call the library, print.

Errors the user can fix raise `UserError`; `progan_dsl.cli.dataset_main` prints them and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from progan_dsl.cliutil import UserErrorParser, add_version, non_negative_int, positive_int
from progan_dsl.data.create import CreateOptions, create_dataset
from progan_dsl.data.dataset import ImageDataset
from progan_dsl.data.geometry import DOWNSAMPLE_RULE, parse_shape
from progan_dsl.data.manifest import Manifest, read_manifest, verify_checksums
from progan_dsl.errors import UserError
from progan_dsl.fsutil import recover_interrupted

_EXAMPLES = """\
examples:
  progan-dataset create --source mnist --out data/mnist32 --resolution 32
  progan-dataset create --source ~/photos --out data/faces256 --resolution 256 --mode crop
  progan-dataset create --source pics.zip --out data/wide --resolution 256 --base-shape 4x8
  progan-dataset info data/mnist32
  progan-dataset verify data/mnist32
"""


def _parser() -> argparse.ArgumentParser:
    parser = UserErrorParser(
        prog="progan-dataset",
        description="Prepare multi-resolution image datasets for progressive GAN training.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UserErrorParser)
    create = sub.add_parser(
        "create",
        help="build a dataset directory (every level from --resolution down to the base shape)",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument(
        "--source",
        required=True,
        help="folder of images (any depth), .zip of images, uint8 .npy (N,H,W[,C]), or 'mnist'",
    )
    create.add_argument("--out", required=True, type=Path, help="dataset directory to create")
    create.add_argument(
        "--resolution", required=True, type=positive_int, help="longer side of the top level"
    )
    create.add_argument(
        "--base-shape", default="4x4", help="HxW of the lowest level (default 4x4; e.g. 4x8)"
    )
    create.add_argument(
        "--mode",
        choices=["crop", "resize"],
        default="crop",
        help="crop: centre crop to the aspect ratio then resample (default); resize: stretch",
    )
    create.add_argument(
        "--channels",
        choices=["rgb", "gray", "auto"],
        default="auto",
        help="auto (default): gray if every source image is grayscale, else rgb",
    )
    create.add_argument("--max-images", type=positive_int, help="keep at most N usable images")
    create.add_argument(
        "--labels",
        action="store_true",
        help="store labels.npy (class = sub-folder of each image; digits for mnist)",
    )
    create.add_argument(
        "--seed",
        type=non_negative_int,
        help="take images in a seeded random order (matters with --max-images)",
    )
    existing = create.add_mutually_exclusive_group()
    existing.add_argument(
        "--force",
        action="store_true",
        help="replace an existing dataset (once the new one is complete; refused if the folder "
        "also holds files progan-dataset did not write)",
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="do nothing (exit 0) if --out already holds this dataset with the same options",
    )
    create.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar and no summary: only errors and warnings (skipped files) on stderr",
    )
    for name, text in (("info", "print a dataset's manifest"), ("verify", "check checksums")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("dir", type=Path, help="dataset directory")
    return parser


def main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "create":
        return _create(args)
    # info and verify read the manifest only: they report on damaged files instead of refusing
    # them at open as training does.
    if not args.dir.exists() and not args.dir.is_symlink():
        try:
            recover_interrupted(args.dir)
        except UserError as err:
            raise UserError(f"{args.dir}: no such dataset directory ({err})") from None
    manifest = read_manifest(args.dir)
    if args.command == "info":
        print(describe(args.dir, manifest))
        return 0
    problems = verify_checksums(args.dir, manifest)
    if problems:
        raise UserError(f"{args.dir}: verification failed:\n  " + "\n  ".join(problems))
    print(f"{args.dir}: ok ({len(manifest.levels)} level files match their sha256)")
    return 0


def _create(args: argparse.Namespace) -> int:
    options = CreateOptions(
        source=args.source,
        out=args.out,
        resolution=args.resolution,
        base_shape=parse_shape(args.base_shape),
        mode=args.mode,
        channels=args.channels,
        max_images=args.max_images,
        labels=args.labels,
        seed=args.seed,
        force=args.force,
        skip_existing=args.skip_existing,
        progress=not args.quiet,
    )
    result = create_dataset(options)
    if result.reused:
        if not args.quiet:
            print(f"{result.path}: dataset with these options exists, skipped")
        if result.manifest.get("downsampling") != DOWNSAMPLE_RULE:
            print(
                f"note: {result.path} was made by an earlier progan-dsl, whose lower levels "
                "average the stored (rounded) level above and can differ from the official "
                "dataset tool's by one grey level; --force re-creates it with the official rule",
                file=sys.stderr,
            )
        return 0
    skipped = result.manifest["skipped"]
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for entry in skipped[:20]:
            print(f"  {entry['file']}: {entry['reason']}", file=sys.stderr)
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more (see manifest.json)", file=sys.stderr)
    if not args.quiet:
        dataset = ImageDataset(result.path)
        print(describe(dataset.path, dataset.format))
    return 0


def describe(path: Path, manifest: Manifest) -> str:
    """A readable summary of a dataset's (validated) manifest."""
    m = manifest.raw
    source = m.get("source", {})
    counts = m.get("counts", {})
    lines = [
        f"dataset   {path}",
        f"source    {source.get('kind', '?')}: {source.get('path', source.get('name', '?'))}",
        f"images    {m['num_images']}  ({'gray' if m['channels'] == 1 else 'rgb'}, "
        f"{m['channels']} channel{'s' if m['channels'] > 1 else ''}, layout {m.get('layout')})",
        f"options   {', '.join(f'{k}={v}' for k, v in m.get('options', {}).items())}",
        f"created   {m.get('created', '?')} by {m.get('tool', '?')}",
        f"counts    {', '.join(f'{k} {v}' for k, v in counts.items())}",
        "levels    resolution  shape       file                    size      sha256",
    ]
    for level in m["levels"]:
        shape = "x".join(map(str, level["shape"]))
        lines.append(
            f"          {level['resolution']:>10}  {shape:<10}  {level['file']:<22}  "
            f"{_size(level['bytes']):>8}  {level['sha256'][:16]}"
        )
    if m.get("labels"):
        classes = m["labels"]["classes"]
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        lines.append(f"labels    {m['labels']['file']}: {len(classes)} classes ({shown})")
    lines.append(f"downsamp  {m.get('downsampling', '?')}")
    if m.get("skipped"):
        lines.append(f"skipped   {len(m['skipped'])} unreadable file(s):")
        lines += [f"          {s['file']}: {s['reason']}" for s in m["skipped"][:20]]
    return "\n".join(lines)


def _size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
