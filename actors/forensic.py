"""Forensic ingest of recorded footage for a search job, on Ray.

A thin layer over :mod:`sightline.search.forensic` (the plan) run inside the
:class:`~actors.search_jobs.SearchJobs` actor's event loop. :class:`ForensicIngest`
ingests a job's :class:`~sightline.search.forensic.IngestWindow` s through the running
pipeline, exactly as the pipeline ingests a camera: one
:class:`~actors.camera.CameraActor` per window (forensic mode, every sampled frame, the
reader seeking to the window's start and ending after it), sending frames to the
pipeline's Detector and crops to its Embedder deployments and tracklets to the pipeline's
coordinator, which fuses them with everything else and stores them. The actors send no
ground points (``density=False``): past footage must not move live density counts.

Progress (frames done of frames expected, per window) is read from the actors' health
every ``poll_s`` into the job. When every window has ended the coordinator's store is
flushed, then the windows read to their end are written to the store's ingest ledger
(:mod:`sightline.store.ingests`), so later jobs do not ingest them again; a window
stopped by a cancel is recorded up to its last frame. A window whose recording cannot be
read ends ``failed`` with the reader's error; the others go on. The actors are killed at
the end.

Actors are named ``<app_prefix>-<job_id>-w<i>-camera-<camera>`` and write their Parquet
parts and checkpoints under ``<run folder>/forensic/<job_id>/w<i>``, apart from the
pipeline's own camera actors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.pipeline import RunRetries, start_camera
from serve.deployments import ModelHandles
from sightline.config import SiteConfig
from sightline.search.forensic import IngestWindow
from sightline.search.jobs import SearchJob
from sightline.store.ingests import IngestRecord, record_ingests

__all__ = ["ForensicIngest", "PipelineContext"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 5.0


@dataclass
class PipelineContext:
    """The running pipeline as a job's ingest uses it (from the supervisor)."""

    site: SiteConfig
    out_dir: Path
    store_root: str
    app_prefix: str
    busy: dict[str, str]
    coordinator: ActorHandle
    handles: ModelHandles


def _error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    root = cause if isinstance(cause, BaseException) else exc
    return f"{type(root).__name__}: {root}"[:500]


class ForensicIngest:
    """Ingest ``windows`` for ``job`` through the pipeline ``context`` (module docstring).

    :meth:`run` returns once every window has ended; :meth:`stop` (a cancel) asks every
    camera to stop now; ``done`` is set at the end (other jobs waiting on these windows
    wait on it).
    """

    def __init__(
        self,
        job: SearchJob,
        windows: Sequence[IngestWindow],
        context: PipelineContext,
        *,
        poll_s: float = 0.5,
    ) -> None:
        self.job = job
        self.windows = list(windows)
        self.context = context
        self.poll_s = poll_s
        self.done = asyncio.Event()
        self._actors: dict[int, ActorHandle] = {}
        self._stopping = False
        self._stopped_at: float | None = None
        self._out = context.out_dir / "forensic" / job.job_id

    async def run(self) -> None:
        """Start a camera actor per window, follow their progress, and settle."""
        try:
            for i, window in enumerate(self.windows):
                if self._stopping:
                    self.job.update_window(i, state="cancelled")
                    continue
                try:
                    self._actors[i] = await asyncio.to_thread(self._start, i, window)
                except Exception as exc:  # a bad camera config: this window fails alone
                    self.job.update_window(i, state="failed", error=_error(exc))
                    continue
                if self._stopping:  # cancelled while it was being created
                    self._actors[i].stop.remote()
                self.job.update_window(i, state="ingesting")
            runs = {
                asyncio.create_task(self._run_one(i, actor)): i for i, actor in self._actors.items()
            }
            waiting = set(runs)
            while waiting:
                _, waiting = await asyncio.wait(waiting, timeout=self.poll_s)
                if self._stopped_at is not None and (
                    time.monotonic() - self._stopped_at > STOP_TIMEOUT_S
                ):
                    for task in waiting:  # stopped but not ending: killed below
                        task.cancel()
                        self.job.update_window(runs[task], state="cancelled")
                    break
                await self._poll([runs[t] for t in waiting])
            await self._settle()
        finally:
            for actor in self._actors.values():
                ray.kill(actor, no_restart=True)
            self.done.set()

    def stop(self) -> None:
        """Ask every camera to stop now (a cancel); :meth:`run` then records what each
        had ingested and ends."""
        self._stopping = True
        self._stopped_at = time.monotonic()
        for actor in self._actors.values():
            actor.stop.remote()

    # ------------------------------------------------------------------ internals

    def _start(self, i: int, window: IngestWindow) -> ActorHandle:
        site = self.context.site
        camera = site.camera(window.camera_id).model_copy(update={"mode": "forensic"})
        reader = {
            "window_start_s": window.start_s,
            "window_end_s": window.end_s,
            "realtime": False,
        }
        actor = start_camera(
            site,
            camera,
            self.context.handles,
            self._out / f"w{i}",
            f"{self.context.app_prefix}-{self.job.job_id}-w{i}",
            coordinator=self.context.coordinator,
            camera_options={"reader_options": reader, "density": False},
        )
        return actor

    async def _run_one(self, i: int, actor: ActorHandle) -> None:
        retries = RunRetries()
        try:
            while True:
                try:
                    health = await actor.run.remote()
                    break
                except ray.exceptions.RayActorError as exc:
                    delay = None if self._stopping else retries.retry_in(exc)
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)  # it restarts and resumes from its checkpoint
                    retries.started()
        except Exception as exc:
            state = "cancelled" if self._stopping else "failed"
            self.job.update_window(i, state=state, error=None if self._stopping else _error(exc))
            return
        self.job.update_window(i, **self._outcome(health))

    def _outcome(self, health: dict[str, Any]) -> dict[str, Any]:
        fields = self._figures(health)
        unacknowledged = health.get("unacknowledged", 0)
        if health.get("state") == "failed":
            fields.update(state="failed", error=health.get("last_error") or "the reader failed")
        elif unacknowledged:
            fields.update(
                state="failed",
                error=f"{unacknowledged} tracklets were never acknowledged by the coordinator",
            )
        elif self._stopping or health.get("state") == "stopped":
            fields.update(state="cancelled")
        else:
            fields.update(state="done", progress=1.0)
        fields["last_frame_time"] = health.get("last_frame_time")
        return fields

    @staticmethod
    def _figures(health: dict[str, Any]) -> dict[str, Any]:
        return {
            "frames_done": int(health.get("frames_detected", 0)),
            "progress": float(health.get("progress") or 0.0),
            "tracklets": int(health.get("tracklets_emitted", 0)),
        }

    async def _poll(self, running: list[int]) -> None:
        refs = {i: self._actors[i].health.remote() for i in running}
        for i, ref in refs.items():
            try:
                health = await asyncio.wait_for(ref, HEALTH_TIMEOUT_S)
            except (TimeoutError, ray.exceptions.RayError):
                continue  # restarting: the next poll tells
            window = self.job.ingest["windows"][i] if self.job.ingest else {}
            if window.get("state") == "ingesting":
                self.job.update_window(i, **self._figures(health))

    async def _settle(self) -> None:
        """Flush the store, then record the windows ingested (whole or up to a cancel)."""
        windows = self.job.ingest["windows"] if self.job.ingest else []
        records = []
        for window, entry in zip(self.windows, windows, strict=True):
            end = window.end
            if entry["state"] == "cancelled" and entry.get("last_frame_time"):
                end = min(end, datetime.fromisoformat(entry["last_frame_time"]))
            elif entry["state"] != "done":
                continue
            if end > window.start:
                records.append(
                    IngestRecord(
                        window.camera_id,
                        window.source,
                        window.start,
                        end,
                        "forensic",
                        self.job.job_id,
                        entry["frames_done"],
                        entry["tracklets"],
                    )
                )
        if not self._actors:
            return
        await self.context.coordinator.flush.remote()
        if records:
            await asyncio.to_thread(record_ingests, self.context.store_root, records)
