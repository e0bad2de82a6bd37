"""Where tracklets go until the coordinator exists: Parquet parts plus thumbnail files.

``<out_dir>/tracklets/camera_id=<id>/part-<n>.parquet`` holds one row per tracklet
version (:data:`TRACKLET_SCHEMA`); a later version of a ``tracklet_id`` supersedes the
earlier ones (:func:`latest_versions`). The best crop of each tracklet is a JPEG at
``<out_dir>/thumbnails/camera_id=<id>/<tracklet_id>.jpg`` (the column ``thumbnail``
holds that path relative to ``out_dir``).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl

from sightline.ingest.sink import PartFolder
from sightline.tracking.tracklets import Tracklet

__all__ = [
    "TRACKLET_SCHEMA",
    "ParquetTrackletSink",
    "TeeTrackletSink",
    "TrackletSink",
    "latest_versions",
    "read_tracklets",
    "tracklets_frame",
]

_F32_LIST = pl.List(pl.Float32())
TRACKLET_SCHEMA: dict[str, pl.DataType] = {
    "tracklet_id": pl.String(),
    "camera_id": pl.String(),
    "track_id": pl.Int64(),
    "version": pl.Int32(),
    "final": pl.Boolean(),
    "t_start": pl.Datetime("us", "UTC"),
    "t_end": pl.Datetime("us", "UTC"),
    "n_frames": pl.Int32(),
    "ts": pl.List(pl.Datetime("us", "UTC")),
    "boxes": pl.List(_F32_LIST),
    "scores": _F32_LIST,
    "foot_px": pl.List(_F32_LIST),
    "foot_world": pl.List(_F32_LIST),
    "embeddings": pl.List(_F32_LIST),
    "embedding_mean": _F32_LIST,
    "upper_colour": pl.String(),
    "upper_colour_confidence": pl.Float32(),
    "lower_colour": pl.String(),
    "lower_colour_confidence": pl.Float32(),
    "height_m": pl.Float32(),
    "quality": pl.Float32(),
    "thumbnail": pl.String(),
}


@runtime_checkable
class TrackletSink(Protocol):
    """Receives tracklets as they are emitted, then ``close()`` once.

    Either method may be a coroutine function (the coordinator's sink is); callers
    await what they get back when it is awaitable.
    """

    def write(self, tracklets: list[Tracklet]) -> None:
        """Take a batch of tracklets (any versions, any order)."""

    def close(self) -> None:
        """No more tracklets: flush what is buffered."""


class TeeTrackletSink:
    """Hands every batch to several sinks in turn (e.g. local Parquet and the coordinator)."""

    def __init__(self, *sinks: TrackletSink) -> None:
        self.sinks = sinks

    async def write(self, tracklets: list[Tracklet]) -> None:
        """Write to each sink; awaits those that are async."""
        for sink in self.sinks:
            result = sink.write(tracklets)
            if inspect.isawaitable(result):
                await result

    async def close(self) -> None:
        """Close each sink."""
        for sink in self.sinks:
            result = sink.close()
            if inspect.isawaitable(result):
                await result


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def tracklets_frame(tracklets: list[Tracklet], thumbnails: list[str]) -> pl.DataFrame:
    """Tracklets as rows of :data:`TRACKLET_SCHEMA` (``thumbnails``: one path each)."""
    rows = []
    for tracklet, thumb in zip(tracklets, thumbnails, strict=True):
        row = tracklet.to_row()
        row["t_start"], row["t_end"] = _us(tracklet.t_start), _us(tracklet.t_end)
        row["ts"] = [_us(t) for t in tracklet.ts.tolist()]
        row["thumbnail"] = thumb
        rows.append(row)
    time_columns = ("t_start", "t_end", "ts")
    schema = {k: (pl.Int64() if k in time_columns[:2] else v) for k, v in TRACKLET_SCHEMA.items()}
    schema["ts"] = pl.List(pl.Int64())
    frame = pl.DataFrame(rows, schema=schema)
    return frame.with_columns(
        pl.col("t_start", "t_end").cast(pl.Datetime("us", "UTC")),
        pl.col("ts").cast(pl.List(pl.Datetime("us", "UTC"))),
    )


class ParquetTrackletSink:
    """Write each batch of tracklets as a Parquet part, and their thumbnails as JPEGs."""

    def __init__(self, out_dir: str | Path, camera_id: str) -> None:
        self.out_dir = Path(out_dir)
        self.camera_id = camera_id
        self._parts = PartFolder(self.out_dir / "tracklets" / f"camera_id={camera_id}")
        self._thumbs = self.out_dir / "thumbnails" / f"camera_id={camera_id}"
        self._thumbs.mkdir(parents=True, exist_ok=True)
        self.rows_written = 0

    def write(self, tracklets: list[Tracklet]) -> None:
        """Write the thumbnails first, then the part that refers to them."""
        if not tracklets:
            return
        paths = [self._write_thumbnail(t) for t in tracklets]
        self._parts.write(tracklets_frame(tracklets, paths))
        self.rows_written += len(tracklets)

    def close(self) -> None:
        """Nothing is buffered: every batch is written when it arrives."""

    def _write_thumbnail(self, tracklet: Tracklet) -> str:
        path = self._thumbs / f"{tracklet.tracklet_id}.jpg"
        tmp = path.with_suffix(".jpg.tmp")
        tmp.write_bytes(tracklet.thumbnail_jpeg)
        os.replace(tmp, path)
        return path.relative_to(self.out_dir).as_posix()


def read_tracklets(out_dir: str | Path) -> pl.DataFrame:
    """Every tracklet version written under ``out_dir`` (an empty frame if none)."""
    files = sorted(Path(out_dir).glob("tracklets/camera_id=*/*.parquet"))
    if not files:
        return pl.DataFrame(schema=TRACKLET_SCHEMA)
    return pl.concat([pl.read_parquet(f) for f in files])


def latest_versions(tracklets: pl.DataFrame) -> pl.DataFrame:
    """Only the newest version of each tracklet."""
    return tracklets.sort("version").unique("tracklet_id", keep="last", maintain_order=True)
