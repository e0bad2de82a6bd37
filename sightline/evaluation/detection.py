"""Detector AP50 on a rendered site: COCO evaluation by pycocotools.

Ground-truth boxes less than ``min_visibility`` visible are marked ``iscrowd`` so that a
detection on a mostly hidden person is neither rewarded nor punished (COCO's ignore
regions); AP50 is then "AP on person boxes with >= 50 % visibility".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sightline.models.core import Detections

__all__ = ["average_precision_50", "detect_all"]


def average_precision_50(
    detections: Sequence[Detections],
    gt_boxes: Sequence[np.ndarray],
    gt_visibility: Sequence[np.ndarray],
    min_visibility: float = 0.5,
) -> dict[str, float]:
    """AP at IoU 0.5 and recall at 100 detections per frame, one class (person), by COCOeval."""
    images, annotations, results = [], [], []
    for image_id, (det, boxes, vis) in enumerate(
        zip(detections, gt_boxes, gt_visibility, strict=True), start=1
    ):
        images.append({"id": image_id})
        for box, v in zip(np.asarray(boxes).reshape(-1, 4), vis, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h,
                    "iscrowd": int(v < min_visibility),
                }
            )
        for box, score in zip(det.xyxy, det.scores, strict=True):
            xywh = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
            results.append(
                {"image_id": image_id, "category_id": 1, "bbox": xywh, "score": float(score)}
            )
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    n_gt = sum(1 for a in annotations if not a["iscrowd"])
    return {
        "ap50": max(float(evaluator.stats[0]), 0.0),
        "recall_at_100": max(float(evaluator.stats[8]), 0.0),
        "frames": len(images),
        "gt_boxes": n_gt,
    }


def detect_all(
    detect: Callable[[np.ndarray], list[Detections]], frames: np.ndarray, batch: int = 16
) -> list[Detections]:
    """Run ``detect`` over ``frames`` in batches."""
    out: list[Detections] = []
    for start in range(0, len(frames), batch):
        out.extend(detect(frames[start : start + batch]))
    return out
