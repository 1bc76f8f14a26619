"""The export metadata contract: what an exported generator (.onnx, .pt2) says about itself.

Owns `GeneratorMeta`, the one frozen record that `progan-export` writes into every exported
generator (ONNX `metadata_props`, the AOTInductor package's `aot_inductor.metadata`) and that
every reader (`OnnxSampler`, `AotiSampler`, `progan-metrics --network`) reads back. Files hold
strings only: `to_props` writes them, `from_props` reads and checks every field against the
bounds below and raises a `UserError` naming the file, the key and what was expected, so a
damaged or hostile file never reaches a session with a 128 GiB latent or a 10^6-pixel side.

Keys are those of every earlier export (spec_name, spec_hash, stage, resolution, height, width,
channels, latent_size, precision, batch, fused_scale, plus the notes below). `num_classes` and
`inputs` came later: a file without them is an unconditional generator taking `z` alone.

Conditioning (`num_classes` > 0): the generator takes a second input `labels`, float32 one-hot
[N, num_classes] (`LABELS_INPUT`), after `z`. The names come from the network's signature
(`exported_ports`: its inputs other than alpha, in call order); `expected_inputs` is what that
signature must be for a file to be read. Imports nothing heavier than the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import progan_dsl
from progan_dsl.errors import UserError

if TYPE_CHECKING:
    from progan_dsl.compiler import Program
    from progan_dsl.ir import Stage
    from progan_dsl.ir.types import Port, Signature

LATENT_INPUT = "z"
LABELS_INPUT = "labels"  # float32 one-hot [N, num_classes] of a conditional generator
OUTPUT_NAME = "images"
OUTPUT_RANGE = "[-1, 1]"  # training images are scaled to [-1, 1] (official drange_net)
PRECISIONS = ("fp32", "fp16", "bf16")
DYNAMIC = "dynamic"  # the batch value of a file whose batch size is free

# Bounds a file's numbers must meet before anything is allocated from them. They follow the spec
# language where it has a bound and otherwise leave ample room above the paper's largest model
# (1024x1024, latent 512, batch 16 per forward pass).
MAX_LATENT_SIZE = 65536  # the spec's own limit on architecture.latent_size
MAX_CHANNELS = 4  # the spec's limit on image_channels (1 grey, 3 RGB, 4 RGBA)
MAX_SIDE = 8192  # 8x the paper's 1024; one 8192x8192 RGB float32 image is already 805 MB
MAX_FIXED_BATCH = 1024  # a fixed-batch file is padded up to its batch on every forward pass
MAX_CLASSES = 65536  # one-hot labels of this width are 256 kB per image as float32
MAX_NAME = 256  # characters of spec_name, spec_hash, stage

# The metadata keys that are fields (everything else is a human-readable note).
FIELD_KEYS = (
    "spec_name",
    "spec_hash",
    "stage",
    "resolution",
    "height",
    "width",
    "channels",
    "latent_size",
    "precision",
    "batch",
    "fused_scale",
    "num_classes",
    "inputs",
    "device",
)
REQUIRED_KEYS = FIELD_KEYS[:11]  # every export since the first carries these
_STAGE = re.compile(r"^(\d+)/stable$")


@dataclass(frozen=True)
class GeneratorMeta:
    """What an exported generator takes and gives, and where it came from."""

    spec_name: str
    spec_hash: str  # sha256 of the spec text
    stage: str  # "<resolution>/stable"
    resolution: int  # longer side of the images
    height: int
    width: int
    channels: int
    latent_size: int
    precision: str  # weights and arithmetic (input and output are float32 whatever it is)
    batch: int | None  # None: any batch size; else the file takes exactly this many
    fused_scale: bool
    num_classes: int = 0  # 0: unconditional; else a second input `labels` [N, num_classes]
    inputs: tuple[str, ...] = (LATENT_INPUT,)
    device: str | None = None  # the device an AOTInductor package was compiled for
    notes: Mapping[str, str] = field(default_factory=dict)  # producer, exporter, spec_yaml, ...

    def __post_init__(self) -> None:
        want = expected_inputs(self.num_classes)
        if self.inputs != want:
            raise ValueError(f"inputs must be {want} for num_classes={self.num_classes}")
        overlap = sorted(set(self.notes) & set(FIELD_KEYS))
        if overlap:
            raise ValueError(f"notes may not override fields: {', '.join(overlap)}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[C, H, W] of one image."""
        return (self.channels, self.height, self.width)

    def to_props(self) -> dict[str, str]:
        """The metadata as strings (what ONNX and AOTInductor store), notes included."""
        props = dict(self.notes)
        props.update(
            spec_name=self.spec_name,
            spec_hash=self.spec_hash,
            stage=self.stage,
            resolution=str(self.resolution),
            height=str(self.height),
            width=str(self.width),
            channels=str(self.channels),
            latent_size=str(self.latent_size),
            precision=self.precision,
            batch=DYNAMIC if self.batch is None else str(self.batch),
            fused_scale=str(self.fused_scale).lower(),
            num_classes=str(self.num_classes),
            inputs=",".join(self.inputs),
        )
        if self.device is not None:
            props["device"] = self.device
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, source: str | Path) -> GeneratorMeta:
        """Read and check the metadata of the file `source` (named in every error)."""
        return _Reader(props, str(source)).meta()

    @classmethod
    def of_program(
        cls,
        program: Program,
        stage: Stage,
        *,
        precision: str,
        batch: str | int,
        exporter: str,
        device: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> GeneratorMeta:
        """The metadata of the stable stage `stage` of `program` as exported by `exporter`;
        `extra` adds notes (images trained, checkpoint, ...)."""
        arch = program.spec.architecture
        height, width = arch.spatial(stage.resolution)
        latent = arch.latent_size
        if arch.pixel_norm.latent:
            eps = arch.pixel_norm.epsilon
            latent_note = (
                f"z ~ N(0, I), float32 [N, {latent}]; the graph pixel-normalises z first "
                f"(z / sqrt(mean(z^2) + {eps:g}), Section 4.2), so only its direction matters"
            )
        else:
            latent_note = f"z ~ N(0, I), float32 [N, {latent}], used as given"
        notes = {
            "producer": f"progan-dsl {progan_dsl.__version__}",
            "exporter": exporter,
            "latent_normalization": latent_note,
            "output": (
                f"{OUTPUT_NAME}: float32 [N, {arch.image_channels}, {height}, {width}] (NCHW), "
                f"nominal range {OUTPUT_RANGE}; to uint8: rint((x + 1) * 127.5) clipped to 0..255"
            ),
            "output_range": OUTPUT_RANGE,
            "spec_yaml": program.loaded.standalone_text(),
        }
        num_classes = program.num_classes
        if num_classes:
            notes["labels"] = (
                f"{LABELS_INPUT}: float32 one-hot [N, {num_classes}], row i the class of image i"
            )
        notes.update({key: str(value) for key, value in (extra or {}).items()})
        return cls(
            spec_name=program.spec.name,
            spec_hash=program.loaded.hash,
            stage=str(stage),
            resolution=stage.resolution,
            height=height,
            width=width,
            channels=arch.image_channels,
            latent_size=latent,
            precision=precision,
            batch=None if batch == DYNAMIC else int(batch),
            fused_scale=bool(program.fused),
            num_classes=num_classes,
            inputs=tuple(port.name for port in exported_ports(program.signature("G", stage))),
            device=device,
            notes=notes,
        )


def exported_ports(signature: Signature) -> tuple[Port, ...]:
    """The inputs of an exported generator, in call order: the signature's inputs other than
    alpha (an export is a stable stage, which ignores it)."""
    from progan_dsl.ir.types import PortRole  # here: readers of files need no IR

    return tuple(port for port in signature.inputs if port.role != PortRole.ALPHA)


def expected_inputs(num_classes: int) -> tuple[str, ...]:
    """The input names of a generator: `z`, then `labels` when it is conditional."""
    return (LATENT_INPUT, LABELS_INPUT) if num_classes else (LATENT_INPUT,)


def is_generator_meta(props: Mapping[str, str]) -> bool:
    """Whether metadata claims to be progan-export's (any field key present): such metadata is
    read whole with `GeneratorMeta.from_props`; a file without any is a foreign generator."""
    return any(key in props for key in FIELD_KEYS)


def check_int(value: int, low: int, high: int, what: str, source: str) -> int:
    """`value` within [low, high], else a `UserError` naming `source` and `what`."""
    if not low <= value <= high:
        raise UserError(f"{source}: {what} is {value:,}; expected {low:,} to {high:,}")
    return value


class _Reader:
    """Reads the fields of one file's metadata, each with its own check."""

    def __init__(self, props: Mapping[str, str], source: str) -> None:
        self.props, self.source = props, source

    def fail(self, key: str, expected: str) -> UserError:
        shown = self.props[key]
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        return UserError(
            f"{self.source}: metadata '{key}' is {shown!r}; expected {expected} "
            "(not a file progan-export wrote, or a damaged one)"
        )

    def text(self, key: str, pattern: str = r".+") -> str:
        value = self.props[key]
        if len(value) > MAX_NAME or not re.fullmatch(pattern, value):
            raise self.fail(key, f"text matching {pattern} of at most {MAX_NAME} characters")
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        if key not in self.props and default is not None:
            return default
        raw = self.props[key]
        if not re.fullmatch(r"[0-9]{1,12}", raw.strip()):
            raise self.fail(key, f"an integer from {low:,} to {high:,}")
        value = int(raw)
        if not low <= value <= high:
            raise self.fail(key, f"an integer from {low:,} to {high:,}")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        if self.props[key] not in choices:
            raise self.fail(key, f"one of {', '.join(choices)}")
        return self.props[key]

    def meta(self) -> GeneratorMeta:
        missing = [key for key in REQUIRED_KEYS if key not in self.props]
        if missing:
            raise UserError(
                f"{self.source}: not a progan-export generator: its metadata lacks "
                f"{', '.join(missing)}"
            )
        resolution = self.integer("resolution", 1, MAX_SIDE)
        height = self.integer("height", 1, MAX_SIDE)
        width = self.integer("width", 1, MAX_SIDE)
        if max(height, width) != resolution:
            raise self.fail("resolution", f"the longer side of {height}x{width}")
        stage = self.text("stage", _STAGE.pattern)
        if int(stage.split("/")[0]) != resolution:
            raise self.fail("stage", f"{resolution}/stable (the resolution)")
        batch_text = self.props["batch"]
        batch = None if batch_text == DYNAMIC else self.integer("batch", 1, MAX_FIXED_BATCH)
        num_classes = self.integer("num_classes", 0, MAX_CLASSES, default=0)
        want_inputs = expected_inputs(num_classes)
        inputs = tuple(self.props.get("inputs", ",".join(want_inputs)).split(","))
        if inputs != want_inputs:
            raise self.fail("inputs", f"{','.join(want_inputs)} (num_classes {num_classes})")
        device = None
        if "device" in self.props:
            device = self.text("device", r"cpu|cuda(:[0-9]{1,3})?")
        return GeneratorMeta(
            spec_name=self.text("spec_name"),
            spec_hash=self.text("spec_hash", r"[0-9a-fA-F]{1,128}"),
            stage=stage,
            resolution=resolution,
            height=height,
            width=width,
            channels=self.integer("channels", 1, MAX_CHANNELS),
            latent_size=self.integer("latent_size", 1, MAX_LATENT_SIZE),
            precision=self.choice("precision", PRECISIONS),
            batch=batch,
            fused_scale=self.choice("fused_scale", ("true", "false")) == "true",
            num_classes=num_classes,
            inputs=inputs,
            device=device,
            notes={k: v for k, v in self.props.items() if k not in FIELD_KEYS},
        )


__all__ = [
    "DYNAMIC",
    "LABELS_INPUT",
    "LATENT_INPUT",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_FIXED_BATCH",
    "MAX_LATENT_SIZE",
    "MAX_SIDE",
    "OUTPUT_NAME",
    "PRECISIONS",
    "GeneratorMeta",
    "check_int",
    "expected_inputs",
    "exported_ports",
    "is_generator_meta",
]
