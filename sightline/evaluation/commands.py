"""What ``sightline eval detector|reid`` run: score the built-in models on a held-out site."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from sightline.config import BuiltinDetectorConfig
from sightline.evaluation import EvaluationError
from sightline.evaluation.detection import average_precision_50
from sightline.evaluation.reid import cross_camera_metrics
from sightline.models.builtin_detector import DEFAULT_DETECTOR_WEIGHTS, BuiltinDetector
from sightline.models.builtin_embedder import DEFAULT_REID_WEIGHTS, BuiltinEmbedder
from sightline.models.core import Detections, DetectorBackend
from sightline.training import DEFAULT_VALIDATION_SEED, TRAIN_SEEDS, VALIDATION_SEED
from sightline.training.data import load_reid_crops, read_frames
from sightline.training.sites import ensure_site

__all__ = ["EvaluationError", "detect_video", "run_eval_detector", "run_eval_reid"]

_EVAL_SCORE_THRESHOLD = 0.05  # AP integrates over scores: keep low-scoring boxes


def _check_held_out(seed: int, meta: dict[str, Any]) -> None:
    # the photo calibration is fitted on DEFAULT_VALIDATION_SEED whatever the weights say
    used = set(meta.get("train_seeds", TRAIN_SEEDS)) | {
        meta.get("validation_seed", VALIDATION_SEED),
        DEFAULT_VALIDATION_SEED,
    }
    if seed in used:
        raise EvaluationError(
            f"seed {seed} was used to train or validate these weights (seeds {sorted(used)}); "
            "pick another seed for a held-out evaluation"
        )


def detect_video(
    video: Path, detector: DetectorBackend, batch: int = 16, progress: tqdm | None = None
) -> tuple[list[int], list[Detections], tuple[int, int]]:
    """Run ``detector`` over every frame of ``video`` in batches of ``batch`` frames.

    Returns the frame indices, one :class:`Detections` per frame and the frame size
    ``(height, width)``; ``progress`` (a tqdm bar), when given, advances per frame.
    """
    dets: list[Detections] = []
    indices: list[int] = []
    chunk: list[np.ndarray] = []
    size = (0, 0)
    for index, frame in read_frames(video):
        chunk.append(frame)
        indices.append(index)
        size = frame.shape[:2]
        if len(chunk) == batch:
            dets.extend(detector.detect(np.stack(chunk)))
            if progress is not None:
                progress.update(len(chunk))
            chunk = []
    if chunk:
        dets.extend(detector.detect(np.stack(chunk)))
        if progress is not None:
            progress.update(len(chunk))
    return indices, dets, size


def _detections_and_truth(
    site: Path, detector: BuiltinDetector, batch: int = 16
) -> tuple[list[Detections], list[np.ndarray], list[np.ndarray]]:
    gt = pl.read_parquet(site / "gt" / "boxes.parquet")
    dets: list[Detections] = []
    boxes: list[np.ndarray] = []
    vis: list[np.ndarray] = []
    for video in sorted((site / "videos").glob("*.mp4")):
        by_frame = gt.filter(pl.col("camera_id") == video.stem).partition_by(
            "frame_index", as_dict=True
        )
        indices, video_dets, (h, w) = detect_video(video, detector, batch)
        dets.extend(video_dets)
        for index in indices:
            rows = by_frame.get((index,))
            if rows is None:
                boxes.append(np.zeros((0, 4), np.float32))
                vis.append(np.zeros(0, np.float32))
            else:
                xyxy = rows.select("x1", "y1", "x2", "y2").to_numpy()
                boxes.append(np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32))
                vis.append(rows["visibility"].to_numpy())
    return dets, boxes, vis


def run_eval_detector(
    preset: str, seed: int, data_dir: Path, weights: Path | None = None
) -> dict[str, Any]:
    """AP50 of the built-in detector on site (preset, seed), persons >= 50 % visible."""
    from sightline.models.builtin_detector import load_detector_weights

    weights = Path(weights or DEFAULT_DETECTOR_WEIGHTS)
    net, meta = load_detector_weights(weights)
    _check_held_out(seed, meta)
    site = ensure_site(data_dir, preset, seed)
    detector = BuiltinDetector(
        net, int(meta.get("input_width", 320)), _EVAL_SCORE_THRESHOLD, prefer_gpu=False
    )
    print(f"detecting on every frame of {site} ...", file=sys.stderr)
    dets, boxes, vis = _detections_and_truth(site, detector)
    result = average_precision_50(dets, boxes, vis, min_visibility=0.5)
    default_threshold = BuiltinDetectorConfig().score_threshold
    at_default = average_precision_50(
        [d.above(default_threshold) for d in dets], boxes, vis, min_visibility=0.5
    )
    return {
        "model": "detector",
        "weights": str(weights),
        "preset": preset,
        "seed": seed,
        "metric": "COCO AP at IoU 0.5 (pycocotools), persons with visibility >= 0.5; "
        "less visible persons are ignore regions",
        **result,
        "recall_at_default_threshold": at_default["recall_at_100"],
        "default_score_threshold": default_threshold,
        "target_ap50": 0.90,
        "passed": result["ap50"] >= 0.90,
    }


def run_eval_reid(
    preset: str, seed: int, data_dir: Path, weights: Path | None = None
) -> dict[str, Any]:
    """Cross-camera rank-1 and mAP of the built-in embedder on the people of a held-out site."""
    from sightline.models.builtin_embedder import load_embedder_weights

    weights = Path(weights or DEFAULT_REID_WEIGHTS)
    net, meta = load_embedder_weights(weights)
    _check_held_out(seed, meta)
    site = ensure_site(data_dir, preset, seed)
    crops = load_reid_crops(site, min_visibility=0.5, per_track=5)
    embedder = BuiltinEmbedder(net, prefer_gpu=False)
    vectors = np.concatenate(
        [embedder.embed(list(crops.crops[i : i + 64])) for i in range(0, len(crops.crops), 64)]
    )
    result = cross_camera_metrics(vectors, crops.person_ids, crops.camera_ids)
    return {
        "model": "reid",
        "weights": str(weights),
        "preset": preset,
        "seed": seed,
        "metric": "cross-camera rank-1 and mAP (torchmetrics retrieval); each crop queries "
        "the crops of the other cameras; up to 5 crops per person and camera, "
        "persons >= 50 % visible",
        **result,
        "target_rank1": 0.90,
        "target_mAP": 0.75,
        "passed": result["rank1"] >= 0.90 and result["mAP"] >= 0.75,
    }
