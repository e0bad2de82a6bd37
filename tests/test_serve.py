"""Ray Serve model deployments: batching across callers, fractional GPUs, errors, autoscaling.

Everything runs on the session's local Ray (``ray_local``: 2 CPUs, one fake GPU). The
replicas take ``num_cpus=0`` so several fit on the 2 cores. Most tests use a
deterministic test double (``EchoDetector``: one box whose corner is the frame's first
pixel value), so each caller can check it got its own frame's answer back; the built-in
models are exercised where placement and the real backend matter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import ray
from ray import serve

from serve.deployments import (
    DETECTOR_DEPLOYMENT,
    ModelHandles,
    app_names,
    build_detector_app,
    build_embedder_app,
    delete_models,
    deploy_models,
)
from serve.options import deployment_options, parse_batch_user_config
from sightline.config import (
    AutoscalingConfig,
    BuiltinDetectorConfig,
    BuiltinEmbedderConfig,
    ModelsConfig,
    ServingConfig,
)
from sightline.models import Detections, DetectorBackend, EmbedderBackend, build_detector
from sightline.models.builtin_attributes import builtin_attribute_reader
from sightline.models.core import check_crops, check_frames, l2_normalise

POISON = 255  # a frame whose pixel (0, 0) has green == 255 makes EchoDetector raise
# Idle test replicas stop at once instead of after Serve's 2 s shutdown wait loop.
FAST_STOP = {"graceful_shutdown_wait_loop_s": 0.1, "graceful_shutdown_timeout_s": 1}


# --------------------------------------------------------------------------- test doubles


class EchoDetector(DetectorBackend):
    """One box per frame at ``v = frame[0, 0, 0]``: ``[v, v, v + 10, v + 20]``, score 1."""

    type = "echo"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def detect(self, frames: np.ndarray) -> list[Detections]:
        check_frames(frames)
        if (frames[:, 0, 0, 1] == POISON).any():
            raise RuntimeError("poison frame in batch")
        time.sleep(self.delay_s)  # stands in for model time, so batches can form
        return [expected_detections(int(v)) for v in frames[:, 0, 0, 0]]


class EchoEmbedder(EmbedderBackend):
    """The unit vector of each crop's mean colour (deterministic, per crop)."""

    type = "echo"

    @property
    def dim(self) -> int:
        return 3

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        check_crops(crops)
        time.sleep(0.01)
        return expected_vectors(crops)


class EchoFactory:
    """Picklable backend factory with the signature of ``build_detector``."""

    def __init__(self, kind: str = "detector", delay_s: float = 0.03) -> None:
        self.kind = kind
        self.delay_s = delay_s

    def __call__(self, config: Any, prefer_gpu: bool = True) -> Any:
        return EchoDetector(self.delay_s) if self.kind == "detector" else EchoEmbedder()


def expected_detections(v: int) -> Detections:
    return Detections.from_arrays([[v, v, v + 10, v + 20]], [1.0])


def expected_vectors(crops: list[np.ndarray]) -> np.ndarray:
    means = np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]).astype(np.float32)
    return l2_normalise(means + 1.0)


def marked_frame(v: int, shape: tuple[int, int] = (36, 64), poison: bool = False) -> np.ndarray:
    frame = np.random.default_rng(v).integers(0, 200, (*shape, 3), dtype=np.uint8)
    frame[0, 0, 0] = v
    frame[0, 0, 1] = POISON if poison else 0
    return frame


def serving(
    max_batch_size: int = 8,
    wait_s: float = 0.05,
    num_gpus: float = 0.0,
    auto: AutoscalingConfig | None = None,
) -> ServingConfig:
    return ServingConfig(
        max_batch_size=max_batch_size,
        batch_wait_timeout_s=wait_s,
        num_cpus=0,
        num_gpus=num_gpus,
        autoscaling=auto or AutoscalingConfig(),
    )


def run_app(app: Any, name: str) -> Any:
    return serve.run(app, name=name, route_prefix=None)


def replica_states(app: str, deployment: str = DETECTOR_DEPLOYMENT) -> dict[str, int]:
    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return {}
    return {str(k): v for k, v in status.deployments[deployment].replica_states.items()}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def echo_detector(ray_local: None) -> Iterator[Any]:
    """One EchoDetector app shared by the tests below; each sets its own batching first."""
    app = "test-echo-detector"
    config = BuiltinDetectorConfig(serving=serving(max_batch_size=8, wait_s=0.05))
    handle = run_app(build_detector_app(config, backend_factory=EchoFactory(), **FAST_STOP), app)
    yield handle
    serve.delete(app)


def set_batching(handle: Any, max_batch_size: int, wait_s: float) -> None:
    """Reconfigure the replica's batching and zero its counters."""
    user_config = {"max_batch_size": max_batch_size, "batch_wait_timeout_s": wait_s}
    handle.reconfigure.remote(user_config).result(timeout_s=30)
    handle.reset_stats.remote().result(timeout_s=30)


@ray.remote(num_cpus=0)
class Caller:
    """A camera stand-in: sends frames to a Detector handle with a few requests in flight."""

    def __init__(self) -> None:
        self.sent = 0
        self._stop = False
        self._tasks: list[asyncio.Task] = []

    async def detect_all(
        self, handle: Any, frames: list[np.ndarray], in_flight: int
    ) -> list[Detections]:
        gate = asyncio.Semaphore(in_flight)

        async def one(frame: np.ndarray) -> Detections:
            async with gate:
                return await handle.detect.remote(frame)

        return list(await asyncio.gather(*(one(f) for f in frames)))

    async def start_load(self, handle: Any, frame: np.ndarray, in_flight: int) -> None:
        async def loop() -> None:
            while not self._stop:
                await handle.detect.remote(frame)
                self.sent += 1

        self.sent, self._stop = 0, False
        self._tasks = [asyncio.create_task(loop()) for _ in range(in_flight)]

    async def stop_load(self) -> int:
        self._stop = True
        await asyncio.gather(*self._tasks)
        return self.sent


@pytest.fixture(scope="module")
def callers(ray_local: None) -> Iterator[list[Any]]:
    """Four caller actors, started once (each worker imports torch: seconds on 2 cores)."""
    actors = [Caller.remote() for _ in range(4)]
    yield actors
    for actor in actors:
        ray.kill(actor)


# --------------------------------------------------------------------------- options (no Ray)


def test_options_map_serving_config() -> None:
    fixed = deployment_options(ServingConfig(max_batch_size=16, num_gpus=0.5, num_cpus=1))
    assert fixed["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.5}
    assert fixed["num_replicas"] == 1 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] >= 16
    assert fixed["user_config"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}

    auto = AutoscalingConfig(min_replicas=1, max_replicas=4, target_ongoing_requests=8)
    scaled = deployment_options(
        ServingConfig(autoscaling=auto), autoscaling_overrides={"look_back_period_s": 5}
    )
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 8,
        "upscale_delay_s": 30.0,
        "downscale_delay_s": 600.0,
        "look_back_period_s": 5,
    }


def test_options_reject_settings_that_would_misbehave() -> None:
    with pytest.raises(ValueError, match="batches would never fill"):
        deployment_options(ServingConfig(max_batch_size=16), max_ongoing_requests=5)
    with pytest.raises(ValueError, match="unknown autoscaling keys"):
        deployment_options(
            ServingConfig(),
            autoscaling_overrides={"target_num_ongoing_requests_per_replica": 1},
        )
    with pytest.raises(ValueError, match="unknown user_config keys"):
        parse_batch_user_config({"max_batch": 4})
    with pytest.raises(ValueError):
        parse_batch_user_config({"max_batch_size": 0})
    assert parse_batch_user_config({"max_batch_size": 4}) == (4, 0.01)


# --------------------------------------------------------------------------- replicas


def test_batches_form_across_callers_and_each_gets_its_own_answer(
    echo_detector: Any, callers: list[Any]
) -> None:
    handle = echo_detector
    set_batching(handle, 8, 0.05)
    frames = {i: [marked_frame(10 * i + k) for k in range(6)] for i in range(4)}
    refs = [c.detect_all.remote(handle, frames[i], 3) for i, c in enumerate(callers)]
    results = ray.get(refs, timeout=60)
    for i, dets in enumerate(results):
        assert len(dets) == 6
        for k, det in enumerate(dets):
            want = expected_detections(10 * i + k)
            np.testing.assert_array_equal(det.xyxy, want.xyxy)
            np.testing.assert_array_equal(det.scores, want.scores)
    stats = handle.stats.remote().result(timeout_s=30)
    assert stats["items"] == 24 and stats["failed_items"] == 0
    assert stats["max_batch_size_seen"] > 1, stats
    assert stats["mean_batch_size"] > 1, stats
    assert stats["batches"] < 24
    assert sum(int(k) * v for k, v in stats["batch_size_histogram"].items()) == 24
    assert stats["max_batch_size_seen"] <= 8
    assert stats["device"] == "cpu" and stats["replica_id"]


def test_builtin_models_through_deploy_models(ray_local: None) -> None:
    prefix = "test-models"
    models = ModelsConfig(
        detector=BuiltinDetectorConfig(serving=serving(max_batch_size=4, wait_s=0.02)),
        embedder=BuiltinEmbedderConfig(serving=serving(max_batch_size=8, wait_s=0.02)),
    )
    handles = deploy_models(models, app_prefix=prefix, **FAST_STOP)
    try:
        assert isinstance(handles, ModelHandles)
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(4)]
        frames.append(rng.integers(0, 255, (72, 128, 3), dtype=np.uint8))  # another shape
        responses = [handles.detector.detect.remote(f) for f in frames]
        direct = build_detector(models.detector, prefer_gpu=False)
        for frame, response in zip(frames, responses, strict=True):
            got = response.result(timeout_s=30)
            want = direct.detect(frame[None])[0]
            assert isinstance(got, Detections) and len(got) == len(want)
            np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-2)
        crops = [rng.integers(0, 255, (40 + 5 * i, 20 + i, 3), dtype=np.uint8) for i in range(11)]
        vectors = handles.embedder.embed.remote(crops).result(timeout_s=30)
        assert vectors.shape == (11, 128) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        empty = handles.embedder.embed.remote([]).result(timeout_s=30)
        assert empty.shape == (0, 128)
        # the same replica reads hats and bags, as the built-in reader does in-process
        read = handles.embedder.read_attributes.remote(crops).result(timeout_s=30)
        np.testing.assert_allclose(read, builtin_attribute_reader()(crops), atol=1e-5)
        assert handles.embedder.read_attributes.remote([]).result(timeout_s=30).shape == (0, 2)
        stats = handles.embedder.stats.remote().result(timeout_s=30)
        # 11 crops with max_batch_size 8 crops: split over two batches
        assert stats["items"] == 11 and stats["max_batch_size_seen"] <= 8
    finally:
        delete_models(prefix)
    assert not set(app_names(prefix)) & set(serve.status().applications)


def test_replicas_hold_fractional_gpus(ray_local: None) -> None:
    app = "test-gpu"
    auto = AutoscalingConfig(min_replicas=2, max_replicas=2)
    config = BuiltinDetectorConfig(serving=serving(num_gpus=0.25, auto=auto))
    handle = run_app(build_detector_app(config, **FAST_STOP), app)
    try:
        # Both replicas report what Ray gave them (the state API needs the dashboard, which
        # the test Ray runs without); ask until each has answered.
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(40):
            stats = handle.stats.remote().result(timeout_s=30)
            seen[stats["replica_id"]] = stats
            if len(seen) == 2:
                break
        assert len(seen) == 2
        for stats in seen.values():
            assert stats["assigned_resources"].get("GPU") == 0.25, stats
            assert stats["gpu_ids"] == ["0"]
            # The fake GPU has no CUDA behind it: the backend fell back to the CPU.
            assert stats["device"] == "cpu"
        # Two quarter-GPU replicas share the one (fake) GPU: half of it is still free.
        wait_for(
            lambda: ray.available_resources().get("GPU", 0) == pytest.approx(0.5),
            10,
            "GPU bookkeeping",
        )
        det = handle.detect.remote(marked_frame(1)).result(timeout_s=30)
        assert isinstance(det, Detections)
    finally:
        serve.delete(app)


def test_a_bad_request_fails_alone(echo_detector: Any) -> None:
    handle = echo_detector
    # A long wait so that the poisoned frame surely shares its batch with good ones.
    set_batching(handle, 8, 0.3)
    good = [handle.detect.remote(marked_frame(v)) for v in range(5)]
    bad_shape = handle.detect.remote(np.zeros((36, 64), np.uint8))
    bad_dtype = handle.detect.remote(np.zeros((36, 64, 3), np.float32))
    poison = handle.detect.remote(marked_frame(99, poison=True))
    for v, response in enumerate(good):
        det = response.result(timeout_s=30)
        np.testing.assert_array_equal(det.xyxy, expected_detections(v).xyxy)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        bad_shape.result(timeout_s=30)
    with pytest.raises(ValueError, match="uint8"):
        bad_dtype.result(timeout_s=30)
    with pytest.raises(RuntimeError, match="poison"):
        poison.result(timeout_s=30)
    stats = handle.stats.remote().result(timeout_s=30)
    assert stats["failed_items"] == 1 and stats["items"] == 6
    # The poisoned batch was retried frame by frame, so it took extra backend calls.
    assert stats["backend_calls"] > stats["batches"]


def test_embedder_batches_requests_and_isolates_a_bad_one(ray_local: None) -> None:
    app = "test-embedder"
    config = BuiltinEmbedderConfig(serving=serving(max_batch_size=16, wait_s=0.2))
    factory = EchoFactory(kind="embedder")
    handle = run_app(build_embedder_app(config, backend_factory=factory, **FAST_STOP), app)
    try:
        rng = np.random.default_rng(1)
        requests = [
            [rng.integers(0, 255, (8 + i, 4 + j, 3), dtype=np.uint8) for j in range(1 + i % 3)]
            for i in range(6)
        ]
        responses = [handle.embed.remote(r) for r in requests]
        bad = handle.embed.remote([np.zeros((8, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8)])
        for crops, response in zip(requests, responses, strict=True):
            np.testing.assert_allclose(
                response.result(timeout_s=30), expected_vectors(crops), rtol=1e-6
            )
        with pytest.raises(ValueError, match="crop 1"):
            bad.result(timeout_s=30)
        stats = handle.stats.remote().result(timeout_s=30)
        assert stats["requests"] == 6 and stats["items"] == sum(len(r) for r in requests)
        assert stats["max_batch_size_seen"] > 3, stats  # crops of several requests together
    finally:
        serve.delete(app)


def test_reconfigure_changes_batch_size(echo_detector: Any) -> None:
    handle = echo_detector

    def burst() -> dict[str, Any]:
        responses = [handle.detect.remote(marked_frame(v)) for v in range(8)]
        for response in responses:
            response.result(timeout_s=30)
        return handle.stats.remote().result(timeout_s=30)

    set_batching(handle, 8, 0.3)
    before = burst()
    assert before["max_batch_size"] == 8 and before["max_batch_size_seen"] > 2, before
    set_batching(handle, 2, 0.05)
    after = burst()
    assert after["max_batch_size"] == 2 and after["batch_wait_timeout_s"] == 0.05
    assert after["max_batch_size_seen"] == 2 and after["batches"] >= 4, after
    with pytest.raises(ValueError, match="unknown user_config keys"):
        handle.reconfigure.remote({"batch_size": 4}).result(timeout_s=30)
    with pytest.raises(ValueError, match="mapping"):
        handle.reconfigure.remote([("max_batch_size", 4)]).result(timeout_s=30)
    assert handle.stats.remote().result(timeout_s=30)["max_batch_size"] == 2


def test_autoscaling_follows_load(callers: list[Any]) -> None:
    app = "test-autoscale"
    auto = AutoscalingConfig(
        min_replicas=1,
        max_replicas=2,
        target_ongoing_requests=2,
        upscale_delay_s=1,
        downscale_delay_s=1,
    )
    config = BuiltinDetectorConfig(serving=serving(max_batch_size=2, wait_s=0.01, auto=auto))
    detector = build_detector_app(
        config,
        backend_factory=EchoFactory(delay_s=0.05),
        # Average the load over 2 s instead of Ray's 30 s so scaling down follows quickly.
        autoscaling_overrides={"look_back_period_s": 2},
        **FAST_STOP,
    )
    handle = run_app(detector, app)
    try:
        assert replica_states(app).get("RUNNING") == 1
        frame = marked_frame(7)
        ray.get([c.start_load.remote(handle, frame, 3) for c in callers], timeout=30)
        wait_for(lambda: replica_states(app).get("RUNNING") == 2, 30, "scale up to 2")
        sent = ray.get([c.stop_load.remote() for c in callers], timeout=30)
        assert min(sent) > 0
        wait_for(lambda: replica_states(app) == {"RUNNING": 1}, 30, "scale down to 1")
    finally:
        serve.delete(app)
