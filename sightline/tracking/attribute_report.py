"""Measure attribute accuracy on a simulated site against its ground truth.

For every (camera, person) ground-truth track of a rendered site this names the upper and
lower clothing colours (a quality-weighted vote over the track's frames), estimates the
height from the boxes with the camera recovered from its calibration, and maps the
bottom-centre of each box to the ground. The figures are compared with the issue's
targets: upper colour right for >= 85% of tracks longer than 1 s, median height error
<= 0.10 m, median foot-point error <= 0.5 m.

Boxes are the ground-truth amodal boxes, optionally jittered by a few pixels (``jitter_px``)
to stand in for a detector's; detector boxes proper come with the evaluation command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sightline.config import CameraConfig, load_site_config
from sightline.geometry import apply_homography, box_foot_points
from sightline.tracking.attributes import (
    UNKNOWN_COLOUR,
    ColourGuess,
    aggregate_colours,
    crop_quality,
    upper_lower_colours,
)
from sightline.tracking.camera_model import GroundCamera, heights_from_boxes
from sightline.training.data import read_frames

__all__ = ["measure_attributes"]

_BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
_BACKGROUND_EVERY = 10  # frames sampled for the median background image
_MIN_DETECTABLE = 0.3  # GT people less visible than this are taken as not detected
_MIN_HEIGHT_VISIBILITY = 0.5


@dataclass
class _TrackVotes:
    """Per-frame colour guesses of one (camera, person) track, with their weights."""

    upper: list[ColourGuess] = field(default_factory=list)
    lower: list[ColourGuess] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def _background(video: Path) -> np.ndarray:
    """Median of every ``_BACKGROUND_EVERY``-th frame: the scene without passers-by."""
    keep = set(range(0, 100_000, _BACKGROUND_EVERY))
    frames = [frame for _, frame in read_frames(video, keep)]
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def _jittered(boxes: pl.DataFrame, jitter_px: float, seed: int) -> pl.DataFrame:
    """``boxes`` with each coordinate moved by Gaussian noise of ``jitter_px`` pixels."""
    if jitter_px <= 0:
        return boxes
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, jitter_px, (len(boxes), 4))
    return boxes.with_columns(
        [pl.col(c) + pl.Series(noise[:, i]) for i, c in enumerate(_BOX_COLUMNS)]
    )


def _camera_colour_votes(
    video: Path, boxes: pl.DataFrame, use_background: bool
) -> dict[int, _TrackVotes]:
    """Colour guesses for every detectable GT box of one camera, grouped by person."""
    background = _background(video) if use_background else None
    detectable = boxes.filter(pl.col("visibility") >= _MIN_DETECTABLE)
    by_frame = {int(k[0]): g for k, g in detectable.group_by("frame_index")}
    votes: dict[int, _TrackVotes] = {}
    for index, frame in read_frames(video, set(by_frame)):
        rows = by_frame[index]
        frame_boxes = rows.select(_BOX_COLUMNS).to_numpy()
        for person, box in zip(rows["person_id"].to_list(), frame_boxes, strict=True):
            upper, lower = upper_lower_colours(frame, box, frame_boxes, background)
            track = votes.setdefault(int(person), _TrackVotes())
            track.upper.append(upper)
            track.lower.append(lower)
            track.weights.append(crop_quality(frame, box, frame_boxes).score)
    return votes


def _colour_rows(
    camera_id: str, votes: dict[int, _TrackVotes], people: pl.DataFrame, min_frames: int
) -> list[dict[str, Any]]:
    """One row per track with at least ``min_frames`` frames: its guesses and the truth."""
    truth = {r["person_id"]: r for r in people.iter_rows(named=True)}
    rows = []
    for person, track in votes.items():
        if len(track.weights) < min_frames:
            continue
        upper = aggregate_colours(track.upper, track.weights)
        lower = aggregate_colours(track.lower, track.weights)
        rows.append(
            {
                "camera_id": camera_id,
                "person_id": person,
                "frames": len(track.weights),
                "upper_true": truth[person]["upper_colour"],
                "upper_guess": upper.name,
                "upper_confidence": upper.confidence,
                "lower_true": truth[person]["lower_colour"],
                "lower_guess": lower.name,
                "lower_confidence": lower.confidence,
            }
        )
    return rows


def _geometry_frame(camera: CameraConfig, boxes: pl.DataFrame) -> pl.DataFrame:
    """Per-frame height and foot-point error of one camera's whole, visible GT boxes."""
    width, height = camera.resolution
    whole = boxes.filter(
        (pl.col("visibility") >= _MIN_HEIGHT_VISIBILITY)
        & (pl.col("x1") >= 0)
        & (pl.col("y1") >= 0)
        & (pl.col("x2") <= width)
        & (pl.col("y2") <= height)
    )
    xyxy = whole.select(_BOX_COLUMNS).to_numpy()
    feet = apply_homography(camera.image_to_ground, box_foot_points(xyxy))
    truth = whole.select("world_x", "world_y").to_numpy()
    try:
        ground_camera = GroundCamera.from_homography(camera.ground_to_image, width, height)
        heights = heights_from_boxes(xyxy, camera.image_to_ground, ground_camera)
    except ValueError:
        heights = np.full(len(whole), np.nan)
    return whole.select("camera_id", "person_id", "height_m", "has_hat").with_columns(
        pl.Series("height_est", heights),
        pl.Series("foot_error_m", np.linalg.norm(feet - truth, axis=1)),
    )


def _mean_or_none(values: pl.Series) -> float | None:
    """Mean of a boolean series, None when it is empty."""
    return float(values.mean()) if len(values) else None  # type: ignore[arg-type]


def _colour_summary(tracks: pl.DataFrame) -> dict[str, Any]:
    """Accuracy of the upper and lower colour over the tracks, and the mistakes."""
    if tracks.is_empty():
        return {"tracks": 0, "upper_accuracy": None, "lower_accuracy": None, "mistakes": []}
    upper_ok = tracks["upper_true"] == tracks["upper_guess"]
    lower_ok = tracks["lower_true"] == tracks["lower_guess"]
    mistakes = tracks.filter(~upper_ok | ~lower_ok).to_dicts()
    upper_known = tracks["upper_guess"] != UNKNOWN_COLOUR
    lower_known = tracks["lower_guess"] != UNKNOWN_COLOUR
    return {
        "tracks": len(tracks),
        "upper_accuracy": float(upper_ok.mean()),
        "lower_accuracy": float(lower_ok.mean()),
        # tracks whose region never showed (cut off by the frame) are named "unknown"
        "upper_unknown": int((~upper_known).sum()),
        "lower_unknown": int((~lower_known).sum()),
        "upper_accuracy_when_named": _mean_or_none(upper_ok.filter(upper_known)),
        "lower_accuracy_when_named": _mean_or_none(lower_ok.filter(lower_known)),
        "upper_mean_confidence": float(tracks["upper_confidence"].mean()),
        "lower_mean_confidence": float(tracks["lower_confidence"].mean()),
        "mistakes": mistakes,
    }


def _height_summary(frames: pl.DataFrame, min_frames: int) -> dict[str, Any]:
    """Median absolute height error per frame and per track (median over its frames)."""
    frames = frames.filter(pl.col("height_est").is_finite())
    if frames.is_empty():
        return {"frames": 0, "tracks": 0}
    tracks = (
        frames.group_by("camera_id", "person_id")
        .agg(
            pl.col("height_est").median(),
            pl.col("height_m").first(),
            pl.col("has_hat").first(),
            pl.len().alias("n"),
        )
        .filter(pl.col("n") >= min_frames)
        .with_columns((pl.col("height_est") - pl.col("height_m")).alias("error"))
    )
    frame_error = (frames["height_est"] - frames["height_m"]).abs()
    no_hat = tracks.filter(~pl.col("has_hat"))
    return {
        "frames": len(frames),
        "frame_median_abs_error_m": float(frame_error.median()),
        "tracks": len(tracks),
        "track_median_abs_error_m": float(tracks["error"].abs().median()),
        "track_median_error_m": float(tracks["error"].median()),
        "track_p90_abs_error_m": float(tracks["error"].abs().quantile(0.9)),
        "tracks_without_hat": len(no_hat),
        "track_median_abs_error_without_hat_m": (
            float(no_hat["error"].abs().median()) if len(no_hat) else None
        ),
    }


def measure_attributes(
    site_dir: str | Path,
    *,
    use_background: bool = True,
    min_track_frames: int = 10,
    jitter_px: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Attribute figures of a rendered site (``site.yaml``, ``gt/``, ``videos/``), JSON-able.

    Colour accuracy counts (camera, person) tracks with at least ``min_track_frames``
    frames in which the person is at least 30% visible (1 s at 10 fps); every such frame
    votes, weighted by its crop quality. ``use_background`` gives the colour regions a
    median background image of the camera. Heights and foot-points use the frames in
    which the person is at least half visible and the box is inside the frame;
    ``jitter_px`` adds Gaussian noise of that many pixels to every box coordinate
    (``seed`` fixes it), a stand-in for a detector's boxes.
    """
    site_dir = Path(site_dir)
    site = load_site_config(site_dir / "site.yaml")
    people = pl.read_parquet(site_dir / "gt" / "people.parquet")
    boxes = pl.read_parquet(site_dir / "gt" / "boxes.parquet").join(
        people.select("person_id", "height_m", pl.col("hat_colour").is_not_null().alias("has_hat")),
        on="person_id",
    )
    boxes = _jittered(boxes, jitter_px, seed)
    colour_rows: list[dict[str, Any]] = []
    geometry = []
    for camera in site.cameras:
        cam_boxes = boxes.filter(pl.col("camera_id") == camera.id)
        if cam_boxes.is_empty():
            continue
        video = site_dir / "videos" / f"{camera.id}.mp4"
        votes = _camera_colour_votes(video, cam_boxes, use_background)
        colour_rows.extend(_colour_rows(camera.id, votes, people, min_track_frames))
        geometry.append(_geometry_frame(camera, cam_boxes))
    frames = pl.concat(geometry) if geometry else pl.DataFrame()
    foot = frames["foot_error_m"] if len(frames) else pl.Series([], dtype=pl.Float64)
    return {
        "site": site.name,
        "settings": {
            "use_background": use_background,
            "min_track_frames": min_track_frames,
            "jitter_px": jitter_px,
        },
        "colour": _colour_summary(pl.DataFrame(colour_rows)),
        "height": _height_summary(frames, min_track_frames),
        "foot": {
            "frames": len(foot),
            "median_error_m": float(foot.median()) if len(foot) else None,
            "p90_error_m": float(foot.quantile(0.9)) if len(foot) else None,
        },
        "targets": {
            "upper_accuracy": 0.85,
            "height_median_abs_error_m": 0.10,
            "foot_median_error_m": 0.5,
        },
    }
