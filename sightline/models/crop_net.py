"""The small CNN shared by the built-in crop readers (child or adult, hat and bag).

Crops ``(N, 3, 128, 64)`` in [0, 1] go through four convolution stages to an 8x4 map
which is flattened, not pooled: *where* something is in the person's box (head, legs,
back) is the signal these readers need. A small head maps it to ``outputs`` logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sightline.models.builtin_embedder import crops_to_input
from sightline.models.core import check_crops, read_weights

__all__ = ["CropNet", "CropReader", "conv_stage"]

_BATCH = 256


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Conv 3x3, batch norm, ReLU, 2x2 max-pool: one stage of the small crop readers."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class CropNet(nn.Module):
    """Crops (N, 3, 128, 64) in [0, 1] -> logits (N, outputs)."""

    def __init__(self, outputs: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_stage(3, w),
            conv_stage(w, 2 * w),
            conv_stage(2 * w, 3 * w),
            conv_stage(3 * w, 4 * w),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(4 * w * 8 * 4, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, outputs),
        )
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, one row per crop."""
        return self.head(self.features(x))


class CropReader:
    """``reader(crops)`` -> the sigmoid of a :class:`CropNet`'s logits per person crop
    ``(h, w, 3) uint8`` (any size; resized to 128x64), on the CPU, in batches.

    Subclasses name their network (``net_type``), their weights (``default_weights``) and,
    for the error when the file is missing, what they are and the command that trains them.
    """

    net_type: ClassVar[type[CropNet]]
    default_weights: ClassVar[Path]
    what: ClassVar[str]
    command: ClassVar[str]
    output_shape: ClassVar[tuple[int, ...]] = ()  # per crop: () one value, (2,) two

    def __init__(self, net: CropNet, meta: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: Path | str | None = None) -> Any:
        """The reader with the weights in ``path`` (default: the committed file); a
        missing file is a ``FileNotFoundError`` naming the command that trains it."""
        state, meta = read_weights(path or cls.default_weights, cls.what, cls.command)
        net = cls.net_type(width=int(meta.get("width", 16)))  # type: ignore[call-arg]
        net.load_state_dict(state)
        return cls(net, meta)

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        check_crops(crops)
        out = [np.zeros((0, *self.output_shape))]
        with torch.inference_mode():
            for start in range(0, len(crops), _BATCH):
                logits = self.net(crops_to_input(crops[start : start + _BATCH]))
                out.append(torch.sigmoid(logits).double().numpy())
        return np.concatenate(out)
