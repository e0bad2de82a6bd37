"""Fusion: one global identity per person across every camera of a site.

:class:`Fuser` takes tracklet versions as they arrive (any camera, any order of
versions) and keeps each tracklet assigned to a person:

1. **Candidates** are the people seen within ``max_gap_s`` of the tracklet; older ones
   leave the active set, so the work per tracklet does not grow with history.
2. **Geometry** (:func:`~sightline.fusion.evidence.relate`) between the tracklet and
   each candidate's tracklets: a *conflict* (same camera at the same time, two places
   at once, or an unreachable transition) vetoes the candidate; *same* (two cameras
   seeing one ground position at one time) joins at once.
3. **Appearance**: the calibrated probability that the tracklet's mean embedding
   matches the candidate's gallery; the most probable candidate above
   ``min_match_probability`` wins; otherwise a new person is created.
4. **Consistency**: when a later version shows that a tracklet cannot belong to its
   person, it is split off and associated again; when a tracklet is seen together with
   another person's tracklet, the two people are merged (if nothing conflicts).

Every change is a :class:`FusionEvent` and produces :class:`Assignment` rows; ids come
from an injected counter, so replaying the same tracklets in the same order gives the
same identities.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from sightline.config import FusionConfig, TopologyConfig
from sightline.fusion.calibration import AppearanceCalibration
from sightline.fusion.evidence import Relation, TrackletView, TransitTable, relate
from sightline.tracking.core import IdCounter
from sightline.tracking.tracklets import Tracklet

__all__ = ["Assignment", "Fuser", "FusionEvent", "Person"]


@dataclass(frozen=True)
class FusionEvent:
    """One change to the identities: ``new``, ``assign``, ``merge`` or ``split``."""

    seq: int
    ts: float
    kind: str
    global_ids: tuple[str, ...]
    tracklet_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Assignment:
    """Tracklet ``tracklet_id`` belongs to ``global_id`` from event ``seq`` on."""

    tracklet_id: str
    global_id: str
    seq: int
    reason: str


@dataclass
class Person:
    """A global identity: its tracklets (newest version of each) and appearance gallery."""

    global_id: str
    tracklets: dict[str, TrackletView] = field(default_factory=dict)

    @property
    def last_seen(self) -> float:
        """Last observation over all its tracklets (epoch s)."""
        return max(v.t_end for v in self.tracklets.values())

    def gallery(self, size: int) -> np.ndarray:
        """Mean embeddings of its most recent tracklets, ``(<= size, D)``."""
        recent = sorted(self.tracklets.values(), key=lambda v: v.t_end)[-size:]
        return np.stack([v.embedding for v in recent])


class Fuser:
    """Online multi-camera fusion (see the module docstring)."""

    def __init__(
        self,
        config: FusionConfig | None = None,
        calibration: AppearanceCalibration | None = None,
        topology: TopologyConfig | None = None,
        *,
        ids: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or FusionConfig()
        self.calibration = calibration or AppearanceCalibration.load()
        self.transits = TransitTable(topology)
        self._ids = ids or IdCounter()
        self.people: dict[str, Person] = {}
        self._owner: dict[str, str] = {}  # tracklet id -> global id
        self._versions: dict[str, int] = {}
        self._active: set[str] = set()  # people seen within max_gap_s of the newest time
        # people out of the window: only their tracklet ids stay in memory
        self._retired: dict[str, list[str]] = {}
        self._now = float("-inf")
        self._seq = 0
        self.events: list[FusionEvent] = []
        self.assignments: list[Assignment] = []

    # ------------------------------------------------------------------ public

    def ingest(self, tracklets: Iterable[Tracklet]) -> list[Assignment]:
        """Take tracklet versions (idempotent on (tracklet_id, version)); returns the
        assignments they caused."""
        start = len(self.assignments)
        for tracklet in tracklets:
            if self._versions.get(tracklet.tracklet_id, 0) >= tracklet.version:
                continue  # this version or a newer one is already in
            self._versions[tracklet.tracklet_id] = tracklet.version
            view = TrackletView.of(tracklet)
            if len(view.ts) == 0:
                continue
            self._now = max(self._now, view.t_end)
            self._place(view)
            self._expire()
        return self.assignments[start:]

    def global_id(self, tracklet_id: str) -> str | None:
        """The person a tracklet belongs to now (None if unknown)."""
        return self._owner.get(tracklet_id)

    def identities(self) -> dict[str, list[str]]:
        """Every person (retired ones too) and their tracklet ids."""
        out = dict(self._retired)
        out.update({gid: sorted(p.tracklets) for gid, p in self.people.items()})
        return out

    def counts(self) -> dict[str, int]:
        """How many events of each kind so far."""
        out: dict[str, int] = {}
        for event in self.events:
            out[event.kind] = out.get(event.kind, 0) + 1
        return out

    # ------------------------------------------------------------------ placing

    def _place(self, view: TrackletView) -> None:
        owner = self._owner.get(view.tracklet_id)
        if owner is not None and owner not in self.people:
            # its person retired; associate this late version afresh
            self._retired[owner].remove(view.tracklet_id)
            del self._owner[view.tracklet_id]
            owner = None
        if owner is not None:
            person = self.people[owner]
            person.tracklets[view.tracklet_id] = view
            conflict = self._conflicting(view, person)
            if conflict is None:
                self._merge_seen_together(view)
                return
            self._remove(view.tracklet_id)
            self._event(view.t_end, "split", (owner,), (view.tracklet_id,), conflict)
        self._associate(view)
        self._merge_seen_together(view)

    def _associate(self, view: TrackletView) -> None:
        best, best_p, reason = None, self.config.min_match_probability, ""
        candidates = [self.people[g] for g in self._active if self._near_in_time(g, view)]
        if candidates:
            probs = self._appearance(view, candidates)
            for person, p in sorted(zip(candidates, probs, strict=True), key=lambda x: -x[1]):
                relation = self._relation_to(view, person)
                if relation is Relation.CONFLICT:
                    continue
                if relation is Relation.SAME:
                    best, reason = person, "seen together in overlapping views"
                    break
                if p >= best_p and best is None:
                    best, best_p, reason = person, p, f"appearance p={p:.2f}"
        if best is None:
            gid = f"p{self._ids():06d}"
            self.people[gid] = Person(gid)
            self._event(view.t_start, "new", (gid,), (view.tracklet_id,), "no match")
            best, reason = self.people[gid], "new person"
        else:
            self._learn_transit(view, best)
            self._event(view.t_start, "assign", (best.global_id,), (view.tracklet_id,), reason)
        self._add(view, best, reason)

    def _merge_seen_together(self, view: TrackletView) -> None:
        """Merge other people seen at this tracklet's place and time into its person."""
        gid = self._owner[view.tracklet_id]
        for other_gid in sorted(self._active - {gid}):
            other = self.people.get(other_gid)
            if other is None or not self._near_in_time(other_gid, view):
                continue
            together = any(
                relate(view, u, self.config, self.transits) is Relation.SAME
                for u in other.tracklets.values()
            )
            if together and self._compatible(self.people[gid], other):
                self._merge(gid, other_gid, view)

    # ------------------------------------------------------------------ evidence

    def _near_in_time(self, gid: str, view: TrackletView) -> bool:
        person = self.people[gid]
        return person.last_seen >= view.t_start - self.config.max_gap_s

    def _appearance(self, view: TrackletView, people: list[Person]) -> np.ndarray:
        galleries = [p.gallery(self.config.gallery_size) for p in people]
        sims = np.concatenate(galleries) @ view.embedding
        bounds = np.cumsum([0] + [len(g) for g in galleries])
        best = np.array([sims[a:b].max() for a, b in itertools.pairwise(bounds)])
        return self.calibration.probability(best)

    def _relation_to(self, view: TrackletView, person: Person) -> Relation:
        """CONFLICT if any of the person's tracklets rules it out; SAME if one confirms it."""
        same = False
        for other in person.tracklets.values():
            if other.tracklet_id == view.tracklet_id:
                continue
            relation = relate(view, other, self.config, self.transits)
            if relation is Relation.CONFLICT:
                return relation
            same = same or relation is Relation.SAME
        return Relation.SAME if same else Relation.POSSIBLE

    def _conflicting(self, view: TrackletView, person: Person) -> str | None:
        for other in person.tracklets.values():
            if other.tracklet_id == view.tracklet_id:
                continue
            if relate(view, other, self.config, self.transits) is Relation.CONFLICT:
                return f"conflicts with {other.tracklet_id}"
        return None

    def _compatible(self, a: Person, b: Person) -> bool:
        return not any(
            relate(u, v, self.config, self.transits) is Relation.CONFLICT
            for u in a.tracklets.values()
            for v in b.tracklets.values()
            if abs(u.t_start - v.t_start) <= self.config.max_gap_s
        )

    def _learn_transit(self, view: TrackletView, person: Person) -> None:
        before = [v for v in person.tracklets.values() if v.t_end <= view.t_start]
        if before:
            last = max(before, key=lambda v: v.t_end)
            self.transits.observe(last.camera_id, view.camera_id, view.t_start - last.t_end)

    # ------------------------------------------------------------------ bookkeeping

    def _add(self, view: TrackletView, person: Person, reason: str) -> None:
        person.tracklets[view.tracklet_id] = view
        self._owner[view.tracklet_id] = person.global_id
        self._active.add(person.global_id)
        self.assignments.append(Assignment(view.tracklet_id, person.global_id, self._seq, reason))

    def _remove(self, tracklet_id: str) -> None:
        gid = self._owner.pop(tracklet_id)
        person = self.people[gid]
        del person.tracklets[tracklet_id]
        if not person.tracklets:
            del self.people[gid]
            self._active.discard(gid)

    def _merge(self, keep: str, gone: str, view: TrackletView) -> None:
        moved = sorted(self.people[gone].tracklets)
        self._event(view.t_end, "merge", (keep, gone), tuple(moved), "seen together")
        for tid in moved:
            tracklet = self.people[gone].tracklets[tid]
            self.people[keep].tracklets[tid] = tracklet
            self._owner[tid] = keep
            self.assignments.append(Assignment(tid, keep, self._seq, f"merged from {gone}"))
        del self.people[gone]
        self._active.discard(gone)

    def _event(
        self, ts: float, kind: str, gids: tuple[str, ...], tids: tuple[str, ...], reason: str
    ) -> None:
        self._seq += 1
        self.events.append(FusionEvent(self._seq, ts, kind, gids, tids, reason))

    def _expire(self) -> None:
        """Retire people unseen for ``max_gap_s``: they stop being candidates, and only
        their tracklet ids are kept (the store holds the rest)."""
        horizon = self._now - self.config.max_gap_s
        stale = [g for g in self._active if self.people[g].last_seen < horizon]
        for gid in stale:
            self._active.discard(gid)
            self._retired[gid] = sorted(self.people.pop(gid).tracklets)
