"""The search query: required case and reason, palette colours, times, vectors, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError

from sightline.search import Description, SearchQuery, SearchQueryError
from sightline.search.photos import encode_photo
from tests.test_search_helpers import T0, query

BASE = {"case_id": "c1", "reason": "missing", "start": T0, "end": T0 + 60}


def errors_of(**fields: object) -> list[tuple[str, str]]:
    """(field path, message) of every problem of a query with ``fields`` over BASE."""
    data = {**BASE, "description": {"upper_colour": "red"}, **fields}
    with pytest.raises(ValidationError) as info:
        SearchQuery.model_validate({k: v for k, v in data.items() if v is not ...})
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"case_id": ...}, "case_id"),
        ({"reason": ...}, "reason"),
        ({"case_id": ""}, "case_id"),
        ({"reason": "   "}, "reason"),
        ({"case_id": None}, "case_id"),
    ],
)
def test_case_id_and_reason_are_required(fields, field):
    errors = errors_of(**fields)
    assert [loc for loc, _ in errors] == [field]
    assert "required" in errors[0][1] and "case" in errors[0][1]


def test_parse_lists_every_problem_naming_fields():
    with pytest.raises(SearchQueryError) as info:
        SearchQuery.parse({"start": T0, "end": T0 + 1, "description": {"upper_colour": "teal"}})
    text = str(info.value)
    assert "search query: case_id:" in text and "search query: reason:" in text
    assert "description.upper_colour" in text and "teal" in text


def test_unknown_colour_names_the_valid_ones():
    (loc, msg), *_ = errors_of(description={"lower_colour": "Turquoise"})
    assert loc == "description.lower_colour"
    assert "'Turquoise'" in msg and "red, orange, yellow" in msg and "grey" in msg


def test_colour_names_are_normalised():
    d = Description(upper_colour=" Red ", lower_colour="BLUE")
    assert d.colours == {"upper": "red", "lower": "blue"}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"description": {"height_min_m": 1.6, "height_max_m": 1.2}}, "description", "above"),
        ({"description": {}}, "description", "at least one"),
        ({"description": {"height_min_m": 3.5}}, "description.height_min_m", "2.5"),
        ({"end": T0 - 10}, "", "before start"),
        ({"description": None}, "", "something to look for"),
        ({"confirmed": ["g1"], "rejected": ["g1"]}, "", "both confirmed and rejected"),
        ({"embeddings": [[1.0, 0.0], [1.0]]}, "embeddings", "differ in length"),
        ({"embeddings": [[0.0, 0.0]]}, "embeddings", "all zeros"),
        ({"embeddings": [[float("nan"), 1.0]]}, "embeddings", "nan"),
        ({"area": [(0, 0), (1, 1), (1, 0), (0, 1)]}, "area", "not a simple polygon"),
        ({"area": [(0, 0), (1, 1)]}, "area", "at least 3"),
        ({"cameras": []}, "cameras", "at least 1"),
        ({"max_candidates": 0}, "max_candidates", "greater than or equal to 1"),
        ({"min_confidence": 1.5}, "min_confidence", "less than or equal to 1"),
        ({"last_seen": {"x": 0, "y": 0, "time": T0, "max_speed_mps": 0}}, "last_seen", "greater"),
        ({"photos": [b"not an image"]}, "photos", "photo 0: not a readable image"),
        ({"camera": ["cam1"]}, "camera", "Extra inputs are not permitted"),
    ],
)
def test_bad_queries_are_refused_naming_the_field(fields, field, words):
    errors = errors_of(**fields)
    assert any(loc.startswith(field) and words in msg for loc, msg in errors), errors


def test_times_are_aware_utc_whatever_the_input():
    cet = timezone(timedelta(hours=1))
    q = SearchQuery(
        case_id="c",
        reason="r",
        start="2024-05-01T14:00:00",
        end=datetime(2024, 5, 1, 16, 0, tzinfo=cet),
        description=Description(child=True),
        last_seen={"x": 1, "y": 2, "time": T0},
    )
    assert q.start == datetime(2024, 5, 1, 14, 0, tzinfo=UTC)
    assert q.end == datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
    assert q.last_seen.time == datetime.fromtimestamp(T0, UTC)
    assert q.last_seen.max_speed_mps == 2.0


def test_hat_and_bag_are_accessories_either_way():
    assert Description(upper_colour="red", bag=True, hat=False).accessories == ["hat", "bag"]
    assert Description(hat=False).accessories == ["hat"]
    assert Description(upper_colour="red").accessories == []


def test_query_vectors_are_normalised_and_include_the_expansion():
    q = query(embeddings=[[3.0, 4.0]], expansion={"g1": [[0.0, 2.0], [1.0, 0.0]]})
    np.testing.assert_allclose(q.query_vectors(), [[0.6, 0.8], [0, 1], [1, 0]], atol=1e-6)
    assert query(description={"child": True}).query_vectors().shape == (0, 0)


def test_expansion_must_match_the_embeddings_length():
    errors = errors_of(embeddings=[[1.0, 0.0]], expansion={"g": [[1.0, 0.0, 0.0]]})
    assert any("differ in length" in msg for _, msg in errors)


def test_json_round_trip_with_photos_as_base64():
    photo = encode_photo(np.full((20, 20, 3), 128, np.uint8))
    q = query(photos=[photo], requested_by="analyst-7")
    text = q.model_dump_json()
    assert json.loads(text)["photos"][0] != photo.decode("latin-1")
    back = SearchQuery.model_validate_json(text)
    assert back == q and back.photos == [photo] and back.needs_embedding
    assert back.audit == {
        "case_id": "case-1",
        "reason": "missing child",
        "requested_by": "analyst-7",
    }


def test_updated_revalidates():
    q = query(description={"upper_colour": "red"})
    with pytest.raises(ValidationError, match="case_id"):
        q.updated(case_id="")
    assert q.updated(max_candidates=5).max_candidates == 5
