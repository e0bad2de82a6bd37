"""The in-memory appearance index: same scores as the search, filters, use by search_store."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sightline.search import search_store
from sightline.search.index import EmbeddingIndex
from sightline.search.scoring import appearance_similarity
from sightline.store import TrackStore
from tests.test_search_helpers import T0, frame_of, make_tracklet, person_vector, query

DAY = 86400.0


def _tracklets():
    return [
        make_tracklet(1, "cam1", T0 + 10, person=1),
        make_tracklet(2, "cam2", T0 + 30, person=1, samples=1),
        make_tracklet(3, "cam1", T0 + 12, person=2),
        make_tracklet(4, "cam3", T0 + DAY, person=1),
        make_tracklet(5, "cam3", T0 + 50, person=3, samples=0),
    ]


@pytest.mark.parametrize("top_k", [1, 2])
def test_index_scores_like_the_search(top_k):
    frame = frame_of(*_tracklets())
    index = EmbeddingIndex.from_tracklets(frame)
    q = np.stack([person_vector(1), person_vector(3)])
    expected = appearance_similarity(frame["embeddings"], q, top_k)
    got = index.tracklet_similarity(q, top_k)
    order = [index.tracklet_ids.tolist().index(t) for t in frame["tracklet_id"]]
    np.testing.assert_allclose(got[order], expected, atol=1e-5, equal_nan=True)


def test_shortlist_ranks_and_filters_by_time_and_camera():
    index = EmbeddingIndex.from_tracklets(frame_of(*_tracklets()))
    q = person_vector(1)[None, :]
    everything = index.shortlist(q, 10)
    assert everything["tracklet_id"][0] in {"cam1-0-1", "cam2-0-2", "cam3-0-4"}
    assert "cam3-0-5" not in everything["tracklet_id"].to_list()  # no samples
    day_one = index.shortlist(q, 10, end=datetime.fromtimestamp(T0 + 100, UTC))
    assert "cam3-0-4" not in day_one["tracklet_id"].to_list()
    cam2 = index.shortlist(q, 10, cameras=["cam2"])
    assert cam2["tracklet_id"].to_list() == ["cam2-0-2"]
    assert index.shortlist(q, 2).height == 2
    with pytest.raises(ValueError, match="k must be"):
        index.shortlist(q, 0)
    with pytest.raises(ValueError, match="do not fit"):
        index.shortlist(np.ones((1, 3), np.float32), 5)


def test_search_store_with_an_index_finds_the_same_people(tmp_path):
    tracklets = _tracklets()[:4]
    people = {"cam1-0-1": "g1", "cam2-0-2": "g1", "cam3-0-4": "g1", "cam1-0-3": "g2"}
    with TrackStore(tmp_path / "store", durable=False) as store:
        store.write_tracklets(tracklets)
        store.write_assignments(
            [
                {"tracklet_id": t, "global_id": g, "seq": i, "reason": "test"}
                for i, (t, g) in enumerate(people.items())
            ],
            assigned_at=T0,
        )
    q = query(embeddings=[person_vector(1).tolist()], start=T0, end=T0 + DAY + 10)
    index = EmbeddingIndex.from_store(tmp_path / "store")
    assert len(index) == 4 and index.samples == 3 + 1 + 3 + 3
    plain = search_store(tmp_path / "store", q)
    indexed = search_store(tmp_path / "store", q, index=index)
    assert (
        [c.key for c in indexed.candidates]
        == [c.key for c in plain.candidates]
        == [
            "g1",
            "g2",
        ]
    )
    for a, b in zip(indexed.candidates, plain.candidates, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=1e-6)
        assert [s.tracklet_id for s in a.route] == [s.tracklet_id for s in b.route]
    # one shortlisted tracklet still brings its person's whole route
    narrow = search_store(tmp_path / "store", q, index=index, shortlist=1)
    assert [c.key for c in narrow.candidates] == ["g1"]
    assert len(narrow.candidates[0].route) == 3


def test_bench_search_reports_latency_recall_and_the_store_baseline():
    from sightline.search.bench import bench_search

    result = bench_search(sizes=(2_000,), queries=2, store_queries=1)
    [size] = result["sizes"]
    assert size["embeddings"] == 2_000 and size["tracklets"] == 250
    assert size["recall_at_50_vs_float64"] == 1.0
    assert set(size["search_store"]) == {"without_index", "with_index"}
    assert {"passed", "passed_index_shortlist", "target"} <= set(result)


def test_rows_for_needs_rows_and_skips_unknown_ids():
    light = frame_of(*_tracklets()).select(
        "tracklet_id", "camera_id", "version", "t_start", "t_end", "embeddings"
    )
    with pytest.raises(ValueError, match="without the tracklets' rows"):
        EmbeddingIndex.from_tracklets(light).rows_for(["cam1-0-1"])
    full = EmbeddingIndex.from_tracklets(frame_of(*_tracklets()))
    rows = full.rows_for(["cam2-0-2", "nobody", "cam1-0-1"])
    assert rows["tracklet_id"].to_list() == ["cam2-0-2", "cam1-0-1"]
    assert [len(e) for e in rows["embeddings"].to_list()] == [1, 3]
