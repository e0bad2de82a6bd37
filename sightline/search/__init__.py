"""Missing-person search: by photo and by description, in time and space.

One module per job: :mod:`~sightline.search.query` (the validated query),
:mod:`~sightline.search.photos` (photos -> crops -> embeddings, with injected models),
:mod:`~sightline.search.filters` (time, cameras, area, reachability),
:mod:`~sightline.search.scoring` (appearance, description, calibrated confidence),
:mod:`~sightline.search.engine` (search tracklet rows or the store),
:mod:`~sightline.search.merge` (ranking, merging partial results),
:mod:`~sightline.search.refine` (confirm/reject, query expansion),
:mod:`~sightline.search.results` (what comes back),
:mod:`~sightline.search.privacy` (head blurring),
:mod:`~sightline.search.jobs` (job state and partial results for the Ray fan-out) and
:mod:`~sightline.search.watch` (standing watches). No Ray here. See ``docs/search.md``.
"""

from sightline.search.engine import (
    attach_routes,
    expand_from_store,
    load_tracklets,
    search_store,
    search_tracklets,
    store_partitions,
)
from sightline.search.jobs import (
    JobBook,
    JobSettings,
    SearchJob,
    group_partitions,
    merge_partials,
    plan_job,
    require_embedded,
    search_partitions,
)
from sightline.search.merge import merge_results, rank_candidates
from sightline.search.photos import embed_photos, embed_query, encode_photo, person_box
from sightline.search.privacy import blur_heads, blur_heads_jpeg, boxes_in_crop
from sightline.search.query import (
    DEFAULT_MIN_CONFIDENCE,
    Description,
    LastSeen,
    SearchQuery,
    SearchQueryError,
)
from sightline.search.refine import expansion_vectors, refine
from sightline.search.results import CameraReach, Candidate, SearchResult, Sighting
from sightline.search.scoring import SearchCalibration, score_tracklets
from sightline.search.watch import Watch, WatchAlert, WatchList

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "CameraReach",
    "Candidate",
    "Description",
    "JobBook",
    "JobSettings",
    "LastSeen",
    "SearchCalibration",
    "SearchJob",
    "SearchQuery",
    "SearchQueryError",
    "SearchResult",
    "Sighting",
    "Watch",
    "WatchAlert",
    "WatchList",
    "attach_routes",
    "blur_heads",
    "blur_heads_jpeg",
    "boxes_in_crop",
    "embed_photos",
    "embed_query",
    "encode_photo",
    "expand_from_store",
    "expansion_vectors",
    "group_partitions",
    "load_tracklets",
    "merge_partials",
    "merge_results",
    "person_box",
    "plan_job",
    "rank_candidates",
    "refine",
    "require_embedded",
    "score_tracklets",
    "search_partitions",
    "search_store",
    "search_tracklets",
    "store_partitions",
]
