"""`sightline track`: any video in, tracks out (one Ray run on the tiny site's cam01)."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
import yaml

from sightline.cli import main
from sightline.config import ModelsConfig
from sightline.track_video import (
    SOURCE_START,
    camera_id_for,
    draw_tracks,
    frame_numbers,
    probe_video,
    tracklets_table,
    tracks_table,
    video_site,
    write_preview,
)
from sightline.tracking.motchallenge import read_mot_results
from sightline.tracking.sink import latest_versions, read_tracklets
from sightline.tracking.tracklets import TrackletBuilder

CAMERA = "cam01"
TRACK_COLUMNS = [
    "frame", "ts", "track_id", "tracklet_id", "x1", "y1", "x2", "y2", "score",
    "foot_x", "foot_y", "world_x", "world_y",
]  # fmt: skip
# Light replicas (as in test_pipeline): 2 CPUs must also hold the camera actor.
SERVING = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "num_gpus": 0.25, "num_cpus": 0}


def _video(site: Path) -> Path:
    return site / "videos" / f"{CAMERA}.mp4"


def _write_calibration(site: Path, path: Path) -> Path:
    config = yaml.safe_load((site / "site.yaml").read_text())
    camera = next(c for c in config["cameras"] if c["id"] == CAMERA)
    path.write_text(yaml.safe_dump(camera["calibration"]))
    return path


@pytest.fixture(scope="module")
def tracked(ray_local, tiny_site: Path, tmp_path_factory: pytest.TempPathFactory):
    """One calibrated run through the real models: (summary, output folder)."""
    from sightline.track_video import track_video

    out = tmp_path_factory.mktemp("track")
    calibration = _write_calibration(tiny_site, out.parent / "calibration.yaml")
    models = ModelsConfig.model_validate(
        {"detector": {"serving": SERVING}, "embedder": {"serving": SERVING}}
    )
    summary = track_video(
        _video(tiny_site), out, calibration=calibration, models=models, poll_s=0.5,
        log=lambda _: None,
    )  # fmt: skip
    return summary, out


@pytest.mark.integration
def test_summary_and_files(tracked, tiny_site: Path):
    summary, out = tracked
    info = probe_video(_video(tiny_site))
    assert summary["camera"]["state"] == "finished"
    assert summary["camera"]["detector_errors"] == summary["camera"]["embed_errors"] == 0
    assert summary["frames"] == summary["frames_processed"] == info.frames == 100
    assert summary["calibrated"] is True and "note" not in summary
    assert summary["tracks"] > 0
    names = ("tracks.parquet", "tracklets.parquet", "tracks.txt", "preview.mp4")
    assert all((out / name).is_file() for name in names)
    assert (out / "run" / "tracklets").is_dir()
    assert json.loads(json.dumps(summary)) == summary  # JSON-ready as printed


@pytest.mark.integration
def test_tracks_table_and_mot_file_agree(tracked, tiny_site: Path):
    summary, out = tracked
    tracks = pl.read_parquet(out / "tracks.parquet")
    mot = read_mot_results(out / "tracks.txt")
    assert tracks.columns == TRACK_COLUMNS
    assert tracks.height == mot.height == summary["track_rows"]
    assert tracks["track_id"].n_unique() == summary["tracks"]
    assert mot["frame"].min() >= 1 and mot["frame"].max() <= 100
    assert set(mot["track_id"]) == set(tracks["track_id"])
    # one row per track per frame, and the frame number is the time exactly
    assert tracks.select("frame", "track_id").is_unique().all()
    seconds = (tracks["ts"] - SOURCE_START).dt.total_microseconds() / 1e6
    assert np.allclose(seconds.to_numpy(), (tracks["frame"].to_numpy() - 1) / 10.0)
    sorted_tracks = tracks.sort("frame", "track_id")
    assert np.allclose(mot["x1"], sorted_tracks["x1"], atol=1e-3)
    assert np.allclose(mot["y2"], sorted_tracks["y2"], atol=1e-3)


@pytest.mark.integration
def test_calibrated_world_points_match_ground_truth(tracked, tiny_site: Path):
    _, out = tracked
    tracks = pl.read_parquet(out / "tracks.parquet")
    assert tracks["world_x"].null_count() == 0
    gt = pl.read_parquet(tiny_site / "gt" / "boxes.parquet").filter(pl.col("camera_id") == CAMERA)
    pairs = tracks.join(
        gt.select((pl.col("frame_index") + 1).alias("frame"), "x1", "y1", "x2", "y2",
                  pl.col("world_x").alias("gt_x"), pl.col("world_y").alias("gt_y")),
        on="frame", suffix="_gt",
    )  # fmt: skip
    iw = pl.min_horizontal("x2", "x2_gt") - pl.max_horizontal("x1", "x1_gt")
    ih = pl.min_horizontal("y2", "y2_gt") - pl.max_horizontal("y1", "y1_gt")
    inter = iw.clip(0) * ih.clip(0)
    area = (pl.col("x2") - pl.col("x1")) * (pl.col("y2") - pl.col("y1"))
    area_gt = (pl.col("x2_gt") - pl.col("x1_gt")) * (pl.col("y2_gt") - pl.col("y1_gt"))
    matched = (
        pairs.with_columns(iou=inter / (area + area_gt - inter))
        .sort("iou", descending=True)
        .unique(["frame", "track_id"], keep="first")
        .filter(pl.col("iou") >= 0.5)
    )
    # The tiny preset's boxes are loose (people cut by the frame edge, see test_pipeline):
    # ~45% of track rows overlap a true box at IoU 0.5. Their ground points are what counts
    # here: ~0.12 m from the truth in the same frame.
    assert matched.height >= 0.3 * tracks.height
    error = np.hypot(matched["world_x"] - matched["gt_x"], matched["world_y"] - matched["gt_y"])
    assert float(np.median(error)) < 0.3


@pytest.mark.integration
def test_tracklets_table(tracked):
    summary, out = tracked
    tracklets = pl.read_parquet(out / "tracklets.parquet")
    assert tracklets.height == summary["tracks"]
    assert (tracklets["frame_start"] <= tracklets["frame_end"]).all()
    assert all((out / p).is_file() for p in tracklets["thumbnail"])
    assert tracklets["height_m"].drop_nulls().is_between(0.5, 2.5).all()


@pytest.mark.integration
def test_preview_has_the_video_frames_size_and_rate(tracked, tiny_site: Path):
    _, out = tracked
    with av.open(str(out / "preview.mp4")) as preview, av.open(str(_video(tiny_site))) as source:
        stream, original = preview.streams.video[0], source.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
        assert stream.average_rate == original.average_rate
        assert sum(1 for _ in preview.decode(stream)) == 100


@pytest.mark.integration
def test_without_calibration_world_columns_are_null(tracked):
    _, out = tracked
    latest = latest_versions(read_tracklets(out / "run"))
    times = np.arange(100) * 100_000  # 10 fps, in microseconds
    tracks = tracks_table(latest, times, calibrated=False)
    assert (
        tracks.drop("world_x", "world_y")
        .sort("frame", "track_id")
        .equals(pl.read_parquet(out / "tracks.parquet").drop("world_x", "world_y"))
    )
    assert tracks["world_x"].is_null().all() and tracks["world_y"].is_null().all()
    assert tracklets_table(latest, times, calibrated=False)["height_m"].is_null().all()


# --------------------------------------------------------------------------- no Ray


def test_uncalibrated_site_is_a_forensic_camera_at_the_video_size(tiny_site: Path):
    info = probe_video(_video(tiny_site))
    site = video_site(info)
    (camera,) = site.cameras
    assert camera.id == CAMERA and camera.mode == "forensic"
    assert camera.resolution == (640, 360) and camera.fps == 10.0
    assert camera.source == str(_video(tiny_site).resolve())
    assert camera.source_start == SOURCE_START
    assert [p.image for p in camera.calibration] == [(0, 0), (640, 0), (640, 360), (0, 360)]
    assert TrackletBuilder(camera)._camera is None  # no heights from a nominal calibration
    assert video_site(info, fps=5).cameras[0].fps == 5.0


def _run_cli(*args: str | Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["track", *map(str, args)])
    return code, stdout.getvalue(), stderr.getvalue()


def test_missing_or_undecodable_video_is_a_clear_error(tmp_path: Path):
    code, out, err = _run_cli(tmp_path / "nope.mp4", "--out", tmp_path / "o")
    assert code == 2 and out == ""
    assert err == f"sightline: error: {tmp_path / 'nope.mp4'}: no such video file\n"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    code, _, err = _run_cli(junk, "--out", tmp_path / "o")
    assert code == 2 and f"{junk}: cannot decode as video" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


FOUR = "- {image: [0, 0], ground: [0, 0]}\n- {image: [600, 0], ground: [6, 0]}\n"
BAD_CALIBRATIONS = [
    ("not: [valid", "invalid YAML"),
    ("{a: 1}", "calibration: expected a list"),
    ("- {image: [1, 2], ground: [0, 0]}\n", "calibration: calibration needs at least 4"),
    (FOUR + "- {image: [600, 300], ground: [6, 3]}\n- {image: [0, 300, 1], ground: [0, 3]}\n",
     "calibration[3].image: Tuple should have at most 2 items"),
    (FOUR + "- {image: [600, 300], ground: [6, 3]}\n- {image: [0, 300], grund: [0, 3]}\n",
     "calibration[3].grund: Extra inputs are not permitted"),
    (FOUR + "- {image: [600, 300], ground: [6, 3]}\n- {image: [0, 900], ground: [0, 3]}\n",
     "calibration[3].image (0.0, 900.0) lies outside the 640x360 frame"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD_CALIBRATIONS)
def test_malformed_calibration_is_a_clear_error(
    tiny_site: Path, tmp_path: Path, text: str, expected: str
):
    calibration = tmp_path / "calibration.yaml"
    calibration.write_text(text)
    code, _, err = _run_cli(_video(tiny_site), "--calibration", calibration, "--out", tmp_path)
    assert code == 2
    assert err.startswith(f"sightline: error: {calibration}")
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "expected"),
    [("cam01.mp4", "cam01"), ("My clip (2).mov", "My-clip--2-"), ("__.mp4", "video"),
     ("straße.mkv", "stra-e"), ("x" * 80 + ".mp4", "x" * 64)],
)  # fmt: skip
def test_camera_id_from_file_name(name: str, expected: str):
    assert camera_id_for(Path("/videos") / name) == expected


def test_frame_numbers_follow_the_decoded_frame_times():
    # a variable-rate clip: frames 40 ms, then 33 ms, then 80 ms apart
    times = np.array([0, 40_000, 73_000, 153_000, 186_000])
    ts = pl.Series([SOURCE_START + timedelta(microseconds=int(t)) for t in times[::-1]])
    assert frame_numbers(ts, times).to_list() == [5, 4, 3, 2, 1]
    near = pl.Series([SOURCE_START + timedelta(microseconds=t) for t in (-5, 72_990, 900_000)])
    assert frame_numbers(near, times).to_list() == [1, 3, 5]


def test_preview_of_an_odd_sized_clip_sampled_at_half_rate(tmp_path: Path):
    clip = tmp_path / "odd.mkv"
    with av.open(str(clip), "w") as container:  # lossless, so odd sizes are allowed
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 81, 45, "yuv444p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((45, 81, 3), 40, np.uint8), "rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.frames) == (81, 45, 10.0, 10)
    box = {"track_id": [3], "x1": [10.0], "y1": [5.0], "x2": [30.0], "y2": [40.0]}
    tracks = pl.DataFrame({"ts": [SOURCE_START + timedelta(seconds=0.2)], **box})
    preview = tmp_path / "preview.mp4"
    times = write_preview(info, tracks, preview, sample_fps=5, log=lambda _: None)
    assert times.tolist() == [i * 100_000 for i in range(10)]
    with av.open(str(preview)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (82, 46)
        drawn = [
            int(np.abs(f.to_ndarray(format="rgb24").astype(int) - 40).max()) > 50
            for f in container.decode(stream)
        ]
    # frame 3 (index 2) is sampled and has the box; frame 4 was not sampled: box held
    assert drawn == [False, False, True, True, False, False, False, False, False, False]


def test_draw_tracks_outlines_each_box_in_its_id_colour():
    image = np.zeros((120, 160, 3), np.uint8)
    drawn = draw_tracks(image, [(1, 20.0, 30.0, 60.0, 100.0), (2, 90.0, 30.0, 130.0, 100.0)])
    assert drawn.shape == image.shape and not image.any()  # the input is left alone
    left_edges = drawn[60, 20], drawn[60, 90]
    assert all(edge.any() for edge in left_edges)
    assert not np.array_equal(*left_edges)  # two ids, two colours
    assert draw_tracks(image, []) is image
