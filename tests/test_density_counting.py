"""Counting people per zone: coverage, deduplication across cameras, the per-second counter."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.config import parse_site_config
from sightline.density.counting import DensityCounter, GroundFrame, merge_views, rows_frames
from sightline.density.zones import ZoneCoverage, camera_sees, zone_samples
from sightline.geometry import polygon_area
from sightline.store.tables import CAMERA_COUNT_SCHEMA, ZONE_COUNT_SCHEMA


def _top_down(camera_id: str, x0: float, y0: float) -> dict:
    """A camera looking straight down at [x0, x0+10] x [y0, y0+7.5] m (64 px per m)."""
    corners = [(0, 0), (640, 0), (640, 480), (0, 480)]
    return {
        "id": camera_id,
        "source": f"videos/{camera_id}.mp4",
        "fps": 10,
        "resolution": [640, 480],
        "calibration": [
            {"image": [u, v], "ground": [x0 + u / 64, y0 + v / 64]} for u, v in corners
        ],
    }


def _site(cameras: list[dict], zones: list[dict], **density: float):
    return parse_site_config(
        {"name": "t", "cameras": cameras, "zones": zones, "density": density},
        base_dir="/tmp",
    )


ZONE = {"id": "z", "polygon": [[5, 0], [15, 0], [15, 5], [5, 5]], "alert_density": 0.5}


def test_zone_area_and_samples():
    samples = zone_samples(ZONE["polygon"], 0.5)
    assert polygon_area(np.array(ZONE["polygon"])) == pytest.approx(50.0)
    assert len(samples) == 20 * 10
    assert samples[:, 0].min() > 5 and samples[:, 0].max() < 15
    tiny = zone_samples([[0, 0], [0.1, 0], [0.1, 0.1]], 1.0)
    assert tiny.shape == (1, 2)
    with pytest.raises(ValueError, match="cell_m"):
        zone_samples(ZONE["polygon"], 0)


@pytest.mark.parametrize(
    ("cameras", "expected"),
    [
        ([("a", 0.0, 0.0)], 0.5),  # sees x 0..10: half of the zone
        ([("a", 0.0, 0.0), ("b", 10.0, 0.0)], 1.0),  # the second camera sees the other half
        ([("b", 20.0, 0.0)], 0.0),  # looks elsewhere
    ],
)
def test_coverage_of_a_zone_by_cameras(cameras, expected):
    site = _site([_top_down(*c) for c in cameras], [ZONE], view_margin_px=0)
    coverage = ZoneCoverage.for_site(site)
    assert coverage.coverage("z", {c[0] for c in cameras}) == pytest.approx(expected, abs=0.03)
    assert coverage.coverage("z", set()) == 0.0


def test_camera_sees_respects_the_margin():
    site = _site([_top_down("a", 0, 0)], [ZONE], view_margin_px=64)  # 1 m inside
    seen = camera_sees(
        site.cameras[0], np.array([[0.5, 3], [2, 3], [9.5, 3], [2, 7.2]]), site.density
    )
    assert seen.tolist() == [False, True, False, False]


def _frame(camera: str, ts: float, *points: tuple[float, float], ids: tuple[str, ...] = ()):
    return GroundFrame(camera, ts, np.array(points, dtype=np.float32).reshape(-1, 2), ids)


def test_a_person_in_the_overlap_counts_once():
    merged = merge_views([_frame("a", 0, (7, 2)), _frame("b", 0, (7.3, 2.1))], 0.7)
    assert len(merged.points) == 1
    assert merged.n_views.tolist() == [2]
    np.testing.assert_allclose(merged.points[0], [7.15, 2.05], atol=1e-5)


def test_neighbours_and_one_cameras_points_stay_apart():
    # two people 1.5 m apart, both seen by both cameras -> two people, each seen twice
    merged = merge_views(
        [_frame("a", 0, (7, 2), (8.5, 2)), _frame("b", 0, (8.6, 2.1), (7.1, 1.9))], 0.7
    )
    assert sorted(merged.n_views.tolist()) == [2, 2]
    # one camera's two close points are two people
    assert len(merge_views([_frame("a", 0, (7, 2), (7.2, 2))], 0.7).points) == 2


def test_same_global_identity_merges_beyond_the_radius():
    frames = [_frame("a", 0, (7, 2), ids=("a-1",)), _frame("b", 0, (8.2, 2), ids=("b-9",))]
    assert len(merge_views(frames, 0.7).points) == 2
    same = {"a-1": "p1", "b-9": "p1"}.get
    assert len(merge_views(frames, 0.7, same).points) == 1


def _counter(**density: float) -> DensityCounter:
    site = _site([_top_down("a", 0, 0), _top_down("b", 5, 0)], [ZONE], view_margin_px=0, **density)
    now = [0.0]
    counter = DensityCounter(site, clock=lambda: now[0])
    counter.now = now  # type: ignore[attr-defined]
    return counter


def test_counter_dedups_overlap_and_reports_naive_and_coverage():
    counter = _counter()
    t0 = 1_700_000_000.0
    for k in range(10):
        t = t0 + k / 10
        # one person in the overlap (seen by both), one only camera b sees
        counter.add([_frame("a", t, (7, 2)), _frame("b", t, (7.2, 2), (13, 3))])
    counter.add([_frame("a", t0 + 1.0), _frame("b", t0 + 1.0)])
    seconds = counter.advance()
    assert [s.ts for s in seconds] == [t0]
    row = seconds[0].zone_rows[0]
    assert row["count"] == pytest.approx(2.0)
    assert row["naive_count"] == pytest.approx(3.0)
    assert row["peak"] == 2
    assert row["frames"] == 10
    assert row["coverage"] == pytest.approx(1.0, abs=0.03)
    assert row["density_per_m2"] == pytest.approx(2.0 / 50)
    assert row["n_cameras"] == 2
    cams = {r["camera_id"]: r for r in seconds[0].camera_rows}
    assert cams["a"]["count"] == pytest.approx(1.0) and cams["b"]["count"] == pytest.approx(2.0)
    tables = rows_frames(seconds)
    assert tables["zone_counts"].schema == ZONE_COUNT_SCHEMA
    assert tables["camera_counts"].schema == CAMERA_COUNT_SCHEMA
    assert tables["ground_points"].height == 2


def test_a_second_waits_for_the_slow_camera_until_it_finishes_or_times_out():
    counter = _counter(camera_timeout_s=30)
    t0 = 1_700_000_000.0
    counter.add([_frame("a", t0 + k / 10, (7, 2)) for k in range(25)])
    counter.add([_frame("b", t0, (7.1, 2))])
    assert counter.advance() == []  # b has not passed the end of the first second
    counter.add([_frame("b", t0 + k / 10, (7.1, 2)) for k in range(1, 12)])
    assert [s.ts for s in counter.advance()] == [t0]
    counter.now[0] = 31.0  # b goes quiet: a alone may now finish what it has
    counter.add([_frame("a", t0 + 2.5)])
    assert [s.ts for s in counter.advance()] == [t0 + 1]
    counter.add([_frame("b", t0 + 1.5, (7, 2))])  # too late for a final second
    assert counter.stats["late_frames"] == 1


def test_missing_camera_lowers_coverage_not_silently_the_count():
    counter = _counter()
    t0 = 1_700_000_000.0
    counter.add([_frame("a", t0 + k / 10, (7, 2)) for k in range(11)])
    counter.finish_camera("b")  # b never reports: only a's half of the zone is seen
    row = counter.advance()[0].zone_rows[0]
    assert row["count"] == pytest.approx(1.0)
    assert row["coverage"] == pytest.approx(0.5, abs=0.03)
    assert row["n_cameras"] == 1


def test_unknown_camera_is_named():
    with pytest.raises(ValueError, match="unknown camera 'zz'"):
        _counter().add([_frame("zz", 0.0)])
