"""The child-or-adult cue of reference photos: the reader, the height fit, the scoring."""

from __future__ import annotations

import numpy as np
import pytest

from sightline.models.builtin_child import ChildReader, builtin_child_reader
from sightline.search import SearchQuery, embed_photos, embed_query, encode_photo, person_box
from sightline.search.query import Description, SearchQueryError
from sightline.search.scoring import SearchCalibration, photo_child_fit, score_tracklets
from sightline.sim.people import random_appearance
from sightline.sim.reference import render_reference
from sightline.tracking.tracklets import crop_box
from tests.test_search_helpers import frame_of, make_tracklet, person_vector, query
from tests.test_search_photos import fake_detect, fake_embed, photo


@pytest.mark.parametrize(
    ("p_child", "agreeing", "contradicting"),
    [(0.99, 1.15, 1.78), (0.01, 1.78, 1.15), (0.9, 1.3, 1.6), (0.1, 1.6, 1.3)],
)
def test_a_height_that_contradicts_the_photo_lowers_the_fit(p_child, agreeing, contradicting):
    fit = photo_child_fit(np.array([agreeing, contradicting]), p_child)
    assert fit[0] > 0.95
    assert fit[1] < 0.25
    assert np.all((fit > 0) & (fit <= 1))


def test_an_undecided_photo_or_an_unmeasured_height_is_no_evidence():
    np.testing.assert_allclose(photo_child_fit(np.array([1.1, 1.45, 1.9]), 0.5), 1.0)
    np.testing.assert_allclose(photo_child_fit(np.array([np.nan]), 0.99), 1.0)


def _short_and_tall() -> list:
    same = np.tile(person_vector(1), (3, 1))
    return [
        make_tracklet(1, "cam1", height=1.2, embeddings=same),
        make_tracklet(2, "cam2", height=1.75, embeddings=same),
    ]


@pytest.mark.parametrize(("p_child", "higher"), [(0.99, 0), (0.01, 1)])
def test_a_photo_query_ranks_the_height_that_fits_the_photo_higher(p_child, higher):
    frame = frame_of(*_short_and_tall())
    cal = SearchCalibration.load()
    plain = score_tracklets(frame, query(embeddings=[person_vector(1).tolist()]), cal)
    read = score_tracklets(
        frame, query(embeddings=[person_vector(1).tolist()], photo_child=p_child), cal
    )
    before, after = plain["confidence"].to_numpy(), read["confidence"].to_numpy()
    assert before[0] == pytest.approx(before[1])
    assert after[higher] == pytest.approx(before[higher], rel=0.02)
    assert after[1 - higher] < 0.3 * before[1 - higher]
    # the appearance probability itself is untouched: only the confidence weighs height
    np.testing.assert_allclose(read["appearance_probability"], plain["appearance_probability"])


def test_photo_child_without_photo_vectors_changes_nothing():
    frame = frame_of(*_short_and_tall())
    cal = SearchCalibration.load()
    described = Description(upper_colour="red")
    plain = score_tracklets(frame, query(description=described), cal)
    read = score_tracklets(frame, query(description=described, photo_child=0.99), cal)
    np.testing.assert_allclose(read["confidence"], plain["confidence"])


def test_only_cropped_photos_are_read_and_their_mean_is_kept():
    blank = np.full((100, 60, 3), 90, np.uint8)
    seen: list[tuple[int, ...]] = []

    def read(crops):
        seen.extend(c.shape for c in crops)
        return np.full(len(crops), 0.8)

    result = embed_photos([photo(), blank, photo()], fake_embed, fake_detect, read_child=read)
    assert result.child == [0.8, None, 0.8]
    assert result.child_probability == pytest.approx(0.8)
    assert len(seen) == 2 and all(shape[0] > shape[1] for shape in seen)  # person crops
    assert embed_photos([blank], fake_embed, fake_detect, read_child=read).child_probability is None


def test_embed_query_carries_photo_child_and_none_turns_the_reader_off():
    base = query(photos=[encode_photo(photo())])
    read = embed_query(base, fake_embed, fake_detect, read_child=lambda c: np.full(len(c), 0.3))
    assert read.photo_child == pytest.approx(0.3)
    off = embed_query(base, fake_embed, fake_detect, read_child=None)
    assert off.photo_child is None and off.embeddings == read.embeddings


@pytest.mark.parametrize("output", [np.array([0.5, 0.5]), np.array([1.5]), np.array([[0.5]])])
def test_a_reader_answering_wrongly_is_an_error(output):
    with pytest.raises(ValueError, match="read_child returned"):
        embed_photos([photo()], fake_embed, fake_detect, read_child=lambda _: output)


@pytest.mark.parametrize("value", [-0.1, 1.5, "child"])
def test_photo_child_outside_zero_one_is_refused_by_name(value):
    with pytest.raises(SearchQueryError, match="photo_child"):
        SearchQuery.parse(
            {
                "case_id": "c",
                "reason": "r",
                "start": 0,
                "end": 1,
                "embeddings": [[1.0, 0.0]],
                "photo_child": value,
            }
        )


def test_missing_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="sightline train photo-child"):
        ChildReader.load(tmp_path / "none.pt")


def test_the_builtin_reader_tells_children_from_adults_in_unseen_photos():
    """Photos of people drawn from a stream neither training nor validation used."""
    from sightline.config import BuiltinDetectorConfig
    from sightline.models.registry import build_detector

    detect = build_detector(BuiltinDetectorConfig(), prefer_gpu=False).detect
    crops, truth = [], []
    for i in range(12):
        rng = np.random.default_rng([7002, i])
        image = render_reference(random_appearance(rng, i % 2 == 1), rng)
        box, _ = person_box(image, detect)
        crops.append(crop_box(image, box))
        truth.append(i % 2 == 1)
    p = builtin_child_reader()(crops)
    assert p.shape == (12,)
    assert list(p > 0.5) == truth


def test_training_writes_weights_the_reader_loads(tmp_path):
    """A few photos and one epoch: the file, its metadata and the reader round-trip (the
    committed weights come from `sightline train photo-child`, 2400 photos, 15 epochs)."""
    from sightline.training.photo_child import train_photo_child

    out = tmp_path / "child.pt"
    summary = train_photo_child(out=out, photos=4, validation_photos=2, epochs=1)
    assert summary["weights"] == str(out) and summary["train_photos"] == 4
    assert set(summary["validation"]) >= {"accuracy", "nll", "children_read_as_adults"}
    reader = ChildReader.load(out)
    assert reader.meta["validation"] == summary["validation"]
    assert reader([np.zeros((40, 20, 3), np.uint8)]).shape == (1,)


def test_bad_training_sizes_are_refused_by_name():
    from sightline.training.photo_child import train_photo_child

    with pytest.raises(ValueError, match="epochs >= 1"):
        train_photo_child(epochs=0)


def test_cli_refuses_zero_epochs_before_rendering(tmp_path, capsys):
    from sightline.cli import main

    out = tmp_path / "child.pt"
    assert main(["train", "photo-child", "--iterations", "0", "--out", str(out)]) == 2
    assert "epochs >= 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("p_child", "said"), [(0.97, "a child (P(child) 0.97)"), (0.02, "an adult")]
)
def test_the_result_says_how_the_photos_were_read_and_ranks_by_it(p_child, said):
    from sightline.search import search_tracklets
    from tests.test_search_helpers import identities_of

    short, tall = _short_and_tall()
    ids = identities_of({short.tracklet_id: "g-short", tall.tracklet_id: "g-tall"})
    result = search_tracklets(
        frame_of(short, tall),
        ids,
        query(embeddings=[person_vector(1).tolist()], photo_child=p_child),
    )
    assert [n for n in result.warnings if "the photos read as" in n] == [
        next(n for n in result.warnings if said in n)
    ]
    assert result.candidates[0].global_id == ("g-short" if p_child > 0.5 else "g-tall")
