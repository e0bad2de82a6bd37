"""The synthetic site: determinism, frame counts, geometry of the ground truth, outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
from PIL import Image

from sightline.cli import main
from sightline.config import load_site_config
from sightline.geometry import apply_homography, box_foot_points
from sightline.sim import PRESETS, SimulationError, get_preset, simulate
from sightline.sim.layout import build_layout
from sightline.sim.palette import CLOTHING_COLOURS
from sightline.sim.people import make_people

from .conftest import TINY_SEED

GT_TABLES = ["boxes", "frames", "people", "tracks", "zone_counts", "events"]


def _frame_hashes(video: Path) -> list[str]:
    with av.open(str(video)) as container:
        return [
            hashlib.sha1(f.to_ndarray(format="rgb24").tobytes()).hexdigest()
            for f in container.decode(video=0)
        ]


def _errors_m(site_dir: Path, use_exact_foot: bool) -> pl.DataFrame:
    """Distance between each GT box's foot-point mapped to the ground and the truth."""
    site = load_site_config(site_dir / "site.yaml")
    boxes = pl.read_parquet(site_dir / "gt" / "boxes.parquet").filter(pl.col("visibility") > 0)
    parts = []
    for cam in site.cameras:
        b = boxes.filter(pl.col("camera_id") == cam.id)
        if use_exact_foot:
            foot = b.select("foot_x", "foot_y").to_numpy()
        else:
            foot = box_foot_points(b.select("x1", "y1", "x2", "y2").to_numpy())
        world = apply_homography(cam.image_to_ground, foot)
        err = np.linalg.norm(world - b.select("world_x", "world_y").to_numpy(), axis=1)
        parts.append(
            b.with_columns(
                err_m=pl.Series(err),
                off_centre=pl.Series(np.abs(foot[:, 0] / cam.resolution[0] - 0.5)),
            )
        )
    return pl.concat(parts)


def test_same_seed_gives_identical_truth_and_frames(tiny_site: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    simulate("tiny", TINY_SEED, again, workers=1, show_progress=False)
    for table in GT_TABLES:
        first = pl.read_parquet(tiny_site / "gt" / f"{table}.parquet")
        second = pl.read_parquet(again / "gt" / f"{table}.parquet")
        assert first.equals(second), table
    for video in sorted((tiny_site / "videos").glob("*.mp4")):
        assert _frame_hashes(video) == _frame_hashes(again / "videos" / video.name), video.name
    assert (tiny_site / "site.yaml").read_text() == (again / "site.yaml").read_text()
    for photo in sorted((tiny_site / "reference").glob("*.png")):
        assert photo.read_bytes() == (again / "reference" / photo.name).read_bytes()


def test_other_seed_gives_other_site(tiny_site: Path, tmp_path: Path) -> None:
    simulate("tiny", TINY_SEED + 1, tmp_path, show_progress=False)
    first = pl.read_parquet(tiny_site / "gt" / "tracks.parquet")
    other = pl.read_parquet(tmp_path / "gt" / "tracks.parquet")
    assert not first.equals(other)


def test_videos_decode_to_the_ground_truth_frame_counts(tiny_site: Path) -> None:
    frames = pl.read_parquet(tiny_site / "gt" / "frames.parquet")
    boxes = pl.read_parquet(tiny_site / "gt" / "boxes.parquet")
    preset = get_preset("tiny")
    expected = round(preset.duration_s * preset.fps)
    for cam_id, count in frames.group_by("camera_id").len().iter_rows():
        with av.open(str(tiny_site / "videos" / f"{cam_id}.mp4")) as container:
            stream = container.streams.video[0]
            decoded = list(container.decode(video=0))
            assert (stream.width, stream.height) == preset.resolution
        assert len(decoded) == count == expected
        last = boxes.filter(pl.col("camera_id") == cam_id)["frame_index"].max()
        assert last < count


def test_exact_foot_points_project_to_world_positions(tiny_site: Path) -> None:
    errors = _errors_m(tiny_site, use_exact_foot=True)
    assert len(errors) > 500
    assert errors["err_m"].max() <= 0.2


def test_box_bottom_centres_project_near_world_positions(tiny_site: Path) -> None:
    """The box's bottom-centre: within 0.2 m away from the frame's left/right edges;
    perspective lean of off-centre people adds a little at the edges (documented)."""
    errors = _errors_m(tiny_site, use_exact_foot=False)
    central = errors.filter(pl.col("off_centre") < 0.3)
    assert len(central) > 300
    assert central["err_m"].max() <= 0.2
    assert errors["err_m"].max() <= 0.3


def test_foot_point_is_at_the_bottom_of_its_box(tiny_site: Path) -> None:
    b = pl.read_parquet(tiny_site / "gt" / "boxes.parquet")
    height = b["y2"] - b["y1"]
    assert ((b["foot_x"] > b["x1"]) & (b["foot_x"] < b["x2"])).all()
    assert ((b["y2"] - b["foot_y"]).abs() <= 0.06 * height).all()


def test_overlapping_cameras_agree_on_world_position(tiny_site: Path) -> None:
    errors = _errors_m(tiny_site, use_exact_foot=False).filter(pl.col("visibility") >= 0.5)
    cols = ["ts", "person_id", "world_x", "world_y", "x1", "y1", "x2", "y2"]
    a = errors.filter(pl.col("camera_id") == "cam01").select(cols)
    b = errors.filter(pl.col("camera_id") == "cam02").select(cols)
    both = a.join(b, on=["ts", "person_id"], suffix="_b")
    assert len(both) > 50, "the tiny site's two cameras must share a view"
    assert (both["world_x"] == both["world_x_b"]).all()
    site = load_site_config(tiny_site / "site.yaml")
    ground_a = apply_homography(
        site.camera("cam01").image_to_ground,
        box_foot_points(both.select("x1", "y1", "x2", "y2").to_numpy()),
    )
    ground_b = apply_homography(
        site.camera("cam02").image_to_ground,
        box_foot_points(both.select("x1_b", "y1_b", "x2_b", "y2_b").to_numpy()),
    )
    gap = np.linalg.norm(ground_a - ground_b, axis=1)
    assert np.median(gap) < 0.15
    assert gap.max() < 0.5


def test_site_yaml_runs_as_is(tiny_site: Path) -> None:
    site = load_site_config(tiny_site / "site.yaml")
    assert [c.id for c in site.cameras] == ["cam01", "cam02"]
    for cam in site.cameras:
        assert Path(cam.source).is_file()
        assert cam.source_start is not None
        assert cam.calibration_rmse_m < 0.01
    assert site.zone("plaza").area_m2 == pytest.approx(64.0, rel=1e-6)
    assert site.topology is not None and site.topology.links


def test_every_person_has_a_reference_photo(tiny_site: Path) -> None:
    people = pl.read_parquet(tiny_site / "gt" / "people.parquet")
    assert len(people) == get_preset("tiny").n_people
    for rel in people["reference_photo"]:
        image = np.asarray(Image.open(tiny_site / rel))
        assert image.shape == (384, 256, 3)
        assert image.std() > 10
    assert len(list((tiny_site / "reference").glob("*.png"))) == len(people)


def test_people_attributes_are_consistent(tiny_site: Path) -> None:
    people = pl.read_parquet(tiny_site / "gt" / "people.parquet")
    assert set(people["upper_colour"]) <= set(CLOTHING_COLOURS)
    assert set(people["lower_colour"]) <= set(CLOTHING_COLOURS)
    kids = people.filter(pl.col("is_child"))
    adults = people.filter(~pl.col("is_child"))
    assert kids["height_m"].is_between(1.0, 1.4).all()
    assert (adults["height_m"] >= 1.5).all()


def test_zone_counts_match_tracks(tiny_site: Path) -> None:
    site = load_site_config(tiny_site / "site.yaml")
    tracks = pl.read_parquet(tiny_site / "gt" / "tracks.parquet")
    counts = pl.read_parquet(tiny_site / "gt" / "zone_counts.parquet")
    plaza = np.array(site.zone("plaza").polygon)
    (x0, y0), (x1, y1) = plaza.min(axis=0), plaza.max(axis=0)
    inside = (
        tracks.filter(pl.col("world_x").is_between(x0, x1) & pl.col("world_y").is_between(y0, y1))
        .group_by("ts")
        .len()
    )
    merged = counts.filter(pl.col("zone_id") == "plaza").join(inside, on="ts", how="left")
    assert (merged["count"] == merged["len"].fill_null(0)).all()


@pytest.mark.parametrize("preset_name", ["small", "default", "large"])
def test_crowd_events_exceed_the_alert_density_only_while_they_last(preset_name: str) -> None:
    """Trajectories only (no rendering): every scheduled crowd drives its zone above the
    configured alert density, and ordinary traffic stays below it."""
    preset = PRESETS[preset_name]
    layout = build_layout(preset, 5)
    people = make_people(preset, layout, 5)
    t = np.arange(0.0, preset.duration_s, 1.0)
    zone = layout.zones["plaza"]
    (x0, y0), (x1, y1) = zone.min(axis=0), zone.max(axis=0)
    count = np.zeros(len(t))
    for person in people:
        st = person.state(t)
        x, y = st.xy[:, 0], st.xy[:, 1]
        count += st.present & (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    area = (x1 - x0) * (y1 - y0)
    threshold = 0.5 * min(e.n_people for e in preset.crowd_events) / area
    busy = np.zeros(len(t), dtype=bool)
    for event in preset.crowd_events:
        in_event = (t >= event.start_s) & (t <= event.end_s)
        assert count[in_event].max() >= event.n_people
        busy |= (t >= event.start_s - 15) & (t <= event.end_s + 30)
    assert (count[~busy] / area).max() < threshold


def test_bad_preset_is_rejected_with_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match=r"unknown preset 'huge'.*tiny"):
        simulate("huge", 1, tmp_path)


def test_unwritable_output_folder_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SimulationError, match=r"cannot write to output folder .*a-file"):
        simulate("tiny", 1, blocker / "out")


def test_cli_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status = main(["simulate", "--preset", "tiny", "--out", str(blocker / "out"), "--quiet"])
    assert status == 2
    assert "cannot write to output folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--preset", "huge", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_cli_config_check(tiny_site: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "check", str(tiny_site / "site.yaml")]) == 0
    assert '"calibration_rmse_m"' in capsys.readouterr().out
    assert main(["config", "check", str(tiny_site / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    assert main(["config", "schema"]) == 0
    assert '"CameraConfig"' in capsys.readouterr().out
