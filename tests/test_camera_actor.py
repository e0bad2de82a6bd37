"""CameraActor on a local Ray: decode a camera file, detect through Serve, sink Parquet."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import ray
from ray import serve

from actors.camera import CameraActor
from sightline.config import CameraConfig
from sightline.ingest import DETECTION_SCHEMA
from sightline.models.core import Detections
from sightline.sim.video import H264Writer

APP = "ingest-test"
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DEADLINE_S = 60.0


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=16)
class BoxDetector:
    """Test double: one fixed box per frame (a quarter of the frame), tracks concurrency.

    ``fail_every`` > 0 makes every n-th request raise, like a replica that errors.
    """

    def __init__(self, fail_every: int = 0, other: Any = None) -> None:
        self.fail_every = fail_every
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.shapes: set[tuple[int, ...]] = set()

    async def detect(self, frame: np.ndarray) -> Detections:
        self.calls += 1
        call = self.calls
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.005)  # long enough for requests to overlap
            self.shapes.add(frame.shape)
            if self.fail_every and call % self.fail_every == 0:
                raise RuntimeError(f"replica error on call {call}")
            h, w = frame.shape[:2]
            return Detections.from_arrays(np.array([[w / 4, h / 4, w / 2, h / 2]]), [0.9])
        finally:
            self.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, "peak": self.peak, "shapes": sorted(self.shapes)}


@pytest.fixture(scope="module")
def detectors(ray_local: None) -> Iterator[dict[str, Any]]:
    """Handles to a working detector and one that fails every 4th request (one Serve app)."""
    flaky = BoxDetector.options(name="flaky").bind(fail_every=4)
    app = BoxDetector.options(name="fixed").bind(fail_every=0, other=flaky)
    serve.run(app, name=APP, route_prefix=None)
    yield {
        "fixed": serve.get_deployment_handle("fixed", APP),
        "flaky": serve.get_deployment_handle("flaky", APP),
    }
    serve.delete(APP)


@pytest.fixture(scope="module")
def cam01(tmp_path_factory: pytest.TempPathFactory) -> CameraConfig:
    """A camera over a 10 s, 10 fps, 640x360 file, sampled at 5 fps and half size."""
    video = tmp_path_factory.mktemp("camera_actor") / "cam01.mp4"
    rng = np.random.default_rng(0)
    with H264Writer(video, 10, 640, 360) as writer:
        for i in range(100):
            frame = np.full((360, 640, 3), 90, np.uint8)
            frame[100:300, 6 * i : 6 * i + 40] = rng.integers(0, 255, 3, dtype=np.uint8)
            writer.write(frame)
    pairs = [((0, 0), (0, 10)), ((320, 0), (10, 10)), ((320, 180), (10, 0)), ((0, 180), (0, 0))]
    return CameraConfig(
        id="cam01",
        source=str(video),
        source_start=START,
        fps=5.0,
        resolution=(320, 180),
        calibration=[{"image": p, "ground": g} for p, g in pairs],
    )


def _camera_actor() -> Any:
    return CameraActor.options(num_cpus=0)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_camera_actor_writes_one_row_per_sampled_frame(
    detectors: dict[str, Any], cam01: CameraConfig, tmp_path: Path
) -> None:
    actor = _camera_actor().remote(
        cam01, detectors["fixed"], out_dir=str(tmp_path), max_in_flight=3, flush_every=20
    )
    health = ray.get(actor.run.remote(), timeout=DEADLINE_S)
    assert health["state"] == "finished" and health["progress"] == 1.0
    assert health["frames_decoded"] == 100 and health["frames_delivered"] == 50
    assert health["frames_detected"] == 50 and health["detections"] == 50
    assert health["detector_errors"] == 0 and health["detector_in_flight"] == 0
    assert health["drops"] == 0 and health["reconnects"] == 0 and health["sink_errors"] == 0

    folder = tmp_path / "detections" / "camera_id=cam01"
    assert len(list(folder.glob("part-*.parquet"))) == 3  # 20 + 20 + 10 frames
    rows = pl.read_parquet(folder / "*.parquet")
    assert rows.schema == pl.Schema(DETECTION_SCHEMA)
    assert rows.height == 50 and rows["camera_id"].unique().to_list() == ["cam01"]
    # Frames in order, every 0.2 s from the camera's source_start.
    expected = [START + timedelta(seconds=0.2 * i) for i in range(50)]
    assert rows["frame_ts"].to_list() == expected
    assert rows.select("x1", "y1", "x2", "y2").unique().rows() == [(80.0, 45.0, 160.0, 90.0)]

    stats = detectors["fixed"].stats.remote().result(timeout_s=10)
    assert stats["shapes"] == [(180, 320, 3)]  # resized before it went to the detector
    assert 2 <= stats["peak"] <= 3  # overlapping requests, never more than max_in_flight
    assert ray.get(actor.health.remote())["state"] == "finished"
    ray.kill(actor)


def test_failing_detector_requests_skip_frames_not_the_camera(
    detectors: dict[str, Any], cam01: CameraConfig, tmp_path: Path
) -> None:
    actor = _camera_actor().remote(cam01, detectors["flaky"], out_dir=str(tmp_path))
    health = ray.get(actor.run.remote(), timeout=DEADLINE_S)
    assert health["state"] == "finished"
    assert health["detector_errors"] == 12  # every 4th of 50 requests
    assert health["frames_detected"] == 38 == health["frames_delivered"] - 12
    assert health["last_detector_error"].startswith("RuntimeError: replica error on call")
    rows = pl.read_parquet(tmp_path / "detections" / "camera_id=cam01" / "*.parquet")
    assert rows.height == 38 and rows["frame_ts"].is_sorted()
    ray.kill(actor)


def test_corrupt_source_leaves_the_actor_alive(
    detectors: dict[str, Any], cam01: CameraConfig, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(5).randbytes(4096))
    camera = cam01.model_copy(update={"source": str(garbage)})
    options = {"backoff_initial_s": 0.05, "backoff_max_s": 0.1}
    actor = _camera_actor().remote(
        camera, detectors["fixed"], out_dir=str(tmp_path), reader_options=options
    )
    running = actor.run.remote()
    _wait_for(lambda: ray.get(actor.health.remote())["reconnects"] >= 3, "reconnect attempts")
    health = ray.get(actor.health.remote())
    assert health["state"] in ("reconnecting", "running")
    assert "garbage.mp4" in health["last_error"] and "Invalid data" in health["last_error"]
    ray.get(actor.stop.remote(), timeout=10)
    final = ray.get(running, timeout=10)
    assert final["state"] == "stopped" and final["frames_delivered"] == 0
    # Still serving calls after the source failed over and over.
    assert ray.get(actor.health.remote(), timeout=10)["camera_id"] == "cam01"
    assert not list((tmp_path / "detections" / "camera_id=cam01").glob("*.parquet"))
    ray.kill(actor)


def test_live_camera_stops_on_request_and_flushes(
    detectors: dict[str, Any], cam01: CameraConfig, tmp_path: Path
) -> None:
    # The file stands in for a live camera: paced to real time, stamped on arrival.
    actor = _camera_actor().remote(
        cam01, detectors["fixed"], out_dir=str(tmp_path), mode="live",
        reader_options={"realtime": True},
    )  # fmt: skip
    running = actor.run.remote()
    _wait_for(lambda: ray.get(actor.health.remote())["frames_detected"] >= 3, "detections")
    ray.get(actor.stop.remote(), timeout=10)
    final = ray.get(running, timeout=10)
    assert final["state"] == "stopped" and final["mode"] == "live"
    assert final["progress"] is None and final["lag_s"] is not None
    assert 3 <= final["frames_detected"] < 50
    rows = pl.read_parquet(tmp_path / "detections" / "camera_id=cam01" / "*.parquet")
    assert rows.height == final["frames_detected"]  # what was detected got flushed on stop
    # Stamped with arrival times, not the file's source_start.
    assert datetime.now(UTC) - rows["frame_ts"].min() < timedelta(seconds=60)
    ray.kill(actor)
