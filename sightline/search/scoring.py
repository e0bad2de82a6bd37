"""Per-tracklet scores: appearance against the query's vectors, the description's fit,
and one calibrated confidence.

**Appearance.** Each stored sample of a tracklet (up to 8 embeddings of its best crops)
is compared with every query vector (photos, given embeddings, confirmed identities'
samples); a sample's similarity is its best cosine over the query vectors, and the
tracklet's is the mean of its :data:`TOP_K_SAMPLES` best samples. On the two validation
sites (seeds 1007 and 11, 20 people each; reference photos cropped by the detector,
ground-truth tracks as tracklets) the top-2 mean kept rank-1 at 40/40 like the maximum,
and at the default threshold refused 38 of 40 people left out of the footage against 37
with the maximum; the mean of all samples diluted the best views (seed 1007: true
matches' median cosine 0.78 against 0.81). One unlucky crop, or a crop of someone else after an
occlusion, no longer decides on its own.

**Calibration.** Photo vectors are first mapped into the cameras' embedding space
(:mod:`sightline.search.photo_adapter`). :class:`AppearanceCalibration` maps a cosine to
the odds of a match at even prior odds; the default is the photo calibration fitted by
``sightline train photo-adapter`` on the validation site's (photo, person) pairs
(:data:`DEFAULT_PHOTO_CALIBRATION`). A search compares the photo with every person in the
window, so the prior that a given candidate is the person is much lower: the confidence
is the posterior with prior :data:`SEARCH_PRIOR` (one in 40),
``logit(conf) = a s + b + logit(prior)``. The default open-set threshold
(:data:`~sightline.search.query.DEFAULT_MIN_CONFIDENCE`) was chosen on a tuning site;
``sightline eval search`` on held-out sites measures what it refuses and keeps.

**Description.** Each attribute asked for becomes the probability that it holds given
what the tracklet recorded: a colour from the stored name and its confidence (the share
of the colour posterior the name won, so ``P(colour = wanted)`` is the confidence for the
same name and the rest shared evenly otherwise; flat for ``unknown``), trusted to
:data:`COLOUR_TRUST`; a height range as ``P(lo <= H <= hi)`` under a Gaussian measurement
error of :data:`HEIGHT_SIGMA_M`; the child flag as ``P(H < CHILD_MAX_HEIGHT_M)``. Without a
photo the confidence is their product ("how likely this person fits the description",
not an identity probability). With a photo each attribute can only lower the appearance
confidence, by its probability relative to a perfect fit (the embedder already sees
clothing, so a fitting description adds little, a contradicting one says a lot).

**Child or adult from the photo.** Photos carry ``P(child)`` read from their proportions
(:mod:`sightline.models.builtin_child`); a tracklet's measured height gives its own
``P(child)``. :func:`photo_child_fit` is the chance the two agree relative to a perfect
agreement, and it lowers a photo query's confidence like a description attribute: a
child's photo no longer matches an adult in the same clothes. On tuning sites 41 and 42
(200 people never on the site each) it refused 385 of the 400 at the default threshold
against 380 without it, for 3 fewer correct first candidates called good matches (of
141): an adult measured near 1.45 m, or a child in a hat, is the price. Since the
tracklets record ``P(hat)``, heights are compared less :data:`HAT_HEIGHT_M` x ``P(hat)``.

**Colour means colour.** A recorded colour that is known and differs from the asked one
is a *contradiction*. Candidates are ranked first by their number of contradictions
(over every colour asked), then by confidence, so a "red top" search never ranks a blue
top above a red one, whatever the blue one's other scores (photo likeness, height,
colour confidence). With top and trousers both asked, a red top in the wrong trousers
and a blue top in the right ones contradict once each, and the rest decides. (Within
the colour term alone this also holds: the named colour's confidence is at least
``1/11``, which bounds every other colour's.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from scipy.special import expit, logit
from scipy.stats import norm

from sightline.fusion.calibration import DEFAULT_CALIBRATION, AppearanceCalibration
from sightline.search.photo_adapter import DEFAULT_PHOTO_ADAPTER
from sightline.search.query import Description, SearchQuery
from sightline.tracking.attributes import COLOUR_NAMES, UNKNOWN_COLOUR

__all__ = [
    "BAG_TRUST",
    "CHILD_MAX_HEIGHT_M",
    "COLOUR_TRUST",
    "DEFAULT_PHOTO_CALIBRATION",
    "HAT_HEIGHT_M",
    "HAT_TRUST",
    "HEIGHT_SIGMA_M",
    "SCORE_SCHEMA",
    "SEARCH_PRIOR",
    "TOP_K_SAMPLES",
    "SearchCalibration",
    "appearance_similarity",
    "child_probability",
    "colour_contradicts",
    "colour_probability",
    "describe",
    "height_probability",
    "photo_child_fit",
    "score_tracklets",
    "worn_probability",
]

DEFAULT_PHOTO_CALIBRATION = DEFAULT_PHOTO_ADAPTER.with_name("photo_calibration.json")
"""Cosine -> match odds for photo queries (adapted vectors against CCTV samples)."""

TOP_K_SAMPLES = 2
"""Best samples averaged per tracklet. 1 is the max (more false matches from one lucky
crop); 8 is the mean of all (dilutes the best views)."""

SEARCH_PRIOR = 1 / 40
"""Prior probability that one candidate is the sought person. Lowering it lowers every
confidence (a higher cosine is needed for the same confidence)."""

HEIGHT_SIGMA_M = 0.06
"""Height measurement error (sd). Measured median errors are 3-5 cm on held-out sites, a
Gaussian's median absolute error is 0.67 sd. Hats add about 8 cm (:data:`HAT_HEIGHT_M`,
taken off before heights are compared)."""

CHILD_MAX_HEIGHT_M = 1.45
"""Children are shorter, adults taller (the simulator's children are 1.0-1.4 m, adults
1.5 m and up)."""

COLOUR_TRUST = 0.95
"""Weight of the recorded colour against a flat guess (colour named right for 94-100%
of tracklets on held-out sites). Lowering it lets colour count for less."""

HAT_TRUST = 0.95
"""Weight of a tracklet's recorded ``P(hat)`` against a coin flip (see
:func:`worn_probability`). Fitted on validation site 1016 (log-loss of the truth per
person and camera on a 0.05 grid): 1.0 was best there (hats read right for 98 %), capped
like :data:`COLOUR_TRUST` because tracked crops are the detector's boxes, not the truth's."""

HAT_HEIGHT_M = 0.083
"""What a hat adds to a measured height. On validation site 1016, heights measured from
the ground-truth boxes as the tracklets measure them were 0.090 m above the truth
(median per person and camera) for the 43 with a hat and 0.007 m for the 190 without;
training site 1012 gave 0.094 and 0.009. Heights compared with a description or with a
photo's child-or-adult reading are the measured ones less ``HAT_HEIGHT_M x P(hat)``."""

BAG_TRUST = 0.8
"""The same for ``P(bag)``, fitted the same way: 0.8 was best (bags read right for 75 %
per person and camera; a backpack is hidden from a camera the person walks towards)."""

_ATTRIBUTE_FLOOR = 0.02  # a height far outside the range lowers, never zeroes, the fit
_UNKNOWN = 0.5  # a height that could not be measured: a coin flip
_N_COLOURS = len(COLOUR_NAMES)

SCORE_SCHEMA: dict[str, pl.DataType] = {
    "tracklet_id": pl.String(),
    "appearance_similarity": pl.Float64(),
    "appearance_probability": pl.Float64(),
    "description_match": pl.Float64(),
    "colour_contradictions": pl.Int32(),
    "confidence": pl.Float64(),
}
"""Columns of :func:`score_tracklets` (nulls where a part was not asked for)."""


@dataclass(frozen=True)
class SearchCalibration:
    """The constants that turn similarities and attributes into a confidence."""

    appearance: AppearanceCalibration
    prior: float = SEARCH_PRIOR
    top_k: int = TOP_K_SAMPLES
    height_sigma_m: float = HEIGHT_SIGMA_M
    child_max_height_m: float = CHILD_MAX_HEIGHT_M
    colour_trust: float = COLOUR_TRUST
    hat_trust: float = HAT_TRUST
    bag_trust: float = BAG_TRUST
    hat_height_m: float = HAT_HEIGHT_M

    def __post_init__(self) -> None:
        if not 0 < self.prior < 1:
            raise ValueError(f"prior must be in (0, 1), got {self.prior}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        for name in ("colour_trust", "hat_trust", "bag_trust"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.hat_height_m < 0:
            raise ValueError(f"hat_height_m must be >= 0, got {self.hat_height_m}")
        if self.height_sigma_m <= 0:
            raise ValueError(f"height_sigma_m must be > 0, got {self.height_sigma_m}")

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: float) -> SearchCalibration:
        """A calibration file (default: the committed photo calibration, fitted by
        ``sightline train photo-adapter`` for adapted photo vectors; the fusion's
        CCTV-pair calibration if that file is missing) with the default search constants."""
        if path is None:
            path = (
                DEFAULT_PHOTO_CALIBRATION
                if DEFAULT_PHOTO_CALIBRATION.is_file()
                else (DEFAULT_CALIBRATION)
            )
        return replace(cls(AppearanceCalibration.load(path)), **overrides)

    def appearance_probability(self, similarity: np.ndarray) -> np.ndarray:
        """Posterior that the tracklet is the person, per similarity (nan: the prior)."""
        s = np.asarray(similarity, dtype=np.float64)
        cal = self.appearance
        z = cal.slope * np.nan_to_num(s) + cal.intercept + logit(self.prior)
        return np.where(np.isnan(s), self.prior, expit(z))

    def similarity_at(self, confidence: float) -> float:
        """The cosine at which a photo-only candidate reaches ``confidence``."""
        cal = self.appearance
        return float((logit(confidence) - logit(self.prior) - cal.intercept) / cal.slope)


# --------------------------------------------------------------------------- appearance


def appearance_similarity(samples: pl.Series, query: np.ndarray, top_k: int) -> np.ndarray:
    """Per tracklet: the mean of the ``top_k`` best per-sample similarities, where a
    sample's similarity is its best cosine over the ``query`` vectors ``(Q, D)``.

    ``samples`` is the ``embeddings`` column (a list of vectors per tracklet); a tracklet
    without samples gets nan. A length mismatch with the query is a ``ValueError``.
    """
    lengths = samples.list.len().fill_null(0).to_numpy().astype(np.int64)
    out = np.full(len(lengths), np.nan)
    if lengths.sum() == 0 or len(query) == 0:
        return out
    vectors = samples.explode().drop_nulls()
    dims = vectors.list.len().unique().to_list()
    if dims != [query.shape[1]]:
        raise ValueError(
            f"embeddings: query vectors have {query.shape[1]} values, stored samples {dims}"
        )
    flat = vectors.explode().to_numpy().astype(np.float32).reshape(-1, query.shape[1])
    best = (flat @ query.T).max(axis=1).astype(np.float64)
    segment = np.repeat(np.arange(len(lengths)), lengths)
    order = np.lexsort((-best, segment))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rank = np.arange(len(order)) - starts[segment[order]]
    keep = order[rank < top_k]
    sums = np.bincount(segment[keep], weights=best[keep], minlength=len(lengths))
    counts = np.minimum(lengths, top_k)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    return out


# --------------------------------------------------------------------------- description


def _is_known(names: np.ndarray) -> np.ndarray:
    return np.array([n is not None and n != UNKNOWN_COLOUR for n in names], dtype=bool)


def colour_probability(
    names: np.ndarray, confidences: np.ndarray, wanted: str, trust: float = COLOUR_TRUST
) -> np.ndarray:
    """``P(colour = wanted)`` per tracklet from its recorded colour name and confidence.

    The named colour gets its confidence (at least ``1/11``: it won the vote), every other
    colour an even share of the rest; ``unknown`` (or null) is flat. The result is mixed
    with a flat guess: ``trust p + (1 - trust) / 11``.
    """
    names = np.asarray(names, dtype=object)
    conf = np.clip(np.nan_to_num(np.asarray(confidences, np.float64)), 1.0 / _N_COLOURS, 1.0)
    known = _is_known(names)
    same = np.array([n == wanted for n in names], dtype=bool)
    p = np.where(same, conf, (1.0 - conf) / (_N_COLOURS - 1))
    p = np.where(known, p, 1.0 / _N_COLOURS)
    return trust * p + (1.0 - trust) / _N_COLOURS


def colour_contradicts(names: np.ndarray, wanted: str) -> np.ndarray:
    """True where a known colour was recorded and it is not ``wanted``."""
    names = np.asarray(names, dtype=object)
    return _is_known(names) & np.array([n != wanted for n in names], dtype=bool)


def height_probability(
    heights: np.ndarray, low: float | None, high: float | None, sigma: float = HEIGHT_SIGMA_M
) -> np.ndarray:
    """``P(low <= true height <= high)`` per measured height (0.5 where not measured)."""
    h = np.asarray(heights, dtype=np.float64)
    upper = norm.cdf((high - h) / sigma) if high is not None else 1.0
    lower = norm.cdf((low - h) / sigma) if low is not None else 0.0
    p = np.asarray(upper - lower, dtype=np.float64) * np.ones_like(h)
    return np.where(np.isfinite(h), p, _UNKNOWN)


def child_probability(
    heights: np.ndarray,
    child: bool,
    threshold: float = CHILD_MAX_HEIGHT_M,
    sigma: float = HEIGHT_SIGMA_M,
) -> np.ndarray:
    """``P(child)`` (or ``P(adult)`` for ``child=False``) from the height (0.5 unmeasured)."""
    p = height_probability(heights, None, threshold, sigma)
    return p if child else np.where(np.isfinite(heights), 1.0 - p, _UNKNOWN)


def photo_child_fit(
    heights: np.ndarray,
    photo_child: float,
    threshold: float = CHILD_MAX_HEIGHT_M,
    sigma: float = HEIGHT_SIGMA_M,
) -> np.ndarray:
    """Per measured height: ``P(photo and tracklet agree on child or adult)`` over the
    best possible agreement ``max(p, 1 - p)``, floored like a description attribute;
    1 where the height was not measured (no evidence either way)."""
    h = np.asarray(heights, dtype=np.float64)
    p = float(photo_child)
    q = child_probability(h, True, threshold, sigma)
    agree = p * q + (1.0 - p) * (1.0 - q)
    fit = _ATTRIBUTE_FLOOR + (1.0 - _ATTRIBUTE_FLOOR) * agree / max(p, 1.0 - p)
    return np.where(np.isfinite(h), fit, 1.0)


def worn_probability(recorded: np.ndarray, wanted: bool, trust: float) -> np.ndarray:
    """``P(has the item) == wanted`` per tracklet from its recorded ``P(item)`` (nan where
    not recorded: a coin flip), trusted to ``trust``: ``trust q + (1 - trust) / 2``."""
    p = np.asarray(recorded, dtype=np.float64)
    q = np.where(np.isfinite(p), p, _UNKNOWN)
    return trust * (q if wanted else 1.0 - q) + (1.0 - trust) * _UNKNOWN


def _heights(frame: pl.DataFrame, hat_height_m: float = HAT_HEIGHT_M) -> np.ndarray:
    """The tracklets' measured heights less the hat they probably wear
    (``hat_height_m x P(hat)``, nothing where no hat was read); nan where not measured."""
    heights = frame["height_m"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    if "hat_probability" not in frame.columns:
        return heights
    hat = frame["hat_probability"].cast(pl.Float64).fill_null(0.0).to_numpy()
    return heights - hat_height_m * hat


def describe(
    frame: pl.DataFrame, description: Description, calibration: SearchCalibration
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tracklet: the description's fit (product of attribute probabilities), the fit
    relative to a perfect one (for photo queries), and the number of colour
    contradictions."""
    cal = calibration
    heights = _heights(frame, cal.hat_height_m)
    parts: list[tuple[np.ndarray, float]] = []  # (probability, best possible)
    contradictions = np.zeros(frame.height, np.int32)
    for region, wanted in description.colours.items():
        names = frame[f"{region}_colour"].to_numpy()
        conf = frame[f"{region}_colour_confidence"].cast(pl.Float64).to_numpy()
        best = cal.colour_trust + (1.0 - cal.colour_trust) / _N_COLOURS
        parts.append((colour_probability(names, conf, wanted, cal.colour_trust), best))
        contradictions += colour_contradicts(names, wanted)
    if description.height_min_m is not None or description.height_max_m is not None:
        lo, hi = description.height_min_m, description.height_max_m
        fit = height_probability(heights, lo, hi, cal.height_sigma_m)
        parts.append((_ATTRIBUTE_FLOOR + (1 - _ATTRIBUTE_FLOOR) * fit, 1.0))
    if description.child is not None:
        fit = child_probability(
            heights, description.child, cal.child_max_height_m, cal.height_sigma_m
        )
        parts.append((_ATTRIBUTE_FLOOR + (1 - _ATTRIBUTE_FLOOR) * fit, 1.0))
    for item, trust in (("hat", cal.hat_trust), ("bag", cal.bag_trust)):
        wanted = getattr(description, item)
        if wanted is not None:
            recorded = frame[f"{item}_probability"].cast(pl.Float64).fill_null(np.nan)
            best = trust + (1.0 - trust) * _UNKNOWN
            parts.append((worn_probability(recorded.to_numpy(), wanted, trust), best))
    match = np.ones(frame.height)
    relative = np.ones(frame.height)
    for p, best in parts:
        match *= p
        relative *= p / best
    return match, relative, contradictions


# --------------------------------------------------------------------------- together


def score_tracklets(
    frame: pl.DataFrame, query: SearchQuery, calibration: SearchCalibration
) -> pl.DataFrame:
    """:data:`SCORE_SCHEMA` rows, one per row of ``frame``, in its order.

    ``query`` must have its photos embedded already
    (:func:`sightline.search.photos.embed_query`).
    """
    if query.needs_embedding:
        raise ValueError("the query's photos are not embedded yet (see photos.embed_query)")
    n = frame.height
    vectors = query.query_vectors()
    similarity = probability = None
    confidence = np.ones(n)
    if len(vectors):
        similarity = appearance_similarity(frame["embeddings"], vectors, calibration.top_k)
        probability = calibration.appearance_probability(similarity)
        confidence = probability.copy()
        if query.photo_child is not None:
            confidence *= photo_child_fit(
                _heights(frame, calibration.hat_height_m),
                query.photo_child,
                calibration.child_max_height_m,
                calibration.height_sigma_m,
            )
    match = None
    contradictions = np.zeros(n, np.int32)
    if query.description is not None:
        match, relative, contradictions = describe(frame, query.description, calibration)
        confidence = confidence * relative if len(vectors) else match
    return pl.DataFrame(
        {
            "tracklet_id": frame["tracklet_id"],
            "appearance_similarity": similarity,
            "appearance_probability": probability,
            "description_match": match,
            "colour_contradictions": contradictions,
            "confidence": confidence,
        },
        schema=SCORE_SCHEMA,
    ).with_columns(pl.col("appearance_similarity").fill_nan(None))
