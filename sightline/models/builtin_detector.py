"""The built-in person detector: a small centre-heatmap network (CenterNet style).

Frames are resized so their width is ``input_width`` (recorded in the weights file;
448 px for the committed weights, 0.7x the synthetic cameras' width), padded to a
multiple of 16, and mapped to three heads at stride 4: a person-centre heatmap, the box
size (log of width and height in output cells) and the centre's sub-cell offset. Peaks
of the heatmap (3x3 local maxima) are people; box NMS and a body-part filter only
remove the rare second peak on a very tall person. About 0.3 M
parameters: fast enough on a CPU for a handful of cameras, trained in minutes by
``sightline train detector``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from sightline.models.adapters import nms
from sightline.models.core import (
    Detections,
    DetectorBackend,
    check_frames,
    read_weights,
    select_device,
)
from sightline.models.registry import register_detector

__all__ = [
    "DEFAULT_DETECTOR_WEIGHTS",
    "NMS_IOU",
    "STRIDE",
    "BuiltinDetector",
    "DetectorNet",
    "decode_heatmap",
    "frames_to_input",
]

DEFAULT_DETECTOR_WEIGHTS = Path(__file__).parent / "weights" / "detector.pt"
STRIDE = 4
_PAD_TO = 16
_MAX_PEOPLE = 128
NMS_IOU = 0.6
_PART_IOA = 0.8
_PART_HEIGHT_RATIO = 1.4


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DetectorNet(nn.Module):
    """Encoder to stride 16, decoder back to stride 4 with skips, then three 1x1 heads.

    Output ``(N, 5, H/4, W/4)``: heatmap logit, log width, log height (output cells),
    x offset, y offset (fraction of a cell).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv(3, w // 2, 2), _conv(w // 2, w, 2), _conv(w, w))
        self.down8 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.down16 = nn.Sequential(_conv(2 * w, 3 * w, 2), _conv(3 * w, 3 * w, dilation=2))
        self.lat8 = nn.Conv2d(3 * w, 2 * w, 1)
        self.fuse8 = _conv(2 * w, 2 * w)
        self.lat4 = nn.Conv2d(2 * w, w, 1)
        self.fuse4 = _conv(w, w)
        self.head = nn.Sequential(_conv(w, w), nn.Conv2d(w, 5, 1))
        # Start the heatmap near the prior of "no person here" so early training is stable.
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -2.19

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is (N, 3, H, W) float in [0, 1] with H, W multiples of 16."""
        f4 = self.stem(x)
        f8 = self.down8(f4)
        f16 = self.down16(f8)
        u8 = self.fuse8(f8 + F.interpolate(self.lat8(f16), scale_factor=2.0, mode="nearest"))
        u4 = self.fuse4(f4 + F.interpolate(self.lat4(u8), scale_factor=2.0, mode="nearest"))
        return self.head(u4)


def frames_to_input(
    frames: np.ndarray | torch.Tensor, input_width: int, device: str = "cpu"
) -> tuple[torch.Tensor, float]:
    """Frames (N, H, W, 3) uint8 -> padded network input and the resize factor used.

    Returns ``(x, scale)`` where input pixel = frame pixel * scale.
    """
    t = torch.as_tensor(frames, device=device)
    h, w = t.shape[1:3]
    scale = input_width / w
    out_h = round(h * scale)
    x = t.permute(0, 3, 1, 2).float().div_(255.0)
    if (out_h, input_width) != (h, w):
        x = F.interpolate(x, size=(out_h, input_width), mode="bilinear", antialias=True)
    pad_h = (-out_h) % _PAD_TO
    pad_w = (-input_width) % _PAD_TO
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.5)
    return x, scale


def decode_heatmap(
    out: torch.Tensor,
    score_threshold: float,
    max_people: int = _MAX_PEOPLE,
    nms_iou: float | None = NMS_IOU,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network output -> per-image (boxes xyxy in input pixels, scores), peaks above threshold.

    A person much taller than the 3x3 peak window can raise two peaks; box NMS at
    ``nms_iou`` (high, so people standing close in a crowd both survive) removes the
    duplicate. ``None`` turns it off.
    """
    heat = torch.sigmoid(out[:, 0].float())
    peaks = heat == F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0]
    heat = heat * peaks
    n, h, w = heat.shape
    k = min(max_people, h * w)
    scores, idx = heat.reshape(n, -1).topk(k, dim=1)
    results = []
    for i in range(n):
        keep = scores[i] >= score_threshold
        cells = idx[i][keep]
        ys, xs = (cells // w), (cells % w)
        pred = out[i, 1:, ys, xs].float()
        cx = (xs.float() + pred[2]) * STRIDE
        cy = (ys.float() + pred[3]) * STRIDE
        bw = torch.exp(pred[0].clamp(max=6.0)) * STRIDE
        bh = torch.exp(pred[1].clamp(max=6.0)) * STRIDE
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
        kept_scores = scores[i][keep]
        if nms_iou is not None and len(boxes) > 1:
            survivors = nms(boxes, kept_scores, nms_iou)
            boxes, kept_scores = boxes[survivors], kept_scores[survivors]
            whole = ~_part_of_a_larger_box(boxes, kept_scores)
            boxes, kept_scores = boxes[whole], kept_scores[whole]
        results.append((boxes.cpu().numpy(), kept_scores.cpu().numpy()))
    return results


def _part_of_a_larger_box(boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Boxes lying almost wholly inside a higher-scoring, much taller box.

    A person far taller than those seen in training can raise an extra peak on a body
    part (torso, legs); its box sits inside the person's own box. A second person behind
    rarely does: they overlap the front person only in part.
    """
    x1, y1, x2, y2 = boxes.unbind(1)
    iw = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None])).clamp(min=0)
    ih = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None])).clamp(min=0)
    area = ((x2 - x1) * (y2 - y1)).clamp(min=1e-6)
    inside = iw * ih / area[:, None] >= _PART_IOA
    taller = (y2 - y1)[None] >= _PART_HEIGHT_RATIO * (y2 - y1)[:, None]
    stronger = scores[None] > scores[:, None]
    return (inside & taller & stronger).any(dim=1)


def load_detector_weights(path: Path | str) -> tuple[DetectorNet, dict[str, Any]]:
    """A :class:`DetectorNet` with the weights in ``path`` and the file's metadata."""
    state, meta = read_weights(path, "built-in detector", "sightline train detector")
    net = DetectorNet(width=int(meta.get("width", 32)))
    net.load_state_dict(state)
    return net.eval(), meta


@register_detector("builtin")
class BuiltinDetector(DetectorBackend):
    """The committed centre-heatmap detector (see the module docstring)."""

    type = "builtin"

    def __init__(
        self,
        net: DetectorNet,
        input_width: int = 320,
        score_threshold: float = 0.3,
        prefer_gpu: bool = True,
    ) -> None:
        self._device, self._half = select_device(prefer_gpu)
        self.net = net.to(self._device).eval()
        if self._half:
            self.net = self.net.half()
        self.input_width = input_width
        self.score_threshold = score_threshold

    @classmethod
    def from_config(cls, config: Any, prefer_gpu: bool = True) -> BuiltinDetector:
        """From a ``BuiltinDetectorConfig`` (weights default to the committed file)."""
        net, meta = load_detector_weights(config.weights or DEFAULT_DETECTOR_WEIGHTS)
        return cls(
            net,
            input_width=int(meta.get("input_width", 320)),
            score_threshold=config.score_threshold,
            prefer_gpu=prefer_gpu,
        )

    @property
    def device(self) -> str:
        """Where the model runs."""
        return self._device

    def detect(self, frames: np.ndarray) -> list[Detections]:
        """Person boxes for each frame, in the frame's own pixels."""
        check_frames(frames)
        if len(frames) == 0:
            return []
        with torch.inference_mode():
            x, scale = frames_to_input(frames, self.input_width, self._device)
            out = self.net(x.half() if self._half else x)
            decoded = decode_heatmap(out, self.score_threshold)
        h, w = frames.shape[1:3]
        limits = np.array([w, h, w, h], np.float32)
        result = []
        for boxes, scores in decoded:
            result.append(Detections.from_arrays(np.clip(boxes / scale, 0, limits), scores))
        return result
