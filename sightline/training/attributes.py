"""``sightline train attributes``: train the hat-and-bag reader of CCTV person crops.

The crops are cut from the rendered footage of the default-preset training sites
(:data:`~sightline.training.REID_DEFAULT_SEEDS`) at the ground-truth boxes, a few evenly
spaced ones per person and camera, labelled from ``gt/people.parquet`` (``hat_colour``
and ``bag_colour`` set or null). They are cut 8 % wider than the box on every side and
a random 128x64 window of them is shown each time (the detector's boxes are never
exactly the truth), mirrored half the time and with the brightness varied.
:class:`~sightline.models.builtin_attributes.AttributeNet` learns both outputs with
binary cross-entropy. The validation site
(:data:`~sightline.training.DEFAULT_VALIDATION_SEED`, never trained on) measures it per
crop and per person and camera (the mean over its crops, as a tracklet records it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torchmetrics.functional.classification import binary_auroc

from sightline.models.builtin_attributes import (
    ATTRIBUTES,
    DEFAULT_ATTRIBUTE_WEIGHTS,
    AttributeNet,
    AttributeReader,
)
from sightline.training import DEFAULT_VALIDATION_SEED, REID_DEFAULT_SEEDS
from sightline.training.data import load_reid_crops
from sightline.training.loop import fit_binary
from sightline.training.sites import ensure_site

__all__ = [
    "AttributeCrops",
    "attribute_crops",
    "auc_or_none",
    "score_attributes",
    "train_attributes",
]

_CROP = (128, 64)
_MARGIN = 0.08
_WIDE = (138, 70)  # the box and its margin resized so, then cut to _CROP (as re-ID trains)


@dataclass(frozen=True)
class AttributeCrops:
    """Crops ``(N, h, w, 3) uint8``, labels ``(N, 2)`` (hat, bag) and a group per crop
    (``<person>/<camera>``: the crops a tracklet would average)."""

    crops: np.ndarray
    labels: np.ndarray
    groups: np.ndarray


def attribute_crops(
    site: Path, per_track: int, margin: float = 0.0, size: tuple[int, int] = _CROP
) -> AttributeCrops:
    """Ground-truth crops of ``site`` with their hat and bag labels."""
    crops = load_reid_crops(site, per_track=per_track, margin=margin, size=size)
    people = pl.read_parquet(Path(site) / "gt" / "people.parquet")
    worn = {
        pid: (hat is not None, bag is not None)
        for pid, hat, bag in people.select("person_id", "hat_colour", "bag_colour").iter_rows()
    }
    labels = np.array([worn[int(p)] for p in crops.person_ids], np.float32).reshape(-1, 2)
    groups = np.array([f"{p}/{c}" for p, c in zip(crops.person_ids, crops.camera_ids, strict=True)])
    return AttributeCrops(crops.crops, labels, groups)


def _to_input(crops: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(crops).permute(0, 3, 1, 2).float().div_(255.0)


def _augment(crops: np.ndarray, gen: torch.Generator) -> torch.Tensor:
    """A random 128x64 window of the wider crops, mirrored half the time, brightness +-10 %."""
    x = _to_input(crops)
    dy = int(torch.randint(0, x.shape[2] - _CROP[0] + 1, (1,), generator=gen))
    dx = int(torch.randint(0, x.shape[3] - _CROP[1] + 1, (1,), generator=gen))
    x = x[:, :, dy : dy + _CROP[0], dx : dx + _CROP[1]]
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(3)
    return x * (1.0 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5))


def score_attributes(p: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Per attribute: AUC per crop, and AUC, accuracy at 0.5 and log-loss per group (the
    mean of its crops' probabilities, as a tracklet records it)."""
    keys, inverse = np.unique(groups, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(keys))[:, None]
    mean_p = np.zeros((len(keys), p.shape[1]))
    np.add.at(mean_p, inverse, p)
    mean_p /= counts
    group_labels = np.zeros((len(keys), p.shape[1]))
    group_labels[inverse] = labels
    eps = 1e-6
    out: dict[str, Any] = {"crops": len(p), "tracks": len(keys)}
    for j, name in enumerate(ATTRIBUTES):
        y, q = group_labels[:, j] > 0.5, np.clip(mean_p[:, j], eps, 1 - eps)
        out[name] = {
            "crop_auc": auc_or_none(p[:, j], labels[:, j]),
            "track_auc": auc_or_none(mean_p[:, j], group_labels[:, j]),
            "track_accuracy": round(float(np.mean((q > 0.5) == y)), 4),
            "track_nll": round(float(-np.mean(np.where(y, np.log(q), np.log(1 - q)))), 4),
            "tracks_with": int(y.sum()),
        }
    return out


def auc_or_none(p: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC of scores ``p`` for labels ``y`` (truthy: positive), rounded; None when
    ``y`` is empty or has one class only (undefined)."""
    if len(y) == 0 or y.min() == y.max():
        return None  # one class only: undefined
    value = binary_auroc(
        torch.tensor(np.asarray(p, np.float64)), torch.tensor(np.asarray(y) > 0.5).long()
    )
    return round(float(value), 4)


def train_attributes(
    data_dir: Path,
    out: Path | None = None,
    epochs: int = 10,
    per_track: int = 8,
    train_seeds: Sequence[int] = REID_DEFAULT_SEEDS,
    validation_seed: int = DEFAULT_VALIDATION_SEED,
    preset: str = "default",
    seed: int = 0,
) -> dict[str, Any]:
    """Render (if missing) and crop the sites, train, validate; write the weights (default:
    the built-in file) and return the summary."""
    if epochs < 1 or per_track < 1 or not train_seeds:
        raise ValueError(
            f"need epochs >= 1, per_track >= 1 and a training site, got {epochs}, "
            f"{per_track}, {list(train_seeds)}"
        )
    if validation_seed in train_seeds:
        raise ValueError(f"validation seed {validation_seed} is also a training seed")
    started = time.time()
    parts = [
        attribute_crops(ensure_site(data_dir, preset, s), per_track, _MARGIN, _WIDE)
        for s in train_seeds
    ]
    crops = np.concatenate([p.crops for p in parts])
    labels = torch.as_tensor(np.concatenate([p.labels for p in parts]))
    val = attribute_crops(ensure_site(data_dir, preset, validation_seed), per_track)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = AttributeNet()
    history = fit_binary(
        net, len(crops), lambda idx: (_augment(crops[idx.numpy()], gen), labels[idx]), epochs, gen
    )
    validation = score_attributes(AttributeReader(net)(list(val.crops)), val.labels, val.groups)
    meta = {
        "width": net.width,
        "attributes": list(ATTRIBUTES),
        "preset": preset,
        "train_seeds": list(train_seeds),
        "validation_seed": validation_seed,
        "train_crops": len(crops),
        "train_with": {n: int(labels[:, j].sum()) for j, n in enumerate(ATTRIBUTES)},
        "epochs": epochs,
        "validation": validation,
    }
    path = Path(out or DEFAULT_ATTRIBUTE_WEIGHTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": net.state_dict(), "meta": meta}, tmp)
    tmp.replace(path)  # never leave a half-written weights file behind
    return {
        "weights": str(path),
        **meta,
        "train_loss": history,
        "seconds": round(time.time() - started, 1),
    }
