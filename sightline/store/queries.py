"""Queries over the fused-track store, for the HTTP API and notebooks.

Every function takes a :class:`~sightline.store.tables.TrackStore` or a root (folder or
URL) and returns polars DataFrames. They read only what is flushed. Scans are lazy and
filter on the ``date`` and ``camera_id`` partitions first, so a one-hour window over one
camera opens only that camera's files of that day (and the day before, see
:data:`MAX_TRACKLET_SPAN`). When nothing matches the result is empty but typed.

The store's tables are logs; these functions apply its read rules: the newest
``version`` of a tracklet, the newest ``seq`` of an identity assignment, and global ids
resolved through the newest assignments (a sighting's own ``global_id`` is only a
fallback for a tracklet that has no assignment yet).

Times are ``datetime`` (naive ones are taken as UTC), epoch seconds, or ISO 8601 strings.
An ``area`` is a ground polygon: a list of at least 3 ``(x, y)`` points in metres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import polars as pl

from sightline.geometry import point_in_polygon
from sightline.store.tables import (
    PARTITIONS,
    TABLES,
    StoreError,
    TrackStore,
    is_url,
)
from sightline.times import TimeLike, to_utc

__all__ = [
    "FUSED_TRACK_SCHEMA",
    "MAX_TRACKLET_SPAN",
    "ROUTE_COLUMNS",
    "export_slice",
    "fused_tracks",
    "identity_summary",
    "latest_identities",
    "route",
    "scan",
    "sightings",
]

StoreLike = TrackStore | str | Path

MAX_TRACKLET_SPAN = timedelta(days=1)
"""Tracklets are assumed shorter than this: a window's scan opens the partitions of
``start - MAX_TRACKLET_SPAN`` on, since a tracklet is filed under the date it started."""

_UTC_US = pl.Datetime("us", "UTC")
FUSED_TRACK_SCHEMA: dict[str, pl.DataType] = {
    "global_id": pl.String(),
    "tracklet_id": pl.String(),
    "camera_id": pl.String(),
    "ts": _UTC_US,
    "x1": pl.Float32(),
    "y1": pl.Float32(),
    "x2": pl.Float32(),
    "y2": pl.Float32(),
    "world_x": pl.Float32(),
    "world_y": pl.Float32(),
}
"""One row per observation: a person's box in one camera frame and ground position."""

ROUTE_COLUMNS = (
    "global_id",
    "camera_id",
    "tracklet_id",
    "t_start",
    "t_end",
    "world_x",
    "world_y",
    "first_x",
    "first_y",
    "last_x",
    "last_y",
    "thumbnail",
)
"""The columns of :func:`route`."""


# --------------------------------------------------------------------------- scans


def _location(store: StoreLike) -> tuple[str, dict[str, Any] | None]:
    if isinstance(store, TrackStore):
        return store.root, store.storage_options or None
    text = str(store)
    if text.startswith("file://"):
        text = urlparse(text).path
    return text.rstrip("/") or "/", None


def scan(store: StoreLike, table: str) -> pl.LazyFrame:
    """A lazy scan of every part of ``table`` (with its ``date`` and, where partitioned so,
    ``camera_id`` columns); typed and empty when the table has no parts yet."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {list(TABLES)}")
    root, options = _location(store)
    if not is_url(root) and not Path(root).is_dir():
        raise StoreError(f"store root {root} is not a folder")
    hive = {c: (pl.Date() if c == "date" else pl.String()) for c in PARTITIONS[table]}
    return pl.scan_parquet(
        f"{root}/{table}/**/*.parquet",
        hive_partitioning=True,
        hive_schema=hive,
        schema=TABLES[table],
        missing_columns="insert",  # parts written before a column was added read it as null
        storage_options=options,
    )


def _utc(value: TimeLike, name: str) -> datetime:
    return to_utc(value, name)


def _window(start: TimeLike, end: TimeLike) -> tuple[datetime, datetime]:
    lo, hi = _utc(start, "start"), _utc(end, "end")
    if hi < lo:
        raise ValueError(f"end {hi.isoformat()} is before start {lo.isoformat()}")
    return lo, hi


def _window_scan(
    store: StoreLike,
    table: str,
    window: tuple[datetime, datetime],
    cameras: Iterable[str] | None,
) -> pl.LazyFrame:
    """Rows of ``table`` (tracklets or sightings) whose time span overlaps ``window``."""
    lo, hi = window
    first_day = (lo - MAX_TRACKLET_SPAN).date()
    lf = scan(store, table).filter(pl.col("date").is_between(first_day, hi.date()))
    if cameras is not None:
        lf = lf.filter(pl.col("camera_id").is_in(list(cameras)))
    return lf.filter((pl.col("t_start") <= hi) & (pl.col("t_end") >= lo))


def _newest(lf: pl.LazyFrame, key: str, order: str) -> pl.LazyFrame:
    """One row per ``key``: the one with the highest ``order`` (repeats collapse)."""
    newest = lf.filter(pl.col(order) == pl.col(order).max().over(key))
    return newest.unique(key, keep="any")


def _identities(store: StoreLike) -> pl.LazyFrame:
    return _newest(scan(store, "identities"), "tracklet_id", "seq").select(
        "tracklet_id", pl.col("global_id").alias("_resolved")
    )


def _in_area(frame: pl.DataFrame, area: Sequence[Sequence[float]] | None) -> pl.DataFrame:
    if area is None:
        return frame
    polygon = np.asarray(area, dtype=np.float64)
    if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3:
        raise ValueError(f"area: expected >= 3 (x, y) points in metres, got shape {polygon.shape}")
    if frame.height == 0:
        return frame
    points = frame.select("world_x", "world_y").to_numpy().astype(np.float64)
    return frame.filter(pl.Series(point_in_polygon(points, polygon)))


# --------------------------------------------------------------------------- queries


def latest_identities(store: StoreLike) -> pl.DataFrame:
    """``(tracklet_id, global_id)``: every tracklet's current identity."""
    return _identities(store).rename({"_resolved": "global_id"}).sort("tracklet_id").collect()


def fused_tracks(
    store: StoreLike,
    start: TimeLike,
    end: TimeLike,
    cameras: Iterable[str] | None = None,
    area: Sequence[Sequence[float]] | None = None,
) -> pl.DataFrame:
    """Every observation in ``[start, end]`` (optionally of ``cameras``, inside ``area``),
    :data:`FUSED_TRACK_SCHEMA`, ordered by time; ``global_id`` is the current identity
    (null for a tracklet not assigned yet)."""
    lo, hi = window = _window(start, end)
    tracklets = _window_scan(store, "tracklets", window, cameras).select(
        "tracklet_id", "camera_id", "version", "ts", "boxes", "foot_world"
    )
    box = pl.col("boxes").list
    frame = (
        _newest(tracklets, "tracklet_id", "version")
        .explode(["ts", "boxes", "foot_world"])
        .filter(pl.col("ts").is_between(lo, hi))
        .join(_identities(store), on="tracklet_id", how="left")
        .select(
            pl.col("_resolved").alias("global_id"),
            "tracklet_id",
            "camera_id",
            "ts",
            *(box.get(i).alias(name) for i, name in enumerate(("x1", "y1", "x2", "y2"))),
            pl.col("foot_world").list.get(0).alias("world_x"),
            pl.col("foot_world").list.get(1).alias("world_y"),
        )
        .sort("ts", "camera_id", "tracklet_id")
        .collect()
    )
    return _in_area(frame, area).cast(FUSED_TRACK_SCHEMA)  # type: ignore[arg-type]


def _resolved_sightings(lf: pl.LazyFrame, store: StoreLike) -> pl.LazyFrame:
    columns = list(TABLES["sightings"])
    return (
        _newest(lf, "tracklet_id", "version")
        .join(_identities(store), on="tracklet_id", how="left")
        .with_columns(pl.coalesce("_resolved", "global_id").alias("global_id"))
        .select(columns)
    )


def sightings(
    store: StoreLike,
    start: TimeLike,
    end: TimeLike,
    cameras: Iterable[str] | None = None,
    area: Sequence[Sequence[float]] | None = None,
) -> pl.DataFrame:
    """Sightings (newest version of each tracklet) overlapping ``[start, end]``, with
    current global ids, ordered by ``t_start``; ``area`` tests the median position."""
    lf = _window_scan(store, "sightings", _window(start, end), cameras)
    frame = _resolved_sightings(lf, store).sort("t_start", "camera_id", "tracklet_id").collect()
    return _in_area(frame, area)


def route(store: StoreLike, global_id: str) -> pl.DataFrame:
    """Where ``global_id`` was seen, in time order: :data:`ROUTE_COLUMNS`, one row per
    tracklet (camera, time span, median/first/last ground position, thumbnail ref)."""
    return (
        _resolved_sightings(scan(store, "sightings"), store)
        .filter(pl.col("global_id") == global_id)
        .select(ROUTE_COLUMNS)
        .sort("t_start", "camera_id", "tracklet_id")
        .collect()
    )


def identity_summary(store: StoreLike) -> pl.DataFrame:
    """One row per global id: ``tracklet_ids``, ``first_seen``, ``last_seen`` and
    ``cameras`` (the design's fused identity), from the current assignments."""
    return (
        _resolved_sightings(scan(store, "sightings"), store)
        .filter(pl.col("global_id").is_not_null())
        .group_by("global_id")
        .agg(
            pl.col("tracklet_id").sort().alias("tracklet_ids"),
            pl.col("t_start").min().alias("first_seen"),
            pl.col("t_end").max().alias("last_seen"),
            pl.col("camera_id").unique().sort().alias("cameras"),
        )
        .sort("first_seen", "global_id")
        .collect()
    )


# --------------------------------------------------------------------------- export


def _read_bytes(root: str, ref: str, options: dict[str, Any] | None) -> bytes | None:
    """A file of the store, or None if it is gone (e.g. removed by retention)."""
    if not is_url(root):
        path = Path(root) / ref
        return path.read_bytes() if path.is_file() else None
    import fsspec

    try:
        with fsspec.open(f"{root}/{ref}", "rb", **(options or {})) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _check_empty_destination(dest: TrackStore) -> None:
    if dest.local is None:
        return  # an object store has no cheap "is it empty"; the caller names a fresh prefix
    taken = [t for t in (*TABLES, "thumbnails") if (dest.local / t).exists()]
    if taken:
        raise StoreError(f"export destination {dest.local} already holds {taken}")


def export_slice(
    store: StoreLike, start: TimeLike, end: TimeLike, dest: str | Path
) -> dict[str, Any]:
    """Copy what a time window needs into a new store at ``dest`` (readable the same way).

    Copied: every version of the tracklets overlapping ``[start, end]`` (whole, not
    clipped), their sightings, all their identity assignments, the events in the window
    or about those tracklets, and their thumbnails. Returns counts per table and
    ``thumbnails_missing`` (refs whose file is gone). ``dest`` must not hold a store yet.
    """
    window = _window(start, end)
    root, options = _location(store)
    out = TrackStore(dest, flush_rows=2**62)
    _check_empty_destination(out)
    tracklets = _window_scan(store, "tracklets", window, None).collect()
    ids = tracklets["tracklet_id"].unique().to_list()
    mine = pl.col("tracklet_id").is_in(ids)
    rows = {
        "tracklets": tracklets,
        "sightings": _window_scan(store, "sightings", window, None).filter(mine).collect(),
        "identities": scan(store, "identities").filter(mine).collect(),
        "events": scan(store, "events")
        .filter(
            pl.col("ts").is_between(*window)
            | pl.col("tracklet_ids").list.eval(pl.element().is_in(ids)).list.any()
        )
        .collect(),
    }
    counts: dict[str, Any] = {"dest": out.root}
    for table, frame in rows.items():
        out.append_rows(table, frame)
        counts[table] = frame.height
    refs = tracklets["thumbnail"].drop_nulls().unique().to_list()
    missing = 0
    for ref in refs:
        data = _read_bytes(root, ref, options)
        if data is None:
            missing += 1
        else:
            out.add_thumbnail(ref, data)
    out.flush()
    counts["thumbnails"] = len(refs) - missing
    counts["thumbnails_missing"] = missing
    return counts
