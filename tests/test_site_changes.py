"""Run-time camera changes without Ray: the site config with a camera added, changed or
removed; density counting that follows the new set of cameras; and the store's
time-based flush that lets a live service's readers see rows within seconds."""

from __future__ import annotations

import polars as pl
import pytest

from sightline.config import ConfigError
from sightline.density.counting import DensityCounter
from sightline.site_changes import with_camera, without_camera
from sightline.store.queries import scan
from sightline.store.tables import TrackStore
from tests.test_density_counting import ZONE, _frame, _site, _top_down
from tests.test_search_helpers import T0, make_tracklet


def _two_camera_site(**extra):
    site = _site([_top_down("a", 0, 0)], [ZONE], view_margin_px=0)
    return with_camera(site, _top_down("b", 5, 0), **extra)


def test_an_added_camera_gets_the_site_defaults_and_keeps_the_others():
    site = _site([_top_down("a", 0, 0)], [ZONE])
    camera = {k: v for k, v in _top_down("b", 5, 0).items() if k != "fps"}
    grown = with_camera(site, camera)
    assert [c.id for c in grown.cameras] == ["a", "b"]
    assert grown.camera("b").fps == site.camera_defaults.fps
    assert grown.camera("a").model_dump() == site.camera("a").model_dump()
    assert grown.zones == site.zones and grown.density == site.density


def test_a_changed_camera_keeps_its_place_and_takes_the_new_settings():
    site = _two_camera_site()
    changed = with_camera(site, {**_top_down("a", 0, 0), "fps": 5}, replace=True)
    assert [c.id for c in changed.cameras] == ["a", "b"]
    assert changed.camera("a").fps == 5 and site.camera("a").fps == 10


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        ({"fps": 0}, ConfigError, "cameras[1] (id=b).fps"),
        ({"calibration": []}, ConfigError, "calibration"),
        ({"id": "a"}, ConfigError, "already exists"),
        ({"id": "bad id!"}, ConfigError, "id"),
        ({"colour": "red"}, ConfigError, "colour"),
    ],
)
def test_a_bad_camera_is_refused_naming_the_field(change, error, named):
    site = _site([_top_down("a", 0, 0)], [ZONE])
    with pytest.raises(error) as caught:
        with_camera(site, {**_top_down("b", 5, 0), **change})
    assert named in str(caught.value)
    assert [c.id for c in site.cameras] == ["a"]


def test_unknown_and_last_cameras_cannot_be_changed_or_removed():
    site = _two_camera_site()
    with pytest.raises(KeyError, match="no such camera"):
        with_camera(site, _top_down("zz", 0, 0), replace=True)
    with pytest.raises(KeyError, match="no such camera"):
        without_camera(site, "zz")
    with pytest.raises(ConfigError, match="last camera"):
        without_camera(without_camera(site, "a"), "b")
    assert [c.id for c in without_camera(site, "a").cameras] == ["b"]


def test_density_counts_a_camera_added_at_run_time_and_its_coverage():
    one = _site([_top_down("a", 0, 0)], [ZONE], view_margin_px=0)
    counter = DensityCounter(one, clock=lambda: 0.0)
    counter.add([_frame("a", T0 + k / 10, (7, 2)) for k in range(11)])
    first = counter.advance()[0].zone_rows[0]
    assert first["coverage"] == pytest.approx(0.5, abs=0.03)  # a sees half the zone
    counter.set_cameras(with_camera(one, _top_down("b", 5, 0)))
    with pytest.raises(ValueError, match="unknown camera"):
        DensityCounter(one).add([_frame("b", T0, (13, 3))])
    for k in range(10, 21):
        t = T0 + k / 10
        counter.add([_frame("a", t, (7, 2)), _frame("b", t, (7.1, 2), (13, 3))])
    second = counter.advance()[0].zone_rows[0]
    assert second["n_cameras"] == 2 and second["count"] == pytest.approx(2.0)
    assert second["coverage"] == pytest.approx(1.0, abs=0.03)


def test_a_removed_camera_no_longer_holds_seconds_back():
    site = _two_camera_site()
    counter = DensityCounter(site, clock=lambda: 0.0)
    counter.add([_frame("a", T0 + k / 10, (7, 2)) for k in range(25)])
    counter.add([_frame("b", T0, (7.1, 2))])
    assert counter.advance() == []  # b holds the first second back
    counter.set_cameras(without_camera(site, "b"))
    assert [s.ts for s in counter.advance()] == [T0, T0 + 1]


def test_the_store_writes_rows_that_waited_flush_after_s(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("sightline.store.tables.time.monotonic", lambda: clock[0])
    store = TrackStore(tmp_path, flush_rows=10_000, flush_after_s=5.0, durable=False)
    store.write_tracklets([make_tracklet(1, "cam1", T0, person=1)], {})
    assert store.pending_rows > 0 and not list(tmp_path.glob("tracklets/**/*.parquet"))
    clock[0] += 4.0
    store.write_tracklets([make_tracklet(2, "cam1", T0 + 1, person=1)], {})
    assert not list(tmp_path.glob("tracklets/**/*.parquet"))  # the oldest waited 4 s
    clock[0] += 1.5
    store.write_tracklets([make_tracklet(3, "cam1", T0 + 2, person=2)], {})
    assert store.pending_rows == 0
    assert scan(tmp_path, "tracklets").select(pl.len()).collect().item() == 3
    with pytest.raises(ValueError, match="flush_after_s"):
        TrackStore(tmp_path, flush_after_s=0)


def test_without_flush_after_s_rows_wait_for_flush_rows(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("sightline.store.tables.time.monotonic", lambda: clock[0])
    store = TrackStore(tmp_path, flush_rows=10_000, durable=False)
    store.write_tracklets([make_tracklet(1, "cam1", T0, person=1)], {})
    clock[0] += 3600
    store.write_tracklets([make_tracklet(2, "cam1", T0, person=1)], {})
    assert store.pending_rows > 0
