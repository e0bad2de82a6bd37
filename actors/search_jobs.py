"""Search jobs on Ray: a long search fanned out as tasks over store partitions.

A thin layer over :mod:`sightline.search.jobs` (plans, job state, merging). One
:class:`SearchJobs` actor per site takes queries (:meth:`SearchJobs.submit`), plans each
in a thread (store partitions, identities, refinement vectors), splits the partitions
into at most ``max_tasks`` groups and runs one Ray task per group
(``num_cpus=task_num_cpus``). Partial results are merged as the tasks finish, so
:meth:`SearchJobs.results` streams: it returns what is merged so far, marked partial,
until the job is done and the routes are attached.

It is an asyncio actor: status calls are answered while jobs run. Tasks are collected
with ``asyncio.wait`` over their futures, the asyncio form of ``ray.wait`` (a blocking
``ray.wait`` would stall every other call of the actor); the planning and the final
merge, which read the store, run in threads.

Cancel marks the job cancelled at once (nothing more is merged), asks every outstanding
task to stop (``ray.cancel``: queued tasks are dropped, running ones get a
``KeyboardInterrupt``) and, after ``cancel_grace_s``, kills the workers of those still
running (``force=True``; a polars scan does not see the interrupt until it returns).

Jobs live in the actor's memory: it restarts on failure (``max_restarts``) but a
restarted actor has forgotten its jobs, and asking about one is a ``KeyError`` that says
so; the analyst resubmits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import ray
from ray.actor import ActorHandle

from sightline.search.jobs import (
    JobBook,
    JobPlan,
    JobSettings,
    Partition,
    SearchJob,
    final_result,
    group_partitions,
    merge_partials,
    plan_job,
    search_partitions,
)
from sightline.search.query import SearchQuery
from sightline.search.results import SearchResult

__all__ = ["SEARCH_JOBS_NUM_CPUS", "SearchJobs", "search_task", "start_search_jobs"]

log = logging.getLogger(__name__)

SEARCH_JOBS_NUM_CPUS = 0.1
"""CPUs the actor reserves: it waits on tasks and merges small partial results."""


def _pause(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))  # short sleeps: a cancel's interrupt lands at once


@ray.remote(max_retries=1)
def search_task(
    store_root: str,
    query: SearchQuery,
    partitions: list[Partition],
    identities: pl.DataFrame,
    limit: int,
    delay_s: float = 0.0,
) -> SearchResult:
    """Search ``partitions`` of the store (a partial result); ``delay_s`` pauses first
    (a test and demo hook). Retried once if its worker dies; never after a cancel."""
    if delay_s > 0:
        _pause(delay_s)
    return search_partitions(store_root, query, partitions, identities, limit)


def _cancel(ref: ray.ObjectRef, *, force: bool) -> None:
    try:
        ray.cancel(ref, force=force)
    except Exception:  # it finished meanwhile, or its worker is already gone
        log.debug("cancelling %s (force=%s) failed", ref, force, exc_info=True)


def _describe(group: Sequence[Partition]) -> str:
    names = [f"{d.isoformat()}/{c}" for d, c in group[:3]]
    more = f" and {len(group) - 3} more" if len(group) > 3 else ""
    return ", ".join(names) + more if names else "(none)"


@ray.remote(max_restarts=-1, max_task_retries=0)
class SearchJobs:
    """Asynchronous search jobs of one site (see the module docstring)."""

    def __init__(self, settings: JobSettings | None = None) -> None:
        self.settings = settings or JobSettings()
        self._book = JobBook(self.settings.max_jobs)
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._refs: dict[str, list[ray.ObjectRef]] = {}
        self._pending: dict[str, set[ray.ObjectRef]] = {}

    async def submit(self, query: SearchQuery, store_root: str | Path) -> str:
        """Start a search of the store at ``store_root``; returns the job id at once.

        ``query`` must carry embeddings, not photos (a ``SearchQueryError`` says how to
        embed them); its ``case_id``, ``reason`` and ``requested_by`` stay with the job.
        """
        job = self._book.create(query, store_root)
        self._keep(job.job_id, self._run(job))
        self._prune()
        return job.job_id

    async def status(self, job_id: str) -> dict[str, Any]:
        """State, progress (0..1), partitions and tasks done, candidates so far, times."""
        return self._book.get(job_id).status()

    async def results(self, job_id: str) -> SearchResult:
        """The merged result so far: final (with routes) once done, otherwise the
        partitions merged up to now, with a warning saying the result is partial."""
        job = self._book.get(job_id)
        if job.result is not None:
            return job.result
        partials, note = job.partials(), job.partial_note()
        return await asyncio.to_thread(merge_partials, job.query, partials, note)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop the job: nothing more is merged and its outstanding tasks are cancelled
        (forced after ``cancel_grace_s``). A job that already stopped is left as is.
        Returns its status."""
        job = self._book.get(job_id)
        if job.cancel():
            self._cancel_tasks(job.job_id)
        return job.status()

    async def jobs(self) -> list[dict[str, Any]]:
        """Every remembered job's status, newest first."""
        return self._book.statuses()

    async def task_refs(self, job_id: str) -> list[ray.ObjectRef]:
        """The job's task results (for diagnostics and tests: ``ray.get`` of a cancelled
        one raises ``TaskCancelledError``)."""
        self._book.get(job_id)
        return list(self._refs.get(job_id, []))

    async def health(self) -> dict[str, Any]:
        """Jobs by state, tasks outstanding, and the settings."""
        states: dict[str, int] = {}
        for job in self._book:
            states[job.state] = states.get(job.state, 0) + 1
        outstanding = sum(len(p) for p in self._pending.values())
        return {"jobs": states, "tasks_outstanding": outstanding, **self.settings.__dict__}

    # ------------------------------------------------------------------ internals

    async def _run(self, job: SearchJob) -> None:
        try:
            plan = await asyncio.to_thread(plan_job, job.store_root, job.query)
            # no partition: one task searching nothing still gives an honest empty result
            groups = group_partitions(plan.partitions, self.settings.max_tasks) or [[]]
            if not job.start(len(plan.partitions), len(groups)):
                return  # cancelled while planning
            await self._collect(job, plan, groups)
            if job.state == "running":
                final = await asyncio.to_thread(
                    final_result, job.store_root, plan.query, job.partials()
                )
                job.finish(final)
        except Exception as exc:
            if job.fail(f"{type(exc).__name__}: {exc}"[:1000]):
                self._cancel_tasks(job.job_id)
        finally:
            self._pending.pop(job.job_id, None)

    async def _collect(self, job: SearchJob, plan: JobPlan, groups: list[list[Partition]]) -> None:
        s = self.settings
        query_ref, ids_ref = ray.put(plan.query), ray.put(plan.identities)
        task = search_task.options(num_cpus=s.task_num_cpus)
        futures: dict[asyncio.Future[Any], tuple[ray.ObjectRef, list[Partition]]] = {}
        for group in groups:
            ref = task.remote(
                job.store_root, query_ref, group, ids_ref, s.partial_limit, s.task_delay_s
            )
            futures[asyncio.wrap_future(ref.future())] = (ref, group)
        self._refs[job.job_id] = [ref for ref, _ in futures.values()]
        pending = self._pending[job.job_id] = set(self._refs[job.job_id])
        waiting = set(futures)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                ref, group = futures[future]
                pending.discard(ref)
                self._settle(job, future, group)

    def _settle(self, job: SearchJob, future: asyncio.Future[Any], group: list[Partition]) -> None:
        try:
            result = future.result()
        except ray.exceptions.TaskCancelledError:
            job.task_ended("cancelled")
        except Exception as exc:
            if job.state == "cancelled":  # a forced cancel may surface as a dead worker
                job.task_ended("cancelled")
                return
            job.task_ended("failed")
            error = f"partitions {_describe(group)}: {type(exc).__name__}: {exc}"
            if job.fail(error[:1000]):
                self._cancel_tasks(job.job_id)
        else:
            job.add_partial(result, len(group))

    def _cancel_tasks(self, job_id: str) -> None:
        refs = list(self._pending.get(job_id, ()))
        for ref in refs:
            _cancel(ref, force=False)
        if refs:
            self._keep(f"{job_id}/force", self._force_cancel(job_id))

    async def _force_cancel(self, job_id: str) -> None:
        await asyncio.sleep(self.settings.cancel_grace_s)
        for ref in list(self._pending.get(job_id, ())):
            _cancel(ref, force=True)

    def _keep(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, holding its task until it ends (the event loop
        keeps only weak references to tasks)."""
        task = asyncio.get_running_loop().create_task(work)
        self._runs[key] = task
        task.add_done_callback(lambda _: self._runs.pop(key, None))

    def _prune(self) -> None:
        """Forget the tasks and refs of jobs the book no longer holds."""
        known = {job.job_id for job in self._book}
        for table in (self._refs, self._pending):
            for job_id in [j for j in table if j not in known]:
                del table[job_id]


def start_search_jobs(
    name: str,
    settings: JobSettings | None = None,
    *,
    num_cpus: float = SEARCH_JOBS_NUM_CPUS,
) -> ActorHandle:
    """Start (or reconnect to) the named search-jobs actor of a site."""
    return SearchJobs.options(  # type: ignore[attr-defined]
        name=name, get_if_exists=True, num_cpus=num_cpus
    ).remote(settings)
