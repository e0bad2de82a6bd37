"""ByteTrack-style online multi-object tracker, one instance per camera.

Each frame: every track's box is predicted by a Kalman filter; high-score detections
are matched to tracked and lost tracks (IoU, fused with the detection score, optionally
with appearance); low-score detections then rescue tracked people who became hard to
see (ByteTrack's key idea: an occluded person's weak box still extends their track);
one-frame-old tentative tracks are confirmed by a second detection; confident leftover
detections start tentative tracks; tracks lost longer than ``max_lost_s`` end.

Ids come from an injected :class:`IdCounter`, so many cameras' trackers live side by
side in one process without sharing global state. A track gets its id when it is
confirmed, so flicker that never confirms uses no ids.

With the appearance cue on, a track also keeps a *reference*: the appearance of the
person it follows, updated only by detections that look like it. When ``switch_frames``
detections in a row look unlike it (cosine below ``switch_cosine``), the track has
switched to someone else (two people crossed and the boxes were swapped): its id ends
there and the track goes on under a new id, so no tracklet holds two people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from sightline.config import TrackerConfig
from sightline.models.core import Detections, l2_normalise
from sightline.tracking.kalman_filter import KalmanBoxFilter, xywh_to_xyxy, xyxy_to_xywh
from sightline.tracking.matching import appearance_cost, assign, iou_cost

__all__ = ["ByteTracker", "IdCounter", "TrackerStep"]

_EMBEDDING_MOMENTUM = 0.9
_REFERENCE_MOMENTUM = 0.9


class IdCounter:
    """Hands out consecutive track ids starting at ``start``; one per tracker."""

    def __init__(self, start: int = 1) -> None:
        self._next = start

    def __call__(self) -> int:
        value = self._next
        self._next += 1
        return value


class _State(Enum):
    TENTATIVE = "tentative"
    TRACKED = "tracked"
    LOST = "lost"


@dataclass(eq=False)
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    score: float
    last_seen: float
    state: _State = _State.TENTATIVE
    track_id: int = 0
    embedding: np.ndarray | None = None
    reference: np.ndarray | None = None  # the followed person's look (identity switches)
    doubts: list[np.ndarray] = field(default_factory=list)  # detections in a row unlike it

    @property
    def box(self) -> np.ndarray:
        return xywh_to_xyxy(self.mean[None, :4])[0]


@dataclass(frozen=True)
class TrackerStep:
    """What one :meth:`ByteTracker.update` produced (struct of arrays, M rows).

    ``track_ids`` are the confirmed tracks seen in this frame, ``boxes`` their filtered
    xyxy boxes, ``scores`` the matched detections' scores and ``detection_index`` the
    row of the input detections each matched. ``ended`` lists tracks that finished at
    this step (lost for longer than ``max_lost_s``).
    """

    track_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    detection_index: np.ndarray
    ended: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.track_ids)


class ByteTracker:
    """Online tracker for one camera (see the module docstring for the algorithm).

    ``fps`` is the camera's nominal frame rate: timestamps ``ts`` (seconds) passed to
    :meth:`update` are turned into Kalman steps with it, so dropped frames are predicted
    over rather than ignored.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        fps: float = 10.0,
        ids: IdCounter | None = None,
        kalman: KalmanBoxFilter | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.config = config or TrackerConfig()
        self.fps = fps
        self._ids = ids or IdCounter()
        self._kalman = kalman or KalmanBoxFilter()
        self._tracks: list[_Track] = []
        self._started_confirmed: list[tuple[_Track, int]] = []
        self._last_ts: float | None = None

    @property
    def active_ids(self) -> list[int]:
        """Ids of confirmed tracks that have not ended (tracked or lost)."""
        return [t.track_id for t in self._tracks if t.state is not _State.TENTATIVE]

    def update(
        self, detections: Detections, ts: float, embeddings: np.ndarray | None = None
    ) -> TrackerStep:
        """Advance to the frame at ``ts`` seconds with its detections.

        ``embeddings`` (one L2-normalised row per detection) switches the appearance cue
        on for this frame. Timestamps must not go backwards.
        """
        if embeddings is not None and len(embeddings) != len(detections.scores):
            raise ValueError(
                f"{len(embeddings)} embeddings for {len(detections.scores)} detections"
            )
        first_frame = self._last_ts is None
        self._predict(ts)
        cfg = self.config
        scores = detections.scores
        high = np.flatnonzero(scores >= cfg.high_score)
        low = np.flatnonzero((scores >= cfg.low_score) & (scores < cfg.high_score))
        matches: dict[int, tuple[_Track, int]] = {}  # detection index -> track

        pool = [t for t in self._tracks if t.state is not _State.TENTATIVE]
        left_tracks, left_high = self._match(
            pool, detections, high, embeddings, 1 - cfg.match_iou, cfg.fuse_score, matches
        )
        still_tracked = [t for t in left_tracks if t.state is _State.TRACKED]
        unmatched, _ = self._match(
            still_tracked, detections, low, None, 1 - cfg.low_match_iou, False, matches
        )
        for track in unmatched:
            track.state = _State.LOST

        tentative = [t for t in self._tracks if t.state is _State.TENTATIVE]
        dead, left_high = self._match(
            tentative,
            detections,
            left_high,
            None,
            1 - cfg.unconfirmed_match_iou,
            cfg.fuse_score,
            matches,
        )
        switched = self._correct(matches, detections, ts, embeddings)
        self._tracks = [t for t in self._tracks if t not in dead]
        self._start_tracks(detections, left_high, ts, embeddings, confirmed=first_frame)
        ended = switched + self._end_lost(ts)
        return self._step([(t, d) for d, (t, _) in matches.items()], detections, ended)

    def finish(self) -> list[int]:
        """End every confirmed track (the stream is over); returns their ids."""
        ended = self.active_ids
        self._tracks = []
        return ended

    # ------------------------------------------------------------------ stages

    def _predict(self, ts: float) -> None:
        if self._last_ts is not None and ts < self._last_ts:
            raise ValueError(f"timestamps went backwards: {ts} after {self._last_ts}")
        steps = 1.0 if self._last_ts is None else (ts - self._last_ts) * self.fps
        self._last_ts = ts
        if not self._tracks or steps <= 0:
            return
        mean = np.stack([t.mean for t in self._tracks])
        cov = np.stack([t.cov for t in self._tracks])
        lost = np.array([t.state is _State.LOST for t in self._tracks])
        mean[lost, 7] = 0.0  # a lost person's height stops changing
        mean, cov = self._kalman.predict(mean, cov, steps)
        for i, track in enumerate(self._tracks):
            track.mean, track.cov = mean[i], cov[i]

    def _match(
        self,
        tracks: list[_Track],
        detections: Detections,
        candidates: np.ndarray,
        embeddings: np.ndarray | None,
        max_cost: float,
        fuse: bool,
        matches: dict[int, tuple[_Track, int]],
    ) -> tuple[list[_Track], np.ndarray]:
        """Assign ``candidates`` (detection rows) to ``tracks``; return what is left of both."""
        if not tracks or len(candidates) == 0:
            return tracks, candidates
        boxes = np.stack([t.box for t in tracks])
        det_boxes = detections.xyxy[candidates]
        cost = iou_cost(boxes, det_boxes, detections.scores[candidates] if fuse else None)
        if embeddings is not None:
            looks = self._appearance(tracks, boxes, det_boxes, embeddings[candidates])
            cost = np.minimum(cost, looks)
        result = assign(cost, max_cost)
        for r, c in zip(result.rows, result.cols, strict=True):
            matches[int(candidates[c])] = (tracks[r], int(candidates[c]))
        return [tracks[r] for r in result.unmatched_rows], candidates[result.unmatched_cols]

    def _appearance(
        self, tracks: list[_Track], boxes: np.ndarray, det_boxes: np.ndarray, det_emb: np.ndarray
    ) -> np.ndarray:
        known = [t.embedding is not None for t in tracks]
        cost = np.ones((len(tracks), len(det_boxes)))
        if not any(known):
            return cost
        rows = np.flatnonzero(known)
        track_emb = np.stack([tracks[r].embedding for r in rows])  # type: ignore[misc]
        dist = appearance_cost(track_emb, det_emb)
        far = iou_cost(boxes[rows], det_boxes) > 1 - self.config.appearance_proximity_iou
        dist[(dist > self.config.appearance_max_distance) | far] = 1.0
        cost[rows] = dist
        return cost

    def _correct(
        self,
        matches: dict[int, tuple[_Track, int]],
        detections: Detections,
        ts: float,
        embeddings: np.ndarray | None,
    ) -> list[int]:
        """One batched Kalman update for every matched track, then their bookkeeping;
        returns the ids of tracks that switched to another person (they end here)."""
        if not matches:
            return []
        dets = list(matches)
        tracks = [matches[d][0] for d in dets]
        mean, cov = self._kalman.update(
            np.stack([t.mean for t in tracks]),
            np.stack([t.cov for t in tracks]),
            xyxy_to_xywh(detections.xyxy[dets]),
        )
        switched: list[int] = []
        for i, (det, track) in enumerate(zip(dets, tracks, strict=True)):
            track.mean, track.cov = mean[i], cov[i]
            track.score, track.last_seen = float(detections.scores[det]), ts
            if track.state is _State.TENTATIVE:
                track.track_id = self._ids()
            track.state = _State.TRACKED
            if embeddings is not None:
                new = embeddings[det]
                if self._switched(track, new):
                    switched.append(track.track_id)
                    track.track_id = self._ids()
                    track.embedding = track.reference
                if track.embedding is not None:
                    new = _EMBEDDING_MOMENTUM * track.embedding + (1 - _EMBEDDING_MOMENTUM) * new
                track.embedding = l2_normalise(new[None])[0]
        return switched

    def _switched(self, track: _Track, embedding: np.ndarray) -> bool:
        """Whether ``track`` now follows someone else: its last ``switch_frames``
        detections, ``embedding`` included, all looked unlike its reference. The
        reference is then the mean of those detections."""
        limit = self.config.switch_cosine
        if limit is None:
            return False
        if track.reference is None:
            track.reference = np.asarray(embedding, dtype=np.float64)
            return False
        if float(embedding @ track.reference) >= limit:
            track.doubts.clear()
            mixed = _REFERENCE_MOMENTUM * track.reference + (1 - _REFERENCE_MOMENTUM) * embedding
            track.reference = l2_normalise(mixed[None])[0]
            return False
        track.doubts.append(embedding)
        if len(track.doubts) < self.config.switch_frames:
            return False
        track.reference = l2_normalise(np.mean(track.doubts, axis=0)[None])[0]
        track.doubts.clear()
        return True

    def _start_tracks(
        self,
        detections: Detections,
        candidates: np.ndarray,
        ts: float,
        embeddings: np.ndarray | None,
        *,
        confirmed: bool,
    ) -> None:
        fresh = candidates[detections.scores[candidates] >= self.config.new_track_score]
        if len(fresh) == 0:
            return
        means, covs = self._kalman.initiate(xyxy_to_xywh(detections.xyxy[fresh]))
        for i, det in enumerate(fresh):
            track = _Track(means[i], covs[i], float(detections.scores[det]), ts)
            if embeddings is not None:
                track.embedding = np.asarray(embeddings[det], dtype=np.float64)
            if confirmed:
                track.state, track.track_id = _State.TRACKED, self._ids()
                self._started_confirmed.append((track, int(det)))
            self._tracks.append(track)

    def _end_lost(self, ts: float) -> list[int]:
        expired = [
            t
            for t in self._tracks
            if t.state is _State.LOST and ts - t.last_seen > self.config.max_lost_s
        ]
        self._tracks = [t for t in self._tracks if t not in expired]
        return [t.track_id for t in expired]

    def _step(
        self, matched: list[tuple[_Track, int]], detections: Detections, ended: list[int]
    ) -> TrackerStep:
        matched = matched + self._started_confirmed
        self._started_confirmed = []
        matched.sort(key=lambda item: item[0].track_id)
        if not matched:
            return TrackerStep(
                np.zeros(0, np.int64),
                np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32),
                np.zeros(0, np.int64),
                ended,
            )
        return TrackerStep(
            track_ids=np.array([t.track_id for t, _ in matched], dtype=np.int64),
            boxes=np.stack([t.box for t, _ in matched]).astype(np.float32),
            scores=detections.scores[[d for _, d in matched]].astype(np.float32),
            detection_index=np.array([d for _, d in matched], dtype=np.int64),
            ended=ended,
        )
