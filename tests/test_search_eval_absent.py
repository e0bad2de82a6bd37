"""Parts of ``sightline eval search`` that need no rendered site: the open-set check
(absent people, their interval and look-alikes, with a stand-in search) and the labelling
of identities with their true person."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest

from sightline.evaluation.search import (
    ABSENT_PEOPLE,
    _absent_scores,
    absent_person,
    absent_summary,
    majority_person,
)

WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}


def test_summary_counts_and_interval() -> None:
    accepted = [{"look_alike": True}] * 5 + [{"look_alike": False}]
    out = absent_summary(accepted, 50)
    assert out["refused"] == 44 and out["no_good_match"] == 0.88
    low, high = out["no_good_match_ci95"]
    assert low < 0.88 < high
    assert out["accepted_look_alikes"] == 5


def test_more_queries_narrow_the_interval() -> None:
    small = absent_summary([{"look_alike": False}] * 6, 50)["no_good_match_ci95"]
    large = absent_summary([{"look_alike": False}] * 24, 200)["no_good_match_ci95"]
    assert large[1] - large[0] < 0.6 * (small[1] - small[0])
    assert ABSENT_PEOPLE >= 200


def test_summary_needs_queries() -> None:
    with pytest.raises(ValueError, match="queries must be >= 1"):
        absent_summary([], 0)


def test_absent_scores_marks_look_alikes() -> None:
    """Query 0 is accepted with a candidate dressed like it, query 1 with one dressed
    otherwise, query 2 refused."""
    seed = 7
    first, second = absent_person(seed, 0)[0], absent_person(seed, 1)[0]
    other = "red" if second.upper != "red" else "blue"
    people = pl.DataFrame(
        {
            "person_id": [1, 2],
            "upper_colour": [first.upper, other],
            "lower_colour": [first.lower, second.lower],
        }
    )
    owner = {"g1": 1, "g2": 2}
    answers = iter(["g1", "g2", None])

    def run(query):
        key = next(answers)
        if key is None:
            return SimpleNamespace(no_good_match=True, candidates=[])
        good = SimpleNamespace(key=key, confidence=0.9, good_match=True)
        return SimpleNamespace(no_good_match=False, candidates=[good])

    out = _absent_scores(seed, 3, run, WINDOW, owner, people)
    assert out["refused"] == 1 and out["queries"] == 3
    assert [a["look_alike"] for a in out["accepted"]] == [True, False]
    assert [a["candidate_person"] for a in out["accepted"]] == [1, 2]
    assert out["accepted_look_alikes"] == 1


def test_identity_label_ties_go_to_the_lowest_person_id() -> None:
    votes = pl.DataFrame(
        {"key": ["a", "a", "a", "b", "b"], "person_id": [9, 3, 5, 4, 2], "frames": [7, 7, 2, 1, 6]}
    )
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        out = majority_person(votes[order]).sort("key")
        assert out["person_id"].to_list() == [3, 2]
        assert out["frames"].to_list() == [7, 6]
