"""Score tracklets against a simulated site's ground truth: colours, height, foot-points.

Each tracklet frame is matched to the ground-truth person whose box overlaps it most
(IoU >= 0.5, same camera and frame); a tracklet belongs to the person matched in most
of its frames, if that is at least half of them. Then, against ``gt/people.parquet``
and ``gt/boxes.parquet``:

- colour accuracy (upper, lower) over tracklets longer than 1 s (an ``unknown`` colour
  counts as wrong);
- height: median absolute error of the tracklet's ``height_m``;
- hat and bag: the share of tracklets longer than 1 s whose ``P(hat)``/``P(bag)`` is on
  the right side of 0.5, and the AUC (tracklets that recorded no reading are left out);
- foot-points: median ground distance between each matched frame's ``foot_world`` and
  the person's true position (all matched frames, and those >= 50 % visible).

:func:`tracklets_for_camera` produces the tracklets the way a camera actor does (the
same :class:`~sightline.tracking.stage.TrackingStage`), in process, from given
detections and a local embedder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sightline.config import CameraConfig, TrackingConfig
from sightline.evaluation.matching import box_iou
from sightline.ingest.reader import Frame
from sightline.models.core import Detections, EmbedderBackend
from sightline.tracking.sink import latest_versions, tracklets_frame
from sightline.tracking.stage import GroundFn, TrackingStage
from sightline.tracking.tracklets import Tracklet
from sightline.training.data import read_frames

__all__ = [
    "TARGETS",
    "build_tracklets",
    "match_frames",
    "score_tracklets",
    "tracklet_frames",
    "tracklets_for_camera",
]

TARGETS = {"upper_colour_accuracy": 0.85, "height_median_error_m": 0.10, "foot_median_error_m": 0.5}
_MIN_DURATION_S = 1.0
_MATCH_IOU = 0.5


class _MemorySink:
    def __init__(self) -> None:
        self.tracklets: list[Tracklet] = []

    def write(self, tracklets: list[Tracklet]) -> None:
        self.tracklets.extend(tracklets)

    def close(self) -> None:
        """Nothing to flush."""


def _worn_scores(long: pl.DataFrame) -> dict[str, Any]:
    """Hat and bag read right (``P >= 0.5`` against the truth) and their AUC, over the
    tracklets that recorded them; None where none did (or one class only, for the AUC)."""
    from sightline.training.attributes import auc_or_none

    out: dict[str, Any] = {}
    for item in ("hat", "bag"):
        read = long.filter(pl.col(f"{item}_probability").is_not_null())
        p = read[f"{item}_probability"].cast(pl.Float64).to_numpy()
        truth = read[f"true_{item}"].to_numpy()
        out[f"{item}_tracklets"] = read.height
        out[f"{item}_accuracy"] = round(float(np.mean((p >= 0.5) == truth)), 4) if len(p) else None
        out[f"{item}_auc"] = auc_or_none(p, truth.astype(np.float64))
    return out


def build_tracklets(
    video: Path,
    camera: CameraConfig,
    detections: Sequence[Detections],
    embedder: EmbedderBackend,
    config: TrackingConfig | None = None,
    embeddings: Sequence[np.ndarray] | None = None,
    ground: GroundFn | None = None,
    read_attributes: Callable[[list[np.ndarray]], np.ndarray] | None = None,
) -> list[Tracklet]:
    """Every tracklet version one camera emits, in emission order; ``detections[i]``
    belongs to frame ``i`` of ``video``; ``embeddings[i]``, when given, are its
    detections' vectors (so they are not computed again); ``ground`` receives every
    frame's tracked people on the ground, as the camera actor sends them;
    ``read_attributes`` (e.g. the built-in hat-and-bag reader) reads the kept crops."""
    sink = _MemorySink()

    async def embed(crops: list[np.ndarray]) -> np.ndarray:
        return embedder.embed(crops)

    async def read(crops: list[np.ndarray]) -> np.ndarray:
        return read_attributes(crops)  # type: ignore[misc]

    stage = TrackingStage(
        camera,
        embed,
        sink,
        config=config,
        ground=ground,
        run_id="eval",
        read_attributes=None if read_attributes is None else read,
    )
    start = camera.source_start or datetime(2000, 1, 1, tzinfo=UTC)

    async def run() -> None:
        for index, image in read_frames(video):
            if index >= len(detections):
                break
            ts = start + timedelta(seconds=index / camera.fps)
            frame = Frame(image, ts, index / camera.fps, index)
            vectors = None if embeddings is None else embeddings[index]
            await stage.write(camera.id, frame, detections[index], vectors)
        await stage.close()

    asyncio.run(run())
    return sink.tracklets


def tracklets_for_camera(
    video: Path,
    camera: CameraConfig,
    detections: Sequence[Detections],
    embedder: EmbedderBackend,
    config: TrackingConfig | None = None,
    embeddings: Sequence[np.ndarray] | None = None,
    read_attributes: Callable[[list[np.ndarray]], np.ndarray] | None = None,
) -> pl.DataFrame:
    """Latest tracklet versions of one camera, as a table (see :func:`build_tracklets`)."""
    tracklets = build_tracklets(
        video, camera, detections, embedder, config, embeddings, read_attributes=read_attributes
    )
    return latest_versions(tracklets_frame(tracklets, [""] * len(tracklets)))


def tracklet_frames(
    tracklets: pl.DataFrame, starts: dict[str, tuple[datetime, float]]
) -> pl.DataFrame:
    """One row per tracklet observation: ids, ``frame_index`` (from ``starts``: camera ->
    (time of frame 0, fps)), box ``x1..y2`` and ground point ``fx, fy``."""
    rows = tracklets.select("tracklet_id", "camera_id", "ts", "boxes", "foot_world").explode(
        "ts", "boxes", "foot_world"
    )
    start = pl.col("camera_id").replace_strict(
        {k: v[0] for k, v in starts.items()}, return_dtype=pl.Datetime("us", "UTC")
    )
    fps = pl.col("camera_id").replace_strict({k: v[1] for k, v in starts.items()})
    return rows.with_columns(
        frame_index=((pl.col("ts") - start).dt.total_microseconds() / 1e6 * fps)
        .round()
        .cast(pl.Int32),
        **{c: pl.col("boxes").list.get(i) for i, c in enumerate(("x1", "y1", "x2", "y2"))},
        fx=pl.col("foot_world").list.get(0),
        fy=pl.col("foot_world").list.get(1),
    ).drop("boxes", "foot_world")


def match_frames(frames: pl.DataFrame, gt: pl.DataFrame) -> pl.DataFrame:
    """Each tracklet frame with its best-overlapping ground-truth person (IoU >= 0.5)."""
    out = []
    gt_by = gt.partition_by("camera_id", "frame_index", as_dict=True)
    for (camera, index), part in frames.partition_by(
        "camera_id", "frame_index", as_dict=True
    ).items():
        truth = gt_by.get((camera, index))
        if truth is None:
            continue
        iou = box_iou(
            part.select("x1", "y1", "x2", "y2").to_numpy(),
            truth.select("x1", "y1", "x2", "y2").to_numpy(),
        )
        best = iou.argmax(axis=1)
        good = iou[np.arange(len(best)), best] >= _MATCH_IOU
        picked = truth[best[good].tolist()].select("person_id", "visibility", "world_x", "world_y")
        out.append(pl.concat([part.filter(pl.Series(good)), picked], how="horizontal"))
    if not out:
        return frames.head(0)
    return pl.concat(out)


def _median(values: pl.Series) -> float | None:
    values = values.drop_nulls().drop_nans()
    return round(float(values.median()), 4) if len(values) else None


def score_tracklets(
    tracklets: pl.DataFrame,
    gt_boxes: pl.DataFrame,
    people: pl.DataFrame,
    cameras: Sequence[CameraConfig],
) -> dict[str, Any]:
    """Colour, height and foot-point figures of ``tracklets`` (latest versions)."""
    starts = {c.id: (c.source_start or datetime(2000, 1, 1, tzinfo=UTC), c.fps) for c in cameras}
    frames = tracklet_frames(tracklets, starts)
    matched = match_frames(frames, gt_boxes.with_columns(pl.col("frame_index").cast(pl.Int32)))
    matched = matched.with_columns(
        foot_error_m=(
            (pl.col("fx") - pl.col("world_x")) ** 2 + (pl.col("fy") - pl.col("world_y")) ** 2
        ).sqrt()
    )
    n_frames = frames.group_by("tracklet_id").len("n")
    owner = (
        matched.group_by("tracklet_id", "person_id")
        .len("votes")
        .sort("votes", descending=True)
        .unique("tracklet_id", keep="first")
        .join(n_frames, on="tracklet_id")
        .filter(pl.col("votes") >= pl.col("n") / 2)
    )
    scored = tracklets.join(owner.select("tracklet_id", "person_id"), on="tracklet_id").join(
        people.select(
            "person_id",
            pl.col("upper_colour").alias("true_upper"),
            pl.col("lower_colour").alias("true_lower"),
            pl.col("height_m").alias("true_height_m"),
            pl.col("hat_colour").is_not_null().alias("true_hat"),
            pl.col("bag_colour").is_not_null().alias("true_bag"),
        ),
        on="person_id",
    )
    duration = (pl.col("t_end") - pl.col("t_start")).dt.total_microseconds() / 1e6
    long = scored.filter(duration > _MIN_DURATION_S)
    upper_ok = (long["upper_colour"] == long["true_upper"]).mean() if long.height else None
    lower_ok = (long["lower_colour"] == long["true_lower"]).mean() if long.height else None
    height_error = (scored["height_m"].cast(pl.Float64) - scored["true_height_m"]).abs()
    owned = matched.join(owner.select("tracklet_id", "person_id"), on=["tracklet_id", "person_id"])
    result = {
        "tracklets": tracklets.height,
        "tracklets_matched_to_a_person": scored.height,
        "tracklets_longer_than_1s": long.height,
        "upper_colour_accuracy": None if upper_ok is None else round(float(upper_ok), 4),
        "lower_colour_accuracy": None if lower_ok is None else round(float(lower_ok), 4),
        "upper_colour_unknown": int((long["upper_colour"] == "unknown").sum()),
        "height_median_error_m": _median(height_error),
        "height_tracklets": int(height_error.drop_nans().drop_nulls().len()),
        "foot_median_error_m": _median(owned["foot_error_m"]),
        "foot_median_error_m_visible": _median(
            owned.filter(pl.col("visibility") >= 0.5)["foot_error_m"]
        ),
        "foot_frames": owned.height,
        **_worn_scores(long),
        "colour_mistakes": long.filter(pl.col("upper_colour") != pl.col("true_upper"))
        .select("tracklet_id", "upper_colour", "true_upper")
        .head(20)
        .to_dicts(),
    }
    result["passed"] = {
        "upper_colour_accuracy": (result["upper_colour_accuracy"] or 0)
        >= TARGETS["upper_colour_accuracy"],
        "height_median_error_m": (result["height_median_error_m"] or 1e9)
        <= TARGETS["height_median_error_m"],
        "foot_median_error_m": (result["foot_median_error_m"] or 1e9)
        <= TARGETS["foot_median_error_m"],
    }
    return result
