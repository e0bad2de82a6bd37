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
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.serve.handle import DeploymentHandle

from actors.coordinator import CoordinatorSink, GroundSender
from sightline.config import CameraConfig, TrackingConfig
from sightline.ingest import DetectionSink, Frame, FrameReader, ParquetDetectionSink
from sightline.ingest.reader import Mode, ReaderSettings
from sightline.models.core import Detections
from sightline.tracking.sink import ParquetTrackletSink, TeeTrackletSink, TrackletSink
from sightline.tracking.stage import TrackingStage

__all__ = ["CameraActor"]


@ray.remote
class CameraActor:
    """Decode one camera, send its frames to the detector, and sink the detections.

    ``mode`` defaults to ``live`` for streams and ``forensic`` for files. Detections go to
    ``sink`` or, by default, to Parquet parts under ``out_dir`` written every
    ``flush_every`` frames. With an ``embedder`` handle (and no ``sink``) the camera also
    tracks: tracklets go to ``<out_dir>/tracklets`` (``tracking`` configures the tracker
    and emission) and, with a ``coordinator`` handle, also to the coordinator (retried
    until acknowledged). ``reader_options`` overrides :class:`ReaderSettings` fields
    (``queue_size``, ``max_reconnects``, ``timeout_s``, ...).
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
    ) -> None:
        if sink is None and out_dir is None:
            raise ValueError("CameraActor needs a sink or an out_dir for the default sink")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.camera_id = camera.id
        settings = ReaderSettings.from_camera(camera, mode, **(reader_options or {}))
        self._reader = FrameReader(camera.source, settings)
        self._detector = detector
        self._tracking: TrackingStage | None = None
        self._to_coordinator: CoordinatorSink | None = None
        self._ground: GroundSender | None = None
        if sink is None:
            sink = ParquetDetectionSink(str(out_dir), camera.id, flush_every)
            if embedder is not None:
                tracklet_sink: TrackletSink = ParquetTrackletSink(str(out_dir), camera.id)
                if coordinator is not None:
                    self._to_coordinator = CoordinatorSink(coordinator)
                    tracklet_sink = TeeTrackletSink(tracklet_sink, self._to_coordinator)
                    self._ground = GroundSender(coordinator, camera.id)
                sink = self._tracking = TrackingStage(
                    camera,
                    embedder.embed.remote,
                    tracklet_sink,
                    config=tracking,
                    detections=sink,
                    ground=self._ground.add if self._ground else None,
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

    async def run(self) -> dict[str, Any]:
        """Decode and detect until a file finishes or :meth:`stop` is called; returns health."""
        if self._started:
            raise RuntimeError(f"camera {self.camera_id} is already running")
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
        return await self.health()

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
            "last_detector_error": self._last_detector_error,
            "last_sink_error": self._last_sink_error,
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
                finally:
                    # The slot is freed only once the frame has left the actor, so frames
                    # waiting for a slow sink (the tracker, the embedder) stay bounded.
                    self._slots.release()

    async def _write(self, frame: Frame, detections: Detections) -> None:
        self._stats["frames_detected"] += 1
        self._stats["detections"] += len(detections)
        await self._call_sink(self._sink.write, self.camera_id, frame, detections)

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
