"""What ``sightline train detector|reid`` run: render sites, train, save weights and report."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sightline.models.builtin_detector import DEFAULT_DETECTOR_WEIGHTS
from sightline.models.builtin_embedder import DEFAULT_REID_WEIGHTS
from sightline.training import REID_DEFAULT_SEEDS, TRAIN_SEEDS, VALIDATION_SEED
from sightline.training.data import (
    DetectionSamples,
    concat_crops,
    load_detection_samples,
    load_reference_crops,
    load_reid_crops,
)
from sightline.training.detector import INPUT_WIDTH, DetectorTrainConfig, train_detector
from sightline.training.report import write_report
from sightline.training.sites import ensure_site

__all__ = ["run_train_detector", "run_train_reid"]

TRAIN_PRESET = "small"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _save(path: Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "meta": meta}, tmp)
    tmp.replace(path)  # never leave a half-written weights file behind


def run_train_detector(
    data_dir: Path,
    out: Path | None = None,
    report_dir: Path | None = None,
    iterations: int | None = None,
    every: int = 3,
) -> dict[str, Any]:
    """Train the built-in detector on the training seeds; validate on the validation seed."""
    cfg = DetectorTrainConfig() if iterations is None else DetectorTrainConfig(iterations)
    out = Path(out or DEFAULT_DETECTOR_WEIGHTS)
    report_dir = Path(report_dir or out.parent / "reports")
    train_sites = [ensure_site(data_dir, TRAIN_PRESET, s) for s in TRAIN_SEEDS]
    val_site = ensure_site(data_dir, TRAIN_PRESET, VALIDATION_SEED)
    _log(f"loading frames of {len(train_sites)} training sites ...")
    parts = [load_detection_samples(s, every=every, width=INPUT_WIDTH) for s in train_sites]
    train = DetectionSamples(
        np.concatenate([p.frames for p in parts]),
        [b for p in parts for b in p.boxes],
        [v for p in parts for v in p.visibility],
    )
    del parts
    validation = load_detection_samples(val_site, every=10, width=INPUT_WIDTH)
    _log(f"{len(train.frames)} training frames, {len(validation.frames)} validation frames")
    net, result = train_detector(train, validation, cfg, log=_log)
    meta = _meta(cfg, width=32, input_width=INPUT_WIDTH)
    return _finish("detector", net, meta, result, out, report_dir, train_frames=len(train.frames))


def _meta(cfg: Any, extra_seeds: tuple[int, ...] = (), **arch: Any) -> dict[str, Any]:
    """What a weights file records: architecture, training data and settings."""
    return {
        **arch,
        "train_preset": TRAIN_PRESET,
        "train_seeds": list(TRAIN_SEEDS) + list(extra_seeds),
        "validation_seed": VALIDATION_SEED,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(cfg),
    }


def _finish(
    name: str,
    net: torch.nn.Module,
    meta: dict[str, Any],
    result: dict[str, Any],
    out: Path,
    report_dir: Path,
    **facts: Any,
) -> dict[str, Any]:
    """Save the weights, write the report, and return the summary the CLI prints."""
    _save(out, net.state_dict(), meta)
    losses = result["losses"]
    summary = {
        "model": name,
        "weights": str(out),
        **meta,
        **facts,
        "train_seconds": round(result["train_seconds"], 1),
        "final_loss": sum(losses[-50:]) / max(1, min(50, len(losses))),
        "validation": result["validation"],
    }
    summary["report"] = str(write_report(report_dir, name, losses, summary))
    return summary


def run_train_reid(
    data_dir: Path,
    out: Path | None = None,
    report_dir: Path | None = None,
    iterations: int | None = None,
) -> dict[str, Any]:
    """Train the built-in re-ID embedder on people (CCTV crops and reference photos) of the
    small training sites and the :data:`REID_DEFAULT_SEEDS` default sites."""
    from sightline.evaluation.tracking import _load_detector
    from sightline.training.reid import ReidTrainConfig, train_reid

    cfg = ReidTrainConfig() if iterations is None else ReidTrainConfig(iterations=iterations)
    out = Path(out or DEFAULT_REID_WEIGHTS)
    report_dir = Path(report_dir or out.parent / "reports")
    train_sites = [ensure_site(data_dir, TRAIN_PRESET, s) for s in TRAIN_SEEDS] + [
        ensure_site(data_dir, "default", s) for s in REID_DEFAULT_SEEDS
    ]
    val_site = ensure_site(data_dir, TRAIN_PRESET, VALIDATION_SEED)
    detector, _, _ = _load_detector(None)
    train = []
    for site in tqdm(train_sites, desc="cropping people", unit="site", file=sys.stderr):
        cctv = load_reid_crops(site, per_track=cfg.crops_per_track, margin=0.08, size=(138, 70))
        photos = load_reference_crops(site, detector.detect, margin=0.08, size=(138, 70))
        train.append(concat_crops([cctv, photos]))
    validation = concat_crops(
        [
            load_reid_crops(val_site, min_visibility=0.5, per_track=5),
            load_reference_crops(val_site, detector.detect),
        ]
    )
    net, result = train_reid(train, validation, cfg, log=_log)
    meta = _meta(cfg, REID_DEFAULT_SEEDS, dim=net.dim, width=32)
    return _finish(
        "reid",
        net,
        meta,
        result,
        out,
        report_dir,
        train_crops=result["train_crops"],
        train_identities=result["train_identities"],
    )


def run_calibrate_fusion(
    data_dir: Path, out: Path | None = None, seed: int = VALIDATION_SEED
) -> dict[str, Any]:
    """Fit fusion's appearance calibration on a site the re-ID model did not train on.

    Each (camera, person) ground-truth track of the site becomes one mean embedding
    (built-in embedder, up to 12 crops); every cross-camera pair is a sample, labelled
    by whether the person is the same.
    """
    from sightline.fusion.calibration import DEFAULT_CALIBRATION, fit_calibration
    from sightline.models.builtin_embedder import BuiltinEmbedder, load_embedder_weights
    from sightline.models.core import l2_normalise

    if seed in TRAIN_SEEDS:
        raise ValueError(f"seed {seed} trained the re-ID model; calibrate on another site")
    site = ensure_site(data_dir, TRAIN_PRESET, seed)
    net, _ = load_embedder_weights(DEFAULT_REID_WEIGHTS)
    embedder = BuiltinEmbedder(net, prefer_gpu=False)
    crops = load_reid_crops(site, min_visibility=0.5, per_track=12)
    vectors = embedder.embed(list(crops.crops))
    keys = sorted(set(zip(crops.camera_ids.tolist(), crops.person_ids.tolist(), strict=True)))
    means, cams, people = [], [], []
    for cam, pid in keys:
        mask = (crops.camera_ids == cam) & (crops.person_ids == pid)
        means.append(l2_normalise(vectors[mask].mean(axis=0, keepdims=True))[0])
        cams.append(cam)
        people.append(pid)
    means_arr, cams_arr, people_arr = np.stack(means), np.array(cams), np.array(people)
    sims = means_arr @ means_arr.T
    upper = np.triu(np.ones_like(sims, dtype=bool), 1) & (cams_arr[:, None] != cams_arr[None, :])
    same = people_arr[:, None] == people_arr[None, :]
    calibration = fit_calibration(
        sims[upper], same[upper], source=f"{TRAIN_PRESET} seed {seed}, built-in re-ID weights"
    )
    out = Path(out or DEFAULT_CALIBRATION)
    calibration.save(out)
    return {
        "calibration": str(out),
        "slope": round(calibration.slope, 3),
        "intercept": round(calibration.intercept, 3),
        "similarity_at_p50": round(calibration.similarity_at(0.5), 4),
        "pairs_same": calibration.pairs_same,
        "pairs_different": calibration.pairs_different,
        "mean_similarity_same": round(float(sims[upper & same].mean()), 4),
        "mean_similarity_different": round(float(sims[upper & ~same].mean()), 4),
    }
