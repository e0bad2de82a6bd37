"""Run a site's ingestion pipeline on Ray: model deployments plus one CameraActor per camera.

``run_pipeline(site, out_dir)`` deploys the Detector and Embedder (Ray Serve, options from
the site's ``models`` section), starts a CameraActor for every enabled camera, waits until
recorded files are processed (or ``stop`` is called for live streams), and returns a
summary: per-camera health, rows written and the detector's batch statistics.
Per-frame detections land in ``<out_dir>/detections/camera_id=<id>/part-*.parquet``
(readable with ``pl.scan_parquet(f"{out_dir}/detections/**/*.parquet")``), tracklets in
``<out_dir>/tracklets/camera_id=<id>/`` with thumbnails under ``<out_dir>/thumbnails/``
(see :mod:`sightline.tracking.sink`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import ray
from ray import serve

from actors.camera import CameraActor
from actors.coordinator import start_coordinator
from serve.deployments import ModelHandles, deploy_models
from sightline.config import CameraConfig, SiteConfig

__all__ = [
    "CAMERA_NUM_CPUS",
    "connect_ray",
    "read_detections",
    "run_pipeline",
    "start_camera",
    "start_cameras",
]

# Decoding a 640x360 stream at 10 fps takes a fraction of a core; reserving a whole CPU
# per camera would leave no room for the model replicas on a small machine.
CAMERA_NUM_CPUS = 0.1


def connect_ray(num_gpus: float | None = None, http: tuple[str, int] | None = None) -> None:
    """Join the running Ray (``RAY_ADDRESS`` or an initialised driver), else start a local one.

    Serve is started without its HTTP proxy (the pipeline reaches the models by handle),
    or with ``http=(host, port)`` with a proxy on the head node listening there (the API).
    """
    if not ray.is_initialized():
        ray.init(num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
    if http is None:
        serve.start(proxy_location="Disabled")
    else:
        host, port = http
        serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_line(healths: list[dict[str, Any]]) -> str:
    parts = []
    for h in healths:
        progress = h.get("progress")
        share = f"{100 * progress:3.0f}%" if progress is not None else h.get("state", "?")
        parts.append(f"{h['camera_id']} {share} {h.get('frames_detected', 0)}f")
    return "pipeline: " + " | ".join(parts)


def start_camera(
    site: SiteConfig,
    camera: CameraConfig,
    handles: ModelHandles,
    out_dir: Path | str,
    app_prefix: str,
    *,
    track: bool = True,
    coordinator: Any = None,
) -> Any:
    """A CameraActor for ``camera`` of ``site`` (named ``<app_prefix>-camera-<id>``):
    detect and (with ``track``) track, sending tracklets to ``coordinator`` when given.
    The actor is created, not started: call its ``run``."""
    return CameraActor.options(
        name=f"{app_prefix}-camera-{camera.id}", num_cpus=CAMERA_NUM_CPUS
    ).remote(
        camera,
        handles.detector,
        out_dir=str(out_dir),
        mode=camera.mode,
        max_in_flight=camera.max_in_flight,
        embedder=handles.embedder if track else None,
        tracking=site.tracking,
        coordinator=coordinator,
    )


def start_cameras(
    site: SiteConfig,
    handles: ModelHandles,
    out_dir: Path,
    app_prefix: str,
    *,
    track: bool = True,
    coordinator: Any = None,
) -> dict[str, Any]:
    """One CameraActor per enabled camera of ``site`` (see :func:`start_camera`)."""
    return {
        camera.id: start_camera(
            site, camera, handles, out_dir, app_prefix, track=track, coordinator=coordinator
        )
        for camera in site.cameras
        if camera.enabled
    }


def run_pipeline(
    site: SiteConfig,
    out_dir: str | Path,
    *,
    app_prefix: str = "sightline",
    poll_s: float = 2.0,
    log: Callable[[str], None] = _log,
    track: bool = True,
    store_root: str | Path | None = None,
) -> dict[str, Any]:
    """Run every enabled camera of ``site`` to the end of its recording; returns a summary.

    ``track=False`` stops after detection (no tracker, no embedder, no coordinator).
    With tracking, a coordinator fuses the cameras into people and counts crowd density:
    its write-ahead log is ``<out_dir>/wal`` and its store ``store_root`` (default
    ``<out_dir>/store``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    connect_ray()
    started = time.perf_counter()
    log(
        f"deploying models ({site.models.detector.type} detector, "
        f"{site.models.embedder.type} embedder) ..."
    )
    handles = deploy_models(site.models, app_prefix)
    handles.detector.stats.remote().result()  # replicas are up before the clock starts
    coordinator = None
    if track:
        store = Path(store_root) if store_root is not None else out_dir / "store"
        coordinator = start_coordinator(site, out_dir / "wal", store, f"{app_prefix}-coordinator")
    actors = start_cameras(site, handles, out_dir, app_prefix, track=track, coordinator=coordinator)
    try:
        pending = {actor.run.remote(): cam for cam, actor in actors.items()}
        final: dict[str, dict[str, Any]] = {}
        while pending:
            done, _ = ray.wait(list(pending), timeout=poll_s)
            for ref in done:
                final[pending.pop(ref)] = ray.get(ref)
            if pending:
                live = ray.get([actors[c].health.remote() for c in pending.values()])
                log(_progress_line(list(final.values()) + live))
        stats = handles.detector.stats.remote().result()
        embed_stats = handles.embedder.stats.remote().result() if track else None
        fusion = density = None
        if coordinator is not None:
            ray.get(coordinator.close_density.remote())
            ray.get(coordinator.flush.remote())
            fusion = ray.get(coordinator.health.remote())
            fusion["store"] = str(store)
            density = {
                "health": fusion.pop("density"),
                "alerts": ray.get(coordinator.density_alerts.remote()),
            }
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if coordinator is not None:
            ray.kill(coordinator, no_restart=True)
    elapsed = time.perf_counter() - started
    frames = sum(h.get("frames_detected", 0) for h in final.values())
    return {
        "out_dir": str(out_dir),
        "cameras": [final[c] for c in sorted(final)],
        "frames": frames,
        "seconds": round(elapsed, 2),
        "frames_per_s": round(frames / elapsed, 1) if elapsed > 0 else None,
        "tracklets": sum(h.get("tracklets_emitted", 0) for h in final.values()),
        "detector_batches": stats,
        "embedder_batches": embed_stats,
        "fusion": fusion,
        "density": density,
    }


def read_detections(out_dir: str | Path) -> pl.DataFrame:
    """All detections a pipeline run wrote under ``out_dir`` (empty frame if none)."""
    files = sorted(Path(out_dir).glob("detections/camera_id=*/*.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f) for f in files])
