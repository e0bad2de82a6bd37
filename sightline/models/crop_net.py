"""The small CNN shared by the built-in crop readers (child or adult, hat and bag).

Crops ``(N, 3, 128, 64)`` in [0, 1] go through four convolution stages to an 8x4 map
which is flattened, not pooled: *where* something is in the person's box (head, legs,
back) is the signal these readers need. A small head maps it to ``outputs`` logits.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CropNet", "conv_stage"]


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
