"""Run a search: over tracklet rows in memory, or over the store.

:func:`search_tracklets` is the whole search over one frame of tracklet rows (one store
partition or many): embed the query's photos, keep the newest version of each tracklet,
attach current identities, filter (:mod:`~sightline.search.filters`), drop rejected
candidates, score every tracklet (:mod:`~sightline.search.scoring`), aggregate per
candidate, rank, and attach sightings and the route.

**Aggregation per identity: the best sighting.** A candidate's confidence is the
confidence of its best tracklet (fewest colour contradictions, then highest confidence),
not a noisy-or over its tracklets: the tracklets of one fused identity were joined
*because* they look alike to the same embedder, so their evidence is not independent,
and a noisy-or would make anyone seen often (a guard, a shop assistant) look more certain
than anyone seen once, which is exactly the false "good match" open-set search must
avoid. The maximum keeps the calibrated meaning of one sighting ("this sighting is the
person with probability p"), and it merges exactly across partitions
(:func:`~sightline.search.merge.merge_results`).

:func:`search_store` reads the store (pruning partitions by date and camera), resolves
refinement vectors from it, calls :func:`search_tracklets` and attaches each
candidate's full route in the window (every camera) from the sightings table. For a
fan-out, list :func:`store_partitions`, run :func:`search_store` with
``partitions=[p]`` and a generous ``limit`` per partition, then
:func:`~sightline.search.merge.merge_results` and :func:`attach_routes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl

from sightline.search.filters import apply_filters, in_window, observations
from sightline.search.index import EmbeddingIndex
from sightline.search.merge import rank_candidates
from sightline.search.photo_adapter import PhotoAdapter
from sightline.search.photos import Detect, Embed, embed_query
from sightline.search.query import SearchQuery
from sightline.search.refine import candidate_key, current_identities, expansion_vectors
from sightline.search.results import CameraReach, Candidate, SearchResult, Sighting
from sightline.search.scoring import CHILD_MAX_HEIGHT_M, SearchCalibration, score_tracklets
from sightline.store.queries import (
    MAX_TRACKLET_SPAN,
    StoreLike,
    latest_identities,
    scan,
    sightings,
)
from sightline.tracking.sink import latest_versions, with_tracklet_schema

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "attach_routes",
    "expand_from_store",
    "load_tracklets",
    "search_store",
    "search_tracklets",
    "store_partitions",
    "with_optional_columns",
]

REQUIRED_COLUMNS = (
    "tracklet_id",
    "camera_id",
    "version",
    "t_start",
    "t_end",
    "ts",
    "foot_world",
    "embeddings",
    "upper_colour",
    "upper_colour_confidence",
    "lower_colour",
    "lower_colour_confidence",
    "height_m",
    "quality",
    "thumbnail",
    "hat_probability",
    "bag_probability",
)
"""Tracklet columns a search reads (a subset of ``TRACKLET_SCHEMA``)."""

OPTIONAL_COLUMNS = ("hat_probability", "bag_probability")
"""Required columns a frame may lack (tracklets recorded before they existed): null."""

_ROUTE_INPUT = (
    "key",
    "tracklet_id",
    "camera_id",
    "t_start",
    "t_end",
    "ts",
    "foot_world",
    "thumbnail",
)
DEFAULT_SHORTLIST = 500
"""Tracklets an index shortlists for full scoring (before area/reachability filters)."""

_SCORES = ("confidence", "appearance_similarity", "description_match", "colour_contradictions")


# --------------------------------------------------------------------------- in memory


def with_optional_columns(tracklets: pl.DataFrame) -> pl.DataFrame:
    """``tracklets`` with the :data:`OPTIONAL_COLUMNS` it lacks added as nulls."""
    return with_tracklet_schema(tracklets, OPTIONAL_COLUMNS)


def _prepare(tracklets: pl.DataFrame, identities: pl.DataFrame | None) -> pl.DataFrame:
    tracklets = with_optional_columns(tracklets)
    missing = [c for c in REQUIRED_COLUMNS if c not in tracklets.columns]
    if missing:
        raise ValueError(f"tracklets lack columns {missing}; expected TRACKLET_SCHEMA")
    return (
        latest_versions(tracklets.select(REQUIRED_COLUMNS))
        .join(current_identities(identities), on="tracklet_id", how="left")
        .with_columns(candidate_key().alias("key"))
    )


def _ground(rows: pl.DataFrame) -> pl.DataFrame:
    """Per tracklet: median, first and last ground point."""
    x, y = pl.col("x"), pl.col("y")
    return (
        observations(rows)
        .sort("tracklet_id", "t")
        .group_by("tracklet_id")
        .agg(
            x.median().alias("world_x"),
            y.median().alias("world_y"),
            x.first().alias("first_x"),
            y.first().alias("first_y"),
            x.last().alias("last_x"),
            y.last().alias("last_y"),
        )
    )


def _as_sighting(row: dict) -> Sighting:
    values = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
    values["colour_contradictions"] = values.get("colour_contradictions") or 0
    return Sighting.model_validate({k: values.get(k) for k in Sighting.model_fields})


def _candidates(
    window: pl.DataFrame, scored: pl.DataFrame, query: SearchQuery, limit: int
) -> list[Candidate]:
    """The best ``limit`` candidates of ``scored`` with their sightings (scored rows) and
    route (every row of ``window`` of the candidate)."""
    ranking = ("key", "global_id", "tracklet_id", "colour_contradictions", "confidence")
    best = (
        scored.select(ranking)  # sort without the heavy columns
        .sort(["colour_contradictions", "confidence", "key"], descending=[False, True, False])
        .group_by("key", maintain_order=True)
        .first()
        .head(limit)
    )
    keys = best["key"].to_list()
    rows = window.select(_ROUTE_INPUT).filter(pl.col("key").is_in(keys))
    rows = rows.join(scored.select("tracklet_id", *_SCORES), on="tracklet_id", how="left").join(
        _ground(rows), on="tracklet_id", how="left"
    )
    rows = rows.sort("t_start", "camera_id", "tracklet_id")
    route: dict[str, list[Sighting]] = {k: [] for k in keys}
    for row in rows.iter_rows(named=True):
        route[row["key"]].append(_as_sighting(row))
    confirmed = set(query.confirmed)
    return [
        Candidate(
            key=b["key"],
            global_id=b["global_id"],
            rank=0,
            confidence=float(b["confidence"]),
            good_match=False,
            colour_contradictions=int(b["colour_contradictions"]),
            confirmed=b["key"] in confirmed,
            best_tracklet_id=b["tracklet_id"],
            sightings=[s for s in route[b["key"]] if s.confidence is not None],
            route=route[b["key"]],
        )
        for b in best.iter_rows(named=True)
    ]


def _warnings(query: SearchQuery, scored: pl.DataFrame) -> list[str]:
    notes = list(query.photo_warnings)
    for item in query.description.accessories if query.description is not None else []:
        unread = scored[f"{item}_probability"].null_count()
        if unread:
            notes.append(
                f"{unread} of {scored.height} tracklet(s) do not record a {item} (tracked "
                "before hats and bags were read): it counts as unknown for them"
            )
    missing = [k for k in query.confirmed if k not in query.expansion]
    if missing:
        notes.append(
            f"confirmed {missing}: no stored samples were added to the query "
            "(refine with tracklets, or search the store)"
        )
    if query.photo_child is not None and len(query.query_vectors()):
        who = "a child" if query.photo_child >= 0.5 else "an adult"
        notes.append(
            f"the photos read as {who} (P(child) {query.photo_child:.2f}): candidates "
            f"measured at the other side of {CHILD_MAX_HEIGHT_M} m rank lower"
        )
    if len(query.query_vectors()):
        blind = scored["appearance_similarity"].null_count()
        if blind:
            notes.append(f"{blind} tracklet(s) have no stored embeddings: scored at the prior")
    return notes


def _reach(outcome_reach: pl.DataFrame | None) -> list[CameraReach]:
    if outcome_reach is None:
        return []
    return [CameraReach.model_validate(r) for r in outcome_reach.iter_rows(named=True)]


def search_tracklets(
    tracklets: pl.DataFrame,
    identities: pl.DataFrame | None,
    query: SearchQuery,
    embed: Embed | None = None,
    *,
    detect: Detect | None = None,
    adapter: PhotoAdapter | None = None,
    calibration: SearchCalibration | None = None,
    limit: int | None = None,
) -> SearchResult:
    """Search tracklet rows held in memory (see the module docstring).

    ``tracklets`` has :data:`REQUIRED_COLUMNS` (any versions; the newest is used);
    ``identities`` is the identities log or ``(tracklet_id, global_id)`` (None: nothing
    fused yet, every tracklet is its own candidate). ``embed`` (and optionally
    ``detect`` and the photo ``adapter``, see :meth:`PhotoAdapter.builtin`) turn the
    query's photos into embeddings. ``limit`` overrides the query's
    ``max_candidates`` (a partial search for a merge wants more).
    """
    query = embed_query(query, embed, detect, adapter)
    calibration = calibration or SearchCalibration.load()
    limit = query.max_candidates if limit is None else limit
    frame = _prepare(tracklets, identities)
    outcome = apply_filters(frame, query)
    rejected = list(query.rejected)
    kept = outcome.frame.filter(~pl.col("key").is_in(rejected))
    counts = {**outcome.counts, "not_rejected": kept.height}
    scored = kept.hstack(score_tracklets(kept, query, calibration).drop("tracklet_id"))
    window = in_window(frame, query.start, query.end)
    ranked = rank_candidates(_candidates(window, scored, query, limit), limit, query.min_confidence)
    warnings = _warnings(query, scored)
    if counts["window"] == 0:
        warnings.append("no tracklets in the window")
    return SearchResult(
        **query.audit,  # type: ignore[arg-type]
        start=query.start,
        end=query.end,
        min_confidence=query.min_confidence,
        max_candidates=query.max_candidates,
        candidates=ranked,
        no_good_match=not any(c.good_match for c in ranked),
        camera_reach=_reach(outcome.camera_reach),
        counts=counts,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- store


def _partition_filter(query: SearchQuery) -> pl.Expr:
    """Partitions whose tracklets may overlap the window (a tracklet is filed under the
    date it started), of the query's cameras."""
    first_day = (query.start - MAX_TRACKLET_SPAN).date()
    keep = pl.col("date").is_between(first_day, query.end.date())
    if query.cameras is not None:
        keep = keep & pl.col("camera_id").is_in(query.cameras)
    return keep


def store_partitions(store: StoreLike, query: SearchQuery) -> list[tuple[date, str]]:
    """The ``(date, camera_id)`` tracklet partitions a search of ``query`` reads."""
    parts = (
        scan(store, "tracklets")
        .filter(_partition_filter(query))
        .select("date", "camera_id")
        .unique()
        .sort("date", "camera_id")
        .collect()
    )
    return [(d, c) for d, c in parts.iter_rows()]


def load_tracklets(
    store: StoreLike,
    query: SearchQuery,
    partitions: Sequence[tuple[date, str]] | None = None,
    *,
    tracklet_ids: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Tracklet rows (every version) overlapping the query's window, reading only the
    partitions it needs (or only ``partitions``), and only ``tracklet_ids`` if given."""
    lf = scan(store, "tracklets").filter(_partition_filter(query))
    if tracklet_ids is not None:
        lf = lf.filter(pl.col("tracklet_id").is_in(list(tracklet_ids)))
    if partitions is not None:
        if not partitions:
            return lf.clear().collect()
        lf = lf.filter(
            pl.any_horizontal(
                (pl.col("date") == d) & (pl.col("camera_id") == c) for d, c in partitions
            )
        )
    lf = lf.filter((pl.col("t_start") <= query.end) & (pl.col("t_end") >= query.start))
    # only what a search reads: the other list columns (boxes, pixels, scores) are most
    # of a tracklet's bytes
    return lf.select(REQUIRED_COLUMNS).collect()


def expand_from_store(store: StoreLike, query: SearchQuery) -> SearchQuery:
    """``query`` with the stored samples of confirmed candidates it has none for yet."""
    missing = [k for k in query.confirmed if k not in query.expansion]
    if not missing:
        return query
    identities = latest_identities(store)
    ids = identities.filter(pl.col("global_id").is_in(missing))["tracklet_id"].to_list()
    ids += [k.removeprefix("tracklet:") for k in missing if k.startswith("tracklet:")]
    rows = scan(store, "tracklets").filter(pl.col("tracklet_id").is_in(ids)).collect()
    found = expansion_vectors(rows, identities, missing)
    return query.updated(expansion={**query.expansion, **found}) if found else query


def attach_routes(store: StoreLike, result: SearchResult) -> SearchResult:
    """``result`` with each candidate's route: every sighting of it in the window, on any
    camera, from the store's sightings table (scored ones keep their scores)."""
    if not result.candidates:
        return result
    table = sightings(store, result.start, result.end).with_columns(candidate_key().alias("key"))
    table = table.filter(pl.col("key").is_in([c.key for c in result.candidates]))
    routes: dict[str, list[Sighting]] = {}
    for row in table.iter_rows(named=True):
        routes.setdefault(row["key"], []).append(_as_sighting(row))
    updated = []
    for c in result.candidates:
        scored = {s.tracklet_id: s for s in c.sightings}
        route = [scored.get(s.tracklet_id, s) for s in routes.get(c.key, [])]
        missing = [s for s in c.route if s.tracklet_id not in {r.tracklet_id for r in route}]
        route = sorted([*route, *missing], key=lambda s: (s.t_start, s.camera_id, s.tracklet_id))
        updated.append(c.model_copy(update={"route": route}))
    return result.model_copy(update={"candidates": updated})


def search_store(  # noqa: PLR0913 (keyword-only options, each with a default)
    store: StoreLike,
    query: SearchQuery,
    embed: Embed | None = None,
    *,
    detect: Detect | None = None,
    adapter: PhotoAdapter | None = None,
    calibration: SearchCalibration | None = None,
    identities: pl.DataFrame | None = None,
    partitions: Sequence[tuple[date, str]] | None = None,
    limit: int | None = None,
    index: EmbeddingIndex | None = None,
    shortlist: int = DEFAULT_SHORTLIST,
) -> SearchResult:
    """Search the store at ``store`` (a :class:`TrackStore`, folder or URL).

    ``identities`` defaults to the store's current ones (pass them once to many partial
    searches). ``partitions`` makes it a partial search of those ``(date, camera_id)``
    partitions, without routes (attach them after merging, :func:`attach_routes`); a
    whole search attaches every candidate's full route. With an ``index``
    (:class:`~sightline.search.index.EmbeddingIndex` of the store) a query with vectors
    takes only the ``shortlist`` tracklets most similar in appearance (in the window, on
    its cameras), and the other tracklets of the same people for their routes; area and
    reachability filters then apply to those. An index holding the tracklets' rows
    answers from memory (nothing read but the identities); it is a snapshot of the store
    as it was built.
    """
    query = expand_from_store(store, embed_query(query, embed, detect, adapter))
    if identities is None:
        identities = latest_identities(store)
    vectors = query.query_vectors()
    if index is not None and len(vectors):
        picked = index.shortlist(
            vectors, shortlist, start=query.start, end=query.end, cameras=query.cameras
        )["tracklet_id"].to_list()
        if index.rows is not None and partitions is None:
            # answered from memory: the shortlist and every tracklet of the same people
            # (their routes), scored and filtered as usual
            owners = current_identities(identities)
            people = owners.filter(pl.col("tracklet_id").is_in(picked))["global_id"].to_list()
            same = owners.filter(pl.col("global_id").is_in(people))["tracklet_id"].to_list()
            ids = list(dict.fromkeys([*picked, *same]))
            frame = in_window(index.rows_for(ids), query.start, query.end)
            return search_tracklets(frame, identities, query, calibration=calibration, limit=limit)
        frame = load_tracklets(store, query, partitions, tracklet_ids=picked)
    else:
        frame = load_tracklets(store, query, partitions)
    result = search_tracklets(frame, identities, query, calibration=calibration, limit=limit)
    return attach_routes(store, result) if partitions is None else result
