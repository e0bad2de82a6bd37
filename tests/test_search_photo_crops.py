"""Reference photos are cropped to the whole person, not a body part, by the built-in detector."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.config import BuiltinDetectorConfig
from sightline.models import build_detector
from sightline.search.photos import person_box
from sightline.sim.people import random_appearance
from sightline.sim.reference import render_reference

WHOLE_PERSON = 0.6
"""A box at least this share of the photo's height holds the whole person: the simulator's
photos show a person 0.72-0.85 of the photo tall, and a leg, an arm or the torso is about
0.4 of it."""


@pytest.fixture(scope="module")
def detect():
    return build_detector(BuiltinDetectorConfig(), prefer_gpu=False).detect


def reference_photos(n: int, seed: int) -> list[np.ndarray]:
    photos = []
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        photos.append(render_reference(random_appearance(rng, is_child=k % 10 == 0), rng))
    return photos


def test_reference_photos_are_cropped_to_the_whole_person(detect):
    """At too large a scale the detector boxes body parts with a high score; with the
    default scales each of 40 photos (seed 2026: none of the tuning or held-out sites')
    is cropped to its whole person."""
    heights = []
    for image in reference_photos(40, seed=2026):
        found = person_box(image, detect)
        assert found is not None
        box = found[0]
        heights.append((box[3] - box[1]) / image.shape[0])
    assert min(heights) >= WHOLE_PERSON, sorted(heights)[:5]
