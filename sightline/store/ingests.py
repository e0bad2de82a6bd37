"""The ingest ledger: which spans of which recordings are in the store.

A search job over recorded footage first ingests what the store lacks
(:mod:`sightline.search.forensic`). Tracklets alone cannot say what was ingested (a
stretch of video with nobody in it leaves no tracklet), so every finished ingest of a
recording writes a row here once its tracklets are stored:

    ingests/part-<time>-<uuid>.parquet     INGEST_SCHEMA

one row per ``(camera_id, source, start, end)`` span, with who ingested it (``kind``:
``pipeline`` for a whole recording the pipeline processed, ``forensic`` for a window a
search job ingested) and how much came out. Spans are facts: rows are only appended,
overlapping spans are fine, and readers take the union per camera and source
(:func:`covered_spans`). A part is written under a temporary name and renamed (local
roots), or with one object PUT (URL roots), so readers never see half a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from sightline.store.tables import commit_local, is_url

__all__ = [
    "INGEST_SCHEMA",
    "IngestRecord",
    "covered_spans",
    "merge_spans",
    "read_ingests",
    "record_ingests",
]

_UTC_US = pl.Datetime("us", "UTC")

INGEST_SCHEMA: dict[str, pl.DataType] = {
    "camera_id": pl.String(),
    "source": pl.String(),
    "start": _UTC_US,
    "end": _UTC_US,
    "kind": pl.String(),
    "job_id": pl.String(),
    "frames": pl.Int64(),
    "tracklets": pl.Int64(),
    "recorded_at": _UTC_US,
}


@dataclass(frozen=True)
class IngestRecord:
    """One ingested span of a camera's recording (see the module docstring)."""

    camera_id: str
    source: str
    start: datetime
    end: datetime
    kind: str = "forensic"
    job_id: str | None = None
    frames: int = 0
    tracklets: int = 0

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"IngestRecord.{name} must be timezone-aware (UTC)")
        if self.end < self.start:
            raise ValueError(f"IngestRecord end {self.end} is before start {self.start}")


def _root(store_root: str | Path) -> str:
    text = str(store_root)
    return text.removeprefix("file://").rstrip("/") or "/"


def record_ingests(store_root: str | Path, records: Sequence[IngestRecord]) -> int:
    """Append ``records`` to the ledger of the store at ``store_root``; returns how many."""
    if not records:
        return 0
    now = datetime.now(UTC)
    frame = pl.DataFrame([{**asdict(r), "recorded_at": now} for r in records], schema=INGEST_SCHEMA)
    root = _root(store_root)
    name = f"part-{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
    if is_url(root):
        frame.write_parquet(f"{root}/ingests/{name}")
        return len(records)
    commit_local({Path(root) / "ingests" / name: frame.write_parquet}, durable=True)
    return len(records)


def read_ingests(store_root: str | Path) -> pl.DataFrame:
    """Every ledger row of the store (empty, typed, when nothing was recorded)."""
    root = _root(store_root)
    if not is_url(root) and not any((Path(root) / "ingests").glob("part-*.parquet")):
        return pl.DataFrame(schema=INGEST_SCHEMA)
    try:
        return pl.read_parquet(f"{root}/ingests/part-*.parquet", schema=INGEST_SCHEMA)
    except (FileNotFoundError, pl.exceptions.ComputeError):  # a URL store with no ledger
        return pl.DataFrame(schema=INGEST_SCHEMA)


def covered_spans(
    ledger: pl.DataFrame, camera_id: str, source: str
) -> list[tuple[datetime, datetime]]:
    """The union of the ledger's spans of ``camera_id``'s recording ``source``, sorted."""
    rows = ledger.filter((pl.col("camera_id") == camera_id) & (pl.col("source") == source))
    return merge_spans(zip(rows["start"], rows["end"], strict=True))


def merge_spans(
    spans: Iterable[tuple[datetime, datetime]],
) -> list[tuple[datetime, datetime]]:
    """``spans`` as disjoint sorted spans (overlapping or touching ones joined)."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
