"""Benchmarks printed as JSON (``sightline bench ...``).

Each benchmark reports its figure together with a baseline measured in the same run,
because absolute times on shared machines are noisy.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from sightline.sim import get_preset, simulate

__all__ = ["bench_sim"]


def bench_sim(preset: str = "small", seed: int = 11, workers: int | None = None) -> dict[str, Any]:
    """Time ``sightline simulate``: frames rendered per second, seconds per camera-minute.

    Baseline: H.264 encoding of the very same frames, timed inside the same run; the
    ratio says how much of the cost is our rendering versus the video encoder.
    """
    spec = get_preset(preset)
    with tempfile.TemporaryDirectory(prefix="sightline-bench-") as out:
        started = time.perf_counter()
        result = simulate(preset, seed, out, workers=workers, show_progress=False)
        wall = time.perf_counter() - started
    cams = result["cameras"]
    frames = sum(c["frames"] for c in cams)
    render_s = sum(c["render_s"] for c in cams)
    encode_s = sum(c["encode_s"] for c in cams)
    camera_minutes = len(cams) * spec.duration_s / 60.0
    return {
        "benchmark": "sim",
        "preset": preset,
        "seed": seed,
        "workers": result["workers"],
        "cameras": len(cams),
        "frames": frames,
        "resolution": list(spec.resolution),
        "wall_s": round(wall, 2),
        "frames_per_second": round(frames / wall, 1),
        "seconds_per_camera_minute": round(wall / camera_minutes, 2),
        "render_frames_per_cpu_second": round(frames / render_s, 1),
        "baseline_encode_frames_per_cpu_second": round(frames / encode_s, 1),
        "render_to_encode_cost_ratio": round(render_s / encode_s, 2),
        "realtime_factor": round(len(cams) * spec.duration_s / wall, 2),
    }
