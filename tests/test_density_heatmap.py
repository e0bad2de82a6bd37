"""Unit tests of sightline.density.heatmap: occupancy grids, site maps, camera overlays."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from sightline.config import SiteConfig, load_site_config, parse_site_config
from sightline.density import heatmap as hm
from sightline.density.heatmap import (
    Heatmap,
    camera_overlay_png,
    first_frame,
    occupancy_grid,
    render_site_png,
    site_bounds,
    site_occupancy,
)
from sightline.geometry import apply_homography, invert_homography
from sightline.ingest.source import SourceError
from sightline.sim.camera import PinholeCamera
from sightline.store.tables import GROUND_POINT_SCHEMA

WIDTH, HEIGHT = 320, 180
OUTLINE = [[0.0, 0.0], [20.0, 0.0], [20.0, 10.0], [0.0, 10.0]]
ZONE = [[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]]
# cam_a looks down onto the site from inside it; cam_b looks almost level, so the top of
# its image is sky (above the horizon).
CAM_A = PinholeCamera.looking_at((1.0, 9.0), 5.0, (10.0, 4.0), 50.0, (WIDTH, HEIGHT))
CAM_B = PinholeCamera.looking_at((21.0, 11.0), 3.0, (-40.0, -20.0), 50.0, (WIDTH, HEIGHT))
HOT = (15.5, 7.5)  # ground point of the hot cell in most tests
COLD = (12.5, 2.5)


def _calibration(cam: PinholeCamera) -> list[dict]:
    """Four exact pixel <-> ground pairs taken in the lower part of the image."""
    pixels = np.array([(0.1, 0.6), (0.9, 0.6), (0.15, 0.95), (0.85, 0.95)]) * (WIDTH, HEIGHT)
    ground = apply_homography(invert_homography(cam.ground_to_image()), pixels)
    return [
        {"image": [float(u), float(v)], "ground": [float(x), float(y)]}
        for (u, v), (x, y) in zip(pixels, ground, strict=True)
    ]


def _site(outline: bool = True) -> SiteConfig:
    data = {
        "name": "heatmap test",
        "camera_defaults": {"resolution": [WIDTH, HEIGHT]},
        "cameras": [
            {"id": "cam_a", "source": "a.mp4", "calibration": _calibration(CAM_A)},
            {"id": "cam_b", "source": "b.mp4", "calibration": _calibration(CAM_B)},
        ],
        "zones": [{"id": "plaza", "polygon": ZONE}],
    }
    if outline:
        data["outline"] = OUTLINE
    return parse_site_config(data)


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _hot_map(bounds: tuple[float, float, float, float], samples: int = 10) -> Heatmap:
    """``samples`` person-seconds at HOT, one at a second cell, over a 10 s window."""
    points = np.array([HOT] * samples + [(4.5, 8.5)])
    return occupancy_grid(points, bounds, cell_m=1.0, seconds=10.0)


# --------------------------------------------------------------------------- the grid


def test_known_points_fill_the_expected_cells():
    points = np.array(
        [(0.1, 0.1), (0.2, 0.4), (0.45, 0.3), (1.6, 0.7), (5.0, 5.0), (-0.1, 0.2), (np.nan, 0.1)]
    )
    grid = occupancy_grid(points, (0.0, 0.0, 2.0, 1.0), cell_m=0.5, seconds=10.0)
    expected = np.zeros((2, 4), dtype=np.float32)
    expected[0, 0] = 3  # row = y index (from y0 up), col = x index
    expected[1, 3] = 1  # (1.6, 0.7); the points off the grid and the nan are ignored
    np.testing.assert_array_equal(grid.occupancy, expected)
    assert grid.occupancy.dtype == np.float32
    assert grid.shape == (2, 4)
    assert grid.bounds == (0.0, 0.0, 2.0, 1.0)
    # person-seconds / (seconds * cell area): 3 / (10 * 0.25) persons per m2
    assert grid.mean_density()[0, 0] == pytest.approx(1.2)
    assert grid.mean_density()[1, 3] == pytest.approx(0.4)
    assert grid.mean_density().sum() == pytest.approx(1.6)


def test_ground_points_frame_is_binned_and_nulls_ignored():
    ts = datetime(2024, 5, 1, 14, 0, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "ts": [ts, ts, ts],
            "world_x": [1.2, 1.4, None],
            "world_y": [0.5, 0.6, 0.5],
            "n_views": [1, 2, 1],
        },
        schema=GROUND_POINT_SCHEMA,
    )
    grid = occupancy_grid(frame, (0.0, 0.0, 2.0, 2.0), cell_m=1.0, seconds=1.0)
    np.testing.assert_array_equal(grid.occupancy, [[0, 2], [0, 0]])


@pytest.mark.parametrize(
    ("bounds", "cell_m", "shape", "extent"),
    [
        ((0.0, 0.0, 10.0, 5.0), 0.1, (50, 100), (0.0, 0.0, 10.0, 5.0)),
        ((0.0, 0.0, 4.2, 0.7), 0.35, (2, 12), (0.0, 0.0, 4.2, 0.7)),  # 4.2 / 0.35 > 12
        ((0.0, 0.0, 1.0, 1.0), 0.3, (4, 4), (0.0, 0.0, 1.2, 1.2)),  # rounded up
        ((-3.0, 2.0, -2.9, 2.1), 1.0, (1, 1), (-3.0, 2.0, -2.0, 3.0)),  # smaller than a cell
    ],
)
def test_grid_is_rounded_up_to_whole_cells(bounds, cell_m, shape, extent):
    grid = occupancy_grid(np.empty((0, 2)), bounds, cell_m=cell_m, seconds=1.0)
    assert grid.shape == shape
    assert grid.bounds == pytest.approx(extent)
    assert grid.occupancy.sum() == 0


def test_density_at_looks_up_the_cell_and_is_nan_off_the_grid():
    grid = _hot_map((0.0, 0.0, 20.0, 10.0))
    got = grid.density_at(np.array([HOT, (15.9, 7.1), COLD, (25.0, 5.0), (np.nan, 1.0)]))
    assert got[:3] == pytest.approx([1.0, 1.0, 0.0])  # 10 person-s / (10 s * 1 m2)
    assert np.isnan(got[3:]).all()


def test_to_dict_is_json_friendly_and_describes_the_grid():
    grid = occupancy_grid(np.array([(0.5, 0.5)] * 3), (0.0, 0.0, 2.0, 1.0), 1.0, 4.0)
    data = json.loads(json.dumps(grid.to_dict()))
    assert data["origin"] == [0.0, 0.0]
    assert data["cell_m"] == 1.0
    assert data["shape"] == [1, 2]
    assert data["seconds"] == 4.0
    assert data["occupancy"] == [[3.0, 0.0]]
    assert data["max_density_per_m2"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cell_m": 0.0}, "cell_m"),
        ({"cell_m": -1.0}, "cell_m"),
        ({"cell_m": float("nan")}, "cell_m"),
        ({"cell_m": 0.0001}, "cell_m"),  # 10^10 cells over a 10 km site
        ({"seconds": 0.0}, "seconds"),
        ({"seconds": float("inf")}, "seconds"),
        ({"bounds": (0.0, 0.0, 0.0, 5.0)}, "bounds"),
        ({"bounds": (0.0, 5.0, 10_000.0, 1.0)}, "bounds"),
        ({"bounds": (0.0, 0.0, float("nan"), 5.0)}, "bounds"),
        ({"points": pl.DataFrame({"x": [1.0], "y": [1.0]})}, "world_x"),
        ({"points": np.zeros((3, 3))}, "points"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    args = {
        "points": np.zeros((1, 2)),
        "bounds": (0.0, 0.0, 10_000.0, 10_000.0),
        "cell_m": 10.0,
        "seconds": 1.0,
    }
    with pytest.raises(ValueError, match=name):
        occupancy_grid(**(args | kwargs))


def test_heatmap_rejects_a_bad_grid():
    with pytest.raises(ValueError, match="occupancy"):
        Heatmap(np.zeros(3), (0.0, 0.0), 1.0, 1.0)
    with pytest.raises(ValueError, match="seconds"):
        Heatmap(np.zeros((2, 2)), (0.0, 0.0), 1.0, 0.0)


# --------------------------------------------------------------------------- site extent


def test_site_bounds_follow_the_outline_with_a_margin():
    assert site_bounds(_site(), margin_m=1.0) == (-1.0, -1.0, 21.0, 11.0)
    assert site_bounds(_site(), margin_m=0.0) == (0.0, 0.0, 20.0, 10.0)
    with pytest.raises(ValueError, match="margin_m"):
        site_bounds(_site(), margin_m=-1.0)


def test_site_bounds_without_outline_cover_zones_and_what_cameras_see():
    site = _site(outline=False)
    x0, y0, x1, y1 = site_bounds(site, margin_m=1.0)
    assert all(np.isfinite([x0, y0, x1, y1]))
    # The zone and the ground near the bottom of each camera's image lie inside.
    centres = [
        apply_homography(cam.image_to_ground, [[WIDTH / 2, HEIGHT * 0.9]])[0]
        for cam in site.cameras
    ]
    for x, y in [*ZONE, *centres]:
        assert x0 < x < x1
        assert y0 < y < y1
    # cam_b sees up to the horizon; its footprint is capped at max_view_distance_m (40 m).
    reach = site.density.max_view_distance_m + 1.0 + 1e-6
    assert x0 >= CAM_B.position[0] - reach
    assert y0 >= CAM_B.position[1] - reach


def test_site_occupancy_uses_the_site_cell_size():
    heat = site_occupancy(np.array([HOT]), _site(), seconds=1.0)
    assert heat.cell_m == 0.5
    assert heat.shape == (24, 44)  # (-1, -1)..(21, 11) in 0.5 m cells
    assert heat.occupancy.sum() == 1


# --------------------------------------------------------------------------- site map


def _map_px(heat: Heatmap, scale: float, x: float, y: float) -> tuple[int, int]:
    """(column, row) of ground point (x, y) on the map: +y is up."""
    x0, _, _, y1 = heat.bounds
    return int((x - x0) * scale), int((y1 - y) * scale)


def test_render_site_png_has_the_expected_size_and_shows_the_hot_cell():
    site = _site()
    heat = _hot_map(site_bounds(site))  # 22 x 12 cells of 1 m
    scale = 8
    image = _decode(render_site_png(heat, site, scale_px_per_m=scale))
    assert image.shape == (12 * scale + hm._LEGEND_PX, 22 * scale, 3)
    hot = image[_map_px(heat, scale, *HOT)[::-1]]
    cold = image[_map_px(heat, scale, *COLD)[::-1]]
    mirrored = image[_map_px(heat, scale, HOT[0], 10.0 - HOT[1])[::-1]]  # were y down
    assert tuple(hot) == tuple(hm.colourise(np.array([1.0]), 1.0)[0])  # the peak colour
    assert tuple(cold) == tuple(hm.colourise(np.array([0.0]), 1.0)[0])
    assert tuple(mirrored) == tuple(cold)
    assert np.abs(hot.astype(int) - cold.astype(int)).sum() > 200


def test_render_site_png_draws_outline_zone_and_camera():
    site = _site()
    heat = _hot_map(site_bounds(site))
    scale = 8
    image = _decode(render_site_png(heat, site, scale_px_per_m=scale))

    def near(x: float, y: float, colour: tuple, radius: int = 1) -> bool:
        col, row = _map_px(heat, scale, x, y)
        patch = image[row - radius : row + radius + 1, col - radius : col + radius + 1]
        return bool((patch == colour).all(axis=-1).any())

    assert near(0.0, 5.0, hm._OUTLINE_RGB)  # the outline's left edge
    assert near(2.0, 3.0, hm._ZONE_RGB)  # the zone's left edge
    assert near(*CAM_A.position, hm._CAMERA_RGB)  # cam_a's marker where the camera stands
    assert not near(12.0, 5.0, hm._ZONE_RGB, radius=3)


def test_render_site_png_scale_caps_colours_and_rejects_bad_values():
    site = _site()
    heat = _hot_map(site_bounds(site))
    # Scale top at 4 persons/m2: the hot cell (1.0) is no longer the peak colour.
    image = _decode(render_site_png(heat, site, max_value=4.0))
    hot = image[_map_px(heat, 8, *HOT)[::-1]]
    assert tuple(hot) == tuple(hm.colourise(np.array([1.0]), 4.0)[0])
    with pytest.raises(ValueError, match="scale_px_per_m"):
        render_site_png(heat, site, scale_px_per_m=0)
    with pytest.raises(ValueError, match="scale_px_per_m"):
        render_site_png(heat, site, scale_px_per_m=1e4)  # far too many pixels
    with pytest.raises(ValueError, match="max_value"):
        render_site_png(heat, site, max_value=-1.0)


def test_render_site_png_of_an_empty_map():
    site = _site()
    heat = occupancy_grid(np.empty((0, 2)), site_bounds(site), 1.0, 1.0)
    image = _decode(render_site_png(heat, site, scale_px_per_m=4))
    assert image.shape == (12 * 4 + hm._LEGEND_PX, 22 * 4, 3)


# --------------------------------------------------------------------------- camera view


def _pixel_of(cam: PinholeCamera, ground: tuple[float, float]) -> tuple[int, int]:
    ((u, v),) = apply_homography(cam.ground_to_image(), [ground])
    assert 0 <= u < WIDTH and 0 <= v < HEIGHT, "test point must be in view"
    return int(u), int(v)


def test_camera_overlay_tints_the_hot_cell_only():
    site = _site()
    heat = _hot_map(site_bounds(site))
    frame = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
    image = _decode(camera_overlay_png(heat, site.camera("cam_a"), frame, alpha=0.5))
    assert image.shape == frame.shape
    u, v = _pixel_of(CAM_A, HOT)
    assert tuple(image[v, u]) != (128, 128, 128)
    peak = hm.colourise(np.array([1.0]), 1.0)[0].astype(float)
    assert image[v, u] == pytest.approx(np.rint(0.5 * 128 + 0.5 * peak), abs=1)
    u, v = _pixel_of(CAM_A, COLD)  # a cell nobody stood in
    assert tuple(image[v, u]) == (128, 128, 128)
    # Tinted pixels are few: only the two occupied cells' images.
    tinted = (image != frame).any(axis=-1).mean()
    assert 0 < tinted < 0.2


def test_camera_overlay_leaves_the_sky_alone():
    # Every cell of a 400 m square around cam_b is occupied. Above the horizon the
    # homography folds back onto the ground behind the camera, inside this grid; those
    # pixels must still show the frame.
    site = _site()
    cam = site.camera("cam_b")
    bounds = (CAM_B.position[0] - 200, CAM_B.position[1] - 200, *(np.add(CAM_B.position, 200)))
    heat = Heatmap(np.ones((40, 40)), bounds[:2], 10.0, 1.0)
    frame = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    image = _decode(camera_overlay_png(heat, cam, frame, step_px=2))
    assert (image[:4] == 90).all()  # sky
    assert (image[-4:] != 90).any(axis=-1).all()  # ground near the camera


def test_camera_overlay_rejects_bad_frames_and_arguments():
    site = _site()
    heat = _hot_map(site_bounds(site))
    cam = site.camera("cam_a")
    with pytest.raises(ValueError, match=r"640x360.*320x180"):
        camera_overlay_png(heat, cam, np.zeros((360, 640, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        camera_overlay_png(heat, cam, np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="alpha"):
        camera_overlay_png(heat, cam, np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8), alpha=2)
    with pytest.raises(ValueError, match="step_px"):
        camera_overlay_png(heat, cam, np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8), step_px=0)


def test_overlay_on_a_rendered_camera_frame(tiny_site: Path):
    site = load_site_config(tiny_site / "site.yaml")
    cam = site.cameras[0]
    width, height = cam.resolution
    frame = first_frame(cam.source, cam.resolution)
    assert frame.shape == (height, width, 3)
    assert frame.dtype == np.uint8
    spot = apply_homography(cam.image_to_ground, [[width / 2, height * 0.8]])
    heat = site_occupancy(np.repeat(spot, 5, axis=0), site, seconds=5.0)
    image = _decode(camera_overlay_png(heat, cam, frame))
    assert image.shape == frame.shape
    assert (image[int(height * 0.8), width // 2] != frame[int(height * 0.8), width // 2]).any()
    assert (image[:4, :4] == frame[:4, :4]).all()
    site_map = _decode(render_site_png(heat, site))
    assert site_map.shape[0] > hm._LEGEND_PX


def test_first_frame_of_a_missing_file_raises(tmp_path: Path):
    with pytest.raises(SourceError, match=r"missing\.mp4"):
        first_frame(tmp_path / "missing.mp4")
