"""Tracker speed: our :class:`ByteTracker` against Roboflow ``trackers``' ByteTrack.

Both trackers get the same deterministic synthetic frames in the same run (absolute
times on a shared machine are noisy, the ratio much less so): people moving with
constant velocity plus jitter, some crossing each other, a share of low scores, dropped
boxes, and people entering and leaving during the sequence. Inputs are converted to each
tracker's own detection type before timing, so only ``update`` is timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sightline.models.core import Detections
from sightline.tracking.core import ByteTracker

__all__ = ["bench_tracking", "synthetic_scene"]

_FPS = 10.0
_IMAGE = (1920.0, 1080.0)


def synthetic_scene(objects: int, frames: int, seed: int = 0) -> list[Detections]:
    """Deterministic detections of ``frames`` frames with about ``objects`` people in view.

    Each person walks at constant velocity (half of them horizontally in opposite
    directions, so tracks cross) with 2 px jitter; 15 % of boxes score low (0.15-0.5),
    5 % are missing; a fifth of the people enter or leave part-way through.
    """
    rng = np.random.default_rng(seed)
    w, h = _IMAGE
    height = rng.uniform(60, 200, objects)
    start = np.stack([rng.uniform(0, w, objects), rng.uniform(0, h - height)], axis=1)
    velocity = rng.normal(0, 3, (objects, 2))
    crossing = rng.random(objects) < 0.5
    velocity[crossing, 0] = np.where(start[crossing, 0] < w / 2, 6.0, -6.0)
    enter = np.where(rng.random(objects) < 0.1, rng.integers(0, frames, objects), 0)
    leave = np.where(rng.random(objects) < 0.1, rng.integers(0, frames, objects), frames)
    out = []
    for f in range(frames):
        here = (f >= enter) & (f < leave) & (rng.random(objects) >= 0.05)
        xy = start[here] + velocity[here] * f + rng.normal(0, 2, (int(here.sum()), 2))
        hh = height[here]
        boxes = np.column_stack([xy, xy[:, 0] + 0.4 * hh, xy[:, 1] + hh])
        scores = np.where(
            rng.random(len(hh)) < 0.15,
            rng.uniform(0.15, 0.5, len(hh)),
            rng.uniform(0.6, 0.95, len(hh)),
        )
        out.append(Detections.from_arrays(boxes, scores))
    return out


def _best_of(run: Callable[[], None], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def _time_pair(scene: list[Detections], repeats: int) -> dict[str, float]:
    import supervision as sv
    from trackers import ByteTrackTracker

    from sightline.evaluation.tracking import peer_settings

    settings = peer_settings(None, _FPS)
    peer_input = [sv.Detections(xyxy=d.xyxy, confidence=d.scores) for d in scene]

    def ours() -> None:
        tracker = ByteTracker(fps=_FPS)
        for i, dets in enumerate(scene):
            tracker.update(dets, i / _FPS)

    def peer() -> None:
        tracker = ByteTrackTracker(**settings)
        for i, dets in enumerate(peer_input):
            tracker.update(dets, timestamp=i / _FPS)

    ours()  # warm-up: imports, numpy/scipy first-call costs
    peer()
    ours_best, ours_median = _best_of(ours, repeats)
    peer_best, peer_median = _best_of(peer, repeats)
    n = len(scene)
    return {
        "ours_updates_per_s": round(n / ours_best, 1),
        "peer_updates_per_s": round(n / peer_best, 1),
        "ours_over_peer": round(peer_best / ours_best, 3),
        "ours_median_ms_per_update": round(1000 * ours_median / n, 3),
        "peer_median_ms_per_update": round(1000 * peer_median / n, 3),
    }


def bench_tracking(
    objects: Sequence[int] = (20, 100), frames: int = 300, seed: int = 0, repeats: int = 3
) -> dict[str, Any]:
    """Updates per second of ours and of the peer ByteTrack, per number of people in view.

    For each count in ``objects``: one warm-up pass of each tracker, then ``repeats``
    timed passes over the same ``frames`` frames with a fresh tracker each; the best pass
    gives updates/s (``ours_over_peer`` > 1 means ours is faster), medians are reported
    too. Ours runs with :class:`TrackerConfig` defaults, the peer with the same mapped
    settings as ``sightline eval tracking`` (:func:`~sightline.evaluation.tracking.peer_settings`).
    """
    results = []
    for count in objects:
        scene = synthetic_scene(count, frames, seed)
        boxes = sum(len(d) for d in scene)
        results.append(
            {
                "objects": count,
                "frames": frames,
                "mean_detections_per_frame": round(boxes / max(frames, 1), 1),
                **_time_pair(scene, repeats),
            }
        )
    return {
        "benchmark": "tracking",
        "peer": "trackers.ByteTrackTracker with peer_settings(TrackerConfig(), fps=10)",
        "timer": f"time.perf_counter, 1 warm-up, best of {repeats}",
        "seed": seed,
        "results": results,
    }
