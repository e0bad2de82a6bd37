"""Reference photos -> person crops -> embeddings, with the injected models.

A family's photo is not a CCTV crop: the person is large, centred, on another
background. The embedder was trained on tight person boxes from a detector, so a photo is
cropped to the person first. CCTV-trained detectors find body parts, not the person, in
a close photo; :func:`person_box` therefore shows the detector the photo shrunk onto a
camera-sized canvas at a few CCTV-like scales (:data:`CANVAS_SCALES`) and keeps the
best box. Without a detector the whole photo is embedded and the result says so: on the
validation sites (seeds 1007 and 11) uncropped photos ranked the right person first 37
times in 40 (cropped: 40), and only 8 of 40 reached the default confidence threshold
(cropped: 39).

**Child or adult.** A cropped photo is also read for ``P(child)`` (the built-in
:class:`~sightline.models.builtin_child.ChildReader` unless another ``read_child`` is
given): the query carries it as ``photo_child`` and search weighs each candidate's
measured height against it (:func:`sightline.search.scoring.photo_child_fit`). An
uncropped photo is not read: the reader learned from person crops.

The models are injected as plain callables so the Ray Serve deployments can stand in
later: ``embed(crops) -> (N, D)`` (as :meth:`EmbedderBackend.embed`) and
``detect(frames) -> list[Detections]`` (as :meth:`DetectorBackend.detect`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from sightline.models.core import Detections
from sightline.tracking.tracklets import crop_box

if TYPE_CHECKING:
    from sightline.search.photo_adapter import PhotoAdapter
    from sightline.search.query import SearchQuery

__all__ = [
    "CANVAS_SCALES",
    "CANVAS_SIZE",
    "MAX_PHOTOS",
    "MAX_PHOTO_BYTES",
    "MAX_PHOTO_PIXELS",
    "Detect",
    "Embed",
    "PhotoEmbeddings",
    "ReadChild",
    "decode_photo",
    "embed_photos",
    "embed_query",
    "encode_photo",
    "person_box",
    "read_child_builtin",
]

Embed = Callable[[list[np.ndarray]], np.ndarray]
"""Person crops ``(h, w, 3) uint8`` -> ``(N, D)`` L2-normalised vectors."""
Detect = Callable[[np.ndarray], list[Detections]]
"""Frames ``(N, H, W, 3) uint8`` -> one :class:`Detections` per frame."""
ReadChild = Callable[[list[np.ndarray]], np.ndarray]
"""Person crops ``(h, w, 3) uint8`` -> ``P(child)`` per crop."""

MAX_PHOTOS = 8
MAX_PHOTO_BYTES = 10 * 2**20
MAX_PHOTO_PIXELS = 40_000_000
_MIN_SIDE = 16

CANVAS_SIZE = (360, 640)
"""(height, width) of the camera-like canvas the detector sees a photo on."""
CANVAS_SCALES = (0.3, 0.45)
"""Photo heights tried, as fractions of the canvas height (CCTV people are small).

Larger is worse, not safer: at 0.6 the person stands about 170 px tall, taller than the
detector ever saw on a camera, and it boxes a leg, an arm or the torso with a higher
score than the whole person. With (0.3, 0.45, 0.6) 34 of the 320 reference photos of
tuning sites 31, 41, 42 and 47 were cropped to a body part (box under 0.6 of the photo's
height), none with (0.3, 0.45); photo-search rank-1 rose from 0.917 to 0.958 (seed 41)
and from 0.855 to 0.913 (seed 42)."""


def decode_photo(data: bytes, name: str = "photo") -> np.ndarray:
    """An encoded image file as ``(H, W, 3) uint8`` RGB; a ``ValueError`` naming ``name``
    when it is not bytes, too large, not an image, or too small."""
    if not isinstance(data, bytes | bytearray):
        raise ValueError(f"{name}: expected an encoded image file, got {type(data).__name__}")
    if len(data) > MAX_PHOTO_BYTES:
        raise ValueError(f"{name}: {len(data)} bytes, more than {MAX_PHOTO_BYTES} allowed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PHOTO_PIXELS:
                raise ValueError(
                    f"{name}: {image.width}x{image.height} pixels, more than "
                    f"{MAX_PHOTO_PIXELS} allowed"
                )
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{name}: not a readable image file ({exc})") from None
    if min(pixels.shape[:2]) < _MIN_SIDE:
        raise ValueError(f"{name}: {pixels.shape[1]}x{pixels.shape[0]} pixels is too small")
    return np.ascontiguousarray(pixels)


def encode_photo(image: np.ndarray) -> bytes:
    """An ``(H, W, 3) uint8`` RGB image as PNG bytes (what :class:`SearchQuery` takes)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _on_canvas(photo: np.ndarray, scale: float) -> tuple[np.ndarray, float, int, int]:
    """``photo`` resized to ``scale`` x canvas height, centred on a canvas filled with the
    photo's border colour; returns the canvas, the resize factor and the offsets."""
    height, width = CANVAS_SIZE
    factor = min(scale * height / photo.shape[0], 0.95 * width / photo.shape[1])
    size = (max(1, round(photo.shape[1] * factor)), max(1, round(photo.shape[0] * factor)))
    small = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BILINEAR))
    border = np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]])
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = np.median(border, axis=0).astype(np.uint8)
    oy, ox = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
    return canvas, factor, ox, oy


def person_box(photo: np.ndarray, detect: Detect) -> tuple[np.ndarray, float] | None:
    """The person's box ``(x1, y1, x2, y2)`` in ``photo`` pixels and its score, or None.

    The photo is shown to ``detect`` at each of :data:`CANVAS_SCALES` on a
    :data:`CANVAS_SIZE` canvas; the highest-scoring box of any scale wins.
    """
    canvases = [_on_canvas(photo, s) for s in CANVAS_SCALES]
    found = detect(np.stack([c for c, *_ in canvases]))
    best: tuple[np.ndarray, float] | None = None
    for (_, factor, ox, oy), dets in zip(canvases, found, strict=True):
        if len(dets) == 0:
            continue
        box = (dets.xyxy[0].astype(np.float64) - [ox, oy, ox, oy]) / factor
        if best is None or float(dets.scores[0]) > best[1]:
            best = (box, float(dets.scores[0]))
    return best


def read_child_builtin(crops: list[np.ndarray]) -> np.ndarray:
    """``P(child)`` per person crop from the committed child reader (loaded on first use)."""
    from sightline.models.builtin_child import builtin_child_reader

    return builtin_child_reader()(crops)


@dataclass(frozen=True)
class PhotoEmbeddings:
    """Embeddings of reference photos: ``vectors`` ``(N, D)``, the box each was cropped to
    (None: the whole photo), notes for the analyst, and ``P(child)`` per photo (None: not
    read)."""

    vectors: np.ndarray
    boxes: list[np.ndarray | None]
    warnings: list[str] = field(default_factory=list)
    child: list[float | None] = field(default_factory=list)

    @property
    def child_probability(self) -> float | None:
        """The mean ``P(child)`` of the photos that were read (None if none was)."""
        read = [p for p in self.child if p is not None]
        return float(np.mean(read)) if read else None


def embed_photos(
    photos: Sequence[np.ndarray],
    embed: Embed,
    detect: Detect | None = None,
    adapter: PhotoAdapter | None = None,
    read_child: ReadChild | None = None,
) -> PhotoEmbeddings:
    """Crop each photo to its person (when ``detect`` is given) and embed the crops;
    ``adapter`` maps the vectors into the cameras' embedding space
    (:mod:`sightline.search.photo_adapter`); ``read_child`` reads ``P(child)`` from the
    crops (photos that could not be cropped are not read)."""
    crops, boxes, notes = [], [], []
    for i, photo in enumerate(photos):
        found = person_box(photo, detect) if detect is not None else None
        if found is None:
            why = "no detector given" if detect is None else "no person found"
            notes.append(f"photo {i}: {why}, the whole photo was embedded (less accurate)")
            crops.append(np.ascontiguousarray(photo))
            boxes.append(None)
            continue
        crops.append(crop_box(photo, found[0]))
        boxes.append(found[0])
    vectors = np.asarray(embed(crops), dtype=np.float32) if crops else np.zeros((0, 0))
    if len(vectors) != len(crops):
        raise ValueError(f"embed returned {len(vectors)} vectors for {len(crops)} crops")
    if adapter is not None and len(vectors):
        vectors = adapter.apply(vectors)
    child: list[float | None] = [None] * len(crops)
    cropped = [i for i, box in enumerate(boxes) if box is not None]
    if read_child is not None and cropped:
        read = np.asarray(read_child([crops[i] for i in cropped]), dtype=np.float64)
        if read.shape != (len(cropped),) or not np.all((read >= 0) & (read <= 1)):
            raise ValueError(
                f"read_child returned {read.shape} values for {len(cropped)} crops; "
                "expected one probability in [0, 1] per crop"
            )
        for i, p in zip(cropped, read.tolist(), strict=True):
            child[i] = p
    return PhotoEmbeddings(vectors, boxes, notes, child)


def embed_query(
    query: SearchQuery,
    embed: Embed | None,
    detect: Detect | None = None,
    adapter: PhotoAdapter | None = None,
    read_child: ReadChild | None = read_child_builtin,
) -> SearchQuery:
    """``query`` with its photos embedded (see :func:`embed_photos`): their vectors join
    ``embeddings``, the photos are dropped, any notes go to ``photo_warnings`` and the
    photos' ``P(child)`` (the built-in reader by default; None turns it off) to
    ``photo_child``. A query without photos is returned as is; photos without ``embed``
    are an error (the search cannot use them)."""
    if not query.photos:
        return query
    if embed is None:
        raise ValueError(
            f"the query has {len(query.photos)} photo(s): pass embed= (an embedder) to use them"
        )
    images = [decode_photo(data, f"photo {i}") for i, data in enumerate(query.photos)]
    result = embed_photos(images, embed, detect, adapter, read_child)
    child = result.child_probability
    return query.updated(
        photos=[],
        embeddings=[*query.embeddings, *result.vectors.tolist()],
        photo_warnings=[*query.photo_warnings, *result.warnings],
        photo_child=child if child is not None else query.photo_child,
    )
