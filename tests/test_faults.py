"""Surviving faults without a cluster: resume points of the reader, the tracker and the
camera actor, the owners' retry rule, and placement options for each role.

The multi-node scenario (a node is removed mid-run) is ``tests/cluster_scenario.py``,
run by ``tests/test_cluster_faults.py``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from sightline.config import CameraConfig, TrackingConfig, load_site_config
from sightline.ingest import FrameReader, ReaderSettings
from sightline.ingest.reader import Frame
from sightline.ingest.sampler import FpsSampler
from sightline.ingest.sink import PartFolder, discard_parts, next_part_number
from sightline.models.core import Detections, l2_normalise
from sightline.placement import CAMERA_RESOURCE, COORDINATOR_RESOURCE, MODEL_RESOURCE
from sightline.sim.video import H264Writer
from sightline.tracking.stage import TrackingStage
from sightline.tracking.tracklets import Tracklet
from sightline.training.data import read_frames

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def video_25fps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s at 25 fps, 160x90 (a keyframe every 2 s), a moving bar."""
    path = tmp_path_factory.mktemp("resume") / "v25.mp4"
    with H264Writer(path, 25, 160, 90) as writer:
        for i in range(100):
            frame = np.full((90, 160, 3), 80, np.uint8)
            frame[20:70, i : i + 10] = 250
            writer.write(frame)
    return path


def _read_all(path: Path, **settings: Any) -> tuple[FrameReader, list[Frame]]:
    base = {"width": 160, "height": 90, "fps": 10.0, "queue_size": 4}
    reader = FrameReader(path, ReaderSettings(**{**base, **settings})).start()
    frames = list(reader)
    reader.join(5)
    return reader, frames


# --------------------------------------------------------------------------- reader


def test_sampler_resumes_on_the_same_grid():
    times = [i / 25 for i in range(100)]
    whole = FpsSampler(10.0)
    kept = [t for t in times if whole.keep(t)]
    first = FpsSampler(10.0)
    before = [t for t in times[:37] if first.keep(t)]
    again = FpsSampler(10.0)
    again.resume(first.last_kept, first.next_slot)
    after = [t for t in times if t > first.last_kept and again.keep(t)]
    assert before + after == kept


@pytest.mark.parametrize("at", [0, 7, 23])
def test_reader_resumes_after_a_frame_with_the_same_frames_and_times(video_25fps, at):
    """A new reader started after frame ``at`` of an earlier one delivers exactly the
    frames (pts, ts, pixels) the earlier one delivered after it."""
    # no source_start: the origin is the reader's start time, carried over by the resume
    first, frames = _read_all(video_25fps)
    assert len(frames) == 40  # 25 -> 10 fps over 4 s
    resume = first.resume_settings(frames[at])
    assert resume["resume_after_s"] == frames[at].pts_s and resume["source_start"] == first.origin
    time.sleep(0.01)
    second, rest = _read_all(video_25fps, **resume)
    expected = frames[at + 1 :]
    assert [(f.pts_s, f.ts) for f in rest] == [(f.pts_s, f.ts) for f in expected]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(rest, expected, strict=True))
    assert [f.index for f in rest] == list(range(len(rest)))
    health = second.health()
    assert health.state == "finished" and health.progress == 1.0
    if resume["resume_after_s"] >= 2.0:  # it sought to the keyframe at 2 s
        assert health.frames_decoded == 50


def test_live_reader_ignores_a_resume_point(video_25fps):
    settings = ReaderSettings(width=160, height=90, mode="live", resume_after_s=3.0)
    reader = FrameReader(video_25fps, settings).start()
    try:
        first = reader.get(timeout=10)
    finally:
        reader.stop()
    assert first is not None and first.pts_s == 0.0  # a stream resumes at its present


def test_resume_point_must_not_be_negative():
    with pytest.raises(ValueError, match="resume_after_s"):
        ReaderSettings(resume_after_s=-1.0)


# --------------------------------------------------------------------------- parts


def test_discard_parts_drops_what_came_after_a_checkpoint(tmp_path):
    folder = PartFolder(tmp_path / "parts")
    for i in range(4):
        folder.write(pl.DataFrame({"i": [i]}))
    (folder.folder / "part-000009.parquet.tmp").write_bytes(b"half")
    assert folder.next_part == next_part_number(folder.folder) == 4
    gone = discard_parts(folder.folder, 2)
    assert [p.name for p in gone] == [
        "part-000002.parquet",
        "part-000003.parquet",
        "part-000009.parquet.tmp",
    ]
    assert next_part_number(folder.folder) == 2
    assert next_part_number(tmp_path / "missing") == 0 and discard_parts(tmp_path / "x", 0) == []


# --------------------------------------------------------------------------- tracker


class _ColourEmbedder:
    async def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        means = np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]).astype(np.float32)
        return l2_normalise(means + 1.0)


class _ListSink:
    def __init__(self) -> None:
        self.tracklets: list[Tracklet] = []

    def write(self, tracklets: list[Tracklet]) -> None:
        self.tracklets.extend(tracklets)

    def close(self) -> None:
        pass


def _inputs(site: Path, camera: CameraConfig) -> list[tuple[Frame, Detections]]:
    gt = pl.read_parquet(site / "gt" / "boxes.parquet").filter(pl.col("camera_id") == camera.id)
    by_frame = gt.partition_by("frame_index", as_dict=True)
    out = []
    for index, image in read_frames(site / "videos" / f"{camera.id}.mp4"):
        rows = by_frame.get((index,))
        dets = Detections.empty()
        if rows is not None:
            rows = rows.filter(pl.col("visibility") >= 0.3)
            boxes = rows.select("x1", "y1", "x2", "y2").to_numpy()
            dets = Detections.from_arrays(boxes, np.full(rows.height, 0.9))
        ts = camera.source_start + timedelta(seconds=index / camera.fps)
        out.append((Frame(image, ts, index / camera.fps, index), dets))
    return out


def _key(t: Tracklet) -> tuple[str, int]:
    return t.tracklet_id, t.version


def test_tracking_stage_restored_from_a_checkpoint_emits_what_an_uninterrupted_one_does(
    tiny_site: Path,
):
    """Stage A checkpoints after frame 40 and dies at frame 60; stage B restores the
    checkpoint and goes on from frame 41. A's and B's tracklets together are exactly the
    uninterrupted run's (same ids, versions, observations); B repeats A's after 40."""
    site = load_site_config(tiny_site / "site.yaml")
    camera = site.camera("cam01")
    config = TrackingConfig(emit_every_s=1.0, embeddings_per_tracklet=3)
    inputs = _inputs(tiny_site, camera)

    def stage(sink: _ListSink) -> TrackingStage:
        return TrackingStage(camera, _ColourEmbedder(), sink, config=config, run_id="r7")

    async def feed(s: TrackingStage, part: list[tuple[Frame, Detections]]) -> None:
        for frame, dets in part:
            await s.write(camera.id, frame, dets)

    whole_sink, a_sink, b_sink = _ListSink(), _ListSink(), _ListSink()
    whole = stage(whole_sink)
    asyncio.run(feed(whole, inputs))
    asyncio.run(whole.close())

    a = stage(a_sink)
    asyncio.run(feed(a, inputs[:41]))
    saved = a.checkpoint()
    asyncio.run(feed(a, inputs[41:61]))  # then the node is lost
    b = stage(b_sink)
    b.restore(saved)
    asyncio.run(feed(b, inputs[41:]))
    asyncio.run(b.close())

    expected = {_key(t): t for t in whole_sink.tracklets}
    got = {_key(t): t for t in a_sink.tracklets + b_sink.tracklets}
    assert len(expected) > 10 and set(got) == set(expected)
    for key, tracklet in expected.items():
        np.testing.assert_array_equal(got[key].ts, tracklet.ts)
        np.testing.assert_array_equal(got[key].boxes, tracklet.boxes)
    assert b.stats["tracklets_emitted"] == whole.stats["tracklets_emitted"]
    with pytest.raises(ValueError, match="run r7"):
        TrackingStage(camera, _ColourEmbedder(), _ListSink(), run_id="other").restore(saved)


def test_a_checkpoint_from_before_hats_and_bags_restores_and_reads_them(tiny_site: Path):
    """A stage checkpointed by the previous release (no reading counters, crops without
    readings) goes on with a reader: the old crops are read at the next emission."""
    import pickle

    camera = load_site_config(tiny_site / "site.yaml").camera("cam01")
    config = TrackingConfig(emit_every_s=1.0, embeddings_per_tracklet=3)
    inputs = _inputs(tiny_site, camera)
    old = TrackingStage(camera, _ColourEmbedder(), _ListSink(), config=config, run_id="r8")

    async def feed(s: TrackingStage, part: list[tuple[Frame, Detections]]) -> None:
        for frame, dets in part:
            await s.write(camera.id, frame, dets)

    asyncio.run(feed(old, inputs[:41]))
    state = pickle.loads(old.checkpoint())
    for name in ("crops_read", "attribute_errors", "last_attribute_error"):
        del state["stats"][name]
    for record in state["tracks"].values():
        for crop in record.crops:
            del crop.__dict__["attributes"]  # pickled before the field existed

    async def read(crops: list[np.ndarray]) -> np.ndarray:
        return np.full((len(crops), 2), 0.6)

    sink = _ListSink()
    new = TrackingStage(
        camera, _ColourEmbedder(), sink, config=config, run_id="r8", read_attributes=read
    )
    new.restore(pickle.dumps(state))
    asyncio.run(feed(new, inputs[41:]))
    asyncio.run(new.close())
    assert new.stats["crops_read"] > 0 and new.stats["attribute_errors"] == 0
    assert sink.tracklets and all(t.hat_probability == pytest.approx(0.6) for t in sink.tracklets)


# --------------------------------------------------------------------------- owners


def test_run_retries_wait_for_a_restart_and_give_up_only_on_a_crash_loop():
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    from actors.pipeline import RunRetries

    now = [0.0]
    retries = RunRetries(max_quick=2, quick_s=10.0, restart_wait_s=30.0, clock=lambda: now[0])
    restarting = ActorUnavailableError("The actor is restarting", None)
    for error in [ActorDiedError(), restarting] * 5:  # a node lost now and then ...
        now[0] += 40.0  # ... after the camera had been working for a while
        assert retries.retry_in(error) is not None
        retries.started()
    # while it restarts: wait, with a growing delay, not counted as failures
    delays = [retries.retry_in(restarting) for _ in range(6)]
    assert delays == sorted(delays) and delays[-1] <= 5.0 and retries.failures == 5
    for _ in range(3):  # the owner issues the run again after each delay
        retries.started()
        now[0] += 9.0
        assert retries.retry_in(restarting) is not None
    retries.started()
    now[0] += 9.0
    assert retries.retry_in(restarting) is None  # 36 s > 30 s: it never came back
    retries = RunRetries(max_quick=2, quick_s=10.0, clock=lambda: now[0])
    assert retries.retry_in(ActorDiedError()) is not None  # quick failures: two allowed ...
    assert retries.retry_in(ActorDiedError()) is not None
    assert retries.retry_in(ActorDiedError()) is None  # ... the third in a row is a loop
    broken = ActorDiedError()
    broken._actor_init_failed = True
    assert RunRetries().retry_in(broken) is None  # a constructor that fails will not heal


# --------------------------------------------------------------------------- placement


def test_each_role_asks_for_its_resource_only_where_the_cluster_declares_it():
    from actors.coordinator import COORDINATOR_SHARE, coordinator_node_options
    from actors.pipeline import CAMERA_NUM_CPUS, camera_actor_options
    from serve.deployments import model_resources

    cluster = {"CPU": 6.0, "GPU": 1.0, CAMERA_RESOURCE: 200.0, MODEL_RESOURCE: 100.0}
    cluster[COORDINATOR_RESOURCE] = 1.0
    camera = camera_actor_options("p-camera-cam01", cluster)
    assert camera["resources"] == {CAMERA_RESOURCE: 1.0}
    assert camera["scheduling_strategy"] == "SPREAD" and camera["max_restarts"] == -1
    assert camera["num_cpus"] == CAMERA_NUM_CPUS and camera["name"] == "p-camera-cam01"
    assert model_resources(cluster) == {MODEL_RESOURCE: 1.0}
    # the coordinator and the supervisor share the coordinator node's one unit
    mine = coordinator_node_options(COORDINATOR_SHARE, cluster)["resources"]
    theirs = coordinator_node_options(1 - COORDINATOR_SHARE, cluster)["resources"]
    assert mine[COORDINATOR_RESOURCE] + theirs[COORDINATOR_RESOURCE] == pytest.approx(1.0)
    # one machine: nothing asked for, so everything runs anywhere as before
    laptop = {"CPU": 8.0, "GPU": 1.0}
    assert "resources" not in camera_actor_options("c", laptop)
    assert model_resources(laptop) == {} and coordinator_node_options(0.5, laptop) == {}
    with pytest.raises(ValueError, match="share"):
        coordinator_node_options(0.0, cluster)


def test_model_apps_ask_for_the_model_resource_only_on_a_declaring_cluster(monkeypatch):
    import ray

    from serve import deployments

    config = {"type": "builtin", "serving": {"num_gpus": 0.25, "num_cpus": 0}}
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, MODEL_RESOURCE: 100.0})
    app = deployments.build_detector_app(config)
    options = app._bound_deployment.ray_actor_options
    assert options["resources"] == {MODEL_RESOURCE: 1.0} and options["num_gpus"] == 0.25
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    options = deployments.build_embedder_app(config)._bound_deployment.ray_actor_options
    assert not options.get("resources")


def test_replica_health_check_fails_after_batches_that_all_failed():
    from serve.deployments import UNHEALTHY_AFTER_FAILED_BATCHES, _BatchedReplica

    replica = _BatchedReplica.__new__(_BatchedReplica)
    with pytest.raises(RuntimeError, match="no model loaded"):
        replica.check_health()
    replica._backend = type("Backend", (), {"device": "cpu"})()
    replica._failed_in_a_row, replica._last_batch_error = 0, None
    replica.check_health()
    for _ in range(UNHEALTHY_AFTER_FAILED_BATCHES):
        replica._note_batch([RuntimeError("CUDA error: device-side assert")])
    with pytest.raises(RuntimeError, match="failed its last 5 batches: RuntimeError: CUDA"):
        replica.check_health()
    replica._note_batch([RuntimeError("one bad frame"), object()])  # a batch that worked
    replica.check_health()


# --------------------------------------------------------------------------- camera actor


@pytest.mark.integration
def test_killed_camera_actor_resumes_after_its_checkpoint(ray_local, video_25fps, tmp_path):
    """A camera actor killed mid-recording restarts (``max_restarts``); its owner calls
    ``run`` again; it resumes after its last checkpoint, drops the parts written after
    it, and ends with every frame detected exactly once."""
    import ray
    from ray import serve

    from actors.camera import CameraActor, checkpoint_path, read_checkpoint

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=8)
    class OneBox:
        async def detect(self, frame: np.ndarray) -> Detections:
            await asyncio.sleep(0.01)
            return Detections.from_arrays(np.array([[10.0, 10.0, 40.0, 60.0]]), [0.9])

    detector = serve.run(OneBox.bind(), name="faults-one-box", route_prefix=None)
    pairs = [((0, 0), (0, 9)), ((160, 0), (16, 9)), ((160, 90), (16, 0)), ((0, 90), (0, 0))]
    camera = CameraConfig(
        id="camx",
        source=str(video_25fps),
        source_start=START,
        fps=10.0,
        resolution=(160, 90),
        calibration=[{"image": p, "ground": g} for p, g in pairs],
    )
    actor = CameraActor.options(num_cpus=0).remote(
        camera,
        detector,
        out_dir=str(tmp_path),
        flush_every=5,
        reader_options={"realtime": True},  # 4 s: time to kill it mid-way
        run_id="r1",
    )
    try:
        running = actor.run.remote()
        deadline = time.monotonic() + 60
        while ray.get(actor.health.remote(), timeout=30)["checkpoints"] < 3:
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.1)
        ray.kill(actor, no_restart=False)  # a crash: Ray restarts it
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(running, timeout=30)
        health = None
        while health is None:  # the owner runs it again, once it is back
            try:
                health = ray.get(actor.run.remote(), timeout=60)
            except ray.exceptions.ActorUnavailableError:  # still restarting
                assert time.monotonic() < deadline, "the actor did not come back"
                time.sleep(0.2)
        again = ray.get(actor.run.remote(), timeout=10)  # a second call: the same run
    finally:
        ray.kill(actor)
        serve.delete("faults-one-box")
    assert health["state"] == "finished" and health["restarts"] == 1
    assert health["run_id"] == "r1" and health["resumed_after_s"] >= 0.4
    assert health["frames_detected"] == 40 and again["frames_detected"] == 40
    rows = pl.read_parquet(tmp_path / "detections" / "camera_id=camx" / "*.parquet")
    assert rows.height == 40 and rows["frame_ts"].n_unique() == 40  # once each
    assert rows["frame_ts"].is_sorted()
    state = read_checkpoint(checkpoint_path(tmp_path, "camx"))
    assert state is not None and state["finished"]["frames_detected"] == 40
