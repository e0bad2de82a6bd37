"""What a search returns: ranked candidates with sightings and routes, JSON-ready.

Pydantic models, so the HTTP API can return ``result.model_dump(mode="json")`` as is and
a client can validate it back. Every result carries the query's ``case_id``, ``reason``
and ``requested_by``. :meth:`SearchResult.candidates_frame` and
:meth:`SearchResult.sightings_frame` give the same as polars tables for notebooks.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CameraReach", "Candidate", "SearchResult", "Sighting"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sighting(_Frozen):
    """One tracklet of a candidate: a camera, a time span, where on the ground, a thumbnail.

    Positions are the median, first and last ground points (metres; None if the camera
    gave none). Scores are None on route entries that were not scored (another camera,
    or outside the search's filters).
    """

    tracklet_id: str
    camera_id: str
    t_start: datetime
    t_end: datetime
    world_x: float | None = None
    world_y: float | None = None
    first_x: float | None = None
    first_y: float | None = None
    last_x: float | None = None
    last_y: float | None = None
    thumbnail: str | None = Field(None, description="Path relative to the store root.")
    confidence: float | None = Field(None, description="This sighting's calibrated score.")
    appearance_similarity: float | None = None
    description_match: float | None = None
    colour_contradictions: int = 0


class Candidate(_Frozen):
    """A person who may be the one sought (a global identity, or a tracklet not yet fused,
    then ``global_id`` is None and ``key`` is ``tracklet:<id>``)."""

    key: str
    global_id: str | None
    rank: int = Field(description="1 is the best.")
    confidence: float = Field(description="Calibrated confidence of the best sighting.")
    good_match: bool = Field(description="confidence reaches the query's min_confidence.")
    colour_contradictions: int = Field(
        description="Colours asked for that the best sightings contradict; ranked first."
    )
    confirmed: bool = Field(False, description="The analyst confirmed this identity.")
    best_tracklet_id: str
    sightings: list[Sighting] = Field(description="Matching sightings, in time order.")
    route: list[Sighting] = Field(
        default_factory=list,
        description="Every sighting of the identity in the window, in time order.",
    )

    @property
    def cameras(self) -> list[str]:
        """Cameras of the sightings, in order of first appearance."""
        return list(dict.fromkeys(s.camera_id for s in self.sightings))

    @property
    def first_seen(self) -> datetime:
        """Start of the earliest sighting."""
        return min(s.t_start for s in self.sightings)

    @property
    def last_seen(self) -> datetime:
        """End of the latest sighting."""
        return max(s.t_end for s in self.sightings)


class CameraReach(_Frozen):
    """How soon after the last-seen time a camera could have seen the person."""

    camera_id: str
    distance_m: float
    reach_s: float
    earliest: datetime


class SearchResult(_Frozen):
    """Ranked candidates and how the search got them."""

    case_id: str
    reason: str
    requested_by: str | None
    start: datetime
    end: datetime
    min_confidence: float
    max_candidates: int = Field(description="The query's cut (a partial result may hold more).")
    candidates: list[Candidate]
    no_good_match: bool = Field(
        description="No candidate reaches min_confidence: the person was not found."
    )
    camera_reach: list[CameraReach] = Field(
        default_factory=list, description="With a last-seen point: cameras by reach time."
    )
    counts: dict[str, int] = Field(
        default_factory=dict, description="Tracklets left after each filter, in order."
    )
    warnings: list[str] = Field(default_factory=list)
    partitions: int = Field(1, description="Partial results merged into this one.")

    def candidates_frame(self) -> pl.DataFrame:
        """One row per candidate: rank, key, global_id, confidence, good_match,
        colour_contradictions, confirmed, sightings, first_seen, last_seen, cameras."""
        schema = {
            "rank": pl.Int32(),
            "key": pl.String(),
            "global_id": pl.String(),
            "confidence": pl.Float64(),
            "good_match": pl.Boolean(),
            "colour_contradictions": pl.Int32(),
            "confirmed": pl.Boolean(),
            "sightings": pl.Int32(),
            "first_seen": pl.Datetime("us", "UTC"),
            "last_seen": pl.Datetime("us", "UTC"),
            "cameras": pl.List(pl.String()),
        }
        rows = [
            {
                **c.model_dump(
                    include={
                        "rank",
                        "key",
                        "global_id",
                        "confidence",
                        "good_match",
                        "colour_contradictions",
                        "confirmed",
                    }
                ),
                "sightings": len(c.sightings),
                "first_seen": c.first_seen,
                "last_seen": c.last_seen,
                "cameras": c.cameras,
            }
            for c in self.candidates
        ]
        return pl.DataFrame(rows, schema=schema)

    def sightings_frame(self, route: bool = False) -> pl.DataFrame:
        """Every candidate's sightings (or, with ``route``, route entries) as rows, with
        the candidate's ``rank`` and ``key``."""
        rows = [
            {"rank": c.rank, "key": c.key, **s.model_dump()}
            for c in self.candidates
            for s in (c.route if route else c.sightings)
        ]
        schema = {"rank": pl.Int32(), "key": pl.String(), **_SIGHTING_SCHEMA}
        return pl.DataFrame(rows, schema=schema)


_SIGHTING_SCHEMA: dict[str, pl.DataType] = {
    "tracklet_id": pl.String(),
    "camera_id": pl.String(),
    "t_start": pl.Datetime("us", "UTC"),
    "t_end": pl.Datetime("us", "UTC"),
    **{
        name: pl.Float64()
        for name in ("world_x", "world_y", "first_x", "first_y", "last_x", "last_y")
    },
    "thumbnail": pl.String(),
    "confidence": pl.Float64(),
    "appearance_similarity": pl.Float64(),
    "description_match": pl.Float64(),
    "colour_contradictions": pl.Int32(),
}
