"""The search evaluation's own arithmetic (the evaluation itself is `sightline eval search`)."""

from __future__ import annotations

import pytest

from sightline.evaluation.search import average_precision


@pytest.mark.parametrize(
    ("relevant", "n_relevant", "expected"),
    [
        ([True, False, False], 1, 1.0),
        ([False, True], 1, 0.5),
        ([True, False, True], 2, (1 + 2 / 3) / 2),
        ([False, False], 1, 0.0),
        ([True], 2, 0.5),  # a relevant identity never returned counts as missed
        ([], 0, 0.0),
    ],
)
def test_average_precision(relevant, n_relevant, expected):
    assert average_precision(relevant, n_relevant) == pytest.approx(expected)
