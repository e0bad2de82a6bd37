"""Counting people per zone across overlapping cameras, one second at a time.

Every camera reports each frame's tracked people as ground points
(:class:`GroundFrame`). :class:`DensityCounter` looks at the site at a fixed rate (the
fastest camera's fps): at each moment it takes every camera's latest frame that is not
older than one frame interval, merges the cameras' points so a person seen by two
cameras counts once (:func:`merge_views`), and counts the merged points inside each
zone. The moments of one second give that second's row: the mean and the peak count,
density per m2, the coverage of the zone by the cameras that reported (see
:mod:`sightline.density.zones`) and the naive count (every camera's own count summed),
which shows what deduplication removed.

A second is final once every camera has reported past its end; a camera that has gone
quiet for ``camera_timeout_s`` (wall time) or has finished stops holding seconds back.
Frames that arrive for a second already final are counted as late and dropped.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment

from sightline import geometry
from sightline.config import SiteConfig
from sightline.density.zones import ZoneCoverage
from sightline.store.tables import CAMERA_COUNT_SCHEMA, GROUND_POINT_SCHEMA, ZONE_COUNT_SCHEMA

__all__ = [
    "DensityCounter",
    "GroundFrame",
    "MergedViews",
    "SecondCounts",
    "merge_views",
    "rows_frames",
]

IdentityFn = Callable[[str], str | None]
_NO_MATCH = 1e6


@dataclass(frozen=True)
class GroundFrame:
    """One camera frame's tracked people: ground points ``xy`` (N, 2) in metres at
    ``ts`` (epoch seconds), with each point's tracklet id when known."""

    camera_id: str
    ts: float
    xy: np.ndarray
    tracklet_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float32).reshape(-1, 2)
        object.__setattr__(self, "xy", xy)
        if self.tracklet_ids and len(self.tracklet_ids) != len(xy):
            raise ValueError(
                f"camera {self.camera_id}: {len(self.tracklet_ids)} tracklet ids for "
                f"{len(xy)} points"
            )


@dataclass(frozen=True)
class MergedViews:
    """People at one moment, each once: ``points`` (M, 2) and how many cameras saw each."""

    points: np.ndarray
    n_views: np.ndarray


def merge_views(
    frames: Iterable[GroundFrame], radius_m: float, identity: IdentityFn | None = None
) -> MergedViews:
    """Merge several cameras' points of one moment into people.

    Cameras are taken one at a time (in id order); each camera's points are matched one
    to one (scipy's assignment, cost = ground distance) to the people found so far,
    within ``radius_m``. Two points of one camera are never merged: the camera saw two
    people. Points whose tracklets fusion already put in one global identity
    (``identity``: tracklet id -> global id) match at any distance up to three radii.
    """
    centres: list[np.ndarray] = []
    views: list[int] = []
    owners: list[set[str]] = []
    for frame in sorted(frames, key=lambda f: f.camera_id):
        pts = frame.xy[np.isfinite(frame.xy).all(axis=1)]
        ids = _identities(frame, identity)
        matched = _match(pts, ids, centres, owners, radius_m) if centres else {}
        for i, point in enumerate(pts):
            j = matched.get(i)
            if j is None:
                centres.append(point.astype(np.float64))
                views.append(1)
                owners.append({ids[i]} if ids[i] else set())
                continue
            centres[j] = (centres[j] * views[j] + point) / (views[j] + 1)
            views[j] += 1
            if ids[i]:
                owners[j].add(ids[i])
    if not centres:
        return MergedViews(np.zeros((0, 2), np.float32), np.zeros(0, np.int8))
    return MergedViews(np.asarray(centres, np.float32), np.asarray(views, np.int8))


def _match(
    pts: np.ndarray,
    ids: list[str | None],
    centres: list[np.ndarray],
    owners: list[set[str]],
    radius_m: float,
) -> dict[int, int]:
    """Point index -> person index, one to one, within the radius (or same identity)."""
    cost = np.linalg.norm(pts[:, None, :] - np.asarray(centres)[None, :, :], axis=2)
    gate = np.where(cost <= radius_m, cost, _NO_MATCH)
    for i, gid in enumerate(ids):
        if gid is not None:
            for j, owner in enumerate(owners):
                if gid in owner and cost[i, j] <= 3 * radius_m:
                    gate[i, j] = 0.0
    rows, cols = linear_sum_assignment(gate)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if gate[r, c] < _NO_MATCH}


def _identities(frame: GroundFrame, identity: IdentityFn | None) -> list[str | None]:
    finite = np.isfinite(frame.xy).all(axis=1)
    if identity is None or not frame.tracklet_ids:
        return [None] * int(finite.sum())
    return [identity(t) for t, ok in zip(frame.tracklet_ids, finite, strict=True) if ok]


@dataclass
class SecondCounts:
    """What one final second produced: store rows and each zone's (density, count)."""

    ts: float
    zone_rows: list[dict]
    camera_rows: list[dict]
    point_rows: list[dict]
    densities: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class _Camera:
    fps: float
    ts: list[float] = field(default_factory=list)
    frames: list[GroundFrame] = field(default_factory=list)
    last_ts: float = -math.inf
    heard_at: float | None = None
    finished: bool = False


class DensityCounter:
    """Per-second zone counts of a site from its cameras' ground frames (module docstring).

    ``identity`` (tracklet id -> global id, e.g. the fuser's) lets fusion's verdict join
    two views a little further apart than ``dedup_radius_m``. ``clock`` is the wall clock
    used for ``camera_timeout_s`` (injectable for tests).
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        coverage: ZoneCoverage | None = None,
        identity: IdentityFn | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site = site
        self.config = site.density
        self.coverage = coverage or ZoneCoverage.for_site(site)
        self.identity = identity
        self._clock = clock
        self._started = clock()
        self._cameras = {c.id: _Camera(c.fps) for c in site.cameras}
        self._step = 1.0 / max(c.fps for c in self._cameras.values())
        self._areas = {z.id: z.area_m2 for z in site.zones}
        self._polygons = {z.id: np.asarray(z.polygon) for z in site.zones}
        self._next_second: int | None = None  # every second before it is final
        self.stats = {"frames": 0, "late_frames": 0, "seconds": 0}

    # ------------------------------------------------------------------ input

    def add(self, frames: Iterable[GroundFrame]) -> None:
        """Take frames (any cameras, any order); frames of final seconds count as late."""
        now = self._clock()
        for frame in frames:
            cam = self._cameras.get(frame.camera_id)
            if cam is None:
                raise ValueError(
                    f"ground frame from unknown camera {frame.camera_id!r}; "
                    f"known: {sorted(self._cameras)}"
                )
            cam.heard_at = now
            if self._next_second is not None and frame.ts < self._next_second:
                self.stats["late_frames"] += 1
                continue
            at = bisect.bisect_right(cam.ts, frame.ts)
            cam.ts.insert(at, frame.ts)
            cam.frames.insert(at, frame)
            cam.last_ts = max(cam.last_ts, frame.ts)
            self.stats["frames"] += 1

    def finish_camera(self, camera_id: str) -> None:
        """``camera_id`` will send no more frames (its stream ended)."""
        if camera_id in self._cameras:
            self._cameras[camera_id].finished = True

    def set_cameras(self, site: SiteConfig) -> None:
        """The site's cameras changed at run time: count new ones (their coverage of the
        zones is computed now); cameras no longer in ``site`` stop holding counts back."""
        current = {c.id for c in site.cameras}
        for camera in site.cameras:
            self._cameras.setdefault(camera.id, _Camera(camera.fps))
        for camera_id, cam in self._cameras.items():
            if camera_id not in current:
                cam.finished = True
        self.site = site
        self.coverage = ZoneCoverage.for_site(site)
        self._step = 1.0 / max(c.fps for c in self._cameras.values())

    # ------------------------------------------------------------------ output

    def watermark(self) -> float:
        """Stream time up to which every camera that still counts has reported."""
        now = self._clock()
        waiting = []
        for cam in self._cameras.values():
            if cam.finished:
                continue
            heard = cam.heard_at if cam.heard_at is not None else self._started
            if now - heard <= self.config.camera_timeout_s:
                waiting.append(cam.last_ts)
        if waiting:
            return min(waiting)
        return max(c.last_ts for c in self._cameras.values())

    def advance(self, *, final: bool = False) -> list[SecondCounts]:
        """Count every second that is now final (with ``final``, every second held)."""
        newest = max(c.last_ts for c in self._cameras.values())
        if not math.isfinite(newest):
            return []
        if self._next_second is None:
            first = min(c.ts[0] for c in self._cameras.values() if c.ts)
            self._next_second = math.floor(first)
        limit = newest + 1.0 if final else self.watermark()
        out = []
        while self._next_second + 1.0 <= limit + 1e-9:
            out.append(self._count_second(self._next_second))
            self._next_second += 1
            self._forget_before(self._next_second - 1.0)
        self.stats["seconds"] += len(out)
        return out

    # ------------------------------------------------------------------ internals

    def _latest(self, cam: _Camera, t: float) -> GroundFrame | None:
        at = bisect.bisect_right(cam.ts, t + self._step / 2) - 1
        if at < 0 or t - cam.ts[at] > 1.0 / cam.fps + self._step / 2:
            return None
        return cam.frames[at]

    def _count_second(self, second: int) -> SecondCounts:
        zones = list(self._polygons)
        slots = max(1, round(1.0 / self._step))
        counts = {z: [] for z in zones}
        naive = {z: [] for z in zones}
        cover = {z: [] for z in zones}
        reporting: set[str] = set()
        points_rows: list[dict] = []
        for k in range(slots):
            t = second + k * self._step
            frames = [
                f for cam in self._cameras.values() if (f := self._latest(cam, t)) is not None
            ]
            if not frames:
                continue
            present = {f.camera_id for f in frames}
            reporting |= present
            merged = merge_views(frames, self.config.dedup_radius_m, self.identity)
            for z in zones:
                poly = self._polygons[z]
                inside = _inside(merged.points, poly)
                counts[z].append(int(inside.sum()))
                naive[z].append(sum(int(_inside(f.xy, poly).sum()) for f in frames))
                cover[z].append(self.coverage.coverage(z, present))
            if k == 0:
                when = _utc(t)
                points_rows = [
                    {"ts": when, "world_x": float(x), "world_y": float(y), "n_views": int(v)}
                    for (x, y), v in zip(merged.points, merged.n_views, strict=True)
                ]
        when = _utc(second)
        zone_rows, densities = [], {}
        for z in zones:
            frames_counted = len(counts[z])
            mean = float(np.mean(counts[z])) if frames_counted else None
            density = None if mean is None else mean / self._areas[z]
            if mean is not None and density is not None:
                densities[z] = (density, mean)
            zone_rows.append(
                {
                    "zone_id": z,
                    "ts": when,
                    "count": mean,
                    "peak": max(counts[z]) if frames_counted else None,
                    "density_per_m2": density,
                    "coverage": float(np.mean(cover[z])) if frames_counted else 0.0,
                    "naive_count": float(np.mean(naive[z])) if frames_counted else None,
                    "n_cameras": len(self.coverage.cameras_of(z) & reporting),
                    "frames": frames_counted,
                }
            )
        camera_rows = []
        for camera_id, cam in self._cameras.items():
            lo = bisect.bisect_left(cam.ts, second - 1e-6)
            hi = bisect.bisect_left(cam.ts, second + 1.0 - 1e-6)
            sizes = [len(f.xy) for f in cam.frames[lo:hi]]
            if sizes:
                camera_rows.append(
                    {
                        "camera_id": camera_id,
                        "ts": when,
                        "count": float(np.mean(sizes)),
                        "peak": max(sizes),
                        "frames": len(sizes),
                    }
                )
        return SecondCounts(float(second), zone_rows, camera_rows, points_rows, densities)

    def _forget_before(self, t: float) -> None:
        # keep one frame before t: the next second's first moment may still hold it
        for cam in self._cameras.values():
            drop = max(0, bisect.bisect_left(cam.ts, t) - 1)
            if drop:
                del cam.ts[:drop]
                del cam.frames[:drop]


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return geometry.point_in_polygon(points, polygon)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def rows_frames(seconds: list[SecondCounts]) -> dict[str, pl.DataFrame]:
    """The store tables' rows of counted seconds: ``zone_counts``, ``camera_counts``,
    ``ground_points`` (each in its store schema)."""
    return {
        "zone_counts": pl.DataFrame(
            [r for s in seconds for r in s.zone_rows], schema=ZONE_COUNT_SCHEMA
        ),
        "camera_counts": pl.DataFrame(
            [r for s in seconds for r in s.camera_rows], schema=CAMERA_COUNT_SCHEMA
        ),
        "ground_points": pl.DataFrame(
            [r for s in seconds for r in s.point_rows], schema=GROUND_POINT_SCHEMA
        ),
    }
