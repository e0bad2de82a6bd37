"""Search filters: each excludes what it must and keeps what it must (parametrized)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from sightline.search.filters import (
    apply_filters,
    camera_reach,
    in_area,
    in_window,
    on_cameras,
    reachable,
)
from sightline.search.query import LastSeen
from tests.test_search_helpers import T0, frame_of, make_tracklet, query


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def kept(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["tracklet_id"].to_list())


# --------------------------------------------------------------------------- window


@pytest.mark.parametrize(
    ("t0", "n", "keep"),
    [
        (T0 - 100, 5, False),  # ended before the window
        (T0 + 1000, 5, False),  # starts after it
        (T0 - 4, 5, True),  # ends exactly at its start
        (T0 + 600, 5, True),  # starts exactly at its end
        (T0 - 100, 1000, True),  # spans it
        (T0 + 100, 5, True),  # inside
    ],
)
def test_window_keeps_overlapping_tracklets(t0, n, keep):
    frame = frame_of(make_tracklet(1, t0=t0, n=n))
    assert (in_window(frame, utc(T0), utc(T0 + 600)).height == 1) is keep


@pytest.mark.parametrize(
    ("cameras", "expected"),
    [(None, ["a-0-1", "b-0-2", "c-0-3"]), (["b"], ["b-0-2"]), (["a", "c"], ["a-0-1", "c-0-3"])],
)
def test_cameras(cameras, expected):
    frame = frame_of(make_tracklet(1, "a"), make_tracklet(2, "b"), make_tracklet(3, "c"))
    assert kept(on_cameras(frame, cameras)) == expected


# --------------------------------------------------------------------------- area

SQUARE = [(10.0, -5.0), (20.0, -5.0), (20.0, 5.0), (10.0, 5.0)]


@pytest.mark.parametrize(
    ("start", "step", "t0", "keep"),
    [
        ((0, 0), (1, 0), T0, False),  # walks 0..4 m: never inside
        ((8, 0), (1, 0), T0, True),  # walks 8..12 m: enters it
        ((10, 5), (0, 1), T0, True),  # starts on the boundary corner
        ((30, 0), (-1, 0), T0, False),  # walks 30..26 m
        ((15, 0), (0, 0), T0 - 50, False),  # stands inside, but before the window
        ((15, 0), (0, 0), T0 + 5, True),  # stands inside during it
    ],
)
def test_area_needs_a_foot_point_inside_during_the_window(start, step, t0, keep):
    frame = frame_of(make_tracklet(1, t0=t0, start=start, step=step))
    out = in_area(frame, SQUARE, utc(T0), utc(T0 + 600))
    assert (out.height == 1) is keep


def test_area_excludes_tracklets_without_ground_points():
    t = make_tracklet(1, start=(15, 0), step=(0, 0))
    blind = make_tracklet(2)
    frame = frame_of(t, blind).with_columns(
        pl.when(pl.col("tracklet_id") == blind.tracklet_id)
        .then(pl.col("foot_world").list.eval(pl.lit([float("nan"), float("nan")])))
        .otherwise(pl.col("foot_world"))
        .alias("foot_world")
    )
    assert kept(in_area(frame, SQUARE)) == [t.tracklet_id]


# --------------------------------------------------------------------------- reachability

SEEN = LastSeen(x=0, y=0, time=T0, max_speed_mps=2.0, radius_m=5.0)


@pytest.mark.parametrize(
    ("t0", "start", "step", "keep"),
    [
        (T0 + 10, (10, 0), (1, 0), True),  # 10 m in 10 s: reachable (2 m/s x 10 s + 5)
        (T0 + 10, (100, 0), (1, 0), False),  # 100 m in 10 s
        (T0 + 100, (100, 0), (1, 0), True),  # 100 m in 100 s
        (T0 + 10, (26, 0), (-0.1, 0), False),  # 26 m at its start (limit 25 m), walking closer
        (T0 - 20, (100, 0), (0, 0), False),  # 100 m away 20 s before the last sighting
        (T0 - 100, (100, 0), (0, 0), True),  # ... or 100 s before: could have walked
        (T0 - 2, (60, 0), (0, 0), False),  # spans the last-seen time, 60 m away
        (T0 - 2, (3, 0), (0, 0), True),  # spans it, next to the point
    ],
)
def test_reachability_from_the_last_seen_point(t0, start, step, keep):
    frame = frame_of(make_tracklet(1, t0=t0, start=start, step=step))
    assert (reachable(frame, SEEN).height == 1) is keep


def test_reachability_uses_the_median_of_the_nearest_observations():
    # one foot-point thrown 80 m off (a bad box) does not exclude a person next to the point
    t = make_tracklet(1, t0=T0 + 5, start=(2, 0), step=(0.1, 0), n=8)
    world = t.foot_world.copy()
    world[0] = (80.0, 0.0)
    frame = frame_of(type(t)(**{**vars(t), "foot_world": world}))
    assert reachable(frame, SEEN).height == 1


def test_reachability_keeps_tracklets_it_cannot_place():
    t = make_tracklet(1, t0=T0 + 5, start=(500, 0))
    blind = type(t)(**{**vars(t), "foot_world": np.full_like(t.foot_world, np.nan)})
    assert reachable(frame_of(blind), SEEN).height == 1
    assert reachable(frame_of(t), SEEN).height == 0


def test_cameras_are_ordered_by_reach_time():
    frame = frame_of(
        make_tracklet(1, "far", start=(105, 0), step=(0, 0)),
        make_tracklet(2, "near", start=(3, 0), step=(0, 0)),
        make_tracklet(3, "mid", start=(0, 45), step=(0, 0)),
    )
    reach = camera_reach(frame, SEEN)
    assert reach["camera_id"].to_list() == ["near", "mid", "far"]
    np.testing.assert_allclose(reach["reach_s"].to_list(), [0.0, 20.0, 50.0])
    assert reach["earliest"][2] == utc(T0 + 50)


def test_apply_filters_counts_each_step():
    frame = frame_of(
        make_tracklet(1, "a", t0=T0 - 500),  # outside the window
        make_tracklet(2, "b", t0=T0 + 10),  # wrong camera
        make_tracklet(3, "a", t0=T0 + 10, start=(-50, 0), step=(0, 0)),  # outside the area
        make_tracklet(4, "a", t0=T0 + 10, start=(40, 0), step=(0, 0)),  # not reachable
        make_tracklet(5, "a", t0=T0 + 10, start=(5, 0), step=(0, 0)),  # kept
    )
    q = query(
        start=T0,
        end=T0 + 600,
        description={"child": True},
        cameras=["a"],
        area=[(0, -10), (60, -10), (60, 10), (0, 10)],
        last_seen={"x": 0, "y": 0, "time": T0},
    )
    out = apply_filters(frame, q)
    assert kept(out.frame) == ["a-0-5"]
    assert out.counts == {"input": 5, "window": 4, "cameras": 3, "area": 2, "reachability": 1}
    assert out.camera_reach is not None
    assert out.camera_reach["camera_id"].to_list() == ["a", "b"]
