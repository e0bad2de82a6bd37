"""Crowd-density queries over the store: zone and camera counts over time, ground points
for heatmaps, and density alerts.

Every function takes a :class:`~sightline.store.tables.TrackStore` or a root (folder or
URL) and returns a polars DataFrame; it reads only what is flushed. Times are
``datetime`` (naive ones are taken as UTC), epoch seconds or ISO 8601 strings, and a
window ``[start, end]`` is closed, as in :mod:`sightline.store.queries`: it holds the
per-second rows whose second starts at or after ``start`` and at or before ``end`` (so
``end`` may be the last second wanted; to tile time without counting a second twice, end
each window 1 µs before the next one starts). Scans filter on the ``date`` partition
first (and on ``camera_id`` for cameras), so a one-day window opens only that day's
files.

The count tables are logs of per-second rows; a replay or a retried flush can repeat a
row. Each ``(zone_id, ts)`` (``(camera_id, ts)``) counts once, its last row in file order
winning. Checking that costs little: each group's rows are compared with its distinct
seconds in the same pass, and only groups with repeats are aggregated again.

Ids that the store does not hold (an unknown zone, a camera without counts) are simply
absent from the result; when nothing matches, the result is empty but typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from numbers import Integral

import polars as pl

from sightline.store.queries import StoreLike, TimeLike, _in_area, _utc, _window, scan

__all__ = [
    "CAMERA_BUCKET_SCHEMA",
    "MAX_BUCKET_S",
    "PARTIAL_VIEW_COVERAGE",
    "ZONE_BUCKET_SCHEMA",
    "ZONE_SUMMARY_SCHEMA",
    "camera_counts",
    "density_alerts",
    "ground_points",
    "zone_counts",
    "zone_summary",
]

_UTC_US = pl.Datetime("us", "UTC")
_US_PER_S = 1_000_000

MAX_BUCKET_S = 3600
"""The longest bucket :func:`zone_counts` and :func:`camera_counts` accept, in seconds."""

PARTIAL_VIEW_COVERAGE = 0.95
"""A bucket whose worst ``coverage`` is below this is flagged ``partial_view``: cameras
saw less than 95 % of the zone at some second, so its count may miss people."""

ZONE_BUCKET_SCHEMA: dict[str, pl.DataType] = {
    "zone_id": pl.String(),
    "ts": _UTC_US,
    "count": pl.Float32(),
    "peak": pl.Int32(),
    "density_per_m2": pl.Float32(),
    "peak_density_per_m2": pl.Float32(),
    "coverage": pl.Float32(),
    "naive_count": pl.Float32(),
    "seconds": pl.Int32(),
    "partial_view": pl.Boolean(),
}
"""One row per zone and bucket (:func:`zone_counts`). ``ts`` is the bucket's start;
``count`` (people), ``density_per_m2`` (people per m²) and ``naive_count`` are means over
the bucket's seconds present in the store, ``peak`` the most people at one frame time,
``peak_density_per_m2`` the highest per-second density, ``coverage`` (0..1) the lowest
per-second coverage (the worst view), ``seconds`` how many per-second rows there were."""

ZONE_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "zone_id": pl.String(),
    "mean_count": pl.Float32(),
    "peak_count": pl.Int32(),
    "peak_density_per_m2": pl.Float32(),
    "peak_ts": _UTC_US,
    "mean_density_per_m2": pl.Float32(),
    "min_coverage": pl.Float32(),
    "seconds": pl.Int32(),
}
"""One row per zone over a whole window (:func:`zone_summary`)."""

CAMERA_BUCKET_SCHEMA: dict[str, pl.DataType] = {
    "camera_id": pl.String(),
    "ts": _UTC_US,
    "count": pl.Float32(),
    "peak": pl.Int32(),
    "frames": pl.Int32(),
    "seconds": pl.Int32(),
}
"""One row per camera and bucket (:func:`camera_counts`): ``count`` is the mean of the
per-second means (people in view), ``peak`` the most in one frame, ``frames`` the frames
processed in the bucket, ``seconds`` the per-second rows there were."""

# (output column, source column, aggregation over a bucket's seconds)
_Spec = tuple[tuple[str, str, str], ...]
_ZONE_SPEC: _Spec = (
    ("count", "count", "mean"),
    ("peak", "peak", "max"),
    ("density_per_m2", "density_per_m2", "mean"),
    ("peak_density_per_m2", "density_per_m2", "max"),
    ("coverage", "coverage", "min"),
    ("naive_count", "naive_count", "mean"),
)
_CAMERA_SPEC: _Spec = (
    ("count", "count", "mean"),
    ("peak", "peak", "max"),
    ("frames", "frames", "sum"),
)
_BUCKET = "_bucket"


# --------------------------------------------------------------------------- helpers


def _check_bucket(bucket_s: int) -> int:
    """``bucket_s`` as an int, or a ValueError naming it (a bad value from an HTTP query
    or the CLI is the caller's input error whatever its type)."""
    if isinstance(bucket_s, bool) or not isinstance(bucket_s, Integral):
        raise ValueError(f"bucket_s must be a whole number of seconds, got {bucket_s!r}")
    if not 1 <= bucket_s <= MAX_BUCKET_S:
        raise ValueError(f"bucket_s must be in 1..{MAX_BUCKET_S} seconds, got {bucket_s}")
    return int(bucket_s)


def _ids(ids: Sequence[str] | None, name: str) -> list[str] | None:
    if ids is None:
        return None
    if isinstance(ids, str):
        raise TypeError(f"{name}: expected a sequence of ids, got the string {ids!r}")
    return list(ids)


def _days(lo: datetime, hi: datetime) -> tuple[date, date]:
    """The first and last ``date`` partition a window touches (a row's date is its
    ``ts``'s UTC date, so these hold every row of the window and no other day's)."""
    return lo.date(), hi.date()


def _rows(
    store: StoreLike, table: str, start: TimeLike, end: TimeLike, key: str, ids: list[str] | None
) -> pl.LazyFrame:
    """Rows of a per-second table in ``[start, end]``, of ``ids`` only if given."""
    lo, hi = _window(start, end)
    lf = scan(store, table).filter(pl.col("date").is_between(*_days(lo, hi)))
    if ids is not None:
        lf = lf.filter(pl.col(key).is_in(ids))
    return lf.filter(pl.col("ts").is_between(lo, hi))


def _bucket_start(bucket_s: int) -> pl.Expr:
    """The bucket's start in epoch microseconds: integer truncation, aligned to UTC
    multiples of ``bucket_s`` (far cheaper than ``group_by_dynamic`` at scale)."""
    width = bucket_s * _US_PER_S
    return (pl.col("ts").dt.epoch("us") // width) * width


def _agg_exprs(spec: _Spec) -> list[pl.Expr]:
    return [getattr(pl.col(src), how)().alias(out) for out, src, how in spec] + [
        pl.len().alias("seconds")
    ]


def _aggregate(
    lf: pl.LazyFrame, keys: list[str], dedup_key: str, aggs: list[pl.Expr]
) -> pl.DataFrame:
    """``lf`` grouped by ``keys`` and aggregated with ``aggs`` (which include ``seconds``,
    the group's row count), each ``(dedup_key, ts)`` counted once (its last row).

    The first pass also counts each group's distinct seconds; a group with more rows than
    that holds repeats, and only groups of such keys are read and aggregated again, over
    the last row of each repeat. With no repeats (the usual case) that costs one pass.
    """
    distinct = pl.col("ts").n_unique().alias("_distinct")
    first = lf.group_by(keys).agg(*aggs, distinct).collect()
    repeated = first.filter(pl.col("seconds") > pl.col("_distinct"))
    first = first.drop("_distinct")
    if repeated.height == 0:
        return first
    # a superset of the repeated groups (every combination of their key values); each
    # group in it is read whole, so all of them come out right
    inside = pl.all_horizontal(pl.col(k).is_in(repeated[k].unique().to_list()) for k in keys)
    redone = (
        lf.filter(inside)
        .unique([dedup_key, "ts"], keep="last", maintain_order=False)
        .group_by(keys)
        .agg(aggs)
        .collect()
    )
    kept = first.join(redone.select(keys), on=keys, how="anti", nulls_equal=True)
    return pl.concat([kept, redone], how="vertical_relaxed")


def _last_of_run(*columns: str) -> pl.Expr:
    """True on a row whose ``columns`` differ from the next row's (the last of a run)."""
    differs = [pl.col(c) != pl.col(c).shift(-1) for c in columns]
    return pl.any_horizontal(differs).fill_null(True)


def _per_second(lf: pl.LazyFrame, key: str, spec: _Spec) -> pl.DataFrame:
    """One-second buckets, sorted by ``key`` and bucket.

    There are about as many buckets as rows, so a hash group-by buys nothing: a stable
    sort puts repeats next to each other, the last of each is kept, and each row is its
    own bucket. The sort is on ``key`` as an enum of the sorted ids, ~3x faster than on
    strings. Only a store with ``ts`` off whole seconds falls back to grouping.
    """
    sources = list(dict.fromkeys(src for _, src, _ in spec))
    rows = lf.select(key, "ts", *sources).collect()
    ids = rows[key].unique().drop_nulls().sort()
    # eager: the streaming engine's sort is ~3x slower here
    rows = (
        rows.with_columns(pl.col(key).cast(pl.Enum(ids)))
        .sort(key, "ts", maintain_order=True)
        .filter(_last_of_run(key, "ts"))
        .with_columns(pl.col(key).cast(pl.String), _bucket_start(1).alias(_BUCKET))
    )
    if rows.select(_last_of_run(key, _BUCKET).not_().any()).item():
        return rows.group_by(key, _BUCKET).agg(_agg_exprs(spec)).sort(key, _BUCKET)
    return rows.select(
        key,
        _BUCKET,
        *(pl.col(src).alias(out) for out, src, _ in spec),
        pl.lit(1, pl.Int32).alias("seconds"),
    )


def _bucketed(lf: pl.LazyFrame, key: str, bucket_s: int, spec: _Spec) -> pl.DataFrame:
    """Per ``key`` and bucket, sorted by both, with ``ts`` the bucket start."""
    if bucket_s == 1:
        frame = _per_second(lf, key, spec)
    else:
        keyed = lf.with_columns(_bucket_start(bucket_s).alias(_BUCKET))
        frame = _aggregate(keyed, [key, _BUCKET], key, _agg_exprs(spec)).sort(key, _BUCKET)
    return frame.with_columns(pl.col(_BUCKET).cast(_UTC_US)).rename({_BUCKET: "ts"})


# --------------------------------------------------------------------------- queries


def zone_counts(
    store: StoreLike,
    start: TimeLike,
    end: TimeLike,
    *,
    zones: Sequence[str] | None = None,
    bucket_s: int = 1,
) -> pl.DataFrame:
    """People per zone over ``[start, end]`` in buckets of ``bucket_s`` seconds
    (:data:`ZONE_BUCKET_SCHEMA`), sorted by ``zone_id`` and ``ts``.

    Buckets are aligned to UTC multiples of ``bucket_s`` (1..:data:`MAX_BUCKET_S`); a
    bucket cut by the window, or with seconds missing from the store, aggregates the
    seconds it has (``seconds`` says how many). Longer buckets smooth the counts and
    shrink the result; ``peak`` and ``peak_density_per_m2`` keep the worst moment.
    ``partial_view`` flags buckets whose coverage fell below
    :data:`PARTIAL_VIEW_COVERAGE`. ``zones`` limits the result to those ids.
    """
    bucket_s = _check_bucket(bucket_s)
    lf = _rows(store, "zone_counts", start, end, "zone_id", _ids(zones, "zones"))
    frame = _bucketed(lf, "zone_id", bucket_s, _ZONE_SPEC)
    frame = frame.with_columns((pl.col("coverage") < PARTIAL_VIEW_COVERAGE).alias("partial_view"))
    return frame.select(list(ZONE_BUCKET_SCHEMA)).cast(ZONE_BUCKET_SCHEMA)  # type: ignore[arg-type]


def zone_summary(
    store: StoreLike,
    start: TimeLike,
    end: TimeLike,
    *,
    zones: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per zone over ``[start, end]`` (:data:`ZONE_SUMMARY_SCHEMA`), sorted by
    ``zone_id``: the mean and peak count (people), the peak and mean density (people per
    m²), ``peak_ts`` (the first second with the peak density, which is also the second
    with the highest mean count), the lowest coverage and the seconds present."""
    lf = _rows(store, "zone_counts", start, end, "zone_id", _ids(zones, "zones"))
    density = pl.col("density_per_m2")
    aggs = [
        pl.col("count").mean().alias("mean_count"),
        pl.col("peak").max().alias("peak_count"),
        density.max().alias("peak_density_per_m2"),
        # the earliest of the densest seconds (sort_by+first runs as a fast arg-max)
        pl.col("ts").sort_by(density, "ts", descending=[True, False]).first().alias("peak_ts"),
        density.mean().alias("mean_density_per_m2"),
        pl.col("coverage").min().alias("min_coverage"),
        pl.len().alias("seconds"),
    ]
    frame = _aggregate(lf, ["zone_id"], "zone_id", aggs).sort("zone_id")
    return frame.select(list(ZONE_SUMMARY_SCHEMA)).cast(ZONE_SUMMARY_SCHEMA)  # type: ignore[arg-type]


def camera_counts(
    store: StoreLike,
    start: TimeLike,
    end: TimeLike,
    *,
    cameras: Sequence[str] | None = None,
    bucket_s: int = 1,
) -> pl.DataFrame:
    """People each camera sees over ``[start, end]`` in buckets of ``bucket_s`` seconds
    (:data:`CAMERA_BUCKET_SCHEMA`), sorted by ``camera_id`` and ``ts``; buckets as in
    :func:`zone_counts`. ``cameras`` limits the scan to those cameras' partitions."""
    bucket_s = _check_bucket(bucket_s)
    lf = _rows(store, "camera_counts", start, end, "camera_id", _ids(cameras, "cameras"))
    frame = _bucketed(lf, "camera_id", bucket_s, _CAMERA_SPEC)
    return frame.select(list(CAMERA_BUCKET_SCHEMA)).cast(CAMERA_BUCKET_SCHEMA)  # type: ignore[arg-type]


def ground_points(
    store: StoreLike,
    start: TimeLike,
    end: TimeLike,
    *,
    area: Sequence[Sequence[float]] | None = None,
) -> pl.DataFrame:
    """Where people stood in ``[start, end]``, for heatmaps: ``ts``, ``world_x``,
    ``world_y`` (metres), ``n_views`` (cameras that saw the person), sorted by ``ts``;
    ``area`` (>= 3 ``(x, y)`` points in metres) keeps the points inside it.

    The rows have no key, so a repeated part (a replay) is not collapsed: its points
    count twice, which shifts a heatmap's scale but hardly its shape.
    """
    lo, hi = _window(start, end)
    frame = (
        scan(store, "ground_points")
        .filter(pl.col("date").is_between(*_days(lo, hi)))
        .filter(pl.col("ts").is_between(lo, hi))
        .select("ts", "world_x", "world_y", "n_views")
        .sort("ts", "world_x", "world_y")
        .collect()
    )
    return _in_area(frame, area)


def density_alerts(
    store: StoreLike,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    zones: Sequence[str] | None = None,
    open_only: bool = False,
) -> pl.DataFrame:
    """Crowd alerts (:data:`~sightline.store.tables.DENSITY_ALERT_SCHEMA`), one row per
    ``alert_id``: its newest row, whose ``state`` is ``start`` while the alert is open and
    ``end`` once it has cleared. Sorted by ``t_start``.

    Kept: alerts whose span ``[t_start, t_end]`` (an open alert runs on) overlaps
    ``[start, end]``; a missing ``start`` or ``end`` leaves that side unbounded.
    ``open_only`` keeps the open ones. The whole table is read (it is small): an alert's
    rows lie in the partitions of the days they were written, which a window cannot bound.
    """
    ids = _ids(zones, "zones")
    lf = scan(store, "density_alerts").drop("date")
    if ids is not None:
        lf = lf.filter(pl.col("zone_id").is_in(ids))
    # newest row per alert; of two rows at one time, the end row is the later state
    lf = lf.sort("ts", pl.col("state") == "end").unique("alert_id", keep="last")
    if start is not None and end is not None:
        _window(start, end)  # checks the order
    if start is not None:
        lf = lf.filter(pl.col("t_end").is_null() | (pl.col("t_end") >= _utc(start, "start")))
    if end is not None:
        lf = lf.filter(pl.col("t_start") <= _utc(end, "end"))
    if open_only:
        lf = lf.filter(pl.col("state") == "start")
    return lf.sort("t_start", "alert_id").collect()
