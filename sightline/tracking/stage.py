"""The tracking stage of a camera: detections -> tracker -> tracklets -> embedder -> sink.

:class:`TrackingStage` is what the camera actor hands each detected frame to (it is a
:class:`~sightline.ingest.DetectionSink`, async). It stays Ray-free: the embedder is an
injected async callable (the actor passes the Serve deployment's ``embed``), so the
stage runs the same in a test with a local model. So is the optional hat-and-bag reader
(``read_attributes``: the deployment's ``read_attributes``), run on the crops kept for
the embedder.

:meth:`TrackingStage.checkpoint` / :meth:`TrackingStage.restore` carry the stage's state
(tracker, open tracks, counters) over to a new stage of the same camera and run id: a
restarted camera that resumes its recording after the checkpointed frame emits the same
tracklet ids and versions as an uninterrupted run would (given the same detections).
"""

from __future__ import annotations

import inspect
import pickle
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from sightline.config import CameraConfig, TrackingConfig
from sightline.density.counting import GroundFrame
from sightline.ingest.reader import Frame
from sightline.ingest.sink import DetectionSink
from sightline.models.core import Detections
from sightline.tracking.core import ByteTracker, IdCounter
from sightline.tracking.sink import TrackletSink
from sightline.tracking.tracklets import (
    Crop,
    TrackletBuilder,
    TrackletDraft,
    crop_box,
    crops_to_embed,
    crops_to_read,
)

__all__ = ["EmbedFn", "GroundFn", "ReadAttributesFn", "TrackingStage"]

EmbedFn = Callable[[list[np.ndarray]], Awaitable[np.ndarray]]
ReadAttributesFn = Callable[[list[np.ndarray]], Awaitable[np.ndarray]]
"""Crops -> ``(N, 2)`` ``P(hat), P(bag)`` (the Embedder deployment's ``read_attributes``)."""
GroundFn = Callable[[GroundFrame], object]
_MAX_RETRY_DRAFTS = 1000  # drafts kept for a retry while the embedder is down


class TrackingStage:
    """Track one camera and emit its tracklets (see the module docstring).

    ``detections`` optionally receives every frame's raw detections too, and ``ground``
    (sync or async) every frame's tracked people on the ground (:class:`GroundFrame`,
    for crowd density). ``run_id`` makes tracklet ids unique across restarts (default:
    the start time in ms).
    """

    def __init__(
        self,
        camera: CameraConfig,
        embed: EmbedFn,
        tracklets: TrackletSink,
        *,
        config: TrackingConfig | None = None,
        detections: DetectionSink | None = None,
        ground: GroundFn | None = None,
        run_id: str | None = None,
        read_attributes: ReadAttributesFn | None = None,
    ) -> None:
        self.camera_id = camera.id
        self.config = config or TrackingConfig()
        self._embed = embed
        self._read_attributes = read_attributes
        self._sink = tracklets
        self._detections = detections
        self._ground = ground
        self._tracker = ByteTracker(self.config.tracker, fps=camera.fps, ids=IdCounter())
        run_id = run_id or str(int(time.time() * 1000))
        self._builder = TrackletBuilder(camera, self.config, run_id=run_id)
        self._retry: list[TrackletDraft] = []
        self._last_ts = 0.0
        self.stats: dict[str, Any] = {
            "tracks_active": 0,
            "tracklets_emitted": 0,
            "crops_embedded": 0,
            "embed_errors": 0,
            "last_embed_error": None,
            "crops_read": 0,
            "attribute_errors": 0,
            "last_attribute_error": None,
        }

    async def write(
        self,
        camera_id: str,
        frame: Frame,
        detections: Detections,
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Track one frame (frames arrive in order, once each).

        ``embeddings`` (a row per detection) may be given when they are already known;
        otherwise, with the appearance cue on, the detections' crops are embedded here.
        """
        if self._detections is not None:
            self._detections.write(camera_id, frame, detections)
        ts = frame.ts.timestamp()
        self._last_ts = ts
        if not self.config.appearance:
            embeddings = None
        elif embeddings is None and len(detections):
            crops = [crop_box(frame.image, box) for box in detections.xyxy]
            embeddings = await self._embed_or_none(crops)
        step = self._tracker.update(detections, ts, embeddings)
        self._builder.observe(ts, frame.image, step, detections.xyxy, embeddings)
        if self._ground is not None:
            ids = tuple(self._builder.tracklet_id(t) for t in step.track_ids.tolist())
            points = self._builder.ground_points(step)
            await _maybe_await(self._ground(GroundFrame(camera_id, ts, points, ids)))
        self.stats["tracks_active"] = len(self._tracker.active_ids)
        await self._emit(self._builder.collect(ts, step.ended))

    @property
    def run_id(self) -> str:
        """The run id in this stage's tracklet ids (``<camera>-<run_id>-<track>``)."""
        return self._builder.run_id

    def checkpoint(self) -> bytes:
        """The state after the frames written so far (tracker, open tracks with their
        crops, drafts waiting for the embedder, counters), pickled; see :meth:`restore`."""
        state = {
            "camera_id": self.camera_id,
            "run_id": self._builder.run_id,
            "tracker": self._tracker,
            "tracks": self._builder._tracks,
            "retry": self._retry,
            "last_ts": self._last_ts,
            "stats": self.stats,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, checkpoint: bytes) -> None:
        """Go on from a :meth:`checkpoint` of a stage of the same camera and run id (before
        any frame was written to this one); ``ValueError`` if it is another's."""
        state = pickle.loads(checkpoint)  # our own checkpoint
        if (state["camera_id"], state["run_id"]) != (self.camera_id, self._builder.run_id):
            raise ValueError(
                f"checkpoint of {state['camera_id']} run {state['run_id']}, not of "
                f"{self.camera_id} run {self._builder.run_id}"
            )
        self._tracker = state["tracker"]
        self._builder._tracks = state["tracks"]
        self._retry = state["retry"]
        self._last_ts = state["last_ts"]
        self.stats = {**self.stats, **state["stats"]}  # counters added since start at 0

    async def close(self) -> None:
        """End every track, emit the final versions and close the sinks."""
        self._tracker.finish()
        await self._emit(self._builder.collect(self._last_ts, [], final=True))
        self.stats["tracks_active"] = 0
        if self._detections is not None:
            self._detections.close()
        await _maybe_await(self._sink.close())

    async def _embed_or_none(self, crops: list[np.ndarray]) -> np.ndarray | None:
        try:
            vectors = np.asarray(await self._embed(crops))
        except Exception as exc:  # the embedder being down must not stop tracking
            self.stats["embed_errors"] += 1
            self.stats["last_embed_error"] = f"{type(exc).__name__}: {exc}"[:500]
            return None
        self.stats["crops_embedded"] += len(crops)
        return vectors

    async def _read(self, crops: list[Crop]) -> None:
        """Read the crops' hat and bag; on an error they stay unread (the tracklets then
        record none) and the next version tries again: a failing reader never stops
        tracking."""
        if self._read_attributes is None or not crops:
            return
        try:
            read = np.asarray(await self._read_attributes([c.pixels for c in crops]))
            if read.shape != (len(crops), 2):
                raise ValueError(f"expected ({len(crops)}, 2) readings, got {read.shape}")
        except Exception as exc:
            self.stats["attribute_errors"] += 1
            self.stats["last_attribute_error"] = f"{type(exc).__name__}: {exc}"[:500]
            return
        for crop, row in zip(crops, read, strict=True):
            crop.attributes = row.astype(np.float32)
        self.stats["crops_read"] += len(crops)

    async def _emit(self, drafts: list[TrackletDraft]) -> None:
        # a retried draft is superseded by a newer version of the same tracklet
        latest = {d.tracklet_id: d for d in self._retry + drafts}
        drafts = list(latest.values())
        if not drafts:
            return
        crops = crops_to_embed(drafts)
        if crops:
            vectors = await self._embed_or_none([c.pixels for c in crops])
            if vectors is None:
                self._retry = drafts[-_MAX_RETRY_DRAFTS:]  # try again at the next emission
                return
            for crop, vector in zip(crops, vectors, strict=True):
                crop.embedding = np.asarray(vector, dtype=np.float32)
        self._retry = []
        await self._read(crops_to_read(drafts))
        tracklets = [d.complete() for d in drafts]
        await _maybe_await(self._sink.write(tracklets))
        self.stats["tracklets_emitted"] += len(tracklets)


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result
