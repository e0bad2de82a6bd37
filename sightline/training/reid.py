"""``sightline train reid``: fit the built-in re-ID embedder on people of synthetic sites.

Batches hold P identities x K crops (preferring crops from different cameras, since
cross-camera matching is the job). Each person's reference photo, cropped as search crops
it, is one more "camera" of that person, and with probability ``photo_rate`` it is put in
the batch first: photo search matches a close, warm-lit, front-on family photo against
CCTV crops, a gap no CCTV pair shows the model. The loss is identity cross-entropy with label
smoothing on a linear classifier plus a batch-hard triplet loss on the normalised
embeddings; crops are jittered (position, scale via the margin, flip, colour gain) so
detector boxes and camera lighting at run time look like training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from sightline.evaluation.reid import cross_camera_metrics
from sightline.models.builtin_embedder import CROP_SIZE, BuiltinEmbedder, EmbedderNet
from sightline.search.scoring import TOP_K_SAMPLES
from sightline.training.data import PHOTO_CAMERA, ReidCrops

__all__ = [
    "ReidTrainConfig",
    "batch_hard_triplet",
    "photo_metrics",
    "photo_person_scores",
    "train_reid",
]


@dataclass(frozen=True)
class ReidTrainConfig:
    """Hyper-parameters of re-ID training (defaults are what the committed weights used)."""

    iterations: int = 5000
    identities_per_batch: int = 16
    crops_per_identity: int = 4
    crops_per_track: int = 24
    lr: float = 2e-3
    margin: float = 0.3
    seed: int = 0
    photo_rate: float = 0.5


def batch_hard_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over anchors of max(0, hardest positive distance - hardest negative + margin)."""
    dist = torch.cdist(emb, emb)
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(dim=1).values
    hardest_neg = (dist + same * 1e4).min(dim=1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


@dataclass
class _Pool:
    crops: np.ndarray
    labels: np.ndarray
    cameras: np.ndarray
    by_label: list[np.ndarray]
    photos: list[np.ndarray]  # per label, the indices of its reference-photo crops


def _pool(sites: list[ReidCrops]) -> _Pool:
    crops = np.concatenate([s.crops for s in sites])
    keys = np.concatenate([s.person_ids + 100_000 * i for i, s in enumerate(sites)])
    cams = np.concatenate(
        [np.char.add(f"{i}-", s.camera_ids.astype(str)) for i, s in enumerate(sites)]
    )
    _, labels = np.unique(keys, return_inverse=True)
    by_label = [np.flatnonzero(labels == k) for k in range(labels.max() + 1)]
    is_photo = np.concatenate([s.camera_ids.astype(str) == PHOTO_CAMERA for s in sites])
    photos = [members[is_photo[members]] for members in by_label]
    return _Pool(crops, labels, cams, by_label, photos)


def _sample(pool: _Pool, cfg: ReidTrainConfig, rng: np.random.Generator) -> np.ndarray:
    ids = rng.choice(len(pool.by_label), cfg.identities_per_batch, replace=False)
    picked = []
    for k in ids:
        members = pool.by_label[k]
        cams = pool.cameras[members]
        # one crop per camera first (cross-camera positives), then any
        order = rng.permutation(len(members))
        _, first = np.unique(cams[order], return_index=True)
        rest = np.setdiff1d(np.arange(len(members)), first)
        ranked = members[np.concatenate([order[first], order[rng.permutation(rest)]])]
        photos = pool.photos[k]
        if len(photos) and rng.random() < cfg.photo_rate:
            photo = rng.choice(photos)
            ranked = np.concatenate([[photo], ranked[ranked != photo]])
        chosen = ranked[: cfg.crops_per_identity]
        if len(chosen) < cfg.crops_per_identity:
            chosen = rng.choice(members, cfg.crops_per_identity)
        picked.append(chosen)
    return np.concatenate(picked)


def _augment(crops: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    h, w = CROP_SIZE
    out = np.empty((len(crops), h, w, 3), np.float32)
    for i, crop in enumerate(crops):
        y0 = int(rng.integers(0, crop.shape[0] - h + 1))
        x0 = int(rng.integers(0, crop.shape[1] - w + 1))
        patch = crop[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.75, 1.25)
        out[i] = np.clip(patch * gain + rng.uniform(-15, 15), 0, 255)
    return torch.as_tensor(out).permute(0, 3, 1, 2).div_(255.0)


def photo_person_scores(photos: np.ndarray, crops_by_person: list[np.ndarray]) -> np.ndarray:
    """``(photo, person)`` scores as search scores a tracklet: the mean of the
    :data:`~sightline.search.scoring.TOP_K_SAMPLES` best cosines between the photo and
    the person's crops (all L2-normalised)."""
    out = np.empty((len(photos), len(crops_by_person)))
    for j, person in enumerate(crops_by_person):
        sims = np.sort(photos @ person.T, axis=1)[:, ::-1][:, :TOP_K_SAMPLES]
        out[:, j] = sims.mean(axis=1)
    return out


def photo_metrics(
    photos: np.ndarray, photo_ids: np.ndarray, crops: np.ndarray, crop_ids: np.ndarray
) -> dict[str, float]:
    """Photo -> CCTV retrieval as search scores it: each photo (L2-normalised, (P, D))
    against each person's crops, a person's score being the mean of its two best crop
    cosines. ``rank1``: share of photos whose own person scores highest; ``mean_margin``:
    own score minus the best other person's."""
    people = np.unique(crop_ids)
    scores = photo_person_scores(photos, [crops[crop_ids == person] for person in people])
    keep = np.isin(photo_ids, people)
    own = people.searchsorted(photo_ids[keep])
    rows = scores[keep]
    true = rows[np.arange(len(rows)), own]
    rows[np.arange(len(rows)), own] = -np.inf
    others = rows.max(axis=1)
    return {
        "rank1": float((true > others).mean()) if len(rows) else 0.0,
        "mean_margin": float((true - others).mean()) if len(rows) else 0.0,
        "photos": len(rows),
    }


def train_reid(
    train: list[ReidCrops],
    validation: ReidCrops,
    cfg: ReidTrainConfig,
    log: Callable[[str], None] = print,
) -> tuple[EmbedderNet, dict[str, Any]]:
    """Train an :class:`EmbedderNet`; returns it and a report (loss curve, held-out metrics).

    Crops whose camera is :data:`~sightline.training.data.PHOTO_CAMERA` (reference photos,
    in ``train`` or ``validation``) are photo samples; on the validation site they are
    scored as photo queries (:func:`photo_metrics`), the CCTV crops as cross-camera re-ID.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pool = _pool(train)
    n_ids = len(pool.by_label)
    net = EmbedderNet()
    classifier = torch.nn.Linear(net.dim, n_ids, bias=False)
    params = list(net.parameters()) + list(classifier.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.iterations)
    losses: list[float] = []
    started = time.perf_counter()
    net.train()
    for _ in tqdm(range(cfg.iterations), desc="train reid", unit="it", mininterval=5):
        idx = _sample(pool, cfg, rng)
        labels = torch.as_tensor(pool.labels[idx])
        emb = net(_augment(pool.crops[idx], rng))
        ce = F.cross_entropy(classifier(emb), labels, label_smoothing=0.1)
        loss = ce + batch_hard_triplet(F.normalize(emb, dim=1), labels, cfg.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    vectors = BuiltinEmbedder(net, prefer_gpu=False).embed(list(validation.crops))
    is_photo = validation.camera_ids.astype(str) == PHOTO_CAMERA
    cctv = ~is_photo
    val: dict[str, Any] = cross_camera_metrics(
        vectors[cctv], validation.person_ids[cctv], validation.camera_ids[cctv]
    )
    log(f"held-out validation rank-1 {val['rank1']:.3f} mAP {val['mAP']:.3f}")
    if is_photo.any():
        val["photo"] = photo_metrics(
            vectors[is_photo],
            validation.person_ids[is_photo],
            vectors[cctv],
            validation.person_ids[cctv],
        )
        log(f"held-out photo -> CCTV rank-1 {val['photo']['rank1']:.3f}")
    return net, {
        "losses": losses,
        "validation": val,
        "train_seconds": time.perf_counter() - started,
        "train_crops": len(pool.crops),
        "train_identities": n_ids,
    }
