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
from typing import Any

import numpy as np
import torch

from sightline.models.builtin_embedder import crops_to_input
from sightline.models.core import check_crops, read_weights
from sightline.models.crop_net import CropNet

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


class ChildReader:
    """``reader(crops) -> P(child)`` per person crop ``(h, w, 3) uint8``, on the CPU."""

    def __init__(self, net: ChildNet, meta: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: Path | str = DEFAULT_CHILD_WEIGHTS) -> ChildReader:
        """The reader with the weights in ``path`` (a clear error when it is missing)."""
        state, meta = read_weights(path, "child-reader", "sightline train photo-child")
        net = ChildNet(width=int(meta.get("width", 16)))
        net.load_state_dict(state)
        return cls(net, meta)

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        check_crops(crops)
        if not crops:
            return np.zeros(0)
        with torch.inference_mode():
            return torch.sigmoid(self.net(crops_to_input(crops))).double().numpy()


@cache
def builtin_child_reader() -> ChildReader:
    """The committed reader, loaded once per process."""
    return ChildReader.load()
