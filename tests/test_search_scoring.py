"""Scoring: top-k appearance, calibrated confidence, description fit, colour means colour."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from sightline.fusion.calibration import AppearanceCalibration
from sightline.search import SearchCalibration, search_tracklets
from sightline.search.photos import encode_photo
from sightline.search.scoring import (
    appearance_similarity,
    child_probability,
    colour_contradicts,
    colour_probability,
    height_probability,
    score_tracklets,
    worn_probability,
)
from tests.test_search_helpers import (
    DIM,
    SYNTHETIC_CALIBRATION,
    frame_of,
    make_tracklet,
    person_vector,
    query,
)

# the CCTV-pair calibration these synthetic vectors were laid out against
CAL = SYNTHETIC_CALIBRATION


def unit(*values: float) -> list[float]:
    v = np.zeros(DIM)
    v[: len(values)] = values
    return (v / np.linalg.norm(v)).tolist()


# --------------------------------------------------------------------------- appearance


def test_appearance_is_the_mean_of_the_best_k_samples_over_query_vectors():
    # samples at cosines 0.9, 0.5, 0.1 to e1; the second query vector e2 matches sample 3 at 0.8
    samples = [unit(0.9, 0.0, np.sqrt(1 - 0.81)), unit(0.5, 0, np.sqrt(0.75)), unit(0.1, 0.8, 0.59)]
    series = pl.Series([samples, [], samples[:1]], dtype=pl.List(pl.List(pl.Float32())))
    q1 = np.asarray([unit(1.0)], np.float32)
    both = np.asarray([unit(1.0), unit(0, 1.0)], np.float32)
    np.testing.assert_allclose(appearance_similarity(series, q1, 1), [0.9, np.nan, 0.9], atol=1e-3)
    np.testing.assert_allclose(appearance_similarity(series, q1, 2), [0.7, np.nan, 0.9], atol=1e-3)
    np.testing.assert_allclose(
        appearance_similarity(series, both, 2), [0.85, np.nan, 0.9], atol=2e-3
    )


def test_appearance_refuses_a_dimension_mismatch():
    frame = frame_of(make_tracklet(1))
    with pytest.raises(ValueError, match=r"query vectors have 3 values, stored samples \[16\]"):
        appearance_similarity(frame["embeddings"], np.ones((1, 3), np.float32), 2)


def test_calibrated_probability_uses_the_search_prior():
    cal = SearchCalibration(AppearanceCalibration(slope=10.0, intercept=-5.0), prior=0.2)
    p = cal.appearance_probability(np.array([0.2, 0.5, 0.9, np.nan]))
    assert np.all(np.diff(p[:3]) > 0)
    # at s = 0.5 the pair odds are even: the posterior is the prior
    assert p[1] == pytest.approx(0.2) and p[3] == pytest.approx(0.2)
    assert cal.appearance_probability(np.array([cal.similarity_at(0.5)]))[0] == pytest.approx(0.5)


def test_default_threshold_is_a_high_cosine():
    """With the committed photo calibration the default open-set threshold sits at a
    cosine well above what strangers score (about 0 on the validation site) and below a
    near copy."""
    from sightline.search.query import DEFAULT_MIN_CONFIDENCE

    committed = SearchCalibration.load()
    at_threshold = committed.similarity_at(DEFAULT_MIN_CONFIDENCE)
    assert 0.5 < committed.similarity_at(0.5) < at_threshold < 0.95


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior": 0.0}, "prior"),
        ({"top_k": 0}, "top_k"),
        ({"colour_trust": 2.0}, "colour_trust"),
        ({"hat_trust": -0.1}, "hat_trust"),
        ({"bag_trust": 1.5}, "bag_trust"),
        ({"hat_height_m": -0.1}, "hat_height_m"),
    ],
)
def test_calibration_constants_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchCalibration(CAL.appearance, **kwargs)


# --------------------------------------------------------------------------- description


CONFIDENCES = [1 / 11, 0.1, 0.3, 0.5, 0.9, 0.99, 1.0]


@pytest.mark.parametrize(("red", "blue"), list(itertools.product(CONFIDENCES, CONFIDENCES)))
def test_red_top_always_beats_blue_top_in_the_colour_term(red, blue):
    names = np.array(["red", "blue"], dtype=object)
    p = colour_probability(names, np.array([red, blue]), "red")
    assert p[0] >= p[1]
    assert colour_contradicts(names, "red").tolist() == [False, True]


def test_unknown_colour_is_between_a_match_and_a_contradiction():
    names = np.array(["red", "unknown", None, "blue"], dtype=object)
    p = colour_probability(names, np.array([0.6, 0.0, np.nan, 0.6]), "red")
    assert p[0] > p[1] == p[2] > p[3]
    assert colour_contradicts(names, "red").tolist() == [False, False, False, True]


@pytest.mark.parametrize(
    ("height", "low", "high", "expected"),
    [
        (1.20, 1.0, 1.4, 1.0),
        (1.20, 1.1, 1.3, 0.9),
        (1.30, 1.1, 1.3, 0.5),
        (1.60, 1.1, 1.3, 0.0),
        (1.60, None, 1.3, 0.0),
        (1.00, 1.1, None, 0.05),
        (float("nan"), 1.1, 1.3, 0.5),
    ],
)
def test_height_range_probability(height, low, high, expected):
    p = height_probability(np.array([height]), low, high)[0]
    assert p == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(
    ("height", "child", "expected"),
    [(1.2, True, 1.0), (1.7, True, 0.0), (1.2, False, 0.0), (1.7, False, 1.0), (1.45, True, 0.5)],
)
def test_child_from_height(height, child, expected):
    assert child_probability(np.array([height]), child)[0] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("recorded", "wanted", "trust", "expected"),
    [
        (0.9, True, 1.0, 0.9),
        (0.9, False, 1.0, 0.1),
        (0.9, True, 0.8, 0.82),  # 0.8 * 0.9 + 0.2 * 0.5
        (0.1, True, 0.8, 0.18),
        (float("nan"), True, 0.8, 0.5),  # not recorded: a coin flip either way
        (float("nan"), False, 0.8, 0.5),
        (0.0, True, 0.0, 0.5),  # no trust: says nothing
    ],
)
def test_worn_probability(recorded, wanted, trust, expected):
    assert worn_probability(np.array([recorded]), wanted, trust)[0] == pytest.approx(expected)


@pytest.mark.parametrize("item", ["hat", "bag"])
@pytest.mark.parametrize("wanted", [True, False])
def test_a_hat_or_bag_asked_for_ranks_the_tracklets_that_fit_first(item, wanted):
    frame = frame_of(
        make_tracklet(1, **{item: 0.95}), make_tracklet(2, **{item: 0.05}), make_tracklet(3)
    )
    scores = score_tracklets(frame, query(description={item: wanted}), CAL)["confidence"]
    fits, contradicts = (scores[0], scores[1]) if wanted else (scores[1], scores[0])
    assert fits > scores[2] > contradicts  # unknown sits in between
    assert scores[2] == pytest.approx(0.5)


def test_a_bag_counts_for_less_than_a_hat():
    frame = frame_of(make_tracklet(1, hat=0.05, bag=0.05))
    hat = score_tracklets(frame, query(description={"hat": True}), CAL)["confidence"][0]
    bag = score_tracklets(frame, query(description={"bag": True}), CAL)["confidence"][0]
    assert hat < bag < 0.5


def test_a_hat_is_taken_off_a_measured_height_by_its_probability():
    # a child 1.42 m tall measured 1.50 m in a hat: a child once the hat is taken off
    frame = frame_of(
        make_tracklet(1, height=1.50, hat=0.98),
        make_tracklet(2, height=1.50, hat=0.02),
        make_tracklet(3, height=1.50),  # no reading: the height as measured
    )
    child = score_tracklets(frame, query(description={"child": True}), CAL)["confidence"]
    assert child[0] > 0.6 and child[1] < 0.3
    assert child[1] == pytest.approx(child[2], abs=0.05)
    assert child[1] > child[2]  # a 2 % hat takes off under 2 mm
    bare = score_tracklets(
        frame, query(description={"child": True}), replace(CAL, hat_height_m=0.0)
    )["confidence"]
    assert bare.to_list() == pytest.approx([child[2]] * 3)


def test_a_photo_match_without_the_hat_asked_for_ranks_lower():
    frame = frame_of(make_tracklet(1, person=1, hat=0.97), make_tracklet(2, person=1, hat=0.02))
    photo = [person_vector(1).tolist()]
    alone = score_tracklets(frame, query(embeddings=photo), CAL)["confidence"]
    hat = score_tracklets(frame, query(embeddings=photo, description={"hat": True}), CAL)
    assert hat["confidence"][0] == pytest.approx(alone[0], rel=0.05)  # fits: about the same
    assert hat["confidence"][1] < 0.2 * alone[1]
    assert hat["appearance_probability"].to_list() == alone.to_list()


# --------------------------------------------------------------------------- together


def test_photo_only_confidence_is_the_calibrated_appearance():
    frame = frame_of(make_tracklet(1, person=1), make_tracklet(2, person=2))
    scores = score_tracklets(frame, query(embeddings=[person_vector(1).tolist()]), CAL)
    assert scores["confidence"].to_list() == scores["appearance_probability"].to_list()
    assert scores["description_match"].null_count() == 2
    assert scores["confidence"][0] > 0.9
    assert scores["confidence"][1] < 0.1


def test_description_only_confidence_is_the_fit():
    frame = frame_of(make_tracklet(1, upper="red", upper_conf=0.9, height=1.2))
    scores = score_tracklets(frame, query(description={"upper_colour": "red", "child": True}), CAL)
    expected = (0.95 * 0.9 + 0.05 / 11) * (0.02 + 0.98 * 1.0)
    assert scores["confidence"][0] == pytest.approx(expected, rel=1e-3)
    assert scores["appearance_similarity"].null_count() == 1


def test_a_description_only_lowers_a_photo_match():
    frame = frame_of(
        make_tracklet(1, person=1, height=1.75), make_tracklet(2, person=1, height=1.2)
    )
    photo = [person_vector(1).tolist()]
    alone = score_tracklets(frame, query(embeddings=photo), CAL)["confidence"]
    child = score_tracklets(frame, query(embeddings=photo, description={"child": True}), CAL)
    assert child["confidence"][1] == pytest.approx(alone[1], rel=0.02)  # fits: about the same
    assert child["confidence"][0] < 0.05 * alone[0]  # an adult: far lower


def test_photos_must_be_embedded_before_scoring():
    q = query(photos=[encode_photo(np.zeros((32, 16, 3), np.uint8))])
    with pytest.raises(ValueError, match="not embedded"):
        score_tracklets(frame_of(make_tracklet(1)), q, CAL)


def test_colour_means_colour_whatever_else_favours_the_blue_top():
    """A red-top search ranks a doubtful red top above a confident blue top that fits the
    rest of the description better (height, trousers) and looks more like the photo."""
    red = make_tracklet(
        1,
        "cam1",
        person=1,
        upper="red",
        upper_conf=0.25,
        lower="unknown",
        lower_conf=0.0,
        height=1.45,
    )
    blue = make_tracklet(
        2,
        "cam2",
        person=2,
        upper="blue",
        upper_conf=0.99,
        lower="black",
        lower_conf=0.95,
        height=1.20,
    )
    frame = frame_of(red, blue)
    described = {"upper_colour": "red", "lower_colour": "black", "height_max_m": 1.25}
    for extra in ({}, {"embeddings": [person_vector(2).tolist()]}):
        result = search_tracklets(frame, None, query(description=described, **extra))
        ranked = [c.best_tracklet_id for c in result.candidates]
        assert ranked == [red.tracklet_id, blue.tracklet_id]
        assert [c.colour_contradictions for c in result.candidates] == [0, 1]
    # the blue top has the better score apart from colour: without it, it would win
    rest = {"lower_colour": "black", "height_max_m": 1.25}
    for extra in ({}, {"embeddings": [person_vector(2).tolist()]}):
        result = search_tracklets(frame, None, query(description=rest, **extra))
        assert result.candidates[0].best_tracklet_id == blue.tracklet_id


def test_colour_contradictions_count_every_colour_asked():
    # red top with the wrong trousers against a blue top with the right ones: one each,
    # so the rest of the evidence decides
    a = make_tracklet(1, "cam1", upper="red", upper_conf=0.9, lower="white", height=1.2)
    b = make_tracklet(2, "cam2", upper="blue", upper_conf=0.9, lower="black", height=1.2)
    described = {"upper_colour": "red", "lower_colour": "black"}
    result = search_tracklets(frame_of(a, b), None, query(description=described))
    assert [c.colour_contradictions for c in result.candidates] == [1, 1]
