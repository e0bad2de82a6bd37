"""Read frames, boxes and person crops of a rendered synthetic site for training and eval."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import polars as pl
import torch
import torch.nn.functional as F  # noqa: N812

__all__ = [
    "PHOTO_CAMERA",
    "DetectionSamples",
    "ReidCrops",
    "concat_crops",
    "load_detection_samples",
    "load_reference_crops",
    "load_reid_crops",
    "read_frames",
    "resize_frames",
]

PHOTO_CAMERA = "photo"
"""The camera id reference-photo crops carry in :class:`ReidCrops`."""


def read_frames(video: Path, keep: set[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 frame) for every frame of ``video`` (or those in ``keep``)."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if keep is None or index in keep:
                yield index, frame.to_ndarray(format="rgb24")


def resize_frames(frames: np.ndarray, width: int) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 resized to ``width`` the way the built-in detector does it."""
    t = torch.as_tensor(frames).permute(0, 3, 1, 2).float()
    h = round(frames.shape[1] * width / frames.shape[2])
    t = F.interpolate(t, size=(h, width), mode="bilinear", antialias=True)
    return t.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


@dataclass
class DetectionSamples:
    """Frames and their ground-truth boxes (already in the frames' pixel scale).

    ``boxes[i]`` is (K, 4) xyxy clipped to the frame; ``visibility[i]`` is (K,).
    """

    frames: np.ndarray
    boxes: list[np.ndarray]
    visibility: list[np.ndarray]


def load_detection_samples(
    site: Path, every: int = 1, width: int | None = None
) -> DetectionSamples:
    """Every ``every``-th frame of each camera of ``site`` with its boxes, optionally resized."""
    site = Path(site)
    gt = pl.read_parquet(site / "gt" / "boxes.parquet")
    frames, boxes, vis = [], [], []
    for video in sorted((site / "videos").glob("*.mp4")):
        cam = gt.filter(pl.col("camera_id") == video.stem)
        chunk, indices = [], []
        for index, frame in read_frames(video):
            if index % every == 0:
                chunk.append(frame)
                indices.append(index)
        arr = np.stack(chunk)
        h, w = arr.shape[1:3]
        scale = 1.0
        if width is not None and width != w:
            arr, scale = resize_frames(arr, width), width / w
        frames.append(arr)
        by_frame = cam.partition_by("frame_index", as_dict=True)
        for index in indices:
            rows = by_frame.get((index,))
            if rows is None:
                boxes.append(np.zeros((0, 4), np.float32))
                vis.append(np.zeros(0, np.float32))
                continue
            xyxy = rows.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float32)
            xyxy = np.clip(xyxy, 0, [w, h, w, h]) * scale
            boxes.append(xyxy)
            vis.append(rows["visibility"].to_numpy().astype(np.float32))
    return DetectionSamples(np.concatenate(frames), boxes, vis)


@dataclass
class ReidCrops:
    """Person crops (N, H, W, 3) uint8 with their person and camera ids."""

    crops: np.ndarray
    person_ids: np.ndarray
    camera_ids: np.ndarray


def _crop(frame: np.ndarray, box: np.ndarray, margin: float, size: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = frame.shape[:2]
    xa, ya = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    xb, yb = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    patch = torch.as_tensor(frame[ya:yb, xa:xb]).permute(2, 0, 1)[None].float()
    out = F.interpolate(patch, size=size, mode="bilinear", antialias=True)
    return out[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def load_reid_crops(
    site: Path,
    min_visibility: float = 0.7,
    per_track: int = 12,
    margin: float = 0.0,
    size: tuple[int, int] = (128, 64),
) -> ReidCrops:
    """Up to ``per_track`` evenly spaced crops of each (person, camera), resized to ``size``.

    Only boxes at least ``min_visibility`` visible and at least 24 px tall are used.
    ``margin`` enlarges each box by that fraction on every side (room for crop jitter).
    """
    site = Path(site)
    gt = pl.read_parquet(site / "gt" / "boxes.parquet").filter(
        (pl.col("visibility") >= min_visibility) & ((pl.col("y2") - pl.col("y1")) >= 24)
    )
    picked = (
        gt.sort("frame_index")
        .with_columns(
            pl.int_range(pl.len()).over("camera_id", "person_id").alias("_k"),
            pl.len().over("camera_id", "person_id").alias("_n"),
        )
        .filter(
            (pl.col("_k") * per_track) // pl.col("_n")
            != ((pl.col("_k") - 1) * per_track) // pl.col("_n")
        )
    )
    crops, pids, cams = [], [], []
    for video in sorted((site / "videos").glob("*.mp4")):
        cam = picked.filter(pl.col("camera_id") == video.stem)
        by_frame = cam.partition_by("frame_index", as_dict=True)
        for index, frame in read_frames(video, keep={k[0] for k in by_frame}):
            rows = by_frame[(index,)]
            for row in rows.iter_rows(named=True):
                box = np.array([row["x1"], row["y1"], row["x2"], row["y2"]], np.float32)
                crops.append(_crop(frame, box, margin, size))
                pids.append(row["person_id"])
                cams.append(video.stem)
    return ReidCrops(np.stack(crops), np.array(pids, np.int64), np.array(cams))


def load_reference_crops(
    site: Path,
    detect: Callable[[np.ndarray], list[Any]],
    margin: float = 0.0,
    size: tuple[int, int] = (128, 64),
) -> ReidCrops:
    """Each person's ``reference/pNNNN.png``, cropped to the person as search crops a photo.

    ``detect`` is a detector's batch call; :func:`~sightline.search.photos.person_box`
    finds the person (the whole photo when it finds nobody). The camera id is
    :data:`PHOTO_CAMERA`.
    """
    from PIL import Image

    from sightline.search.photos import person_box

    crops, pids = [], []
    for path in sorted((Path(site) / "reference").glob("p*.png")):
        image = np.array(Image.open(path).convert("RGB"))
        found = person_box(image, detect)
        box = found[0] if found is not None else np.array([0, 0, image.shape[1], image.shape[0]])
        crops.append(_crop(image, np.asarray(box, np.float32), margin, size))
        pids.append(int(path.stem[1:]))
    if not crops:
        raise ValueError(f"{site}: no reference photos (reference/pNNNN.png)")
    return ReidCrops(np.stack(crops), np.array(pids, np.int64), np.full(len(pids), PHOTO_CAMERA))


def concat_crops(parts: list[ReidCrops]) -> ReidCrops:
    """One :class:`ReidCrops` holding every crop of ``parts`` (ids are kept as they are)."""
    return ReidCrops(
        np.concatenate([p.crops for p in parts]),
        np.concatenate([p.person_ids for p in parts]),
        np.concatenate([p.camera_ids.astype(str) for p in parts]),
    )
