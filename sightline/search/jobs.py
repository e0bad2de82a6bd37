"""Search jobs without Ray: plans, job state, progress, and merging partial results.

A long search runs as a job (the Ray layer is :mod:`actors.search_jobs`): the query is
planned once (:func:`plan_job`: confirmed identities' samples resolved from the store,
the ``(date, camera_id)`` partitions listed, current identities read), the partitions
are grouped into at most ``max_tasks`` groups (:func:`group_partitions`), each group is
searched on its own (:func:`search_partitions`, a partial result with a generous
``limit``), and the partial results are merged as they arrive (:func:`merge_partials`)
and once more at the end with every candidate's route (:func:`final_result`).

:class:`SearchJob` is one job's bookkeeping: its state (``queued`` -> [``ingesting``
->] ``running`` -> ``done``, or ``cancelled`` / ``failed``), partitions and tasks done,
the partial results merged so far, and the final result. Once a job has stopped
(cancelled or failed) no further partial result is merged: :meth:`SearchJob.add_partial`
refuses it and counts it as discarded. :class:`JobBook` holds the jobs of one service,
looks them up with a clear error, and forgets the oldest finished ones beyond
``max_jobs``.

A job over recorded footage the store lacks first ingests it (``ingesting``, planned by
:mod:`sightline.search.forensic`): :meth:`SearchJob.begin_ingest` records the windows,
:meth:`SearchJob.update_window` their progress (frames done of frames expected), and the
status's ``ingest`` entry reports them; recordings that could not be ingested are
reported there and as warnings on the result, and the search runs over what exists.

Photos must be embedded before a job is submitted (:func:`require_embedded`): the
embedder is a Serve deployment the caller already holds, and embedding once keeps every
partition scoring against the same vectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import polars as pl

from sightline.search.engine import (
    attach_routes,
    expand_from_store,
    search_store,
    store_partitions,
)
from sightline.search.forensic import INCOMPLETE_KINDS
from sightline.search.merge import merge_results
from sightline.search.query import SearchQuery, SearchQueryError
from sightline.search.results import SearchResult
from sightline.store.queries import StoreLike, latest_identities
from sightline.store.tables import is_url

__all__ = [
    "DEFAULT_MAX_TASKS",
    "DEFAULT_PARTIAL_LIMIT",
    "FINISHED_STATES",
    "JobBook",
    "JobPlan",
    "JobSettings",
    "JobState",
    "Partition",
    "SearchJob",
    "empty_result",
    "final_result",
    "group_partitions",
    "merge_partials",
    "plan_job",
    "require_embedded",
    "search_partitions",
]

JobState = Literal["queued", "ingesting", "running", "done", "cancelled", "failed"]
FINISHED_STATES: frozenset[str] = frozenset({"done", "cancelled", "failed"})
"""States a job never leaves."""

Partition = tuple[date, str]
"""A store partition of the tracklets table: ``(date, camera_id)``."""

DEFAULT_MAX_TASKS = 16
"""Tasks a job is split into at most. More tasks stream results in finer steps and
spread over more workers; each task has a fixed cost (a Ray task, reading the
identities, loading the calibration), so many tiny ones are slower overall."""

DEFAULT_PARTIAL_LIMIT = 200
"""Candidates each partial search keeps. Merging is exact for the top ``k`` whenever
each partial keeps at least ``k``; keeping more also keeps more of each candidate's
sightings (see :mod:`sightline.search.merge`). Raising it costs memory per job."""


def require_embedded(query: SearchQuery, purpose: str = "a search job") -> None:
    """Raise :class:`SearchQueryError` if ``query`` still carries photos.

    Jobs and watches score against vectors only: embed photos first with
    :func:`sightline.search.embed_query` (the Embedder deployment's handle or a
    :class:`~sightline.models.builtin_embedder.BuiltinEmbedder` as ``embed``).
    """
    if query.needs_embedding:
        raise SearchQueryError(
            f"{purpose} needs embeddings, not photos: the query carries "
            f"{len(query.photos)} photo(s); embed them first with "
            "sightline.search.embed_query(query, embed, detect) and submit the query it "
            "returns (photos replaced by embeddings)"
        )


@dataclass(frozen=True)
class JobSettings:
    """How a search-jobs service fans a search out.

    ``task_num_cpus``: CPUs reserved per task (fractions let several run per core; a
    task is one polars scan and a matrix product, mostly single-threaded).
    ``max_tasks``: see :data:`DEFAULT_MAX_TASKS`. ``partial_limit``: see
    :data:`DEFAULT_PARTIAL_LIMIT`. ``cancel_grace_s``: how long a cancelled task may
    take to stop by itself before its worker is killed (``ray.cancel(force=True)``).
    ``max_jobs``: jobs remembered; the oldest finished ones are forgotten beyond it.
    ``task_delay_s``: a pause at the start of every task, for tests and demos of
    progress and cancel (0 in service). ``ingest_poll_s``: how often a forensic ingest's
    progress is read from its camera actors.
    """

    task_num_cpus: float = 0.5
    max_tasks: int = DEFAULT_MAX_TASKS
    partial_limit: int = DEFAULT_PARTIAL_LIMIT
    cancel_grace_s: float = 2.0
    max_jobs: int = 1000
    task_delay_s: float = 0.0
    ingest_poll_s: float = 0.5

    def __post_init__(self) -> None:
        checks = {
            "task_num_cpus": self.task_num_cpus >= 0,
            "max_tasks": self.max_tasks >= 1,
            "partial_limit": self.partial_limit >= 1,
            "cancel_grace_s": self.cancel_grace_s >= 0,
            "max_jobs": self.max_jobs >= 1,
            "task_delay_s": self.task_delay_s >= 0,
            "ingest_poll_s": self.ingest_poll_s > 0,
        }
        bad = [f"{name} = {getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"job settings out of range: {', '.join(bad)} (task_num_cpus, "
                "cancel_grace_s, task_delay_s >= 0; max_tasks, partial_limit, max_jobs >= 1; "
                "ingest_poll_s > 0)"
            )


# --------------------------------------------------------------------------- the work


@dataclass(frozen=True)
class JobPlan:
    """What every task of a job shares: the query with its expansion resolved, the
    partitions to search, and the identities as they stood when the job started."""

    query: SearchQuery
    partitions: list[Partition]
    identities: pl.DataFrame


def plan_job(store: StoreLike, query: SearchQuery) -> JobPlan:
    """Resolve the refinement vectors, list the partitions and read the identities once,
    so every partition is searched against the same query and the same fusion state."""
    require_embedded(query)
    query = expand_from_store(store, query)
    return JobPlan(query, store_partitions(store, query), latest_identities(store))


def group_partitions(partitions: Sequence[Partition], max_groups: int) -> list[list[Partition]]:
    """``partitions`` in order, cut into at most ``max_groups`` runs of near-equal length.

    Consecutive partitions (same day, neighbouring cameras) stay together, so results
    stream in roughly in time order.
    """
    if max_groups < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    n = len(partitions)
    groups = min(n, max_groups)
    bounds = [round(i * n / groups) for i in range(groups + 1)] if groups else [0]
    return [list(partitions[a:b]) for a, b in pairwise(bounds)]


def search_partitions(
    store: StoreLike,
    query: SearchQuery,
    partitions: Sequence[Partition],
    identities: pl.DataFrame,
    limit: int,
) -> SearchResult:
    """A partial search of ``partitions`` (no routes; see :func:`final_result`)."""
    return search_store(store, query, partitions=partitions, identities=identities, limit=limit)


def empty_result(query: SearchQuery, warnings: Sequence[str] = ()) -> SearchResult:
    """A result of ``query`` with no candidates (a job with nothing merged yet)."""
    return SearchResult(
        **query.audit,  # type: ignore[arg-type]
        start=query.start,
        end=query.end,
        min_confidence=query.min_confidence,
        max_candidates=query.max_candidates,
        candidates=[],
        no_good_match=True,
        warnings=list(warnings),
        partitions=0,
    )


def merge_partials(
    query: SearchQuery, partials: Sequence[SearchResult], note: str | None = None
) -> SearchResult:
    """The partial results merged and cut at the query's ``max_candidates``, with
    ``note`` added to the warnings (e.g. that the result is partial)."""
    notes = [note] if note else []
    if not partials:
        return empty_result(query, notes)
    merged = merge_results(partials, query.max_candidates)
    return merged.model_copy(update={"warnings": [*merged.warnings, *notes]}) if notes else merged


def final_result(
    store: StoreLike, query: SearchQuery, partials: Sequence[SearchResult]
) -> SearchResult:
    """Every partial merged, with each candidate's full route from the store."""
    return attach_routes(store, merge_partials(query, partials))


# --------------------------------------------------------------------------- bookkeeping


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass
class SearchJob:
    """One search job's state (see the module docstring). Not thread-safe: one owner
    (the actor's event loop) updates it."""

    job_id: str
    query: SearchQuery
    store_root: str
    clock: Callable[[], datetime] = field(default=_utc_now, repr=False)
    state: JobState = "queued"
    submitted: datetime = field(init=False)
    started: datetime | None = None
    finished: datetime | None = None
    error: str | None = None
    partitions_total: int = 0
    partitions_done: int = 0
    tasks: dict[str, int] = field(
        default_factory=lambda: {
            "total": 0,
            "done": 0,
            "cancelled": 0,
            "failed": 0,
            "discarded": 0,
        }
    )
    result: SearchResult | None = None
    ingest: dict[str, Any] | None = None
    """The forensic ingest (None: the job ingests nothing): ``windows`` (each with its
    camera, span, state, frames done and expected, tracklets, error), ``skipped`` and
    ``failed`` cameras, ``waits`` (other jobs' ingests it waits for), and timing."""
    _partials: list[SearchResult] = field(default_factory=list, repr=False)
    _keys: set[str] = field(default_factory=set, repr=False)
    _good: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.submitted = self.clock()

    @property
    def finished_state(self) -> bool:
        """The job has stopped (done, cancelled or failed)."""
        return self.state in FINISHED_STATES

    @property
    def progress(self) -> float:
        """Share of the partitions searched, 0..1 (1 once done)."""
        if self.state == "done":
            return 1.0
        if self.partitions_total == 0:
            return 0.0
        return self.partitions_done / self.partitions_total

    def begin_ingest(self, plan: dict[str, Any]) -> bool:
        """Queued -> ingesting the windows of ``plan`` (an ``IngestPlan.as_dict()``);
        False if the job was cancelled meanwhile."""
        if self.state != "queued":
            return False
        windows = [
            {
                **w,
                "state": "queued",
                "frames_done": 0,
                "progress": 0.0,
                "tracklets": 0,
                "error": None,
                "last_frame_time": None,
            }
            for w in plan["windows"]
        ]
        self.ingest = {
            "windows": windows,
            "skipped": list(plan.get("skipped", [])),
            "failed": list(plan.get("failed", [])),
            "waits": list(plan.get("waits", [])),
            "started": _iso(self.clock()),
            "finished": None,
        }
        self.state = "ingesting"
        self.started = self.clock()
        return True

    def update_window(self, index: int, **fields: Any) -> None:
        """Update ingest window ``index`` (state, frames_done, progress, tracklets, error)."""
        if self.ingest is None:
            raise ValueError(f"job {self.job_id} has no ingest")
        self.ingest["windows"][index].update(fields)

    def end_ingest(self) -> None:
        """The ingest phase is over (the search comes next)."""
        if self.ingest is not None and self.ingest["finished"] is None:
            self.ingest["finished"] = _iso(self.clock())

    def ingest_status(self) -> dict[str, Any] | None:
        """The ``ingest`` entry of :meth:`status`: the windows and totals (frames done of
        frames expected, share 0..1), or None when the job ingests nothing."""
        if self.ingest is None:
            return None
        windows = self.ingest["windows"]
        done = sum(w["frames_done"] for w in windows)
        total = sum(w["frames_total"] or 0 for w in windows)
        ended = all(w["state"] in ("done", "failed", "cancelled") for w in windows)
        progress = 1.0 if ended else (min(1.0, done / total) if total else 0.0)
        return {
            **self.ingest,
            "windows": [dict(w) for w in windows],
            "frames_done": done,
            "frames_total": total,
            "progress": progress,
        }

    def ingest_notes(self) -> list[str]:
        """Warnings a result carries about footage the ingest could not add."""
        if self.ingest is None:
            return []
        notes = [
            f"camera {f['camera_id']}: recording not ingested ({f['error']}); "
            "it is searched only as far as the store already had it"
            for f in self.ingest["failed"]
        ]
        notes.extend(
            f"camera {k['camera_id']}: not ingested: {k['reason']}"
            for k in self.ingest["skipped"]
            if k.get("kind") in INCOMPLETE_KINDS
        )
        for w in self.ingest["windows"]:
            if w["state"] in ("failed", "cancelled"):
                notes.append(
                    f"camera {w['camera_id']} {w['start']} to {w['end']}: ingest "
                    f"{w['state']} after {w['frames_done']} frames"
                    + (f" ({w['error']})" if w.get("error") else "")
                )
        return notes

    def start(self, partitions_total: int, tasks_total: int) -> bool:
        """Queued (or ingesting) -> running with this many partitions and tasks; False if
        the job was cancelled meanwhile (nothing is started then)."""
        if self.state not in ("queued", "ingesting"):
            return False
        self.end_ingest()
        self.state = "running"
        self.started = self.started or self.clock()
        self.partitions_total = partitions_total
        self.tasks["total"] = tasks_total
        return True

    def add_partial(self, result: SearchResult, partitions: int) -> bool:
        """Merge one task's result covering ``partitions`` partitions. A job that is not
        running (cancelled, failed) takes nothing more: returns False, counted as
        discarded."""
        if self.state != "running":
            self.tasks["discarded"] += 1
            return False
        self._partials.append(result)
        self.partitions_done += partitions
        self.tasks["done"] += 1
        self._keys.update(c.key for c in result.candidates)
        self._good.update(c.key for c in result.candidates if c.good_match)
        return True

    def task_ended(self, outcome: Literal["cancelled", "failed"]) -> None:
        """Count a task that ended without a result."""
        self.tasks[outcome] += 1

    def partials(self) -> list[SearchResult]:
        """The partial results merged so far (a copy)."""
        return list(self._partials)

    def finish(self, result: SearchResult) -> bool:
        """Running -> done with the final result; False if the job stopped meanwhile."""
        if self.state != "running":
            return False
        self.state, self.result, self.finished = "done", result, self.clock()
        return True

    def fail(self, error: str) -> bool:
        """-> failed with ``error``, unless it already stopped."""
        return self._stop("failed", error)

    def cancel(self) -> bool:
        """-> cancelled; False if it had already stopped (a no-op then)."""
        return self._stop("cancelled", None)

    def _stop(self, state: Literal["cancelled", "failed"], error: str | None) -> bool:
        if self.finished_state:
            return False
        self.state, self.error, self.finished = state, error, self.clock()
        return True

    def partial_note(self) -> str | None:
        """The warning a result of an unfinished job carries (None once done)."""
        if self.state == "done":
            return None
        if self.state in ("queued", "ingesting"):
            return f"partial result: nothing searched yet (job {self.state})"
        return (
            f"partial result: {self.partitions_done} of {self.partitions_total} "
            f"partitions searched (job {self.state})"
        )

    def status(self) -> dict[str, Any]:
        """JSON-ready state: ids, case, times (ISO 8601 UTC), progress, task counts,
        distinct candidates (and good matches) in the partial results so far, the
        forensic ingest (:meth:`ingest_status`, None without one), error."""
        return {
            "job_id": self.job_id,
            "state": self.state,
            **self.query.audit,
            "store_root": self.store_root,
            "submitted": _iso(self.submitted),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "partitions_done": self.partitions_done,
            "partitions_total": self.partitions_total,
            "progress": self.progress,
            "tasks": dict(self.tasks),
            "candidates_so_far": len(self._keys),
            "good_matches_so_far": len(self._good),
            "ingest": self.ingest_status(),
            "error": self.error,
        }


def _new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


class JobBook:
    """The jobs of one service: created with a checked query, found by id, bounded.

    Beyond ``max_jobs`` the oldest finished jobs are forgotten (running ones never are),
    so a lookup of a very old job id fails like an unknown one.
    """

    def __init__(
        self,
        max_jobs: int = 1000,
        *,
        clock: Callable[[], datetime] = _utc_now,
        new_id: Callable[[], str] = _new_job_id,
    ) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        self.max_jobs = max_jobs
        self._clock = clock
        self._new_id = new_id
        self._jobs: dict[str, SearchJob] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[SearchJob]:
        return iter(list(self._jobs.values()))

    def create(self, query: SearchQuery, store_root: str | Path) -> SearchJob:
        """A queued job of ``query`` over the store at ``store_root``.

        Raises :class:`SearchQueryError` for a query with photos (:func:`require_embedded`)
        and ``ValueError`` for a local store root that is not a folder.
        """
        if not isinstance(query, SearchQuery):
            raise TypeError(f"expected a SearchQuery, got {type(query).__name__}")
        require_embedded(query)
        root = str(store_root)
        if not is_url(root) and not Path(root.removeprefix("file://")).is_dir():
            raise ValueError(f"store root {root} is not a folder")
        job_id = self._new_id()
        if job_id in self._jobs:
            raise RuntimeError(f"job id {job_id!r} was handed out twice")
        job = SearchJob(job_id, query, root, clock=self._clock)
        self._jobs[job_id] = job
        self._forget_old()
        return job

    def get(self, job_id: str) -> SearchJob:
        """The job ``job_id``; ``ValueError`` for a non-string, ``KeyError`` naming the id
        if no such job is known (never submitted, forgotten, or lost in a restart)."""
        if not isinstance(job_id, str):
            raise ValueError(f"a job id is a string, got {type(job_id).__name__} {job_id!r}")
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(
                f"unknown search job {job_id!r}: not submitted here, forgotten (only the "
                f"newest {self.max_jobs} are kept) or lost when the service restarted"
            )
        return job

    def statuses(self) -> list[dict[str, Any]]:
        """Every job's :meth:`SearchJob.status`, newest first."""
        return [j.status() for j in reversed(self._jobs.values())]

    def _forget_old(self) -> None:
        excess = len(self._jobs) - self.max_jobs
        for job in list(self._jobs.values()):
            if excess <= 0:
                break
            if job.finished_state:
                del self._jobs[job.job_id]
                excess -= 1
