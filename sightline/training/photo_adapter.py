"""``sightline train photo-adapter``: fit the photo -> CCTV map and the photo calibration.

For every person of the training sites: the reference photo (cropped to the person with
the built-in detector, as search crops it) is embedded, and so are up to 12 CCTV crops
per camera from the ground-truth boxes. :func:`~sightline.search.photo_adapter.fit_photo_adapter`
fits the map for a few ridge strengths; the validation site (never used for training)
picks the strength with the best mean margin, or no map at all (the identity) when none
beats the embedder's own photo vectors (the true person's score minus the best
other person's, the score being the search's: the mean of the two best crop cosines),
and then fits the calibration of that score (:func:`~sightline.fusion.calibration.fit_calibration`)
over its (photo, person) pairs. Both are written beside the built-in weights.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from sightline.fusion.calibration import fit_calibration
from sightline.search.photo_adapter import DEFAULT_PHOTO_ADAPTER, PhotoAdapter, fit_photo_adapter
from sightline.search.photos import person_box
from sightline.search.scoring import DEFAULT_PHOTO_CALIBRATION
from sightline.tracking.tracklets import crop_box
from sightline.training import TRAIN_SEEDS, VALIDATION_SEED
from sightline.training.data import load_reid_crops
from sightline.training.sites import ensure_site

__all__ = ["DEFAULT_PHOTO_CALIBRATION", "RIDGES", "train_photo_adapter"]

RIDGES = (0.3, 1.0, 3.0, 10.0, 30.0)
_TOP_K = 2  # as the search scores a tracklet: the mean of its two best samples


@dataclass
class _SitePeople:
    photos: np.ndarray  # (P, D), one per person
    crops: list[np.ndarray]  # per person, (K, D)


def _site_people(site: Path, embed: Any, detect: Any) -> _SitePeople:
    data = load_reid_crops(site)
    vectors = np.concatenate(
        [embed(list(data.crops[i : i + 256])) for i in range(0, len(data.crops), 256)]
    )
    photos, crops = [], []
    for person in np.unique(data.person_ids):
        path = site / "reference" / f"p{int(person):04d}.png"
        if not path.is_file():
            continue
        image = np.asarray(Image.open(path).convert("RGB"))
        found = person_box(image, detect)
        crop = crop_box(image, found[0]) if found is not None else image
        photos.append(embed([crop])[0])
        crops.append(vectors[data.person_ids == person])
    return _SitePeople(np.asarray(photos), crops)


def _scores(photos: np.ndarray, crops: list[np.ndarray]) -> np.ndarray:
    """(photo, person) score: mean of the two best crop cosines."""
    out = np.empty((len(photos), len(crops)))
    for j, person in enumerate(crops):
        sims = np.sort(photos @ person.T, axis=1)[:, ::-1][:, :_TOP_K]
        out[:, j] = sims.mean(axis=1)
    return out


def _quality(scores: np.ndarray) -> dict[str, float]:
    true = np.diag(scores)
    others = np.where(np.eye(len(scores), dtype=bool), -np.inf, scores).max(axis=1)
    return {
        "rank1": round(float((true > others).mean()), 4),
        "mean_margin": round(float((true - others).mean()), 4),
        "true_mean": round(float(true.mean()), 4),
    }


def train_photo_adapter(
    data_dir: Path, out: Path | None = None, calibration_out: Path | None = None
) -> dict[str, Any]:
    """Fit, validate and save the adapter and the photo calibration; returns a report."""
    from sightline.evaluation.tracking import _builtin_embedder, _load_detector
    from sightline.models.builtin_embedder import DEFAULT_REID_WEIGHTS

    started = time.perf_counter()
    embedder = _builtin_embedder()
    detector, _, _ = _load_detector(None)
    train: list[_SitePeople] = []
    for seed in tqdm(TRAIN_SEEDS, desc="training sites", unit="site", file=sys.stderr):
        train.append(
            _site_people(ensure_site(data_dir, "small", seed), embedder.embed, detector.detect)
        )
    valid = _site_people(
        ensure_site(data_dir, "small", VALIDATION_SEED), embedder.embed, detector.detect
    )
    photos = np.concatenate([s.photos for s in train])
    targets = np.stack([c.mean(axis=0) for s in train for c in s.crops])
    sha = hashlib.sha256(Path(DEFAULT_REID_WEIGHTS).read_bytes()).hexdigest()
    trials = {"none": _quality(_scores(valid.photos, valid.crops))}
    fitted: dict[float | None, PhotoAdapter] = {}
    for ridge in RIDGES:
        adapter = PhotoAdapter(fit_photo_adapter(photos, targets, ridge), sha)
        fitted[ridge] = adapter
        trials[str(ridge)] = _quality(_scores(adapter.apply(valid.photos), valid.crops))
    best: float | None = max(RIDGES, key=lambda r: (trials[str(r)]["mean_margin"], r))
    if trials["none"]["mean_margin"] >= trials[str(best)]["mean_margin"]:
        # the embedder already maps photos well (it saw photos in training): no map
        best = None
        fitted[None] = PhotoAdapter(np.eye(photos.shape[1]), sha)
    scores = _scores(fitted[best].apply(valid.photos), valid.crops)
    same = np.eye(len(scores), dtype=bool)
    calibration = fit_calibration(
        scores.ravel(), same.ravel(), source=f"photo->CCTV, small seed {VALIDATION_SEED}"
    )
    report = {
        "train_seeds": list(TRAIN_SEEDS),
        "validation_seed": VALIDATION_SEED,
        "train_people": len(photos),
        "validation_people": len(valid.photos),
        "ridge": best,
        "validation": trials,
        "calibration": {
            "slope": round(calibration.slope, 4),
            "intercept": round(calibration.intercept, 4),
            "similarity_at_p50": round(calibration.similarity_at(0.5), 4),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    adapter = PhotoAdapter(fitted[best].matrix, sha, report)
    adapter_path = Path(out or DEFAULT_PHOTO_ADAPTER)
    calibration_path = Path(calibration_out or DEFAULT_PHOTO_CALIBRATION)
    adapter.save(adapter_path)
    calibration.save(calibration_path)
    return {**report, "adapter": str(adapter_path), "calibration_file": str(calibration_path)}
