"""Refinement: confirmed identities expand the query, rejected ones leave, ranking changes."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.search import refine, search_store, search_tracklets
from sightline.search.refine import expansion_vectors
from sightline.store import TrackStore
from tests.test_search_helpers import (
    DIM,
    T0,
    frame_of,
    identities_of,
    make_tracklet,
    pin_photo_calibration,
    query,
)


@pytest.fixture(autouse=True)
def _calibration_the_scene_assumes(monkeypatch, tmp_path):
    pin_photo_calibration(monkeypatch, tmp_path)


def near(*values: float, n: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors close to the direction ``values`` (the first axes)."""
    v = np.zeros(DIM)
    v[: len(values)] = values
    rng = np.random.default_rng(seed)
    raw = v / np.linalg.norm(v) + 0.02 * rng.normal(size=(n, DIM))
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


PHOTO = [[1.0] + [0.0] * (DIM - 1)]


def scene():
    """The photo is e1. Person 1 looks like 0.75 e1 + 0.66 e2 on cam1 (g1) and like
    0.6 e1 + 0.8 e2 on cam2, where fusion missed them (g3). A stranger on cam3 (g4) looks
    like 0.7 e1 + 0.71 e3: closer to the photo than person 1 on cam2, not to person 1."""
    tracklets = [
        make_tracklet(1, "cam1", T0 + 10, embeddings=near(0.75, 0.66, seed=1), quality=0.9),
        make_tracklet(2, "cam2", T0 + 40, embeddings=near(0.60, 0.80, seed=2)),
        make_tracklet(3, "cam3", T0 + 60, embeddings=near(0.70, 0.0, 0.71, seed=3)),
    ]
    ids = identities_of({"cam1-0-1": "g1", "cam2-0-2": "g3", "cam3-0-3": "g4"})
    return frame_of(*tracklets), ids


def keys(result) -> list[str]:
    return [c.key for c in result.candidates]


def test_confirming_expands_the_query_and_reranks():
    frame, ids = scene()
    q = query(embeddings=PHOTO)
    before = search_tracklets(frame, ids, q)
    assert keys(before) == ["g1", "g4", "g3"]

    confirmed = refine(q, confirmed=["g1"], tracklets=frame, identities=ids)
    assert list(confirmed.expansion) == ["g1"] and len(confirmed.expansion["g1"]) == 3
    after = search_tracklets(frame, ids, confirmed)
    # person 1's other sighting rises above the stranger; the confirmed one stays first
    assert keys(after) == ["g1", "g3", "g4"]
    assert after.candidates[0].confirmed and not after.candidates[1].confirmed
    assert after.candidates[1].confidence > before.candidates[2].confidence + 0.5


def test_rejecting_removes_a_candidate():
    frame, ids = scene()
    q = refine(query(embeddings=PHOTO), rejected=["g4"])
    result = search_tracklets(frame, ids, q)
    assert keys(result) == ["g1", "g3"]
    assert result.counts["not_rejected"] == result.counts["reachability"] - 1


def test_unfused_tracklets_can_be_confirmed_and_rejected_by_key():
    frame, _ = scene()
    q = refine(
        query(embeddings=PHOTO), ["tracklet:cam1-0-1"], ["tracklet:cam3-0-3"], tracklets=frame
    )
    result = search_tracklets(frame, None, q)
    assert keys(result) == ["tracklet:cam1-0-1", "tracklet:cam2-0-2"]


def test_the_newest_decision_wins():
    frame, ids = scene()
    q = refine(
        query(embeddings=PHOTO), confirmed=["g1"], rejected=["g4"], tracklets=frame, identities=ids
    )
    q = refine(q, confirmed=["g4"], rejected=["g1"], tracklets=frame, identities=ids)
    assert (q.confirmed, q.rejected, list(q.expansion)) == (["g4"], ["g1"], ["g4"])
    with pytest.raises(ValueError, match=r"confirmed and rejected at once: \['g3'\]"):
        refine(q, confirmed=["g3"], rejected=["g3"])


def test_expansion_takes_the_best_tracklets_first_up_to_the_limit():
    a = make_tracklet(1, "cam1", embeddings=near(1.0, seed=1, n=4), quality=0.2)
    b = make_tracklet(2, "cam2", embeddings=near(0.0, 1.0, seed=2, n=4), quality=0.9)
    ids = identities_of({"cam1-0-1": "g1", "cam2-0-2": "g1"})
    vectors = expansion_vectors(frame_of(a, b), ids, ["g1", "g9"], limit=5)
    assert list(vectors) == ["g1"] and len(vectors["g1"]) == 5
    np.testing.assert_allclose(vectors["g1"][:4], b.embeddings, atol=1e-6)


def test_without_tracklets_the_result_warns_and_the_store_resolves(tmp_path):
    frame, ids = scene()
    q = refine(query(embeddings=PHOTO), confirmed=["g1"])
    assert q.expansion == {}
    in_memory = search_tracklets(frame, ids, q)
    assert keys(in_memory) == ["g1", "g4", "g3"]
    assert any("confirmed ['g1']" in w for w in in_memory.warnings)

    with TrackStore(tmp_path, durable=False) as store:
        store.append_rows("tracklets", frame)
        store.write_assignments(ids.with_columns(seq=1, reason=None).to_dicts(), assigned_at=T0)
    from_store = search_store(tmp_path, q)
    assert keys(from_store) == ["g1", "g3", "g4"]
    assert not any("confirmed" in w for w in from_store.warnings)
