"""``sightline bench scale``: whole-pipeline frames/s with 1, 2 and 4 detector replicas.

One local Ray with FOUR FAKE GPUs is started once; for each replica count N the real
pipeline (:func:`actors.pipeline.run_pipeline`: camera actors decoding PyAV, the Serve
Detector with N fixed replicas, tracking, the Embedder, the coordinator) runs over the
same rendered site, each run with its own output folder and Serve app prefix, and the
model apps are deleted between runs. It reports frames, wall seconds, frames/s, the batch
sizes every detector replica formed and the speed-up over the smallest replica count.

The fake GPUs are bookkeeping only: every replica runs the model on the same CPU cores
(one torch thread each, since a replica gets less than one CPU), so the curve rises while
cores are idle and flattens once the CPU saturates. The shape of the curve is the point,
not the absolute numbers.

Second part, a capacity model: the built-in detector and embedder are timed directly (no
Ray) at batch sizes 1, 8 and 16 on ``device`` (``cpu``; ``cuda`` when torch sees a GPU),
and with the embedder crops per frame measured in the runs,

    device-seconds per camera-second = fps x (detector s/frame + crops/frame x embedder s/crop)
    cameras per device = floor(utilisation / that)

No GPU speed factor is assumed anywhere: a GPU's figures come from running the same
measurement on it (``device="cuda"``).
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import ray
import torch
from ray import serve

from actors.coordinator import COORDINATOR_NUM_CPUS
from actors.pipeline import CAMERA_NUM_CPUS, run_pipeline
from serve.bench import decode_frames
from serve.deployments import delete_models, get_model_handles
from sightline.config import (
    AutoscalingConfig,
    BuiltinDetectorConfig,
    BuiltinEmbedderConfig,
    ServingConfig,
    SiteConfig,
    load_site_config,
)
from sightline.models import build_detector, build_embedder
from sightline.training.sites import ensure_site

__all__ = [
    "COST_BATCH_SIZES",
    "FAKE_GPUS",
    "bench_scale",
    "cameras_per_device",
    "check_replicas",
    "measure_model_costs",
    "replica_resources",
    "speedups",
    "trim_video",
]

FAKE_GPUS = 4
COST_BATCH_SIZES = (1, 8, 16)
DEFAULT_DATA_DIR = Path.home() / ".cache" / "sightline" / "sites"
# Most replicas one run may ask for: beyond this the per-replica CPU share is meaningless.
MAX_REPLICAS = 16
# Detector boxes at or above this score are cropped for the embedder cost measurement
# (the tracker's default high_score: the boxes that start and confirm tracks).
_CROP_SCORE = 0.5


def _stderr(message: str) -> None:
    print(f"[bench scale] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pure parts


def check_replicas(replicas: Sequence[int]) -> tuple[int, ...]:
    """Replica counts in increasing order; ``ValueError`` naming the bad value otherwise."""
    if isinstance(replicas, str | bytes) or not isinstance(replicas, Sequence):
        raise ValueError(f"replicas must be a sequence of integers, got {replicas!r}")
    counts = list(replicas)
    if not counts:
        raise ValueError("replicas is empty: give at least one replica count, e.g. (1, 2, 4)")
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise ValueError(f"replica counts must be integers, got {n!r} in {counts}")
        if not 1 <= n <= MAX_REPLICAS:
            raise ValueError(f"replica counts must be in 1..{MAX_REPLICAS}, got {n} in {counts}")
    if len(set(counts)) != len(counts):
        raise ValueError(f"replica counts must be distinct, got {counts}")
    return tuple(sorted(int(n) for n in counts))


def replica_resources(
    max_replicas: int, cpus: float, cameras: int, embedder_cpus: float
) -> tuple[float, float]:
    """``(num_cpus, num_gpus)`` per detector replica so ``max_replicas`` of them fit.

    The fake GPUs are split evenly (at most one each). The CPUs left after the camera
    actors, the coordinator and the embedder are split evenly too, rounded down to 0.05;
    nothing left gives 0 (the replica still runs, Ray just does not reserve a core).
    """
    if max_replicas < 1:
        raise ValueError(f"max_replicas must be >= 1, got {max_replicas}")
    gpus = min(1.0, FAKE_GPUS / max_replicas)
    free = cpus - cameras * CAMERA_NUM_CPUS - COORDINATOR_NUM_CPUS - embedder_cpus
    share = math.floor(max(free, 0.0) / max_replicas * 20) / 20
    return min(share, 1.0), gpus


def cameras_per_device(
    fps: float,
    det_s_per_frame: float,
    emb_s_per_crop: float,
    crops_per_frame: float,
    utilisation: float = 0.7,
) -> dict[str, float | int]:
    """How many cameras at ``fps`` one device carries at ``utilisation`` of its time.

    Each camera-second costs ``fps * (det_s_per_frame + crops_per_frame * emb_s_per_crop)``
    device-seconds; the device carries ``floor(utilisation / that)`` cameras. Raising
    ``utilisation`` packs more cameras per device but leaves less headroom for bursts
    (crowds mean more crops per frame). Returns the cost per camera-second, the cameras,
    and the frames/s the device would reach at 100 % (``1 / cost per frame``).
    """
    _check_positive("fps", fps)
    _check_positive("det_s_per_frame", det_s_per_frame)
    _check_non_negative("emb_s_per_crop", emb_s_per_crop)
    _check_non_negative("crops_per_frame", crops_per_frame)
    _check_positive("utilisation", utilisation)
    if utilisation > 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    per_frame = det_s_per_frame + crops_per_frame * emb_s_per_crop
    per_camera_s = fps * per_frame
    # The tiny epsilon keeps exact quotients (0.7 / 0.07 = 9.999...) from losing a camera.
    cameras = math.floor(utilisation / per_camera_s + 1e-9)
    return {
        "device_s_per_frame": per_frame,
        "device_s_per_camera_s": per_camera_s,
        "cameras_per_device": cameras,
        "max_frames_per_s_at_full_use": 1.0 / per_frame,
    }


def _check_number(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def _check_positive(name: str, value: float) -> None:
    _check_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    _check_number(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def speedups(frames_per_s: dict[int, float]) -> dict[int, float]:
    """Frames/s of each replica count over that of the smallest count (which gives 1.0)."""
    if not frames_per_s:
        return {}
    base = frames_per_s[min(frames_per_s)]
    if base <= 0:
        raise ValueError(f"baseline frames/s must be > 0, got {base}")
    return {n: round(fps / base, 2) for n, fps in sorted(frames_per_s.items())}


# --------------------------------------------------------------------------- site


def trim_video(src: Path, dst: Path, seconds: float) -> int:
    """Copy the first ``seconds`` of ``src`` to ``dst`` without re-encoding; packets copied.

    Packets are kept while their timestamp is below ``seconds`` (stream copy: the cut
    falls on a packet, not an exact frame, which is fine for a benchmark).
    """
    _check_positive("seconds", seconds)
    copied = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:  # the flushing packet at the end
                continue
            if packet.pts is not None and packet.pts * stream.time_base >= seconds:
                break
            packet.stream = out_stream
            out.mux(packet)
            copied += 1
    if copied == 0:
        raise ValueError(f"{src}: nothing in the first {seconds} s")
    return copied


def _trimmed_site(site: SiteConfig, seconds: float, folder: Path) -> SiteConfig:
    """``site`` with every local camera file cut to its first ``seconds`` (copies in folder)."""
    cameras = []
    for cam in site.cameras:
        if cam.is_stream or not cam.enabled:
            cameras.append(cam)
            continue
        dst = folder / f"{cam.id}{Path(cam.source).suffix or '.mp4'}"
        trim_video(Path(cam.source), dst, seconds)
        # model_copy keeps the fitted calibration; only the file changes.
        cameras.append(cam.model_copy(update={"source": str(dst)}))
    return site.model_copy(update={"cameras": cameras})


def _with_detector_replicas(site: SiteConfig, n: int, cpus: float, gpus: float) -> SiteConfig:
    """``site`` whose detector runs ``n`` fixed replicas (min = max = n) of cpus/gpus each."""
    detector = site.models.detector
    serving = ServingConfig.model_validate(
        {
            **detector.serving.model_dump(),
            "num_cpus": cpus,
            "num_gpus": gpus,
            "autoscaling": AutoscalingConfig(min_replicas=n, max_replicas=n).model_dump(),
        }
    )
    models = site.models.model_copy(
        update={"detector": detector.model_copy(update={"serving": serving})}
    )
    return site.model_copy(update={"models": models})


# --------------------------------------------------------------------------- runs


def _all_replica_stats(handle: Any, replicas: int, attempts: int = 40) -> list[dict[str, Any]]:
    """``stats()`` of every replica behind ``handle`` (calls until each one has answered).

    A handle call reaches one replica chosen by the router, so the calls are repeated in
    rounds and deduplicated by replica id.
    """
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(attempts):
        for stats in [handle.stats.remote() for _ in range(2 * replicas)]:
            s = stats.result(timeout_s=60)
            seen[s["replica_id"]] = s
        if len(seen) >= replicas:
            break
    return [seen[k] for k in sorted(seen)]


def _detector_summary(per_replica: list[dict[str, Any]]) -> dict[str, Any]:
    items = sum(s["items"] for s in per_replica)
    batches = sum(s["batches"] for s in per_replica)
    return {
        "replicas_reporting": len(per_replica),
        "frames": items,
        "batches": batches,
        "mean_batch_size": round(items / batches, 2) if batches else 0.0,
        "max_batch_size_seen": max((s["max_batch_size_seen"] for s in per_replica), default=0),
        "model_s_total": round(sum(s["model_s"] for s in per_replica), 2),
        "per_replica": [
            {
                "replica_id": s["replica_id"],
                "frames": s["items"],
                "batches": s["batches"],
                "mean_batch_size": s["mean_batch_size"],
                "model_ms_per_frame": round(1000 * s["model_s"] / max(s["items"], 1), 2),
                "device": s["device"],
                "torch_threads": s["torch_threads"],
                "assigned_resources": s["assigned_resources"],
            }
            for s in per_replica
        ],
    }


def _one_run(site: SiteConfig, n: int, out_root: Path, log: Callable[[str], None]) -> dict:
    """The pipeline over ``site`` with ``n`` detector replicas; its figures."""
    prefix = f"bench-scale-{n}r"
    out_dir = out_root / f"replicas-{n}"
    try:
        summary = run_pipeline(site, out_dir, app_prefix=prefix, poll_s=5.0, log=log)
        handles = get_model_handles(prefix)
        detector = _detector_summary(_all_replica_stats(handles.detector, n))
    finally:
        delete_models(prefix)
        shutil.rmtree(out_dir, ignore_errors=True)
    frames = summary["frames"]
    embedder = summary["embedder_batches"] or {}
    detections = sum(c.get("detections", 0) for c in summary["cameras"])
    return {
        "detector_replicas": n,
        "frames": frames,
        "wall_s": summary["seconds"],
        "frames_per_s": summary["frames_per_s"],
        # Model seconds are wall time inside the model thread (time spent descheduled
        # included): busy replicas is how many ran a batch at once on average, and a model
        # ms/frame that rises with the replica count means they compete for the same cores.
        "detector_busy_replicas": round(detector["model_s_total"] / summary["seconds"], 2)
        if summary["seconds"]
        else None,
        "detector_model_ms_per_frame": round(1000 * detector["model_s_total"] / frames, 2)
        if frames
        else None,
        "detections_per_frame": round(detections / frames, 3) if frames else 0.0,
        "embedder_crops_per_frame": round(embedder.get("items", 0) / frames, 3) if frames else 0.0,
        "tracklets": summary["tracklets"],
        "detector_errors": sum(c.get("detector_errors", 0) for c in summary["cameras"]),
        "detector": detector,
        "embedder": {
            k: embedder.get(k)
            for k in ("items", "batches", "mean_batch_size", "max_batch_size_seen", "model_s")
        },
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------- model costs


def _median_call_s(fn: Callable[[], Any], min_seconds: float, min_calls: int = 3) -> float:
    """Median wall seconds of ``fn()`` over at least ``min_calls`` calls and ``min_seconds``."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _timed_rounds(
    calls: dict[str, tuple[Callable[[], Any], int]], rounds: int, min_seconds: float
) -> dict[str, dict[str, float]]:
    """Seconds per item of each ``name: (fn, items per call)``, timed in interleaved rounds.

    On a shared machine other load comes and goes: interleaving spreads it over every
    batch size instead of hitting one, and the fastest round (as ``timeit`` advises) is
    the model's own cost; the median round is reported next to it.
    """
    for fn, _ in calls.values():
        fn()  # warm-up (allocations, first-call dispatch)
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, (fn, items) in calls.items():
            per_round[name].append(_median_call_s(fn, min_seconds) / items)
    return {name: {"best": min(v), "median": statistics.median(v)} for name, v in per_round.items()}


def _crops(frames: list[np.ndarray], detections: list[Any]) -> list[np.ndarray]:
    """Person crops of the confident boxes (all boxes if none is confident)."""
    out: list[np.ndarray] = []
    for threshold in (_CROP_SCORE, 0.0):
        for frame, det in zip(frames, detections, strict=True):
            for (x1, y1, x2, y2), score in zip(det.xyxy, det.scores, strict=True):
                if score < threshold:
                    continue
                crop = frame[int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)]
                if crop.shape[0] >= 2 and crop.shape[1] >= 2:
                    out.append(np.ascontiguousarray(crop))
        if out:
            return out
    raise ValueError("the detector found no person in the sample frames: no crops to time")


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' asked for, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); run this on a "
            "GPU machine with a CUDA build of torch, or use device 'cpu'"
        )


def measure_model_costs(
    frames: list[np.ndarray],
    device: str = "cpu",
    batch_sizes: Sequence[int] = COST_BATCH_SIZES,
    min_seconds: float = 0.5,
    rounds: int = 3,
    threads: int = 1,
) -> dict[str, Any]:
    """Seconds per frame (detector) and per crop (embedder) of the built-in models.

    Called directly in this process (no Ray) on ``device`` with torch's current thread
    count, at each batch size (frames for the detector, crops for the embedder), in
    ``rounds`` interleaved rounds of at least ``min_seconds`` each; the fastest round
    counts. Crops are the confident boxes the detector finds in ``frames``.

    ``threads`` torch threads (default 1, as each replica of the pipeline runs with less
    than one CPU): a one-thread cost is the cost on one core. More threads than idle
    cores make torch's worker threads wait for each other, which on a shared machine
    inflates small batches many times over.
    """
    _check_device(device)
    if not frames:
        raise ValueError("no frames to time the models on")
    prefer_gpu = device == "cuda"
    detector = build_detector(BuiltinDetectorConfig(), prefer_gpu=prefer_gpu)
    embedder = build_embedder(BuiltinEmbedderConfig(), prefer_gpu=prefer_gpu)
    crops = _crops(frames, detector.detect(np.stack(frames)))
    calls: dict[str, tuple[Callable[[], Any], int]] = {}
    for size in batch_sizes:
        batch = np.stack([frames[i % len(frames)] for i in range(size)])
        some = [crops[i % len(crops)] for i in range(size)]
        calls[f"detector {size}"] = (lambda b=batch: detector.detect(b), size)
        calls[f"embedder {size}"] = (lambda c=some: embedder.embed(c), size)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timed = _timed_rounds(calls, rounds, min_seconds)
    finally:
        torch.set_num_threads(saved)
    det_cost = {str(n): timed[f"detector {n}"]["best"] for n in batch_sizes}
    emb_cost = {str(n): timed[f"embedder {n}"]["best"] for n in batch_sizes}
    return {
        "device": detector.device,
        "torch_threads": threads,
        "frame_shape": list(frames[0].shape),
        "distinct_crops": len(crops),
        "detector_s_per_frame": det_cost,
        "embedder_s_per_crop": emb_cost,
        "rounds": rounds,
        "median_round_s_per_item": {k: round(v["median"], 6) for k, v in timed.items()},
    }


def _capacity(costs: dict[str, Any], fps: float, crops_per_frame: float, util: float) -> list:
    """One row of the cameras-per-device model per measured batch size."""
    rows = []
    for size, det in costs["detector_s_per_frame"].items():
        emb = costs["embedder_s_per_crop"][size]
        model = cameras_per_device(fps, det, emb, crops_per_frame, util)
        rows.append(
            {
                "batch_size": int(size),
                "detector_ms_per_frame": round(1000 * det, 3),
                "embedder_ms_per_crop": round(1000 * emb, 3),
                "device_ms_per_frame": round(1000 * model["device_s_per_frame"], 3),
                "device_s_per_camera_s": round(model["device_s_per_camera_s"], 4),
                "cameras_per_device": model["cameras_per_device"],
                "max_frames_per_s_at_full_use": round(model["max_frames_per_s_at_full_use"], 1),
            }
        )
    return rows


def _sample_frames(site: SiteConfig, per_camera: int = 8) -> list[np.ndarray]:
    """A few decoded frames of every local camera file (all the same shape)."""
    frames: list[np.ndarray] = []
    for cam in site.cameras:
        if cam.enabled and not cam.is_stream:
            frames.extend(decode_frames(Path(cam.source), per_camera * 5)[::5])
    shape = frames[0].shape if frames else None
    return [f for f in frames if f.shape == shape]


# --------------------------------------------------------------------------- entry point


def _start_ray(log: Callable[[str], None]) -> bool:
    """A new local Ray with FAKE_GPUS fake GPUs (True), or the connected one (False)."""
    if ray.is_initialized():
        log("using the connected Ray (it must offer the GPUs the replicas ask for)")
        return False
    cpus = os.cpu_count() or 1
    log(f"starting a local Ray (num_cpus={cpus}, num_gpus={FAKE_GPUS} fake)")
    # Under load the routers in the camera actors (new processes: they inherit this) miss
    # Serve's 0.1 s queue-length deadline and log warnings; 1.0 s is the documented maximum.
    os.environ.setdefault("RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S", "1.0")
    # address="local": a new instance even when another Ray runs on this machine.
    ray.init(
        address="local",
        num_cpus=cpus,
        num_gpus=FAKE_GPUS,
        include_dashboard=False,
        log_to_driver=False,
    )
    return True


def _machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "cuda_visible_to_torch": torch.cuda.is_available(),
        "load_average_1m_start": round(os.getloadavg()[0], 2),
    }


def _scan(
    site: SiteConfig, counts: tuple[int, ...], log: Callable[[str], None]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One pipeline run per replica count on a fresh local Ray; runs and resources."""
    cameras = sum(c.enabled for c in site.cameras)
    started = _start_ray(log)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        emb_cpus = site.models.embedder.serving.num_cpus
        rep_cpus, rep_gpus = replica_resources(max(counts), cpus, cameras, emb_cpus)
        serve.start(proxy_location="Disabled")
        runs = []
        with tempfile.TemporaryDirectory(prefix="sightline-bench-scale-") as tmp:
            for n in counts:
                log(f"{n} detector replica(s) ({rep_cpus} CPU, {rep_gpus} fake GPU each)")
                run_site = _with_detector_replicas(site, n, rep_cpus, rep_gpus)
                runs.append(_one_run(run_site, n, Path(tmp), log))
                log(f"  {n} replica(s): {runs[-1]['frames_per_s']} frames/s")
    finally:
        if started:
            # ray.shutdown alone stops Serve with the cluster (see serve/bench.py).
            ray.shutdown()
    resources = {
        "ray_cpus": cpus,
        "fake_gpus": FAKE_GPUS,
        "cameras": cameras,
        "camera_num_cpus": CAMERA_NUM_CPUS,
        "coordinator_num_cpus": COORDINATOR_NUM_CPUS,
        "embedder_num_cpus": emb_cpus,
        "embedder_replicas": site.models.embedder.serving.autoscaling.max_replicas,
        "detector_replica_num_cpus": rep_cpus,
        "detector_replica_num_gpus": rep_gpus,
    }
    return runs, resources


_NOTE = (
    "The GPUs are fake (Ray bookkeeping only): every detector replica runs the model on "
    "the same {cpus} CPU cores with one torch thread, alongside the camera decoders, "
    "trackers, the embedder and the coordinator. Throughput grows with replicas only "
    "while cores are idle and flattens (or drops) once the CPU saturates; the machine is "
    "shared, so other load moves the numbers. Read the curve, not the absolute frames/s."
)
_CAPACITY_NOTE = (
    "Measured on {device} with {threads} torch thread(s) (on a CPU: the cost on one core, "
    "as one pipeline replica runs; the whole CPU is not assumed to scale linearly), the "
    "models called directly without Ray, decode, tracking or fusion, the fastest of "
    "interleaved rounds (the median round is reported too: the machine is shared). A "
    "GPU's figures come from running the same "
    "measurement on it (device='cuda', `--device cuda`); no GPU speed factor is assumed. "
    "crops_per_frame comes from the pipeline runs above and grows with crowding."
)


def bench_scale(
    preset: str = "small",
    seed: int = 11,
    replicas: Sequence[int] = (1, 2, 4),
    data_dir: str | Path = DEFAULT_DATA_DIR,
    seconds: float | None = None,
    log: Callable[[str], None] = _stderr,
    device: str = "cpu",
    utilisation: float = 0.7,
) -> dict[str, Any]:
    """Pipeline frames/s per detector replica count, and cameras per device from model costs.

    The site (``preset``, ``seed``) is rendered into ``data_dir`` once (cached). With
    ``seconds`` only the first seconds of every camera file are run. ``device`` is where
    the model costs are measured (``cuda`` fails clearly if torch sees no GPU); the
    pipeline runs always use fake GPUs. ``utilisation`` is the share of a device the
    capacity model fills. Progress goes to ``log`` (stderr); the result is JSON-able.
    """
    counts = check_replicas(replicas)
    _check_device(device)  # before the long part
    _check_positive("utilisation", utilisation)
    if utilisation > 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    if seconds is not None:
        _check_positive("seconds", seconds)
    machine = _machine()
    folder = ensure_site(Path(data_dir), preset, seed)
    site = load_site_config(folder / "site.yaml")
    with tempfile.TemporaryDirectory(prefix="sightline-bench-scale-site-") as trimmed:
        if seconds is not None:
            site = _trimmed_site(site, seconds, Path(trimmed))
        # Timed first, before this benchmark's own Ray processes exist (or linger).
        log(f"timing the models directly on {device} (batch sizes {list(COST_BATCH_SIZES)})")
        costs = measure_model_costs(_sample_frames(site), device)
        runs, resources = _scan(site, counts, log)
    fps_by_n = {r["detector_replicas"]: r["frames_per_s"] for r in runs}
    gains = speedups(fps_by_n)
    for r in runs:
        r["speedup"] = gains[r["detector_replicas"]]
    frames = sum(r["frames"] for r in runs)
    crops_per_frame = sum(r["embedder_crops_per_frame"] * r["frames"] for r in runs) / max(
        frames, 1
    )
    enabled = [c for c in site.cameras if c.enabled]
    fps = statistics.fmean(c.fps for c in enabled)
    machine["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return {
        "benchmark": "scale",
        "site": {"preset": preset, "seed": seed, "cameras": len(enabled), "seconds": seconds},
        "machine": machine,
        "resources": resources,
        "runs": runs,
        "frames_per_s_by_replicas": {str(n): v for n, v in fps_by_n.items()},
        "speedup_by_replicas": {str(n): v for n, v in gains.items()},
        "speedup_baseline_replicas": min(counts),
        "note": _NOTE.format(cpus=machine["cpu_count"]),
        "capacity_model": {
            "formula": "device_s_per_camera_s = fps * (detector_s_per_frame + crops_per_frame "
            "* embedder_s_per_crop); cameras_per_device = floor(utilisation / "
            "device_s_per_camera_s)",
            "fps": fps,
            "crops_per_frame": round(crops_per_frame, 3),
            "utilisation": utilisation,
            "measured": costs,
            "by_batch_size": _capacity(costs, fps, crops_per_frame, utilisation),
            "note": _CAPACITY_NOTE.format(device=costs["device"], threads=costs["torch_threads"]),
        },
    }
