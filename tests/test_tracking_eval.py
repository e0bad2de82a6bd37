"""Tracking evaluation: MOTChallenge files, TrackEval scoring, both trackers, bench, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sightline.cli import main
from sightline.evaluation.tracking import (
    NoiseSettings,
    frames_from_table,
    noisy_ground_truth,
    run_ours,
    run_peer,
    score_tracks,
)
from sightline.tracking.bench import bench_tracking
from sightline.tracking.motchallenge import (
    read_mot_detections,
    read_mot_gt,
    read_mot_results,
    write_mot_detections,
    write_mot_gt,
    write_mot_results,
)

FPS = 10.0
BOX = ("x1", "y1", "x2", "y2")


def crossing(n: int = 40) -> pl.DataFrame:
    """Two people walking towards each other at slightly different heights; they cross."""
    rows = []
    for f in range(1, n + 1):
        rows.append((f, 1, 100.0 + 8 * f, 100.0, 130.0 + 8 * f, 180.0, 1.0))
        rows.append((f, 2, 420.0 - 8 * f, 112.0, 450.0 - 8 * f, 192.0, 1.0))
    return pl.DataFrame(
        rows, schema=["frame", "track_id", *BOX, "visibility"], orient="row"
    ).with_columns(score=pl.lit(0.9))


# --------------------------------------------------------------------------- MOTChallenge


def test_results_round_trip(tmp_path: Path) -> None:
    tracks = crossing(5).select("frame", "track_id", *BOX, "score")
    path = tmp_path / "results.txt"
    write_mot_results(tracks, path)
    assert path.read_text().splitlines()[0] == "1,1,108.0,100.0,30.0,80.0,0.9,-1,-1,-1"
    back = read_mot_results(path)
    assert back.columns == ["frame", "track_id", *BOX, "score"]
    assert back.sort("frame", "track_id").equals(tracks.sort("frame", "track_id"))


def test_gt_and_detections_round_trip(tmp_path: Path) -> None:
    gt = crossing(3).select(
        "frame", "track_id", *BOX, consider=pl.lit(1), **{"class": pl.lit(1)}, visibility=0.5
    )
    write_mot_gt(gt, tmp_path / "gt.txt")
    back = read_mot_gt(tmp_path / "gt.txt")
    assert back.select(gt.columns).equals(gt.sort("frame", "track_id"))
    dets = crossing(3).select("frame", *BOX, "score")
    write_mot_detections(dets, tmp_path / "det.txt")
    read = read_mot_detections(tmp_path / "det.txt")
    assert set(read["track_id"].to_list()) == {-1}
    assert np.allclose(read.select(*BOX, "score").to_numpy(), dets.select(*BOX, "score"))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1,-1,10,10,5", "expected at least 7 values"),
        ("1,-1,10,abc,5,5,0.9", "y is not a number: 'abc'"),
        ("0,-1,10,10,5,5,0.9", "frame must be >= 1"),
        ("1,-1,10,10,-5,5,0.9", "width and height must be >= 0"),
        ("1.5,-1,10,10,5,5,0.9", "frame must be an integer"),
        ("1,-1,10,nan,5,5,0.9", "y must be finite"),
    ],
)
def test_bad_detection_line_names_file_line_and_problem(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "det.txt"
    path.write_text(f"1,-1,1,1,5,5,0.9\n\n{line}\n")
    with pytest.raises(ValueError, match=problem) as info:
        read_mot_detections(path)
    assert f"{path} line 3" in str(info.value)


def test_bad_gt_consider_flag(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    path.write_text("1,1,1,1,5,5,2,1,1.0\n")
    with pytest.raises(ValueError, match=r"line 1: consider must be 0 or 1"):
        read_mot_gt(path)


# --------------------------------------------------------------------------- scoring


def test_perfect_tracks_score_one() -> None:
    gt = crossing()
    result = score_tracks(gt, gt)
    for metric in ("MOTA", "IDF1", "HOTA", "DetA", "AssA"):
        assert result[metric] == pytest.approx(1.0), metric
    assert (result["IDSW"], result["FN"], result["FP"]) == (0, 0, 0)
    assert (result["num_gt_ids"], result["num_tracker_ids"]) == (2, 2)


@pytest.mark.parametrize(
    ("relabel", "switches"),
    [
        # person 1's track changes id half-way: one identity switch
        (pl.when((pl.col("track_id") == 1) & (pl.col("frame") > 20)).then(7), 1),
        # the two tracks swap identities half-way: each person switches once
        (pl.when(pl.col("frame") > 20).then(3 - pl.col("track_id")), 2),
    ],
)
def test_identity_switches(relabel: pl.Expr, switches: int) -> None:
    gt = crossing()
    pred = gt.with_columns(track_id=relabel.otherwise(pl.col("track_id")))
    result = score_tracks(gt, pred)
    assert result["IDSW"] == switches
    assert result["IDF1"] < 1.0
    assert result["MOTA"] == pytest.approx(1 - switches / len(gt))


def test_ignored_ground_truth_is_neither_miss_nor_false_positive() -> None:
    gt = crossing().with_columns(
        visibility=pl.when(pl.col("track_id") == 2).then(0.1).otherwise(1.0)
    )
    result = score_tracks(gt, gt, min_visibility=0.25)
    assert (result["FN"], result["FP"], result["MOTA"]) == (0, 0, 1.0)
    assert result["num_gt_ids"] == 1 and result["num_tracker_ids"] == 1
    # the same hidden person counts once visibility is not a reason to ignore
    assert score_tracks(gt, gt, min_visibility=0.0)["num_gt_ids"] == 2
    # untracked and hidden: no miss either
    alone = gt.filter(pl.col("track_id") == 1)
    assert score_tracks(gt, alone, min_visibility=0.25)["FN"] == 0


def test_motchallenge_rules_for_distractors_and_consider() -> None:
    gt = crossing().with_columns(consider=pl.lit(1), **{"class": pl.lit(1)})
    distractor = gt.with_columns(**{"class": pl.when(pl.col("track_id") == 2).then(7).otherwise(1)})
    result = score_tracks(distractor, gt, min_visibility=0.0)
    assert (result["FP"], result["num_tracker_ids"]) == (0, 1)  # box on a static person dropped
    # consider == 0 removes the ground truth but, as in TrackEval, not the tracker box on it
    unconsidered = gt.with_columns(consider=pl.when(pl.col("track_id") == 2).then(0).otherwise(1))
    result = score_tracks(unconsidered, gt, min_visibility=0.0)
    assert (result["FN"], result["FP"]) == (0, len(gt) // 2)


def test_sequences_are_scored_and_combined() -> None:
    gt = crossing()
    one = gt.with_columns(sequence=pl.lit("cam01"))
    two = gt.with_columns(sequence=pl.lit("cam02"))
    broken = two.filter(pl.col("track_id") == 1)  # cam02 misses person 2 entirely
    result = score_tracks(pl.concat([one, two]), pl.concat([one, broken]))
    assert set(result["per_sequence"]) == {"cam01", "cam02"}
    assert result["per_sequence"]["cam01"]["MOTA"] == 1.0
    assert result["per_sequence"]["cam02"]["FN"] == len(gt) // 2
    assert result["FN"] == len(gt) // 2 and result["num_gt_ids"] == 4
    assert result["MOTA"] == pytest.approx(0.75)


def test_clipping_to_the_image() -> None:
    gt = crossing(5).with_columns(pl.col("y1") - 150)  # amodal boxes sticking out of the top
    pred = gt.with_columns(pl.col("y1").clip(0, None))
    assert score_tracks(gt, pred, image_size=(640, 360))["MOTP"] == pytest.approx(1.0)
    assert score_tracks(gt, pred)["MOTP"] < 1.0


# --------------------------------------------------------------------------- trackers, noise


@pytest.mark.parametrize("runner", [run_ours, run_peer])
def test_runners_keep_two_people_apart_when_they_cross(runner) -> None:
    gt = crossing()
    frames = frames_from_table(gt, np.arange(40) / FPS)
    tracks = runner(frames, FPS)
    assert tracks.columns == ["frame", "track_id", *BOX, "score"]
    assert tracks["track_id"].n_unique() == 2
    assert score_tracks(gt, tracks)["IDSW"] == 0


def test_noisy_ground_truth_is_deterministic_and_noisy() -> None:
    gt = pl.concat([crossing(200), crossing(200).with_columns(visibility=pl.lit(0.2))])
    settings = NoiseSettings(false_positives_per_frame=0.5)
    a = noisy_ground_truth(gt, 5, image_size=(640, 360), settings=settings)
    assert a.equals(noisy_ground_truth(gt, 5, image_size=(640, 360), settings=settings))
    assert not a.equals(noisy_ground_truth(gt, 6, image_size=(640, 360), settings=settings))
    # hidden copies are left out; about 10 % of 400 visible boxes are dropped; ~100 made up
    assert 300 < len(a) < 520
    assert a["score"].min() >= 0.1 and a["score"].max() <= 1.0
    assert (a["x2"] >= a["x1"]).all() and (a["x2"] <= 640).all()


def test_bench_tracking_reports_both_trackers() -> None:
    result = bench_tracking(objects=(5,), frames=10, repeats=1)
    (row,) = result["results"]
    for key in ("ours_updates_per_s", "peer_updates_per_s", "ours_over_peer", "objects"):
        assert key in row
    assert row["ours_updates_per_s"] > 0 and row["peer_updates_per_s"] > 0


# --------------------------------------------------------------------------- CLI


def test_eval_tracking_on_motchallenge_files(tmp_path: Path, capsys) -> None:
    gt = crossing().with_columns(consider=pl.lit(1), **{"class": pl.lit(1)})
    write_mot_gt(gt, tmp_path / "gt.txt")
    write_mot_detections(gt.select("frame", *BOX, "score"), tmp_path / "det.txt")
    argv = [
        "eval",
        "tracking",
        "--det",
        str(tmp_path / "det.txt"),
        "--gt",
        str(tmp_path / "gt.txt"),
    ]
    assert main([*argv, "--fps", "10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "motchallenge"
    assert result["ours"]["IDF1"] > 0.9 and result["peer"]["IDF1"] > 0.9
    assert result["settings"]["peer"]["settings"]["frame_rate"] == 10.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "tracking", "--seed", "1003"], "seed 1003 was used to train"),
        (["eval", "tracking", "--det", "det.txt"], "needs both a det file and a gt file"),
        (["eval", "detector", "--gt", "gt.txt"], "only apply to `sightline eval tracking`"),
        (["eval", "tracking", "--absent", "5"], "--absent only applies to `sightline eval search`"),
        (["eval", "fusion", "--absent", "5"], "--absent only applies to `sightline eval search`"),
        (["eval", "search", "--absent", "0"], "--absent must be at least 1, got 0"),
    ],
)
def test_eval_tracking_errors(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    assert main([*argv, "--data", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing rendered


def test_missing_eval_extra_says_what_to_install(monkeypatch, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trackers" else real(name)
    )
    assert main(["bench", "tracking", "--frames", "2"]) == 2
    assert "pip install 'sightline[eval]'" in capsys.readouterr().err
