"""``sightline bench serve``: what dynamic batching buys the Detector deployment.

Real 640x360 frames (decoded with PyAV from a rendered synthetic site) are sent by several
concurrent "camera" actors, each keeping a few requests in flight, to ONE Detector replica
running the built-in model. The run is repeated for ``max_batch_size`` 1, 4 and 16 and
reports throughput, per-frame latency (p50/p99, as the cameras see it) and the batch sizes
the replica actually formed. Baseline, measured in the same run: the same model called
directly in this process (no Ray) at batch 1 and 16, which bounds what serving can reach.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import ray
import torch
from ray import serve

from serve.deployments import DETECTOR_DEPLOYMENT, build_detector_app
from sightline.config import BuiltinDetectorConfig, ServingConfig
from sightline.models import build_detector
from sightline.sim import simulate

__all__ = ["bench_serve", "decode_frames"]

_APP = "sightline-bench-detector"


def _progress(message: str) -> None:
    print(f"[bench serve] {message}", file=sys.stderr, flush=True)


def decode_frames(video: Path, limit: int) -> list[np.ndarray]:
    """The first ``limit`` frames of ``video`` as ``(H, W, 3) uint8`` RGB arrays."""
    frames: list[np.ndarray] = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= limit:
                break
    if not frames:
        raise ValueError(f"{video}: no frames decoded")
    return frames


def _site_frames(site_dir: Path | None, preset: str, seed: int, limit: int) -> list[np.ndarray]:
    """Frames of every camera video of ``site_dir``, rendering a site first if it has none."""
    if site_dir is not None and sorted(site_dir.glob("videos/*.mp4")):
        videos = sorted(site_dir.glob("videos/*.mp4"))
        return [f for v in videos for f in decode_frames(v, limit)]
    with tempfile.TemporaryDirectory(prefix="sightline-bench-serve-") as out:
        _progress(f"rendering the {preset!r} site (seed {seed})")
        simulate(preset, seed, out, show_progress=False)
        videos = sorted(Path(out).glob("videos/*.mp4"))
        return [f for v in videos for f in decode_frames(v, limit)]


@ray.remote(num_cpus=0)
class _Camera:
    """Sends frames to the Detector as fast as it answers, ``in_flight`` at a time."""

    def __init__(self, handle: Any, frames: list[np.ndarray], offset: int) -> None:
        self.handle = handle
        self.frames = frames
        self.offset = offset

    async def run(self, duration_s: float, in_flight: int) -> dict[str, Any]:
        latencies: list[float] = []
        stop_at = time.perf_counter() + duration_s

        async def sender(k: int) -> None:
            i = self.offset + k
            while time.perf_counter() < stop_at:
                frame = self.frames[i % len(self.frames)]
                i += in_flight
                sent = time.perf_counter()
                await self.handle.detect.remote(frame)
                latencies.append(time.perf_counter() - sent)

        start = time.time()
        await asyncio.gather(*(sender(k) for k in range(in_flight)))
        return {"latencies_s": latencies, "start": start, "end": time.time()}


def _drive(
    handle: Any, frames_ref: Any, cameras: int, in_flight: int, duration_s: float
) -> dict[str, Any]:
    """Run the camera actors against ``handle``; throughput and latency percentiles."""
    actors = [_Camera.remote(handle, frames_ref, 7 * k) for k in range(cameras)]
    try:
        # A short warm-up: actor start, the handle's first routing, torch's first call.
        ray.get([a.run.remote(0.5, 1) for a in actors])
        handle.reset_stats.remote().result(timeout_s=60)
        results = ray.get([a.run.remote(duration_s, in_flight) for a in actors])
    finally:
        for actor in actors:
            ray.kill(actor)
    latencies = np.array([x for r in results for x in r["latencies_s"]])
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "frames": int(latencies.size),
        "wall_s": round(wall, 2),
        "frames_per_second": round(latencies.size / wall, 1),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)) * 1000, 1),
    }


def _serve_run(
    config: BuiltinDetectorConfig, frames_ref: Any, cameras: int, in_flight: int, duration_s: float
) -> dict[str, Any]:
    """Deploy one Detector replica with ``config``, drive it, and read its batch stats."""
    handle = serve.run(build_detector_app(config), name=_APP, route_prefix=None)
    try:
        figures = _drive(handle, frames_ref, cameras, in_flight, duration_s)
        stats = handle.stats.remote().result(timeout_s=60)
    finally:
        serve.delete(_APP)
    return {
        "max_batch_size": config.serving.max_batch_size,
        **figures,
        "mean_batch_size": stats["mean_batch_size"],
        "max_batch_size_seen": stats["max_batch_size_seen"],
        "batch_size_histogram": stats["batch_size_histogram"],
        "replica_busy_fraction": round(stats["busy_s"] / max(figures["wall_s"], 1e-9), 2),
        "replica_model_ms_per_frame": round(1000 * stats["model_s"] / max(stats["items"], 1), 2),
        "replica_device": stats["device"],
        "replica_torch_threads": stats["torch_threads"],
    }


def _direct_baseline(
    frames: list[np.ndarray], batch_sizes: Sequence[int], threads: int, seconds: float = 2.0
) -> dict[str, float]:
    """Frames/s of the built-in detector called in this process, per batch size."""
    backend = build_detector(BuiltinDetectorConfig(), prefer_gpu=False)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)  # as many threads as the replica gets
    out: dict[str, float] = {}
    try:
        for size in batch_sizes:
            batch = np.stack([frames[i % len(frames)] for i in range(size)])
            backend.detect(batch)  # warm-up
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                backend.detect(batch)
                done += size
            out[f"batch_{size}_frames_per_second"] = round(
                done / (time.perf_counter() - started), 1
            )
    finally:
        torch.set_num_threads(saved)
    return out


def _connect_ray() -> bool:
    """Use the connected Ray, or start a local one (2 CPUs, one GPU declared); True if started."""
    if ray.is_initialized():
        return False
    _progress("starting a local Ray (num_cpus=2, num_gpus=1)")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    return True


def bench_serve(
    batch_sizes: Sequence[int] = (1, 4, 16),
    cameras: int = 4,
    in_flight: int = 6,
    duration_s: float = 8.0,
    site_dir: str | Path | None = None,
    preset: str = "tiny",
    seed: int = 3,
    replica_num_cpus: float = 1.0,
) -> dict[str, Any]:
    """Throughput, latency and formed batch sizes of the Detector for each ``max_batch_size``.

    ``cameras`` actors each keep ``in_flight`` frames outstanding for ``duration_s`` per
    batch size. Frames come from ``site_dir``'s videos, or from a ``preset`` site rendered
    with ``seed`` into a temporary folder. The replica gets ``replica_num_cpus`` CPUs (Ray
    sizes torch's thread pool from it). Starts a local Ray if none is connected (and stops
    it afterwards); on a connected one, Serve is started without HTTP proxy if not running.
    Progress goes to stderr; the result is a JSON-able dict.
    """
    if not batch_sizes or min(batch_sizes) < 1 or cameras < 1 or in_flight < 1:
        raise ValueError(
            f"need batch sizes >= 1, cameras >= 1 and in_flight >= 1, got {list(batch_sizes)}, "
            f"{cameras}, {in_flight}"
        )
    started = _connect_ray()
    try:
        serve.start(proxy_location="Disabled")
        frames = _site_frames(Path(site_dir) if site_dir else None, preset, seed, limit=48)
        frames_ref = ray.put(frames)
        runs = []
        for size in batch_sizes:
            _progress(f"max_batch_size={size}: {cameras} cameras x {in_flight} in flight")
            serving = ServingConfig(
                max_batch_size=size, batch_wait_timeout_s=0.01, num_cpus=replica_num_cpus
            )
            config = BuiltinDetectorConfig(serving=serving)
            runs.append(_serve_run(config, frames_ref, cameras, in_flight, duration_s))
            _progress(f"  {runs[-1]['frames_per_second']} frames/s")
        threads = runs[0]["replica_torch_threads"] if runs else 1
        _progress("baseline: the model called directly in this process")
        baseline = _direct_baseline(frames, sorted({1, *batch_sizes}), threads)
    finally:
        if started:
            # ray.shutdown alone stops Serve with the cluster; serve.shutdown first would
            # make the raylet print retry warnings about the killed controller on stdout,
            # which would corrupt the JSON the CLI prints there.
            ray.shutdown()
    by_size = {r["max_batch_size"]: r["frames_per_second"] for r in runs}
    low, high = min(by_size), max(by_size)
    return {
        "benchmark": "serve",
        "deployment": DETECTOR_DEPLOYMENT,
        "model": "builtin detector",
        "frame_shape": list(frames[0].shape),
        "distinct_frames": len(frames),
        "cameras": cameras,
        "in_flight_per_camera": in_flight,
        "duration_s": duration_s,
        "replica_num_cpus": replica_num_cpus,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "runs": runs,
        # frames/s at the largest max_batch_size over the smallest (16 vs 1 by default)
        "batched_to_unbatched_throughput_ratio": round(by_size[high] / by_size[low], 2),
        "ratio_of_max_batch_sizes": [high, low],
        "baseline_direct_call": baseline,
    }
