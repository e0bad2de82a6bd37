"""``sightline bench density``: how fast the density queries answer over a day of counts.

A synthetic ``zone_counts`` table (one row per zone and second, as the coordinator writes
it: date partitions, parts of a few hours each, rows in time order) is written to a
scratch store, then each query is timed over the whole span. The baseline, measured in
the same run on the same files, is the straightforward polars way to get the same
buckets: ``unique`` on ``(zone_id, ts)``, ``sort`` and ``group_by_dynamic``.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from sightline.density.queries import (
    PARTIAL_VIEW_COVERAGE,
    ZONE_BUCKET_SCHEMA,
    _check_bucket,
    zone_counts,
    zone_summary,
)
from sightline.store.queries import scan
from sightline.store.tables import ZONE_COUNT_SCHEMA

__all__ = ["START", "TARGET_S", "baseline_zone_counts", "bench_density", "write_counts"]

TARGET_S = 1.0
"""The target: a day of per-second counts bucketed in under this many seconds (median)."""

START = datetime(2024, 5, 1, tzinfo=UTC)
"""Where the synthetic counts begin (a midnight: 24 hours fill one date partition)."""

_PART_S = 3 * 3600  # seconds of counts per part file: 8 parts a day, ~1 M rows each
_SEED = 20240501


# --------------------------------------------------------------------------- data


def _zone_traits(zones: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fixed per-zone traits: area (m²), busyness, camera overlap and view coverage."""
    coverage = np.ones(zones, np.float32)
    partial = rng.random(zones) < 0.2  # a fifth of the zones are partly out of view
    coverage[partial] = rng.uniform(0.8, 0.95, partial.sum())
    return {
        "area": rng.uniform(50.0, 400.0, zones),
        "level": rng.uniform(2.0, 30.0, zones),
        "overlap": rng.uniform(0.0, 0.5, zones),
        "cameras": rng.integers(1, 4, zones),
        "coverage": coverage,
    }


def _daily_profile(t_s: np.ndarray) -> np.ndarray:
    """A station's day: quiet at night, a morning and an evening rush (0.2..~1)."""
    hour = (t_s % 86_400) / 3600.0
    rush = np.exp(-(((hour - 8.5) / 1.5) ** 2)) + np.exp(-(((hour - 17.5) / 2.0) ** 2))
    return 0.2 + 0.8 * rush


def _counts_part(
    first_s: int,
    seconds: int,
    traits: dict[str, np.ndarray],
    names: pl.Series,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """``seconds`` seconds of counts from epoch second ``first_s``, every zone each second."""
    zones = len(names)
    t_s = np.repeat(first_s + np.arange(seconds, dtype=np.int64), zones)
    z = np.tile(np.arange(zones), seconds)
    count = rng.poisson(traits["level"][z] * _daily_profile(t_s)).astype(np.float32)
    coverage = traits["coverage"][z].copy()
    coverage[rng.random(len(z)) < 0.001] *= 0.7  # a passing obstruction
    return pl.DataFrame(
        {
            "zone_id": names.gather(z),
            "ts": t_s * 1_000_000,
            "count": count,
            "peak": count + rng.poisson(0.5, len(z)),
            "density_per_m2": count / traits["area"][z],
            "coverage": coverage,
            "naive_count": count * (1.0 + traits["overlap"][z]),
            "n_cameras": traits["cameras"][z],
            "frames": 10 * traits["cameras"][z],
        }
    ).cast(ZONE_COUNT_SCHEMA)  # type: ignore[arg-type]


def write_counts(root: Path, zones: int, seconds: int) -> int:
    """Write ``seconds`` seconds of per-second counts for ``zones`` zones from
    :data:`START` into ``root/zone_counts`` in the store's layout; returns the parts."""
    rng = np.random.default_rng(_SEED)
    traits = _zone_traits(zones, rng)
    names = pl.Series("zone_id", [f"zone-{i:04d}" for i in range(zones)])
    first = int(START.timestamp())
    parts: dict[str, int] = {}
    for offset in range(0, seconds, _PART_S):  # _PART_S divides a day: no part spans midnight
        day = (START + timedelta(seconds=offset)).date().isoformat()
        folder = root / "zone_counts" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        n = parts.get(day, 0)
        frame = _counts_part(first + offset, min(_PART_S, seconds - offset), traits, names, rng)
        frame.write_parquet(folder / f"part-{n:06d}.parquet")
        parts[day] = n + 1
    return sum(parts.values())


# --------------------------------------------------------------------------- timing


def baseline_zone_counts(root: Path, start: datetime, end: datetime, bucket_s: int) -> pl.DataFrame:
    """:func:`~sightline.density.queries.zone_counts` the straightforward way:
    ``unique``, ``sort`` and ``group_by_dynamic`` (which needs the sort)."""
    density = pl.col("density_per_m2")
    return (
        scan(root, "zone_counts")
        .filter(pl.col("date").is_between(start.date(), end.date()))
        .filter(pl.col("ts").is_between(start, end))
        .unique(["zone_id", "ts"], keep="last")
        .sort("zone_id", "ts")
        .group_by_dynamic("ts", every=f"{bucket_s}s", group_by="zone_id")
        .agg(
            pl.col("count").mean(),
            pl.col("peak").max(),
            density.mean(),
            density.max().alias("peak_density_per_m2"),
            pl.col("coverage").min(),
            pl.col("naive_count").mean(),
            pl.len().alias("seconds"),
        )
        .with_columns((pl.col("coverage") < PARTIAL_VIEW_COVERAGE).alias("partial_view"))
        .select(list(ZONE_BUCKET_SCHEMA))
        .cast(ZONE_BUCKET_SCHEMA)  # type: ignore[arg-type]
        .collect()
    )


def _timed(query: Callable[[], pl.DataFrame], repeats: int) -> tuple[dict[str, Any], pl.DataFrame]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = query()
        times.append(time.perf_counter() - started)
    figures = {
        "median_s": round(statistics.median(times), 4),
        "best_s": round(min(times), 4),
        "rows_returned": result.height,
    }
    return figures, result


def _rows_in_window(root: Path, start: datetime, end: datetime) -> int:
    window = pl.col("ts").is_between(start, end)
    return scan(root, "zone_counts").filter(window).select(pl.len()).collect().item()


def _agrees(ours: pl.DataFrame, baseline: pl.DataFrame) -> bool:
    try:
        assert_frame_equal(ours, baseline, check_exact=False, rel_tol=1e-4)
    except AssertionError:
        return False
    return True


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextmanager
def _scratch(root: Path | None) -> Iterator[Path]:
    if root is not None:
        root = Path(root)
        if (root / "zone_counts").exists():
            raise ValueError(f"bench root {root} already holds a zone_counts table")
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="sightline-bench-density-") as tmp:
        yield Path(tmp)


def _check_size(zones: int, hours: float, repeats: int) -> int:
    seconds = round(hours * 3600)
    if zones < 1:
        raise ValueError(f"zones must be >= 1, got {zones}")
    if seconds < 1:
        raise ValueError(f"hours must make at least one second, got {hours}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return seconds


def bench_density(
    zones: int = 100,
    hours: float = 24,
    bucket_s: int = 60,
    repeats: int = 5,
    root: Path | None = None,
) -> dict[str, Any]:
    """Time the density queries over ``hours`` hours of per-second counts of ``zones``
    zones (8.64 M rows at the defaults); returns the figures (it prints nothing).

    Timed, each ``repeats`` times over the whole span: ``zone_counts`` at ``bucket_s``,
    1 s and 3600 s, ``zone_summary``, and the baseline at ``bucket_s``. Keys:
    ``queries`` (per query: ``median_s``, ``best_s``, ``rows_scanned``,
    ``rows_returned``), ``baseline_over_ours`` (ratio of the medians at ``bucket_s``),
    ``baseline_agrees`` (both gave the same buckets), ``target``, ``passed`` (the median
    at ``bucket_s`` beat :data:`TARGET_S`), ``generate_s`` (writing the data, not part of
    any query), ``rows``, ``parts``, ``polars``, ``cpu_count``, ``peak_rss_mib``.
    The data go to a temporary folder removed afterwards, or to ``root`` (kept; it must
    not hold a ``zone_counts`` table yet).
    """
    bucket_s = _check_bucket(bucket_s)
    seconds = _check_size(zones, hours, repeats)
    start, end = START, START + timedelta(seconds=seconds - 1)  # closed: the last second
    with _scratch(root) as where:
        started = time.perf_counter()
        parts = write_counts(where, zones, seconds)
        generate_s = time.perf_counter() - started
        queries: dict[str, Callable[[], pl.DataFrame]] = {
            f"zone_counts_{b}s": lambda b=b: zone_counts(where, start, end, bucket_s=b)
            for b in sorted({bucket_s, 1, 3600})
        }
        queries["zone_summary"] = lambda: zone_summary(where, start, end)
        queries[f"baseline_group_by_dynamic_{bucket_s}s"] = lambda: baseline_zone_counts(
            where, start, end, bucket_s
        )
        scanned = _rows_in_window(where, start, end)
        figures, results = {}, {}
        for name, query in queries.items():
            figures[name], results[name] = _timed(query, repeats)
            figures[name]["rows_scanned"] = scanned
    ours = figures[f"zone_counts_{bucket_s}s"]["median_s"]
    baseline_name = f"baseline_group_by_dynamic_{bucket_s}s"
    return {
        "benchmark": "density",
        "zones": zones,
        "hours": hours,
        "bucket_s": bucket_s,
        "repeats": repeats,
        "rows": zones * seconds,
        "parts": parts,
        "generate_s": round(generate_s, 2),
        "queries": figures,
        "baseline_over_ours": round(figures[baseline_name]["median_s"] / max(ours, 1e-9), 2),
        "baseline_agrees": _agrees(results[f"zone_counts_{bucket_s}s"], results[baseline_name]),
        "target": f"count query < {TARGET_S:g} s",
        "passed": ours < TARGET_S,
        "polars": pl.__version__,
        "cpu_count": os.cpu_count(),
        "peak_rss_mib": _peak_rss_mib(),
    }
