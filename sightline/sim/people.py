"""People of a synthetic site: who they are, and where they are at any time.

A trajectory is a list of keyframes (time, ground point) walked at constant speed
between them; a keyframe repeated at a later time is a pause. Children may follow a
guardian a step behind and beside them. Crowd-event participants walk to a spot in
the event's zone, stand there facing its centre, then leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sightline.geometry import point_in_polygon
from sightline.sim.body import Appearance
from sightline.sim.layout import PATH_HALF_WIDTH_M, SiteLayout
from sightline.sim.palette import CLOTHING_COLOURS, HAIR_COLOURS, LOWER_WEIGHTS, SKIN_TONES, vary
from sightline.sim.presets import CrowdEventSpec, Preset

__all__ = ["Person", "PersonState", "make_people", "random_appearance"]

_CHILD_FOLLOW_LAG_S = 0.6
_CHILD_SIDE_OFFSET_M = 0.55


@dataclass
class PersonState:
    """Where people are at a set of times: arrays shaped ``(T,)`` or ``(T, 2)``."""

    present: np.ndarray
    xy: np.ndarray
    heading: np.ndarray
    phase: np.ndarray
    moving: np.ndarray


@dataclass
class Person:
    """One simulated person: identity, appearance, and a keyframed trajectory."""

    person_id: int
    appearance: Appearance
    role: str  # "walker", "event" or "child"
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    still_heading: np.ndarray = field(default_factory=lambda: np.zeros(0))
    guardian: Person | None = None

    @property
    def t_enter(self) -> float:
        """Time (s from site start) the person enters the site."""
        return float(self._keyed().times[0]) + (_CHILD_FOLLOW_LAG_S if self.guardian else 0.0)

    @property
    def t_exit(self) -> float:
        """Time the person leaves the site."""
        return float(self._keyed().times[-1]) + (_CHILD_FOLLOW_LAG_S if self.guardian else 0.0)

    def _keyed(self) -> Person:
        return self.guardian if self.guardian is not None else self

    def state(self, t: np.ndarray) -> PersonState:
        """Position, heading, walking phase and presence at times ``t`` (seconds)."""
        if self.guardian is not None:
            st = self.guardian.state(np.asarray(t) - _CHILD_FOLLOW_LAG_S)
            left = np.stack([-np.sin(st.heading), np.cos(st.heading)], axis=1)
            st.xy = st.xy + left * _CHILD_SIDE_OFFSET_M
            st.phase = st.phase * 1.35  # shorter legs, quicker steps
            return st
        return _keyframe_state(
            self.times, self.points, self.still_heading, np.asarray(t), self.stride_m()
        )

    def stride_m(self) -> float:
        """Length of one full walking cycle."""
        return 0.75 * self.appearance.height_m


def _keyframe_state(
    times: np.ndarray, points: np.ndarray, still_heading: np.ndarray, t: np.ndarray, stride: float
) -> PersonState:
    seg = points[1:] - points[:-1]
    seg_len = np.linalg.norm(seg, axis=1)
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    walking = seg_len > 1e-9
    last = 0.0
    for k in range(len(heading)):  # pauses keep the heading they were given
        if walking[k]:
            last = heading[k]
        else:
            heading[k] = still_heading[k] if np.isfinite(still_heading[k]) else last
    idx = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(seg) - 1)
    cumulative = np.r_[0.0, np.cumsum(seg_len)]
    xy = np.stack([np.interp(t, times, points[:, 0]), np.interp(t, times, points[:, 1])], axis=1)
    return PersonState(
        present=(t >= times[0]) & (t <= times[-1]),
        xy=xy,
        heading=heading[idx],
        phase=2.0 * np.pi * np.interp(t, times, cumulative) / stride,
        moving=walking[idx],
    )


def random_appearance(rng: np.random.Generator, is_child: bool) -> Appearance:
    """A person's look drawn as the simulator draws its people (e.g. for people who are
    not on the site: open-set search queries)."""
    return _appearance(rng, is_child)


def _appearance(rng: np.random.Generator, is_child: bool) -> Appearance:
    names = list(CLOTHING_COLOURS)
    upper = names[rng.integers(len(names))]
    weights = np.array([LOWER_WEIGHTS[n] for n in names])
    lower = names[rng.choice(len(names), p=weights / weights.sum())]
    bag = names[rng.integers(len(names))] if rng.random() < 0.3 else None
    hat = names[rng.integers(len(names))] if rng.random() < 0.2 else None
    height = (
        rng.uniform(1.0, 1.4) if is_child else float(np.clip(rng.normal(1.72, 0.09), 1.5, 1.98))
    )
    return Appearance(
        upper=upper,
        lower=lower,
        upper_rgb=vary(CLOTHING_COLOURS[upper], rng),
        lower_rgb=vary(CLOTHING_COLOURS[lower], rng),
        skin_rgb=np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], dtype=np.float32),
        hair_rgb=np.asarray(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], dtype=np.float32),
        height_m=float(height),
        build=float(rng.uniform(0.85, 1.2)),
        is_child=is_child,
        bag=bag,
        bag_rgb=None if bag is None else vary(CLOTHING_COLOURS[bag], rng),
        hat=hat,
        hat_rgb=None if hat is None else vary(CLOTHING_COLOURS[hat], rng),
    )


def _jitter(point: np.ndarray, rng: np.random.Generator, layout: SiteLayout) -> np.ndarray:
    r = PATH_HALF_WIDTH_M * 0.7 * np.sqrt(rng.random())
    a = rng.uniform(0, 2 * np.pi)
    return np.clip(point + r * np.array([np.cos(a), np.sin(a)]), 0.0, np.array(layout.size))


def _walk(nodes: list[int], layout: SiteLayout, rng: np.random.Generator) -> np.ndarray:
    return np.array([_jitter(layout.nodes[n], rng, layout) for n in nodes])


def _timed(points: np.ndarray, t0: float, speed: float) -> np.ndarray:
    dist = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return t0 + np.r_[0.0, np.cumsum(dist)] / speed


def _walker_keyframes(
    layout: SiteLayout, rng: np.random.Generator, duration: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    entrances, junctions = layout.entrances, layout.junctions
    start, end = rng.choice(entrances, 2, replace=False)
    middle = int(rng.choice(junctions))
    nodes = layout.route(int(start), middle) + layout.route(middle, int(end))[1:]
    points = _walk(nodes, layout, rng)
    speed = float(np.clip(rng.normal(1.35, 0.15), 0.9, 1.8))
    pause_at = nodes.index(middle)
    times = _timed(points, 0.0, speed)
    total = times[-1]
    t0 = rng.uniform(-0.8 * total, duration - 3.0)
    times = times + t0
    still = np.full(len(points), np.nan)
    if rng.random() < 0.3:  # stop for a while at the intermediate junction
        pause = rng.uniform(4.0, 15.0)
        points = np.insert(points, pause_at, points[pause_at], axis=0)
        times = np.r_[times[: pause_at + 1], times[pause_at:] + pause]
        still = np.insert(still, pause_at, rng.uniform(-np.pi, np.pi))
    return times, points, still[: len(points) - 1]


def _standing_spots(
    polygon: np.ndarray, n: int, rng: np.random.Generator, min_gap: float = 0.75
) -> np.ndarray:
    lo, hi = polygon.min(axis=0) + 0.5, polygon.max(axis=0) - 0.5
    spots: list[np.ndarray] = []
    for _ in range(200 * n):
        p = rng.uniform(lo, hi)
        inside = point_in_polygon(p[None], polygon)[0]
        if inside and all(np.linalg.norm(p - q) >= min_gap for q in spots):
            spots.append(p)
            if len(spots) == n:
                return np.array(spots)
    raise ValueError(f"zone too small for {n} people standing {min_gap} m apart")


def _event_keyframes(
    layout: SiteLayout, event: CrowdEventSpec, spot: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = layout.zones[event.zone].mean(axis=0)
    zone_node = int(np.argmin(np.linalg.norm(layout.nodes - centre, axis=1)))
    start, end = rng.choice(layout.entrances, 2, replace=False)
    approach = _walk(layout.route(int(start), zone_node), layout, rng)
    leave = _walk(layout.route(zone_node, int(end)), layout, rng)
    speed = float(np.clip(rng.normal(1.3, 0.12), 0.9, 1.7))
    arrive = event.start_s + rng.uniform(0.0, 0.3) * (event.end_s - event.start_s)
    depart = event.end_s + rng.uniform(0.0, 0.12) * (event.end_s - event.start_s)
    inbound = np.vstack([approach[:-1], spot])
    t_in = _timed(inbound, 0.0, speed)
    t_in = t_in - t_in[-1] + arrive
    outbound = np.vstack([spot, leave[1:]])
    t_out = _timed(outbound, depart, speed)
    face = float(np.arctan2(*(centre - spot)[::-1]) + rng.normal(0.0, 0.4))
    points = np.vstack([inbound, outbound])
    times = np.r_[t_in, t_out]
    still = np.full(len(points) - 1, np.nan)
    still[len(inbound) - 1] = face
    return times, points, still


def make_people(preset: Preset, layout: SiteLayout, seed: int) -> list[Person]:
    """The people of a site: ``preset.n_people`` in all, event participants included."""
    rng = np.random.default_rng([seed, 2])
    n_event = sum(e.n_people for e in preset.crowd_events)
    if n_event > preset.n_people:
        raise ValueError(f"preset {preset.name!r}: crowd events need more people than it has")
    people: list[Person] = []
    for event in preset.crowd_events:
        spots = _standing_spots(layout.zones[event.zone], event.n_people, rng)
        for spot in spots:
            times, points, still = _event_keyframes(layout, event, spot, rng)
            people.append(
                Person(len(people) + 1, _appearance(rng, False), "event", times, points, still)
            )
    while len(people) < preset.n_people:
        guardian_slot = len(people) + 2 <= preset.n_people and rng.random() < 0.15
        alone_child = not guardian_slot and rng.random() < 0.06
        times, points, still = _walker_keyframes(layout, rng, preset.duration_s)
        person = Person(
            len(people) + 1,
            _appearance(rng, alone_child),
            "child" if alone_child else "walker",
            times,
            points,
            still,
        )
        people.append(person)
        if guardian_slot:
            people.append(Person(len(people) + 1, _appearance(rng, True), "child", guardian=person))
    return people
