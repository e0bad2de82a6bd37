"""Search jobs without Ray: grouping, the fan-out recipe, job state, the job book."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from sightline.search import (
    JobBook,
    JobSettings,
    SearchJob,
    SearchQueryError,
    group_partitions,
    merge_partials,
    plan_job,
    search_partitions,
    search_store,
)
from sightline.search.jobs import final_result
from sightline.search.photos import encode_photo
from sightline.store import TrackStore
from tests.test_search_engine import assert_same
from tests.test_search_helpers import T0, make_tracklet, person_vector, query

DAY = 86400.0
CAMERAS = ("cam1", "cam2", "cam3")


def photo_of(person: int) -> list[list[float]]:
    return [person_vector(person).tolist()]


def write_store(root) -> None:
    """Three days x three cameras; person 1 (g1) once a day on a different camera, person 2
    (g2) on every camera every day."""
    tracklets, ids = [], {}
    for day in range(3):
        for i, cam in enumerate(CAMERAS):
            t0 = T0 + day * DAY + 60 * i
            other = make_tracklet(100 + 10 * day + i, cam, t0, person=2, upper="blue")
            tracklets.append(other)
            ids[other.tracklet_id] = "g2"
            if i == day:
                mine = make_tracklet(10 * day + i, cam, t0 + 5, person=1, start=(5, 5))
                tracklets.append(mine)
                ids[mine.tracklet_id] = "g1"
    with TrackStore(root, durable=False) as s:
        s.write_tracklets(tracklets, ids)
        s.write_assignments(
            [
                {"tracklet_id": t, "global_id": g, "seq": i, "reason": "test"}
                for i, (t, g) in enumerate(ids.items())
            ],
            assigned_at=T0,
        )


@pytest.fixture
def store(tmp_path):
    write_store(tmp_path / "store")
    return tmp_path / "store"


@pytest.mark.parametrize(
    ("n", "groups", "sizes"),
    [(0, 4, []), (3, 16, [1, 1, 1]), (5, 2, [2, 3]), (10, 3, [3, 4, 3]), (9, 1, [9])],
)
def test_group_partitions_keeps_order_and_balances(n, groups, sizes):
    parts = [(date(2024, 5, 1) + timedelta(days=i // 3), f"cam{i % 3}") for i in range(n)]
    grouped = group_partitions(parts, groups)
    assert [len(g) for g in grouped] == sizes
    assert [p for g in grouped for p in g] == parts


def test_group_partitions_needs_a_group():
    with pytest.raises(ValueError, match="max_groups must be >= 1"):
        group_partitions([], 0)


def test_the_fan_out_recipe_gives_the_direct_search(store):
    q = query(embeddings=photo_of(1), start=T0, end=T0 + 3 * DAY)
    plan = plan_job(store, q)
    assert len(plan.partitions) == 9
    partials = [
        search_partitions(store, plan.query, group, plan.identities, 200)
        for group in group_partitions(plan.partitions, 4)
    ]
    merged = final_result(store, plan.query, partials)
    direct = search_store(store, q)
    assert_same(merged, direct)
    assert merged.candidates[0].key == "g1" and len(merged.candidates[0].sightings) == 3


def test_merge_partials_of_nothing_is_an_empty_result_with_the_note():
    q = query(embeddings=photo_of(1), requested_by="analyst-7")
    empty = merge_partials(q, [], "partial result: 0 of 4 partitions searched (job running)")
    assert empty.candidates == [] and empty.no_good_match
    assert (empty.case_id, empty.requested_by) == ("case-1", "analyst-7")
    assert empty.warnings == ["partial result: 0 of 4 partitions searched (job running)"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_job_lifecycle_progress_and_partial_results(store):
    q = query(embeddings=photo_of(1), start=T0, end=T0 + 3 * DAY)
    plan = plan_job(store, q)
    groups = group_partitions(plan.partitions, 3)
    job = SearchJob("job-1", q, str(store), clock=Clock())
    status = job.status()
    assert (status["state"], status["progress"], status["case_id"]) == ("queued", 0.0, "case-1")
    assert job.start(len(plan.partitions), len(groups))
    first = search_partitions(store, plan.query, groups[0], plan.identities, 200)
    assert job.add_partial(first, len(groups[0]))
    status = job.status()
    assert status["state"] == "running" and status["progress"] == pytest.approx(1 / 3)
    assert status["partitions_done"] == 3 and status["candidates_so_far"] == 2
    assert status["good_matches_so_far"] == 1
    so_far = merge_partials(q, job.partials(), job.partial_note())
    assert so_far.warnings[-1] == "partial result: 3 of 9 partitions searched (job running)"
    for group in groups[1:]:
        job.add_partial(search_partitions(store, plan.query, group, plan.identities, 200), 3)
    assert job.finish(final_result(store, plan.query, job.partials()))
    status = job.status()
    assert (status["state"], status["progress"], status["tasks"]["done"]) == ("done", 1.0, 3)
    assert status["submitted"] < status["started"] < status["finished"]
    assert job.partial_note() is None and job.result is not None
    assert not job.cancel() and job.state == "done"  # a finished job stays finished


def test_a_cancelled_job_merges_nothing_more(store):
    q = query(embeddings=photo_of(1))
    job = SearchJob("job-1", q, str(store))
    job.start(4, 2)
    assert job.cancel() and job.state == "cancelled" and job.finished is not None
    partial = merge_partials(q, [])
    assert not job.add_partial(partial, 2)
    assert job.partitions_done == 0 and job.tasks["discarded"] == 1
    assert not job.finish(partial) and job.result is None
    assert not job.fail("late error") and job.error is None
    job.task_ended("cancelled")
    assert job.status()["tasks"]["cancelled"] == 1


def test_a_job_cancelled_before_it_started_never_starts(store):
    job = SearchJob("job-1", query(embeddings=photo_of(1)), str(store))
    job.cancel()
    assert not job.start(4, 2) and job.state == "cancelled"


def test_the_book_refuses_photos_and_bad_roots_and_names_unknown_ids(store, tmp_path):
    book = JobBook(new_id=lambda: "job-1")
    photo = encode_photo(np.full((20, 20, 3), 128, np.uint8))
    with pytest.raises(SearchQueryError, match=r"embed them first with sightline\.search"):
        book.create(query(photos=[photo]), store)
    with pytest.raises(ValueError, match="is not a folder"):
        book.create(query(embeddings=photo_of(1)), tmp_path / "nowhere")
    job = book.create(query(embeddings=photo_of(1)), store)
    assert book.get("job-1") is job and len(book) == 1
    with pytest.raises(KeyError, match="unknown search job 'job-2'"):
        book.get("job-2")
    with pytest.raises(ValueError, match="a job id is a string"):
        book.get(7)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="handed out twice"):
        book.create(query(embeddings=photo_of(1)), store)


def test_the_book_forgets_the_oldest_finished_jobs(store):
    ids = iter(f"job-{i}" for i in range(10))
    book = JobBook(max_jobs=2, new_id=lambda: next(ids))
    running = book.create(query(embeddings=photo_of(1)), store)
    running.start(1, 1)
    done = book.create(query(embeddings=photo_of(1)), store)
    done.cancel()
    book.create(query(embeddings=photo_of(1)), store)
    assert [s["job_id"] for s in book.statuses()] == ["job-2", "job-0"]
    with pytest.raises(KeyError, match="forgotten"):
        book.get("job-1")


def test_settings_are_validated():
    with pytest.raises(ValueError, match=r"task_num_cpus = -1, max_tasks = 0"):
        JobSettings(max_tasks=0, task_num_cpus=-1)
