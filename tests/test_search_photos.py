"""Reference photos: decoding with clear errors, cropping to the person, embedding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sightline.models.core import Detections
from sightline.search import SearchQuery, embed_photos, embed_query, encode_photo, person_box
from sightline.search.photos import MAX_PHOTO_BYTES, decode_photo
from tests.test_search_helpers import query

PERSON = (80, 40, 176, 340)  # x1, y1, x2, y2 in a 256 x 384 photo


def photo() -> np.ndarray:
    """A plain wall with a red-and-blue figure in the middle."""
    image = np.full((384, 256, 3), (214, 204, 186), np.uint8)
    x1, y1, x2, y2 = PERSON
    image[y1:200, x1:x2] = (200, 30, 40)
    image[200:y2, x1:x2] = (40, 70, 180)
    return image


def fake_detect(frames: np.ndarray) -> list[Detections]:
    """Boxes the pixels that differ from the canvas's corner colour (score = its size)."""
    out = []
    for frame in frames:
        mask = np.abs(frame.astype(int) - frame[0, 0].astype(int)).max(axis=2) > 30
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            out.append(Detections.empty())
            continue
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        out.append(Detections.from_arrays(np.array([box]), np.array([len(ys) / mask.size])))
    return out


def fake_embed(crops: list[np.ndarray]) -> np.ndarray:
    """Aspect ratio and mean colour of each crop: enough to tell crops apart."""
    rows = [[c.shape[0] / c.shape[1], *c.reshape(-1, 3).mean(axis=0) / 255] for c in crops]
    v = np.asarray(rows, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_person_box_maps_the_canvas_detection_back_to_the_photo():
    box, score = person_box(photo(), fake_detect)
    np.testing.assert_allclose(box, PERSON, atol=3)
    assert 0 < score < 1


def test_nothing_found_leaves_the_photo_whole_and_says_so():
    blank = np.full((100, 60, 3), 90, np.uint8)
    result = embed_photos([photo(), blank], fake_embed, fake_detect)
    assert result.boxes[1] is None and result.vectors.shape == (2, 4)
    assert result.warnings == [
        "photo 1: no person found, the whole photo was embedded (less accurate)"
    ]
    no_detector = embed_photos([photo()], fake_embed)
    assert "no detector given" in no_detector.warnings[0]
    assert not np.allclose(no_detector.vectors[0], result.vectors[0])


def test_embed_query_replaces_photos_by_embeddings():
    q = query(photos=[encode_photo(photo())], embeddings=[[1.0, 0.0, 0.0, 0.0]])
    done = embed_query(q, fake_embed, fake_detect)
    assert done.photos == [] and len(done.embeddings) == 2 and done.photo_warnings == []
    assert embed_query(done, None) is done
    with pytest.raises(ValueError, match=r"1 photo\(s\): pass embed="):
        embed_query(q, None)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"GIF89a-not-really", "photo: not a readable image"),
        (b"\x00" * (MAX_PHOTO_BYTES + 1), "more than"),
        (_png(np.zeros((8, 40, 3), np.uint8)), "too small"),
        ("a string", "expected an encoded image file"),
    ],
)
def test_bad_photos_are_refused_clearly(data, match):
    with pytest.raises(ValueError, match=match):
        decode_photo(data)


def test_photo_round_trip_and_grey_images_become_rgb():
    assert np.array_equal(decode_photo(encode_photo(photo())), photo())
    grey = io.BytesIO()
    Image.fromarray(np.full((30, 20), 7, np.uint8)).save(grey, "PNG")
    assert decode_photo(grey.getvalue()).shape == (30, 20, 3)


def test_builtin_models_crop_and_match_reference_photos():
    """The committed detector and embedder on simulator reference photos (~1 s on a CPU)."""
    from sightline.models.builtin_detector import (
        DEFAULT_DETECTOR_WEIGHTS,
        BuiltinDetector,
        load_detector_weights,
    )
    from sightline.models.builtin_embedder import (
        DEFAULT_REID_WEIGHTS,
        BuiltinEmbedder,
        load_embedder_weights,
    )
    from sightline.sim.body import Appearance
    from sightline.sim.reference import render_reference

    def person(upper: tuple, lower: tuple, height: float) -> Appearance:
        rgb = np.asarray
        return Appearance(
            "a",
            "b",
            rgb(upper, np.float32),
            rgb(lower, np.float32),
            rgb((224, 172, 128), np.float32),
            rgb((30, 24, 20), np.float32),
            height,
            1.0,
            False,
            None,
            None,
            None,
            None,
        )

    alice = person((196, 32, 38), (36, 78, 188), 1.70)
    bob = person((42, 138, 62), (26, 26, 30), 1.80)
    photos = [
        render_reference(p, np.random.default_rng(s)) for p, s in ((alice, 1), (alice, 2), (bob, 3))
    ]
    detector = BuiltinDetector(load_detector_weights(DEFAULT_DETECTOR_WEIGHTS)[0], prefer_gpu=False)
    embedder = BuiltinEmbedder(load_embedder_weights(DEFAULT_REID_WEIGHTS)[0], prefer_gpu=False)
    result = embed_photos(photos, embedder.embed, detector.detect)
    assert result.warnings == []
    for box in result.boxes:  # the whole person: most of the photo's height, not a limb
        assert box is not None and box[3] - box[1] > 0.6 * 384 and box[2] - box[0] > 40
    v = result.vectors
    assert v[0] @ v[1] > 0.9 > v[0] @ v[2] + 0.3
    assert SearchQuery.model_validate(
        {"case_id": "c", "reason": "r", "start": 0, "end": 1, "embeddings": v.tolist()}
    ).query_vectors().shape == (3, 128)
