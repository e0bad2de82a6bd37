"""Standing watches without Ray: alerts once per sighting, filters, removal, subscribers."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sightline.search import SearchQueryError, WatchList
from sightline.search.photos import encode_photo
from sightline.search.query import DEFAULT_MIN_CONFIDENCE
from tests.test_search_helpers import (
    DIM,
    SYNTHETIC_CALIBRATION,
    T0,
    make_tracklet,
    person_vector,
    query,
)

LATER = T0 + 600  # tracklets arrive after the window start


def photo_of(person: int) -> list[list[float]]:
    return [person_vector(person).tolist()]


def watch_list(**kwargs: object) -> WatchList:
    counter = iter(range(1, 1000))
    kwargs.setdefault("calibration", SYNTHETIC_CALIBRATION)
    return WatchList(clock=lambda: 1234.5, new_id=lambda: f"w{next(counter)}", **kwargs)


def test_a_matching_tracklet_raises_exactly_one_alert():
    watches = watch_list()
    wid = watches.add(query(embeddings=photo_of(1)))
    t = make_tracklet(1, "cam1", LATER, person=1)
    [alert] = watches.check([t], {t.tracklet_id: "g7"})
    assert (alert.seq, alert.watch_id, alert.case_id) == (1, wid, "case-1")
    assert (alert.tracklet_id, alert.global_id, alert.camera_id) == (t.tracklet_id, "g7", "cam1")
    assert (alert.t_start, alert.t_end) == (t.t_start, t.t_end)
    assert alert.confidence >= alert.threshold == DEFAULT_MIN_CONFIDENCE
    assert alert.thumbnail == f"thumbnails/camera_id=cam1/{t.tracklet_id}.jpg"
    assert alert.raised_at == 1234.5 and alert.as_dict()["version"] == 1
    # the same tracklet again (a retry, or its next version looking the same): no new alert
    assert watches.check([t], {}) == []
    assert watches.check([make_tracklet(1, "cam1", LATER, person=1, version=2)], {}) == []
    assert [a.seq for a in watches.since(0)] == [1] and watches.last_seq == 1
    assert watches.watches()[0]["alerts"] == 1


def test_a_non_matching_tracklet_raises_none():
    watches = watch_list()
    watches.add(query(embeddings=photo_of(1)))
    t = make_tracklet(2, "cam1", LATER, person=2)
    assert watches.check([t], {}) == []
    assert watches.stats["tracklets_checked"] == 1 and watches.stats["alerts"] == 0


def test_a_new_sighting_of_the_same_person_alerts_again():
    watches = watch_list()
    watches.add(query(embeddings=photo_of(1)))
    first = make_tracklet(1, "cam1", LATER, person=1)
    second = make_tracklet(2, "cam2", LATER + 60, person=1)
    assert len(watches.check([first], {first.tracklet_id: "g1"})) == 1
    assert len(watches.check([second], {second.tracklet_id: "g1"})) == 1


def test_a_notably_higher_confidence_alerts_again():
    watches = watch_list(realert_margin=0.1)
    wid = watches.add(query(embeddings=photo_of(1)), threshold=0.2)
    v = person_vector(1)
    other = person_vector(2)

    def version(k: int, weight: float):
        mixed = weight * v + (1 - weight) * other
        samples = np.tile(mixed / np.linalg.norm(mixed), (3, 1))
        return make_tracklet(1, "cam1", LATER, person=1, version=k, embeddings=samples)

    confidences = []
    # confidences about 0.35, 0.44 (+0.09: not notably higher) and 0.70
    for k, weight in enumerate((0.44, 0.46, 0.52), start=1):
        confidences += [a.confidence for a in watches.check([version(k, weight)], {})]
    assert len(confidences) == 2  # the first, and the clearly better view
    assert confidences[1] >= confidences[0] + 0.1
    assert [a.version for a in watches.since()] == [1, 3] and watches.since()[0].watch_id == wid


def test_only_the_newest_version_in_a_batch_is_scored():
    watches = watch_list()
    watches.add(query(embeddings=photo_of(1)))
    old = make_tracklet(1, "cam1", LATER, person=1, version=1)
    new = make_tracklet(1, "cam1", LATER, person=1, version=2, n=8)
    [alert] = watches.check([new, old], {})
    assert alert.version == 2 and alert.t_end == new.t_end


WINDOW_START = datetime.fromtimestamp(T0, UTC)


@pytest.mark.parametrize(
    ("fields", "tracklet", "alerts"),
    [
        # cameras
        ({"cameras": ["cam1"]}, {"camera_id": "cam1"}, 1),
        ({"cameras": ["cam1"]}, {"camera_id": "cam2"}, 0),
        # area (the tracklet walks from (0, 0) to (4, 0))
        ({"area": [(-1, -1), (1, -1), (1, 1), (-1, 1)]}, {}, 1),
        ({"area": [(50, 50), (60, 50), (60, 60)]}, {}, 0),
        # last seen at (0, 0) at T0: 600 s later 2 m/s reach 1205 m; 10 s later 25 m
        ({"last_seen": {"x": 0, "y": 0, "time": T0}}, {"start": (1000.0, 0.0)}, 1),
        ({"last_seen": {"x": 0, "y": 0, "time": LATER - 10}}, {"start": (1000.0, 0.0)}, 0),
        # window: the start counts, the end does not (a watch looks forward)
        ({"start": LATER + 100}, {}, 0),
        ({"end": T0 + 1}, {}, 1),
        # rejected identities never alert
        ({"rejected": ["g1"]}, {}, 0),
        ({"rejected": ["g2"]}, {}, 1),
    ],
)
def test_the_query_filters_are_respected(fields, tracklet, alerts):
    watches = watch_list()
    base = {"start": T0, "end": T0 + 3600}
    watches.add(query(embeddings=photo_of(1), **{**base, **fields}))
    t = make_tracklet(1, tracklet.pop("camera_id", "cam1"), LATER, person=1, **tracklet)
    assert len(watches.check([t], {t.tracklet_id: "g1"})) == alerts


def test_unfused_tracklets_are_rejected_by_their_tracklet_key():
    watches = watch_list()
    t = make_tracklet(1, "cam1", LATER, person=1)
    watches.add(query(embeddings=photo_of(1), rejected=[f"tracklet:{t.tracklet_id}"]))
    assert watches.check([t], {}) == []


def test_description_only_watch():
    watches = watch_list()
    watches.add(query(description={"upper_colour": "red", "child": True}))
    child_red = make_tracklet(1, "cam1", LATER, upper="red", height=1.2)
    adult_red = make_tracklet(2, "cam1", LATER, upper="red", height=1.8)
    child_blue = make_tracklet(3, "cam1", LATER, upper="blue", height=1.2)
    alerts = watches.check([child_red, adult_red, child_blue], {})
    assert [a.tracklet_id for a in alerts] == [child_red.tracklet_id]


def test_remove_stops_alerts():
    watches = watch_list()
    keep = watches.add(query(embeddings=photo_of(1)))
    gone = watches.add(query(embeddings=photo_of(1), case_id="case-2"))
    watches.remove(gone)
    assert gone not in watches and len(watches) == 1
    alerts = watches.check([make_tracklet(1, "cam1", LATER, person=1)], {})
    assert [a.watch_id for a in alerts] == [keep]
    with pytest.raises(KeyError, match="unknown watch 'w2'"):
        watches.remove(gone)


def test_subscriber_errors_are_counted_and_break_nothing():
    watches = watch_list()
    watches.add(query(embeddings=photo_of(1)))
    seen = []

    def broken(alert):
        raise RuntimeError("push channel down")

    watches.subscribe(broken)
    watches.subscribe(seen.append)
    alerts = watches.check([make_tracklet(1, "cam1", LATER, person=1)], {})
    assert len(alerts) == 1 and seen == alerts
    assert watches.callback_errors == 1


def test_a_failing_watch_is_counted_and_the_others_still_alert():
    watches = watch_list()
    bad = watches.add(query(embeddings=[[1.0] * (DIM + 1)]))  # not the cameras' embedder
    good = watches.add(query(embeddings=photo_of(1)))
    alerts = watches.check([make_tracklet(1, "cam1", LATER, person=1)], {})
    assert [a.watch_id for a in alerts] == [good]
    info = {w["watch_id"]: w for w in watches.watches()}
    assert info[bad]["errors"] == 1 and "16" in info[bad]["last_error"]
    assert watches.stats["watch_errors"] == 1


def test_since_polls_in_order():
    watches = watch_list()
    watches.add(query(embeddings=photo_of(1)))
    watches.add(query(embeddings=photo_of(2)))
    watches.check([make_tracklet(1, "cam1", LATER, person=1)], {})
    watches.check([make_tracklet(2, "cam1", LATER, person=2)], {})
    assert [(a.seq, a.watch_id) for a in watches.since(0)] == [(1, "w1"), (2, "w2")]
    assert [a.seq for a in watches.since(1)] == [2]
    assert watches.since(2) == []


def test_photos_and_bad_thresholds_are_refused():
    watches = watch_list()
    photo = encode_photo(np.full((20, 20, 3), 128, np.uint8))
    with pytest.raises(SearchQueryError, match="embed_query"):
        watches.add(query(photos=[photo]))
    with pytest.raises(ValueError, match="threshold must be in"):
        watches.add(query(embeddings=photo_of(1)), threshold=1.5)
    with pytest.raises(TypeError, match="SearchQuery"):
        watches.add({"case_id": "x"})  # type: ignore[arg-type]


def test_nothing_to_check_costs_nothing():
    watches = watch_list()
    assert watches.check([make_tracklet(1, "cam1", LATER, person=1)], {}) == []
    assert watches.stats["checks"] == 0
