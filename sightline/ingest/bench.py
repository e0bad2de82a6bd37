"""Decode benchmark: PyAV decode + RGB conversion against the ffmpeg command line."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

__all__ = ["bench_decode"]

_RTIME = re.compile(r"bench: utime=[\d.]+s stime=[\d.]+s rtime=([\d.]+)s")


def bench_decode(path: str | Path, threads: int = 0, runs: int = 3) -> dict[str, Any]:
    """Frames per second decoding ``path`` with PyAV and with ``ffmpeg``, best of ``runs``.

    PyAV is measured twice: decode only, and decode + conversion of every frame to an
    RGB ``(H, W, 3)`` array at native size (what the pipeline pays per kept frame). The
    baseline is ``ffmpeg -threads N -i path -f null -``, which decodes without any
    conversion, timed by its own ``-benchmark`` report (``ffmpeg_fps``) and by the wall
    clock including process start-up (``ffmpeg_wall_fps``; the start-up matters for very
    short files). ``ratio`` is ``pyav_rgb_fps / ffmpeg_fps`` and ``decode_ratio``
    ``pyav_decode_fps / ffmpeg_fps`` (like for like). ``threads=0`` lets both choose.
    Without ffmpeg on the PATH, ``ffmpeg`` is None and ``note`` says so.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    frames, decode_s = _best(lambda: _pyav(path, threads, rgb=False), runs)
    _, rgb_s = _best(lambda: _pyav(path, threads, rgb=True), runs)
    result: dict[str, Any] = {
        "path": str(path),
        "threads": threads,
        "frames": frames,
        "pyav_decode_fps": _rate(frames, decode_s),
        "pyav_rgb_fps": _rate(frames, rgb_s),
        "ffmpeg": None,
        "ffmpeg_fps": None,
        "ffmpeg_wall_fps": None,
        "ratio": None,
        "decode_ratio": None,
        "note": None,
    }
    exe = shutil.which("ffmpeg")
    if exe is None:
        result["note"] = "ffmpeg not found on PATH: no baseline (apt-get install ffmpeg)"
        return result
    timings = [_ffmpeg(exe, path, threads) for _ in range(max(1, runs))]
    result["ffmpeg"] = exe
    result["ffmpeg_fps"] = _rate(frames, min(loop for loop, _ in timings))
    result["ffmpeg_wall_fps"] = _rate(frames, min(wall for _, wall in timings))
    result["ratio"] = round(result["pyav_rgb_fps"] / result["ffmpeg_fps"], 3)
    result["decode_ratio"] = round(result["pyav_decode_fps"] / result["ffmpeg_fps"], 3)
    result["note"] = (
        "ratio = pyav_rgb_fps / ffmpeg_fps; ffmpeg_fps is ffmpeg's own -benchmark rtime "
        "(decode only, no RGB conversion), ffmpeg_wall_fps adds process start-up"
    )
    return result


def _best(measure: Callable[[], tuple[int, float]], runs: int) -> tuple[int, float]:
    """(frames, shortest seconds) over ``runs`` calls of ``measure() -> (frames, seconds)``."""
    results = [measure() for _ in range(max(1, runs))]
    return results[0][0], min(seconds for _, seconds in results)


def _pyav(path: Path, threads: int, rgb: bool) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        for frame in container.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n, time.perf_counter() - start


def _ffmpeg(exe: str, path: Path, threads: int) -> tuple[float, float]:
    """(seconds of ffmpeg's own decode loop, wall seconds including process start-up)."""
    cmd = [exe, "-nostdin", "-hide_banner", "-benchmark", "-threads", str(threads)]
    cmd += ["-i", str(path), "-f", "null", "-"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {path}: {done.stderr.strip()[-500:]}")
    found = _RTIME.findall(done.stderr)
    return (float(found[-1]) if found else wall), wall


def _rate(frames: int, seconds: float) -> float:
    return round(frames / seconds, 1) if seconds > 0 else 0.0
