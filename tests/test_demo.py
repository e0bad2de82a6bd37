"""The demo's analyst part (``sightline.demo``): person pick, searches, truth marking, report.

No Ray and no trained model: a small store is built from the tiny simulated site's ground
truth (tracklets whose boxes are the true boxes of two people, fused as ``g-target`` and
``g-other``), and an injected embedder stands in for the re-ID model.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from sightline import demo
from sightline.config import load_site_config
from sightline.density.counting import GroundFrame
from sightline.density.service import DensityService
from sightline.search.thumbnails import FrameDetections
from sightline.security import AuditLog
from sightline.store.tables import TrackStore
from sightline.tracking.tracklets import Tracklet
from tests.test_search_helpers import person_vector, write_gt_detections

# --------------------------------------------------------------------------- the pick


def _write_gt(folder: Path, boxes: list[dict], people: list[int]) -> Path:
    (folder / "gt").mkdir(parents=True)
    ts0 = pl.datetime(2026, 3, 2, 14, time_zone="UTC")
    frame = pl.DataFrame(boxes).with_columns(
        ts=ts0 + pl.duration(milliseconds=pl.col("frame_index") * 100)
    )
    frame.write_parquet(folder / "gt" / "boxes.parquet")
    frames = pl.DataFrame({"camera_id": ["c1"] * 50, "frame_index": list(range(50))})
    frames.with_columns(
        ts=ts0 + pl.duration(milliseconds=pl.col("frame_index") * 100)
    ).write_parquet(folder / "gt" / "frames.parquet")
    pl.DataFrame(
        {
            "person_id": people,
            "upper_colour": ["red"] * len(people),
            "lower_colour": ["blue"] * len(people),
            "height_m": [1.7] * len(people),
            "is_child": [False] * len(people),
            "hat_colour": [None] * len(people),
            "bag_colour": ["black"] * len(people),
        },
        schema_overrides={"hat_colour": pl.String},
    ).write_parquet(folder / "gt" / "people.parquet")
    return folder


def _boxes(person: int, camera: str, frames: range, visibility: float = 1.0) -> list[dict]:
    return [
        {"camera_id": camera, "frame_index": i, "person_id": person, "visibility": visibility}
        for i in frames
    ]


def test_pick_prefers_most_cameras_then_longest_then_lowest_id(tmp_path: Path) -> None:
    boxes = (
        _boxes(1, "c1", range(40))  # one camera, long
        + _boxes(2, "c1", range(5))
        + _boxes(2, "c2", range(5))  # two cameras, short
        + _boxes(3, "c1", range(5))
        + _boxes(3, "c2", range(5))  # ties with 2: the lower id wins
        + _boxes(4, "c1", range(30))
        + _boxes(4, "c2", range(30))
        + _boxes(4, "c3", range(30), visibility=0.2)  # hidden on c3: 2 cameras only
    )
    site = _write_gt(tmp_path / "a", boxes, [1, 2, 3, 4])
    person = demo.pick_demo_person(site)
    assert person.person_id == 4
    assert person.cameras == ["c1", "c2"]
    assert person.visible_s == pytest.approx(6.0)  # 60 frames at 10 fps
    assert person.photo == site / "reference" / "p0004.png"
    # without person 4 the tie between 2 and 3 goes to the lower id, not the row order
    rest = [b for b in boxes if b["person_id"] != 4]
    again = demo.pick_demo_person(_write_gt(tmp_path / "b", rest[::-1], [1, 2, 3, 4]))
    assert again.person_id == 2


def test_pick_on_a_rendered_site_uses_ground_truth_only(tiny_site: Path, tmp_path: Path) -> None:
    gt = pl.read_parquet(tiny_site / "gt" / "boxes.parquet").filter(pl.col("visibility") >= 0.5)
    stats = gt.group_by("person_id").agg(cams=pl.col("camera_id").n_unique(), frames=pl.len())
    best = stats.sort(["cams", "frames", "person_id"], descending=[True, True, False])
    expected = int(best["person_id"][0])
    # only gt/ is there: no videos, no store, no pipeline output
    bare = tmp_path / "bare"
    shutil.copytree(tiny_site / "gt", bare / "gt")
    picked = demo.pick_demo_person(bare)
    assert picked.person_id == expected
    full = demo.pick_demo_person(tiny_site)
    assert full == demo.pick_demo_person(tiny_site)  # deterministic
    assert dataclasses.replace(full, photo=picked.photo) == picked  # nothing but gt/ used
    people = pl.read_parquet(tiny_site / "gt" / "people.parquet")
    row = people.filter(pl.col("person_id") == expected).row(0, named=True)
    wanted = demo.description_for(picked)
    assert (wanted.upper_colour, wanted.lower_colour) == (row["upper_colour"], row["lower_colour"])
    assert wanted.height_min_m == pytest.approx(row["height_m"] - 0.1, abs=1e-6)
    assert wanted.child is bool(row["is_child"])
    assert wanted.hat is (row["hat_colour"] is not None)
    assert wanted.bag is (row["bag_colour"] is not None)


# --------------------------------------------------------------------------- a store


def _jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _tracklet(rows: pl.DataFrame, track_id: int, person: int) -> Tracklet:
    """A tracklet on the true boxes ``rows`` (one camera) whose embeddings are ``person``'s."""
    rows = rows.sort("ts")
    camera = rows["camera_id"][0]
    boxes = rows.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float32)
    n = len(boxes)
    emb = np.repeat(person_vector(person)[None], 3, axis=0)
    x1, y1, x2, y2 = boxes[0]
    size = (max(1, int(np.ceil(x2) - np.floor(x1))), max(1, int(np.ceil(y2) - np.floor(y1))))
    return Tracklet(
        tracklet_id=f"{camera}-0-{track_id}",
        camera_id=camera,
        track_id=track_id,
        version=1,
        final=True,
        ts=np.array([t.timestamp() for t in rows["ts"]]),
        boxes=boxes,
        scores=np.full(n, 0.9, np.float32),
        foot_px=boxes[:, [0, 3]],
        foot_world=rows.select("world_x", "world_y").to_numpy().astype(np.float32),
        embeddings=emb,
        embedding_mean=person_vector(person),
        upper_colour="red",
        upper_colour_confidence=0.9,
        lower_colour="black",
        lower_colour_confidence=0.9,
        height_m=1.7,
        quality=0.8,
        thumbnail_jpeg=_jpeg(*size, (200, 30, 30)),
    )


@pytest.fixture(scope="module")
def demo_store(tiny_site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The target on every camera it is seen on (``g-target``), another person on one
    (``g-other``), an unfused stray tracklet of the other person; 20 s of crowd counts."""
    root = tmp_path_factory.mktemp("demo")
    site = load_site_config(tiny_site / "site.yaml")
    target = demo.pick_demo_person(tiny_site)
    gt = pl.read_parquet(tiny_site / "gt" / "boxes.parquet").filter(pl.col("visibility") >= 0.5)
    other = int(gt.filter(pl.col("person_id") != target.person_id)["person_id"].mode().sort()[0])
    tracklets, ids = [], {}
    for k, camera in enumerate(target.cameras):
        rows = gt.filter(
            (pl.col("person_id") == target.person_id) & (pl.col("camera_id") == camera)
        )
        tracklets.append(_tracklet(rows, 10 + k, target.person_id))
        ids[tracklets[-1].tracklet_id] = "g-target"
    other_rows = gt.filter(pl.col("person_id") == other)
    camera = other_rows["camera_id"][0]
    tracklets.append(_tracklet(other_rows.filter(pl.col("camera_id") == camera), 30, other))
    ids[tracklets[-1].tracklet_id] = "g-other"
    store_root = root / "store"
    store = TrackStore(store_root, durable=False)
    store.write_tracklets(tracklets, {})
    store.write_assignments(
        [
            {"tracklet_id": t, "global_id": g, "seq": i, "reason": "test"}
            for i, (t, g) in enumerate(ids.items())
        ],
        assigned_at=float(tracklets[0].ts[0]),
    )
    t0 = gt["ts"].min().timestamp()
    zone = site.zones[0] if site.zones else None
    service = DensityService(site, store, clock=lambda: 0.0)
    if zone is not None:
        cx, cy = np.asarray(zone.polygon, np.float64).mean(axis=0)
        for k in range(100):
            points = np.array([[cx + 0.1 * i, cy] for i in range(2)], np.float32)
            service.observe([GroundFrame(site.cameras[0].id, t0 + k / 10, points)])
    service.close()
    store.flush()
    store.close()
    run = root / "run"
    write_gt_detections(gt, run)
    return {
        "site": site,
        "run": run,
        "site_dir": tiny_site,
        "store": store_root,
        "target": target,
        "other": other,
        "audit": root / "audit",
        "out": root / "out",
    }


@pytest.fixture(scope="module")
def searches(demo_store: dict) -> demo.DemoSearches:
    target = demo_store["target"]

    def embed(crops: list) -> np.ndarray:  # the photo is the target's: their vector
        return np.stack([person_vector(target.person_id) for _ in crops])

    return demo.run_demo_searches(
        demo_store["site_dir"],
        demo_store["site"],
        target,
        store_root=demo_store["store"],
        audit_dir=demo_store["audit"],
        case_id="case-demo-test",
        embed=embed,
    )


def test_searches_are_audited_with_case_and_reason(searches, demo_store: dict) -> None:
    entries = list(AuditLog(demo_store["audit"]).entries())
    assert [e["action"] for e in entries] == ["search.create", "search.create"]
    assert {e["principal"] for e in entries} == {"demo"}
    assert {e["case_id"] for e in entries} == {"case-demo-test"}
    assert all("demo: find p" in e["reason"] for e in entries)
    assert len(entries[0]["parameters"]["photos_sha256"]) == 1
    assert (
        entries[1]["parameters"]["description"]["upper_colour"] == demo_store["target"].upper_colour
    )
    assert AuditLog(demo_store["audit"]).verify().ok


def test_true_person_marking(searches, demo_store: dict) -> None:
    target, other = demo_store["target"].person_id, demo_store["other"]
    assert searches.owner["g-target"] == target
    assert searches.owner["g-other"] == other
    photo = next(s for s in searches.searches if s.kind == "photo")
    rows = demo.candidate_rows(photo.result, searches.owner, target)
    by_key = {r["key"]: r for r in rows}
    assert rows[0]["key"] == "g-target"
    assert by_key["g-target"]["is_target"] and by_key["g-target"]["true_person"] == target
    assert not by_key["g-other"]["is_target"] and by_key["g-other"]["true_person"] == other
    # a key no ground-truth person covers is "no true person", never the target
    fake = demo.candidate_rows(photo.result, {}, target)
    assert all(r["true_person"] is None and not r["is_target"] for r in fake)
    text = demo.format_search_report(
        searches, pl.read_parquet(demo_store["site_dir"] / "gt" / "boxes.parquet")
    )
    assert f"YES (p{target:04d})" in text
    assert f"no (p{other:04d})" in text
    assert "the true person ranked FIRST" in text


def test_route_of_top_candidate_matches_truth(searches, demo_store: dict) -> None:
    photo = next(s for s in searches.searches if s.kind == "photo")
    gt = pl.read_parquet(demo_store["site_dir"] / "gt" / "boxes.parquet")
    route = demo.route_vs_truth(photo.result.candidates[0], gt, demo_store["target"].person_id)
    assert sorted(r["camera_id"] for r in route) == demo_store["target"].cameras
    assert all(r["covered"] == pytest.approx(1.0) for r in route)
    # against another person's truth the same route covers little or nothing
    wrong = demo.route_vs_truth(photo.result.candidates[0], gt, demo_store["other"])
    assert any(r["covered"] is None or r["covered"] < 1.0 for r in wrong)


def test_report_files_hold_candidates_thumbnails_and_heatmap(searches, demo_store: dict) -> None:
    out = demo_store["out"]
    paths = demo.write_report(
        out,
        demo_store["site_dir"],
        demo_store["site"],
        searches,
        store_root=demo_store["store"],
        detections=FrameDetections(demo_store["run"]),
    )
    md = paths["report.md"].read_text()
    page = paths["report.html"].read_text()
    target = demo_store["target"].person_id
    assert "| 1 | g-target |" in md
    assert f"YES (p{target:04d})" in md
    assert "![site heatmap](heatmap.png)" in md
    assert "thumbnails/photo-rank01.jpg" in md
    heatmap = paths["heatmap.png"].read_bytes()
    assert heatmap.startswith(b"\x89PNG")
    assert base64.b64encode(heatmap).decode() in page  # inlined: the page stands alone
    assert page.count("data:image/jpeg;base64,") >= 2  # candidate thumbnails
    assert "<td>g-target</td>" in page
    assert f"YES (p{target:04d})" in page
    assert (out / "thumbnails" / "photo-rank01.jpg").is_file()
    assert 'src="thumbnails' not in page and "http" not in page.split("<body>")[1]


def test_report_withholds_thumbnails_whose_bystanders_are_unknown(
    searches, demo_store: dict, tmp_path: Path
) -> None:
    paths = demo.write_report(
        tmp_path,
        demo_store["site_dir"],
        demo_store["site"],
        searches,
        store_root=demo_store["store"],
    )
    assert "data:image/jpeg" not in paths["report.html"].read_text()
    assert not list((tmp_path / "thumbnails").glob("*.jpg"))


def test_timings_and_alert_lines(demo_store: dict) -> None:
    text = demo.format_timings({"simulate": 1.5, "pipeline": 2.0})
    assert "simulate" in text and "total" in text and "3.50 s" in text
    alerts = demo.crowd_alerts_vs_events(demo_store["store"], demo_store["site_dir"])
    assert set(alerts) == {"events", "alerts", "unexpected"}
    assert all(e["reported"] == bool(e["alerts"]) for e in alerts["events"])
