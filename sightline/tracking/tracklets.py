"""Tracklets: what a camera reports about each person it tracks.

A :class:`TrackletBuilder` follows one camera's tracker. For every tracked box it keeps
the time, box, score and foot-point (image pixels and ground metres through the camera
homography), judges the crop's quality, names the clothing colours and estimates the
height; it keeps the best few crops for the embedder and the best one as thumbnail.

It emits a tracklet when a track ends and every ``emit_every_s`` while it lasts, each
time with the full history so far and a higher ``version``: a later version supersedes
an earlier one of the same ``tracklet_id``. Crops are embedded outside (the embedder is
a Ray Serve deployment): :meth:`TrackletBuilder.collect` returns drafts listing the crops
still to embed (:func:`crops_to_embed`), and :meth:`TrackletDraft.complete` turns a
draft into a :class:`Tracklet` once they have their vectors. The same crops may be read
for a hat and a bag (:func:`crops_to_read`; the tracklet records the mean ``P(hat)`` and
``P(bag)`` of its read crops). Embeddings and readings of an earlier version are reused.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from sightline.config import CameraConfig, TrackingConfig
from sightline.geometry import apply_homography, box_foot_points
from sightline.models.core import l2_normalise
from sightline.tracking import attributes
from sightline.tracking.camera_model import GroundCamera, heights_from_boxes
from sightline.tracking.core import TrackerStep

__all__ = [
    "Crop",
    "Tracklet",
    "TrackletBuilder",
    "TrackletDraft",
    "crop_box",
    "crops_to_embed",
    "crops_to_read",
]

_THUMBNAIL_QUALITY = 85
_MIN_ATTRIBUTE_QUALITY = 0.3  # crops worse than this say little about colour or height


def crop_box(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The pixels of ``box`` (xyxy, clipped to the image) as a contiguous copy."""
    h, w = image.shape[:2]
    x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x2, y2 = int(min(w, np.ceil(box[2]))), int(min(h, np.ceil(box[3])))
    return np.ascontiguousarray(image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)])


@dataclass(frozen=True)
class Tracklet:
    """One version of one person's track in one camera (the unit fusion and search use).

    Arrays have one row per observed frame: ``ts`` (epoch seconds), ``boxes`` (xyxy px),
    ``scores``, ``foot_px`` (bottom-centre px) and ``foot_world`` (ground metres).
    ``embeddings`` ``(K, D)`` come from the best-quality crops, ``embedding_mean`` is
    their L2-normalised mean. Colours are names from the clothing palette with a
    confidence in [0, 1]; ``height_m`` is ``nan`` when no crop was good enough.
    ``hat_probability`` and ``bag_probability`` are ``P(wears a hat)`` and ``P(carries a
    bag)`` read from the embedded crops (None when they were not read).
    ``final`` is true for the last version (the track ended).
    """

    tracklet_id: str
    camera_id: str
    track_id: int
    version: int
    final: bool
    ts: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    foot_px: np.ndarray
    foot_world: np.ndarray
    embeddings: np.ndarray
    embedding_mean: np.ndarray
    upper_colour: str
    upper_colour_confidence: float
    lower_colour: str
    lower_colour_confidence: float
    height_m: float
    quality: float
    thumbnail_jpeg: bytes
    hat_probability: float | None = None
    bag_probability: float | None = None

    @property
    def t_start(self) -> float:
        """First observation, epoch seconds."""
        return float(self.ts[0])

    @property
    def t_end(self) -> float:
        """Last observation, epoch seconds."""
        return float(self.ts[-1])


@dataclass
class Crop:
    """A person crop kept for the embedder: its quality, time, pixels and (later) vector
    and ``attributes`` (``P(hat), P(bag)``, when the attribute reader has read it)."""

    quality: float
    ts: float
    pixels: np.ndarray
    embedding: np.ndarray | None = None
    attributes: np.ndarray | None = None


@dataclass
class _TrackRecord:
    track_id: int
    ts: list[float] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    colours: list[tuple[attributes.ColourGuess, attributes.ColourGuess, float]] = field(
        default_factory=list
    )
    heights: list[float] = field(default_factory=list)
    crops: list[Crop] = field(default_factory=list)  # best first, at most K; [0] is the thumbnail
    version: int = 0
    last_emit: float | None = None

    def wants_crop(self, quality: float, limit: int) -> bool:
        return len(self.crops) < limit or quality > self.crops[-1].quality

    def keep_crop(self, crop: Crop, limit: int) -> None:
        self.crops.append(crop)
        self.crops.sort(key=lambda c: -c.quality)
        del self.crops[limit:]


@dataclass(frozen=True)
class TrackletDraft:
    """A tracklet waiting for the embeddings of some of its crops.

    It holds its own snapshot of the crops, so the builder may go on observing frames
    while the embedder works. Give every crop of :func:`crops_to_embed` its ``embedding``,
    then call :meth:`complete`.
    """

    fields: dict[str, Any]
    crops: list[Crop]

    @property
    def tracklet_id(self) -> str:
        """The id of the tracklet this draft will become."""
        return str(self.fields["tracklet_id"])

    def complete(self) -> Tracklet:
        """The tracklet; raises ``ValueError`` if a crop still lacks its embedding."""
        if any(c.embedding is None for c in self.crops):
            raise ValueError(f"tracklet {self.tracklet_id}: crops without embeddings")
        vectors = np.stack([c.embedding for c in self.crops])  # type: ignore[misc]
        mean = l2_normalise(vectors.mean(axis=0, keepdims=True))[0]
        read = [c.attributes for c in self.crops if c.attributes is not None]
        hat, bag = np.mean(read, axis=0).tolist() if read else (None, None)
        return Tracklet(
            **self.fields,
            embeddings=vectors,
            embedding_mean=mean,
            hat_probability=hat,
            bag_probability=bag,
        )


def crops_to_embed(drafts: list[TrackletDraft]) -> list[Crop]:
    """The crops of ``drafts`` still without an embedding, each once, in a stable order."""
    return _crops_without(drafts, "embedding")


def crops_to_read(drafts: list[TrackletDraft]) -> list[Crop]:
    """The crops of ``drafts`` whose hat and bag are not read yet, each once, in order."""
    return _crops_without(drafts, "attributes")


def _crops_without(drafts: list[TrackletDraft], name: str) -> list[Crop]:
    seen: dict[int, Crop] = {}
    for draft in drafts:
        for crop in draft.crops:
            if getattr(crop, name) is None:
                seen.setdefault(id(crop), crop)
    return list(seen.values())


class TrackletBuilder:
    """Turns one camera's tracker steps into tracklets (see the module docstring).

    ``run_id`` makes tracklet ids unique across restarts of the same camera: ids are
    ``<camera>-<run_id>-<track id>``.
    """

    def __init__(
        self, camera: CameraConfig, config: TrackingConfig | None = None, *, run_id: str = "0"
    ) -> None:
        self.camera_id = camera.id
        self.config = config or TrackingConfig()
        self.run_id = run_id
        self._to_ground = camera.image_to_ground
        # frames arrive resized to the calibrated resolution, so the camera is fixed
        try:
            self._camera: GroundCamera | None = GroundCamera.from_homography(
                camera.ground_to_image, *camera.resolution
            )
        except ValueError:
            self._camera = None  # heights unknown; everything else still works
        self._tracks: dict[int, _TrackRecord] = {}

    def tracklet_id(self, track_id: int) -> str:
        """The id of the tracklet of tracker track ``track_id``."""
        return f"{self.camera_id}-{self.run_id}-{track_id}"

    def ground_points(self, step: TrackerStep) -> np.ndarray:
        """Ground points (M, 2) in metres of one step's tracked people (box foot-points)."""
        if len(step) == 0:
            return np.zeros((0, 2), np.float32)
        return apply_homography(self._to_ground, box_foot_points(step.boxes)).astype(np.float32)

    def observe(
        self,
        ts: float,
        image: np.ndarray,
        step: TrackerStep,
        boxes: np.ndarray,
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Record one frame's tracked people; ``boxes`` are all detections (for occlusion).

        ``embeddings`` (a row per detection, when the tracker used appearance) are kept
        with the crops, so those crops need no second trip to the embedder.
        """
        if len(step) == 0:
            return
        camera = self._camera
        qualities = attributes.crop_quality_batch(image, step.boxes, boxes)
        heights = heights_from_boxes(step.boxes, self._to_ground, camera) if camera else None
        for i, track_id in enumerate(step.track_ids.tolist()):
            rec = self._tracks.setdefault(track_id, _TrackRecord(track_id))
            box, quality = step.boxes[i], float(qualities[i])
            rec.ts.append(ts)
            rec.boxes.append(box)
            rec.scores.append(float(step.scores[i]))
            # Poor crops still compete for the thumbnail and the embeddings, so a person
            # only ever seen small or half hidden gets a tracklet too.
            if rec.wants_crop(quality, self.config.embeddings_per_tracklet):
                crop = Crop(quality, ts, crop_box(image, box))
                if embeddings is not None:
                    crop.embedding = np.asarray(embeddings[step.detection_index[i]], np.float32)
                rec.keep_crop(crop, self.config.embeddings_per_tracklet)
            if quality < _MIN_ATTRIBUTE_QUALITY:
                continue
            upper, lower = attributes.upper_lower_colours(image, box, boxes)
            rec.colours.append((upper, lower, quality))
            if heights is not None and np.isfinite(heights[i]):
                rec.heights.append(float(heights[i]))

    def collect(self, ts: float, ended: list[int], *, final: bool = False) -> list[TrackletDraft]:
        """Drafts due at ``ts``: ended tracks (last version), and ongoing ones every
        ``emit_every_s``; with ``final`` every track ends (the stream is over)."""
        drafts = []
        ending = set(self._tracks) if final else set(ended)
        for track_id, rec in list(self._tracks.items()):
            done = track_id in ending
            started = rec.ts[0] if rec.last_emit is None else rec.last_emit
            if done:
                del self._tracks[track_id]
            elif ts - started < self.config.emit_every_s:
                continue
            if len(rec.ts) < self.config.min_track_frames or not rec.crops:
                continue
            rec.version += 1
            rec.last_emit = ts
            drafts.append(self._draft(rec, done))
        return drafts

    # ------------------------------------------------------------------ helpers

    def _draft(self, rec: _TrackRecord, final: bool) -> TrackletDraft:
        boxes = np.stack(rec.boxes).astype(np.float32)
        foot_px = box_foot_points(boxes).astype(np.float32)
        weights = [q for *_, q in rec.colours]
        upper = attributes.aggregate_colours([u for u, _, _ in rec.colours], weights)
        lower = attributes.aggregate_colours([lo for _, lo, _ in rec.colours], weights)
        thumb = rec.crops[0]
        fields = {
            "tracklet_id": self.tracklet_id(rec.track_id),
            "camera_id": self.camera_id,
            "track_id": rec.track_id,
            "version": rec.version,
            "final": final,
            "ts": np.asarray(rec.ts, dtype=np.float64),
            "boxes": boxes,
            "scores": np.asarray(rec.scores, dtype=np.float32),
            "foot_px": foot_px,
            "foot_world": apply_homography(self._to_ground, foot_px).astype(np.float32),
            "upper_colour": upper.name,
            "upper_colour_confidence": float(upper.confidence),
            "lower_colour": lower.name,
            "lower_colour_confidence": float(lower.confidence),
            "height_m": float(np.median(rec.heights)) if rec.heights else float("nan"),
            "quality": float(thumb.quality),
            "thumbnail_jpeg": _jpeg(thumb.pixels),
        }
        return TrackletDraft(fields, list(rec.crops))


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=_THUMBNAIL_QUALITY)
    return buffer.getvalue()
