"""Search jobs over recorded footage not ingested yet: the Ray-free plan (which cameras
and windows need an ingest, given the ingest ledger, other jobs' ingests, tracklets
already stored), the job's ingest bookkeeping and a reader limited to a window; then,
on the session's local Ray, a job that ingests a camera's window through the pipeline
(models, coordinator) and finds the person, a cancel during the ingest, and an
unreadable recording reported without failing the job."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sightline.config import load_site_config
from sightline.ingest import FrameReader
from sightline.ingest.reader import ReaderSettings
from sightline.search.forensic import (
    IngestWindow,
    plan_ingest,
    probe_duration,
    recording_record,
    subtract_spans,
)
from sightline.search.jobs import SearchJob
from sightline.store.ingests import (
    INGEST_SCHEMA,
    IngestRecord,
    covered_spans,
    read_ingests,
    record_ingests,
)
from tests.test_search_helpers import query as base_query

EXAMPLE_SITE = Path(__file__).resolve().parents[1] / "configs" / "example-site.yaml"
START = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC)
REC = START + timedelta(seconds=2.5)  # platform: source_start 14:00, clock 2.5 s behind
NO_LEDGER = pl.DataFrame(schema=INGEST_SCHEMA)


def query(**fields: object):
    """A description query (red top) over 13:59-15:00, with ``fields`` on top."""
    return base_query(**{"description": {"upper_colour": "red"}, **fields})


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def example_site():
    return load_site_config(EXAMPLE_SITE)


def ledger(*spans: tuple[float, float], source: str | None = None, camera: str = "platform"):
    site = load_site_config(EXAMPLE_SITE)
    src = source or str(site.camera("platform").source)
    rows = [IngestRecord(camera, src, at(a), at(b)) for a, b in spans]
    return pl.DataFrame([{**r.__dict__, "recorded_at": START} for r in rows], schema=INGEST_SCHEMA)


# --------------------------------------------------------------------------- the plan


def test_the_plan_ingests_the_recording_part_of_the_window_and_skips_streams(example_site):
    plan = plan_ingest(example_site, query(), durations={"platform": 600.0}, ledger=NO_LEDGER)
    [window] = plan.windows
    assert (window.camera_id, window.start, window.end) == ("platform", REC, at(602.5))
    assert (window.start_s, window.end_s, window.frames_total) == (0.0, 600.0, 6000)  # to its end
    reasons = {s["camera_id"]: s["reason"] for s in plan.skipped}
    assert set(reasons) == {"entrance", "concourse"} and "live stream" in reasons["entrance"]
    assert plan.failed == [] and plan.waits == []


def test_the_window_is_cut_to_the_query_and_offset_into_the_file(example_site):
    q = query(start=at(60).timestamp(), end=at(120).timestamp(), cameras=["platform"])
    [window] = plan_ingest(example_site, q, durations={"platform": 600.0}, ledger=NO_LEDGER).windows
    assert (window.start_s, window.end_s, window.frames_total) == (57.5, 117.5, 601)


def test_what_the_ledger_covers_is_not_ingested_again(example_site):
    q = query(cameras=["platform"])
    plan = plan_ingest(
        example_site, q, durations={"platform": 600.0}, ledger=ledger((60, 300), (250, 400))
    )
    assert [(w.start, w.end) for w in plan.windows] == [(REC, at(60)), (at(400), at(602.5))]
    done = plan_ingest(example_site, q, durations={"platform": 600.0}, ledger=ledger((0, 700)))
    assert done.windows == [] and done.skipped == [
        {"camera_id": "platform", "kind": "covered", "reason": "already ingested"}
    ]
    # the ledger of another file of the same camera (it was replaced) does not count
    other = ledger((0, 700), source="recordings/old.mp4")
    assert (
        len(plan_ingest(example_site, q, durations={"platform": 600.0}, ledger=other).windows) == 1
    )


def test_windows_in_flight_in_another_job_are_waited_for_not_ingested(example_site):
    q = query(cameras=["platform"])
    source = str(example_site.camera("platform").source)
    theirs = IngestWindow("platform", source, REC, at(100), 0.0, 97.5, 976)
    plan = plan_ingest(
        example_site, q, durations={"platform": 600.0}, ledger=NO_LEDGER, in_flight=[theirs]
    )
    assert plan.waits == [theirs]
    assert [(w.start, w.end) for w in plan.windows] == [(at(100), at(602.5))]


def test_tracklets_stored_without_a_ledger_entry_count_as_covered(example_site):
    q = query(cameras=["platform"])
    plan = plan_ingest(
        example_site,
        q,
        durations={"platform": 600.0},
        ledger=ledger((0, 300)),
        stored={"platform": [at(100), at(450)]},  # the one at 100 s is explained by the ledger
    )
    assert plan.windows == []
    assert "already has tracklets" in plan.skipped[0]["reason"]


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("busy", ("skipped", "the pipeline")),
        ("unreadable", ("failed", "SourceError")),
        ("no_time", ("skipped", "no source_start")),
        ("outside", ("skipped", "outside the window")),
        ("unknown", ("skipped", "not a camera of the site")),
    ],
)
def test_cameras_that_cannot_or_need_not_be_ingested_say_why(example_site, case, expect):
    from sightline.ingest.source import SourceError

    site, cameras = example_site, ["platform"]
    durations: dict = {"platform": 600.0}
    busy = {}
    q = query(cameras=cameras)
    if case == "busy":
        busy = {"platform": "the pipeline is processing this recording now"}
    elif case == "unreadable":
        durations = {"platform": SourceError("recordings/platform.mp4: cannot open")}
    elif case == "no_time":
        camera = site.camera("platform").model_copy(update={"source_start": None})
        site = site.model_copy(
            update={"cameras": [c if c.id != "platform" else camera for c in site.cameras]}
        )
    elif case == "outside":
        q = query(cameras=cameras, start=at(3600).timestamp(), end=at(7200).timestamp())
    else:
        q = query(cameras=["nowhere"])
    plan = plan_ingest(site, q, durations=durations, ledger=NO_LEDGER, busy=busy)
    kind, text = expect
    [entry] = getattr(plan, kind)
    assert plan.windows == [] and text in entry.get("reason", entry.get("error"))


def test_spans_subtract_and_the_ledger_round_trips(tmp_path):
    assert subtract_spans((at(0), at(10)), []) == [(at(0), at(10))]
    assert subtract_spans((at(0), at(10)), [(at(2), at(3)), (at(2.5), at(4)), (at(9), at(11))]) == [
        (at(0), at(2)),
        (at(4), at(9)),
    ]
    assert subtract_spans((at(0), at(10)), [(at(-1), at(11))]) == []
    assert read_ingests(tmp_path).height == 0
    record_ingests(tmp_path, [IngestRecord("cam", "a.mp4", at(0), at(5), job_id="job-1")])
    record_ingests(tmp_path, [IngestRecord("cam", "a.mp4", at(4), at(8), frames=40)])
    rows = read_ingests(tmp_path)
    assert rows.height == 2 and rows["job_id"].to_list() == ["job-1", None]
    assert covered_spans(rows, "cam", "a.mp4") == [(at(0), at(8))]
    assert covered_spans(rows, "cam", "b.mp4") == []
    with pytest.raises(ValueError, match="before start"):
        IngestRecord("cam", "a.mp4", at(5), at(0))


def test_a_job_reports_its_ingest_phase_and_what_it_could_not_add(tmp_path):
    source = "videos/cam01.mp4"
    job = SearchJob("job-1", query(), str(tmp_path))
    windows = [
        IngestWindow("cam01", source, at(0), at(6), 0.0, 6.0, 60).as_dict(),
        IngestWindow("cam02", source, at(0), at(4), 0.0, 4.0, 40).as_dict(),
    ]
    failed = [{"camera_id": "cam03", "error": "SourceError: cannot open"}]
    skipped = [
        {"camera_id": "cam04", "kind": "busy", "reason": "the pipeline is processing it"},
        {"camera_id": "cam05", "kind": "covered", "reason": "already ingested"},
    ]
    assert job.begin_ingest({"windows": windows, "failed": failed, "skipped": skipped})
    job.update_window(0, state="ingesting", frames_done=30)
    job.update_window(1, state="ingesting", frames_done=10)
    status = job.status()
    assert status["state"] == "ingesting" and status["progress"] == 0.0
    ingest = status["ingest"]
    assert (ingest["frames_done"], ingest["frames_total"], ingest["progress"]) == (40, 100, 0.4)
    assert [w["state"] for w in ingest["windows"]] == ["ingesting", "ingesting"]
    assert "nothing searched yet (job ingesting)" in job.partial_note()
    job.update_window(0, state="done", frames_done=60)
    job.update_window(1, state="failed", error="SourceError: truncated")
    assert job.ingest_status()["progress"] == 1.0
    notes = job.ingest_notes()
    assert len(notes) == 3 and "cam03" in notes[0] and "cam04" in notes[1]
    assert "cam02" in notes[2] and "truncated" in notes[2]
    assert job.start(3, 1) and job.state == "running"
    assert job.status()["ingest"]["finished"] is not None


def test_a_job_cancelled_while_ingesting_never_searches(tmp_path):
    job = SearchJob("job-1", query(), str(tmp_path))
    assert job.begin_ingest({"windows": []})
    assert job.cancel() and not job.start(3, 1) and job.state == "cancelled"


def test_the_reader_reads_only_its_window(tiny_site):
    video = tiny_site / "videos" / "cam01.mp4"
    assert probe_duration(video) == pytest.approx(10.0, abs=0.2)
    settings = ReaderSettings(window_start_s=2.0, window_end_s=4.0, queue_size=64)
    reader = FrameReader(video, settings).start()
    frames = list(reader)
    pts = [f.pts_s for f in frames]
    assert 19 <= len(frames) <= 21 and pts[0] == pytest.approx(2.0, abs=0.01)
    assert pts[-1] <= 4.0 and reader.health().progress == 1.0
    assert reader.health().frames_decoded < 60  # it sought to the window, then stopped
    with pytest.raises(ValueError, match="before window_start_s"):
        ReaderSettings(window_start_s=4.0, window_end_s=2.0)


def test_a_finished_recording_is_a_ledger_record(tiny_site):
    site = load_site_config(tiny_site / "site.yaml")
    record = recording_record(site.camera("cam01"), frames=100, tracklets=7)
    assert record is not None and record.kind == "pipeline"
    assert record.start == site.camera("cam01").source_start
    assert (record.end - record.start).total_seconds() == pytest.approx(10.0, abs=0.2)
    broken = site.camera("cam01").model_copy(update={"source": str(tiny_site / "nope.mp4")})
    assert recording_record(broken) is None


# --------------------------------------------------------------------------- on Ray

PREFIX = "fj-test"
STOPPED = {"done", "cancelled", "failed"}


@pytest.fixture(scope="module")
def pipeline(ray_local, tiny_site, tmp_path_factory):
    """The service's pipeline as ``sightline serve`` has it (models, supervisor with its
    coordinator, search jobs with the pipeline's prefix), its cameras not started: the
    store holds none of the recordings. A third camera's recording is not a video."""
    import ray

    from actors.search_jobs import start_search_jobs
    from actors.supervisor import start_supervisor
    from serve.deployments import delete_models, deploy_models
    from serve.live import search_jobs_name
    from sightline.search import JobSettings

    base = tmp_path_factory.mktemp("forensic")
    (base / "broken.mp4").write_bytes(b"this is not a video")
    site = load_site_config(tiny_site / "site.yaml")
    broken = site.camera("cam02").model_copy(
        update={"id": "cam03", "source": str(base / "broken.mp4")}
    )
    serving = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "num_gpus": 0.25, "num_cpus": 0}
    site = site.model_copy(
        update={
            "cameras": [*site.cameras, broken],
            "models": site.models.model_validate(
                {"detector": {"serving": serving}, "embedder": {"serving": serving}}
            ),
        }
    )
    store = base / "store"
    store.mkdir()
    handles = deploy_models(site.models, PREFIX)
    handles.detector.stats.remote().result()
    supervisor = start_supervisor(site, base / "run", store, PREFIX)
    settings = JobSettings(max_tasks=2, task_num_cpus=0.25, ingest_poll_s=0.2)
    jobs = start_search_jobs(search_jobs_name(PREFIX), settings, num_cpus=0, app_prefix=PREFIX)
    yield {"jobs": jobs, "store": store, "site": site, "base": base}
    ray.kill(jobs, no_restart=True)
    ray.kill(supervisor)
    ray.kill(ray.get_actor(f"{PREFIX}-coordinator"), no_restart=True)
    delete_models(PREFIX)


def statuses_until(jobs, job_id: str, done, timeout_s: float = 90.0) -> list[dict]:
    """Every status read (every 0.1 s) until ``done(status)``."""
    import ray

    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.append(ray.get(jobs.status.remote(job_id)))
        if done(seen[-1]):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {seen[-1]['state']} after {timeout_s} s: {seen[-1]}")


def photo_query(tiny_site: Path, person: int, **fields):
    """Person ``person``'s reference photo embedded through the pipeline's models."""
    from serve.live import handle_models
    from sightline.search import SearchQuery, embed_query

    photo = (tiny_site / "reference" / f"p{person:04d}.png").read_bytes()
    q = SearchQuery.model_validate(
        {"case_id": "case-9", "reason": "forensic test", "photos": [photo], **fields}
    )
    embed, detect, adapter = handle_models(PREFIX)
    return embed_query(q, embed, detect, adapter)


def gt_person_of(tiny_site: Path, sighting) -> int:
    """The ground-truth person nearest to ``sighting`` on its camera at its middle."""
    boxes = pl.read_parquet(tiny_site / "gt" / "boxes.parquet")
    mid = sighting.t_start + (sighting.t_end - sighting.t_start) / 2
    near = boxes.filter(
        (pl.col("camera_id") == sighting.camera_id)
        & ((pl.col("ts") - mid).abs() <= timedelta(seconds=0.15))
    ).with_columns(
        ((pl.col("world_x") - sighting.world_x) ** 2 + (pl.col("world_y") - sighting.world_y) ** 2)
        .sqrt()
        .alias("d")
    )
    return int(near.sort("d")["person_id"][0])


T_SITE = datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)


@pytest.mark.integration
def test_a_job_ingests_the_missing_window_then_finds_the_person(pipeline, tiny_site):

    from serve.live import RayOperations

    jobs, store = pipeline["jobs"], pipeline["store"]
    window = {
        "start": (T_SITE + timedelta(seconds=3)).isoformat(),
        "end": (T_SITE + timedelta(seconds=9)).isoformat(),
        "cameras": ["cam01"],
    }
    q = photo_query(tiny_site, 1, **window)
    ops = RayOperations(PREFIX)  # what the HTTP API calls
    assert [w["camera_id"] for w in ops.ingest_plan(q, str(store))["windows"]] == ["cam01"]
    job_id = ops.submit_job(q, str(store), ingest=True)
    seen = statuses_until(jobs, job_id, lambda s: s["state"] in STOPPED)
    final = seen[-1]
    assert final["state"] == "done", final
    ingesting = [s for s in seen if s["state"] == "ingesting"]
    assert ingesting, "the status never showed the ingest phase"
    [window_status] = final["ingest"]["windows"]
    assert (window_status["camera_id"], window_status["state"]) == ("cam01", "done")
    assert (window_status["start_s"], window_status["end_s"]) == (3.0, 9.0)
    assert window_status["frames_total"] == 61 and 55 <= window_status["frames_done"] <= 61
    assert window_status["tracklets"] > 0 and final["ingest"]["progress"] == 1.0
    progress = [s["ingest"]["frames_done"] for s in ingesting]
    assert progress == sorted(progress)  # it only moves forward

    result = ops.job_results(job_id)
    assert result.candidates, result.warnings
    top = result.candidates[0]
    assert {s.camera_id for s in top.sightings} == {"cam01"}
    assert gt_person_of(tiny_site, top.sightings[0]) == 1
    # the ledger says the window is in the store: a second job ingests nothing
    ledger_rows = read_ingests(store)
    assert ledger_rows.select("camera_id", "kind", "job_id").rows() == [
        ("cam01", "forensic", job_id)
    ]
    plan = ops.ingest_plan(q, str(store))
    assert plan["windows"] == [] and plan["skipped"][0]["reason"] == "already ingested"


@pytest.mark.integration
def test_cancel_during_the_ingest_stops_it(pipeline, tiny_site):
    import ray

    jobs, store = pipeline["jobs"], pipeline["store"]
    q = query(
        cameras=["cam02"],
        start=T_SITE.isoformat(),
        end=(T_SITE + timedelta(seconds=10)).isoformat(),
    )
    job_id = ray.get(jobs.submit.remote(q, str(store), True))
    statuses_until(
        jobs,
        job_id,
        lambda s: s["ingest"] is not None and s["ingest"]["windows"][0]["state"] == "ingesting",
    )
    cancelled = ray.get(jobs.cancel.remote(job_id))
    assert cancelled["state"] == "cancelled"
    final = statuses_until(
        jobs, job_id, lambda s: s["ingest"]["windows"][0]["state"] == "cancelled"
    )[-1]
    window = final["ingest"]["windows"][0]
    assert window["frames_done"] < window["frames_total"] and window["frames_total"] in (100, 101)
    assert final["partitions_total"] == 0 and final["tasks"]["total"] == 0  # never searched
    deadline = time.monotonic() + 30
    while ray.get(jobs.health.remote())["ingests_running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.get(jobs.health.remote())["ingests_running"] == 0
    with pytest.raises(ValueError):  # its camera actor is gone
        ray.get_actor(f"{PREFIX}-{job_id}-w0-camera-cam02")
    # what it had ingested is recorded (up to its last frame), not the whole window
    rows = read_ingests(store).filter(pl.col("job_id") == job_id)
    assert all(end < T_SITE + timedelta(seconds=10) for end in rows["end"])


@pytest.mark.integration
def test_an_unreadable_recording_is_reported_and_the_search_still_runs(pipeline):
    import ray

    jobs, store = pipeline["jobs"], pipeline["store"]
    q = query(
        cameras=["cam03", "cam01"],
        start=T_SITE.isoformat(),
        end=(T_SITE + timedelta(seconds=2)).isoformat(),
    )
    job_id = ray.get(jobs.submit.remote(q, str(store), True))
    final = statuses_until(jobs, job_id, lambda s: s["state"] in STOPPED)[-1]
    assert final["state"] == "done", final
    [failed] = final["ingest"]["failed"]
    assert failed["camera_id"] == "cam03" and "broken.mp4" in failed["error"]
    result = ray.get(jobs.results.remote(job_id))
    assert any("cam03" in w and "not ingested" in w for w in result.warnings)


@pytest.mark.integration
def test_ingest_needs_the_pipelines_store_and_a_pipeline(pipeline, tmp_path):
    import ray

    from actors.search_jobs import start_search_jobs
    from serve.live import PipelineUnavailableError, RayOperations, search_jobs_name

    q = query(cameras=["cam01"])
    with pytest.raises(ValueError, match="the pipeline stores to"):
        RayOperations(PREFIX).submit_job(q, str(tmp_path), ingest=True)
    # a jobs service without a pipeline: the API answers 503, as for other live routes
    lone = start_search_jobs(search_jobs_name("fj-lone"), num_cpus=0)
    with pytest.raises(PipelineUnavailableError, match="needs the running pipeline"):
        RayOperations("fj-lone").submit_job(q, str(tmp_path), ingest=True)
    assert RayOperations("fj-lone").submit_job(q, str(tmp_path))  # without ingest it runs
    ray.kill(lone, no_restart=True)


@pytest.mark.integration
def test_a_recording_the_pipeline_runs_is_left_to_it_then_recorded_as_ingested(pipeline):
    import ray

    from actors.supervisor import supervisor_name

    jobs, store, site = pipeline["jobs"], pipeline["store"], pipeline["site"]
    supervisor = ray.get_actor(supervisor_name(PREFIX))
    camera = {**site.camera("cam01").model_dump(mode="json", exclude_none=True), "id": "cam04"}
    ray.get(supervisor.add_camera.remote(camera))
    q = query(cameras=["cam04"], start=T_SITE.isoformat(), end=(T_SITE + timedelta(seconds=10)))
    plan = ray.get(jobs.ingest_plan.remote(q, str(store)))
    assert plan["windows"] == [] and "pipeline is processing" in plan["skipped"][0]["reason"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # listed in the ledger once the supervisor has it
        rows = read_ingests(store).filter(pl.col("camera_id") == "cam04")
        busy = ray.get(supervisor.forensic_context.remote())["busy"]
        if rows.height and "cam04" not in busy:  # in the ledger and no longer running
            break
        time.sleep(0.5)
    cams = {c["id"]: c for c in ray.get(supervisor.cameras.remote())}
    assert cams["cam04"]["health"]["state"] == "finished"
    assert rows.select("kind", "start").rows() == [("pipeline", T_SITE)]
    plan = ray.get(jobs.ingest_plan.remote(q, str(store)))
    assert plan["windows"] == [] and plan["skipped"][0]["reason"] == "already ingested"
    ray.get(supervisor.remove_camera.remote("cam04"))
