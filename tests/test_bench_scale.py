"""The pure parts of ``sightline bench scale``: capacity arithmetic and input checks (no Ray)."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest

from serve.bench_scale import (
    FAKE_GPUS,
    MAX_REPLICAS,
    bench_scale,
    cameras_per_device,
    check_replicas,
    replica_resources,
    speedups,
    trim_video,
)


@pytest.mark.parametrize(
    ("fps", "det", "emb", "crops", "util", "per_camera_s", "cameras"),
    [
        # 10 fps x (10 ms + 5 crops x 1 ms) = 0.15 device-s per camera-s -> 0.7 / 0.15 = 4.67
        (10, 0.010, 0.001, 5, 0.7, 0.15, 4),
        # exact quotient: 0.7 / 0.07 must give 10, not 9 (float rounding)
        (10, 0.007, 0.0, 0, 0.7, 0.07, 10),
        # no crops: the embedder cost does not matter
        (25, 0.002, 1.0, 0, 1.0, 0.05, 20),
        # a camera costing more than the budget: no camera fits
        (10, 0.2, 0.0, 0, 0.7, 2.0, 0),
        # fractional crops per frame (a mean over frames)
        (5, 0.004, 0.002, 2.5, 0.5, 0.045, 11),
    ],
)
def test_cameras_per_device_table(fps, det, emb, crops, util, per_camera_s, cameras):
    got = cameras_per_device(fps, det, emb, crops, util)
    assert got["device_s_per_camera_s"] == pytest.approx(per_camera_s)
    assert got["cameras_per_device"] == cameras
    assert got["device_s_per_frame"] == pytest.approx(det + crops * emb)
    assert got["max_frames_per_s_at_full_use"] == pytest.approx(1 / (det + crops * emb))


def test_cameras_per_device_grows_with_utilisation_and_falls_with_cost():
    base = cameras_per_device(10, 0.005, 0.001, 3, 0.5)["cameras_per_device"]
    assert cameras_per_device(10, 0.005, 0.001, 3, 1.0)["cameras_per_device"] >= base
    assert cameras_per_device(10, 0.010, 0.001, 3, 0.5)["cameras_per_device"] <= base
    assert cameras_per_device(20, 0.005, 0.001, 3, 0.5)["cameras_per_device"] <= base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "fps must be > 0"),
        ({"fps": -1}, "fps must be > 0"),
        ({"fps": math.inf}, "fps must be finite"),
        ({"fps": "10"}, "fps must be a number"),
        ({"fps": True}, "fps must be a number"),
        ({"det_s_per_frame": 0}, "det_s_per_frame must be > 0"),
        ({"det_s_per_frame": math.nan}, "det_s_per_frame must be finite"),
        ({"emb_s_per_crop": -0.001}, "emb_s_per_crop must be >= 0"),
        ({"crops_per_frame": -1}, "crops_per_frame must be >= 0"),
        ({"utilisation": 0}, "utilisation must be > 0"),
        ({"utilisation": 1.5}, r"utilisation must be in \(0, 1\]"),
    ],
)
def test_cameras_per_device_rejects_bad_input(kwargs, message):
    args = {
        "fps": 10,
        "det_s_per_frame": 0.01,
        "emb_s_per_crop": 0.001,
        "crops_per_frame": 2,
        "utilisation": 0.7,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        cameras_per_device(**args)


def test_cameras_per_device_accepts_numpy_numbers():
    got = cameras_per_device(np.float32(10), np.float64(0.01), np.float64(0.001), np.int64(5))
    assert got["cameras_per_device"] == 4


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [((1, 2, 4), (1, 2, 4)), ([4, 1, 2], (1, 2, 4)), ((3,), (3,)), ((np.int64(2),), (2,))],
)
def test_check_replicas_sorts(replicas, expected):
    assert check_replicas(replicas) == expected


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        ((), "replicas is empty"),
        ((1, 1, 2), "must be distinct"),
        ((0, 1), r"must be in 1\.\."),
        ((1, MAX_REPLICAS + 1), r"must be in 1\.\."),
        ((1, 2.0), "must be integers"),
        ((True,), "must be integers"),
        ("124", "must be a sequence of integers"),
        (4, "must be a sequence of integers"),
    ],
)
def test_check_replicas_rejects(replicas, message):
    with pytest.raises(ValueError, match=message):
        check_replicas(replicas)


def test_replica_resources_fit_the_machine():
    # 2 CPUs - 4 cameras x 0.1 - coordinator 0.25 - embedder 0.5 = 0.85 left for 4 replicas
    cpus, gpus = replica_resources(4, 2.0, 4, 0.5)
    assert gpus == 1.0
    assert cpus == 0.2
    assert 4 * cpus + 4 * 0.1 + 0.25 + 0.5 <= 2.0
    # more replicas than fake GPUs: fractions, still fitting
    cpus, gpus = replica_resources(8, 2.0, 4, 0.5)
    assert gpus * 8 <= FAKE_GPUS
    assert cpus == 0.1
    # a crowded machine leaves nothing to reserve, but never a negative share
    assert replica_resources(2, 0.5, 4, 0.5)[0] == 0.0
    with pytest.raises(ValueError, match="max_replicas must be >= 1"):
        replica_resources(0, 2.0, 4, 0.5)


def test_speedups_relative_to_smallest_count():
    assert speedups({1: 20.0, 2: 35.0, 4: 38.0}) == {1: 1.0, 2: 1.75, 4: 1.9}
    assert speedups({4: 30.0, 2: 15.0}) == {2: 1.0, 4: 2.0}
    assert speedups({}) == {}
    with pytest.raises(ValueError, match="baseline frames/s must be > 0"):
        speedups({1: 0.0, 2: 3.0})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"replicas": ()}, ValueError, "replicas is empty"),
        ({"device": "tpu"}, ValueError, "device must be 'cpu' or 'cuda'"),
        ({"utilisation": 2.0}, ValueError, "utilisation must be in"),
        ({"seconds": 0}, ValueError, "seconds must be > 0"),
    ],
)
def test_bench_scale_checks_arguments_before_any_work(tmp_path, kwargs, error, message):
    # data_dir is empty: a check that passed would start rendering a site (and fail the test
    # by its duration); these must all fail first.
    with pytest.raises(error, match=message):
        bench_scale(data_dir=tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_bench_scale_cuda_fails_clearly_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        bench_scale(data_dir=tmp_path, device="cuda")


def _write_video(path: Path, frames: int, fps: int = 10) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 7) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _count_frames(path: Path) -> int:
    with av.open(str(path)) as inp:
        return sum(1 for _ in inp.decode(video=0))


def test_trim_video_keeps_the_first_seconds(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    _write_video(src, 50)  # 5 s at 10 fps
    trim_video(src, dst, 2.0)
    # stream copy cuts on packets: about 20 frames, never more than the source
    assert 15 <= _count_frames(dst) <= 21
    with pytest.raises(ValueError, match="seconds must be > 0"):
        trim_video(src, dst, 0)
