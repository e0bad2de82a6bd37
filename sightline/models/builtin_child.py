"""The built-in child-or-adult reader for reference photos: a small CNN on the person crop.

A family photo does not give a person's height in metres (it is framed to the person),
but it shows their proportions: a child's head is larger and their legs shorter for
their height. The tracklets record a measured height, so "the photo shows a child" and
"this candidate is 1.78 m tall" contradict each other, even when the clothes and the
embeddings agree (two people in the same red top and blue jeans).

The network (:class:`~sightline.models.crop_net.CropNet`) sees the person crop (as
:func:`~sightline.search.photos.person_box` cuts it) resized to 128x64 like the re-ID
embedder's input. Four convolution stages bring it to an 8x4 map which is flattened,
not pooled: where the head ends and the legs begin is the signal. It is trained by
``sightline train photo-child`` (:mod:`sightline.training.photo_child`) on reference
photos of people the simulator draws (none of them on any site) and outputs
``P(child)``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from sightline.models.crop_net import CropNet, CropReader

__all__ = [
    "DEFAULT_CHILD_WEIGHTS",
    "ChildNet",
    "ChildReader",
    "builtin_child_reader",
]

DEFAULT_CHILD_WEIGHTS = Path(__file__).parent / "weights" / "photo_child.pt"


class ChildNet(CropNet):
    """Crops (N, 3, 128, 64) in [0, 1] -> logits of ``P(child)``, shape (N,)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__(1, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, one per crop."""
        return super().forward(x).squeeze(1)


class ChildReader(CropReader):
    """``reader(crops) -> P(child)`` per person crop ``(h, w, 3) uint8``, on the CPU."""

    net_type = ChildNet
    default_weights = DEFAULT_CHILD_WEIGHTS
    what = "child-reader"
    command = "sightline train photo-child"


@cache
def builtin_child_reader() -> ChildReader:
    """The committed reader, loaded once per process."""
    return ChildReader.load()
