"""The simulator's pinhole camera and body model, without rendering video."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.geometry import apply_homography
from sightline.sim.camera import PinholeCamera
from sightline.sim.layout import build_layout
from sightline.sim.presets import get_preset


@pytest.fixture
def camera() -> PinholeCamera:
    return PinholeCamera.looking_at((0.0, 0.0), 6.0, (12.0, 5.0), 50.0, (640, 360))


def test_target_projects_to_image_centre(camera: PinholeCamera) -> None:
    pix, depth = camera.project(np.array([12.0, 5.0, 0.0]))
    assert pix == pytest.approx([320.0, 180.0], abs=1e-6)
    assert depth > 0


@pytest.mark.parametrize("point", [(10.0, 3.0), (15.0, 8.0), (9.0, 7.5)])
def test_ground_homography_matches_projection(camera: PinholeCamera, point: tuple) -> None:
    pix, _ = camera.project(np.array([*point, 0.0]))
    assert apply_homography(camera.ground_to_image(), np.array(point))[0] == pytest.approx(pix)


def test_higher_points_appear_higher_in_the_image(camera: PinholeCamera) -> None:
    pts, _ = camera.project(np.array([[12.0, 5.0, 0.0], [12.0, 5.0, 1.7]]))
    assert pts[1, 1] < pts[0, 1]


def test_points_behind_the_camera_have_negative_depth(camera: PinholeCamera) -> None:
    _, depth = camera.project(np.array([-5.0, -2.0, 0.0]))
    assert depth < 0


@pytest.mark.parametrize("preset", ["tiny", "small", "default", "large"])
def test_layout_has_the_presets_cameras_with_overlapping_pairs(preset: str) -> None:
    spec = get_preset(preset)
    layout = build_layout(spec, 0)
    assert len(layout.cameras) == spec.n_cameras
    groups = [c.group for c in layout.cameras]
    assert sum(groups.count(g) == 2 for g in set(groups)) == spec.overlap_pairs
    for placement in layout.cameras:
        x, y = placement.camera.position
        assert 0 <= x <= spec.site_size_m[0] and 0 <= y <= spec.site_size_m[1]
