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
   matches the candidate's gallery, with the estimated heights weighed in (a height
   log likelihood ratio added to the appearance log-odds); the most probable candidate above
   ``min_match_probability`` wins; otherwise a new person is created.
4. **Consistency**: when a later version shows that a tracklet cannot belong to its
   person, it is split off and associated again; when a tracklet is seen together with
   another person's tracklet, the two people are merged (if nothing conflicts).
5. **Re-clustering**: every ``recluster_every_s`` of site time, the people around the
   tracklets that arrived since the last time (their own and those they resemble) are
   clustered again from their tracklets, all at once
   (:func:`~sightline.fusion.recluster.cluster`): a greedy early decision that later
   evidence contradicts is undone, and tracklets move between people, each move an event.

Every change is a :class:`FusionEvent` and produces :class:`Assignment` rows; ids come
from an injected counter, so replaying the same tracklets in the same order gives the
same identities.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import expit

from sightline.config import FusionConfig, TopologyConfig
from sightline.fusion.calibration import AppearanceCalibration, height_log_ratio
from sightline.fusion.evidence import (
    Relation,
    TrackletView,
    TransitTable,
    relate,
    relation_matrix,
)
from sightline.fusion.recluster import cluster, components
from sightline.tracking.core import IdCounter
from sightline.tracking.tracklets import Tracklet

__all__ = ["Assignment", "Fuser", "FusionEvent", "Person"]

_TOP_K = 8  # tracklets most similar in appearance whose people are considered
_RECENT_EVENTS = 1000  # events kept in memory for health; the store has them all
_EXPIRY_EVERY_S = 5.0  # how often (site time) people out of the window are retired


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
    """A global identity: its tracklets (newest version of each) within the active window."""

    global_id: str
    number: int
    tracklets: dict[str, TrackletView] = field(default_factory=dict)
    last_seen: float = float("-inf")


class _Slots:
    """Active tracklets in growable arrays, so candidate search is a few numpy operations.

    Slot ``i`` holds one tracklet's mean embedding, estimated height, time span, camera
    and owner (the person's number); freed slots are reused.
    """

    def __init__(self, dim: int = 128, capacity: int = 1024) -> None:
        self.emb = np.zeros((capacity, dim), np.float32)
        self.height = np.full(capacity, np.nan)
        self.t0 = np.zeros(capacity)
        self.t1 = np.zeros(capacity)
        self.box = np.zeros((capacity, 4))  # ground extent: xmin, ymin, xmax, ymax
        self.cam = np.full(capacity, -1, np.int64)
        self.owner = np.full(capacity, -1, np.int64)
        self.valid = np.zeros(capacity, bool)
        self.slot_of: dict[str, int] = {}
        self.tid: list[str | None] = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self.top = 0  # slots at or above are unused

    def put(self, view: TrackletView, camera: int, owner: int) -> None:
        slot = self.slot_of.get(view.tracklet_id)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self.slot_of[view.tracklet_id] = slot
            self.tid[slot] = view.tracklet_id
            self.top = max(self.top, slot + 1)
        if self.emb.shape[1] != len(view.embedding):
            self.emb = np.zeros((len(self.valid), len(view.embedding)), np.float32)
        self.emb[slot] = view.embedding
        self.height[slot] = view.height_m
        self.t0[slot], self.t1[slot] = view.t_start, view.t_end
        self.box[slot, :2], self.box[slot, 2:] = view.xy.min(axis=0), view.xy.max(axis=0)
        self.cam[slot], self.owner[slot], self.valid[slot] = camera, owner, True

    def drop(self, tracklet_id: str) -> None:
        slot = self.slot_of.pop(tracklet_id, None)
        if slot is not None:
            self.valid[slot] = False
            self.tid[slot] = None
            self._free.append(slot)

    def _grow(self) -> None:
        n = len(self.valid)
        self.emb = np.concatenate([self.emb, np.zeros_like(self.emb)])
        for name in ("height", "t0", "t1", "box", "cam", "owner", "valid"):
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, np.zeros_like(arr)]))
        self.tid += [None] * n
        self._free = list(range(2 * n - 1, n - 1, -1))


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
        self.people: dict[str, Person] = {}  # active: candidates for new tracklets
        self._by_number: dict[int, Person] = {}  # active people by number (slot owners)
        self._retired: dict[str, list[str]] = {}  # out of the window: tracklet ids only
        self._owner: dict[str, str] = {}  # tracklet id -> global id
        self._versions: dict[str, int] = {}
        self._cameras: dict[str, int] = {}
        self._slots = _Slots()
        self._now = float("-inf")
        self._last_expiry = float("-inf")
        self._last_recluster = float("-inf")
        self._dirty: set[str] = set()  # tracklets placed since the last re-clustering
        self._seq = 0
        # what the last ingest call changed (the store keeps the full history)
        self.last_events: list[FusionEvent] = []
        self._assignments: list[Assignment] = []
        self.recent_events: deque[FusionEvent] = deque(maxlen=_RECENT_EVENTS)
        self._counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ public

    def ingest(self, tracklets: Iterable[Tracklet]) -> list[Assignment]:
        """Take tracklet versions (idempotent on (tracklet_id, version)); returns the
        assignments they caused (their events are in :attr:`last_events`)."""
        self._assignments, self.last_events = [], []
        for tracklet in tracklets:
            if self._versions.get(tracklet.tracklet_id, 0) >= tracklet.version:
                continue  # this version or a newer one is already in
            self._versions[tracklet.tracklet_id] = tracklet.version
            view = TrackletView.of(tracklet)
            if len(view.ts) == 0:
                continue
            self._now = max(self._now, view.t_end)
            self._place(view)
            if self._now - self._last_expiry >= _EXPIRY_EVERY_S:
                self._expire()
            every = self.config.recluster_every_s
            if every > 0:  # with re-clustering off, nothing may pile up in _dirty
                self._dirty.add(view.tracklet_id)
                if self._now - self._last_recluster >= every:
                    self._recluster()
        return self._assignments

    def known_version(self, tracklet_id: str) -> int:
        """Newest version of the tracklet ingested so far (0 if none)."""
        return self._versions.get(tracklet_id, 0)

    def global_id(self, tracklet_id: str) -> str | None:
        """The person a tracklet belongs to now (None if unknown)."""
        return self._owner.get(tracklet_id)

    def identities(self) -> dict[str, list[str]]:
        """Every person (retired ones too) and their tracklet ids."""
        out = {gid: tids for gid, tids in self._retired.items() if tids}
        out.update({gid: sorted(p.tracklets) for gid, p in self.people.items()})
        return out

    def counts(self) -> dict[str, int]:
        """How many events of each kind so far."""
        return dict(self._counts)

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
            self._add(view, person, None)
            conflict = self._conflict_in(view, person)
            if conflict is None:
                self._merge_seen_together(view)
                return
            self._remove(view.tracklet_id)
            self._event(view.t_end, "split", (owner,), (view.tracklet_id,), conflict)
        self._associate(view)
        self._merge_seen_together(view)

    def _associate(self, view: TrackletView) -> None:
        best, reason = self._best_candidate(view)
        if best is None:
            number = self._ids()
            gid = f"p{number:06d}"
            best = self.people[gid] = self._by_number[number] = Person(gid, number)
            self._event(view.t_start, "new", (gid,), (view.tracklet_id,), "no match")
            reason = "new person"
        else:
            self._learn_transit(view, best)
            self._event(view.t_start, "assign", (best.global_id,), (view.tracklet_id,), reason)
        self._add(view, best, reason)

    def _best_candidate(self, view: TrackletView) -> tuple[Person | None, str]:
        """The person seen with this tracklet, else the most probable by appearance."""
        s = self._slots
        live = s.valid[: s.top]
        if not live.any():
            return None, ""
        sims = np.where(live, s.emb[: s.top] @ view.embedding, -np.inf)
        k = min(_TOP_K, int(live.sum()))
        top = np.argpartition(-sims, k - 1)[:k]
        probs = self._probability(sims[top], view.height_m, s.height[top])
        together = self._seen_nearby(view)
        seen_with: list[tuple[float, Person]] = []
        for number in dict.fromkeys(s.owner[: s.top][together].tolist()):
            person = self._by_number[number]
            if self._relation_to(view, person) is Relation.SAME:
                seen_with.append((self._looks_like(view, person), person))
        # in a crowd several people stand within the radius: appearance picks among them
        plausible = [c for c in seen_with if c[0] >= self.config.min_probability_together]
        if plausible:
            p, person = max(plausible, key=lambda c: c[0])
            return person, f"seen together in overlapping views (appearance p={p:.2f})"
        likely: dict[int, float] = {}
        for slot, p in sorted(zip(top.tolist(), probs.tolist(), strict=True), key=lambda x: -x[1]):
            if p >= self.config.min_match_probability:
                likely.setdefault(int(s.owner[slot]), p)
        for number, p in likely.items():  # most probable first
            person = self._by_number[number]
            if self._relation_to(view, person) is not Relation.CONFLICT:
                return person, f"appearance p={p:.2f}"
        return None, ""

    def _merge_seen_together(self, view: TrackletView) -> None:
        """Merge other people seen at this tracklet's place and time into its person."""
        s = self._slots
        gid = self._owner[view.tracklet_id]
        mine = self.people[gid].number
        near = self._seen_nearby(view) & (s.owner[: s.top] != mine)
        for slot in np.flatnonzero(near):
            number = int(s.owner[slot])  # read now: an earlier merge may have moved it
            if number == mine:
                continue
            other = self._by_number.get(number)
            tid = s.tid[slot]
            if other is None or other.global_id not in self.people or tid is None:
                continue
            seen = relate(view, other.tracklets[tid], self.config, self.transits)
            if (
                seen is Relation.SAME
                and self._looks_like(view, other) >= self.config.min_probability_together
                and self._compatible(self.people[gid], other)
            ):
                self._merge(gid, other.global_id, view)

    # ------------------------------------------------------------------ evidence

    def _camera(self, view: TrackletView) -> int:
        return self._cameras.setdefault(view.camera_id, len(self._cameras))

    def _seen_nearby(self, view: TrackletView) -> np.ndarray:
        """Slots of other cameras sharing time with ``view`` whose ground extent comes
        within ``overlap_radius_m`` of its own (the only ones that can be *same*)."""
        s, n, r = self._slots, self._slots.top, self.config.overlap_radius_m
        lo, hi = view.xy.min(axis=0) - r, view.xy.max(axis=0) + r
        box = s.box[:n]
        return (
            s.valid[:n]
            & (s.t0[:n] < view.t_end)
            & (s.t1[:n] > view.t_start)
            & (s.cam[:n] != self._camera(view))
            & (box[:, 0] <= hi[0])
            & (box[:, 2] >= lo[0])
            & (box[:, 1] <= hi[1])
            & (box[:, 3] >= lo[1])
        )

    def _probability(
        self, similarity: np.ndarray, height: float, heights: np.ndarray
    ) -> np.ndarray:
        """Match probability of ``view``-like (``height``) against tracklets with cosine
        ``similarity`` and ``heights``: appearance log-odds plus the height evidence."""
        return expit(self._log_odds(similarity, height, heights))

    def _log_odds(
        self, similarity: np.ndarray, height: np.ndarray | float, heights: np.ndarray
    ) -> np.ndarray:
        """Match log-odds: calibrated appearance plus the height evidence."""
        return self.calibration.log_odds(similarity) + self._height_term(height, heights)

    def _height_term(
        self, height: np.ndarray | float, heights: np.ndarray | float
    ) -> np.ndarray | float:
        """The height evidence added to the appearance log-odds (0 when not used)."""
        c = self.config
        if not c.use_height:
            return 0.0
        return height_log_ratio(
            heights, height, c.height_noise_m, c.height_spread_m, c.height_outlier_probability
        )

    def _looks_like(self, view: TrackletView, person: Person) -> float:
        """Calibrated probability that ``view`` is the person (best tracklet)."""
        others = [v for v in person.tracklets.values() if v.tracklet_id != view.tracklet_id]
        if not others:
            return 0.0
        sims = np.stack([v.embedding for v in others]) @ view.embedding
        heights = np.array([v.height_m for v in others])
        return float(self._probability(sims, view.height_m, heights).max())

    def _relation_to(self, view: TrackletView, person: Person) -> Relation:
        """CONFLICT if the person's tracklets rule it out; SAME if one confirms it.

        Only the tracklets sharing time with ``view`` and the nearest one before and
        after it are compared: reachability from further away follows from those.
        """
        same = False
        for other in _neighbours(view, person):
            relation = relate(view, other, self.config, self.transits)
            if relation is Relation.CONFLICT:
                return relation
            same = same or relation is Relation.SAME
        return Relation.SAME if same else Relation.POSSIBLE

    def _conflict_in(self, view: TrackletView, person: Person) -> str | None:
        for other in _neighbours(view, person):
            if relate(view, other, self.config, self.transits) is Relation.CONFLICT:
                return f"conflicts with {other.tracklet_id}"
        return None

    def _compatible(self, a: Person, b: Person) -> bool:
        small, large = (a, b) if len(a.tracklets) <= len(b.tracklets) else (b, a)
        return all(
            self._relation_to(v, large) is not Relation.CONFLICT for v in small.tracklets.values()
        )

    def _learn_transit(self, view: TrackletView, person: Person) -> None:
        before = [v for v in person.tracklets.values() if v.t_end <= view.t_start]
        if before:
            last = max(before, key=lambda v: v.t_end)
            self.transits.observe(last.camera_id, view.camera_id, view.t_start - last.t_end)

    # ------------------------------------------------------------------ re-clustering

    def _recluster(self) -> None:
        """Cluster the people around the tracklets placed since the last time again, all
        at once, and move tracklets to match (ids kept where the groups overlap)."""
        self._last_recluster = self._now
        people = self._recluster_scope()
        self._dirty.clear()
        views = [v for p in people for _, v in sorted(p.tracklets.items())]
        if len(views) < 2:
            return
        c = self.config
        embeddings = np.stack([v.embedding for v in views])
        heights = np.array([v.height_m for v in views])
        log_odds = self._log_odds(embeddings @ embeddings.T, heights[:, None], heights[None, :])
        # geometry is compared frame by frame only where appearance (plus the bonus for
        # being seen together) could ever join two tracklets: within one component
        reachable = components(log_odds + c.together_log_odds > c.recluster_min_log_odds)
        needed = reachable[:, None] == reachable[None, :]
        conflict, same = relation_matrix(views, c, self.transits, needed)
        groups = cluster(log_odds + c.together_log_odds * same, conflict, c.recluster_min_log_odds)
        # each group keeps the id of the person it shares most observations with
        weight = np.zeros((len(groups), len(people)))
        column = {p.global_id: i for i, p in enumerate(people)}
        for g, members in enumerate(groups):
            for i in members:
                weight[g, column[self._owner[views[i].tracklet_id]]] += len(views[i].ts)
        rows, cols = linear_sum_assignment(weight, maximize=True)
        keeps = {
            int(g): people[int(p)] for g, p in zip(rows, cols, strict=True) if weight[g, p] > 0
        }
        for g, members in enumerate(groups):
            self._regroup([views[i] for i in members], keeps.get(g))

    def _recluster_scope(self) -> list[Person]:
        """The people to cluster again: those owning a tracklet placed since the last
        time that is *unsettled*, and the people it could join (appearance, or appearance
        plus the bonus for being seen together).

        A new tracklet is settled when it could join no other person and matches every
        tracklet of its own: clustering again could not change its person then.
        """
        s, c = self._slots, self.config
        slots = np.array([s.slot_of[t] for t in sorted(self._dirty) if t in s.slot_of], np.int64)
        if not len(slots):
            return []
        appearance = self.calibration.log_odds(s.emb[slots] @ s.emb[: s.top].T)
        # the height term is computed only where it could matter: for the new tracklets'
        # own people, and where appearance plus the largest height term could link
        owners = s.owner[: s.top]
        own = (owners == owners[slots, None]) & s.valid[: s.top]
        most = float(self._height_term(0.0, 0.0))  # equal heights: the largest term
        near = appearance + max(most, 0.0) + c.together_log_odds > c.recluster_min_log_odds
        cols = np.flatnonzero(s.valid[: s.top] & (near | own).any(axis=0))
        log_odds = appearance[:, cols] + self._height_term(
            s.height[slots, None], s.height[None, cols]
        )
        own = own[:, cols]
        reach = log_odds + c.together_log_odds > c.recluster_min_log_odds
        itself = cols[None, :] == slots[:, None]
        own &= ~itself
        reach &= ~itself
        joins_another = (reach & ~own).any(axis=1)
        weak_in_own = (own & (log_odds <= c.recluster_min_log_odds)).any(axis=1)
        unsettled = joins_another | weak_in_own
        if not unsettled.any():
            return []
        found = set(owners[slots[unsettled]].tolist())
        found |= set(owners[cols[reach[unsettled].any(axis=0)]].tolist())
        return [self._by_number[n] for n in sorted(found) if n in self._by_number]

    def _regroup(self, views: list[TrackletView], keep: Person | None) -> None:
        """Make ``views`` one person: ``keep`` (if given) or a new one; each person the
        tracklets come from is merged in whole, or split."""
        target = keep
        sources: dict[str, list[TrackletView]] = {}
        for view in views:
            owner = self._owner[view.tracklet_id]
            if target is None or owner != target.global_id:
                sources.setdefault(owner, []).append(view)
        if not sources:
            return
        if target is None:
            number = self._ids()
            target = self.people[f"p{number:06d}"] = Person(f"p{number:06d}", number)
            self._by_number[number] = target
        gid = target.global_id
        for source, moved in sorted(sources.items()):
            whole = len(moved) == len(self.people[source].tracklets)
            kind = "merge" if whole else "split"
            tids = tuple(v.tracklet_id for v in moved)
            self._event(self._now, kind, (gid, source), tids, "re-clustered")
            for view in moved:
                self._remove(view.tracklet_id)
                self._add(view, target, f"re-clustered from {source}")

    # ------------------------------------------------------------------ bookkeeping

    def _add(self, view: TrackletView, person: Person, reason: str | None) -> None:
        """Put (a newer version of) a tracklet into ``person``; ``reason`` None: no change
        of owner, so no assignment row."""
        person.tracklets[view.tracklet_id] = view
        person.last_seen = max(person.last_seen, view.t_end)
        self._owner[view.tracklet_id] = person.global_id
        self._slots.put(view, self._camera(view), person.number)
        if reason is not None:
            self._assignments.append(
                Assignment(view.tracklet_id, person.global_id, self._seq, reason)
            )

    def _remove(self, tracklet_id: str) -> None:
        gid = self._owner.pop(tracklet_id)
        person = self.people[gid]
        del person.tracklets[tracklet_id]
        self._slots.drop(tracklet_id)
        if not person.tracklets:
            del self.people[gid]
            del self._by_number[person.number]
        else:
            person.last_seen = max(v.t_end for v in person.tracklets.values())

    def _merge(self, keep: str, gone: str, view: TrackletView) -> None:
        moved = sorted(self.people[gone].tracklets)
        self._event(view.t_end, "merge", (keep, gone), tuple(moved), "seen together")
        target = self.people[keep]
        for tid in moved:
            self._add(self.people[gone].tracklets[tid], target, f"merged from {gone}")
        del self._by_number[self.people.pop(gone).number]

    def _event(
        self, ts: float, kind: str, gids: tuple[str, ...], tids: tuple[str, ...], reason: str
    ) -> None:
        self._seq += 1
        event = FusionEvent(self._seq, ts, kind, gids, tids, reason)
        self.last_events.append(event)
        self.recent_events.append(event)
        self._counts[kind] += 1

    def _expire(self) -> None:
        """Retire people unseen for ``max_gap_s``: they stop being candidates, and only
        their tracklet ids are kept (the store holds the rest)."""
        self._last_expiry = self._now
        horizon = self._now - self.config.max_gap_s
        for gid in [g for g, p in self.people.items() if p.last_seen < horizon]:
            person = self.people.pop(gid)
            del self._by_number[person.number]
            for tid in person.tracklets:
                self._slots.drop(tid)
            self._retired[gid] = sorted(person.tracklets)


def _neighbours(view: TrackletView, person: Person) -> list[TrackletView]:
    """The person's tracklets sharing time with ``view``, and the nearest before and after."""
    out, before, after = [], None, None
    for other in person.tracklets.values():
        if other.tracklet_id == view.tracklet_id:
            continue
        if other.t_end <= view.t_start:
            if before is None or other.t_end > before.t_end:
                before = other
        elif other.t_start >= view.t_end:
            if after is None or other.t_start < after.t_start:
                after = other
        else:
            out.append(other)
    return out + [v for v in (before, after) if v is not None]
