"""How a conditional spec's labels enter the networks: one record per mode of
`architecture.conditioning`, read by the IR builder (`progan_dsl.ir.build`).

A mode names the layer kinds it uses and what it adds to a network's signature; the builder
wires labels generically from these records. Adding a mode is a spec literal, a record here and,
if it needs one, a layer kind (`builtin.py`): nothing else changes, since every caller reads the
signature.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelsIntoG:
    """Labels enter G through a node of `kind` whose inputs are (latent, labels), placed before
    the latent pixel norm."""

    kind: str


@dataclass(frozen=True)
class LabelsIntoD:
    """D's last layer (the spec's final `dense`, out 1) becomes a node of `head_kind`;
    `takes_labels`: the head has a second input, the labels (D's signature gains a labels input);
    `class_logits`: the head emits 1 + classes features, the score then the class logits (D's
    signature gains a class_logits output)."""

    head_kind: str
    takes_labels: bool
    class_logits: bool


G_MODES: dict[str, LabelsIntoG] = {
    "concat": LabelsIntoG(kind="concat"),  # official networks.py G_paper
}
D_MODES: dict[str, LabelsIntoD] = {
    # official networks.py D_paper: dense(fmaps=1 + label_size); scores x[:, :1], labels x[:, 1:]
    "acgan": LabelsIntoD(head_kind="dense", takes_labels=False, class_logits=True),
    # Miyato & Koyama 2018: score + <embed(y), phi(x)>
    "projection": LabelsIntoD(head_kind="projection", takes_labels=True, class_logits=False),
}
