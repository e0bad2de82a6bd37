"""Blur the heads of everyone but the subject in images that leave the system.

:func:`blur_heads` takes an image (a frame, or a thumbnail crop), the person boxes in it
(in its pixels) and which box is the subject, and blurs the head region (the top
:data:`HEAD_FRACTION` of the box) of every other person with a Gaussian blur. Where
another person's head region overlaps the subject's, the subject's head is kept sharp
(the analyst must see who the candidate is).

Thumbnails in the store today are crops of one person: the subject. Given the boxes of
the frame's other people (mapped into the crop with :func:`boxes_in_crop`), the parts of
their heads inside the crop are blurred; with no other boxes known, nothing is blurred,
as the crop's own top region is the subject's head. Tracklets do not store the
neighbours' boxes yet, so callers that have the frame's detections must pass them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["HEAD_FRACTION", "blur_heads", "blur_heads_jpeg", "boxes_in_crop", "head_boxes"]

HEAD_FRACTION = 0.2
"""Share of a person box's height, from the top, taken as the head (the head is ~0.13 of
a standing person; the margin covers box jitter and a tilted head)."""

_BLUR_PER_HEAD = 0.25  # blur radius as a share of the head's height: unrecognisable
_MIN_RADIUS = 2.0


def head_boxes(boxes: np.ndarray, fraction: float = HEAD_FRACTION) -> np.ndarray:
    """The head region ``(x1, y1, x2, y1 + fraction * h)`` of each ``(N, 4)`` xyxy box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    heads = b.copy()
    heads[:, 3] = b[:, 1] + fraction * (b[:, 3] - b[:, 1])
    return heads


def boxes_in_crop(boxes: np.ndarray, crop: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Frame boxes ``(N, 4)`` in the pixels of the crop ``crop`` (xyxy in the frame)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0 = float(np.floor(crop[0])), float(np.floor(crop[1]))
    return b - np.array([x0, y0, x0, y0])


def _pixel_bounds(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def blur_heads(
    image: np.ndarray,
    boxes: np.ndarray,
    subject: int | None,
    *,
    fraction: float = HEAD_FRACTION,
) -> np.ndarray:
    """A copy of ``image`` ``(H, W, 3) uint8`` with the head of every box but
    ``boxes[subject]`` blurred (every box's with ``subject=None``)."""
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {pixels.dtype} {pixels.shape}")
    heads = head_boxes(boxes, fraction)
    if subject is not None and not 0 <= subject < len(heads):
        raise ValueError(f"subject {subject} is not one of the {len(heads)} boxes")
    height, width = pixels.shape[:2]
    source = Image.fromarray(pixels)
    out = pixels.copy()
    for i, head in enumerate(heads):
        bounds = _pixel_bounds(head, width, height)
        if i == subject or bounds is None:
            continue
        radius = float(max(_MIN_RADIUS, _BLUR_PER_HEAD * (head[3] - head[1])))
        x1, y1, x2, y2 = bounds
        # blur only the head and a margin around it (3 sd), not the whole frame
        pad = int(np.ceil(3 * radius))
        px1, py1 = max(0, x1 - pad), max(0, y1 - pad)
        px2, py2 = min(width, x2 + pad), min(height, y2 + pad)
        patch = source.crop((px1, py1, px2, py2)).filter(ImageFilter.GaussianBlur(radius))
        out[y1:y2, x1:x2] = np.asarray(patch)[y1 - py1 : y2 - py1, x1 - px1 : x2 - px1]
    if subject is not None:
        bounds = _pixel_bounds(heads[subject], width, height)
        if bounds is not None:
            x1, y1, x2, y2 = bounds
            out[y1:y2, x1:x2] = pixels[y1:y2, x1:x2]
    return out


def blur_heads_jpeg(
    jpeg: bytes, boxes: np.ndarray, subject: int | None, quality: int = 85
) -> bytes:
    """:func:`blur_heads` on an encoded image (a stored thumbnail); returns JPEG bytes.
    With no boxes the image is returned as given (a one-person crop: the subject)."""
    if len(np.asarray(boxes).reshape(-1, 4)) == 0:
        return jpeg
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(blur_heads(pixels, boxes, subject)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
