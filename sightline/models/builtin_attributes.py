"""The built-in hat-and-bag reader for CCTV person crops: a small CNN with two outputs.

A description says "wears a cap" or "had a backpack"; the tracklets record the colours
and the height, and with this reader ``P(hat)`` and ``P(bag)`` too. The network sees a
tracked person's crop (the detector's box, as the tracklet keeps it for the embedder)
resized to 128x64 like the re-ID input. The network
(:class:`~sightline.models.crop_net.CropNet`, as the child reader's) brings it to an 8x4
map which is flattened, not pooled: a hat is at the top of the box and a backpack at
shoulder height on the back, so where a blob of colour sits is the signal. It is
trained by ``sightline train attributes`` (:mod:`sightline.training.attributes`) on
ground-truth crops of the default-preset training sites and outputs
``(P(hat), P(bag))`` per crop.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sightline.models.crop_net import CropNet, CropReader

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_ATTRIBUTE_WEIGHTS",
    "AttributeNet",
    "AttributeReader",
    "builtin_attribute_reader",
]

DEFAULT_ATTRIBUTE_WEIGHTS = Path(__file__).parent / "weights" / "attributes.pt"

ATTRIBUTES = ("hat", "bag")
"""What the reader outputs, in column order."""


class AttributeNet(CropNet):
    """Crops (N, 3, 128, 64) in [0, 1] -> logits (N, 2) of ``P(hat)`` and ``P(bag)``."""

    def __init__(self, width: int = 16) -> None:
        super().__init__(len(ATTRIBUTES), width)


class AttributeReader(CropReader):
    """``reader(crops) -> (N, 2)`` ``P(hat), P(bag)`` per crop ``(h, w, 3) uint8``, on the CPU."""

    net_type = AttributeNet
    default_weights = DEFAULT_ATTRIBUTE_WEIGHTS
    what = "hat-and-bag reader"
    command = "sightline train attributes"
    output_shape = (len(ATTRIBUTES),)


@cache
def builtin_attribute_reader() -> AttributeReader:
    """The committed reader, loaded once per process."""
    return AttributeReader.load()
