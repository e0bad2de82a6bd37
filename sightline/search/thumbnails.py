"""Thumbnails that may leave the system: the subject sharp, everyone else's head blurred.

A tracklet's thumbnail in the store is the crop of the subject's box in one of its
frames (which frame is not stored). Other people standing in front of or behind the
subject reach into that crop; their heads must be blurred before the image leaves
(an analyst sees the candidate, not bystanders).

:func:`blur_thumbnail` finds the frames the crop may have been cut from (those whose crop
has the thumbnail's size, :func:`thumbnail_frames`; narrowed to the one whose pixels
match when the camera's recording can be decoded, :func:`decode_frames`), takes the
people the pipeline detected in those frames (:class:`FrameDetections`, read from the
run's ``detections`` folder; the subject's own box is recognised by overlap) and blurs
their head regions with :func:`~sightline.search.privacy.blur_heads`, blurring more
rather than less when the frame is uncertain.

:func:`tracklet_thumbnail` does it for one stored tracklet (the API's thumbnail route)
and says whether the frame's detections were known at all: when they are not (the run's
detections were deleted, or the store came from elsewhere), the caller must not send
the image, as bystanders cannot be ruled out. :func:`candidate_thumbnails` does it for a
search's candidates (the demo's report).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from sightline.config import SiteConfig
from sightline.search.privacy import HEAD_FRACTION, blur_heads, boxes_in_crop, head_boxes
from sightline.search.results import Candidate

__all__ = [
    "NEIGHBOUR_SCORE",
    "FrameDetections",
    "Thumbnail",
    "blur_thumbnail",
    "candidate_thumbnails",
    "decode_frames",
    "thumbnail_frames",
    "tracklet_thumbnail",
    "tracklet_thumbnails",
]

NEIGHBOUR_SCORE = 0.3
"""Detections at least this sure are people whose heads a thumbnail must hide (lower
than the tracker's own thresholds: blurring a false detection costs little)."""

_SUBJECT_IOU = 0.5  # a detection overlapping the subject's box this much is the subject
_HEAD_MARGIN = 0.1  # detected heads are blurred from this share of the box above its top
_SAME_CROP_DIFF = 12.0  # a video crop this close (mean abs grey levels) is the thumbnail's
_COVER_MARGIN_S = 1.0  # detections this close to a tracklet's span show the run saw it


def _crop_origin(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels :func:`~sightline.tracking.tracklets.crop_box` cuts for ``box``."""
    x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x2, y2 = int(min(width, np.ceil(box[2]))), int(min(height, np.ceil(box[3])))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return inter / np.maximum(area, 1e-9)


def thumbnail_frames(jpeg: bytes, boxes: np.ndarray, resolution: tuple[int, int]) -> list[int]:
    """Indexes of the tracklet frames (``boxes``, frame ``resolution`` (w, h)) whose crop
    has the size of the thumbnail ``jpeg``: the frames it may have been cut from (which
    one is not stored). All frames when none has that size."""
    width, height = Image.open(io.BytesIO(jpeg)).size
    crops = [_crop_origin(b, *resolution) for b in np.asarray(boxes).reshape(-1, 4)]
    same = [i for i, c in enumerate(crops) if (c[2] - c[0], c[3] - c[1]) == (width, height)]
    return same or list(range(len(crops)))


def _closest_frame(
    jpeg: bytes, boxes: np.ndarray, resolution: tuple[int, int], frames: dict[int, np.ndarray]
) -> int | None:
    """Of the decoded candidate ``frames`` (index -> RGB frame), the one whose crop looks
    most like the thumbnail (mean absolute difference below 12 grey levels), or None."""
    thumb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)
    best, best_diff = None, _SAME_CROP_DIFF
    for i, image in frames.items():
        x1, y1, x2, y2 = _crop_origin(boxes[i], *resolution)
        crop = np.asarray(image[y1:y2, x1:x2], np.float32)
        if crop.shape != thumb.shape:
            continue
        diff = float(np.abs(crop - thumb).mean())
        if diff < best_diff:
            best, best_diff = i, diff
    return best


def blur_thumbnail(
    jpeg: bytes,
    boxes: np.ndarray,
    ts: Sequence[float],
    resolution: tuple[int, int],
    neighbours: Callable[[float], np.ndarray] | None,
    frames: dict[int, np.ndarray] | None = None,
) -> bytes:
    """A stored thumbnail with the heads of everyone but its subject blurred.

    The thumbnail is the crop of the subject's box in one of its tracklet's frames
    (``boxes``/``ts``, frame ``resolution`` (w, h)); which one is not stored. With
    ``frames`` (decoded video frames by tracklet frame index, for the
    :func:`thumbnail_frames` candidates) the frame whose crop matches the thumbnail is
    used; otherwise, or when none matches, every frame whose crop has the thumbnail's
    size is taken (blurring more rather than less). The people ``neighbours(ts)`` gives
    in those frames (boxes in frame pixels; the subject's own box is recognised by
    overlap and skipped) have their heads blurred
    (:func:`~sightline.search.privacy.blur_heads_jpeg`); the subject's head stays sharp.
    Without ``neighbours`` or other people's heads in the crop the thumbnail is returned
    as is (a one-person crop)."""
    if neighbours is None:
        return jpeg
    width, height = Image.open(io.BytesIO(jpeg)).size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    candidates = thumbnail_frames(jpeg, boxes, resolution)
    if frames:
        exact = _closest_frame(jpeg, boxes, resolution, frames)
        candidates = [exact] if exact is not None else candidates
    subject: np.ndarray | None = None
    others = []
    for i in candidates:
        box, crop = boxes[i], _crop_origin(boxes[i], *resolution)
        if subject is None:
            subject = boxes_in_crop(box[None], crop)[0]
        near = np.asarray(neighbours(float(ts[i])), np.float64).reshape(-1, 4)
        if len(near):
            near = near[_iou(box, near) < _SUBJECT_IOU]
        if len(near):
            others.append(_heads_inside(boxes_in_crop(near, crop), width, height))
    others = [b for b in others if len(b)]
    if subject is None or not others:
        return jpeg
    heads = np.concatenate([head_boxes(subject[None]), *(_loose_heads(b) for b in others)])
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(blur_heads(pixels, heads, 0, fraction=1.0)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _loose_heads(boxes: np.ndarray) -> np.ndarray:
    """Head regions of detected (not tracked) boxes, with a margin: a detector's box of a
    half-hidden person often starts below the top of the head."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    h = b[:, 3] - b[:, 1]
    return np.column_stack(
        [b[:, 0], b[:, 1] - _HEAD_MARGIN * h, b[:, 2], b[:, 1] + (HEAD_FRACTION + 0.05) * h]
    )


def _heads_inside(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """The boxes (crop pixels) whose head region reaches into a ``width`` x ``height`` crop."""
    heads = _loose_heads(boxes)
    inside = (heads[:, 0] < width) & (heads[:, 2] > 0) & (heads[:, 1] < height) & (heads[:, 3] > 0)
    return boxes[inside]


def decode_frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The frames ``wanted`` (0-based indexes) of a video file as RGB arrays (PyAV),
    seeking to the keyframe before each run of wanted frames rather than decoding all."""
    import av

    out: dict[int, np.ndarray] = {}
    if not wanted or not Path(video).is_file():
        return out
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 1)
        start = stream.start_time or 0
        for target in sorted(wanted):
            if target in out:
                continue
            container.seek(start + round(target / rate / stream.time_base), stream=stream)
            for frame in container.decode(stream):
                index = round((frame.pts - start) * stream.time_base * rate)
                if index in wanted:
                    out[index] = frame.to_ndarray(format="rgb24")
                if index >= target:
                    break
    return out


# --------------------------------------------------------------------------- detections


class FrameDetections:
    """The people a pipeline run detected, per camera and frame, read on demand from
    ``<run_dir>/detections/camera_id=<id>/*.parquet`` and, for footage a search job
    ingested, ``<run_dir>/forensic/<job>/<window>/detections/...`` (score >=
    ``min_score``)."""

    def __init__(self, run_dir: str | Path, min_score: float = NEIGHBOUR_SCORE) -> None:
        self.run_dir = Path(run_dir)
        self.min_score = min_score

    def between(self, camera_id: str, start: float, end: float) -> dict[int, np.ndarray] | None:
        """Boxes ``(N, 4)`` by frame time (epoch milliseconds) for ``camera_id`` within
        ``[start, end]`` (epoch seconds, widened by a second), or None when the run holds
        no detection of that camera in that span: the frames' people are unknown."""
        if not camera_id or "/" in camera_id or camera_id.startswith("."):
            return None
        folder = f"camera_id={camera_id}"
        files = sorted((self.run_dir / "detections" / folder).glob("*.parquet"))
        # a search job's forensic ingest writes under forensic/<job id>/w<i>/
        files += sorted(self.run_dir.glob(f"forensic/*/*/detections/{folder}/*.parquet"))
        if not files:
            return None
        lo, hi = start - _COVER_MARGIN_S, end + _COVER_MARGIN_S
        scan = pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")
        ts = pl.col("frame_ts")
        if scan.collect_schema()["frame_ts"].is_temporal():
            ms = (ts.dt.epoch("us") / 1000).round().cast(pl.Int64)
        else:
            ms = (ts.cast(pl.Float64) * 1000).round().cast(pl.Int64)
        frame = (
            scan.with_columns(_ms=ms)
            .filter(pl.col("_ms").is_between(round(lo * 1000), round(hi * 1000)))
            .select("_ms", "x1", "y1", "x2", "y2", "score")
            .collect()
        )
        if frame.is_empty():
            return None
        frame = frame.filter(pl.col("score") >= self.min_score)
        return {
            int(ms): part.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float64)
            for (ms,), part in frame.partition_by("_ms", as_dict=True).items()
        }


# --------------------------------------------------------------------------- stored tracklets


@dataclass(frozen=True)
class Thumbnail:
    """A stored tracklet's thumbnail ready to leave the system.

    ``detections_known`` is False when the run's detections do not cover the tracklet's
    frames: bystanders' heads cannot be found, so ``jpeg`` is the stored crop untouched
    and must not be sent out. ``exact_frame`` says whether the frame the crop was cut
    from was found by decoding the recording (else every frame of that crop size was
    used, blurring more rather than less)."""

    tracklet_id: str
    camera_id: str
    jpeg: bytes
    detections_known: bool
    exact_frame: bool


def _epoch_s(t: datetime | float) -> float:
    return t.timestamp() if isinstance(t, datetime) else float(t)


def _tracklet_rows(store: str, tracklet_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    from sightline.store.queries import scan
    from sightline.tracking.sink import latest_versions

    frame = latest_versions(
        scan(store, "tracklets")
        .filter(pl.col("tracklet_id").is_in(list(tracklet_ids)))
        .select("tracklet_id", "version", "camera_id", "ts", "boxes", "thumbnail")
        .collect()
    )
    return {row["tracklet_id"]: row for row in frame.iter_rows(named=True)}


def _frame_indexes(camera: Any, ts: Sequence[float]) -> dict[int, int]:
    """Tracklet frame -> video frame index (from the camera's ``source_start`` and fps)."""
    if camera is None or camera.source_start is None:
        return {}
    t0 = camera.source_start.timestamp()
    return {i: round((t - t0) * camera.fps) for i, t in enumerate(ts)}


def _recorded_frames(
    camera: Any, jpeg: bytes, boxes: np.ndarray, ts: Sequence[float], resolution: tuple[int, int]
) -> dict[int, np.ndarray]:
    """The candidate frames of a thumbnail decoded from the camera's recording (a local
    file), by tracklet frame index; empty for live or remote sources."""
    source = str(camera.source) if camera is not None else ""
    indexes = _frame_indexes(camera, ts)
    if not indexes or "://" in source or not Path(source).is_file():
        return {}
    wanted = {indexes[i] for i in thumbnail_frames(jpeg, boxes, resolution) if i in indexes}
    decoded = decode_frames(Path(source), wanted)
    return {i: decoded[idx] for i, idx in indexes.items() if idx in decoded}


def _blurred(
    row: dict[str, Any],
    jpeg: bytes,
    camera: Any,
    detections: FrameDetections | None,
    videos: bool,
) -> Thumbnail:
    ts = [_epoch_s(t) for t in row["ts"]]
    boxes = np.asarray(row["boxes"], np.float64).reshape(-1, 4)
    resolution = tuple(camera.resolution) if camera is not None else (10**6, 10**6)
    known = (
        detections.between(row["camera_id"], min(ts), max(ts))
        if detections is not None and ts
        else None
    )
    base = {"tracklet_id": row["tracklet_id"], "camera_id": row["camera_id"]}
    if known is None:
        return Thumbnail(**base, jpeg=jpeg, detections_known=False, exact_frame=False)
    empty = np.zeros((0, 4))

    def neighbours(t: float) -> np.ndarray:
        return known.get(round(t * 1000), empty)

    frames = _recorded_frames(camera, jpeg, boxes, ts, resolution) if videos else {}
    exact = bool(frames) and _closest_frame(jpeg, boxes, resolution, frames) is not None
    out = blur_thumbnail(jpeg, boxes, ts, resolution, neighbours, frames)
    return Thumbnail(**base, jpeg=out, detections_known=True, exact_frame=exact)


def tracklet_thumbnails(
    store: str | Path,
    site: SiteConfig,
    tracklet_ids: Sequence[str],
    detections: FrameDetections | None,
    *,
    videos: bool = True,
) -> dict[str, Thumbnail]:
    """The thumbnails of stored tracklets (newest version), heads of everyone but the
    subject blurred, by tracklet id; a tracklet without a stored thumbnail is left out.
    With ``videos`` the cameras' recordings (local files) are decoded at the candidate
    frames to find the frame each crop was cut from. Thumbnails are files under a
    local store root."""
    rows = _tracklet_rows(str(store), tracklet_ids)
    cameras = {c.id: c for c in site.cameras}
    out = {}
    for tracklet_id, row in rows.items():
        ref = row["thumbnail"]
        path = Path(str(store)) / ref if ref else None
        if path is None or ".." in Path(ref).parts or not path.is_file():
            continue
        camera = cameras.get(row["camera_id"])
        out[tracklet_id] = _blurred(row, path.read_bytes(), camera, detections, videos)
    return out


def tracklet_thumbnail(
    store: str | Path,
    site: SiteConfig,
    tracklet_id: str,
    detections: FrameDetections | None,
    *,
    videos: bool = True,
) -> Thumbnail | None:
    """:func:`tracklet_thumbnails` for one tracklet; None when it has no thumbnail."""
    return tracklet_thumbnails(store, site, [tracklet_id], detections, videos=videos).get(
        tracklet_id
    )


def candidate_thumbnails(
    store: str | Path,
    site: SiteConfig,
    candidates: Sequence[Candidate],
    detections: FrameDetections | None,
    *,
    videos: bool = True,
) -> dict[str, bytes]:
    """Each candidate's best sighting's thumbnail, by candidate key, for a report: only
    those whose frames' detections are known (the others are withheld, as their
    bystanders could not be blurred)."""
    thumbs = tracklet_thumbnails(
        store, site, [c.best_tracklet_id for c in candidates], detections, videos=videos
    )
    out = {}
    for c in candidates:
        thumb = thumbs.get(c.best_tracklet_id)
        if thumb is not None and thumb.detections_known:
            out[c.key] = thumb.jpeg
    return out
