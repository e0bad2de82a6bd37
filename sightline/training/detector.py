"""``sightline train detector``: fit the built-in centre-heatmap detector on synthetic sites.

Training runs on random 160x256 patches of frames at the detector's input scale (448 px
wide), which costs a third of whole frames and sees the same people; the held-out
validation site is scored on whole frames with the real inference path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from sightline.evaluation.detection import average_precision_50, detect_all
from sightline.models.builtin_detector import STRIDE, BuiltinDetector, DetectorNet
from sightline.training.data import DetectionSamples

__all__ = ["DetectorTrainConfig", "build_targets", "detector_loss", "train_detector"]

INPUT_WIDTH = 448
_MIN_VIS = 0.3


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Hyper-parameters of detector training (defaults are what the committed weights used)."""

    iterations: int = 8000
    batch_size: int = 12
    patch: tuple[int, int] = (160, 256)  # (height, width) in input pixels
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class Targets:
    """Training targets for one output map of (h, w) cells."""

    heat: np.ndarray  # (h, w) gaussian peaks, exactly 1 at centres
    ignore: np.ndarray  # (h, w) bool: no negative loss here (barely visible people)
    centres: np.ndarray  # (K, 2) int cell (y, x)
    size: np.ndarray  # (K, 2) log(w), log(h) in cells
    offset: np.ndarray  # (K, 2) sub-cell x, y


def build_targets(boxes: np.ndarray, vis: np.ndarray, h: int, w: int) -> Targets:
    """Targets for boxes (xyxy, input pixels) on an output map of h x w cells."""
    heat = np.zeros((h, w), np.float32)
    ignore = np.zeros((h, w), bool)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    centres, size, offset = [], [], []
    for (x1, y1, x2, y2), v in zip(boxes / STRIDE, vis, strict=True):
        bw, bh = x2 - x1, y2 - y1
        if bw < 0.5 or bh < 1.0:
            continue
        if v < _MIN_VIS:
            ignore[int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)] = True
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        sx, sy = max(bw / 6, 0.5), max(bh / 6, 0.5)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx**2) - ((ys - iy) ** 2) / (2 * sy**2))
        np.maximum(heat, g, out=heat)
        centres.append((iy, ix))
        size.append((math.log(bw), math.log(bh)))
        offset.append((cx - ix, cy - iy))
    ignore &= heat < 0.5
    return Targets(
        heat,
        ignore,
        np.array(centres, np.int64).reshape(-1, 2),
        np.array(size, np.float32).reshape(-1, 2),
        np.array(offset, np.float32).reshape(-1, 2),
    )


def detector_loss(out: torch.Tensor, targets: list[Targets]) -> torch.Tensor:
    """CenterNet loss: penalty-reduced focal loss on the heatmap, L1 on size and offset."""
    heat = torch.as_tensor(np.stack([t.heat for t in targets]))
    ignore = torch.as_tensor(np.stack([t.ignore for t in targets]))
    p = torch.sigmoid(out[:, 0]).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 1.0
    pos_loss = (torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_w = (1 - heat) ** 4 * (~pos & ~ignore)
    neg_loss = (torch.log(1 - p) * p**2 * neg_w).sum()
    n_pos = max(int(pos.sum()), 1)
    reg = out.new_zeros(())
    for i, t in enumerate(targets):
        if len(t.centres):
            cy, cx = torch.as_tensor(t.centres[:, 0]), torch.as_tensor(t.centres[:, 1])
            pred = out[i, 1:, cy, cx].T
            reg = reg + F.l1_loss(pred[:, :2], torch.as_tensor(t.size), reduction="sum")
            reg = reg + F.l1_loss(pred[:, 2:], torch.as_tensor(t.offset), reduction="sum")
    return -(pos_loss + neg_loss) / n_pos + 0.5 * reg / n_pos


def _augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = rng.uniform(0.8, 1.2, size=3) * rng.uniform(0.8, 1.2)
    bias = rng.uniform(-20, 20)
    return np.clip(patch.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


def _sample_batch(
    data: DetectionSamples, cfg: DetectorTrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, list[Targets]]:
    ph, pw = cfg.patch
    images, targets = [], []
    fh, fw = data.frames.shape[1:3]
    for i in rng.integers(0, len(data.frames), cfg.batch_size):
        y0, x0 = int(rng.integers(0, fh - ph + 1)), int(rng.integers(0, fw - pw + 1))
        patch = _augment(data.frames[i, y0 : y0 + ph, x0 : x0 + pw], rng)
        boxes = data.boxes[i] - np.array([x0, y0, x0, y0], np.float32)
        vis = data.visibility[i].copy()
        clipped = np.clip(boxes, 0, [pw, ph, pw, ph])
        area = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-3), axis=1)
        kept = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), axis=1) / area
        vis = np.where(kept < 0.6, 0.0, vis)  # cut by the patch edge: ignore, not a target
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
            clipped = np.stack(
                [pw - clipped[:, 2], clipped[:, 1], pw - clipped[:, 0], clipped[:, 3]], 1
            )
        images.append(np.ascontiguousarray(patch))
        targets.append(build_targets(clipped, vis, ph // STRIDE, pw // STRIDE))
    x = torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return x, targets


def train_detector(
    train: DetectionSamples,
    validation: DetectionSamples,
    cfg: DetectorTrainConfig,
    log: Callable[[str], None] = print,
) -> tuple[DetectorNet, dict[str, Any]]:
    """Train a :class:`DetectorNet`; returns it and a report (loss curve, held-out AP50)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = DetectorNet()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.iterations)
    losses: list[float] = []
    started = time.perf_counter()
    net.train()
    for _ in tqdm(range(cfg.iterations), desc="train detector", unit="it", mininterval=5):
        x, targets = _sample_batch(train, cfg, rng)
        loss = detector_loss(net(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    backend = BuiltinDetector(net, input_width=INPUT_WIDTH, score_threshold=0.05, prefer_gpu=False)
    val = average_precision_50(
        detect_all(backend.detect, validation.frames), validation.boxes, validation.visibility
    )
    log(f"held-out validation AP50 {val['ap50']:.3f}")
    return net, {
        "losses": losses,
        "validation": val,
        "train_seconds": time.perf_counter() - started,
    }
