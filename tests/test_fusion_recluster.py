"""Re-clustering of the active window: the clustering itself, the bulk relation matrix,
and the fuser undoing a greedy early decision (without Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.config import FusionConfig, TopologyConfig
from sightline.fusion.evidence import Relation, TrackletView, TransitTable, relate, relation_matrix
from sightline.fusion.recluster import cluster, components
from tests.test_fusion import fuse, look, same_person, walk

# ---------------------------------------------------------------------- cluster()


def _blocks(n: int, groups: list[list[int]], inside: float, across: float) -> np.ndarray:
    scores = np.full((n, n), across)
    for g in groups:
        scores[np.ix_(g, g)] = inside
    return scores


def test_cluster_joins_what_links_strongly_and_nothing_else():
    scores = _blocks(5, [[0, 2, 4], [1, 3]], inside=5.0, across=-4.0)
    assert cluster(scores, np.zeros((5, 5), bool), 2.0) == [[0, 2, 4], [1, 3]]


def test_cluster_never_puts_a_conflicting_pair_together():
    scores = _blocks(3, [[0, 1, 2]], inside=5.0, across=-4.0)
    conflict = np.zeros((3, 3), bool)
    conflict[0, 2] = conflict[2, 0] = True  # 0 and 2: two places at once
    scores[0, 1] = scores[1, 0] = 6.0  # 1 looks most like 0
    assert cluster(scores, conflict, 2.0) == [[0, 1], [2]]


def test_cluster_uses_the_mean_link_not_the_best_one():
    # 2 resembles 0 strongly but 1 not at all: the mean over {0, 1} is below the threshold
    scores = _blocks(3, [[0, 1]], inside=6.0, across=-6.0)
    scores[0, 2] = scores[2, 0] = 5.0
    assert cluster(scores, np.zeros((3, 3), bool), 2.0) == [[0, 1], [2]]
    assert cluster(scores, np.zeros((3, 3), bool), -1.0) == [[0, 1, 2]]


@pytest.mark.parametrize("n", [0, 1])
def test_cluster_of_nothing_or_one(n: int):
    assert cluster(np.zeros((n, n)), np.zeros((n, n), bool), 0.0) == [[i] for i in range(n)]


def test_cluster_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must be"):
        cluster(np.zeros((3, 3)), np.zeros((2, 2), bool), 0.0)


def test_cluster_is_deterministic_and_complete_on_random_input():
    rng = np.random.default_rng(3)
    n = 40
    scores = rng.normal(0, 3, (n, n))
    scores = (scores + scores.T) / 2
    conflict = rng.random((n, n)) < 0.1
    conflict |= conflict.T
    np.fill_diagonal(conflict, False)
    groups = cluster(scores, conflict, 1.0)
    assert groups == cluster(scores.copy(), conflict.copy(), 1.0)
    assert sorted(i for g in groups for i in g) == list(range(n))
    for g in groups:
        assert not conflict[np.ix_(g, g)].any()
        if len(g) > 1:  # every group was formed by a link above the threshold
            assert (scores[np.ix_(g, g)] > 1.0).any()


def test_components_labels_connected_items():
    links = np.zeros((4, 4), bool)
    links[0, 3] = links[3, 0] = True
    label = components(links)
    assert label[0] == label[3] and len({label[0], label[1], label[2]}) == 3


# ---------------------------------------------------------------------- relation_matrix()


def _random_views(seed: int, n: int) -> list[TrackletView]:
    rng = np.random.default_rng(seed)
    views = []
    for i in range(n):
        t0 = float(rng.uniform(0, 60))
        length = float(rng.uniform(0.5, 12))
        start = rng.uniform(0, 40, 2)
        end = start + rng.normal(0, 6, 2)
        t = walk(f"t{i}", f"cam{rng.integers(4)}", t0, length, start, end, look(i))
        views.append(TrackletView.of(t))
        if i % 5 == 0:  # and another camera seeing the same person at the same place
            seen = walk(f"s{i}", "cam9", t0, length, start + 0.3, end + 0.3, look(i))
            views.append(TrackletView.of(seen))
    return views


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relation_matrix_says_what_relate_says_for_every_pair(seed: int):
    topology = TopologyConfig(links=[{"cameras": ("cam0", "cam1"), "typical_transit_s": 2}])
    config = FusionConfig(transit_slack_s=1)
    transits = TransitTable(topology)
    views = _random_views(seed, 30)
    conflict, same = relation_matrix(views, config, transits)
    for i, a in enumerate(views):
        for j, b in enumerate(views):
            if i != j:
                relation = relate(a, b, config, transits)
                assert conflict[i, j] == (relation is Relation.CONFLICT), (i, j, relation)
                assert same[i, j] == (relation is Relation.SAME), (i, j, relation)
    assert conflict.any() and same.any()  # the random site exercises both


def test_relation_matrix_compares_frames_only_where_needed():
    a = TrackletView.of(walk("A", "cam1", 0, 6, (10, 10), (16, 10), look(1)))
    b = TrackletView.of(walk("B", "cam2", 0, 6, (10.2, 10), (16.2, 10), look(1)))
    config, transits = FusionConfig(), TransitTable(None)
    assert relation_matrix([a, b], config, transits)[1][0, 1]
    conflict, same = relation_matrix([a, b], config, transits, np.zeros((2, 2), bool))
    assert not same.any() and not conflict.any()


# ---------------------------------------------------------------------- the fuser


def _wrong_early_join() -> list:
    """X looks like A and arrives first, so online fusion joins it to A; then B, who is
    A again, is seen at the same time as X far away: two places at once with X, so the
    online decision cannot join B to A. Seen all together, A and B belong together and
    X does not."""
    a, x_look = look(1), (look(1) + 0.55 * look(7))
    x_look = (x_look / np.linalg.norm(x_look)).astype(np.float32)
    return [
        walk("A", "cam1", 0, 5, (0, 0), (5, 0), a),
        walk("X", "cam2", 20, 6, (10, 0), (14, 0), x_look),
        walk("B", "cam3", 20, 6, (30, 10), (34, 10), a),
        # someone else, later: site time moves on, so re-clustering runs after B
        walk("Z", "cam4", 40, 5, (90, 90), (95, 90), look(5)),
    ]


def test_reclustering_undoes_a_greedy_join_that_blocks_the_right_one():
    online = fuse(*_wrong_early_join(), config=FusionConfig(recluster_every_s=0))
    assert same_person(online, "A", "X") and not same_person(online, "A", "B")
    fuser = fuse(*_wrong_early_join(), config=FusionConfig(recluster_every_s=1))
    assert same_person(fuser, "A", "B") and not same_person(fuser, "A", "X")
    # the move is an event, and each moved tracklet has an assignment with the reason
    moves = [e for e in fuser.recent_events if e.reason == "re-clustered"]
    assert moves and {"A", "B", "X"} & {t for e in moves for t in e.tracklet_ids}
    assert fuser.counts()["split"] + fuser.counts().get("merge", 0) >= 1


def test_reclustering_reuses_the_ids_of_the_people_it_regroups():
    fuser = fuse(*_wrong_early_join(), config=FusionConfig(recluster_every_s=1))
    online = fuse(*_wrong_early_join(), config=FusionConfig(recluster_every_s=0))
    # two people before and after: no id is made up, and every tracklet is owned once
    assert set(fuser.identities()) == set(online.identities())
    owned = [t for members in fuser.identities().values() for t in members]
    assert sorted(owned) == ["A", "B", "X", "Z"]


def test_reclustering_is_deterministic_on_replay():
    config = FusionConfig(recluster_every_s=1)
    first = fuse(*_wrong_early_join(), config=config)
    again = fuse(*_wrong_early_join(), config=config)
    assert first.identities() == again.identities()
    assert [(e.kind, e.global_ids, e.tracklet_ids) for e in first.recent_events] == [
        (e.kind, e.global_ids, e.tracklet_ids) for e in again.recent_events
    ]


def test_reclustering_leaves_settled_people_alone():
    # two people, each seen on two cameras one after the other, nobody alike:
    # nothing to revisit, so no event beyond new and assign
    tracklets = [
        walk("A1", "cam1", 0, 5, (0, 0), (5, 0), look(1)),
        walk("B1", "cam1", 0, 5, (0, 20), (5, 20), look(2)),
        walk("A2", "cam2", 15, 5, (15, 0), (20, 0), look(1)),
        walk("B2", "cam2", 15, 5, (15, 20), (20, 20), look(2)),
    ]
    fuser = fuse(*tracklets, config=FusionConfig(recluster_every_s=1))
    assert same_person(fuser, "A1", "A2") and same_person(fuser, "B1", "B2")
    assert set(fuser.counts()) <= {"new", "assign"}


def test_reclustering_never_makes_a_person_who_is_in_two_places_at_once():
    far_away = walk("Y", "cam1", 21, 4, (60, 60), (62, 60), look(1))  # A's look, same time
    tracklets = [*_wrong_early_join(), far_away]
    fuser = fuse(*tracklets, config=FusionConfig(recluster_every_s=1))
    views = {t.tracklet_id: TrackletView.of(t) for t in tracklets}
    for members in fuser.identities().values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                relation = relate(views[a], views[b], fuser.config, fuser.transits)
                assert relation is not Relation.CONFLICT, (a, b)
