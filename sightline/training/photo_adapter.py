"""``sightline train photo-adapter``: fit the photo -> CCTV map and the photo calibration.

For every person of the training sites: the reference photo (cropped to the person with
the built-in detector, as search crops it) is embedded, and so are up to 12 CCTV crops
per camera from the ground-truth boxes. :func:`~sightline.search.photo_adapter.fit_photo_adapter`
fits the map for a few ridge strengths. The validation sites (:data:`PHOTO_VALIDATION_SITES`,
never used for training) pick the strength with the best mean margin (the true person's
score minus the best other person's on the same site, the score being the search's: the
mean of the two best crop cosines), or no map at all (the identity) when none beats the
embedder's own photo vectors. Then the calibration of that score
(:func:`~sightline.fusion.calibration.fit_calibration`) is fitted over their (photo,
person) pairs. Both are written beside the built-in weights.
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
from sightline.search.photos import embed_photos
from sightline.search.scoring import DEFAULT_PHOTO_CALIBRATION
from sightline.training import DEFAULT_VALIDATION_SEED, TRAIN_SEEDS, VALIDATION_SEED
from sightline.training.data import load_reid_crops
from sightline.training.reid import photo_person_scores
from sightline.training.sites import ensure_site

__all__ = ["DEFAULT_PHOTO_CALIBRATION", "PHOTO_VALIDATION_SITES", "RIDGES", "train_photo_adapter"]

RIDGES = (0.3, 1.0, 3.0, 10.0, 30.0)
PHOTO_VALIDATION_SITES = (("small", VALIDATION_SEED), ("default", DEFAULT_VALIDATION_SEED))
"""Sites no model trains on that choose the map and fit the photo calibration. The
``default`` site matters: its 80 people include look-alikes, whose photo scores set
how confident a stranger's best match may look; 20 people of a small site did not."""


@dataclass
class _SitePeople:
    photos: np.ndarray  # (P, D), one per person
    crops: list[np.ndarray]  # per person, (K, D)


def _site_people(site: Path, embed: Any, detect: Any) -> _SitePeople:
    data = load_reid_crops(site)
    vectors = np.concatenate(
        [embed(list(data.crops[i : i + 256])) for i in range(0, len(data.crops), 256)]
    )
    images, crops = [], []
    for person in np.unique(data.person_ids):
        path = site / "reference" / f"p{int(person):04d}.png"
        if not path.is_file():
            continue
        images.append(np.asarray(Image.open(path).convert("RGB")))
        crops.append(vectors[data.person_ids == person])
    # cropped and embedded exactly as a search query's photos are
    return _SitePeople(embed_photos(images, embed, detect).vectors, crops)


def _quality(per_site: list[np.ndarray]) -> dict[str, float]:
    """Rank-1 and margins over the photos of every site (each against its own people)."""
    true = np.concatenate([np.diag(scores) for scores in per_site])
    others = np.concatenate(
        [np.where(np.eye(len(s), dtype=bool), -np.inf, s).max(axis=1) for s in per_site]
    )
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
    valid = [
        _site_people(ensure_site(data_dir, preset, seed), embedder.embed, detector.detect)
        for preset, seed in PHOTO_VALIDATION_SITES
    ]
    photos = np.concatenate([s.photos for s in train])
    targets = np.stack([c.mean(axis=0) for s in train for c in s.crops])
    sha = hashlib.sha256(Path(DEFAULT_REID_WEIGHTS).read_bytes()).hexdigest()

    def validation_scores(adapter: PhotoAdapter | None) -> list[np.ndarray]:
        return [
            photo_person_scores(v.photos if adapter is None else adapter.apply(v.photos), v.crops)
            for v in valid
        ]

    trials = {"none": _quality(validation_scores(None))}
    fitted: dict[float | None, PhotoAdapter] = {}
    for ridge in RIDGES:
        adapter = PhotoAdapter(fit_photo_adapter(photos, targets, ridge), sha)
        fitted[ridge] = adapter
        trials[str(ridge)] = _quality(validation_scores(adapter))
    best: float | None = max(RIDGES, key=lambda r: (trials[str(r)]["mean_margin"], r))
    if trials["none"]["mean_margin"] >= trials[str(best)]["mean_margin"]:
        # the embedder already maps photos well (it saw photos in training): no map
        best = None
        fitted[None] = PhotoAdapter(np.eye(photos.shape[1]), sha)
    per_site = validation_scores(fitted[best])
    sites = ", ".join(f"{preset} seed {seed}" for preset, seed in PHOTO_VALIDATION_SITES)
    calibration = fit_calibration(
        np.concatenate([scores.ravel() for scores in per_site]),
        np.concatenate([np.eye(len(scores), dtype=bool).ravel() for scores in per_site]),
        source=f"photo->CCTV, {sites}",
    )
    report = {
        "train_seeds": list(TRAIN_SEEDS),
        "validation_sites": [f"{preset}-{seed}" for preset, seed in PHOTO_VALIDATION_SITES],
        "train_people": len(photos),
        "validation_people": sum(len(v.photos) for v in valid),
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
