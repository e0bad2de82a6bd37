"""The API's live routes (cameras with health and run-time changes, deployments, cluster,
density now, standing watches, the event stream) against a recording fake of the
running pipeline, without Ray; and their 503 without one."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.api import create_app
from serve.live import PipelineUnavailableError
from sightline.config import ConfigError
from sightline.security import AuditLog, KeyStore
from sightline.site_changes import with_camera, without_camera
from tests.test_api import ROLES, SEARCH, _auth, _fill_store, _site_config
from tests.test_search_helpers import person_vector


class FakePipeline:
    """Operations kept in memory: camera changes go through the real site validation."""

    def __init__(self, site) -> None:
        self.site = site
        self.calls: list[tuple[str, Any]] = []
        self.watch_list: dict[str, dict[str, Any]] = {}
        self.watch_rows: list[dict[str, Any]] = []
        self.density_rows: list[dict[str, Any]] = []
        self.down = False
        self.jobs: dict[str, dict[str, Any]] = {}

    def _check(self) -> None:
        if self.down:
            raise PipelineUnavailableError("the pipeline's coordinator did not answer")

    def cameras(self):
        self._check()
        return [
            {"id": c.id, "source": "rtsp://op:secret@10.0.0.9/s", "health": {"state": "running"}}
            for c in self.site.cameras
        ]

    def add_camera(self, camera, replace=False):
        self._check()
        self.site = with_camera(self.site, camera, replace=replace)
        self.calls.append(("replace" if replace else "add", camera["id"]))
        return {"id": camera["id"], "source": camera["source"], "health": {"state": "running"}}

    def remove_camera(self, camera_id):
        self.site = without_camera(self.site, camera_id)
        self.calls.append(("remove", camera_id))
        return {"camera_id": camera_id, "state": "stopped"}

    def deployments(self):
        return {"applications": {"sightline-detector": {"status": "RUNNING"}}, "batches": {}}

    def cluster(self):
        return {"resources": {"CPU": 2.0, "GPU": 1.0}, "available": {}, "nodes": []}

    def density_now(self):
        self._check()
        return {"z": {"zone_id": "z", "count": 3.0, "density_per_m2": 0.04}}

    def density_alerts(self, since=0):
        self._check()
        return [r for r in self.density_rows if r["seq"] > since]

    def add_watch(self, query, threshold=None):
        if not query.embeddings and query.description is None:
            raise ValueError("a standing watch needs embeddings or a description")
        watch_id = f"w{len(self.watch_list) + 1}"
        self.watch_list[watch_id] = {"watch_id": watch_id, "case_id": query.case_id}
        self.calls.append(("watch", (query, threshold)))
        return watch_id

    def remove_watch(self, watch_id):
        if watch_id not in self.watch_list:
            raise KeyError(f"unknown watch {watch_id!r}")
        del self.watch_list[watch_id]

    def watches(self):
        return list(self.watch_list.values())

    def watch_alerts(self, since=0):
        return [r for r in self.watch_rows if r["seq"] > since]

    def submit_job(self, query, store_root, ingest=False):
        job_id = f"job-{len(self.jobs) + 1}"
        self.jobs[job_id] = {
            "query": query,
            "store": store_root,
            "state": "running",
            "ingest": ingest,
        }
        self.calls.append(("job", job_id))
        return job_id

    def job_status(self, job_id):
        job = self.jobs[job_id]  # KeyError: unknown
        return {"job_id": job_id, "state": job["state"], **job["query"].audit, "progress": 0.5}

    def job_results(self, job_id):
        from sightline.search import search_store

        job = self.jobs[job_id]
        return search_store(job["store"], job["query"])

    def cancel_job(self, job_id):
        self.jobs[job_id]["state"] = "cancelled"
        return self.job_status(job_id)


@pytest.fixture
def live(tmp_path):
    site = _site_config(tmp_path)
    keys = KeyStore(tmp_path / "keys.json", create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    fake = FakePipeline(site)
    app = create_app(
        site, keys_file=tmp_path / "keys.json", audit_dir=tmp_path / "audit", ops=fake, poll_s=0.05
    )
    return TestClient(app), tokens, fake, tmp_path / "audit"


def _new_camera(site, camera_id="cam3", **changes):
    camera = site.cameras[0].model_dump(mode="json", exclude_none=True)
    return {**camera, "id": camera_id, **changes}


LIVE_ROUTES = [
    ("GET", "/cameras", "operator"),
    ("POST", "/cameras", "operator"),
    ("PUT", "/cameras/cam1", "operator"),
    ("DELETE", "/cameras/cam1", "operator"),
    ("GET", "/deployments", "operator"),
    ("GET", "/cluster", "operator"),
    ("GET", "/density/now", "data"),
    ("POST", "/watches", "analyst"),
    ("GET", "/watches", "analyst"),
    ("DELETE", "/watches/w1", "analyst"),
    ("GET", "/watches/alerts", "analyst"),
    ("POST", "/searches/jobs", "analyst"),
    ("GET", "/searches/jobs/job-1", "analyst"),
    ("DELETE", "/searches/jobs/job-1", "analyst"),
]


@pytest.mark.parametrize(("method", "path", "role"), LIVE_ROUTES)
def test_live_routes_refuse_missing_keys_and_other_roles(live, method, path, role):
    client, tokens, fake, _ = live
    assert client.request(method, path).status_code == 401
    for other in ROLES:
        if other != role:
            answer = client.request(method, path, headers=_auth(tokens, other))
            assert answer.status_code == 403, (other, answer.text)
            assert role in answer.json()["detail"]
    assert fake.calls == []


def test_cameras_list_health_and_hide_stream_passwords(live):
    client, tokens, _, _ = live
    cams = client.get("/cameras", headers=_auth(tokens, "operator")).json()
    assert [c["id"] for c in cams] == ["cam1", "cam2"]
    assert all(c["health"]["state"] == "running" for c in cams)
    assert all("secret" not in c["source"] and "***" in c["source"] for c in cams)


def test_a_camera_is_added_changed_and_removed_at_run_time(live):
    client, tokens, fake, audit_dir = live
    op = _auth(tokens, "operator")
    added = client.post("/cameras", json=_new_camera(fake.site), headers=op)
    assert added.status_code == 201, added.text
    assert [c.id for c in fake.site.cameras] == ["cam1", "cam2", "cam3"]
    changed = client.put("/cameras/cam3", json=_new_camera(fake.site, fps=5), headers=op)
    assert changed.status_code == 200 and fake.site.camera("cam3").fps == 5
    assert client.delete("/cameras/cam3", headers=op).status_code == 200
    assert fake.calls == [("add", "cam3"), ("replace", "cam3"), ("remove", "cam3")]
    actions = [e["action"] for e in AuditLog(audit_dir).entries()]
    assert actions == ["camera.add", "camera.change", "camera.remove"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "named"),
    [
        ("POST", "/cameras", {"id": "cam1", "source": "x.mp4"}, 422, "already exists"),
        ("POST", "/cameras", "bad-fps", 422, "fps"),
        ("POST", "/cameras", {"source": "x.mp4"}, 422, "id"),
        ("PUT", "/cameras/cam2", "other-id", 422, "differs"),
        ("PUT", "/cameras/nope", {"id": "nope", "source": "x.mp4"}, 404, "no such camera"),
        ("DELETE", "/cameras/nope", None, 404, "no such camera"),
    ],
)
def test_bad_camera_changes_name_the_problem_and_change_nothing(
    live, method, path, body, status, named
):
    client, tokens, fake, _ = live
    if body == "bad-fps":
        body = _new_camera(fake.site, fps=-1)
    elif body == "other-id":
        body = _new_camera(fake.site, "cam9")
    before = [c.model_dump() for c in fake.site.cameras]
    answer = client.request(method, path, json=body, headers=_auth(tokens, "operator"))
    assert answer.status_code == status, answer.text
    assert named in answer.json()["detail"]
    assert [c.model_dump() for c in fake.site.cameras] == before


def test_operations_and_density_now_pass_through(live):
    client, tokens, _, _ = live
    deployments = client.get("/deployments", headers=_auth(tokens, "operator")).json()
    assert "sightline-detector" in deployments["applications"]
    assert client.get("/cluster", headers=_auth(tokens, "operator")).json()["resources"]["GPU"]
    now = client.get("/density/now", headers=_auth(tokens, "data")).json()
    assert now["z"]["count"] == 3.0


def test_a_watch_is_opened_listed_alerted_and_closed(live):
    client, tokens, fake, audit_dir = live
    analyst = _auth(tokens, "analyst")
    body = {**SEARCH, "embeddings": [person_vector(1).tolist()], "threshold": 0.8}
    created = client.post("/watches", json=body, headers=analyst)
    assert created.status_code == 201, created.text
    watch_id = created.json()["watch_id"]
    (_, (query, threshold)) = fake.calls[-1]
    assert threshold == 0.8 and query.case_id == "case-7" and query.requested_by == "analyst-user"
    assert [w["watch_id"] for w in client.get("/watches", headers=analyst).json()] == [watch_id]
    fake.watch_rows += [{"seq": 1, "watch_id": watch_id}, {"seq": 2, "watch_id": watch_id}]
    alerts = client.get("/watches/alerts?since=1", headers=analyst).json()
    assert [a["seq"] for a in alerts] == [2]
    assert client.delete(f"/watches/{watch_id}", headers=analyst).json()["closed"]
    assert client.delete(f"/watches/{watch_id}", headers=analyst).status_code == 404
    entry = next(e for e in AuditLog(audit_dir).entries() if e["action"] == "watch.create")
    assert entry["case_id"] == "case-7" and entry["parameters"]["threshold"] == 0.8


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"case_id": None}, "case_id"),
        ({"threshold": "high"}, "threshold"),
        ({"threshold": 5}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"embeddings": []}, "embeddings or a description"),
    ],
)
def test_bad_watches_are_refused_naming_the_field(live, change, named):
    client, tokens, fake, _ = live
    body = {**SEARCH, "embeddings": [person_vector(1).tolist()], **change}
    body = {k: v for k, v in body.items() if v is not None}
    answer = client.post("/watches", json=body, headers=_auth(tokens, "analyst"))
    assert answer.status_code == 422 and named in answer.json()["detail"]
    assert fake.watch_list == {}


def _events(text: str) -> list[tuple[str, str]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], lines.get("id", "")))
    return out


def test_the_event_stream_sends_each_role_its_alerts_after_the_cursor(live):
    client, tokens, fake, _ = live
    fake.density_rows = [{"seq": 1, "zone_id": "z"}, {"seq": 2, "zone_id": "z"}]
    fake.watch_rows = [{"seq": 1, "watch_id": "w1"}]
    data = client.get("/events?timeout_s=0.3&since_density=1", headers=_auth(tokens, "data"))
    assert data.status_code == 200
    assert data.headers["content-type"].startswith("text/event-stream")
    assert _events(data.text) == [("density_alert", "density_alert-2")]
    analyst = client.get("/events?timeout_s=0.3", headers=_auth(tokens, "analyst"))
    assert _events(analyst.text) == [("watch_alert", "watch_alert-1")]
    assert client.get("/events?timeout_s=0.3", headers=_auth(tokens, "admin")).status_code == 403
    assert client.get("/events?timeout_s=0.3").status_code == 401


def test_the_event_stream_reports_a_pipeline_that_went_away(live):
    client, tokens, fake, _ = live
    fake.down = True
    answer = client.get("/events?timeout_s=0.2", headers=_auth(tokens, "operator"))
    assert answer.status_code == 200 and "event: error" in answer.text


def test_a_pipeline_that_does_not_answer_is_a_503(live):
    client, tokens, fake, _ = live
    fake.down = True
    answer = client.get("/density/now", headers=_auth(tokens, "data"))
    assert answer.status_code == 503 and "did not answer" in answer.json()["detail"]


def test_without_a_pipeline_live_routes_are_503_and_cameras_come_from_the_file(tmp_path):
    site = _site_config(tmp_path)
    keys = KeyStore(tmp_path / "keys.json", create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    client = TestClient(create_app(site, keys_file=tmp_path / "keys.json", audit_dir=tmp_path))
    cams = client.get("/cameras", headers=_auth(tokens, "operator")).json()
    assert [c["health"] for c in cams] == [None, None]
    for method, path, role in LIVE_ROUTES[1:]:
        body = {**SEARCH, "embeddings": [[1.0]]} if path in ("/watches", "/searches/jobs") else None
        if path.startswith("/cameras") and method != "DELETE":
            body = _new_camera(site, path.rsplit("/", 1)[-1] if method == "PUT" else "cam3")
        answer = client.request(method, path, json=body, headers=_auth(tokens, role))
        assert answer.status_code == 503, (method, path, answer.text)
        assert "sightline serve" in answer.json()["detail"]
    assert client.get("/events", headers=_auth(tokens, "data")).status_code == 503


def test_config_errors_of_the_fake_are_the_real_ones(tmp_path):
    site = _site_config(tmp_path)
    with pytest.raises(ConfigError, match="last camera"):
        without_camera(without_camera(site, "cam1"), "cam2")


def test_whoami_and_the_site_map_answer_any_valid_key(live):
    client, tokens, _, _ = live
    for role in ROLES:
        me = client.get("/whoami", headers=_auth(tokens, role))
        assert me.json()["role"] == role and me.json()["principal"] == f"{role}-user"
    assert client.get("/whoami").status_code == 401
    assert client.get("/site").status_code == 401
    site = client.get("/site", headers=_auth(tokens, "analyst")).json()
    assert [z["id"] for z in site["zones"]] == ["z"]
    assert site["zones"][0]["polygon"] == [[0, 0], [10, 0], [10, 7.5], [0, 7.5]]
    x0, y0, x1, y1 = site["bounds"]
    assert x0 <= 0 and y0 <= 0 and x1 >= 10 and y1 >= 7.5
    cams = {c["id"]: c for c in site["cameras"]}
    assert set(cams) == {"cam1", "cam2"}
    # a top-down camera seeing [0, 10] x [0, 7.5] m: its footprint spans that rectangle
    xs = [p[0] for p in cams["cam1"]["footprint"]]
    ys = [p[1] for p in cams["cam1"]["footprint"]]
    assert min(xs) == pytest.approx(0, abs=0.05) and max(xs) == pytest.approx(10, abs=0.05)
    assert min(ys) == pytest.approx(0, abs=0.05) and max(ys) == pytest.approx(7.5, abs=0.05)


def test_a_search_job_runs_reports_progress_and_is_cancelled_by_its_owner_only(live, tmp_path):
    client, tokens, fake, audit_dir = live
    (tmp_path / "store").mkdir(exist_ok=True)  # an empty store: the job finds nothing
    keys = KeyStore(tmp_path / "keys.json", iterations=1)
    other = keys.create("someone-else", "analyst")[1]
    body = {**SEARCH, "embeddings": [person_vector(1).tolist()]}
    started = client.post("/searches/jobs", json=body, headers=_auth(tokens, "analyst"))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    assert started.json()["status"]["state"] == "running"
    assert fake.jobs[job_id]["ingest"] is True  # recorded footage is ingested by default
    created = [e for e in AuditLog(audit_dir).entries() if e["action"] == "search.create"]
    assert created[-1]["parameters"]["ingest"] is True
    plain = client.post(
        "/searches/jobs?ingest=false", json=body, headers=_auth(tokens, "analyst")
    ).json()
    assert fake.jobs[plain["job_id"]]["ingest"] is False
    read = client.get(f"/searches/jobs/{job_id}", headers=_auth(tokens, "analyst")).json()
    assert read["status"]["progress"] == 0.5 and read["result"]["case_id"] == "case-7"
    stranger = {"Authorization": f"Bearer {other}"}
    assert client.get(f"/searches/jobs/{job_id}", headers=stranger).status_code == 404
    assert client.delete(f"/searches/jobs/{job_id}", headers=stranger).status_code == 404
    assert fake.jobs[job_id]["state"] == "running"
    cancelled = client.delete(f"/searches/jobs/{job_id}", headers=_auth(tokens, "analyst"))
    assert cancelled.json()["status"]["state"] == "cancelled"
    assert client.get("/searches/jobs/nope", headers=_auth(tokens, "analyst")).status_code == 404
    actions = [e["action"] for e in AuditLog(audit_dir).entries()]
    assert actions.count("search.create") == 2 and "search.cancel" in actions


def test_a_search_jobs_results_are_refined_routed_and_shown_like_a_search(live, tmp_path):
    client, tokens, fake, _ = live
    _fill_store(fake.site)
    headers = _auth(tokens, "analyst")
    body = {**SEARCH, "embeddings": [person_vector(1).tolist()]}
    job_id = client.post("/searches/jobs", json=body, headers=headers).json()["job_id"]
    early = client.get(f"/searches/{job_id}", headers=headers)
    assert early.status_code == 409 and f"/searches/jobs/{job_id}" in early.json()["detail"]
    read = client.get(f"/searches/jobs/{job_id}", headers=headers).json()
    assert read["result"]["candidates"][0]["key"] == "g1"
    as_search = client.get(f"/searches/{job_id}", headers=headers).json()
    assert as_search["result"] == read["result"]
    route = client.get(f"/searches/{job_id}/candidates/g1/route", headers=headers)
    assert [s["camera_id"] for s in route.json()["route"]] == ["cam1", "cam2"]
    thumb = client.get(
        f"/searches/{job_id}/candidates/g1/thumbnail?tracklet_id=cam1-0-1", headers=headers
    )
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    refined = client.post(f"/searches/{job_id}/refine", json={"rejected": ["g1"]}, headers=headers)
    assert "g1" not in [c["key"] for c in refined.json()["result"]["candidates"]]
    client.get(f"/searches/jobs/{job_id}", headers=headers)  # the job's own result again
    kept = client.get(f"/searches/{job_id}", headers=headers).json()["result"]
    assert "g1" not in [c["key"] for c in kept["candidates"]]  # the refinement stays
