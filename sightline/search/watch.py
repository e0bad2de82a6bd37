"""Standing watches: a search kept open, alerting when a new tracklet matches it.

An analyst who has searched and not (yet) found the person keeps the search as a watch
(:meth:`WatchList.add`). Every batch of tracklets the coordinator ingests is checked
against every watch (:meth:`WatchList.check`): the newest version of each tracklet is
filtered and scored exactly like a search (:func:`~sightline.search.scoring.score_tracklets`
on :func:`~sightline.tracking.sink.tracklets_frame` rows), and an alert is raised when its
confidence reaches the watch's threshold (by default the query's ``min_confidence``).

**Which filters.** A watch uses its query's cameras, area and last-seen reachability,
and the window's *start* (tracklets that ended before it are ignored), but not the
window's *end*: a watch looks forward, so it stays open until it is removed. Identities
the analyst rejected never alert.

**Once per sighting.** A watch alerts at most once per tracklet: a camera re-reports a
long track every few seconds (a new version each time) and an analyst wants one alert
per sighting, not one per version. A later version alerts again only when its confidence
has risen by at least ``realert_margin`` (default 0.1) over the confidence last alerted,
e.g. when the person turned to face the camera; a raise of 0.1 is a clearly better view,
smaller ones are the noise of a few more crops. A new tracklet of the same person (another
camera, or the same camera later) is a new sighting and alerts.

**Description-only watches** alert for everyone who fits the description (the
confidence is how well they fit, not who they are): give them a higher threshold or
narrow filters.

Alerts are numbered (``seq``), kept in a bounded history for pollers (:meth:`since`) and
handed to subscribers (:meth:`subscribe`), like the density alerts'
:class:`~sightline.density.alerts.AlertBoard`. A subscriber's exception is logged and
counted and never stops the others or the ingest; nor does a watch that fails to score
(e.g. its embeddings differ in length from the cameras'): it is counted on the watch.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from sightline.search.filters import in_area, on_cameras, reachable
from sightline.search.jobs import require_embedded
from sightline.search.query import SearchQuery
from sightline.search.scoring import SearchCalibration, score_tracklets
from sightline.store.tables import thumbnail_ref
from sightline.tracking.sink import tracklets_frame
from sightline.tracking.tracklets import Tracklet

__all__ = ["DEFAULT_REALERT_MARGIN", "Watch", "WatchAlert", "WatchList", "watch_filter"]

log = logging.getLogger(__name__)

DEFAULT_REALERT_MARGIN = 0.1
"""Confidence a tracklet must gain over its last alert to alert again. Lowering it
gives more alerts per sighting; above 1 a tracklet alerts only once."""


@dataclass(frozen=True)
class WatchAlert:
    """A new tracklet matched a watch.

    Times are epoch seconds: ``t_start``/``t_end`` of the tracklet version that matched,
    ``raised_at`` when the alert was raised. ``global_id`` is the identity fusion gave
    the tracklet at ingest (None if none yet); ``thumbnail`` the store path of its best
    crop (None without one). ``seq`` is the :class:`WatchList`'s number for it.
    """

    seq: int
    watch_id: str
    case_id: str
    tracklet_id: str
    version: int
    global_id: str | None
    camera_id: str
    t_start: float
    t_end: float
    confidence: float
    threshold: float
    thumbnail: str | None
    raised_at: float

    def as_dict(self) -> dict[str, Any]:
        """The alert as a plain dict (JSON-ready)."""
        return asdict(self)


@dataclass
class Watch:
    """One open search: its query, threshold, and what it has alerted so far."""

    watch_id: str
    query: SearchQuery
    threshold: float
    added: float
    alerts: int = 0
    errors: int = 0
    last_error: str | None = None
    alerted: dict[str, float] = field(default_factory=dict, repr=False)

    def info(self) -> dict[str, Any]:
        """JSON-ready summary: ids, case, reason, principal, threshold, counters."""
        return {
            "watch_id": self.watch_id,
            **self.query.audit,
            "threshold": self.threshold,
            "added": self.added,
            "start": self.query.start.isoformat(),
            "cameras": self.query.cameras,
            "alerts": self.alerts,
            "errors": self.errors,
            "last_error": self.last_error,
        }


def watch_filter(frame: pl.DataFrame, query: SearchQuery) -> pl.DataFrame:
    """Tracklet rows a watch of ``query`` looks at: ending at or after the window's start
    (the end is ignored: watches look forward), on its cameras, with a ground point in
    its area since the start, reachable from its last-seen point."""
    frame = frame.filter(pl.col("t_end") >= query.start)
    frame = on_cameras(frame, query.cameras)
    frame = in_area(frame, query.area, query.start, None)
    return reachable(frame, query.last_seen)


def _thumbnail(t: Tracklet) -> str | None:
    if not t.thumbnail_jpeg:
        return None
    try:
        return thumbnail_ref(t.camera_id, t.tracklet_id)
    except ValueError:  # an id that cannot name a file: the store has no thumbnail either
        return None


def _new_watch_id() -> str:
    return f"watch-{uuid.uuid4().hex[:12]}"


class WatchList:
    """Standing watches of one site (see the module docstring).

    ``calibration`` defaults to the committed one; ``history`` alerts are kept for
    :meth:`since`; ``clock`` (epoch seconds) and ``new_id`` are injectable for tests.
    """

    def __init__(
        self,
        calibration: SearchCalibration | None = None,
        *,
        history: int = 1000,
        realert_margin: float = DEFAULT_REALERT_MARGIN,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_watch_id,
    ) -> None:
        if realert_margin < 0:
            raise ValueError(f"realert_margin must be >= 0, got {realert_margin}")
        self.calibration = calibration or SearchCalibration.load()
        self.realert_margin = realert_margin
        self.history: deque[WatchAlert] = deque(maxlen=history)
        self.stats = {"checks": 0, "tracklets_checked": 0, "alerts": 0, "watch_errors": 0}
        self.callback_errors = 0
        self._clock = clock
        self._new_id = new_id
        self._watches: dict[str, Watch] = {}
        self._subscribers: list[Callable[[WatchAlert], object]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._watches)

    def __contains__(self, watch_id: object) -> bool:
        return watch_id in self._watches

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest alert (0 before the first)."""
        return self._seq

    def add(self, query: SearchQuery, threshold: float | None = None) -> str:
        """Keep ``query`` open; returns the watch id.

        ``query`` has embeddings and/or a description (photos must be embedded first:
        :class:`~sightline.search.query.SearchQueryError` otherwise); its case id, reason
        and principal stay with the watch. ``threshold`` (default the query's
        ``min_confidence``): raising it gives fewer, surer alerts.
        """
        if not isinstance(query, SearchQuery):
            raise TypeError(f"expected a SearchQuery, got {type(query).__name__}")
        require_embedded(query, "a standing watch")
        threshold = query.min_confidence if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        watch_id = self._new_id()
        if watch_id in self._watches:
            raise RuntimeError(f"watch id {watch_id!r} was handed out twice")
        self._watches[watch_id] = Watch(watch_id, query, threshold, self._clock())
        return watch_id

    def remove(self, watch_id: str) -> None:
        """Close a watch (its alerts stay in the history); ``KeyError`` if unknown."""
        if watch_id not in self._watches:
            raise KeyError(f"unknown watch {watch_id!r}; open watches: {sorted(self._watches)}")
        del self._watches[watch_id]

    def watches(self) -> list[dict[str, Any]]:
        """The open watches' :meth:`Watch.info`, oldest first."""
        return [w.info() for w in self._watches.values()]

    def subscribe(self, callback: Callable[[WatchAlert], object]) -> None:
        """Call ``callback(alert)`` for every alert from now on (in the checking thread)."""
        self._subscribers.append(callback)

    def since(self, seq: int = 0) -> list[WatchAlert]:
        """The kept alerts with a ``seq`` greater than ``seq``, oldest first."""
        return [a for a in self.history if a.seq > seq]

    def check(
        self, tracklets: Sequence[Tracklet], global_ids: Mapping[str, str | None]
    ) -> list[WatchAlert]:
        """Check new tracklet versions against every watch; returns the new alerts.

        ``global_ids`` maps tracklet ids to their identity now (missing or empty: not
        fused). Of several versions of one tracklet only the newest is scored. A watch
        that fails is counted (``errors`` on it, ``watch_errors`` in :attr:`stats`) and
        skipped; this never raises for a watch's sake.
        """
        if not self._watches or not tracklets:
            return []
        newest: dict[str, Tracklet] = {}
        for t in tracklets:
            if t.tracklet_id not in newest or newest[t.tracklet_id].version < t.version:
                newest[t.tracklet_id] = t
        batch = list(newest.values())
        frame = tracklets_frame(batch, [_thumbnail(t) for t in batch])
        self.stats["checks"] += 1
        self.stats["tracklets_checked"] += len(batch)
        alerts: list[WatchAlert] = []
        for watch in list(self._watches.values()):
            try:
                matches = self._matches(watch, frame, global_ids)
            except Exception as exc:
                watch.errors += 1
                watch.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self.stats["watch_errors"] += 1
                log.exception(
                    "watch %s failed on a batch of %d tracklets", watch.watch_id, len(batch)
                )
                continue
            alerts.extend(self._publish(watch, row) for row in matches)
        return alerts

    def _matches(
        self, watch: Watch, frame: pl.DataFrame, global_ids: Mapping[str, str | None]
    ) -> list[dict[str, Any]]:
        """Rows of ``frame`` that alert ``watch`` now (and remember them as alerted)."""
        query = watch.query
        kept = watch_filter(frame, query)
        if kept.height == 0:
            return []
        scores = score_tracklets(kept, query, self.calibration)
        rows = kept.select(
            "tracklet_id", "version", "camera_id", "t_start", "t_end", "thumbnail"
        ).with_columns(scores["confidence"])
        rejected = set(query.rejected)
        found = []
        for row in rows.iter_rows(named=True):
            tid, confidence = row["tracklet_id"], float(row["confidence"])
            gid = global_ids.get(tid) or None
            if (gid or f"tracklet:{tid}") in rejected or confidence < watch.threshold:
                continue
            before = watch.alerted.get(tid)
            if before is not None and confidence < before + self.realert_margin:
                continue
            watch.alerted[tid] = confidence
            found.append({**row, "global_id": gid, "confidence": confidence})
        return found

    def _publish(self, watch: Watch, row: dict[str, Any]) -> WatchAlert:
        self._seq += 1
        watch.alerts += 1
        self.stats["alerts"] += 1
        alert = WatchAlert(
            seq=self._seq,
            watch_id=watch.watch_id,
            case_id=watch.query.case_id,
            tracklet_id=row["tracklet_id"],
            version=int(row["version"]),
            global_id=row["global_id"],
            camera_id=row["camera_id"],
            t_start=row["t_start"].timestamp(),
            t_end=row["t_end"].timestamp(),
            confidence=row["confidence"],
            threshold=watch.threshold,
            thumbnail=row["thumbnail"],
            raised_at=self._clock(),
        )
        self.history.append(alert)
        for callback in self._subscribers:
            try:
                callback(alert)
            except Exception:
                self.callback_errors += 1
                log.exception("watch alert subscriber %r failed on alert %d", callback, alert.seq)
        return alert
