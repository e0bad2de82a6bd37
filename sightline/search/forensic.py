"""Forensic ingest for search jobs: which recorded footage a query needs that the store
lacks, planned without Ray.

A search job may cover recordings nobody has run through the pipeline yet. Before it
searches, the job works out (:func:`plan_ingest`), for each of the query's cameras (all
enabled cameras of the site when the query names none):

- whether the camera has a recording at all: a live stream is skipped (only what was
  ingested live is searchable), so is a file without ``source_start`` (its frames have
  no known time) or one that cannot be opened (reported as a failed ingest);
- the part of the query window the recording spans (``source_start + clock_offset_s``
  to that plus the file's duration);
- what of that part is already covered, and so must not be ingested twice (twice would
  store every person twice under new tracklet ids):

  1. the **ingest ledger** (:mod:`sightline.store.ingests`): every finished ingest of a
     recording span (the pipeline's whole recordings, earlier jobs' windows) is written
     there once its tracklets are in the store. It is the authority: a stretch with
     nobody in it leaves no tracklet but is still covered;
  2. ingests **in flight** in other jobs (the caller passes them; the job waits for them
     instead of ingesting the span again);
  3. for stores written before the ledger existed: a stretch not in the ledger that
     already holds tracklets of the camera (a tracklet's middle inside it) counts as
     covered, so an old store is never duplicated (at the price of not completing a
     stretch that was ingested only in part);
  4. a camera the pipeline is processing right now (``busy``) is left to the pipeline.

What remains are :class:`IngestWindow` s: one camera, one contiguous stretch, with its
offsets in the file (the reader seeks to the start rather than decoding from the file's
start) and the number of frames expected at the camera's sampling rate (the total of the
job's ingest progress). Stretches shorter than :data:`MIN_WINDOW_S` are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from sightline.config import CameraConfig, SiteConfig
from sightline.search.query import SearchQuery
from sightline.store.ingests import IngestRecord, covered_spans, merge_spans, read_ingests
from sightline.store.queries import scan

__all__ = [
    "INCOMPLETE_KINDS",
    "MIN_WINDOW_S",
    "SKIP_KINDS",
    "IngestPlan",
    "IngestUnavailableError",
    "IngestWindow",
    "Recording",
    "Span",
    "finished_recording_record",
    "plan_forensic",
    "plan_ingest",
    "probe_duration",
    "recording_of",
    "recording_record",
    "stored_spans",
    "subtract_spans",
]

MIN_WINDOW_S = 0.2
"""Uncovered stretches shorter than this are not worth an ingest (a boundary rounding)."""

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Recording:
    """A camera's recorded file and the UTC time it spans (``end`` None: unknown length)."""

    camera_id: str
    source: str
    start: datetime
    end: datetime | None
    fps: float | None


@dataclass(frozen=True)
class IngestWindow:
    """One stretch of one camera's recording to ingest before searching."""

    camera_id: str
    source: str
    start: datetime
    end: datetime
    start_s: float
    """Seconds from the file's start to ``start`` (where the reader seeks)."""
    end_s: float
    frames_total: int | None
    """Sampled frames expected at the camera's fps (None: it keeps every frame, at a rate
    the plan does not know); an estimate, the reader's own count is ``frames_done``."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


@dataclass(frozen=True)
class IngestPlan:
    """What a job ingests first, and why the other cameras are not ingested."""

    windows: list[IngestWindow] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    """``{"camera_id", "kind", "reason"}``, ``kind`` one of :data:`SKIP_KINDS`."""
    failed: list[dict[str, str]] = field(default_factory=list)
    """``{"camera_id", "error"}``: recordings that could not be read."""
    waits: list[IngestWindow] = field(default_factory=list)
    """In-flight ingests of other jobs this job's window needs (it waits for them)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "windows": [w.as_dict() for w in self.windows],
            "skipped": list(self.skipped),
            "failed": list(self.failed),
            "waits": [w.as_dict() for w in self.waits],
        }


class IngestUnavailableError(ValueError):
    """A job asked to ingest, but no running pipeline can do it (none was given to the
    jobs service, or it cannot be reached)."""


SKIP_KINDS = ("unknown", "stream", "no_time", "outside", "busy", "covered", "in_flight", "stored")
"""Why a camera is not ingested: not a camera of the site, a live stream, a recording
without ``source_start``, outside the window, the pipeline is processing it, already
ingested (the ledger), being ingested by another job, tracklets already stored."""

INCOMPLETE_KINDS = frozenset({"unknown", "no_time", "busy"})
"""Skips that leave part of what the query asked for unsearched (the result says so)."""


def _skip(camera_id: str, kind: str, reason: str) -> dict[str, str]:
    return {"camera_id": camera_id, "kind": kind, "reason": reason}


def recording_of(camera: CameraConfig, duration_s: float | None) -> Recording:
    """``camera``'s recording spanning ``duration_s`` seconds (None: unknown) from its
    ``source_start`` shifted by its ``clock_offset_s``. ``ValueError`` for a stream or a
    file without ``source_start``."""
    if camera.is_stream:
        raise ValueError(f"camera {camera.id} is a live stream, not a recording")
    if camera.source_start is None:
        raise ValueError(
            f"camera {camera.id}: the recording has no source_start, so its frames have "
            "no known time"
        )
    start = camera.source_start + timedelta(seconds=camera.clock_offset_s)
    end = None if duration_s is None else start + timedelta(seconds=duration_s)
    return Recording(camera.id, str(camera.source), start, end, camera.fps)


def probe_duration(source: str | Path) -> float | None:
    """The length in seconds of a recorded file (None: it does not say). Raises
    :class:`~sightline.ingest.source.SourceError` (an ``OSError``) naming the file when it
    cannot be opened."""
    from sightline.ingest.source import VideoSource

    video = VideoSource(str(source), 64, 64)
    try:
        return video.open().duration_s
    finally:
        video.close()


def recording_record(
    camera: CameraConfig, *, frames: int = 0, tracklets: int = 0, kind: str = "pipeline"
) -> IngestRecord | None:
    """The ledger row saying the whole of ``camera``'s recording is ingested (the pipeline
    ran it to its end), or None when that cannot be said: a stream, no ``source_start``, a
    file that cannot be opened or does not tell its length."""
    if camera.is_stream or camera.source_start is None:
        return None
    try:
        duration = probe_duration(camera.source)
    except Exception:  # unreadable now: nothing to record
        return None
    if duration is None:
        return None
    rec = recording_of(camera, duration)
    assert rec.end is not None
    return IngestRecord(
        camera.id, rec.source, rec.start, rec.end, kind, None, int(frames), int(tracklets)
    )


def finished_recording_record(
    camera: CameraConfig, health: Mapping[str, Any]
) -> IngestRecord | None:
    """:func:`recording_record` for a camera actor's final ``health``: only when it read
    its recording to the end in forensic mode (a live run or a stopped one covers no
    whole recording)."""
    if health.get("state") != "finished" or health.get("mode") != "forensic":
        return None
    return recording_record(
        camera,
        frames=health.get("frames_detected", 0),
        tracklets=health.get("tracklets_emitted", 0),
    )


def subtract_spans(span: Span, covered: Sequence[Span]) -> list[Span]:
    """The parts of ``span`` outside every span of ``covered`` (sorted, disjoint)."""
    out: list[Span] = []
    start, end = span
    for c_start, c_end in merge_spans(covered):
        if c_end <= start or c_start >= end:
            continue
        if c_start > start:
            out.append((start, c_start))
        start = max(start, c_end)
        if start >= end:
            return out
    if start < end:
        out.append((start, end))
    return out


def _cameras(site: SiteConfig, query: SearchQuery) -> tuple[list[CameraConfig], list[str]]:
    if query.cameras is None:
        return [c for c in site.cameras if c.enabled], []
    known = {c.id: c for c in site.cameras}
    return [known[c] for c in query.cameras if c in known], [
        c for c in query.cameras if c not in known
    ]


def plan_ingest(
    site: SiteConfig,
    query: SearchQuery,
    *,
    durations: Mapping[str, float | BaseException | None],
    ledger: pl.DataFrame,
    stored: Mapping[str, Sequence[datetime]] | None = None,
    in_flight: Sequence[IngestWindow] = (),
    busy: Mapping[str, str] | None = None,
) -> IngestPlan:
    """Plan the forensic ingest of ``query`` (module docstring); no I/O.

    ``durations``: camera id -> its file's length in seconds (None: unknown) or the error
    opening it (cameras absent from it are probed as unknown length). ``ledger``: the
    store's ingest ledger (:func:`~sightline.store.ingests.read_ingests`). ``stored``:
    camera id -> the mid-times of its tracklets in the store within the window (legacy
    coverage). ``in_flight``: windows other jobs are ingesting now. ``busy``: camera id ->
    why the pipeline has it now.
    """
    stored, busy = stored or {}, busy or {}
    plan = IngestPlan()
    cameras, unknown = _cameras(site, query)
    plan.skipped.extend(_skip(c, "unknown", "not a camera of the site") for c in unknown)
    for camera in cameras:
        duration = durations.get(camera.id)
        if camera.is_stream:
            plan.skipped.append(
                _skip(
                    camera.id, "stream", "a live stream: only what was ingested live is searchable"
                )
            )
            continue
        if isinstance(duration, BaseException):
            error = f"{type(duration).__name__}: {duration}"[:500]
            plan.failed.append({"camera_id": camera.id, "error": error})
            continue
        try:
            rec = recording_of(camera, duration)
        except ValueError as exc:
            plan.skipped.append(_skip(camera.id, "no_time", str(exc)))
            continue
        start = max(query.start, rec.start)
        end = query.end if rec.end is None else min(query.end, rec.end)
        if end - start < timedelta(seconds=MIN_WINDOW_S):
            span = f"{rec.start.isoformat()} to {rec.end.isoformat() if rec.end else '?'}"
            plan.skipped.append(
                _skip(camera.id, "outside", f"its recording ({span}) is outside the window")
            )
            continue
        if camera.id in busy:
            plan.skipped.append(_skip(camera.id, "busy", busy[camera.id]))
            continue
        _plan_camera(plan, camera, rec, (start, end), ledger, stored, in_flight)
    return plan


def _plan_camera(
    plan: IngestPlan,
    camera: CameraConfig,
    rec: Recording,
    span: Span,
    ledger: pl.DataFrame,
    stored: Mapping[str, Sequence[datetime]],
    in_flight: Sequence[IngestWindow],
) -> None:
    others = [w for w in in_flight if (w.camera_id, w.source) == (camera.id, rec.source)]
    plan.waits.extend(w for w in others if w.start < span[1] and w.end > span[0])
    covered = covered_spans(ledger, camera.id, rec.source)
    todo = subtract_spans(span, [*covered, *((w.start, w.end) for w in others)])
    todo = [(a, b) for a, b in todo if b - a >= timedelta(seconds=MIN_WINDOW_S)]
    if not todo:
        reason = "being ingested by another job" if others else "already ingested"
        plan.skipped.append(_skip(camera.id, "in_flight" if others else "covered", reason))
        return
    mids = stored.get(camera.id, ())
    for a, b in todo:
        if any(a <= m <= b for m in mids):
            plan.skipped.append(
                _skip(
                    camera.id,
                    "stored",
                    f"{a.isoformat()} to {b.isoformat()}: the store already has tracklets "
                    "there (no ingest record): not ingested again",
                )
            )
            continue
        start_s = (a - rec.start).total_seconds()
        end_s = (b - rec.start).total_seconds()
        frames = None
        if rec.fps is not None:
            # frames on the sampling grid from a to b, b included unless it is the file's end
            inside = rec.end is None or b < rec.end
            frames = max(1, math.ceil(round((end_s - start_s) * rec.fps, 6)) + int(inside))
        plan.windows.append(
            IngestWindow(camera.id, rec.source, a, b, round(start_s, 6), round(end_s, 6), frames)
        )


def stored_spans(
    store_root: str | Path, query: SearchQuery, cameras: Sequence[str]
) -> dict[str, list[datetime]]:
    """Camera id -> the mid-times of its stored tracklets overlapping the query's window
    (for the legacy coverage rule of :func:`plan_ingest`)."""
    if not cameras:
        return {}
    try:
        rows = (
            scan(store_root, "tracklets")
            .filter(
                pl.col("camera_id").is_in(list(cameras))
                & (pl.col("date") >= query.start.date())
                & (pl.col("date") <= query.end.date())
                & (pl.col("t_start") <= query.end)
                & (pl.col("t_end") >= query.start)
            )
            .select("camera_id", (pl.col("t_start") + (pl.col("t_end") - pl.col("t_start")) / 2))
            .unique()
            .collect()
        )
    except FileNotFoundError:  # an empty store
        return {}
    out: dict[str, list[datetime]] = {}
    for camera_id, mid in rows.iter_rows():
        out.setdefault(camera_id, []).append(mid)
    return out


def plan_forensic(
    site: SiteConfig,
    query: SearchQuery,
    store_root: str | Path,
    *,
    in_flight: Sequence[IngestWindow] = (),
    busy: Mapping[str, str] | None = None,
) -> IngestPlan:
    """:func:`plan_ingest` with its inputs read: each recording's length probed, the
    store's ingest ledger and its tracklets in the window."""
    cameras, _ = _cameras(site, query)
    durations: dict[str, float | BaseException | None] = {}
    for camera in cameras:
        if camera.is_stream or camera.source_start is None or camera.id in (busy or {}):
            continue
        try:
            durations[camera.id] = probe_duration(camera.source)
        except Exception as exc:  # unreadable: reported as a failed ingest, not raised
            durations[camera.id] = exc
    ids = [c.id for c in cameras]
    return plan_ingest(
        site,
        query,
        durations=durations,
        ledger=read_ingests(store_root),
        stored=stored_spans(store_root, query, ids),
        in_flight=in_flight,
        busy=busy,
    )
