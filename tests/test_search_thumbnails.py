"""Thumbnails leaving the system: bystanders' heads blurred, the subject's kept sharp,
withheld when the frame's people are unknown (``sightline.search.thumbnails``)."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from sightline.config import load_site_config
from sightline.search.thumbnails import (
    FrameDetections,
    blur_thumbnail,
    decode_frames,
    thumbnail_frames,
    tracklet_thumbnail,
)
from sightline.store.tables import TrackStore
from tests.test_search_helpers import make_tracklet

SUBJECT = np.array([100.0, 50.0, 140.0, 150.0])  # frame px; the crop is (100, 50)..(140, 150)
NEIGHBOUR = np.array([110.0, 90.0, 150.0, 190.0])  # its head reaches crop rows ~30..65
HEAD = (slice(35, 60), slice(12, 40))  # the neighbour's head inside the crop


def _textured_jpeg(width: int = 40, height: int = 100) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)  # sharp everywhere
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)


def _write_detections(run: Path, camera: str, rows: list[tuple[float, np.ndarray, float]]) -> None:
    folder = run / "detections" / f"camera_id={camera}"
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "camera_id": [camera] * len(rows),
            "frame_ts": [datetime.fromtimestamp(t, UTC) for t, _, _ in rows],
            "x1": [float(b[0]) for _, b, _ in rows],
            "y1": [float(b[1]) for _, b, _ in rows],
            "x2": [float(b[2]) for _, b, _ in rows],
            "y2": [float(b[3]) for _, b, _ in rows],
            "score": [s for _, _, s in rows],
        },
        schema_overrides={"frame_ts": pl.Datetime("us", "UTC")},
    ).write_parquet(folder / f"part-{len(list(folder.iterdir()))}.parquet")


def test_blur_thumbnail_blurs_other_heads_and_keeps_the_subjects() -> None:
    jpeg = _textured_jpeg()
    out = blur_thumbnail(jpeg, SUBJECT[None], [0.0], (640, 360), lambda _t: NEIGHBOUR[None])
    after, before = _pixels(out), _pixels(jpeg)
    assert np.abs(after[HEAD] - before[HEAD]).mean() > 20  # the neighbour's head: blurred
    assert np.abs(after[:18] - before[:18]).mean() < 8  # the subject's head: sharp
    # the subject's own detection is not a neighbour; no neighbours: unchanged
    assert blur_thumbnail(jpeg, SUBJECT[None], [0.0], (640, 360), lambda _t: SUBJECT[None]) == jpeg
    assert blur_thumbnail(jpeg, SUBJECT[None], [0.0], (640, 360), None) == jpeg


def test_thumbnail_frames_are_those_whose_crop_has_the_thumbnails_size() -> None:
    jpeg = _textured_jpeg()  # 40 x 100
    boxes = SUBJECT + np.array([[0.0, 0, 0, 0], [0, 0, 10, 0], [5, 5, 5, 5]])
    assert thumbnail_frames(jpeg, boxes, (640, 360)) == [0, 2]
    assert thumbnail_frames(jpeg, boxes[1:2], (640, 360)) == [0]  # none fits: all


def test_frame_detections_by_camera_and_span(tmp_path: Path) -> None:
    t0 = 1_772_460_000.0
    _write_detections(
        tmp_path,
        "cam1",
        [
            (t0, SUBJECT, 0.9),
            (t0, NEIGHBOUR, 0.5),
            (t0 + 0.1, NEIGHBOUR, 0.1),
            (t0 + 60, SUBJECT, 0.9),
        ],
    )
    found = FrameDetections(tmp_path).between("cam1", t0, t0 + 0.1)
    assert found is not None
    assert sorted(found) == [round(t0 * 1000)]  # t0 + 0.1 s: below the neighbour score
    assert len(found[round(t0 * 1000)]) == 2
    assert FrameDetections(tmp_path).between("cam1", t0 + 10, t0 + 20) is None  # not covered
    assert FrameDetections(tmp_path).between("cam2", t0, t0 + 1) is None  # no camera folder
    assert FrameDetections(tmp_path).between("../cam1", t0, t0 + 1) is None
    # a search job's forensic ingest keeps its own run folders
    _write_detections(tmp_path / "forensic" / "job-1" / "w0", "cam2", [(t0, SUBJECT, 0.9)])
    assert len(FrameDetections(tmp_path).between("cam2", t0, t0)[round(t0 * 1000)]) == 1


@pytest.fixture
def store_with_thumbnail(tiny_site: Path, tmp_path: Path) -> dict:
    """One stored tracklet on the tiny site's first camera whose thumbnail is a textured
    crop of SUBJECT, at two frames 0.5 s apart."""
    site = load_site_config(tiny_site / "site.yaml")
    camera = site.cameras[0]
    t0 = camera.source_start.timestamp() + 2.0
    tracklet = dataclasses.replace(
        make_tracklet(1, camera.id, t0, n=2, dt=0.5),
        boxes=np.array([SUBJECT, SUBJECT], np.float32),
        thumbnail_jpeg=_textured_jpeg(),
    )
    store = TrackStore(tmp_path / "store", durable=False)
    store.write_tracklets([tracklet], {})
    store.flush()
    store.close()
    return {"site": site, "store": tmp_path / "store", "tracklet": tracklet, "t0": t0}


def test_stored_thumbnail_is_blurred_when_the_frames_people_are_known(
    store_with_thumbnail: dict, tmp_path: Path
) -> None:
    s = store_with_thumbnail
    run, t0, camera = tmp_path / "run", s["t0"], s["tracklet"].camera_id
    _write_detections(run, camera, [(t0, SUBJECT, 0.9), (t0 + 0.5, SUBJECT, 0.9)])
    _write_detections(run, camera, [(t0 + 0.5, NEIGHBOUR, 0.8)])
    thumb = tracklet_thumbnail(
        s["store"], s["site"], s["tracklet"].tracklet_id, FrameDetections(run), videos=False
    )
    assert thumb is not None and thumb.detections_known and not thumb.exact_frame
    stored = s["tracklet"].thumbnail_jpeg
    assert np.abs(_pixels(thumb.jpeg)[HEAD] - _pixels(stored)[HEAD]).mean() > 20


def test_stored_thumbnail_is_marked_unknown_without_the_runs_detections(
    store_with_thumbnail: dict, tmp_path: Path
) -> None:
    s = store_with_thumbnail
    tracklet_id = s["tracklet"].tracklet_id
    for detections in (None, FrameDetections(tmp_path / "no-run")):
        thumb = tracklet_thumbnail(s["store"], s["site"], tracklet_id, detections, videos=False)
        assert thumb is not None and not thumb.detections_known
    assert tracklet_thumbnail(s["store"], s["site"], "cam9-0-9", None) is None


def test_the_recording_narrows_the_crop_to_its_own_frame(tiny_site: Path, tmp_path: Path) -> None:
    """A crop cut from frame 20 of the real recording: a neighbour detected only in
    frame 25 (same crop size) is blurred when the frame is unknown, not once the
    recording shows the crop came from frame 20."""
    site = load_site_config(tiny_site / "site.yaml")
    camera = site.cameras[0]
    frames = decode_frames(Path(str(camera.source)), {20, 25})
    assert set(frames) == {20, 25}
    x1, y1, x2, y2 = SUBJECT.astype(int)
    buffer = io.BytesIO()
    Image.fromarray(frames[20][y1:y2, x1:x2]).save(buffer, "JPEG", quality=95)
    start = camera.source_start.timestamp()
    tracklet = dataclasses.replace(
        make_tracklet(1, camera.id, start + 20 / camera.fps, n=2, dt=5 / camera.fps),
        boxes=np.array([SUBJECT, SUBJECT], np.float32),
        thumbnail_jpeg=buffer.getvalue(),
    )
    store = TrackStore(tmp_path / "store", durable=False)
    store.write_tracklets([tracklet], {})
    store.flush()
    store.close()
    run = tmp_path / "run"
    t20, t25 = (float(t) for t in tracklet.ts)
    _write_detections(run, camera.id, [(t20, SUBJECT, 0.9), (t25, NEIGHBOUR, 0.9)])
    detections = FrameDetections(run)
    exact = tracklet_thumbnail(tmp_path / "store", site, tracklet.tracklet_id, detections)
    guess = tracklet_thumbnail(
        tmp_path / "store", site, tracklet.tracklet_id, detections, videos=False
    )
    assert exact is not None and exact.exact_frame and exact.jpeg == tracklet.thumbnail_jpeg
    assert guess is not None and not guess.exact_frame and guess.jpeg != tracklet.thumbnail_jpeg
