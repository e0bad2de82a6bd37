"""The built-in re-identification embedder: a small CNN with horizontal stripe pooling.

Crops are resized to 128x64 (height x width). Four convolution stages reduce them to a
16x8 feature map, which is pooled into four horizontal stripes (head, torso, thighs,
legs) so that where a colour sits on the body survives pooling: "red top, blue trousers"
and "blue top, red trousers" must be different people. The stripes are concatenated and
projected to a 128-d vector, L2-normalised. Trained by ``sightline train reid`` with
identity cross-entropy plus a batch-hard triplet loss on synthetic people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from sightline.models.core import EmbedderBackend, check_crops, read_weights, select_device
from sightline.models.registry import register_embedder

__all__ = [
    "CROP_SIZE",
    "DEFAULT_REID_WEIGHTS",
    "BuiltinEmbedder",
    "EmbedderNet",
    "crops_to_input",
    "load_embedder_weights",
]

DEFAULT_REID_WEIGHTS = Path(__file__).parent / "weights" / "reid.pt"
CROP_SIZE = (128, 64)  # (height, width)
_STRIPES = 4


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class EmbedderNet(nn.Module):
    """Crops (N, 3, 128, 64) in [0, 1] -> embeddings (N, dim), not yet normalised."""

    def __init__(self, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(3, w, 2),
            _conv(w, w),
            _conv(w, 2 * w, 2),
            _conv(2 * w, 2 * w),
            _conv(2 * w, 3 * w, 2),
            _conv(3 * w, 4 * w),
        )
        self.project = nn.Linear(_STRIPES * 4 * w, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings before normalisation (the training losses use them as they are)."""
        f = self.features(x)
        stripes = F.adaptive_avg_pool2d(f, (_STRIPES, 1)).flatten(1)
        return self.bn(self.project(stripes))


def crops_to_input(crops: list[np.ndarray], device: str = "cpu") -> torch.Tensor:
    """Crops of any size (h, w, 3) uint8 -> one (N, 3, 128, 64) float batch in [0, 1]."""
    resized = [
        F.interpolate(
            torch.as_tensor(c, device=device).permute(2, 0, 1)[None].float(),
            size=CROP_SIZE,
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        for c in crops
    ]
    return torch.cat(resized).div_(255.0)


def load_embedder_weights(path: Path | str) -> tuple[EmbedderNet, dict[str, Any]]:
    """An :class:`EmbedderNet` with the weights in ``path`` and the file's metadata."""
    state, meta = read_weights(path, "built-in re-ID", "sightline train reid")
    net = EmbedderNet(dim=int(meta.get("dim", 128)), width=int(meta.get("width", 32)))
    net.load_state_dict(state)
    return net.eval(), meta


@register_embedder("builtin")
class BuiltinEmbedder(EmbedderBackend):
    """The committed re-ID network (see the module docstring)."""

    type = "builtin"

    def __init__(self, net: EmbedderNet, prefer_gpu: bool = True) -> None:
        self._device, self._half = select_device(prefer_gpu)
        self.net = net.to(self._device).eval()
        if self._half:
            self.net = self.net.half()

    @classmethod
    def from_config(cls, config: Any, prefer_gpu: bool = True) -> BuiltinEmbedder:
        """From a ``BuiltinEmbedderConfig`` (weights default to the committed file)."""
        net, _ = load_embedder_weights(config.weights or DEFAULT_REID_WEIGHTS)
        return cls(net, prefer_gpu=prefer_gpu)

    @property
    def dim(self) -> int:
        """Embedding length."""
        return self.net.dim

    @property
    def device(self) -> str:
        """Where the model runs."""
        return self._device

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings, one row per crop."""
        check_crops(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            x = crops_to_input(crops, self._device)
            v = self.net(x.half() if self._half else x).float()
            return F.normalize(v, dim=1).cpu().numpy().astype(np.float32)
