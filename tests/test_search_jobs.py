"""Search jobs and standing watches on a local Ray: fan-out, progress, cancel, alerts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import ray

from sightline.config import load_site_config
from sightline.search import JobSettings, SearchQueryError, search_store
from sightline.search.photos import encode_photo
from tests.test_search_engine import assert_same
from tests.test_search_helpers import DIM, T0, make_tracklet, person_vector, query
from tests.test_search_job_state import DAY, write_store

pytestmark = pytest.mark.integration

EXAMPLE_SITE = Path(__file__).resolve().parents[1] / "configs" / "example-site.yaml"
STOPPED = {"done", "cancelled", "failed"}


def photo_of(person: int) -> list[list[float]]:
    return [person_vector(person).tolist()]


def wait_for(check: Callable[[], dict | None], timeout_s: float = 60.0) -> dict:
    """Poll ``check`` until it returns something (a status), or fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing after {timeout_s} s")


def status_when(jobs, job_id: str, done: Callable[[dict], bool]) -> Callable[[], dict | None]:
    def check() -> dict | None:
        status = ray.get(jobs.status.remote(job_id))
        return status if done(status) else None

    return check


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days x three cameras (see ``write_store``)."""
    root = tmp_path_factory.mktemp("search_jobs") / "store"
    write_store(root)
    return root


def test_a_job_finishes_with_the_direct_search(ray_local, store):
    from actors.search_jobs import start_search_jobs

    jobs = start_search_jobs(
        "search-jobs-test", JobSettings(max_tasks=4, task_num_cpus=0.25), num_cpus=0
    )
    q = query(embeddings=photo_of(1), start=T0, end=T0 + 3 * DAY, requested_by="analyst-7")
    job_id = ray.get(jobs.submit.remote(q, str(store)))
    status = wait_for(status_when(jobs, job_id, lambda s: s["state"] in STOPPED))
    assert status["state"] == "done", status["error"]
    assert (status["progress"], status["partitions_done"], status["partitions_total"]) == (
        1.0,
        9,
        9,
    )
    assert status["tasks"] == {"total": 4, "done": 4, "cancelled": 0, "failed": 0, "discarded": 0}
    assert (status["case_id"], status["reason"], status["requested_by"]) == (
        "case-1",
        "missing child",
        "analyst-7",
    )
    result = ray.get(jobs.results.remote(job_id))
    assert_same(result, search_store(store, q))
    assert result.candidates[0].key == "g1" and len(result.candidates[0].route) == 3
    assert [s["job_id"] for s in ray.get(jobs.jobs.remote())] == [job_id]
    ray.kill(jobs)


def test_a_cancelled_job_stops_its_tasks(ray_local, store):
    from actors.search_jobs import start_search_jobs

    # 1.5 of the 2 CPUs per task: one task at a time, each pausing 2 s, so the job is
    # caught after its first task with three more to go
    settings = JobSettings(max_tasks=4, task_num_cpus=1.5, task_delay_s=2.0, cancel_grace_s=1.0)
    jobs = start_search_jobs("search-jobs-cancel-test", settings, num_cpus=0)
    q = query(embeddings=photo_of(1), start=T0, end=T0 + 3 * DAY)
    job_id = ray.get(jobs.submit.remote(q, str(store)))
    first = wait_for(status_when(jobs, job_id, lambda s: s["partitions_done"] > 0))
    assert first["state"] == "running" and 0 < first["progress"] < 1
    partial = ray.get(jobs.results.remote(job_id))  # results stream in
    assert partial.candidates and "partial result" in partial.warnings[-1]

    refs = ray.get(jobs.task_refs.remote(job_id))
    cancelled = ray.get(jobs.cancel.remote(job_id))
    assert cancelled["state"] == "cancelled"
    outcomes = []
    for ref in refs:
        try:
            ray.get(ref, timeout=30)
            outcomes.append("finished")
        except ray.exceptions.TaskCancelledError:
            outcomes.append("cancelled")
    assert outcomes[0] == "finished" and outcomes.count("cancelled") >= 2

    time.sleep(settings.task_delay_s + settings.cancel_grace_s)  # any straggler is over
    status = ray.get(jobs.status.remote(job_id))
    assert status["state"] == "cancelled" and status["finished"] is not None
    assert status["partitions_done"] == cancelled["partitions_done"] < 9  # nothing merged since
    assert status["tasks"]["cancelled"] == outcomes.count("cancelled")
    after = ray.get(jobs.results.remote(job_id))
    assert after.candidates == ray.get(jobs.results.remote(job_id)).candidates
    assert "(job cancelled)" in after.warnings[-1]
    assert ray.get(jobs.cancel.remote(job_id))["state"] == "cancelled"  # idempotent
    ray.kill(jobs)


def test_bad_job_ids_and_photo_queries_are_refused(ray_local, store):
    from actors.search_jobs import start_search_jobs

    jobs = start_search_jobs("search-jobs-errors-test", num_cpus=0)
    with pytest.raises(KeyError, match="unknown search job 'job-nope'"):
        ray.get(jobs.status.remote("job-nope"))
    with pytest.raises(KeyError, match="unknown search job"):
        ray.get(jobs.cancel.remote("job-nope"))
    with pytest.raises(ValueError, match="a job id is a string"):
        ray.get(jobs.results.remote(42))
    photo = encode_photo(np.full((20, 20, 3), 128, np.uint8))
    with pytest.raises(SearchQueryError, match="embed_query"):
        ray.get(jobs.submit.remote(query(photos=[photo]), str(store)))
    ray.kill(jobs)


def test_a_watch_on_the_coordinator_alerts_on_ingest(ray_local, tmp_path):
    from actors.coordinator import Coordinator

    site = load_site_config(EXAMPLE_SITE)
    coordinator = Coordinator.options(name="watch-test-coordinator", num_cpus=0).remote(
        site, str(tmp_path / "wal"), str(tmp_path / "store")
    )
    watch = query(embeddings=photo_of(1), start=T0, end=T0 + 60)
    watch_id = ray.get(coordinator.add_watch.remote(watch))
    assert [w["watch_id"] for w in ray.get(coordinator.watches.remote())] == [watch_id]

    mine = make_tracklet(1, "entrance", T0 + 600, person=1)
    other = make_tracklet(2, "concourse", T0 + 600, person=2)
    assert ray.get(coordinator.ingest.remote([mine, other])) == {"acknowledged": 2, "new": 2}
    [alert] = ray.get(coordinator.watch_alerts.remote())
    assert (alert["watch_id"], alert["case_id"], alert["tracklet_id"]) == (
        watch_id,
        "case-1",
        mine.tracklet_id,
    )
    owners = {t: g for g, ts in ray.get(coordinator.identities.remote()).items() for t in ts}
    assert alert["global_id"] == owners[mine.tracklet_id]

    # a retried batch raises nothing new; a watch that fails does not fail the ingest
    assert ray.get(coordinator.ingest.remote([mine]))["new"] == 0
    bad = ray.get(coordinator.add_watch.remote(query(embeddings=[[1.0] * (DIM + 1)])))
    later = make_tracklet(3, "platform", T0 + 900, person=1)
    assert ray.get(coordinator.ingest.remote([later]))["new"] == 1
    assert [a["tracklet_id"] for a in ray.get(coordinator.watch_alerts.remote(alert["seq"]))] == [
        later.tracklet_id
    ]
    health = ray.get(coordinator.health.remote())["watches"]
    assert health["watch_errors"] == 1 and health["open"] == 2 and health["alerts"] == 2

    ray.get(coordinator.remove_watch.remote(watch_id))
    assert [w["watch_id"] for w in ray.get(coordinator.watches.remote())] == [bad]
    ray.kill(coordinator, no_restart=True)
