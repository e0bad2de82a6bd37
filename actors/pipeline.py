"""Run a site's ingestion pipeline on Ray: model deployments plus one CameraActor per camera.

``run_pipeline(site, out_dir)`` deploys the Detector and Embedder (Ray Serve, options from
the site's ``models`` section), starts a CameraActor for every enabled camera, waits until
recorded files are processed (or ``stop`` is called for live streams), and returns a
summary: per-camera health, rows written and the detector's batch statistics.
Per-frame detections land in ``<out_dir>/detections/camera_id=<id>/part-*.parquet``
(readable with ``pl.scan_parquet(f"{out_dir}/detections/**/*.parquet")``), tracklets in
``<out_dir>/tracklets/camera_id=<id>/`` with thumbnails under ``<out_dir>/thumbnails/``
(see :mod:`sightline.tracking.sink`).

Placement and faults: camera actors ask for ``sightline_camera`` when the cluster
declares it (:mod:`sightline.placement`) and are spread over the nodes that do; the
coordinator goes to the node declaring ``sightline_coordinator``; on one machine
nothing is asked for. Camera actors restart when they fail or their node is lost
(``max_restarts``); the owner (:func:`run_pipeline`, or the supervisor) then calls
``run`` again once the actor is back and the camera resumes from its checkpoint
(:mod:`actors.camera`); :class:`RunRetries` says when to stop trying.
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
from sightline.placement import placement_options

__all__ = [
    "CAMERA_MAX_QUICK_FAILURES",
    "CAMERA_MAX_RESTARTS",
    "CAMERA_NUM_CPUS",
    "CAMERA_QUICK_FAILURE_S",
    "CAMERA_RESTART_WAIT_S",
    "RunRetries",
    "camera_actor_options",
    "connect_ray",
    "read_detections",
    "run_pipeline",
    "start_camera",
    "start_cameras",
]

# Decoding a 640x360 stream at 10 fps takes a fraction of a core; reserving a whole CPU
# per camera would leave no room for the model replicas on a small machine.
CAMERA_NUM_CPUS = 0.1
CAMERA_MAX_RESTARTS = -1
"""Ray restarts a camera actor whenever it dies (a lost node is not the camera's fault);
crash loops are cut by its owner instead (:class:`RunRetries`)."""
CAMERA_MAX_QUICK_FAILURES = 5
CAMERA_QUICK_FAILURE_S = 60.0
CAMERA_RESTART_WAIT_S = 600.0
"""How long an owner waits for a restarting camera actor (a replacement node may take
minutes to join) before it lists the camera as failed."""


class RunRetries:
    """When, after its actor died, an owner calls a camera's ``run`` again (:meth:`retry_in`).

    An error that comes at least ``quick_s`` after the run was last issued means the
    camera had been working (its node was lost, say): the counts start over.

    - ``ActorUnavailableError`` (the actor is restarting, or out of reach for a moment):
      wait for it, with a growing delay, for up to ``restart_wait_s`` without a working
      run in between (a crash loop ends there too).
    - any other actor error (it died): run it again, unless more than ``max_quick`` such
      errors came in a row each sooner than ``quick_s`` after the run was issued (a crash
      loop), or its constructor failed (that will not heal).
    """

    def __init__(
        self,
        max_quick: int = CAMERA_MAX_QUICK_FAILURES,
        quick_s: float = CAMERA_QUICK_FAILURE_S,
        restart_wait_s: float = CAMERA_RESTART_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_quick, self.quick_s, self.restart_wait_s = max_quick, quick_s, restart_wait_s
        self._clock = clock
        self.failures = 0  # runs lost because the actor died, in total
        self._quick = 0
        self._started = clock()
        self._unavailable_since: float | None = None
        self._delay = 0.0

    def started(self) -> None:
        """The run was (re)issued now."""
        self._started = self._clock()

    def retry_in(self, error: BaseException) -> float | None:
        """Seconds to wait before issuing the run again after ``error``; None: give up."""
        now = self._clock()
        if now - self._started >= self.quick_s:  # the run had been working: start over
            self._quick, self._unavailable_since, self._delay = 0, None, 0.0
        if isinstance(error, ray.exceptions.ActorUnavailableError):
            if self._unavailable_since is None:
                self._unavailable_since = now
            if now - self._unavailable_since > self.restart_wait_s:
                return None
            self._delay = min(max(2 * self._delay, 0.2), 5.0)
            return self._delay
        self.failures += 1
        if now - self._started < self.quick_s:
            self._quick += 1
        self._unavailable_since, self._delay = None, 0.0
        if getattr(error, "actor_init_failed", False) or self._quick > self.max_quick:
            return None
        return 0.2


def camera_actor_options(name: str, cluster_resources: Any = None) -> dict[str, Any]:
    """Ray options of a camera actor named ``name``: a little CPU, restartable, spread
    over the nodes, and ``sightline_camera`` when the cluster declares it
    (``cluster_resources`` defaults to ``ray.cluster_resources()``)."""
    if cluster_resources is None:
        cluster_resources = ray.cluster_resources()
    return {
        "name": name,
        "num_cpus": CAMERA_NUM_CPUS,
        "max_restarts": CAMERA_MAX_RESTARTS,
        "scheduling_strategy": "SPREAD",
        **placement_options("camera", cluster_resources),
    }


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
    camera_options: dict[str, Any] | None = None,
) -> Any:
    """A CameraActor for ``camera`` of ``site`` (named ``<app_prefix>-camera-<id>``):
    detect and (with ``track``) track, sending tracklets to ``coordinator`` when given.
    Placed by :func:`camera_actor_options`; its run id (in its tracklet ids) is the time
    now, fixed in its arguments so a restarted actor keeps it. ``camera_options`` are
    more :class:`CameraActor` keyword arguments (``flush_every``, ``checkpoint_every``,
    ``reader_options``). The actor is created, not started: call its ``run``."""
    options = camera_actor_options(f"{app_prefix}-camera-{camera.id}")
    return CameraActor.options(**options).remote(
        camera,
        handles.detector,
        out_dir=str(out_dir),
        mode=camera.mode,
        max_in_flight=camera.max_in_flight,
        embedder=handles.embedder if track else None,
        tracking=site.tracking,
        coordinator=coordinator,
        run_id=str(int(time.time() * 1000)),
        **(camera_options or {}),
    )


def start_cameras(
    site: SiteConfig,
    handles: ModelHandles,
    out_dir: Path,
    app_prefix: str,
    *,
    track: bool = True,
    coordinator: Any = None,
    camera_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One CameraActor per enabled camera of ``site`` (see :func:`start_camera`)."""
    return {
        camera.id: start_camera(
            site,
            camera,
            handles,
            out_dir,
            app_prefix,
            track=track,
            coordinator=coordinator,
            camera_options=camera_options,
        )
        for camera in site.cameras
        if camera.enabled
    }


def _healths(actors: dict[str, Any], cameras: list[str], timeout_s: float) -> list[dict]:
    """Health of ``cameras`` for the progress line; a restarting one says so."""
    refs = {c: actors[c].health.remote() for c in cameras}
    out = []
    for camera, ref in refs.items():
        try:
            out.append(ray.get(ref, timeout=timeout_s))
        except (ray.exceptions.RayError, TimeoutError):
            ray.cancel(ref)
            out.append({"camera_id": camera, "state": "restarting"})
    return out


def _run_cameras(
    actors: dict[str, Any],
    retries: dict[str, RunRetries],
    poll_s: float,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Run every camera to its end, issuing ``run`` again when an actor dies and
    restarts (:class:`RunRetries`); returns each camera's final health."""
    pending = {actor.run.remote(): cam for cam, actor in actors.items()}
    again: dict[str, float] = {}  # camera -> when to issue its run again
    final: dict[str, dict[str, Any]] = {}
    while pending or again:
        now = time.monotonic()
        for cam in [c for c, at in again.items() if at <= now]:
            del again[cam]
            retries[cam].started()
            pending[actors[cam].run.remote()] = cam
        if not pending:
            time.sleep(max(0.0, min(again.values()) - now))
            continue
        done, _ = ray.wait(list(pending), timeout=poll_s)
        for ref in done:
            cam = pending.pop(ref)
            try:
                final[cam] = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                delay = retries[cam].retry_in(exc)
                if delay is None:
                    log(f"camera {cam}: giving up: {exc}")
                    final[cam] = {"camera_id": cam, "state": "failed", "last_error": str(exc)[:300]}
                    continue
                if not isinstance(exc, ray.exceptions.ActorUnavailableError):
                    log(f"camera {cam}: actor lost ({type(exc).__name__}); it restarts and resumes")
                again[cam] = time.monotonic() + delay
        if pending:
            live = _healths(actors, list(pending.values()), timeout_s=max(poll_s, 5.0))
            log(_progress_line(list(final.values()) + live))
    return final


def run_pipeline(
    site: SiteConfig,
    out_dir: str | Path,
    *,
    app_prefix: str = "sightline",
    poll_s: float = 2.0,
    log: Callable[[str], None] = _log,
    track: bool = True,
    store_root: str | Path | None = None,
    camera_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every enabled camera of ``site`` to the end of its recording; returns a summary.

    ``track=False`` stops after detection (no tracker, no embedder, no coordinator).
    With tracking, a coordinator fuses the cameras into people and counts crowd density:
    its write-ahead log is ``<out_dir>/wal`` and its store ``store_root`` (default
    ``<out_dir>/store``). A camera whose actor dies (its node is lost) is restarted by
    Ray and its ``run`` issued again here; it resumes from its checkpoint (module
    docstring); the summary's ``camera_restarts`` counts each camera's restarts. ``camera_options``:
    see :func:`start_camera`.
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
    actors = start_cameras(
        site,
        handles,
        out_dir,
        app_prefix,
        track=track,
        coordinator=coordinator,
        camera_options=camera_options,
    )
    retries = {cam: RunRetries() for cam in actors}
    try:
        final = _run_cameras(actors, retries, poll_s, log)
        stats = handles.detector.stats.remote().result()
        embed_stats = handles.embedder.stats.remote().result() if track else None
        fusion = density = None
        if coordinator is not None:
            ray.get(coordinator.close_density.remote())
            ray.get(coordinator.flush.remote())
            _record_recordings(site, final, store)
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
        "camera_restarts": {c: h["restarts"] for c, h in final.items() if h.get("restarts")},
        "detector_batches": stats,
        "embedder_batches": embed_stats,
        "fusion": fusion,
        "density": density,
    }


def _record_recordings(site: SiteConfig, final: dict[str, dict[str, Any]], store: Path) -> None:
    """Write the recordings read to their end to the store's ingest ledger (after the
    flush), so search jobs never ingest them again (:mod:`sightline.store.ingests`)."""
    from sightline.search.forensic import finished_recording_record
    from sightline.store.ingests import record_ingests

    records = [finished_recording_record(c, final.get(c.id, {})) for c in site.cameras]
    record_ingests(store, [r for r in records if r is not None])


def read_detections(out_dir: str | Path) -> pl.DataFrame:
    """All detections a pipeline run wrote under ``out_dir`` (empty frame if none)."""
    files = sorted(Path(out_dir).glob("detections/camera_id=*/*.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f) for f in files])
