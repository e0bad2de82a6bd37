"""Re-ID training data with reference photos: cropping, batch sampling, photo metrics
(no training here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sightline.models.core import Detections
from sightline.training.data import (
    PHOTO_CAMERA,
    ReidCrops,
    concat_crops,
    load_reference_crops,
)
from sightline.training.reid import ReidTrainConfig, _pool, _sample, photo_metrics


def _photo(path, colour):
    image = np.full((384, 256, 3), 200, np.uint8)
    image[60:340, 100:160] = colour  # the "person"
    Image.fromarray(image).save(path)


def _detect_person(frames):
    """A fake detector: one box around the pixels that are not the background."""
    out = []
    for frame in frames:
        mask = np.abs(frame.astype(int) - frame[0, 0].astype(int)).sum(axis=2) > 30
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            out.append(Detections.from_arrays(np.zeros((0, 4)), np.zeros(0)))
            continue
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        out.append(Detections.from_arrays(box, np.array([0.9], np.float32)))
    return out


def test_reference_crops_are_cropped_to_the_person(tmp_path):
    (tmp_path / "reference").mkdir()
    _photo(tmp_path / "reference" / "p0003.png", (200, 20, 20))
    _photo(tmp_path / "reference" / "p0010.png", (20, 20, 200))
    crops = load_reference_crops(tmp_path, _detect_person, size=(128, 64))
    assert crops.person_ids.tolist() == [3, 10]
    assert crops.camera_ids.tolist() == [PHOTO_CAMERA, PHOTO_CAMERA]
    assert crops.crops.shape == (2, 128, 64, 3)
    # cropped to the person: the crop is the person's colour, not the wall's
    assert crops.crops[0, 64, 32].tolist() == [200, 20, 20]
    assert crops.crops[1, 64, 32].tolist() == [20, 20, 200]


def test_reference_crops_without_photos_name_the_site(tmp_path):
    with pytest.raises(ValueError, match=r"no reference photos"):
        load_reference_crops(tmp_path, _detect_person)


def test_a_photo_nobody_is_found_in_is_used_whole(tmp_path):
    (tmp_path / "reference").mkdir()
    Image.fromarray(np.full((384, 256, 3), 120, np.uint8)).save(
        tmp_path / "reference" / "p0001.png"
    )
    crops = load_reference_crops(tmp_path, _detect_person, size=(96, 64))
    assert crops.crops.shape == (1, 96, 64, 3)


def _site(people: int, cameras: int, per_camera: int, photos: bool) -> ReidCrops:
    parts = []
    for person in range(people):
        for cam in range(cameras):
            parts.append(
                ReidCrops(
                    np.full((per_camera, 8, 4, 3), person, np.uint8),
                    np.full(per_camera, person),
                    np.full(per_camera, f"cam{cam}"),
                )
            )
        if photos:
            parts.append(
                ReidCrops(
                    np.full((1, 8, 4, 3), person, np.uint8),
                    np.array([person]),
                    np.array([PHOTO_CAMERA]),
                )
            )
    return concat_crops(parts)


@pytest.mark.parametrize(("rate", "expected"), [(1.0, 1.0), (0.0, 0.0)])
def test_photo_rate_puts_the_photo_in_the_batch(rate, expected):
    pool = _pool([_site(people=20, cameras=6, per_camera=3, photos=True)])
    cfg = ReidTrainConfig(identities_per_batch=8, crops_per_identity=4, photo_rate=rate)
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(50):
        batch = _sample(pool, cfg, rng).reshape(8, 4)
        is_photo = pool.cameras[batch] == f"0-{PHOTO_CAMERA}"
        shares.append(is_photo[:, 0].mean())
        assert is_photo.sum(axis=1).max() <= 1  # one photo per person, never twice
        # every crop of a row is one person
        assert (pool.labels[batch] == pool.labels[batch][:, :1]).all()
    assert np.mean(shares) == expected


def test_sites_without_photos_still_sample_cross_camera():
    pool = _pool([_site(people=10, cameras=4, per_camera=5, photos=False)])
    cfg = ReidTrainConfig(identities_per_batch=4, crops_per_identity=4)
    batch = _sample(pool, cfg, np.random.default_rng(1)).reshape(4, 4)
    for row in batch:
        assert len(set(pool.cameras[row])) == 4  # one crop from each camera first


def test_photo_metrics_rank_and_margin():
    crops = np.array([[1.0, 0.0], [0.9, 0.436], [0.0, 1.0], [0.1, 0.995]])
    crop_ids = np.array([1, 1, 2, 2])
    photos = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    photo_ids = np.array([1, 2, 2])
    out = photo_metrics(photos, photo_ids, crops, crop_ids)
    assert out["photos"] == 3
    # the third photo (person 2) is closer to person 1's crops: one miss in three
    assert out["rank1"] == pytest.approx(2 / 3)
    assert out["mean_margin"] < 0.6


def test_photo_metrics_skip_people_with_no_crops():
    crops = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = photo_metrics(
        np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 7]), crops, np.array([1, 2])
    )
    assert out == {"rank1": 1.0, "mean_margin": pytest.approx(1.0), "photos": 1}


def test_photo_adapter_validation_pools_sites_each_against_its_own_people():
    from sightline.training.photo_adapter import _quality

    small = np.array([[0.9, 0.2], [0.1, 0.8]])  # both right, margins 0.7 and 0.7
    default = np.array([[0.5, 0.6, 0.1], [0.2, 0.9, 0.3], [0.0, 0.1, 0.7]])
    out = _quality([small, default])
    assert out["rank1"] == pytest.approx(4 / 5)  # the first photo of `default` misses
    margins = [0.7, 0.7, -0.1, 0.6, 0.6]
    assert out["mean_margin"] == pytest.approx(round(float(np.mean(margins)), 4))
