"""Geometric evidence between two tracklets: shared views, reachability, transit times.

A :class:`TrackletView` is what fusion keeps of a tracklet: times, ground positions, its
mean embedding and estimated height (no pixels). Two views either share time (then their ground
positions say "same person" when close, "two people" when far) or follow each other
(then the later must be reachable from the earlier at walking speed, and, for linked
cameras, within the transit time plus a slack for the time trackers lose people).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

import numpy as np

from sightline.config import FusionConfig, TopologyConfig
from sightline.tracking.tracklets import Tracklet

__all__ = ["Relation", "TrackletView", "TransitTable", "relate", "relation_matrix"]

_ENDS = 5  # frames averaged for a tracklet's first and last position


@dataclass(frozen=True)
class TrackletView:
    """Fusion's summary of one tracklet version."""

    tracklet_id: str
    camera_id: str
    version: int
    ts: np.ndarray  # (N,) epoch seconds
    xy: np.ndarray  # (N, 2) ground metres
    embedding: np.ndarray  # (D,) L2-normalised
    height_m: float = float("nan")  # estimated height; nan when unknown

    @classmethod
    def of(cls, tracklet: Tracklet) -> TrackletView:
        """From a tracklet; frames without a finite ground point are left out."""
        ok = np.isfinite(tracklet.foot_world).all(axis=1)
        return cls(
            tracklet.tracklet_id,
            tracklet.camera_id,
            tracklet.version,
            tracklet.ts[ok],
            tracklet.foot_world[ok].astype(np.float64),
            tracklet.embedding_mean.astype(np.float32),
            float(tracklet.height_m),
        )

    @cached_property
    def t_start(self) -> float:
        """First observation (epoch s)."""
        return float(self.ts[0]) if len(self.ts) else 0.0

    @cached_property
    def t_end(self) -> float:
        """Last observation (epoch s)."""
        return float(self.ts[-1]) if len(self.ts) else 0.0

    @cached_property
    def start_xy(self) -> np.ndarray:
        """Where the person was first seen (median of the first frames)."""
        return _median_rows(self.xy[:_ENDS])

    @cached_property
    def end_xy(self) -> np.ndarray:
        """Where the person was last seen (median of the last frames)."""
        return _median_rows(self.xy[-_ENDS:])

    def positions_at(self, times: np.ndarray) -> np.ndarray:
        """Ground positions interpolated at ``times`` (within the span)."""
        return np.stack(
            [np.interp(times, self.ts, self.xy[:, 0]), np.interp(times, self.ts, self.xy[:, 1])],
            axis=1,
        )


def _median_rows(points: np.ndarray) -> np.ndarray:
    """Per-column (upper) median of a few rows; np.median's overhead dominates here."""
    return np.sort(points, axis=0)[len(points) // 2]


class Relation(Enum):
    """What geometry says about two tracklets being one person."""

    SAME = "same"  # seen together at one place by two cameras
    CONFLICT = "conflict"  # impossible for one person
    POSSIBLE = "possible"  # geometry allows it; appearance decides
    UNKNOWN = "unknown"  # not enough shared time to tell either way


class TransitTable:
    """Camera-to-camera transit limits from the configured topology, and learned transits.

    Only a configured link limits a transition (the operator knows the site), with
    ``transit_slack_s`` on top for the time the trackers lost the person. Transit
    times of matches are recorded with :meth:`observe` and reported by :meth:`learned`;
    they are not used as a veto, because a learned typical time says little about how
    long one person may linger between two views (walking speed already rules out
    transitions that are too fast).
    """

    def __init__(self, topology: TopologyConfig | None) -> None:
        self.topology = topology or TopologyConfig()
        self._configured: dict[tuple[str, str], float] = {}
        for link in self.topology.links:
            limit = link.max_transit_s or 3 * link.typical_transit_s
            a, b = link.cameras
            self._configured[(a, b)] = limit
            if link.bidirectional:
                self._configured[(b, a)] = limit
        self._learned: dict[tuple[str, str], list[float]] = {}

    def observe(self, from_camera: str, to_camera: str, seconds: float) -> None:
        """Record the transit of a confident match."""
        if from_camera != to_camera and seconds >= 0:
            self._learned.setdefault((from_camera, to_camera), []).append(seconds)

    def max_transit(self, from_camera: str, to_camera: str) -> float | None:
        """The longest plausible transit of a configured link, or None."""
        return self._configured.get((from_camera, to_camera))

    def learned(self) -> dict[str, dict[str, float]]:
        """Learned transit statistics per camera pair ``"a->b"``: samples, median, p90."""
        return {
            f"{a}->{b}": {
                "samples": len(v),
                "median_s": round(float(np.median(v)), 2),
                "p90_s": round(float(np.percentile(v, 90)), 2),
            }
            for (a, b), v in sorted(self._learned.items())
        }


def _shared_time(
    a: TrackletView, b: TrackletView, start: float, end: float, config: FusionConfig
) -> Relation:
    if a.camera_id == b.camera_id:
        return Relation.CONFLICT  # one camera, two tracks at once: two people
    times = a.ts[(a.ts >= start) & (a.ts <= end)]
    if len(times) == 0:
        return Relation.UNKNOWN
    diff = a.positions_at(times) - b.positions_at(times)
    gaps = np.sort(np.sqrt(diff[:, 0] ** 2 + diff[:, 1] ** 2))
    distance = float(gaps[len(gaps) // 2])  # the median; np.median costs more here
    if distance > config.conflict_distance_m:
        return Relation.CONFLICT
    if end - start >= config.min_overlap_s and distance <= config.overlap_radius_m:
        return Relation.SAME
    return Relation.UNKNOWN


def _one_after_the_other(
    a: TrackletView, b: TrackletView, config: FusionConfig, transits: TransitTable
) -> Relation:
    first, second = (a, b) if a.t_end <= b.t_start else (b, a)
    gap = second.t_start - first.t_end
    dx, dy = second.start_xy - first.end_xy
    walked = float(np.hypot(dx, dy))
    if walked > transits.topology.max_walking_speed_mps * gap + config.position_slack_m:
        return Relation.CONFLICT
    limit = transits.max_transit(first.camera_id, second.camera_id)
    if limit is not None and gap > limit + config.transit_slack_s:
        return Relation.CONFLICT
    return Relation.POSSIBLE


def relate(
    a: TrackletView, b: TrackletView, config: FusionConfig, transits: TransitTable
) -> Relation:
    """Whether ``a`` and ``b`` can be, or must be, the same person."""
    start, end = max(a.t_start, b.t_start), min(a.t_end, b.t_end)
    # one shared frame is shared time too: one camera cannot see one person twice in it
    if end > start or (end == start and a.camera_id == b.camera_id):
        return _shared_time(a, b, start, end, config)
    return _one_after_the_other(a, b, config, transits)


def relation_matrix(
    views: list[TrackletView],
    config: FusionConfig,
    transits: TransitTable,
    needed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (N, N) matrices ``(conflict, same)``: what :func:`relate` says of each pair.

    Pairs that follow each other (most of them) are judged in bulk from the arrays of
    start and end times and positions; only pairs sharing time across two cameras need
    :func:`relate`'s frame-by-frame comparison, and only those where the boolean
    ``needed`` matrix (if given) is set get it; the others are neither conflict nor same.
    """
    n = len(views)
    conflict = np.zeros((n, n), bool)
    same = np.zeros((n, n), bool)
    if n < 2:
        return conflict, same
    t0 = np.array([v.t_start for v in views])
    t1 = np.array([v.t_end for v in views])
    start = np.stack([v.start_xy for v in views])
    end = np.stack([v.end_xy for v in views])
    cameras = sorted({v.camera_id for v in views})
    index = {camera: i for i, camera in enumerate(cameras)}
    cam = np.array([index[v.camera_id] for v in views])
    # row i before column j: gap and walk from i's end to j's start
    gap = t0[None, :] - t1[:, None]
    walked = np.hypot(start[None, :, 0] - end[:, None, 0], start[None, :, 1] - end[:, None, 1])
    speed = transits.topology.max_walking_speed_mps
    limit = np.full((len(cameras), len(cameras)), np.inf)
    for i, a in enumerate(cameras):
        for j, b in enumerate(cameras):
            configured = transits.max_transit(a, b)
            if configured is not None:
                limit[i, j] = configured + config.transit_slack_s
    before = gap >= 0
    too_far = (walked > speed * gap + config.position_slack_m) | (gap > limit[cam][:, cam])
    follows = before & too_far
    conflict |= follows | follows.T
    # shared time: relate() compares positions frame by frame (one shared frame counts
    # within one camera)
    shared = np.minimum(t1[:, None], t1[None, :]) - np.maximum(t0[:, None], t0[None, :])
    same_camera = cam[:, None] == cam[None, :]
    overlapping = (shared > 0) | ((shared == 0) & same_camera)
    np.fill_diagonal(overlapping, False)
    conflict |= overlapping & same_camera
    compare = overlapping & ~same_camera if needed is None else overlapping & ~same_camera & needed
    for i, j in zip(*np.nonzero(np.triu(compare)), strict=True):
        relation = relate(views[i], views[j], config, transits)
        conflict[i, j] = conflict[j, i] = relation is Relation.CONFLICT
        same[i, j] = same[j, i] = relation is Relation.SAME
    return conflict, same
