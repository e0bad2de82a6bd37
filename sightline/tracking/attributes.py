"""Person attributes from frames and boxes: clothing colours, crop quality, height.

Colours. A box's torso and leg regions (central bands of the box, placed from the body
proportions the simulator and real people share: the torso under the head and above
the bag line, the thighs under the hips) give a per-channel median sRGB colour. That
colour is named among :data:`COLOUR_NAMES`, the palette the whole system searches by,
with a generative lighting model: a camera sees ``albedo x brightness x channel gain``
plus noise, where brightness (exposure, vignetting, shading of the body) and the channel
gains (white balance) are unknown. In log-sRGB that is additive, so each named colour is
a Gaussian around ``log(brightness x reference)`` marginalised over a log-normal
brightness prior; the posterior over names is a real probability. The prior's spreads
were tuned on training sites (seeds 1001-1011 less 1007) and are not sensitive.

Occlusion. In a camera looking down at a ground plane, a person whose box reaches lower
in the image stands nearer, so pixels inside a box with a lower bottom edge belong to
that nearer person and are left out. An optional static background image (a per-camera
median of frames) further drops background pixels, mostly the gap between the legs.

Quality. :func:`crop_quality` scores a crop for embedding and for trusting its
attributes: large, unclipped by the image border, sharp and not overlapped by others.

Height. :func:`track_height` is the median over a track of
:func:`sightline.tracking.camera_model.heights_from_boxes`; one box's height is noisy
(box jitter, leg swing), a track's median is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sightline.evaluation.matching import box_iou
from sightline.sim.palette import CLOTHING_COLOURS
from sightline.tracking.camera_model import GroundCamera, heights_from_boxes

__all__ = [
    "COLOUR_NAMES",
    "LOWER_REGION",
    "UNKNOWN_COLOUR",
    "UPPER_REGION",
    "BoxRegion",
    "ColourGuess",
    "CropQuality",
    "LightingPrior",
    "aggregate_colours",
    "classify_colour",
    "colour_probabilities",
    "crop_quality",
    "crop_quality_batch",
    "region_pixels",
    "track_height",
    "upper_lower_colours",
]

COLOUR_NAMES: tuple[str, ...] = tuple(CLOTHING_COLOURS)
"""The clothing-colour vocabulary, in the order of every probability vector here."""

UNKNOWN_COLOUR = "unknown"
"""Name given when no pixel of the region could be used (occluded, outside the frame)."""

_REFERENCE_RGB = np.array([CLOTHING_COLOURS[n] for n in COLOUR_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class BoxRegion:
    """A rectangle inside a person box, as fractions of the box (0 = top / left edge)."""

    top: float
    bottom: float
    left: float
    right: float

    def pixel_bounds(self, box: np.ndarray) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` pixel bounds of the region in ``box`` (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        y0, x0 = round(y1 + self.top * h), round(x1 + self.left * w)
        return (
            y0,
            max(round(y1 + self.bottom * h), y0 + 1),
            x0,
            max(round(x1 + self.right * w), x0 + 1),
        )


# Head and hair end at ~0.13 of the box; a back-pack hangs from ~0.28 down; arms and
# background fill the box's sides. So the torso band sits between, in the middle.
UPPER_REGION = BoxRegion(top=0.18, bottom=0.30, left=0.30, right=0.70)
"""Torso band: under the head, above the bag line, clear of the arms."""
# Hips are at ~0.5 of the box and the torso capsule reaches below them; the band ends
# above the knees' narrowing and the shadow at the feet.
LOWER_REGION = BoxRegion(top=0.58, bottom=0.78, left=0.35, right=0.65)
"""Thigh band: under the torso, where both legs are widest."""


@dataclass(frozen=True)
class LightingPrior:
    """How cameras may render a colour: the spreads the colour classifier allows.

    ``brightness`` is the typical ratio of observed to reference sRGB (exposure x
    vignetting x body shading); ``brightness_log_sd`` its spread in log units: raising it
    lets dark and bright versions of a colour match (white vs grey vs black blur
    together), lowering it makes lightness decisive. ``channel_log_sd`` is the
    per-channel (white-balance) spread: raising it trusts hue less. ``noise_rgb`` is
    additive noise in sRGB levels: raising it makes dark colours' hue count for less.
    """

    brightness: float = 0.8
    brightness_log_sd: float = 0.3
    channel_log_sd: float = 0.08
    noise_rgb: float = 8.0
    steps: int = 21


def colour_probabilities(rgb: np.ndarray, prior: LightingPrior | None = None) -> np.ndarray:
    """Posterior over :data:`COLOUR_NAMES` of median sRGB colours ``(N, 3)``: ``(N, 11)``.

    Each name's likelihood is a Gaussian in log-sRGB around ``brightness x reference``,
    averaged over the brightness prior on a grid of ``prior.steps`` values (flat prior
    over names).
    """
    p = prior or LightingPrior()
    x = np.log(np.asarray(rgb, dtype=np.float64).reshape(-1, 3) + p.noise_rgb)
    log_k = np.log(p.brightness) + np.linspace(-3.0, 3.0, p.steps) * p.brightness_log_sd
    log_wk = -0.5 * ((log_k - np.log(p.brightness)) / p.brightness_log_sd) ** 2
    log_wk -= np.logaddexp.reduce(log_wk)
    seen = np.exp(log_k)[:, None, None] * _REFERENCE_RGB[None]  # (K, C, 3)
    mean = np.log(seen + p.noise_rgb)
    # additive noise of noise_rgb levels is noise_rgb / value in log units
    var = p.channel_log_sd**2 + (p.noise_rgb / (seen + p.noise_rgb)) ** 2
    d2 = (x[:, None, None, :] - mean[None]) ** 2 / var[None]
    loglik = -0.5 * (d2 + np.log(var)[None]).sum(axis=-1) + log_wk[None, :, None]
    loglik = np.logaddexp.reduce(loglik, axis=1)  # (N, C)
    loglik -= loglik.max(axis=1, keepdims=True)
    post = np.exp(loglik)
    return post / post.sum(axis=1, keepdims=True)


@dataclass(frozen=True, eq=False)
class ColourGuess:
    """A named colour with its probability.

    ``probabilities`` is over :data:`COLOUR_NAMES` and ``confidence`` is the named
    colour's share of it; ``rgb`` is the median sRGB it came from (None when none);
    ``support`` is the fraction of the region's pixels that were used, in [0, 1].
    """

    name: str
    confidence: float
    probabilities: np.ndarray
    rgb: tuple[float, float, float] | None = None
    support: float = 1.0

    @classmethod
    def unknown(cls) -> ColourGuess:
        """The guess for a region with no usable pixel: flat probabilities, confidence 0."""
        flat = np.full(len(COLOUR_NAMES), 1.0 / len(COLOUR_NAMES))
        return cls(UNKNOWN_COLOUR, 0.0, flat, None, 0.0)

    @classmethod
    def from_probabilities(
        cls, probabilities: np.ndarray, rgb: tuple[float, float, float] | None, support: float
    ) -> ColourGuess:
        """The most probable name of ``probabilities`` (over :data:`COLOUR_NAMES`)."""
        best = int(np.argmax(probabilities))
        return cls(COLOUR_NAMES[best], float(probabilities[best]), probabilities, rgb, support)


def classify_colour(
    rgb: np.ndarray | Sequence[float], support: float = 1.0, prior: LightingPrior | None = None
) -> ColourGuess:
    """Name one median sRGB colour (see :func:`colour_probabilities`)."""
    value = np.asarray(rgb, dtype=np.float64).reshape(3)
    probs = colour_probabilities(value[None], prior)[0]
    return ColourGuess.from_probabilities(probs, tuple(float(v) for v in value), support)


def _without_self(box: np.ndarray, others: np.ndarray | None, self_iou: float) -> np.ndarray:
    """``others`` (M, 4) less the boxes that are ``box`` itself (IoU >= ``self_iou``)."""
    if others is None or len(others) == 0:
        return np.zeros((0, 4))
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    return others[box_iou(box[None], others)[0] < self_iou]


def _covered(ys: np.ndarray, xs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(len(ys), len(xs))`` mask of the pixel grid points inside any of ``boxes``."""
    mask = np.zeros((len(ys), len(xs)), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        mask |= ((ys >= y1) & (ys <= y2))[:, None] & ((xs >= x1) & (xs <= x2))[None, :]
    return mask


def region_pixels(
    frame: np.ndarray,
    box: np.ndarray | Sequence[float],
    region: BoxRegion,
    others: np.ndarray | None = None,
    background: np.ndarray | None = None,
    *,
    foreground_threshold: float = 25.0,
    self_iou: float = 0.8,
) -> tuple[np.ndarray, float]:
    """The usable pixels ``(K, 3)`` of ``region`` of ``box`` and the fraction they make.

    Pixels outside the frame, and those inside any box of ``others`` that stands nearer
    (lower bottom edge), are left out; a box of ``others`` with IoU >= ``self_iou`` with
    ``box`` is taken for ``box`` itself. With ``background`` (an ``(H, W, 3)`` image of
    the empty scene) only pixels differing from it by more than ``foreground_threshold``
    levels in some channel are kept, unless that would leave under a tenth of them:
    raising the threshold drops more of the person with the background.
    """
    b = np.asarray(box, dtype=np.float64).reshape(4)
    y0, y1, x0, x1 = region.pixel_bounds(b)
    area = (y1 - y0) * (x1 - x0)
    fy0, fy1 = max(y0, 0), min(y1, frame.shape[0])
    fx0, fx1 = max(x0, 0), min(x1, frame.shape[1])
    if fy0 >= fy1 or fx0 >= fx1:
        return np.zeros((0, 3), dtype=frame.dtype), 0.0
    keep = np.ones((fy1 - fy0, fx1 - fx0), dtype=bool)
    others = _without_self(b, others, self_iou)
    nearer = others[others[:, 3] > b[3]]
    if len(nearer):
        centres_y = np.arange(fy0, fy1) + 0.5
        centres_x = np.arange(fx0, fx1) + 0.5
        keep &= ~_covered(centres_y, centres_x, nearer)
    pixels = frame[fy0:fy1, fx0:fx1]
    if background is not None:
        diff = np.abs(pixels.astype(np.int16) - background[fy0:fy1, fx0:fx1].astype(np.int16))
        moving = keep & (diff.max(axis=2) > foreground_threshold)
        if moving.sum() >= max(4, 0.1 * keep.sum()):
            keep = moving
    used = pixels[keep]
    return used, float(len(used) / area)


def upper_lower_colours(
    frame: np.ndarray,
    box: np.ndarray | Sequence[float],
    others: np.ndarray | None = None,
    background: np.ndarray | None = None,
    prior: LightingPrior | None = None,
    *,
    border_margin_px: float = 1.0,
) -> tuple[ColourGuess, ColourGuess]:
    """Colours of the upper (torso) and lower (legs) clothing of the person in ``box``.

    ``frame`` is ``(H, W, 3)`` uint8 RGB and ``box`` is x1, y1, x2, y2 pixels. Pass the
    frame's other person boxes as ``others`` to skip pixels of people in front, and a
    ``background`` image to skip the ground showing between the legs (see
    :func:`region_pixels`). A region with fewer than 4 usable pixels gives
    :meth:`ColourGuess.unknown`, and so does a region whose place is lost: a box whose
    top (bottom) edge lies on the frame's top (bottom) border, within
    ``border_margin_px``, is taken as cut there by the detector, so its fractions no
    longer say where the torso (legs) are. (An amodal box reaching beyond the border
    keeps its regions.)
    """
    b = np.asarray(box, dtype=np.float64).reshape(4)
    cut_top = abs(b[1]) <= border_margin_px
    cut_bottom = abs(b[3] - frame.shape[0]) <= border_margin_px
    guesses = []
    for region, cut in ((UPPER_REGION, cut_top), (LOWER_REGION, cut_bottom)):
        pixels, support = region_pixels(frame, b, region, others, background)
        if cut or len(pixels) < 4:
            guesses.append(ColourGuess.unknown())
            continue
        guesses.append(classify_colour(np.median(pixels, axis=0), support, prior))
    return guesses[0], guesses[1]


def aggregate_colours(
    guesses: Sequence[ColourGuess], weights: Sequence[float] | np.ndarray | None = None
) -> ColourGuess:
    """One colour for a track from per-frame guesses: a weighted soft vote.

    The result's probabilities are the mean of the frames' probabilities weighted by
    ``weights`` (for example crop quality) times each guess's ``support``; its
    confidence is the winning colour's share of the vote. Averaging probabilities rather
    than multiplying them keeps a few bad frames (an occluder, a bad box) from
    overruling many good ones. No usable guess gives :meth:`ColourGuess.unknown`.
    """
    if len(guesses) == 0:
        return ColourGuess.unknown()
    w = np.ones(len(guesses)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(guesses),):
        raise ValueError(f"weights: expected shape ({len(guesses)},), got {w.shape}")
    w = np.clip(w, 0.0, None) * np.array([g.support for g in guesses])
    if w.sum() <= 0.0:
        return ColourGuess.unknown()
    probs = np.stack([g.probabilities for g in guesses])
    mean = (w[:, None] * probs).sum(axis=0) / w.sum()
    rgbs = [(wi, g.rgb) for wi, g in zip(w, guesses, strict=True) if g.rgb is not None and wi > 0]
    rgb = None
    if rgbs:
        values = np.array([c for _, c in rgbs])
        rgb_w = np.array([wi for wi, _ in rgbs])
        rgb = tuple(float(v) for v in (rgb_w[:, None] * values).sum(axis=0) / rgb_w.sum())
    return ColourGuess.from_probabilities(mean, rgb, float(w.sum() / len(guesses)))


@dataclass(frozen=True)
class CropQuality:
    """How useful a person crop is, each part in [0, 1]; ``score`` is their product.

    ``size``: box height over the height counted as full size. ``inside``: fraction of
    the box inside the frame, halved when it touches the border (a detector clips boxes,
    so touching is the only sign of a person cut off). ``sharpness``: Laplacian variance
    ``v`` as ``v / (v + scale)``. ``unoccluded``: fraction of the box not covered by
    other boxes. ``visibility``: the caller's hint, 1 when none was given.
    """

    size: float
    inside: float
    sharpness: float
    unoccluded: float
    visibility: float

    @property
    def score(self) -> float:
        """Overall quality: the product of the parts."""
        return self.size * self.inside * self.sharpness * self.unoccluded * self.visibility


def _laplacian_variance(frame: np.ndarray, bounds: tuple[int, int, int, int]) -> float:
    """Variance of the 4-neighbour Laplacian of the grey crop (0 for tiny crops)."""
    y0, y1, x0, x1 = bounds
    grey = frame[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    return float(lap.var())


def crop_quality(
    frame: np.ndarray,
    box: np.ndarray | Sequence[float],
    others: np.ndarray | None = None,
    visibility_hint: float | None = None,
    *,
    full_height_px: float = 96.0,
    sharpness_scale: float = 60.0,
    border_margin_px: float = 1.0,
    self_iou: float = 0.8,
) -> CropQuality:
    """Score the crop of ``box`` in ``frame`` (see :class:`CropQuality`).

    ``others`` are the frame's other boxes (a box with IoU >= ``self_iou`` with ``box``
    is taken for itself). Raising ``full_height_px`` favours bigger crops more strongly;
    raising ``sharpness_scale`` penalises soft crops more; ``border_margin_px`` is how
    close to the frame edge counts as touching it.
    """
    b = np.asarray(box, dtype=np.float64).reshape(4)
    height_img, width_img = frame.shape[:2]
    w, h = max(b[2] - b[0], 1e-9), max(b[3] - b[1], 1e-9)
    ix0, iy0 = max(b[0], 0.0), max(b[1], 0.0)
    ix1, iy1 = min(b[2], float(width_img)), min(b[3], float(height_img))
    inside = max(ix1 - ix0, 0.0) * max(iy1 - iy0, 0.0) / (w * h)
    m = border_margin_px
    if b[0] <= m or b[1] <= m or b[2] >= width_img - m or b[3] >= height_img - m:
        inside *= 0.5
    bounds = (round(iy0), round(iy1), round(ix0), round(ix1))
    v = _laplacian_variance(frame, bounds)
    others = _without_self(b, others, self_iou)
    unoccluded = 1.0
    if len(others):
        # coverage of the union of the other boxes, sampled on a 16 x 32 grid
        xs = b[0] + (np.arange(16) + 0.5) / 16 * w
        ys = b[1] + (np.arange(32) + 0.5) / 32 * h
        unoccluded = 1.0 - float(_covered(ys, xs, others).mean())
    return CropQuality(
        size=float(min(h / full_height_px, 1.0)),
        inside=float(inside),
        sharpness=v / (v + sharpness_scale),
        unoccluded=unoccluded,
        visibility=1.0 if visibility_hint is None else float(np.clip(visibility_hint, 0.0, 1.0)),
    )


def crop_quality_batch(
    frame: np.ndarray, boxes: np.ndarray, others: np.ndarray | None = None
) -> np.ndarray:
    """:attr:`CropQuality.score` of each of ``boxes`` ``(N, 4)``, as ``(N,)``.

    ``others`` are all the frame's person boxes (they may include ``boxes`` themselves,
    which are recognised and skipped); None means ``boxes`` are all of them.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    everyone = boxes if others is None else np.asarray(others, dtype=np.float64).reshape(-1, 4)
    return np.array([crop_quality(frame, b, everyone).score for b in boxes], dtype=np.float64)


def track_height(boxes: np.ndarray, image_to_ground: np.ndarray, camera: GroundCamera) -> float:
    """Height in metres of the person of a track: the median over its ``(N, 4)`` boxes.

    ``nan`` when no box gives a finite height. Pass only boxes that show the whole
    person (not clipped by the frame border, not occluded at head or feet).
    """
    heights = heights_from_boxes(boxes, image_to_ground, camera)
    heights = heights[np.isfinite(heights)]
    return float(np.median(heights)) if len(heights) else float("nan")
