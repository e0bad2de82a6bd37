"""Match a pipeline's detections to ground-truth boxes frame by frame (precision, recall).

One-to-one matching at IoU >= 0.5 by scipy's ``linear_sum_assignment``. Ground-truth
people less than ``min_visibility`` visible are ignore regions, with COCO's rule for
them: an unmatched detection lying at least half inside one (intersection over the
detection's own area >= 0.5) is neither a true nor a false positive, and missing a
hidden person is not a miss.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment

__all__ = ["box_ioa", "box_iou", "match_frame", "precision_recall_by_camera"]


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(rb - lt, 0, None), axis=2)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    inter = _intersection(a, b)
    return inter / np.maximum(_area(a)[:, None] + _area(b)[None, :] - inter, 1e-9)


def box_ioa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the area of each box of ``a``: (len(a), len(b))."""
    return _intersection(a, b) / np.maximum(_area(a)[:, None], 1e-9)


def match_frame(
    det: np.ndarray, gt: np.ndarray, visible: np.ndarray, iou: float = 0.5
) -> tuple[int, int, int]:
    """(true positives, false positives, misses) of one frame's boxes."""
    if len(det) == 0:
        return 0, 0, int(visible.sum())
    if len(gt) == 0:
        return 0, len(det), 0
    overlap = box_iou(det, gt)
    rows, cols = linear_sum_assignment(-overlap)
    good = overlap[rows, cols] >= iou
    rows, cols = rows[good], cols[good]
    tp = int(visible[cols].sum())
    unmatched = np.setdiff1d(np.arange(len(det)), rows)
    # an unmatched detection lying on a hidden person is not counted against the detector
    hidden = np.flatnonzero(~visible)
    on_hidden = (
        int((box_ioa(det[unmatched], gt[hidden]) >= 0.5).any(axis=1).sum())
        if len(unmatched) and len(hidden)
        else 0
    )
    fp = len(unmatched) - on_hidden
    return tp, fp, int(visible.sum()) - tp


def precision_recall_by_camera(
    detections: pl.DataFrame,
    gt_boxes: pl.DataFrame,
    min_visibility: float = 0.5,
    min_score: float = 0.3,
) -> pl.DataFrame:
    """Per camera: true/false positives, misses, precision and recall.

    ``detections`` has camera_id, frame_ts, x1..y2, score; ``gt_boxes`` has camera_id, ts,
    x1..y2, visibility. Detections scoring below ``min_score`` are left out (the pipeline
    keeps weak boxes for the tracker; precision is judged at a detector's operating
    point). Ground-truth frames between a camera's first and last detection are scored
    (a forensic run processes every frame; frames without detections have no rows).
    """
    if "score" in detections.columns:
        detections = detections.filter(pl.col("score") >= min_score)
    det_by = detections.partition_by("camera_id", "frame_ts", as_dict=True)
    spans = detections.group_by("camera_id").agg(
        pl.col("frame_ts").min().alias("first"), pl.col("frame_ts").max().alias("last")
    )
    scored = gt_boxes.join(spans, on="camera_id").filter(
        pl.col("ts").is_between(pl.col("first"), pl.col("last"))
    )
    rows = []
    for (cam, ts), gt in scored.partition_by("camera_id", "ts", as_dict=True).items():
        det = det_by.get((cam, ts))
        det_xy = np.zeros((0, 4)) if det is None else det.select("x1", "y1", "x2", "y2").to_numpy()
        gt_xy = gt.select("x1", "y1", "x2", "y2").to_numpy()
        visible = gt["visibility"].to_numpy() >= min_visibility
        rows.append((cam, *match_frame(det_xy, gt_xy, visible)))
    gt_keys = set(scored.select("camera_id", "ts").unique().iter_rows())
    for key, det in det_by.items():  # frames with detections but no ground truth at all
        if key not in gt_keys:
            rows.append((key[0], 0, det.height, 0))
    table = pl.DataFrame(rows, schema=["camera_id", "tp", "fp", "fn"], orient="row")
    return (
        table.group_by("camera_id")
        .agg(pl.col("tp", "fp", "fn").sum())
        .with_columns(
            precision=pl.col("tp") / (pl.col("tp") + pl.col("fp")).clip(1),
            recall=pl.col("tp") / (pl.col("tp") + pl.col("fn")).clip(1),
        )
        .sort("camera_id")
    )
