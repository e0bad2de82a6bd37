"""Unit tests of sightline.geometry: homographies, foot points, polygons, calibration checks."""

from __future__ import annotations

import numpy as np
import pytest

from sightline import geometry
from sightline.geometry import (
    DegenerateCalibrationError,
    apply_homography,
    box_foot_points,
    fit_homography,
    homography_rmse,
    invert_homography,
    point_in_polygon,
    polygon_area,
)

# An image-to-ground homography of the kind a tilted CCTV camera has: pixels in a
# 640x360 frame map to metres, with perspective (non-zero bottom row) so the fit must
# recover all eight degrees of freedom, not just an affine map.
TRUE_H = np.array(
    [
        [0.05, 0.01, -3.0],
        [0.002, 0.12, -10.0],
        [0.0001, 0.002, 1.0],
    ]
)

# Four image points in general position and two more, all inside a 640x360 frame.
FOUR_PIXELS = np.array([[60.0, 320.0], [590.0, 330.0], [520.0, 90.0], [110.0, 70.0]])
SIX_PIXELS = np.vstack([FOUR_PIXELS, [[320.0, 200.0], [200.0, 250.0]]])


def _grid(n_x=6, n_y=4):
    """A deterministic grid of pixels spread over the frame."""
    xs, ys = np.meshgrid(np.linspace(20, 620, n_x), np.linspace(20, 340, n_y))
    return np.column_stack([xs.ravel(), ys.ravel()])


# --------------------------------------------------------------------------- fitting


@pytest.mark.parametrize(
    "pixels", [FOUR_PIXELS, SIX_PIXELS, _grid()], ids=["4-points", "6-points", "24-points"]
)
def test_fit_recovers_known_homography_exactly(pixels):
    ground = apply_homography(TRUE_H, pixels)

    fitted = fit_homography(pixels, ground)

    assert fitted.shape == (3, 3)
    assert fitted[2, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(fitted, TRUE_H / TRUE_H[2, 2], rtol=1e-7, atol=1e-10)
    assert homography_rmse(fitted, pixels, ground) < 1e-9
    # It generalises to pixels that were not used for the fit.
    others = _grid(5, 5) + 7.0
    np.testing.assert_allclose(
        apply_homography(fitted, others), apply_homography(TRUE_H, others), atol=1e-8
    )


def test_fit_is_independent_of_the_homography_scale():
    ground = apply_homography(TRUE_H, SIX_PIXELS)
    np.testing.assert_allclose(apply_homography(3.7 * TRUE_H, SIX_PIXELS), ground, atol=1e-12)
    np.testing.assert_allclose(fit_homography(SIX_PIXELS, ground), TRUE_H, rtol=1e-7, atol=1e-10)


def test_fit_with_noise_is_a_small_least_squares_error():
    rng = np.random.default_rng(20240501)
    pixels = _grid(8, 5)
    true_ground = apply_homography(TRUE_H, pixels)
    noise_m = 0.02
    noisy_ground = true_ground + rng.normal(0.0, noise_m, size=true_ground.shape)

    fitted = fit_homography(pixels, noisy_ground)

    rmse = homography_rmse(fitted, pixels, noisy_ground)
    # Least squares fits some of the noise, so the residual is below the noise level
    # (sqrt(2) * sigma for a 2-D error) but cannot be zero with 40 noisy points.
    assert 0.0 < rmse < np.sqrt(2) * noise_m
    # The fit is close to the truth, much closer than a single noisy point.
    err = apply_homography(fitted, pixels) - true_ground
    assert np.sqrt((err**2).sum(axis=1).mean()) < noise_m


@pytest.mark.parametrize(
    ("ground_scale", "ground_offset", "tolerance_m"),
    [
        (1.0, (0.0, 0.0), 1e-9),
        (1e-3, (0.0, 0.0), 1e-12),  # kilometres
        # Survey-grid (UTM-like) coordinates: millions of metres against 4K pixels. An
        # unnormalised DLT loses the homography in rounding here; the fit must not.
        (1.0, (512_000.0, 5_400_000.0), 1e-6),
    ],
    ids=["metres", "kilometres", "survey-grid"],
)
def test_fit_is_well_conditioned_for_very_different_magnitudes(
    ground_scale, ground_offset, tolerance_m
):
    to_ground = np.array(
        [[ground_scale, 0.0, ground_offset[0]], [0.0, ground_scale, ground_offset[1]], [0, 0, 1]]
    )
    pixels_4k = _grid() * 6.0
    h = to_ground @ TRUE_H @ np.diag([1 / 6.0, 1 / 6.0, 1.0])
    ground = apply_homography(h, pixels_4k)

    fitted = fit_homography(pixels_4k, ground)

    assert homography_rmse(fitted, pixels_4k, ground) < tolerance_m


# --------------------------------------------------------------------------- apply / invert


def test_apply_then_inverse_round_trips():
    pixels = _grid()
    ground = apply_homography(TRUE_H, pixels)
    back = apply_homography(invert_homography(TRUE_H), ground)
    np.testing.assert_allclose(back, pixels, atol=1e-9)


def test_invert_homography_is_normalised_and_an_involution():
    inv = invert_homography(TRUE_H)
    assert inv[2, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(inv @ TRUE_H, np.eye(3) * (inv @ TRUE_H)[2, 2], atol=1e-12)
    np.testing.assert_allclose(invert_homography(inv), TRUE_H, rtol=1e-10)


def test_apply_homography_accepts_a_single_point_and_keeps_shape():
    single = apply_homography(TRUE_H, [320.0, 180.0])
    assert single.shape == (1, 2)
    np.testing.assert_allclose(single, apply_homography(TRUE_H, np.array([[320.0, 180.0]])))
    assert apply_homography(TRUE_H, np.zeros((0, 2))).shape == (0, 2)


def test_points_on_the_line_at_infinity_map_to_nan():
    # w = y - 100: every image point on the row y = 100 is the horizon.
    horizon = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, -100.0]])
    pts = np.array([[10.0, 100.0], [500.0, 100.0], [10.0, 200.0], [10.0, 50.0]])

    out = apply_homography(horizon, pts)

    assert np.isnan(out[:2]).all()
    assert np.isfinite(out[2:]).all()
    np.testing.assert_allclose(out[2], [10.0 / 100.0, 200.0 / 100.0])
    np.testing.assert_allclose(out[3], [10.0 / -50.0, 50.0 / -50.0])


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.zeros(3), np.zeros((2, 2, 2))])
def test_points_of_the_wrong_shape_are_rejected(bad):
    with pytest.raises(ValueError, match=r"expected shape \(N, 2\)"):
        apply_homography(TRUE_H, bad)


# --------------------------------------------------------------------------- foot points


@pytest.mark.parametrize(
    ("boxes", "feet"),
    [
        ([[10, 20, 30, 80]], [[20, 80]]),
        ([10, 20, 30, 80], [[20, 80]]),
        ([[0, 0, 1, 1], [100, 50, 141, 250.5]], [[0.5, 1], [120.5, 250.5]]),
        (np.zeros((0, 4)), np.zeros((0, 2))),
    ],
    ids=["one-box", "flat-box", "two-boxes", "no-boxes"],
)
def test_box_foot_points_is_the_bottom_centre(boxes, feet):
    out = box_foot_points(np.asarray(boxes, dtype=float))
    assert out.shape == np.asarray(feet).shape
    np.testing.assert_allclose(out, feet)


# --------------------------------------------------------------------------- polygons

SQUARE_CCW = [(0, 0), (4, 0), (4, 4), (0, 4)]
TRIANGLE = [(0, 0), (4, 0), (0, 3)]
# A U shape: a 9x9 square with a 3-wide notch cut from the top middle, down to y=3.
U_SHAPE = [(0, 0), (9, 0), (9, 9), (6, 9), (6, 3), (3, 3), (3, 9), (0, 9)]


@pytest.mark.parametrize(
    ("polygon", "area"),
    [
        (SQUARE_CCW, 16.0),
        (SQUARE_CCW[::-1], 16.0),
        (TRIANGLE, 6.0),
        (TRIANGLE[::-1], 6.0),
        (U_SHAPE, 81.0 - 18.0),
        (U_SHAPE[::-1], 81.0 - 18.0),
        ([(0.5, 0.5), (1.0, 0.5), (1.0, 2.5)], 0.5),
    ],
    ids=[
        "square-ccw",
        "square-cw",
        "triangle-ccw",
        "triangle-cw",
        "concave-ccw",
        "concave-cw",
        "fractional",
    ],
)
def test_polygon_area_is_positive_in_either_orientation(polygon, area):
    assert polygon_area(polygon) == pytest.approx(area)
    assert polygon_area(np.asarray(polygon, dtype=float)) == pytest.approx(area)


@pytest.mark.parametrize(
    ("polygon", "point", "inside"),
    [
        (SQUARE_CCW, (2, 2), True),
        (SQUARE_CCW, (5, 2), False),
        (SQUARE_CCW, (-0.001, 2), False),
        (SQUARE_CCW, (4, 2), True),  # on an edge
        (SQUARE_CCW, (2, 0), True),  # on an edge
        (SQUARE_CCW, (0, 0), True),  # on a vertex
        (SQUARE_CCW[::-1], (2, 2), True),  # clockwise polygon
        (TRIANGLE, (1, 1), True),
        (TRIANGLE, (3, 2), False),  # inside the bounding box, outside the triangle
        (TRIANGLE, (2, 1.5), True),  # on the hypotenuse
        (U_SHAPE, (1.5, 6), True),  # left arm
        (U_SHAPE, (7.5, 6), True),  # right arm
        (U_SHAPE, (4.5, 1.5), True),  # base
        (U_SHAPE, (4.5, 6), False),  # in the notch: inside the hull, outside the polygon
        (U_SHAPE, (6, 6), True),  # on the notch's edge
        (U_SHAPE, (4.5, 3), True),  # on the notch's floor
    ],
)
def test_point_in_polygon(polygon, point, inside):
    mask = point_in_polygon(np.array([point], dtype=float), polygon)
    assert mask.dtype == bool
    assert mask.tolist() == [inside]


def test_point_in_polygon_is_vectorised():
    pts = np.array([[1.5, 6], [4.5, 6], [7.5, 6], [4.5, 1.5], [20, 20]])
    assert point_in_polygon(pts, U_SHAPE).tolist() == [True, False, True, True, False]


# --------------------------------------------------------------------------- calibration checks

GOOD_IMAGE = FOUR_PIXELS
GOOD_GROUND = apply_homography(TRUE_H, FOUR_PIXELS)
COLLINEAR_4 = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
THREE_COLLINEAR_OF_4 = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 3.0]])
# Five points: (0,0), (1,0), (2,0) on one line, but (0,0), (2,0), (0,1), (2,1) are free.
FIVE_WITH_COLLINEAR_TRIPLE = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [2.0, 1.5]])


@pytest.mark.parametrize("check", [geometry.check_calibration_points, fit_homography])
@pytest.mark.parametrize(
    ("image", "ground", "message"),
    [
        (GOOD_IMAGE[:3], GOOD_GROUND[:3], "at least 4 calibration point pairs, got 3"),
        (GOOD_IMAGE[:0], GOOD_GROUND[:0], "at least 4 calibration point pairs, got 0"),
        (SIX_PIXELS[:5], GOOD_GROUND, "5 image points but 4 ground points"),
        (GOOD_IMAGE, apply_homography(TRUE_H, SIX_PIXELS), "4 image points but 6 ground points"),
        (COLLINEAR_4 * 100, GOOD_GROUND, "image points are degenerate"),
        (GOOD_IMAGE, COLLINEAR_4, "ground points are degenerate"),
        (THREE_COLLINEAR_OF_4 * 100, GOOD_GROUND, "image points are degenerate"),
        (GOOD_IMAGE, THREE_COLLINEAR_OF_4, "ground points are degenerate"),
        (np.full((4, 2), 7.0), GOOD_GROUND, "image points are degenerate"),
        # Nearly collinear: the middle point is off the line by 1e-9 of the spread.
        (np.array([[0, 0], [100, 1e-7], [200, 0], [50, 80]]), GOOD_GROUND, "degenerate"),
    ],
    ids=[
        "3-pairs",
        "no-pairs",
        "5-vs-4",
        "4-vs-6",
        "image-all-collinear",
        "ground-all-collinear",
        "image-3-of-4-collinear",
        "ground-3-of-4-collinear",
        "image-all-identical",
        "image-nearly-collinear",
    ],
)
def test_degenerate_calibration_is_rejected(check, image, ground, message):
    with pytest.raises(DegenerateCalibrationError, match=message):
        check(image, ground)


def test_degenerate_message_names_the_collinear_triple():
    expected = r"collinear triples by index: \[\(0, 1, 2\)"
    with pytest.raises(DegenerateCalibrationError, match=expected):
        geometry.check_calibration_points(THREE_COLLINEAR_OF_4, GOOD_GROUND)


def test_degenerate_calibration_error_is_a_value_error():
    assert issubclass(DegenerateCalibrationError, ValueError)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3], ids=["millimetres", "metres", "kilometres"])
def test_five_points_with_a_collinear_triple_but_four_free_are_accepted(scale):
    image = FIVE_WITH_COLLINEAR_TRIPLE * 100.0 + [50.0, 60.0]
    ground = apply_homography(np.diag([scale, scale, 1.0]) @ TRUE_H, image)
    assert geometry.collinear_triples(image) == [(0, 1, 2)]

    geometry.check_calibration_points(image, ground)
    fitted = fit_homography(image, ground)

    assert homography_rmse(fitted, image, ground) < 1e-9 * scale


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_collinearity_test_is_scale_free(scale):
    assert geometry.collinear_triples(THREE_COLLINEAR_OF_4 * scale) == [(0, 1, 2)]
    assert geometry.collinear_triples(GOOD_IMAGE * scale) == []
