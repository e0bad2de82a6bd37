"""The tracking stage without Ray: ground-truth boxes of the tiny site as detections."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sightline.config import CameraConfig, TrackingConfig, load_site_config
from sightline.ingest.reader import Frame
from sightline.models.core import Detections, l2_normalise
from sightline.tracking.sink import ParquetTrackletSink, latest_versions, read_tracklets
from sightline.tracking.stage import TrackingStage
from sightline.training.data import read_frames

CAMERA = "cam01"


class _Flaky:
    """An async model double that fails its first ``fail`` calls, then answers
    :meth:`answer`; counts calls and crops answered."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls = 0
        self.crops = 0

    async def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionError("embedder replica is down")
        self.crops += len(crops)
        return self.answer(crops)

    def answer(self, crops: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class ColourEmbedder(_Flaky):
    """Test double: a crop's mean colour as a unit vector."""

    def answer(self, crops: list[np.ndarray]) -> np.ndarray:
        means = np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]).astype(np.float32)
        return l2_normalise(means + 1.0)


class ConstantReader(_Flaky):
    """Test double of the hat-and-bag reader: ``P(hat) 0.25, P(bag) 0.75`` for every crop."""

    def answer(self, crops: list[np.ndarray]) -> np.ndarray:
        return np.tile([0.25, 0.75], (len(crops), 1))


def _feed(site: Path, camera: CameraConfig, stage: TrackingStage) -> pl.DataFrame:
    gt = pl.read_parquet(site / "gt" / "boxes.parquet").filter(pl.col("camera_id") == camera.id)
    by_frame = gt.partition_by("frame_index", as_dict=True)
    start = camera.source_start

    async def run() -> None:
        for index, image in read_frames(site / "videos" / f"{camera.id}.mp4"):
            rows = by_frame.get((index,))
            if rows is None:
                dets = Detections.empty()
            else:
                rows = rows.filter(pl.col("visibility") >= 0.3)
                dets = Detections.from_arrays(
                    rows.select("x1", "y1", "x2", "y2").to_numpy(), np.full(rows.height, 0.9)
                )
            ts = start + timedelta(seconds=index / camera.fps)
            image.flags.writeable = False
            await stage.write(camera.id, Frame(image, ts, index / camera.fps, index), dets)
        await stage.close()

    asyncio.run(run())
    return gt


@pytest.fixture(scope="module")
def tracked(tiny_site: Path, tmp_path_factory: pytest.TempPathFactory):
    site = load_site_config(tiny_site / "site.yaml")
    camera = site.camera(CAMERA)
    out = tmp_path_factory.mktemp("tracklets")
    embedder = ColourEmbedder(fail=1)
    config = TrackingConfig(emit_every_s=2.0, embeddings_per_tracklet=4, appearance=False)
    reader = ConstantReader(fail=1)
    stage = TrackingStage(
        camera,
        embedder,
        ParquetTrackletSink(out, CAMERA),
        config=config,
        run_id="r1",
        read_attributes=reader,
    )
    gt = _feed(tiny_site, camera, stage)
    return stage, embedder, read_tracklets(out), gt, out


def test_every_track_ends_with_a_final_version(tracked):
    stage, _, tracklets, gt, _ = tracked
    latest = latest_versions(tracklets)
    assert latest["final"].all()
    assert latest["tracklet_id"].str.starts_with(f"{CAMERA}-r1-").all()
    # one tracklet per person seen for long enough (ids may split at long occlusions)
    people = gt.group_by("person_id").len().filter(pl.col("len") >= 10).height
    assert people <= latest.height <= 2 * people
    assert stage.stats["tracks_active"] == 0


def test_long_tracks_are_emitted_periodically_with_rising_versions(tracked):
    _, _, tracklets, _, _ = tracked
    long = tracklets.filter(pl.col("version") > 1)
    assert long.height > 0
    for tid in long["tracklet_id"].unique():
        versions = tracklets.filter(pl.col("tracklet_id") == tid).sort("version")
        assert versions["version"].to_list() == list(range(1, versions.height + 1))
        assert versions["n_frames"].is_sorted()  # each version extends the one before
        assert versions["final"].to_list()[-1] and not any(versions["final"].to_list()[:-1])


def test_embedder_failure_is_retried_and_crops_are_embedded_once(tracked):
    stage, embedder, tracklets, _, _ = tracked
    assert stage.stats["embed_errors"] == 1
    latest = latest_versions(tracklets)
    assert (latest["embeddings"].list.len() >= 1).all()
    assert (latest["embeddings"].list.len() <= 4).all()
    # later versions reuse embeddings: far fewer crops embedded than stored in versions
    assert embedder.crops < tracklets["embeddings"].list.len().sum()


def test_hats_and_bags_are_read_once_per_crop_and_a_failed_read_is_retried(tracked):
    stage, _, tracklets, _, _ = tracked
    reader = stage._read_attributes  # the ConstantReader of the fixture
    assert stage.stats["attribute_errors"] == 1
    assert "embedder replica is down" in stage.stats["last_attribute_error"]
    assert stage.stats["crops_read"] == reader.crops
    # the first read failed: those versions record nothing, later ones read the crops
    assert tracklets["hat_probability"].null_count() > 0
    later = tracklets.filter(pl.col("version") > 1)
    assert later["hat_probability"].to_list() == pytest.approx([0.25] * later.height)
    assert later["bag_probability"].to_list() == pytest.approx([0.75] * later.height)
    # later versions reuse the readings: fewer crops read than stored in versions
    assert reader.crops < tracklets["embeddings"].list.len().sum()


def test_without_a_reader_tracklets_record_no_hat_or_bag(tiny_site: Path, tmp_path: Path):
    camera = load_site_config(tiny_site / "site.yaml").camera(CAMERA)
    sink = ParquetTrackletSink(tmp_path, CAMERA)
    stage = TrackingStage(camera, ColourEmbedder(), sink, config=TrackingConfig(appearance=False))
    _feed(tiny_site, camera, stage)
    latest = latest_versions(read_tracklets(tmp_path))
    assert latest.height > 0
    assert latest["hat_probability"].is_null().all() and latest["bag_probability"].is_null().all()
    assert stage.stats["crops_read"] == 0


def test_foot_points_are_on_the_ground_truth_path(tracked):
    _, _, tracklets, gt, _ = tracked
    latest = latest_versions(tracklets)
    points = latest.select(
        pl.col("ts").explode().alias("ts"), pl.col("foot_world").explode().alias("xy")
    ).with_columns(pl.col("xy").list.get(0).alias("x"), pl.col("xy").list.get(1).alias("y"))
    truth = gt.filter(pl.col("visibility") >= 0.3).select("ts", "world_x", "world_y")
    joined = points.join(truth, on="ts")
    dist = np.hypot(joined["x"] - joined["world_x"], joined["y"] - joined["world_y"]).to_numpy()
    # nearest ground-truth person at the same instant (several people share a frame)
    nearest = (
        joined.with_columns(pl.Series("d", dist)).group_by("ts", "x", "y").agg(pl.col("d").min())
    )
    assert float(nearest["d"].median()) < 0.5


def test_thumbnails_and_attributes_are_written(tracked):
    _, _, tracklets, _, out = tracked
    latest = latest_versions(tracklets)
    assert all((out / p).read_bytes()[:2] == b"\xff\xd8" for p in latest["thumbnail"])
    assert latest["upper_colour"].is_not_null().all()
    assert (
        (latest["upper_colour_confidence"] >= 0) & (latest["upper_colour_confidence"] <= 1)
    ).all()
    assert latest["height_m"].drop_nans().is_between(0.8, 2.2).all()


def test_with_appearance_every_detection_is_embedded_once(tiny_site: Path, tmp_path: Path):
    site = load_site_config(tiny_site / "site.yaml")
    camera = site.camera(CAMERA)
    embedder = ColourEmbedder()
    sink = ParquetTrackletSink(tmp_path, CAMERA)
    stage = TrackingStage(camera, embedder, sink, config=TrackingConfig(appearance=True))
    gt = _feed(tiny_site, camera, stage)
    detections = gt.filter(pl.col("visibility") >= 0.3).height
    # one call per frame with people; the tracklets reuse those vectors
    assert embedder.crops == detections
    latest = latest_versions(read_tracklets(tmp_path))
    assert latest.height > 0 and (latest["embeddings"].list.len() >= 1).all()


def test_tracklet_scores_against_ground_truth(tracked, tiny_site: Path):
    from sightline.evaluation.tracklets import score_tracklets

    _, _, tracklets, _, _ = tracked
    site = load_site_config(tiny_site / "site.yaml")
    scores = score_tracklets(
        latest_versions(tracklets),
        pl.read_parquet(tiny_site / "gt" / "boxes.parquet"),
        pl.read_parquet(tiny_site / "gt" / "people.parquet"),
        site.cameras,
    )
    assert scores["tracklets_matched_to_a_person"] == scores["tracklets"]
    assert scores["upper_colour_accuracy"] >= 0.8
    assert scores["height_median_error_m"] < 0.1
    assert scores["foot_median_error_m"] < 0.3
    # the ConstantReader says "no hat, a bag" for everyone: right for the people without a
    # hat and with a bag only, and no better than chance at ranking (AUC 0.5)
    people = pl.read_parquet(tiny_site / "gt" / "people.parquet")
    assert 0 < scores["hat_tracklets"] <= scores["tracklets_longer_than_1s"]
    assert scores["hat_auc"] == pytest.approx(0.5) and scores["bag_auc"] == pytest.approx(0.5)
    assert scores["hat_accuracy"] > 0.5 > scores["bag_accuracy"]
    assert people["hat_colour"].null_count() > people.height / 2
    assert people["bag_colour"].null_count() > people.height / 2
    # a tracklet moved by a metre on the ground is a metre off
    shifted = latest_versions(tracklets).with_columns(
        pl.col("foot_world").list.eval(pl.element().list.eval(pl.element() + 0.7071))
    )
    moved = score_tracklets(
        shifted,
        pl.read_parquet(tiny_site / "gt" / "boxes.parquet"),
        pl.read_parquet(tiny_site / "gt" / "people.parquet"),
        site.cameras,
    )
    assert moved["foot_median_error_m"] > 0.6
