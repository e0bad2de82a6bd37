"""Person attributes: camera recovery from a homography, height, colours, crop quality."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.geometry import invert_homography
from sightline.sim.camera import PinholeCamera
from sightline.sim.palette import CLOTHING_COLOURS
from sightline.tracking.attributes import (
    COLOUR_NAMES,
    LOWER_REGION,
    UNKNOWN_COLOUR,
    UPPER_REGION,
    ColourGuess,
    aggregate_colours,
    classify_colour,
    crop_quality,
    crop_quality_batch,
    track_height,
    upper_lower_colours,
)
from sightline.tracking.camera_model import GroundCamera, heights_from_boxes

WIDTH, HEIGHT = 640, 360

POSES = [
    # position, camera height, target, horizontal field of view (degrees)
    ((0.0, 0.0), 6.0, (12.0, 5.0), 50.0),
    ((36.5, 24.7), 5.2, (28.0, 14.0), 45.0),
    ((10.0, 3.0), 7.0, (10.0, 18.0), 40.0),  # looking along a ground axis
    ((3.0, 2.0), 3.0, (-10.0, -30.0), 60.0),
]


def _camera(pose: tuple) -> PinholeCamera:
    position, height, target, hfov = pose
    return PinholeCamera.looking_at(position, height, target, hfov, (WIDTH, HEIGHT))


def _recovered(cam: PinholeCamera) -> GroundCamera:
    return GroundCamera.from_homography(cam.ground_to_image(), cam.width, cam.height_px)


# ------------------------------------------------------------------------- camera model


@pytest.mark.parametrize("pose", POSES)
def test_camera_is_recovered_from_its_homography(pose: tuple) -> None:
    cam = _camera(pose)
    recovered = _recovered(cam)
    assert recovered.focal_px == pytest.approx(cam.focal_px, rel=1e-9)
    assert recovered.centre == pytest.approx(cam.centre, abs=1e-6)
    assert recovered.rotation == pytest.approx(cam.rotation, abs=1e-9)
    points = np.array([[*pose[2], 0.0], [pose[2][0] + 1.0, pose[2][1], 1.7]])
    assert recovered.project(points) == pytest.approx(cam.project(points)[0], abs=1e-6)


def test_left_handed_ground_frame_still_puts_the_camera_above_ground() -> None:
    cam = _camera(POSES[0])
    flip_y = np.diag([1.0, -1.0, 1.0])
    recovered = GroundCamera.from_homography(cam.ground_to_image() @ flip_y, WIDTH, HEIGHT)
    x, y, z = cam.centre
    assert recovered.centre == pytest.approx([x, -y, z], abs=1e-6)


@pytest.mark.parametrize("pose", POSES)
@pytest.mark.parametrize("height_m", [1.1, 1.75])
def test_height_of_a_synthetic_person(pose: tuple, height_m: float) -> None:
    cam = _camera(pose)
    feet = np.array(pose[2]) + np.array([[0.0, 0.0], [1.5, -1.0], [-2.0, 0.5]])
    heads, _ = cam.project(np.column_stack([feet, np.full(len(feet), height_m)]))
    heights = _recovered(cam).height_of(feet, heads)
    assert heights == pytest.approx(np.full(len(feet), height_m), abs=0.01)


def test_heights_from_boxes_use_bottom_and_top_centres() -> None:
    cam = _camera(POSES[1])
    foot = np.array([[28.0, 14.0]])
    (fu, fv), (hu, hv) = cam.project(np.array([[28.0, 14.0, 0.0], [28.0, 14.0, 1.6]]))[0]
    assert abs(fu - hu) < 3.0  # near the image centre the person stands upright
    box = np.array([[fu - 15.0, hv, fu + 15.0, fv]])
    to_ground = invert_homography(cam.ground_to_image())
    recovered = _recovered(cam)
    assert heights_from_boxes(box, to_ground, recovered)[0] == pytest.approx(1.6, abs=0.02)
    jittered = box + np.array([[0.0, 1.0, 0.0, -1.0], [0.0, -1.0, 0.0, 1.0], [0, 0, 0, 0]])
    assert track_height(jittered, to_ground, recovered) == pytest.approx(1.6, abs=0.02)
    assert recovered.height_of(foot, np.array([[hu, hv]]))[0] == pytest.approx(1.6, abs=1e-6)


@pytest.mark.parametrize(
    ("matrix", "problem"),
    [
        (np.ones((3, 3)), "singular"),
        (np.array([[800.0, 0.0, 320.0], [0.0, 800.0, 180.0], [0.0, 0.0, 1.0]]), "parallel"),
        (np.diag([1.0, 1.0, -1.0]) @ np.diag([-1.0, 1.0, 1.0]), "parallel"),
        ("negated", "focal length squared"),
    ],
)
def test_degenerate_homographies_are_refused(matrix: np.ndarray | str, problem: str) -> None:
    if isinstance(matrix, str):  # a real camera's homography with one entry's sign flipped
        matrix = _camera(POSES[0]).ground_to_image()
        matrix[2, 0] *= -1.0
    with pytest.raises(ValueError, match=problem):
        GroundCamera.from_homography(matrix, WIDTH, HEIGHT)


# ------------------------------------------------------------------------------ colours

LIGHTING = {
    "neutral": (1.0, 1.0, 1.0),
    "dim_warm": (0.88 * 0.8, 1.0 * 0.8, 0.9 * 0.8),
    "bright_cool": (1.0, 1.05, 1.15),
}


def _person_frame(upper: str, lower: str, gain: tuple, seed: int = 0) -> tuple:
    """A frame with a textured background and one person box: (frame, box)."""
    rng = np.random.default_rng(seed)
    frame = rng.uniform(60, 200, (120, 80, 3))
    box = np.array([20.0, 10.0, 60.0, 110.0])
    for name, region in ((upper, UPPER_REGION), (lower, LOWER_REGION)):
        y0, y1, x0, x1 = region.pixel_bounds(box)
        frame[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = CLOTHING_COLOURS[name]
    frame = frame * np.asarray(gain) + rng.normal(0.0, 2.0, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8), box


@pytest.mark.parametrize("gain", LIGHTING.values(), ids=list(LIGHTING))
@pytest.mark.parametrize("name", COLOUR_NAMES)
def test_every_reference_colour_is_named(name: str, gain: tuple) -> None:
    other = "black" if name != "black" else "white"
    upper, lower = upper_lower_colours(*_person_frame(name, other, gain))
    assert upper.name == name
    assert lower.name == other
    flipped_upper, flipped_lower = upper_lower_colours(*_person_frame(other, name, gain))
    assert (flipped_upper.name, flipped_lower.name) == (other, name)
    assert 0.0 < upper.confidence <= 1.0
    assert upper.probabilities.sum() == pytest.approx(1.0)


def test_confidence_is_about_half_on_the_boundary_of_two_colours() -> None:
    red, orange = np.array(CLOTHING_COLOURS["red"]), np.array(CLOTHING_COLOURS["orange"])
    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisect the red-orange segment for where the name changes
        mid = (lo + hi) / 2.0
        lo, hi = (
            (mid, hi) if classify_colour(red + mid * (orange - red)).name == "red" else (lo, mid)
        )
    unsure = classify_colour(red + lo * (orange - red))
    top_two = {COLOUR_NAMES[i] for i in np.argsort(unsure.probabilities)[-2:]}
    assert top_two == {"red", "orange"}
    assert unsure.confidence == pytest.approx(0.5, abs=0.05)
    assert classify_colour(red).confidence > 0.95


def test_nearer_person_is_left_out_of_the_colours() -> None:
    frame, box = _person_frame("red", "blue", LIGHTING["neutral"])
    y0, y1, x0, x1 = LOWER_REGION.pixel_bounds(box)
    edge = x0 + 3 * (x1 - x0) // 4  # someone in front hides the left three quarters
    frame[y0:y1, :edge] = CLOTHING_COLOURS["yellow"]
    in_front = np.array([[0.0, y0 - 1.0, float(edge), box[3] + 20.0]])
    _, fooled = upper_lower_colours(frame, box)
    upper, lower = upper_lower_colours(frame, box, others=np.vstack([in_front, box]))
    assert fooled.name == "yellow"
    assert (upper.name, lower.name) == ("red", "blue")
    assert 0.0 < lower.support < 0.4
    behind = in_front.copy()
    behind[0, 3] = box[3] - 1.0  # the same box standing farther away hides nothing
    _, lower_behind = upper_lower_colours(frame, box, others=behind)
    assert lower_behind.name == "yellow"


def test_region_outside_the_frame_is_unknown() -> None:
    frame, _ = _person_frame("red", "blue", LIGHTING["neutral"])
    upper, lower = upper_lower_colours(frame, np.array([100.0, 200.0, 140.0, 300.0]))
    assert upper.name == lower.name == UNKNOWN_COLOUR
    assert upper.confidence == 0.0


def test_box_cut_by_the_frame_border_leaves_that_region_unknown() -> None:
    frame, box = _person_frame("red", "blue", LIGHTING["neutral"])
    cut_top = box.copy()
    cut_top[1] = 0.0  # a detector's box for someone whose head is above the frame
    upper, lower = upper_lower_colours(frame, cut_top)
    assert (upper.name, lower.name) == (UNKNOWN_COLOUR, "blue")
    cut_bottom = box.copy()
    cut_bottom[3] = frame.shape[0]
    upper, lower = upper_lower_colours(frame, cut_bottom)
    assert (upper.name, lower.name) == ("red", UNKNOWN_COLOUR)


def test_aggregate_is_a_weighted_soft_vote() -> None:
    red, blue = classify_colour(CLOTHING_COLOURS["red"]), classify_colour(CLOTHING_COLOURS["blue"])
    assert aggregate_colours([red, red, blue]).name == "red"
    assert aggregate_colours([red, red, blue], weights=[0.1, 0.1, 1.0]).name == "blue"
    vote = aggregate_colours([red, blue, blue, blue])
    assert vote.confidence == pytest.approx(0.75, abs=0.05)
    assert aggregate_colours([]).name == UNKNOWN_COLOUR
    assert aggregate_colours([red, ColourGuess.unknown()]).name == "red"
    with pytest.raises(ValueError, match="weights"):
        aggregate_colours([red, blue], weights=[1.0])


# ------------------------------------------------------------------------------ quality


def _textured(height: int, width: int, blur: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 255, (height, width, 3))
    for _ in range(blur):  # repeated 3x3 box blur
        img = (
            sum(
                np.roll(np.roll(img, dy, axis=0), dx, axis=1)
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            )
            / 9.0
        )
    return img.astype(np.uint8)


def test_crop_quality_orders_good_over_bad_crops() -> None:
    sharp, blurred = _textured(360, 640, 0), _textured(360, 640, 4)
    big, small = np.array([100.0, 50.0, 150.0, 170.0]), np.array([300.0, 100.0, 315.0, 140.0])
    best = crop_quality(sharp, big)
    assert best.score > 0.5
    assert crop_quality(sharp, small).score < best.score
    assert crop_quality(blurred, big).score < best.score
    occluder = np.array([[90.0, 100.0, 160.0, 200.0]])
    occluded = crop_quality(sharp, big, others=occluder)
    assert occluded.unoccluded == pytest.approx(1.0 - 70.0 / 120.0, abs=0.05)
    assert occluded.score < best.score
    clipped = crop_quality(sharp, np.array([-20.0, 50.0, 30.0, 170.0]))
    assert clipped.inside == pytest.approx(0.6 * 0.5)
    worst = crop_quality(blurred, small, others=np.array([[290.0, 120.0, 330.0, 150.0]]))
    assert worst.score < min(crop_quality(blurred, big).score, occluded.score)
    assert crop_quality(sharp, big, visibility_hint=0.5).score == pytest.approx(best.score / 2)


def test_crop_quality_batch_skips_each_box_itself() -> None:
    sharp = _textured(360, 640, 0)
    boxes = np.array([[100.0, 50.0, 150.0, 170.0], [400.0, 50.0, 450.0, 170.0]])
    scores = crop_quality_batch(sharp, boxes, boxes)
    assert scores == pytest.approx([crop_quality(sharp, b).score for b in boxes])
