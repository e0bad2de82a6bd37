"""Head blurring: every head but the subject's changes; nothing else does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sightline.search.privacy import blur_heads, blur_heads_jpeg, boxes_in_crop, head_boxes

BOXES = np.array([[10, 10, 50, 110], [70, 20, 110, 120], [130, 5, 170, 105]], np.float64)


def texture(height: int = 140, width: int = 190) -> np.ndarray:
    """High-contrast noise: any blur changes it visibly."""
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def region(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    return image[y1:y2, x1:x2].astype(np.int16)


def changed(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> float:
    """Mean absolute change inside ``box``."""
    return float(np.abs(region(a, box) - region(b, box)).mean())


@pytest.mark.parametrize("subject", [0, 1, 2])
def test_other_heads_are_blurred_and_the_subject_is_not(subject):
    image = texture()
    out = blur_heads(image, BOXES, subject)
    heads = head_boxes(BOXES)
    for i, head in enumerate(heads):
        if i == subject:
            assert changed(image, out, head) == 0
        else:
            assert changed(image, out, head) > 30
    # below the heads nothing changes
    bodies = BOXES.copy()
    bodies[:, 1] = heads[:, 3] + 1
    assert all(changed(image, out, b) == 0 for b in bodies)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert not np.shares_memory(out, image)


def test_head_is_the_top_fifth_of_the_box():
    np.testing.assert_allclose(head_boxes(BOXES[:1]), [[10, 10, 50, 30]])


def test_an_overlapping_neighbour_does_not_blur_the_subject():
    boxes = np.array([[20, 10, 60, 110], [40, 12, 80, 112]], np.float64)
    image = texture()
    out = blur_heads(image, boxes, subject=0)
    assert changed(image, out, head_boxes(boxes[:1])[0]) == 0
    assert changed(image, out, [61, 12, 80, 32]) > 30  # the neighbour's head beside it


def test_without_a_subject_every_head_is_blurred():
    image = texture()
    out = blur_heads(image, BOXES, subject=None)
    assert all(changed(image, out, h) > 30 for h in head_boxes(BOXES))


@pytest.mark.parametrize(
    ("image", "subject", "match"),
    [
        (np.zeros((10, 10), np.uint8), None, "H, W, 3"),
        (np.zeros((10, 10, 3), np.float32), None, "uint8"),
        (np.zeros((10, 10, 3), np.uint8), 3, "subject 3"),
    ],
)
def test_bad_input_is_refused(image, subject, match):
    with pytest.raises(ValueError, match=match):
        blur_heads(image, BOXES, subject)


def test_boxes_partly_outside_are_clipped():
    out = blur_heads(texture(), np.array([[-20, -30, 30, 100], [180, 10, 400, 90]]), None)
    assert out.shape == texture().shape


def test_a_thumbnail_crop_blurs_the_neighbours_it_shows():
    frame = texture()
    crop_xyxy = (60, 15, 120, 125)  # the subject's crop, showing part of box 2's head
    boxes = np.vstack([BOXES[1], [100, 18, 140, 118]])
    local = boxes_in_crop(boxes, crop_xyxy)
    np.testing.assert_allclose(local[1], [40, 3, 80, 103])
    crop = frame[15:125, 60:120].copy()
    jpeg = _jpeg(crop)
    out = np.asarray(Image.open(io.BytesIO(blur_heads_jpeg(jpeg, local, subject=0))))
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert changed(decoded, out, [51, 3, 60, 23]) > 20  # the neighbour's head inside the crop
    # the subject's head (clear of the neighbour's) is only re-encoded
    again = np.asarray(Image.open(io.BytesIO(_jpeg(decoded, quality=85))))
    assert changed(again, out, [11, 6, 40, 25]) < 1


def test_a_one_person_thumbnail_is_left_as_it_is():
    jpeg = _jpeg(texture(40, 20))
    assert blur_heads_jpeg(jpeg, np.zeros((0, 4)), subject=None) == jpeg


def _jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
