"""Association costs and gated one-to-one assignment (scipy's ``linear_sum_assignment``)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from sightline.evaluation.matching import box_iou

__all__ = ["Assignment", "appearance_cost", "assign", "iou_cost"]

_FORBIDDEN = 1e6


class Assignment:
    """Result of :func:`assign`: matched (row, col) pairs and what stayed unmatched."""

    __slots__ = ("cols", "rows", "unmatched_cols", "unmatched_rows")

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> None:
        self.rows = rows
        self.cols = cols
        self.unmatched_rows = np.setdiff1d(np.arange(n_rows), rows)
        self.unmatched_cols = np.setdiff1d(np.arange(n_cols), cols)


def iou_cost(
    track_boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray | None = None
) -> np.ndarray:
    """``1 - IoU`` between predicted track boxes (rows) and detections (columns).

    With ``det_scores`` the IoU is multiplied by the detection score first (ByteTrack's
    score fusion): a confident detection wins a tie over a doubtful one.
    """
    if len(track_boxes) == 0 or len(det_boxes) == 0:
        return np.zeros((len(track_boxes), len(det_boxes)))
    similarity = box_iou(track_boxes, det_boxes)
    if det_scores is not None:
        similarity = similarity * det_scores[None, :]
    return 1.0 - similarity


def appearance_cost(track_embeddings: np.ndarray, det_embeddings: np.ndarray) -> np.ndarray:
    """Cosine distance ``(1 - cos) / 2`` in [0, 1] between L2-normalised embeddings."""
    return (1.0 - track_embeddings @ det_embeddings.T) / 2.0


def assign(cost: np.ndarray, max_cost: float) -> Assignment:
    """Minimum-cost one-to-one matching keeping only pairs with ``cost <= max_cost``."""
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Assignment(empty, empty, n_rows, n_cols)
    gated = np.where(cost <= max_cost, cost, _FORBIDDEN)
    rows, cols = linear_sum_assignment(gated)
    keep = gated[rows, cols] < _FORBIDDEN
    return Assignment(rows[keep], cols[keep], n_rows, n_cols)
