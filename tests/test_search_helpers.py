"""Builders of small tracklet tables for the search tests (and a check that they conform)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from sightline.fusion.calibration import AppearanceCalibration
from sightline.search import SearchCalibration, SearchQuery
from sightline.tracking.sink import TRACKLET_SCHEMA, tracklets_frame
from sightline.tracking.tracklets import Tracklet

T0 = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC).timestamp()
DIM = 16

# The synthetic vectors of the search tests were laid out against the calibrations of the
# first built-in re-ID weights; pinned here so retraining the model does not move them.
CCTV_CALIBRATION = AppearanceCalibration(slope=14.054, intercept=-6.158, source="tests")
PHOTO_CALIBRATION = AppearanceCalibration(slope=11.935, intercept=-6.160, source="tests")
SYNTHETIC_CALIBRATION = SearchCalibration(CCTV_CALIBRATION)
"""A search calibration with the CCTV-pair constants the synthetic vectors assume."""


def pin_photo_calibration(monkeypatch, folder: Path) -> None:
    """Make :meth:`SearchCalibration.load` (the searches' default) use
    :data:`PHOTO_CALIBRATION` instead of the committed photo calibration."""
    from sightline.search import scoring

    path = Path(folder) / "photo_calibration.json"
    PHOTO_CALIBRATION.save(path)
    monkeypatch.setattr(scoring, "DEFAULT_PHOTO_CALIBRATION", path)


def person_vector(person: int, dim: int = DIM) -> np.ndarray:
    """A fixed unit vector per person: what the embedder would see of them."""
    v = np.random.default_rng(1000 + person).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def make_tracklet(
    track_id: int,
    camera_id: str = "cam1",
    t0: float = T0,
    *,
    n: int = 5,
    dt: float = 1.0,
    start: tuple[float, float] = (0.0, 0.0),
    step: tuple[float, float] = (1.0, 0.0),
    person: int = 0,
    noise: float = 0.05,
    samples: int = 3,
    upper: str = "red",
    upper_conf: float = 0.9,
    lower: str = "black",
    lower_conf: float = 0.8,
    height: float = 1.7,
    quality: float = 0.7,
    version: int = 1,
    embeddings: np.ndarray | None = None,
    hat: float | None = None,
    bag: float | None = None,
) -> Tracklet:
    """A tracklet of ``n`` frames ``dt`` apart, walking from ``start`` by ``step`` per frame,
    whose ``samples`` embeddings are ``person``'s vector plus noise."""
    rng = np.random.default_rng(track_id * 7919 + version)
    ts = t0 + np.arange(n, dtype=np.float64) * dt
    world = np.asarray(start, np.float32) + np.outer(np.arange(n), step).astype(np.float32)
    boxes = np.column_stack(
        [np.arange(n) * 10.0, np.zeros(n), np.arange(n) * 10 + 20, 80.0 * np.ones(n)]
    ).astype(np.float32)
    if embeddings is None:
        raw = person_vector(person)[None] + noise * rng.normal(size=(samples, DIM))
        embeddings = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    embeddings = np.asarray(embeddings, np.float32).reshape(-1, DIM)
    mean = embeddings.mean(axis=0) if len(embeddings) else np.zeros(DIM)
    return Tracklet(
        tracklet_id=f"{camera_id}-0-{track_id}",
        camera_id=camera_id,
        track_id=track_id,
        version=version,
        final=True,
        ts=ts,
        boxes=boxes,
        scores=np.full(n, 0.9, np.float32),
        foot_px=boxes[:, [0, 3]],
        foot_world=world,
        embeddings=embeddings,
        embedding_mean=(mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32),
        upper_colour=upper,
        upper_colour_confidence=upper_conf,
        lower_colour=lower,
        lower_colour_confidence=lower_conf,
        height_m=height,
        quality=quality,
        thumbnail_jpeg=b"jpeg",
        hat_probability=hat,
        bag_probability=bag,
    )


def frame_of(*tracklets: Tracklet) -> pl.DataFrame:
    """The tracklets as TRACKLET_SCHEMA rows (thumbnails named after the tracklet)."""
    refs = [f"thumbnails/camera_id={t.camera_id}/{t.tracklet_id}.jpg" for t in tracklets]
    return tracklets_frame(list(tracklets), refs)


def identities_of(assignments: dict[str, str]) -> pl.DataFrame:
    """``(tracklet_id, global_id)`` rows from ``{tracklet_id: global_id}``."""
    return pl.DataFrame(
        {"tracklet_id": list(assignments), "global_id": list(assignments.values())},
        schema={"tracklet_id": pl.String(), "global_id": pl.String()},
    )


def write_gt_detections(gt: pl.DataFrame, run_dir: Path) -> None:
    """Ground-truth boxes (``gt/boxes.parquet`` rows) written as a pipeline run's
    detections (``<run_dir>/detections/camera_id=<id>/part-0.parquet``, score 0.9)."""
    for (camera,), part in gt.partition_by("camera_id", as_dict=True).items():
        folder = Path(run_dir) / "detections" / f"camera_id={camera}"
        folder.mkdir(parents=True, exist_ok=True)
        part.select(
            "camera_id",
            pl.col("ts").alias("frame_ts"),
            "x1",
            "y1",
            "x2",
            "y2",
            score=pl.lit(0.9, pl.Float32),
        ).write_parquet(folder / "part-0.parquet")


def query(**fields: object) -> SearchQuery:
    """A valid query over the first hour after T0, with the given fields on top."""
    base: dict[str, object] = {
        "case_id": "case-1",
        "reason": "missing child",
        "start": T0 - 60,
        "end": T0 + 3600,
    }
    return SearchQuery.model_validate({**base, **fields})


def test_builders_make_schema_rows():
    frame = frame_of(make_tracklet(1), make_tracklet(2, "cam2", samples=0))
    assert frame.schema == pl.Schema(TRACKLET_SCHEMA)
    assert frame["embeddings"].list.len().to_list() == [3, 0]


def test_person_vectors_are_distinct_and_tracklets_close_to_theirs():
    a, b = person_vector(1), person_vector(2)
    assert abs(float(a @ b)) < 0.9
    t = make_tracklet(1, person=1)
    assert (t.embeddings @ a).min() > 0.9
