"""Fusion without Ray: geometry, appearance, merges, splits, idempotency, calibration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sightline.config import FusionConfig, TopologyConfig
from sightline.fusion.bench import _tracklet, bench_fusion
from sightline.fusion.calibration import (
    AppearanceCalibration,
    fit_calibration,
    height_log_ratio,
)
from sightline.fusion.core import Fuser
from sightline.fusion.evidence import Relation, TrackletView, TransitTable, relate

CAL = AppearanceCalibration(slope=14.0, intercept=-6.2)
T0 = 1_772_460_000.0


def look(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def walk(tid: str, cam: str, t0: float, seconds: float, start, end, emb, version: int = 1):
    n = max(2, int(seconds * 10))
    ts = T0 + t0 + np.linspace(0, seconds, n)
    xy = np.linspace(start, end, n)
    t = _tracklet(tid, cam, ts, xy, emb)
    return dataclasses.replace(t, version=version)


def fuse(*tracklets, config: FusionConfig | None = None, topology=None) -> Fuser:
    fuser = Fuser(config or FusionConfig(), CAL, topology)
    for t in tracklets:
        fuser.ingest([t])
    return fuser


def same_person(fuser: Fuser, a: str, b: str) -> bool:
    return fuser.global_id(a) == fuser.global_id(b)


def test_two_views_of_one_place_are_one_person_even_if_they_look_different():
    # overlapping cameras, same ground path, same time; embeddings only loosely alike
    a = walk("A", "cam1", 0, 6, (10, 10), (16, 10), look(1))
    b_emb = (look(1) + 0.9 * look(2)) / np.linalg.norm(look(1) + 0.9 * look(2))
    b = walk("B", "cam2", 0, 6, (10.3, 10.2), (16.2, 10.1), b_emb.astype(np.float32))
    assert same_person(fuse(a, b), "A", "B")


def test_two_places_at_once_are_two_people_even_if_they_look_alike():
    a = walk("A", "cam1", 0, 6, (10, 10), (16, 10), look(1))
    b = walk("B", "cam2", 0, 6, (40, 30), (46, 30), look(1))
    assert not same_person(fuse(a, b), "A", "B")


@pytest.mark.parametrize(
    ("gap_s", "distance_m", "expected"),
    [
        (20, 20, True),  # 1 m/s walk between cameras: reachable, same look -> same person
        (2, 60, False),  # 30 m/s: impossible, however alike
        (20, 20, False),  # ...and a different look is a different person
    ],
)
def test_reachability_and_appearance(gap_s: float, distance_m: float, expected: bool):
    emb_b = look(1) if expected or distance_m > 50 else look(9)
    a = walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1))
    b = walk("B", "cam3", 5 + gap_s, 5, (5 + distance_m, 0), (10 + distance_m, 0), emb_b)
    assert same_person(fuse(a, b), "A", "B") is expected


def test_configured_transit_limit_vetoes_a_slow_transition():
    topology = TopologyConfig(links=[{"cameras": ("cam1", "cam3"), "typical_transit_s": 10}])
    a = walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1))
    b = walk("B", "cam3", 5 + 200, 5, (25, 0), (30, 0), look(1))  # 200 s > 3 x 10 s + 120 s
    assert not same_person(fuse(a, b, topology=topology), "A", "B")
    assert same_person(fuse(a, b), "A", "B")  # without the link it is plausible


def test_transit_slack_allows_a_person_the_trackers_lost_for_a_while():
    topology = TopologyConfig(links=[{"cameras": ("cam1", "cam3"), "typical_transit_s": 10}])
    a = walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1))
    b = walk("B", "cam3", 5 + 45, 5, (25, 0), (30, 0), look(1))  # 45 s: 30 s limit + slack
    assert same_person(fuse(a, b, topology=topology), "A", "B")
    strict = FusionConfig(transit_slack_s=0)
    assert not same_person(fuse(a, b, topology=topology, config=strict), "A", "B")


def test_height_separates_people_who_look_alike():
    # B looks somewhat like A: cosine 0.6, p = 0.9 on appearance alone (threshold 0.8)
    other = look(5) - (look(5) @ look(1)) * look(1)
    alike = 0.6 * look(1) + 0.8 * other / np.linalg.norm(other)
    a = dataclasses.replace(walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1)), height_m=1.78)
    b = walk("B", "cam3", 25, 5, (20, 0), (25, 0), alike.astype(np.float32))
    assert same_person(fuse(a, dataclasses.replace(b, height_m=1.77)), "A", "B")
    assert same_person(fuse(a, b), "A", "B")  # unknown height: appearance decides
    child = dataclasses.replace(b, height_m=1.25)
    assert not same_person(fuse(a, child), "A", "B")
    assert same_person(fuse(a, child, config=FusionConfig(use_height=False)), "A", "B")


def test_height_log_ratio_is_bounded_and_neutral_when_unknown():
    ratio = height_log_ratio(1.70, np.array([1.70, 1.75, 1.90, 1.0, np.nan]), 0.032, 0.12, 0.26)
    assert ratio[0] > ratio[1] > ratio[2] >= np.log(0.26) - 1e-9
    assert ratio[0] > 0 > ratio[2]
    assert ratio[3] == pytest.approx(np.log(0.26), abs=1e-6)  # at most -log(outlier) off
    assert ratio[4] == 0.0
    assert height_log_ratio(1.7, 1.0, 0.032, 0.12, 1.0) == pytest.approx(0.0)  # ignored


def test_people_merge_when_later_seen_together():
    # A and B start apart (different looks), then a version of B shows it walking with A
    a = walk("A", "cam1", 0, 20, (10, 10), (30, 10), look(1))
    alike = (look(1) + 0.3 * look(4)) / np.linalg.norm(look(1) + 0.3 * look(4))
    b1 = walk("B", "cam2", 0, 1.5, (10.2, 10), (11.7, 10), look(4))
    fuser = fuse(b1, a)
    assert not same_person(fuser, "A", "B")
    b2 = walk("B", "cam2", 0, 10, (10.2, 10), (20.2, 10), alike.astype(np.float32), version=2)
    fuser.ingest([b2])
    assert same_person(fuser, "A", "B")
    assert fuser.counts().get("merge", 0) + fuser.counts().get("split", 0) >= 1


def test_a_tracklet_that_turns_out_to_conflict_is_split_off():
    a = walk("A", "cam1", 0, 10, (10, 10), (20, 10), look(1))
    b1 = walk("B", "cam1", 12, 3, (21, 10), (24, 10), look(1))  # the same person walking on
    fuser = fuse(a, b1)
    assert same_person(fuser, "A", "B")
    # a later version of A shows it still in view while B was: two people after all
    a2 = walk("A", "cam1", 0, 16, (10, 10), (26, 10), look(1), version=2)
    fuser.ingest([a2])
    assert not same_person(fuser, "A", "B")
    assert fuser.counts()["split"] == 1


def test_ingest_is_idempotent_and_deterministic():
    tracklets = [
        walk(f"T{i}", f"cam{i % 3}", 10 * i, 5, (i, 0), (i + 5, 0), look(i % 4)) for i in range(12)
    ]
    first = fuse(*tracklets)
    again = fuse(*tracklets, *tracklets)  # every batch sent twice
    assert first.identities() == again.identities()
    assert first.ingest(tracklets) == []


def test_people_unseen_for_long_retire_but_keep_their_ids():
    fuser = fuse(
        walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1)),
        walk("B", "cam1", 1000, 5, (0, 0), (5, 0), look(2)),
        config=FusionConfig(max_gap_s=60),
    )
    assert len(fuser.people) == 1  # A retired
    assert sorted(t for ts in fuser.identities().values() for t in ts) == ["A", "B"]


def test_one_camera_sharing_a_single_frame_is_two_people():
    a = TrackletView.of(walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1)))
    b = TrackletView.of(walk("B", "cam1", 5, 5, (5, 0), (10, 0), look(1)))  # starts at A's end
    assert a.t_end == b.t_start
    assert relate(a, b, FusionConfig(), TransitTable(None)) is Relation.CONFLICT


def test_relate_and_transit_learning():
    cfg = FusionConfig()
    a = TrackletView.of(walk("A", "cam1", 0, 5, (0, 0), (5, 0), look(1)))
    b = TrackletView.of(walk("B", "cam1", 1, 5, (1, 0), (6, 0), look(1)))
    assert relate(a, b, cfg, TransitTable(None)) is Relation.CONFLICT  # one camera, same time
    table = TransitTable(None)
    for s in (10, 12, 14):
        table.observe("cam1", "cam2", s)
    assert table.learned()["cam1->cam2"] == {"samples": 3, "median_s": 12.0, "p90_s": 13.6}
    assert table.max_transit("cam1", "cam2") is None  # learned transits never veto


def test_calibration_fit_is_monotonic_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    sims = np.concatenate([rng.normal(0.8, 0.1, 200), rng.normal(0.1, 0.15, 2000)])
    same = np.concatenate([np.ones(200, bool), np.zeros(2000, bool)])
    cal = fit_calibration(sims, same)
    assert cal.probability(0.9) > 0.9
    assert cal.probability(0.1) < 0.1
    assert 0.3 < cal.similarity_at(0.5) < 0.6
    cal.save(tmp_path / "c.json")
    assert AppearanceCalibration.load(tmp_path / "c.json") == cal
    with pytest.raises(ValueError, match="not an appearance calibration"):
        AppearanceCalibration.load(tmp_path / "missing.json")


def test_bench_runs_small():
    result = bench_fusion((200, 400), window=100)
    assert [r["history_tracklets"] for r in result["results"]] == [200, 400]
    assert all(r["tracklets_per_s"] > 0 for r in result["results"])
    baseline = result["without_reclustering"]
    assert [r["history_tracklets"] for r in baseline] == [200, 400]
    assert len(result["rate_ratio_with_over_without_reclustering"]) == 2
