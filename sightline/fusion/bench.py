"""``sightline bench fusion``: tracklets/s ingested and fused as the history grows.

A synthetic stream of tracklets (no video): people walk between ``cameras`` cameras of
a 200 x 200 m site (only to cameras they can reach on foot since their last visit),
each visit a tracklet with a few ground points and a person-specific embedding plus
noise; about ``concurrent`` people are in the site at any time. The fuser
ingests the stream; the rate over a window of ``window`` tracklets is measured each time
the history reaches a checkpoint (10k, 100k, ... tracklets), all in one run, so the
growth of cost with history shows directly (near-linear means a flat rate).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from sightline.config import FusionConfig
from sightline.fusion.calibration import AppearanceCalibration
from sightline.fusion.core import Fuser
from sightline.tracking.tracklets import Tracklet

__all__ = ["bench_fusion", "synthetic_tracklets"]

_DIM = 128
_POINTS = 10
_VISIT_S = 8.0
_WALK_MPS = 1.4  # how fast the synthetic people walk between cameras


def synthetic_tracklets(
    cameras: int = 20, concurrent: int = 200, seed: int = 0, dim: int = _DIM
) -> Iterator[Tracklet]:
    """An endless, deterministic stream of final tracklets in arrival order.

    Each person walks (at most ``_WALK_MPS``) from camera to camera: the next camera is
    one the person can reach in the time since the last visit, so the stream is
    physically possible, as a real site's is.
    """
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 200, size=(cameras, 2))
    apart = np.linalg.norm(centres[:, None] - centres[None, :], axis=2)
    # each person has an identity vector and visits cameras one after another
    people = [_person(rng, dim, cameras) for _ in range(concurrent)]
    clock = np.sort(rng.uniform(0, 60, size=concurrent))
    n = 0
    while True:
        i = int(np.argmin(clock))
        start = float(clock[i])
        vector, visits, last_camera, last_end = people[i]
        # room for the position noise and the walk within a visit
        reachable = np.flatnonzero(apart[last_camera] <= _WALK_MPS * (start - last_end) - 20)
        camera = int(rng.choice(reachable)) if len(reachable) else last_camera
        ts = start + np.linspace(0, _VISIT_S, _POINTS)
        xy = centres[camera] + rng.normal(0, 3, 2) + np.outer(np.linspace(0, 1, _POINTS), [8, 0])
        emb = vector + rng.normal(0, 0.05, dim)  # cosine to the person's vector ~0.85
        emb = (emb / np.linalg.norm(emb)).astype(np.float32)
        n += 1
        yield _tracklet(f"cam{camera:03d}-b-{n}", f"cam{camera:03d}", ts, xy, emb)
        visits += 1
        clock[i] = ts[-1] + rng.uniform(20, 120)
        if visits > 10:  # the person leaves; someone new arrives
            people[i] = _person(rng, dim, cameras)
        else:
            people[i] = (vector, visits, camera, float(ts[-1]))


def _person(rng: np.random.Generator, dim: int, cameras: int) -> tuple[np.ndarray, int, int, float]:
    """A new person: identity vector, visits so far, where and when last seen."""
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v), 0, int(rng.integers(cameras)), float("-inf")


def _tracklet(tid: str, camera: str, ts: np.ndarray, xy: np.ndarray, emb: np.ndarray) -> Tracklet:
    n = len(ts)
    return Tracklet(
        tracklet_id=tid,
        camera_id=camera,
        track_id=0,
        version=1,
        final=True,
        ts=ts,
        boxes=np.zeros((n, 4), np.float32),
        scores=np.ones(n, np.float32),
        foot_px=np.zeros((n, 2), np.float32),
        foot_world=xy.astype(np.float32),
        embeddings=emb[None],
        embedding_mean=emb,
        upper_colour="unknown",
        upper_colour_confidence=0.0,
        lower_colour="unknown",
        lower_colour_confidence=0.0,
        height_m=float("nan"),
        quality=1.0,
        thumbnail_jpeg=b"",
    )


def bench_fusion(
    checkpoints: Sequence[int] = (10_000, 100_000), window: int = 2_000, seed: int = 0
) -> dict[str, Any]:
    """Rate of ingest (tracklets/s) measured right after each history checkpoint, with
    the default fusion and, on the same stream in the same run, without re-clustering
    (the online decisions alone) as the baseline."""
    started = time.perf_counter()
    results, fuser = _rates(FusionConfig(max_gap_s=300), checkpoints, window, seed)
    baseline, _ = _rates(
        FusionConfig(max_gap_s=300, recluster_every_s=0), checkpoints, window, seed
    )
    first, last = results[0], results[-1]
    return {
        "benchmark": "fusion",
        "stream": "synthetic: 20 cameras, ~200 people in the site at once walking between "
        "cameras they can reach, 10 ground points per tracklet, 128-d embeddings",
        "window": window,
        "results": results,
        "without_reclustering": [
            {"history_tracklets": r["history_tracklets"], "tracklets_per_s": r["tracklets_per_s"]}
            for r in baseline
        ],
        "rate_ratio_last_over_first": round(last["tracklets_per_s"] / first["tracklets_per_s"], 3),
        "history_ratio_last_over_first": last["history_tracklets"] / first["history_tracklets"],
        "rate_ratio_with_over_without_reclustering": [
            round(r["tracklets_per_s"] / b["tracklets_per_s"], 3)
            for r, b in zip(results, baseline, strict=True)
        ],
        "identities": len(fuser.identities()),
        "events": fuser.counts(),
        "seconds_total": round(time.perf_counter() - started, 1),
        "target_tracklets_per_s_at_100k": 5000,
    }


def _rates(
    config: FusionConfig, checkpoints: Sequence[int], window: int, seed: int
) -> tuple[list[dict[str, Any]], Fuser]:
    """Ingest rate after each checkpoint for one fusion config; and the fuser at the end."""
    calibration = AppearanceCalibration(slope=14.0, intercept=-6.2, source="bench")
    fuser = Fuser(config, calibration)
    stream = synthetic_tracklets(seed=seed)
    results: list[dict[str, Any]] = []
    ingested = 0
    for checkpoint in sorted(checkpoints):
        while ingested < checkpoint:
            fuser.ingest([next(stream)])
            ingested += 1
        batch = [next(stream) for _ in range(window)]
        t0 = time.perf_counter()
        for tracklet in batch:
            fuser.ingest([tracklet])
        seconds = time.perf_counter() - t0
        ingested += window
        results.append(
            {
                "history_tracklets": checkpoint,
                "tracklets_per_s": round(window / seconds, 1),
                "active_people": len(fuser.people),
            }
        )
    return results, fuser
