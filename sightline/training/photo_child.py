"""``sightline train photo-child``: train the child-or-adult reader of reference photos.

The simulator draws people (half of them children) with its own appearance model, none
of them on any site, and renders each one's reference photo as a family would take it
(:func:`~sightline.sim.reference.render_reference`). Each photo is cropped to the person
with the built-in detector exactly as search crops it
(:func:`~sightline.search.photos.person_box`), and :class:`~sightline.models.builtin_child.ChildNet`
learns ``P(child)`` from the crops (binary cross-entropy, flips, brightness and a few
pixels of vertical shift). Photos from another seed, never trained on, measure it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sightline.models.builtin_child import DEFAULT_CHILD_WEIGHTS, ChildNet
from sightline.models.builtin_embedder import crops_to_input
from sightline.search.photos import Detect, person_box
from sightline.sim.people import random_appearance
from sightline.sim.reference import render_reference
from sightline.tracking.tracklets import crop_box
from sightline.training.loop import fit_binary

__all__ = ["PHOTO_CHILD_SEEDS", "photo_crops", "train_photo_child"]

PHOTO_CHILD_SEEDS = {"train": 7000, "validation": 7001}
"""Random streams of the drawn people: ``default_rng([seed, i])`` for photo ``i``. Site
people and the eval's absent people come from other streams."""


def photo_crops(n: int, seed: int, detect: Detect, desc: str) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` reference photos (odd ``i``: a child) cropped to the person: the network's
    input ``(N, 3, 128, 64)`` and ``is_child``. A photo without a detection is skipped."""
    inputs, labels = [], []
    for i in tqdm(range(n), desc=desc, unit="photo", file=sys.stderr):
        rng = np.random.default_rng([seed, i])
        child = bool(i % 2)
        photo = render_reference(random_appearance(rng, child), rng)
        found = person_box(photo, detect)
        if found is None:
            continue
        inputs.append(crops_to_input([crop_box(photo, found[0])]))
        labels.append(child)
    if not inputs:
        raise RuntimeError(f"{desc}: the detector found no person in {n} photos")
    return torch.cat(inputs), np.asarray(labels, dtype=bool)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(3)
    x = x * (1.0 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5))
    return torch.roll(x, int(torch.randint(-4, 5, (1,), generator=gen)), 2)


def _validate(net: ChildNet, x: torch.Tensor, is_child: np.ndarray) -> dict[str, Any]:
    net.eval()
    with torch.inference_mode():
        p = torch.sigmoid(net(x)).double().numpy()
    eps = 1e-9
    nll = -np.mean(np.where(is_child, np.log(p + eps), np.log(1 - p + eps)))
    return {
        "accuracy": round(float(np.mean((p > 0.5) == is_child)), 4),
        "nll": round(float(nll), 4),
        "children_read_as_adults": int(np.sum(is_child & (p <= 0.5))),
        "adults_read_as_children": int(np.sum(~is_child & (p > 0.5))),
        "photos": len(p),
        "children": int(is_child.sum()),
    }


def train_photo_child(
    out: Path | None = None,
    photos: int = 2400,
    validation_photos: int = 600,
    epochs: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """Render, crop, train and validate; write the weights (default: the built-in file)
    and return the summary (validation accuracy, log-loss, errors by class)."""
    from sightline.config import BuiltinDetectorConfig
    from sightline.models.registry import build_detector

    if photos < 2 or validation_photos < 2 or epochs < 1:
        raise ValueError(
            f"need photos >= 2, validation_photos >= 2 and epochs >= 1, got {photos}, "
            f"{validation_photos}, {epochs}"
        )
    started = time.time()
    detect = build_detector(BuiltinDetectorConfig(), prefer_gpu=False).detect
    x, y = photo_crops(photos, PHOTO_CHILD_SEEDS["train"], detect, "training photos")
    xv, yv = photo_crops(
        validation_photos, PHOTO_CHILD_SEEDS["validation"], detect, "validation photos"
    )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ChildNet()
    target = torch.as_tensor(y, dtype=torch.float32)
    history = fit_binary(net, len(x), lambda idx: (_augment(x[idx], gen), target[idx]), epochs, gen)
    validation = _validate(net, xv, yv)
    meta = {
        "width": net.width,
        "train_photos": len(y),
        "train_children": int(y.sum()),
        "seeds": PHOTO_CHILD_SEEDS,
        "epochs": epochs,
        "validation": validation,
    }
    path = Path(out or DEFAULT_CHILD_WEIGHTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "meta": meta}, path)
    return {
        "weights": str(path),
        **meta,
        "train_loss": history,
        "seconds": round(time.time() - started, 1),
    }
