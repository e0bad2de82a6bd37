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

Recorded footage not ingested yet (``submit(..., ingest=True)``): before searching, the
job plans (:func:`sightline.search.forensic.plan_forensic`, in a thread) which of the
query's recordings the store lacks in the window and ingests them through the running
pipeline of ``app_prefix`` (:class:`actors.forensic.ForensicIngest`: the supervisor's
site, the pipeline's coordinator and model deployments), in state ``ingesting`` with the
per-window progress in ``status()["ingest"]``; then it searches as usual. Planning is
serialised, and windows another job is ingesting are not ingested again: the job waits
for them. Cancel stops the ingest's cameras too. A recording that cannot be read is
reported in the status and the result's warnings; the search still runs over what the
store has.

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

from actors.forensic import ForensicIngest, PipelineContext
from sightline.search.forensic import IngestPlan, IngestUnavailableError, plan_forensic
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

    def __init__(self, settings: JobSettings | None = None, app_prefix: str | None = None) -> None:
        self.settings = settings or JobSettings()
        self.app_prefix = app_prefix
        self._ingests: dict[str, ForensicIngest] = {}
        self._plan_lock = asyncio.Lock()  # one ingest plan at a time: no window twice
        self._handles: Any = None
        self._book = JobBook(self.settings.max_jobs)
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._refs: dict[str, list[ray.ObjectRef]] = {}
        self._pending: dict[str, set[ray.ObjectRef]] = {}

    async def submit(self, query: SearchQuery, store_root: str | Path, ingest: bool = False) -> str:
        """Start a search of the store at ``store_root``; returns the job id at once.

        ``query`` must carry embeddings, not photos (a ``SearchQueryError`` says how to
        embed them); its ``case_id``, ``reason`` and ``requested_by`` stay with the job.
        With ``ingest`` the job first ingests the recorded footage of the query's cameras
        and window that the store lacks (module docstring); that needs the running
        pipeline (``ValueError`` when this actor has none or it is not running, or when it
        stores elsewhere than ``store_root``; :class:`IngestUnavailableError`, a
        ``ValueError``, for the first two).
        """
        context = await self._pipeline(str(store_root)) if ingest else None
        job = self._book.create(query, store_root)
        self._keep(job.job_id, self._run(job, context))
        self._prune()
        return job.job_id

    async def ingest_plan(self, query: SearchQuery, store_root: str | Path) -> dict[str, Any]:
        """What ``submit(query, store_root, ingest=True)`` would ingest now, without
        ingesting (``IngestPlan.as_dict()``: windows, skipped, failed, waits)."""
        context = await self._pipeline(str(store_root))
        in_flight = [w for i in self._ingests.values() for w in i.windows]
        plan = await asyncio.to_thread(
            plan_forensic,
            context.site,
            query,
            str(store_root),
            in_flight=in_flight,
            busy=context.busy,
        )
        return plan.as_dict()

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
        result = await asyncio.to_thread(merge_partials, job.query, partials, note)
        return _with_notes(result, job.ingest_notes())

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop the job: nothing more is merged and its outstanding tasks are cancelled
        (forced after ``cancel_grace_s``). A job that already stopped is left as is.
        Returns its status."""
        job = self._book.get(job_id)
        if job.cancel():
            self._cancel_tasks(job.job_id)
            ingest = self._ingests.get(job.job_id)
            if ingest is not None:
                ingest.stop()
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
        return {
            "jobs": states,
            "tasks_outstanding": outstanding,
            "ingests_running": len(self._ingests),
            "app_prefix": self.app_prefix,
            **self.settings.__dict__,
        }

    # ------------------------------------------------------------------ internals

    async def _pipeline(self, store_root: str) -> PipelineContext:
        """The running pipeline's context for a forensic ingest (``ValueError`` if none)."""
        from actors.supervisor import supervisor_name
        from serve.deployments import get_model_handles

        if self.app_prefix is None:
            raise IngestUnavailableError(
                "ingest=True needs the running pipeline: this search-jobs actor was started "
                "without one (start_search_jobs(..., app_prefix=...))"
            )
        prefix = self.app_prefix
        try:
            supervisor = await asyncio.to_thread(ray.get_actor, supervisor_name(prefix))
            found = await supervisor.forensic_context.remote()
            if self._handles is None:
                self._handles = await asyncio.to_thread(get_model_handles, prefix)
        except (ValueError, ray.exceptions.RayError) as exc:
            raise IngestUnavailableError(
                f"ingest=True needs the running pipeline {prefix!r}, which cannot be reached "
                f"({type(exc).__name__}: {exc})"[:600]
            ) from None
        if _same_root(found["store_root"]) != _same_root(store_root):
            raise ValueError(
                f"ingest=True: the pipeline stores to {found['store_root']}, but the job "
                f"searches {store_root}; search the pipeline's store"
            )
        return PipelineContext(
            site=found["site"],
            out_dir=Path(found["out_dir"]),
            store_root=found["store_root"],
            app_prefix=prefix,
            busy=found["busy"],
            coordinator=found["coordinator"],
            handles=self._handles,
        )

    async def _ingest(self, job: SearchJob, context: PipelineContext) -> None:
        """The ingest phase: plan, wait for other jobs' windows it needs, ingest."""
        async with self._plan_lock:
            in_flight = [w for i in self._ingests.values() for w in i.windows]
            plan: IngestPlan = await asyncio.to_thread(
                plan_forensic,
                context.site,
                job.query,
                job.store_root,
                in_flight=in_flight,
                busy=context.busy,
            )
            if not job.begin_ingest(plan.as_dict()):
                return  # cancelled while planning
            ingest = ForensicIngest(job, plan.windows, context, poll_s=self.settings.ingest_poll_s)
            self._ingests[job.job_id] = ingest
        try:
            others = [i for i in self._ingests.values() if any(w in i.windows for w in plan.waits)]
            for other in others:
                await other.done.wait()
            await ingest.run()
        finally:
            self._ingests.pop(job.job_id, None)

    async def _ingest_phase(self, job: SearchJob, context: PipelineContext) -> None:
        """:meth:`_ingest`; a failure of the ingest as a whole is reported in the status
        (the windows not ended are failed) and the search still runs."""
        try:
            await self._ingest(job, context)
        except Exception as exc:
            log.warning("job %s: ingest failed: %s", job.job_id, exc, exc_info=True)
            if job.ingest is None:
                job.begin_ingest({"windows": []})
            if job.ingest is not None:
                job.ingest["error"] = f"{type(exc).__name__}: {exc}"[:1000]
                for i, w in enumerate(job.ingest["windows"]):
                    if w["state"] in ("queued", "ingesting"):
                        job.update_window(i, state="failed", error="the ingest failed")

    async def _run(self, job: SearchJob, context: PipelineContext | None = None) -> None:
        try:
            if context is not None:
                await self._ingest_phase(job, context)
                if job.finished_state:
                    return  # cancelled while ingesting
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
                job.finish(_with_notes(final, job.ingest_notes()))
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


def _with_notes(result: SearchResult, notes: list[str]) -> SearchResult:
    if not notes:
        return result
    return result.model_copy(update={"warnings": [*result.warnings, *notes]})


def _same_root(root: str) -> str:
    text = str(root).removeprefix("file://").rstrip("/")
    return text if "://" in text else str(Path(text).resolve())


def start_search_jobs(
    name: str,
    settings: JobSettings | None = None,
    *,
    num_cpus: float = SEARCH_JOBS_NUM_CPUS,
    app_prefix: str | None = None,
) -> ActorHandle:
    """Start (or reconnect to) the named search-jobs actor of a site. With ``app_prefix``
    its jobs can ingest recorded footage through that running pipeline first."""
    return SearchJobs.options(  # type: ignore[attr-defined]
        name=name, get_if_exists=True, num_cpus=num_cpus
    ).remote(settings, app_prefix)
