"""Output adapters: what a TorchScript detector returns, turned into per-image boxes.

Each adapter is a pure function on torch tensors (one per supported ``format``, after the
``from_*`` constructors of roboflow/supervision) and returns one ``(boxes, scores)`` pair per
image: ``boxes`` ``(K, 4) float32`` x1, y1, x2, y2 in the pixels of the model input (the
letterboxed image), ``scores`` ``(K,) float32``. Undoing the letterbox and thresholding are
the caller's job. Shape mismatches raise :class:`ValueError` naming the expected and actual
shapes; the caller adds the model file.

NMS is written here in plain torch (torchvision is not a dependency).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "PerImageBoxes",
    "box_iou",
    "decode_boxes_output",
    "decode_yolov8_output",
    "describe_output",
    "nms",
]

PerImageBoxes = list[tuple[torch.Tensor, torch.Tensor]]

# Caps in the spirit of Ultralytics' max_nms / max_det: NMS is O(K^2) in memory.
MAX_NMS_CANDIDATES = 3000
MAX_DETECTIONS = 300
# Fixed-point NMS steps before the sequential fallback; each step costs O(K^2).
NMS_VECTORISED_STEPS = 16


def describe_output(output: Any) -> str:
    """A short structural description of a model output, e.g. ``tuple(Tensor(1, 3, 4), ...)``."""
    if isinstance(output, torch.Tensor):
        return f"Tensor{tuple(output.shape)}"
    if isinstance(output, tuple | list):
        inner = ", ".join(describe_output(item) for item in output[:4])
        more = ", ..." if len(output) > 4 else ""
        return f"{type(output).__name__}({inner}{more})"
    return type(output).__name__


def _is_tensor_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(item, torch.Tensor) for item in value)
    )


def _check_image_pair(boxes: torch.Tensor, scores: torch.Tensor, image: int) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"'boxes' output for image {image}: expected boxes (K, 4) and scores (K,), "
            f"got boxes {tuple(boxes.shape)} and scores {tuple(scores.shape)}"
        )


def decode_boxes_output(output: Any) -> PerImageBoxes:
    """Decode the plain ``boxes`` format.

    Args:
        output: either a pair ``(boxes (N, K, 4), scores (N, K))`` or a list of per-image
            pairs ``[(boxes (K, 4), scores (K,)), ...]``; boxes are x1, y1, x2, y2 in model
            input pixels, scores in [0, 1].

    Returns:
        One ``(boxes (K, 4), scores (K,))`` float32 pair per image.
    """
    if _is_tensor_pair(output):
        boxes, scores = output
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.shape != boxes.shape[:2]:
            raise ValueError(
                "'boxes' output: expected (boxes (N, K, 4), scores (N, K)), "
                f"got boxes {tuple(boxes.shape)} and scores {tuple(scores.shape)}"
            )
        return [(b.float(), s.float()) for b, s in zip(boxes, scores, strict=True)]
    if isinstance(output, tuple | list) and all(_is_tensor_pair(pair) for pair in output):
        for image, (boxes, scores) in enumerate(output):
            _check_image_pair(boxes, scores, image)
        return [(boxes.float(), scores.float()) for boxes, scores in output]
    raise ValueError(
        "'boxes' output: expected a pair (boxes (N, K, 4), scores (N, K)) or a list of "
        f"per-image (boxes (K, 4), scores (K,)) pairs, got {describe_output(output)}"
    )


def decode_yolov8_output(
    output: Any,
    person_class: int,
    score_threshold: float,
    nms_iou: float,
    *,
    max_candidates: int = MAX_NMS_CANDIDATES,
    max_detections: int = MAX_DETECTIONS,
) -> PerImageBoxes:
    """Decode a YOLOv8 (or YOLO11) raw detection head, keeping people, with NMS.

    As Ultralytics' own ``predict(classes=[person_class])`` does, an anchor is a person only
    when ``person_class`` is its best-scoring class; its score is that class score.

    Args:
        output: ``(N, 4 + num_classes, A)`` tensor (or a tuple/list whose first item is
            one, as some exports return): rows cx, cy, w, h in model input pixels, then the
            per-class scores, already sigmoid-ed; ``A`` anchors, more than the rows.
        person_class: index of the person class among the class rows.
        score_threshold: anchors whose person score is below it are dropped before NMS.
        nms_iou: a box overlapping a higher-scoring kept box by IoU above it is dropped.
        max_candidates: at most this many best anchors per image enter NMS.
        max_detections: at most this many boxes per image are returned.

    Returns:
        One ``(boxes (K, 4) xyxy, scores (K,))`` float32 pair per image, by descending score.
    """
    pred = output
    if isinstance(pred, tuple | list) and pred and isinstance(pred[0], torch.Tensor):
        pred = pred[0]
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[1] < 5 + person_class:
        raise ValueError(
            f"'yolov8' output: expected a tensor (N, 4 + num_classes, anchors) with "
            f"num_classes > person_class={person_class}, got {describe_output(output)}"
        )
    if pred.shape[1] >= pred.shape[2]:
        raise ValueError(
            f"'yolov8' output: expected (N, 4 + num_classes, anchors) with more anchors than "
            f"rows, got {tuple(pred.shape)}; a transposed head or an export with nms=True "
            "((N, max_det, 6)) is not the raw head"
        )
    pred = pred.float()
    decoded = [
        _decode_yolov8_image(p, person_class, score_threshold, nms_iou, max_candidates)
        for p in pred
    ]
    return [(boxes[:max_detections], scores[:max_detections]) for boxes, scores in decoded]


def _decode_yolov8_image(
    pred: torch.Tensor, person_class: int, score_threshold: float, nms_iou: float, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    best_score, best_class = pred[4:].max(dim=0)
    keep = (best_class == person_class) & (best_score >= score_threshold)
    cxcywh = pred[:4, keep].T
    scores = best_score[keep]
    if scores.numel() > limit:
        top = scores.topk(limit).indices
        cxcywh, scores = cxcywh[top], scores[top]
    half = cxcywh[:, 2:] / 2
    boxes = torch.cat([cxcywh[:, :2] - half, cxcywh[:, :2] + half], dim=1)
    kept = nms(boxes, scores, nms_iou)
    return boxes[kept], scores[kept]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(len(a), len(b))`` of xyxy boxes ``a`` (M, 4) and ``b`` (K, 4)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of the kept boxes by descending score.

    Same result as the classic loop (and ``torchvision.ops.nms``): walk the boxes by
    descending score and keep each one not overlapping an already kept box by IoU above
    ``iou_threshold``. Computed first as the fixed point of ``keep[j] = no kept box ranked
    before j suppresses j``, one vectorised step at a time: after step t the first t ranks
    are final, and real scenes settle within a few steps (the longest suppression chain).
    A longer chain, rare but possible in a dense crowd, falls back to the classic loop.
    """
    order = scores.argsort(descending=True, stable=True)
    ranked = boxes[order]
    suppresses = (box_iou(ranked, ranked) > iou_threshold).triu(diagonal=1)
    keep = torch.ones(order.numel(), dtype=torch.bool, device=boxes.device)
    for _ in range(NMS_VECTORISED_STEPS):
        updated = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(updated, keep):
            return order[keep]
        keep = updated
    return order[_greedy_keep(suppresses)]


def _greedy_keep(suppresses: torch.Tensor) -> torch.Tensor:
    rows = suppresses.cpu().numpy()
    keep = np.ones(rows.shape[0], dtype=bool)
    for i in range(rows.shape[0]):
        if keep[i]:
            keep &= ~rows[i]
    return torch.from_numpy(keep).to(suppresses.device)
