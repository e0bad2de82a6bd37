"""The search engine: candidates per identity, open set, routes, merging, the store."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from sightline.search import (
    attach_routes,
    merge_results,
    search_store,
    search_tracklets,
    store_partitions,
)
from sightline.store import TrackStore
from tests.test_search_helpers import (
    T0,
    frame_of,
    identities_of,
    make_tracklet,
    person_vector,
    query,
)

DAY = 86400.0


def site() -> tuple[list, dict[str, str]]:
    """Person 1 (g1) on cam1 then cam2, person 2 (g2) on cam1, person 3 unassigned on cam3."""
    tracklets = [
        make_tracklet(1, "cam1", T0 + 10, person=1, start=(0, 0)),
        make_tracklet(2, "cam2", T0 + 30, person=1, start=(30, 0)),
        make_tracklet(3, "cam1", T0 + 12, person=2, start=(2, 3), upper="blue"),
        make_tracklet(4, "cam3", T0 + 50, person=3, start=(60, 0), upper="green"),
    ]
    ids = {"cam1-0-1": "g1", "cam2-0-2": "g1", "cam1-0-3": "g2"}
    return tracklets, ids


def photo_of(person: int) -> list[list[float]]:
    return [person_vector(person).tolist()]


def test_candidates_are_identities_with_sightings_and_route():
    tracklets, ids = site()
    result = search_tracklets(
        frame_of(*tracklets), identities_of(ids), query(embeddings=photo_of(1))
    )
    best = result.candidates[0]
    assert (best.key, best.global_id, best.rank, best.good_match) == ("g1", "g1", 1, True)
    assert [s.tracklet_id for s in best.sightings] == ["cam1-0-1", "cam2-0-2"]
    assert best.cameras == ["cam1", "cam2"]
    assert best.first_seen == datetime.fromtimestamp(T0 + 10, UTC)
    assert [(s.first_x, s.last_x, s.world_x) for s in best.route] == [(0, 4, 2), (30, 34, 32)]
    assert best.sightings[0].thumbnail == "thumbnails/camera_id=cam1/cam1-0-1.jpg"
    assert best.confidence == max(s.confidence for s in best.sightings)
    assert not result.no_good_match
    keys = [c.key for c in result.candidates]
    assert keys[0] == "g1" and set(keys) == {"g1", "g2", "tracklet:cam3-0-4"}
    assert [c.rank for c in result.candidates] == [1, 2, 3]


def test_every_result_carries_case_reason_and_principal():
    tracklets, ids = site()
    q = query(embeddings=photo_of(1), requested_by="officer-12")
    result = search_tracklets(frame_of(*tracklets), identities_of(ids), q)
    assert (result.case_id, result.reason, result.requested_by) == (
        "case-1",
        "missing child",
        "officer-12",
    )
    dumped = result.model_dump(mode="json")
    assert dumped["case_id"] == "case-1" and dumped["requested_by"] == "officer-12"


def test_open_set_says_no_good_match_for_someone_never_seen():
    tracklets, ids = site()
    result = search_tracklets(
        frame_of(*tracklets), identities_of(ids), query(embeddings=photo_of(9))
    )
    assert result.no_good_match
    assert result.candidates and not any(c.good_match for c in result.candidates)
    strict = search_tracklets(
        frame_of(*tracklets), identities_of(ids), query(embeddings=photo_of(1), min_confidence=1.0)
    )
    assert strict.no_good_match


def test_max_candidates_cuts_the_ranking():
    tracklets, ids = site()
    result = search_tracklets(
        frame_of(*tracklets), identities_of(ids), query(embeddings=photo_of(1), max_candidates=1)
    )
    assert [c.key for c in result.candidates] == ["g1"]
    assert result.max_candidates == 1
    more = search_tracklets(
        frame_of(*tracklets),
        identities_of(ids),
        query(embeddings=photo_of(1), max_candidates=1),
        limit=5,
    )
    assert len(more.candidates) == 3 and more.max_candidates == 1


def test_the_newest_version_of_a_tracklet_is_searched():
    old = make_tracklet(1, upper="red", version=1)
    new = make_tracklet(1, upper="blue", version=2)
    result = search_tracklets(frame_of(old, new), None, query(description={"upper_colour": "red"}))
    (only,) = result.candidates
    assert only.colour_contradictions == 1
    assert result.counts["input"] == 1


def test_identities_log_resolves_to_the_newest_assignment():
    tracklets, _ = site()
    log = pl.DataFrame(
        {
            "tracklet_id": ["cam1-0-1", "cam1-0-1", "cam2-0-2"],
            "global_id": ["g1", "g7", "g7"],
            "seq": [1, 5, 3],
        }
    )
    result = search_tracklets(frame_of(*tracklets), log, query(embeddings=photo_of(1)))
    assert result.candidates[0].key == "g7"
    assert len(result.candidates[0].sightings) == 2


def test_filters_restrict_sightings_but_not_the_route():
    tracklets, ids = site()
    q = query(embeddings=photo_of(1), cameras=["cam2"])
    result = search_tracklets(frame_of(*tracklets), identities_of(ids), q)
    best = result.candidates[0]
    assert [s.camera_id for s in best.sightings] == ["cam2"]
    assert [s.camera_id for s in best.route] == ["cam1", "cam2"]
    assert best.route[0].confidence is None
    assert result.counts == {
        "input": 4,
        "window": 4,
        "cameras": 1,
        "area": 1,
        "reachability": 1,
        "not_rejected": 1,
    }


def test_last_seen_orders_cameras_and_says_which_tracklets_record_no_bag():
    tracklets, ids = site()
    q = query(
        embeddings=photo_of(1),
        description={"bag": True},
        last_seen={"x": 0, "y": 0, "time": T0},
    )
    result = search_tracklets(frame_of(*tracklets), identities_of(ids), q)
    assert [c.camera_id for c in result.camera_reach] == ["cam1", "cam2", "cam3"]
    # the site's tracklets were recorded without hats and bags: said, and counted unknown
    assert any("do not record a bag" in w for w in result.warnings)
    assert not any("record a hat" in w for w in result.warnings)


def test_frames_from_before_hats_and_bags_were_read_are_searched_as_unknown():
    old = frame_of(make_tracklet(1, hat=0.9), make_tracklet(2)).drop(
        "hat_probability", "bag_probability"
    )
    result = search_tracklets(old, None, query(description={"hat": True}))
    assert [c.confidence for c in result.candidates] == pytest.approx([0.5, 0.5])
    assert any("2 of 2 tracklet(s) do not record a hat" in w for w in result.warnings)


def test_missing_columns_are_named():
    frame = frame_of(make_tracklet(1)).drop("embeddings", "height_m")
    with pytest.raises(ValueError, match=r"lack columns \['embeddings', 'height_m'\]"):
        search_tracklets(frame, None, query(description={"child": True}))


def test_tracklets_without_samples_are_scored_at_the_prior_and_said_so():
    t = make_tracklet(1, samples=0)
    result = search_tracklets(frame_of(t), None, query(embeddings=photo_of(1)))
    assert result.candidates[0].confidence == pytest.approx(1 / 40)
    assert any("no stored embeddings" in w for w in result.warnings)


def test_an_empty_window_is_typed_and_said():
    tracklets, ids = site()
    q = query(embeddings=photo_of(1), start=T0 + DAY, end=T0 + DAY + 60)
    result = search_tracklets(frame_of(*tracklets), identities_of(ids), q)
    assert result.candidates == [] and result.no_good_match
    assert "no tracklets in the window" in result.warnings


# --------------------------------------------------------------------------- merging


def assert_same(a, b) -> None:
    """Same results up to float32 round-off (matrix products batch differently)."""

    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.5g}")  # 5 significant digits
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rounded(v) for v in value]
        return value

    skip = {"partitions", "counts"}
    assert rounded(a.model_dump(exclude=skip)) == rounded(b.model_dump(exclude=skip))


def test_merging_partitions_gives_the_whole_search():
    tracklets, ids = site()
    frame, identities = frame_of(*tracklets), identities_of(ids)
    q = query(embeddings=photo_of(1), description={"upper_colour": "red"})
    whole = search_tracklets(frame, identities, q)
    parts = [
        search_tracklets(part, identities, q, limit=100) for part in frame.partition_by("camera_id")
    ]
    merged = merge_results(parts)
    assert merged.partitions == 3
    assert_same(merged, whole)
    assert merged.counts["input"] == whole.counts["input"]


def test_results_of_different_queries_do_not_merge():
    tracklets, _ = site()
    a = search_tracklets(frame_of(*tracklets), None, query(embeddings=photo_of(1)))
    b = search_tracklets(frame_of(*tracklets), None, query(embeddings=photo_of(1), reason="other"))
    with pytest.raises(ValueError, match=r"differ in \['reason'\]"):
        merge_results([a, b])
    with pytest.raises(ValueError, match="at least one"):
        merge_results([])


# --------------------------------------------------------------------------- store


@pytest.fixture
def store(tmp_path):
    """The site, plus person 1 again the next day on cam1, written to a TrackStore."""
    tracklets, ids = site()
    tracklets.append(make_tracklet(5, "cam1", T0 + DAY, person=1))
    ids["cam1-0-5"] = "g1"
    with TrackStore(tmp_path / "store", durable=False) as s:
        s.write_tracklets(tracklets, {"cam1-0-3": "g2"})
        s.write_assignments(
            [
                {"tracklet_id": t, "global_id": g, "seq": i, "reason": "test"}
                for i, (t, g) in enumerate(ids.items())
            ],
            assigned_at=T0,
        )
    return tmp_path / "store"


def test_search_store_prunes_partitions_and_attaches_full_routes(store):
    q = query(embeddings=photo_of(1), cameras=["cam2"])
    assert store_partitions(store, q) == [(datetime.fromtimestamp(T0, UTC).date(), "cam2")]
    result = search_store(store, q)
    best = result.candidates[0]
    assert best.key == "g1" and [s.camera_id for s in best.sightings] == ["cam2"]
    # the route comes from the sightings table: every camera in the window, not the next day
    assert [s.tracklet_id for s in best.route] == ["cam1-0-1", "cam2-0-2"]
    assert best.route[1].confidence == best.sightings[0].confidence
    assert best.route[0].thumbnail == "thumbnails/camera_id=cam1/cam1-0-1.jpg"


def test_search_store_fanned_out_per_partition_and_merged(store):
    q = query(embeddings=photo_of(1), start=T0, end=T0 + DAY + 10)
    whole = search_store(store, q)
    parts = store_partitions(store, q)
    assert len(parts) == 4
    partial = [search_store(store, q, partitions=[p], limit=50) for p in parts]
    assert all(r.candidates[0].route == r.candidates[0].sightings for r in partial)
    merged = attach_routes(store, merge_results(partial))
    assert_same(merged, whole)
    assert [s.tracklet_id for s in merged.candidates[0].sightings] == [
        "cam1-0-1",
        "cam2-0-2",
        "cam1-0-5",
    ]


def test_search_store_on_an_empty_store(tmp_path):
    TrackStore(tmp_path / "empty")
    result = search_store(tmp_path / "empty", query(embeddings=photo_of(1)))
    assert result.candidates == [] and result.no_good_match
