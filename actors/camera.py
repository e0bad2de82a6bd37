"""CameraActor: one async Ray actor per camera, decode -> detect -> track -> embed -> sink.

A thin Ray layer over :mod:`sightline.ingest` and :mod:`sightline.tracking`: a
:class:`~sightline.ingest.FrameReader` decodes and samples the camera in a background
thread; each frame goes to the detector deployment (at most ``max_in_flight`` requests
outstanding); the answers go, in frame order, to a
:class:`~sightline.ingest.DetectionSink`. With an embedder handle that sink is the
:class:`~sightline.tracking.stage.TrackingStage` (tracker, tracklets, crops batched to
the embedder deployment), writing tracklets and the raw detections as Parquet. A failing
request is counted and its frame skipped; a failing source is the reader's business
(reconnect with backoff).

Restarts. The actor is restartable (``max_restarts``; a lost node or a crash brings it
back on another node that has room) and its owner calls :meth:`CameraActor.run` again
(a second call while a run is on waits for that run). Tracklet ids are
``<camera>-<run_id>-<track>``, and ``run_id`` is a constructor argument, so a restarted
actor (same arguments) names its tracks as before:

- a recording (``forensic``) with an ``out_dir`` checkpoints every ``checkpoint_every``
  detected frames to ``<out_dir>/checkpoints/camera_id=<id>.pkl`` (written atomically):
  the last frame fully handed to the sinks (its pts, the sampler's grid, the time
  origin), the tracker and its open tracks, the tracklet batches the coordinator has
  not acknowledged yet, the counters and the numbers of the next Parquet parts. A
  restarted actor loads it, deletes the parts written after it, and resumes decoding
  right after that frame with the restored tracker: the same frames give the same
  tracklet ids and versions, which the coordinator (idempotent on (tracklet_id,
  version)) acknowledges again without storing them twice, and the unacknowledged
  batches are sent again. Without a checkpoint it starts the recording over (same
  ids again). Density ground points are best effort: those of the frames between the
  checkpoint and the failure are sent twice (late ones are counted as late).
- a live stream (``live``) resumes at the stream's present with a fresh tracker; its
  run id gets a suffix (the restart time), so new tracks never reuse acknowledged ids.
  Tracks open at the failure keep their last acknowledged (partial) version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import pickle
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.serve.handle import DeploymentHandle

from actors.coordinator import CoordinatorSink, GroundSender
from sightline.config import CameraConfig, TrackingConfig
from sightline.durable import fsync_path
from sightline.ingest import DetectionSink, Frame, FrameReader, ParquetDetectionSink
from sightline.ingest.reader import Mode, ReaderSettings
from sightline.ingest.sink import discard_parts, next_part_number
from sightline.models.core import Detections
from sightline.tracking.sink import ParquetTrackletSink, TeeTrackletSink, TrackletSink
from sightline.tracking.stage import TrackingStage

__all__ = ["CHECKPOINT_FORMAT", "CameraActor", "checkpoint_path", "read_checkpoint"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# restored from a checkpoint; detector_in_flight is about this incarnation only
_RESTORED_STATS = ("detector_errors", "frames_detected", "detections", "sink_errors")


def checkpoint_path(out_dir: str | Path, camera_id: str) -> Path:
    """Where the camera actor of ``camera_id`` keeps its resume point under ``out_dir``."""
    return Path(out_dir) / "checkpoints" / f"camera_id={camera_id}.pkl"


def read_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """A camera checkpoint (a dict), or None when there is none; raises on a damaged one."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    state = pickle.loads(data)  # our own file, under the pipeline's out_dir
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a camera checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


@ray.remote(max_restarts=-1, max_task_retries=0)
class CameraActor:
    """Decode one camera, send its frames to the detector, and sink the detections.

    ``mode`` defaults to ``live`` for streams and ``forensic`` for files. Detections go to
    ``sink`` or, by default, to Parquet parts under ``out_dir`` written every
    ``flush_every`` frames. With an ``embedder`` handle (and no ``sink``) the camera also
    tracks: tracklets go to ``<out_dir>/tracklets`` (``tracking`` configures the tracker
    and emission) and, with a ``coordinator`` handle, also to the coordinator (retried
    until acknowledged). ``reader_options`` overrides :class:`ReaderSettings` fields
    (``queue_size``, ``max_reconnects``, ``timeout_s``, ...).

    ``density=False`` sends no ground points to the coordinator (and never tells it the
    camera finished): a forensic ingest of past footage by a search job must not touch
    the live density counts of the same camera.

    ``run_id`` goes into the tracklet ids (default: derived from the actor id, which a
    restart keeps); a recording with an ``out_dir`` checkpoints every
    ``checkpoint_every`` detected frames (default ``flush_every``, so the detection parts
    and the checkpoints line up) and a restarted actor resumes from there (module
    docstring).
    """

    def __init__(  # noqa: PLR0913 (keyword-only options of one actor, each with a default)
        self,
        camera: CameraConfig,
        detector: DeploymentHandle,
        *,
        out_dir: str | Path | None = None,
        sink: DetectionSink | None = None,
        mode: Mode | None = None,
        max_in_flight: int = 4,
        flush_every: int = 100,
        reader_options: dict[str, Any] | None = None,
        embedder: DeploymentHandle | None = None,
        tracking: TrackingConfig | None = None,
        coordinator: ActorHandle | None = None,
        run_id: str | None = None,
        checkpoint_every: int | None = None,
        density: bool = True,
    ) -> None:
        if sink is None and out_dir is None:
            raise ValueError("CameraActor needs a sink or an out_dir for the default sink")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        checkpoint_every = flush_every if checkpoint_every is None else checkpoint_every
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        self.camera_id = camera.id
        self._density = density
        context = ray.get_runtime_context()
        self._node_id = context.get_node_id()
        self._run_id = run_id or context.get_actor_id()[:12]
        settings = ReaderSettings.from_camera(camera, mode, **(reader_options or {}))
        self._checkpoint_every = checkpoint_every
        self._checkpoint_path: Path | None = None
        if out_dir is not None and sink is None and settings.mode == "forensic":
            self._checkpoint_path = checkpoint_path(out_dir, camera.id)
        self._checkpoint_stats = {"checkpoints": 0, "checkpoint_errors": 0}
        self._last_checkpoint_error: str | None = None
        with warnings.catch_warnings():  # Ray reads it through a deprecated state call
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = bool(context.was_current_actor_reconstructed)
        checkpoint, settings = self._resume_point(restarted, settings)
        self._reader = FrameReader(camera.source, settings)
        self._detector = detector
        self._tracking: TrackingStage | None = None
        self._to_coordinator: CoordinatorSink | None = None
        self._ground: GroundSender | None = None
        self._detections_out: ParquetDetectionSink | None = None
        self._tracklets_out: ParquetTrackletSink | None = None
        self._part_folders: dict[str, Path] = {}
        if sink is None:
            sink = self._default_sinks(
                camera, Path(str(out_dir)), flush_every, embedder, tracking, coordinator, checkpoint
            )
        self._sink = sink
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[int, tuple[Frame, Detections | None]] = {}
        self._next_index = 0
        self._emit_lock = asyncio.Lock()
        self._started = False
        self._stats = {
            "detector_in_flight": 0,
            "detector_errors": 0,
            "frames_detected": 0,
            "detections": 0,
            "sink_errors": 0,
        }
        self._last_detector_error: str | None = None
        self._last_sink_error: str | None = None
        self._run_task: asyncio.Future[dict[str, Any]] | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self._checkpoint_path is not None:
            # the resume point of a run that has processed nothing yet: a restart before
            # the first checkpoint starts over with the same ids and drops its own parts
            self._save_checkpoint(self._checkpoint_state(None, self._next_parts()))

    def _resume_point(
        self, restarted: bool, settings: ReaderSettings
    ) -> tuple[dict[str, Any] | None, ReaderSettings]:
        """After a restart: this run's checkpoint (if any) and the reader settings that
        resume after its frame; a live camera instead gets a fresh run id."""
        self._restarts = 1 if restarted else 0
        self._resumed_after_s: float | None = None
        self._finished: dict[str, Any] | None = None  # the final health, from a checkpoint
        if not restarted:
            return None, settings
        if settings.mode == "live":
            # a live restart joins the stream's present with a fresh tracker: new ids
            self._run_id = f"{self._run_id}.{int(time.time() * 1000)}"
            return None, settings
        checkpoint = self._load_checkpoint()
        if checkpoint is None:
            return None, settings
        self._restarts = checkpoint["restarts"] + 1
        self._finished = checkpoint["finished"]
        if checkpoint["reader"] is not None:
            settings = dataclasses.replace(settings, **checkpoint["reader"])
            self._resumed_after_s = settings.resume_after_s
        return checkpoint, settings

    def _default_sinks(
        self,
        camera: CameraConfig,
        out: Path,
        flush_every: int,
        embedder: DeploymentHandle | None,
        tracking: TrackingConfig | None,
        coordinator: ActorHandle | None,
        checkpoint: dict[str, Any] | None,
    ) -> DetectionSink:
        """Parquet detections, and with an embedder the tracking stage (Parquet tracklets,
        plus the coordinator when given). Parts written after ``checkpoint`` are dropped
        first: this actor writes those frames again."""
        self._part_folders = {
            "detections": out / "detections" / f"camera_id={camera.id}",
            "tracklets": out / "tracklets" / f"camera_id={camera.id}",
        }
        if checkpoint is not None:
            for kind, folder in self._part_folders.items():
                discard_parts(folder, checkpoint["parts"][kind])
        sink: DetectionSink = ParquetDetectionSink(str(out), camera.id, flush_every)
        self._detections_out = sink
        if embedder is None:
            return sink
        self._tracklets_out = ParquetTrackletSink(str(out), camera.id)
        tracklet_sink: TrackletSink = self._tracklets_out
        if coordinator is not None:
            self._to_coordinator = CoordinatorSink(coordinator)
            tracklet_sink = TeeTrackletSink(tracklet_sink, self._to_coordinator)
            if self._density:
                self._ground = GroundSender(coordinator, camera.id)
        self._tracking = TrackingStage(
            camera,
            embedder.embed.remote,
            tracklet_sink,
            config=tracking,
            detections=sink,
            ground=self._ground.add if self._ground else None,
            run_id=self._run_id,
            read_attributes=embedder.read_attributes.remote,
        )
        return self._tracking

    async def run(self) -> dict[str, Any]:
        """Decode and detect until a file finishes or :meth:`stop` is called; returns health.

        Calling it again while it runs waits for the same run (an owner re-issuing it
        after a restart or a lost reply does no harm); after a restart from a checkpoint
        of a finished run it returns that run's final health at once.
        """
        if self._run_task is None:
            self._run_task = asyncio.ensure_future(self._run())
        return await asyncio.shield(self._run_task)

    async def _run(self) -> dict[str, Any]:
        if self._finished is not None:
            return {**self._finished, **self._restart_info()}
        self._started = True
        self._reader.start()
        try:
            # Take a slot before the frame: in live mode the frame taken is then the newest.
            while await self._slots.acquire():
                frame = await self._next_frame()
                if frame is None:
                    self._slots.release()
                    break
                task = asyncio.create_task(self._detect(frame))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._tasks:
                await asyncio.gather(*self._tasks)
        finally:
            await asyncio.to_thread(self._reader.stop)
            await self._call_sink(self._sink.close)
            if self._ground is not None:
                await self._call_sink(self._ground.close)
        health = await self.health()
        if self._checkpoint_path is not None:
            # a restart after the end (the node is lost before the owner stops the actor)
            # must not decode the recording again
            state = self._checkpoint_state(None, self._next_parts())
            state["finished"] = health
            await asyncio.to_thread(self._save_checkpoint, state)
        return health

    async def stop(self) -> None:
        """Stop decoding; :meth:`run` returns once the requests in flight are answered."""
        await asyncio.to_thread(self._reader.stop)

    async def health(self) -> dict[str, Any]:
        """Reader health plus detector requests in flight, errors and frames detected."""
        return {
            "camera_id": self.camera_id,
            **self._reader.health().to_dict(),
            **self._stats,
            **(self._tracking.stats if self._tracking else {}),
            **(self._to_coordinator.stats if self._to_coordinator else {}),
            **(self._ground.stats if self._ground else {}),
            **self._checkpoint_stats,
            **self._restart_info(),
            "last_detector_error": self._last_detector_error,
            "last_sink_error": self._last_sink_error,
            "last_checkpoint_error": self._last_checkpoint_error,
        }

    def _restart_info(self) -> dict[str, Any]:
        return {
            "node_id": self._node_id,
            "run_id": self._run_id,
            "restarts": self._restarts,
            "resumed_after_s": self._resumed_after_s,
        }

    async def _next_frame(self) -> Frame | None:
        while True:
            try:
                return await asyncio.to_thread(self._reader.get, 1.0)
            except TimeoutError:
                continue

    async def _detect(self, frame: Frame) -> None:
        self._stats["detector_in_flight"] += 1
        detections: Detections | None = None
        try:
            result = await self._detector.detect.remote(frame.image)
            if not isinstance(result, Detections):
                raise TypeError(f"detector returned {type(result).__name__}, not Detections")
            detections = result
        except Exception as exc:  # a bad answer skips the frame, never the camera
            self._stats["detector_errors"] += 1
            self._last_detector_error = _short_error(exc)
        finally:
            self._stats["detector_in_flight"] -= 1
        self._pending[frame.index] = (frame, detections)
        await self._emit_in_order()

    async def _emit_in_order(self) -> None:
        # Answers come back out of order; the sink (the tracker) needs frame order,
        # and the lock keeps it even when an async sink yields mid-write.
        async with self._emit_lock:
            while self._next_index in self._pending:
                frame, detections = self._pending.pop(self._next_index)
                self._next_index += 1
                try:
                    if detections is not None:
                        await self._write(frame, detections)
                        if (
                            self._checkpoint_path is not None
                            and self._stats["frames_detected"] % self._checkpoint_every == 0
                        ):
                            await self._checkpoint(frame)
                finally:
                    # The slot is freed only once the frame has left the actor, so frames
                    # waiting for a slow sink (the tracker, the embedder) stay bounded.
                    self._slots.release()

    async def _write(self, frame: Frame, detections: Detections) -> None:
        self._stats["frames_detected"] += 1
        self._stats["detections"] += len(detections)
        await self._call_sink(self._sink.write, self.camera_id, frame, detections)

    # ------------------------------------------------------------------ checkpoints

    async def _checkpoint(self, frame: Frame) -> None:
        """Record the resume point after ``frame`` (every earlier frame is in the sinks).

        Called with the emit lock held, so no other frame reaches the sinks meanwhile.
        """
        if self._detections_out is not None:
            await self._call_sink(self._detections_out.flush)  # its rows are on disk
        try:
            reader = self._reader.resume_settings(frame)
            state = self._checkpoint_state(reader, self._next_parts())
        except Exception as exc:  # a checkpoint must never stop the camera
            self._checkpoint_stats["checkpoint_errors"] += 1
            self._last_checkpoint_error = _short_error(exc)
            return
        await asyncio.to_thread(self._save_checkpoint, state)

    def _next_parts(self) -> dict[str, int]:
        parts = {k: next_part_number(f) for k, f in self._part_folders.items()}
        if self._detections_out is not None:
            parts["detections"] = self._detections_out.next_part
        if self._tracklets_out is not None:
            parts["tracklets"] = self._tracklets_out.next_part
        return parts

    def _checkpoint_state(
        self, reader: dict[str, Any] | None, parts: dict[str, int]
    ) -> dict[str, Any]:
        """Everything a restarted actor needs to go on after the last frame written; the
        pickled parts are taken now, so later frames cannot change them."""
        sink = self._to_coordinator
        return {
            "format": CHECKPOINT_FORMAT,
            "camera_id": self.camera_id,
            "run_id": self._run_id,
            "written_at": datetime.now(UTC).isoformat(),
            "restarts": self._restarts,
            "finished": None,
            "reader": reader,
            "parts": parts,
            "stats": {k: self._stats[k] for k in _RESTORED_STATS},
            "tracking": self._tracking.checkpoint() if self._tracking else None,
            "coordinator": (
                pickle.dumps((sink.pending(), dict(sink.stats)), pickle.HIGHEST_PROTOCOL)
                if sink is not None
                else None
            ),
        }

    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically; a failure is counted (the run goes on without it)."""
        assert self._checkpoint_path is not None
        try:
            _write_atomically(self._checkpoint_path, pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # a full disk costs the resume point, not the camera
            self._checkpoint_stats["checkpoint_errors"] += 1
            self._last_checkpoint_error = _short_error(exc)
            return
        self._checkpoint_stats["checkpoints"] += 1

    def _load_checkpoint(self) -> dict[str, Any] | None:
        """This run's checkpoint after a restart (None: none, another run's, or damaged)."""
        if self._checkpoint_path is None:
            return None
        try:
            state = read_checkpoint(self._checkpoint_path)
        except Exception as exc:  # damaged: start the recording over (same ids)
            log.warning("camera %s: unreadable checkpoint, starting over: %s", self.camera_id, exc)
            self._last_checkpoint_error = _short_error(exc)
            return None
        if state is None or (state["camera_id"], state["run_id"]) != (
            self.camera_id,
            self._run_id,
        ):
            return None  # none yet, or a previous pipeline run's
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        self._stats.update(state["stats"])
        if self._tracking is not None and state["tracking"] is not None:
            self._tracking.restore(state["tracking"])
        if self._to_coordinator is not None and state["coordinator"] is not None:
            pending, stats = pickle.loads(state["coordinator"])  # our own checkpoint
            self._to_coordinator.restore(pending, stats)

    async def _call_sink(self, method: Callable[..., object], *args: object) -> None:
        """Call a sink method (sync or async); failures are counted, not raised."""
        try:
            result = method(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a full disk must not stop the camera; health says so
            self._stats["sink_errors"] += 1
            self._last_sink_error = _short_error(exc)


def _short_error(exc: BaseException, limit: int = 500) -> str:
    """``Type: message`` of the root cause (a replica's error, not Ray's traceback)."""
    cause = getattr(exc, "cause", None)
    root = cause if isinstance(cause, BaseException) else exc
    text = f"{type(root).__name__}: {root}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
