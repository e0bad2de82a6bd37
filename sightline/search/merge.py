"""Ranking candidates, and merging partial results (one per store partition) into one.

A candidate's confidence is that of its best sighting (see
:mod:`sightline.search.engine` for why the maximum), so merging is exact: a candidate's
merged confidence is the best of its partial ones, and if each partial result kept its
top ``k`` candidates the merged top ``k`` is the true top ``k``. Its sightings, though,
are complete only if every partition that saw it kept it: run partial searches with a
larger ``limit`` than the final cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sightline.search.results import CameraReach, Candidate, SearchResult, Sighting

__all__ = ["merge_results", "rank_candidates"]

_SAME_QUERY = ("case_id", "reason", "requested_by", "start", "end", "min_confidence")


def _order(candidate: Candidate) -> tuple[int, float, str]:
    """Fewer colour contradictions first, then higher confidence, then key (stable)."""
    return (candidate.colour_contradictions, -candidate.confidence, candidate.key)


def rank_candidates(
    candidates: Iterable[Candidate], limit: int, min_confidence: float
) -> list[Candidate]:
    """The best ``limit`` candidates in rank order, with ``rank`` and ``good_match`` set."""
    ordered = sorted(candidates, key=_order)[:limit]
    return [
        c.model_copy(update={"rank": i + 1, "good_match": c.confidence >= min_confidence})
        for i, c in enumerate(ordered)
    ]


def _union(a: Iterable[Sighting], b: Iterable[Sighting]) -> list[Sighting]:
    """Sightings of both, one per tracklet (the scored/higher-confidence one), by time."""
    best: dict[str, Sighting] = {}
    for s in (*a, *b):
        kept = best.get(s.tracklet_id)
        if kept is None or (s.confidence or -1.0) > (kept.confidence or -1.0):
            best[s.tracklet_id] = s
    return sorted(best.values(), key=lambda s: (s.t_start, s.camera_id, s.tracklet_id))


def _merge_candidate(a: Candidate, b: Candidate) -> Candidate:
    best = a if _order(a) <= _order(b) else b
    return best.model_copy(
        update={
            "sightings": _union(a.sightings, b.sightings),
            "route": _union(a.route, b.route),
            "confirmed": a.confirmed or b.confirmed,
        }
    )


def _merge_reach(results: Sequence[SearchResult]) -> list[CameraReach]:
    best: dict[str, CameraReach] = {}
    for r in results:
        for c in r.camera_reach:
            if c.camera_id not in best or c.reach_s < best[c.camera_id].reach_s:
                best[c.camera_id] = c
    return sorted(best.values(), key=lambda c: (c.reach_s, c.camera_id))


def merge_results(
    results: Sequence[SearchResult], max_candidates: int | None = None
) -> SearchResult:
    """One result from partial results of the same query (e.g. one per partition).

    Candidates with the same key are merged (best confidence, union of sightings and
    route), re-ranked and cut at ``max_candidates`` (default: the query's). Counts add
    up, warnings are kept once each, camera reach keeps each camera's soonest.
    """
    if not results:
        raise ValueError("merge_results needs at least one result")
    first = results[0]
    for r in results[1:]:
        differ = [f for f in _SAME_QUERY if getattr(r, f) != getattr(first, f)]
        if differ:
            raise ValueError(f"results of different queries cannot be merged (differ in {differ})")
    merged: dict[str, Candidate] = {}
    for r in results:
        for c in r.candidates:
            merged[c.key] = _merge_candidate(merged[c.key], c) if c.key in merged else c
    counts: dict[str, int] = {}
    for r in results:
        for name, n in r.counts.items():
            counts[name] = counts.get(name, 0) + n
    limit = max_candidates or first.max_candidates
    ranked = rank_candidates(merged.values(), limit, first.min_confidence)
    return first.model_copy(
        update={
            "candidates": ranked,
            "no_good_match": not any(c.good_match for c in ranked),
            "camera_reach": _merge_reach(results),
            "counts": counts,
            "warnings": list(dict.fromkeys(w for r in results for w in r.warnings)),
            "partitions": sum(r.partitions for r in results),
            "max_candidates": limit,
        }
    )
