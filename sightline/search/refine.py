"""Refinement: the analyst confirms or rejects candidates, and the search re-ranks.

Confirmed identities' stored samples join the query (query expansion): CCTV crops of the
person, from the cameras' own angles and light, match their other sightings far better
than a family photo does, so sightings the photo missed rise and the fused identity's
own split-off parts are found. Rejected identities are left out of the results.

A candidate is named by its global id, or by its key ``tracklet:<id>`` when it is a
tracklet not yet fused. The expansion vectors are resolved once, here (or by
:func:`sightline.search.engine.search_store` from the store), and travel in the query,
so every partition of a fanned-out search scores against the same vectors.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from sightline.search.query import SearchQuery
from sightline.tracking.sink import latest_versions

__all__ = [
    "MAX_EXPANSION_PER_IDENTITY",
    "candidate_key",
    "current_identities",
    "expansion_vectors",
    "refine",
]

MAX_EXPANSION_PER_IDENTITY = 32
"""Samples added per confirmed identity (from its best-quality tracklets first). Raising
it covers more views of a person seen often, at more cost per scored tracklet."""


def current_identities(identities: pl.DataFrame | None) -> pl.DataFrame:
    """``(tracklet_id, global_id)``, one row per tracklet: from the identities log (the
    newest ``seq`` wins) or an already-resolved table such as
    :func:`sightline.store.queries.latest_identities`."""
    schema = {"tracklet_id": pl.String(), "global_id": pl.String()}
    if identities is None or identities.height == 0:
        return pl.DataFrame(schema=schema)
    if "seq" in identities.columns:
        identities = identities.sort("seq")
    return (
        identities.select("tracklet_id", "global_id")
        .unique("tracklet_id", keep="last", maintain_order=True)
        .cast(schema)  # type: ignore[arg-type]
    )


def candidate_key() -> pl.Expr:
    """The candidate key of a row with ``global_id`` and ``tracklet_id`` columns: the
    global id, or ``tracklet:<id>`` when there is none."""
    return pl.coalesce(pl.col("global_id"), pl.lit("tracklet:") + pl.col("tracklet_id"))


def expansion_vectors(
    tracklets: pl.DataFrame,
    identities: pl.DataFrame | None,
    keys: Iterable[str],
    limit: int = MAX_EXPANSION_PER_IDENTITY,
) -> dict[str, list[list[float]]]:
    """Stored samples of the candidates ``keys`` (global ids or ``tracklet:<id>``), best
    tracklets (by ``quality``) first, at most ``limit`` each; keys without any sample are
    left out."""
    wanted = list(dict.fromkeys(keys))
    if not wanted or tracklets.height == 0:
        return {}
    frame = latest_versions(tracklets).join(
        current_identities(identities), on="tracklet_id", how="left"
    )
    rows = (
        frame.with_columns(candidate_key().alias("_key"))
        .filter(pl.col("_key").is_in(wanted))
        .sort("quality", "tracklet_id", descending=[True, False], nulls_last=True)
        .select("_key", "embeddings")
        .explode("embeddings")
        .drop_nulls("embeddings")
        .group_by("_key", maintain_order=True)
        .head(limit)
    )
    out: dict[str, list[list[float]]] = {}
    for k, vector in rows.iter_rows():
        out.setdefault(k, []).append([float(v) for v in vector])
    return {k: out[k] for k in wanted if k in out}


def refine(
    query: SearchQuery,
    confirmed: Iterable[str] = (),
    rejected: Iterable[str] = (),
    *,
    tracklets: pl.DataFrame | None = None,
    identities: pl.DataFrame | None = None,
) -> SearchQuery:
    """``query`` with more confirmed and rejected candidates (the newest decision about a
    candidate wins), and, when ``tracklets`` (and their ``identities``) are given, the
    confirmed candidates' samples in ``expansion``. Without them the expansion is left
    for :func:`sightline.search.engine.search_store` to resolve from the store."""
    new_confirmed, new_rejected = list(confirmed), list(rejected)
    both = sorted(set(new_confirmed) & set(new_rejected))
    if both:
        raise ValueError(f"confirmed and rejected at once: {both}")
    keep_confirmed = [g for g in query.confirmed if g not in new_rejected]
    keep_rejected = [g for g in query.rejected if g not in new_confirmed]
    all_confirmed = list(dict.fromkeys([*keep_confirmed, *new_confirmed]))
    all_rejected = list(dict.fromkeys([*keep_rejected, *new_rejected]))
    expansion = {g: v for g, v in query.expansion.items() if g in all_confirmed}
    missing = [g for g in all_confirmed if g not in expansion]
    if tracklets is not None and missing:
        expansion.update(expansion_vectors(tracklets, identities, missing))
    return query.updated(confirmed=all_confirmed, rejected=all_rejected, expansion=expansion)
