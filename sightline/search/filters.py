"""Where and when to look: restrict tracklet rows by time, camera, area and reachability.

Each filter takes a frame of tracklet rows (:data:`~sightline.tracking.sink.TRACKLET_SCHEMA`
columns; extra columns are kept) and returns the rows it keeps. They are independent and
cheap enough to run on one store partition at a time. :func:`apply_filters` runs those a
:class:`~sightline.search.query.SearchQuery` asks for and counts what each removed.

Reachability. A person last seen at point ``P`` at time ``t0`` is, at time ``t``, at most
``v |t - t0| + r`` from ``P`` (``v`` the walking-speed bound, ``r`` the uncertainty of the
point). The bound holds both ways in time (they walked *to* ``P`` before ``t0``). A
tracklet is tested at its observations nearest in time to ``t0`` (for a tracklet after
``t0``, its start): the median position of the :data:`REACH_SAMPLES` nearest, against the
bound at the nearest one. A median of a few resists one bad foot-point; testing the
nearest-in-time part is the tight test, since the rest of the tracklet is reachable from
it by the tracklet's own walk. Tracklets without any ground point are kept (nothing
excludes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl

from sightline.geometry import point_in_polygon
from sightline.search.query import LastSeen, SearchQuery

__all__ = [
    "REACH_SAMPLES",
    "FilterOutcome",
    "apply_filters",
    "camera_reach",
    "in_area",
    "in_window",
    "observations",
    "on_cameras",
    "reachable",
]

REACH_SAMPLES = 5
"""Observations nearest in time to the last-seen time whose median position is tested."""

_UTC_US = pl.Datetime("us", "UTC")
_LIGHT = ("tracklet_id", "camera_id", "t_start", "t_end", "ts", "foot_world")


def _epoch_s(column: str) -> pl.Expr:
    return pl.col(column).dt.epoch("us").cast(pl.Float64) / 1e6


def observations(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per observed frame with a finite ground point: ``tracklet_id``,
    ``camera_id``, ``ts`` (datetime), ``t`` (epoch s), ``x``, ``y`` (metres)."""
    if frame.height == 0:
        return pl.DataFrame(
            schema={
                "tracklet_id": pl.String(),
                "camera_id": pl.String(),
                "ts": _UTC_US,
                "t": pl.Float64(),
                "x": pl.Float64(),
                "y": pl.Float64(),
            }
        )
    rows = frame.select("tracklet_id", "camera_id", "ts", "foot_world").explode(
        ["ts", "foot_world"]
    )
    rows = rows.select(
        "tracklet_id",
        "camera_id",
        "ts",
        _epoch_s("ts").alias("t"),
        pl.col("foot_world").list.get(0, null_on_oob=True).cast(pl.Float64).alias("x"),
        pl.col("foot_world").list.get(1, null_on_oob=True).cast(pl.Float64).alias("y"),
    )
    return rows.filter(pl.col("x").is_finite() & pl.col("y").is_finite())


def in_window(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """Tracklets whose time span overlaps ``[start, end]``."""
    return frame.filter((pl.col("t_start") <= end) & (pl.col("t_end") >= start))


def on_cameras(frame: pl.DataFrame, cameras: Sequence[str] | None) -> pl.DataFrame:
    """Tracklets of ``cameras`` (all when None)."""
    if cameras is None:
        return frame
    return frame.filter(pl.col("camera_id").is_in(list(cameras)))


def in_area(
    frame: pl.DataFrame,
    area: Sequence[Sequence[float]] | None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Tracklets with at least one ground point inside the polygon ``area`` (at a time in
    ``[start, end]`` when given; the boundary counts as inside)."""
    if area is None or frame.height == 0:
        return frame
    obs = observations(frame)
    if start is not None:
        obs = obs.filter(pl.col("ts") >= start)
    if end is not None:
        obs = obs.filter(pl.col("ts") <= end)
    if obs.height == 0:
        return frame.clear()
    inside = point_in_polygon(obs.select("x", "y").to_numpy(), np.asarray(area, np.float64))
    ids = obs.filter(pl.Series(inside))["tracklet_id"].unique()
    return frame.filter(pl.col("tracklet_id").is_in(ids.implode()))


def _near_ends(frame: pl.DataFrame, last_seen: LastSeen) -> pl.DataFrame:
    """``frame`` cut to the observations that can be nearest in time to the last-seen
    time: the first few of tracklets after it, the last few of those before it, all of
    those spanning it (exploding every observation of every tracklet costs far more)."""
    t0, n = last_seen.time, 2 * REACH_SAMPLES
    columns = ("ts", "foot_world")
    frame = frame.select("tracklet_id", "camera_id", "t_start", "t_end", *columns)
    after = frame.filter(pl.col("t_start") >= t0).with_columns(pl.col(columns).list.head(n))
    before = frame.filter(pl.col("t_end") < t0).with_columns(pl.col(columns).list.tail(n))
    spanning = frame.filter((pl.col("t_start") < t0) & (pl.col("t_end") >= t0))
    return pl.concat([after, before, spanning])


def _nearest_in_time(frame: pl.DataFrame, last_seen: LastSeen) -> pl.DataFrame:
    """Per tracklet: median position of its :data:`REACH_SAMPLES` observations nearest in
    time to the last-seen time, and the smallest time difference (s)."""
    t0 = last_seen.time.timestamp()
    obs = observations(_near_ends(frame, last_seen)).with_columns(
        (pl.col("t") - t0).abs().alias("dt")
    )
    return obs.group_by("tracklet_id").agg(
        pl.col("x").bottom_k_by("dt", REACH_SAMPLES).median(),
        pl.col("y").bottom_k_by("dt", REACH_SAMPLES).median(),
        pl.col("dt").min(),
    )


def reachable(frame: pl.DataFrame, last_seen: LastSeen | None) -> pl.DataFrame:
    """Tracklets the person could have reached from (or come to) the last-seen point in
    time (see the module docstring); all when ``last_seen`` is None."""
    if last_seen is None or frame.height == 0:
        return frame
    near = _nearest_in_time(frame, last_seen)
    distance = ((pl.col("x") - last_seen.x) ** 2 + (pl.col("y") - last_seen.y) ** 2).sqrt()
    allowed = last_seen.max_speed_mps * pl.col("dt") + last_seen.radius_m
    too_far = near.filter(distance > allowed)["tracklet_id"]
    return frame.filter(~pl.col("tracklet_id").is_in(too_far.implode()))


def camera_reach(frame: pl.DataFrame, last_seen: LastSeen) -> pl.DataFrame:
    """Cameras ordered by how soon the person could have been in their view.

    Per camera: ``distance_m`` from the last-seen point to the nearest ground point any
    of its tracklets in ``frame`` observed (where the camera is known to see),
    ``reach_s`` the walk that takes at the speed bound (after the point's radius), and
    ``earliest`` the last-seen time plus ``reach_s``. Cameras without ground points are
    left out.
    """
    obs = observations(frame)
    distance = ((pl.col("x") - last_seen.x) ** 2 + (pl.col("y") - last_seen.y) ** 2).sqrt()
    per_camera = obs.group_by("camera_id").agg(distance.min().alias("distance_m"))
    reach = ((pl.col("distance_m") - last_seen.radius_m).clip(lower_bound=0.0)) / (
        last_seen.max_speed_mps
    )
    return (
        per_camera.with_columns(reach.alias("reach_s"))
        .with_columns(
            (pl.lit(last_seen.time) + pl.duration(microseconds=(pl.col("reach_s") * 1e6)))
            .cast(_UTC_US)
            .alias("earliest")
        )
        .sort("reach_s", "camera_id")
    )


@dataclass(frozen=True)
class FilterOutcome:
    """What :func:`apply_filters` kept, and how many rows each step left (in order)."""

    frame: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    camera_reach: pl.DataFrame | None = None


def apply_filters(frame: pl.DataFrame, query: SearchQuery) -> FilterOutcome:
    """The query's filters in order: window, cameras, area (in the window), reachability.

    ``counts`` has the number of tracklets before (``input``) and after each step;
    ``camera_reach`` (with a last-seen point) orders the cameras of the window's
    tracklets by :func:`camera_reach`.
    """
    counts = {"input": frame.height}
    # filter a light copy (no embeddings): every filter step copies what it keeps
    light = in_window(frame.select(_LIGHT), query.start, query.end)
    counts["window"] = light.height
    reach = camera_reach(light, query.last_seen) if query.last_seen is not None else None
    light = on_cameras(light, query.cameras)
    counts["cameras"] = light.height
    light = in_area(light, query.area, query.start, query.end)
    counts["area"] = light.height
    light = reachable(light, query.last_seen)
    counts["reachability"] = light.height
    if light.height < frame.height:
        frame = frame.filter(pl.col("tracklet_id").is_in(light["tracklet_id"].implode()))
    return FilterOutcome(frame, counts, reach)
