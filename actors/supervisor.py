"""The pipeline supervisor: one async actor per site that owns the camera actors and the
coordinator while Sightline runs as a service (``sightline serve``).

``run_pipeline`` is for a batch run (start everything, wait for the files, stop). A
service instead keeps running while operators add, change and remove cameras; the API
replicas reach this actor by name (:func:`supervisor_name`) to do so and to read each
camera's health. It holds the site config as it stands now (the file's plus the run-time
changes, validated by :mod:`sightline.site_changes`) and tells the coordinator when the
set of cameras changes, so density coverage follows.

Changing a camera stops only that camera's actor and starts a new one; the others never
notice. A camera whose recording ends stays listed with its final health (state
``finished``) until it is removed. While cameras run, the coordinator's buffered rows are
written every ``storage.flush_after_s``; when the last camera ends, the density seconds
still held are counted (later frames of earlier times count as late) and the store is
written, so the API's readers see the whole run.

Search jobs over recorded footage (:mod:`actors.search_jobs`) ingest what the store
lacks through this pipeline: :meth:`PipelineSupervisor.forensic_context` hands them the
site as it stands, the run folder, the store and the cameras it is processing now. When
a recording camera finishes (its file read to the end in forensic mode) the store is
flushed and the whole recording is written to the store's ingest ledger
(:mod:`sightline.store.ingests`), so no job ingests it again.

Faults: a camera actor that dies (its node is lost, it crashes) is restarted by Ray
elsewhere; the supervisor issues its ``run`` again and the camera resumes from its
checkpoint (:mod:`actors.camera`), unless it keeps failing at once
(:class:`~actors.pipeline.RunRetries`): then it is listed ``failed``. The supervisor
and the coordinator share the node that declares ``sightline_coordinator`` (the head),
half a unit each (:func:`~actors.coordinator.coordinator_node_options`); losing that
node loses the service (the head is Ray's single point of failure anyway).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.coordinator import COORDINATOR_SHARE, coordinator_node_options, start_coordinator
from actors.pipeline import RunRetries, start_camera
from serve.deployments import get_model_handles
from sightline.config import SiteConfig
from sightline.search.forensic import finished_recording_record
from sightline.site_changes import with_camera, without_camera
from sightline.store.ingests import record_ingests

__all__ = ["PipelineSupervisor", "start_supervisor", "supervisor_name"]

log = logging.getLogger(__name__)

SUPERVISOR_NUM_CPUS = 0.05
STOP_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 5.0


def supervisor_name(app_prefix: str = "sightline") -> str:
    """The Ray actor name of the supervisor of ``app_prefix``'s pipeline."""
    return f"{app_prefix}-supervisor"


@ray.remote
class PipelineSupervisor:
    """Owns the coordinator and one CameraActor per enabled camera (module docstring).

    The model applications (``<app_prefix>-detector``/``-embedder``) must already be
    running. ``base_dir`` resolves relative camera sources given at run time (the site
    file's folder).
    """

    def __init__(
        self,
        site: SiteConfig,
        out_dir: str,
        store_root: str,
        app_prefix: str = "sightline",
        base_dir: str | None = None,
    ) -> None:
        self.site = site
        self.out_dir = Path(out_dir)
        self.app_prefix = app_prefix
        self.base_dir = base_dir
        self.store_root = str(store_root)
        self.handles = get_model_handles(app_prefix)
        self.coordinator: ActorHandle = start_coordinator(
            site, self.out_dir / "wal", store_root, f"{app_prefix}-coordinator"
        )
        self._actors: dict[str, ActorHandle] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[ActorHandle] = set()  # stopped on purpose: do not run again
        self.restarts: dict[str, int] = {}  # camera id -> runs issued again after a loss
        self._final: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()  # one camera change at a time
        self._flusher: asyncio.Task[None] | None = None
        self.changes: list[dict[str, Any]] = []

    async def start(self) -> list[str]:
        """Start every enabled camera of the site; returns their ids."""
        async with self._lock:
            for camera in self.site.cameras:
                if camera.enabled and camera.id not in self._actors:
                    self._launch(camera.id)
            if self._flusher is None:
                every = self.site.storage.flush_after_s
                self._flusher = asyncio.create_task(self._flush_every(every))
            return sorted(self._actors)

    # ------------------------------------------------------------------ cameras

    async def add_camera(self, camera: dict[str, Any], replace: bool = False) -> dict[str, Any]:
        """Add a camera (a mapping as in ``site.yaml``), or with ``replace`` change the
        camera of the same id (its actor restarts; the others do not). Raises
        :class:`~sightline.config.ConfigError` naming the field for bad settings, and
        ``KeyError`` for ``replace`` of an unknown id."""
        async with self._lock:
            site = with_camera(self.site, camera, replace=replace, base_dir=self.base_dir)
            camera_id = camera["id"]
            if replace:
                await self._stop(camera_id)
            self.site = site
            await self.coordinator.set_site.remote(site)
            if site.camera(camera_id).enabled:
                self._launch(camera_id)
            self.changes.append({"change": "replace" if replace else "add", "camera": camera_id})
            return self._camera_entry(camera_id, None)

    async def remove_camera(self, camera_id: str) -> dict[str, Any]:
        """Stop and forget ``camera_id``; returns its final health. ``KeyError`` if the id
        is unknown, ``ConfigError`` if it is the site's last camera."""
        async with self._lock:
            site = without_camera(self.site, camera_id)
            final = await self._stop(camera_id)
            self.site = site
            await self.coordinator.set_site.remote(site)
            self._final.pop(camera_id, None)
            self.changes.append({"change": "remove", "camera": camera_id})
            return final or {"camera_id": camera_id, "state": "removed"}

    async def cameras(self) -> list[dict[str, Any]]:
        """Every camera of the site now: its settings (source as configured) and health."""
        ids = [c.id for c in self.site.cameras]
        live = [i for i in ids if i in self._actors and i not in self._final]
        healths = await asyncio.gather(
            *(self._health(self._actors[i]) for i in live), return_exceptions=True
        )
        by_id = dict(zip(live, healths, strict=True))
        return [self._camera_entry(i, by_id.get(i)) for i in ids]

    async def current_site(self) -> SiteConfig:
        """The site config with the run-time camera changes."""
        return self.site

    async def forensic_context(self) -> dict[str, Any]:
        """What a search job needs to ingest recorded footage through this pipeline: the
        site now, the run folder, the store, the app prefix, the coordinator's handle, and
        ``busy``: camera id -> why a job must not ingest it (the pipeline is reading its
        recording now)."""
        busy = {}
        for camera_id, task in self._runs.items():
            camera = next((c for c in self.site.cameras if c.id == camera_id), None)
            # a camera with its final health is read to the end and in the ledger; its
            # task may still be settling the whole site's density and store
            running = not task.done() and camera_id not in self._final
            if camera is not None and not camera.is_stream and running:
                busy[camera_id] = (
                    "the pipeline is processing this recording now: searched as far as "
                    "it has got (search again once the camera has finished)"
                )
        return {
            "site": self.site,
            "out_dir": str(self.out_dir),
            "store_root": self.store_root,
            "app_prefix": self.app_prefix,
            "coordinator": self.coordinator,
            "busy": busy,
        }

    async def done(self) -> bool:
        """True when no camera is running (every recording has ended)."""
        return all(t.done() for t in self._runs.values())

    async def shutdown(self) -> dict[str, Any]:
        """Stop every camera, count the density seconds still held and flush the store;
        returns the coordinator's health."""
        async with self._lock:
            if self._flusher is not None:
                self._flusher.cancel()
            for camera_id in list(self._actors):
                await self._stop(camera_id, forget=False)
        await self.coordinator.close_density.remote()
        await self.coordinator.flush.remote()
        return await self.coordinator.health.remote()

    # ------------------------------------------------------------------ internals

    def _launch(self, camera_id: str) -> None:
        camera = self.site.camera(camera_id)
        actor = start_camera(
            self.site,
            camera,
            self.handles,
            self.out_dir,
            self.app_prefix,
            coordinator=self.coordinator,
        )
        self._actors[camera_id] = actor
        self._final.pop(camera_id, None)
        self._runs[camera_id] = asyncio.create_task(self._run(camera_id, actor))

    async def _run(self, camera_id: str, actor: ActorHandle) -> None:
        retries = RunRetries()
        while True:
            try:
                health = await actor.run.remote()
                break
            except ray.exceptions.RayActorError as exc:
                # The actor died or is restarting (its node was lost, say): once it is
                # back, run it again and it resumes from its checkpoint; not if it was
                # stopped on purpose or keeps failing.
                stopped = actor in self._stopping or self._actors.get(camera_id) is not actor
                delay = None if stopped else retries.retry_in(exc)
                if delay is None:
                    health = _failed(camera_id, exc)
                    break
                if not isinstance(exc, ray.exceptions.ActorUnavailableError):
                    log.warning("camera %s lost (%s); running it again", camera_id, exc)
                    self.restarts[camera_id] = self.restarts.get(camera_id, 0) + 1
                await asyncio.sleep(delay)
                retries.started()
            except Exception as exc:  # the run itself failed: say so, keep the others
                health = _failed(camera_id, exc)
                break
        self._stopping.discard(actor)
        if self._actors.get(camera_id) is actor:
            # in the ledger before it is listed finished: a job then never ingests it
            await self._record_recording(camera_id, health)
            self._final[camera_id] = health
        if all(t.done() for c, t in self._runs.items() if c != camera_id):
            # Every recording has ended: count the density seconds still held and write
            # the store, so the service's readers see the whole run.
            await self._settle()

    async def _record_recording(self, camera_id: str, health: dict[str, Any]) -> None:
        """For a recording read to its end: flush the store, then write the recording to
        the ingest ledger."""
        if health.get("state") != "finished" or health.get("mode") != "forensic":
            return
        try:
            camera = self.site.camera(camera_id)
            await self.coordinator.flush.remote()
            record = await asyncio.to_thread(finished_recording_record, camera, health)
            if record is not None:
                await asyncio.to_thread(record_ingests, self.store_root, [record])
        except Exception as exc:  # the ledger must not fail the camera; jobs then use rule 3
            log.warning("could not record camera %s in the ingest ledger: %s", camera_id, exc)

    async def _settle(self) -> None:
        try:
            await self.coordinator.close_density.remote()
            await self.coordinator.flush.remote()
        except ray.exceptions.RayError as exc:
            log.warning("could not settle the coordinator: %s", exc)

    async def _flush_every(self, seconds: float) -> None:
        """Write the coordinator's buffered rows every ``seconds`` while cameras run
        (the store also flushes on writes; this covers quiet spells)."""
        while True:
            await asyncio.sleep(seconds)
            if any(not t.done() for t in self._runs.values()):
                try:
                    await self.coordinator.flush.remote()
                except ray.exceptions.RayError as exc:
                    log.warning("periodic flush failed: %s", exc)

    async def _stop(self, camera_id: str, *, forget: bool = True) -> dict[str, Any] | None:
        actor = self._actors.get(camera_id)
        if actor is None:
            return None
        task = self._runs[camera_id]
        self._stopping.add(actor)
        if not task.done():
            try:
                await asyncio.wait_for(actor.stop.remote(), HEALTH_TIMEOUT_S)
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
            except (TimeoutError, ray.exceptions.RayError) as exc:
                log.warning("camera %s did not stop cleanly: %s", camera_id, exc)
        final = self._final.get(camera_id)
        if forget:
            self._actors.pop(camera_id)
            self._runs.pop(camera_id)
        ray.kill(actor)
        return final

    async def _health(self, actor: ActorHandle) -> dict[str, Any]:
        return await asyncio.wait_for(actor.health.remote(), HEALTH_TIMEOUT_S)

    def _camera_entry(self, camera_id: str, health: Any) -> dict[str, Any]:
        camera = self.site.camera(camera_id)
        if camera_id in self._final:
            health = self._final[camera_id]
        elif isinstance(health, BaseException):
            health = {"state": "unreachable", "last_error": str(health)[:300]}
        elif health is None:
            health = {"state": "running" if camera_id in self._actors else "disabled"}
        elif health.get("state") == "finished":
            # read to the end, but its last tracklets and its ingest-ledger row are still
            # being written: "finished" only once a search sees everything it saw
            health = {**health, "state": "storing"}
        return {
            "id": camera.id,
            "source": str(camera.source),
            "fps": camera.fps,
            "resolution": list(camera.resolution),
            "enabled": camera.enabled,
            "health": health,
        }


def _failed(camera_id: str, exc: BaseException) -> dict[str, Any]:
    return {"camera_id": camera_id, "state": "failed", "last_error": str(exc)[:300]}


def start_supervisor(
    site: SiteConfig,
    out_dir: str | Path,
    store_root: str | Path,
    app_prefix: str = "sightline",
    base_dir: str | Path | None = None,
) -> ActorHandle:
    """Start (or reconnect to) the named supervisor of ``app_prefix``; call ``start``.

    It runs on the coordinator node when the cluster declares one (the rest of the unit
    the coordinator leaves, :func:`~actors.coordinator.coordinator_node_options`)."""
    return PipelineSupervisor.options(  # type: ignore[attr-defined]
        name=supervisor_name(app_prefix),
        get_if_exists=True,
        num_cpus=SUPERVISOR_NUM_CPUS,
        **coordinator_node_options(1.0 - COORDINATOR_SHARE),
    ).remote(
        site,
        str(out_dir),
        str(store_root),
        app_prefix,
        str(base_dir) if base_dir is not None else None,
    )
