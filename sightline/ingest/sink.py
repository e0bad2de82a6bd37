"""Where a camera's per-frame detections go: a protocol and a Parquet part-file writer.

The camera actor hands every detected frame, in frame order, to a :class:`DetectionSink`.
The default, :class:`ParquetDetectionSink`, appends detection rows (the ``detection``
schema of the design) as Parquet part files; the tracking stage replaces it with a
sink that tracks instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import polars as pl

from sightline.ingest.reader import Frame
from sightline.models.core import Detections

__all__ = [
    "DETECTION_SCHEMA",
    "DetectionSink",
    "ParquetDetectionSink",
    "PartFolder",
    "detections_frame",
    "discard_parts",
    "next_part_number",
]

DETECTION_SCHEMA: dict[str, pl.DataType] = {
    "camera_id": pl.String(),
    "frame_ts": pl.Datetime("us", "UTC"),
    "x1": pl.Float32(),
    "y1": pl.Float32(),
    "x2": pl.Float32(),
    "y2": pl.Float32(),
    "score": pl.Float32(),
}

_PART = re.compile(r"^part-(\d+)\.parquet$")


@runtime_checkable
class DetectionSink(Protocol):
    """Receives each detected frame once, in frame order, then ``close()`` once."""

    def write(self, camera_id: str, frame: Frame, detections: Detections) -> None:
        """Take the detections of one frame (``frame.image`` is read-only)."""

    def close(self) -> None:
        """No more frames: flush what is buffered."""


def detections_frame(camera_id: str, frame: Frame, detections: Detections) -> pl.DataFrame:
    """One frame's detections as rows of :data:`DETECTION_SCHEMA`."""
    boxes = detections.xyxy
    n = len(detections)
    return pl.DataFrame(
        {
            "camera_id": [camera_id] * n,
            "frame_ts": [frame.ts] * n,
            "x1": boxes[:, 0],
            "y1": boxes[:, 1],
            "x2": boxes[:, 2],
            "y2": boxes[:, 3],
            "score": detections.scores,
        },
        schema=DETECTION_SCHEMA,
    )


class PartFolder:
    """A folder of numbered Parquet parts, ``part-<n>.parquet``, written atomically.

    Numbering goes on after the parts already there, so a restarted writer never
    overwrites; each part is written to a temporary name and renamed, so readers never
    see half a file.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._next_part = _next_part_number(self.folder)
        self.parts: list[Path] = []

    def write(self, rows: pl.DataFrame) -> Path:
        """Write ``rows`` as the next part; returns its path."""
        path = self.folder / f"part-{self._next_part:06d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        rows.write_parquet(tmp)
        os.replace(tmp, path)
        self._next_part += 1
        self.parts.append(path)
        return path

    @property
    def next_part(self) -> int:
        """The number the next part will get (a camera checkpoint records it)."""
        return self._next_part


class ParquetDetectionSink:
    """Append detection rows under ``<out_dir>/detections/camera_id=<id>/part-<n>.parquet``.

    A part is written every ``flush_every`` frames and on :meth:`close` (see
    :class:`PartFolder` for numbering and atomic writes).
    """

    def __init__(self, out_dir: str | Path, camera_id: str, flush_every: int = 100) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.camera_id = camera_id
        self.flush_every = flush_every
        self._parts = PartFolder(Path(out_dir) / "detections" / f"camera_id={camera_id}")
        self.folder = self._parts.folder
        self.parts = self._parts.parts
        self._rows: list[pl.DataFrame] = []
        self._frames = 0
        self.rows_written = 0

    @property
    def next_part(self) -> int:
        """The number the next part will get."""
        return self._parts.next_part

    def write(self, camera_id: str, frame: Frame, detections: Detections) -> None:
        """Buffer one frame's rows; flush every ``flush_every`` frames."""
        if len(detections):
            self._rows.append(detections_frame(camera_id, frame, detections))
        self._frames += 1
        if self._frames >= self.flush_every:
            self.flush()

    def flush(self) -> Path | None:
        """Write buffered rows as the next part file (nothing if there are none)."""
        self._frames = 0
        if not self._rows:
            return None
        rows = pl.concat(self._rows)
        self._rows = []
        path = self._parts.write(rows)
        self.rows_written += rows.height
        return path

    def close(self) -> None:
        """Flush what is left."""
        self.flush()


def _next_part_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _PART.match(p.name))]
    return max(numbers, default=-1) + 1


def next_part_number(folder: str | Path) -> int:
    """The number a new :class:`PartFolder` on ``folder`` would give its first part
    (0 for a folder that does not exist yet)."""
    folder = Path(folder)
    return _next_part_number(folder) if folder.is_dir() else 0


def discard_parts(folder: str | Path, first: int) -> list[Path]:
    """Delete the parts of ``folder`` numbered ``first`` or higher (and any half-written
    temporary part); returns the deleted paths.

    A camera that restarts from a checkpoint discards the parts its previous incarnation
    wrote after that checkpoint: it writes those frames again, so they are not doubled.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    doomed = [
        p
        for p in folder.iterdir()
        if ((m := _PART.match(p.name)) and int(m.group(1)) >= first)
        or p.name.endswith(".parquet.tmp")
    ]
    for path in doomed:
        path.unlink(missing_ok=True)
    return sorted(doomed)
