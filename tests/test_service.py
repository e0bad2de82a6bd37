"""``sightline serve`` end to end on the session's local Ray: models, the pipeline
supervisor and the API as a Serve ingress, reached over HTTP. Cameras are listed with
health, added and removed at run time; once the recordings end the store answers tracks
and a photo search goes through the model deployments; then everything stops."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from sightline.config import load_site_config
from sightline.security import AuditLog, KeyStore, security_paths

pytestmark = pytest.mark.integration

ROLES = ("analyst", "data", "operator", "admin")


@pytest.fixture(scope="module")
def service(ray_local: str, tiny_site: Path, tmp_path_factory: pytest.TempPathFactory):
    import httpx

    from serve.commands import start_service, stop_service

    site = load_site_config(tiny_site / "site.yaml")
    serving = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "num_gpus": 0.25, "num_cpus": 0}
    store = tmp_path_factory.mktemp("service") / "store"
    site = site.model_copy(
        update={
            "models": site.models.model_validate(
                {"detector": {"serving": serving}, "embedder": {"serving": serving}}
            ),
            "storage": site.storage.model_copy(update={"root": str(store), "flush_after_s": 1.0}),
        }
    )
    keys = KeyStore(security_paths(site)[0], create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    port = int(ray_local.rsplit(":", 1)[1])
    handle = start_service(
        site,
        site_path=tiny_site / "site.yaml",
        port=port,
        app_prefix="svc-test",
        log=lambda _: None,
    )
    with httpx.Client(base_url=handle.url, timeout=60.0) as client:
        yield client, tokens, site, handle
    stop_service(handle)


def _auth(tokens, role):
    return {"Authorization": f"Bearer {tokens[role]}"}


def _wait_done(client, tokens, timeout_s=240.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cams = client.get("/cameras", headers=_auth(tokens, "operator")).json()
        if all(c["health"]["state"] in ("finished", "failed") for c in cams):
            return cams
        time.sleep(1.0)
    raise AssertionError(f"cameras still running after {timeout_s} s: {cams}")


def test_cameras_are_listed_added_and_removed_while_the_others_run(service):
    client, tokens, site, _ = service
    op = _auth(tokens, "operator")
    cams = client.get("/cameras", headers=op).json()
    assert [c["id"] for c in cams] == [c.id for c in site.cameras]
    assert all("state" in c["health"] for c in cams)
    extra = {**site.cameras[0].model_dump(mode="json", exclude_none=True), "id": "extra"}
    added = client.post("/cameras", json=extra, headers=op)
    assert added.status_code == 201, added.text
    assert "extra" in [c["id"] for c in client.get("/cameras", headers=op).json()]
    bad = client.post("/cameras", json={**extra, "id": "extra2", "fps": -1}, headers=op)
    assert bad.status_code == 422 and "fps" in bad.json()["detail"]
    removed = client.delete("/cameras/extra", headers=op)
    assert removed.status_code == 200, removed.text
    assert removed.json()["camera_id"] == "extra"
    assert client.delete("/cameras/extra", headers=op).status_code == 404
    ids = [c["id"] for c in client.get("/cameras", headers=op).json()]
    assert ids == [c.id for c in site.cameras]  # the others were never restarted


def test_operations_report_replicas_and_cluster_resources(service):
    client, tokens, _, _ = service
    op = _auth(tokens, "operator")
    deployments = client.get("/deployments", headers=op).json()
    detector = deployments["applications"]["svc-test-detector"]["deployments"]["Detector"]
    assert detector["replicas"].get("RUNNING", 0) >= 1
    assert "batches" in deployments["batches"]["detector"]
    assert client.get("/cluster", headers=op).json()["resources"]["GPU"] == 1.0


def test_after_the_recordings_the_store_answers_tracks_and_photo_searches(service, tiny_site):
    client, tokens, site, _ = service
    cams = _wait_done(client, tokens)
    assert {c["health"]["state"] for c in cams} == {"finished"}
    tracks = client.get(
        "/tracks",
        params={"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
        headers=_auth(tokens, "data"),
    )
    assert tracks.status_code == 200 and len(tracks.json()) > 0
    # the camera added and removed in the first test may have stored a tracklet or two
    assert {r["camera_id"] for r in tracks.json()} <= {c.id for c in site.cameras} | {"extra"}
    person = pl.read_parquet(tiny_site / "gt" / "people.parquet").row(0, named=True)
    photo = (tiny_site / person["reference_photo"]).read_bytes()
    query = {
        "case_id": "case-1",
        "reason": "integration test",
        "start": "2000-01-01T00:00:00Z",
        "end": "2100-01-01T00:00:00Z",
    }
    found = client.post(
        "/searches",
        data={"query": json.dumps(query)},
        files={"photos": ("p.png", photo, "image/png")},
        headers=_auth(tokens, "analyst"),
    )
    assert found.status_code == 201, found.text
    result = found.json()["result"]
    assert result["counts"]["input"] > 0 and result["candidates"]
    audit = AuditLog(security_paths(site)[1])
    assert any(e["action"] == "search.create" for e in audit.entries())
    events = client.get("/events", params={"timeout_s": 0.5}, headers=_auth(tokens, "data"))
    assert events.status_code == 200 and "streaming density_alert" in events.text


def test_a_search_job_runs_on_ray_to_the_same_candidates(service):
    client, tokens, _, _ = service
    analyst = _auth(tokens, "analyst")
    _wait_done(client, tokens)
    first = client.get(
        "/tracks",
        params={"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
        headers=_auth(tokens, "data"),
    ).json()[0]
    track = client.get(f"/identities/{first['global_id']}/route", headers=_auth(tokens, "data"))
    assert track.status_code == 200
    query = {
        "case_id": "case-2",
        "reason": "integration test",
        "start": "2000-01-01T00:00:00Z",
        "end": "2100-01-01T00:00:00Z",
        "description": {"upper_colour": "red"},
    }
    direct = client.post("/searches", json=query, headers=analyst).json()["result"]
    started = client.post("/searches/jobs", json=query, headers=analyst)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        read = client.get(f"/searches/jobs/{job_id}", headers=analyst).json()
        if read["status"]["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert read["status"]["state"] == "done", read["status"]
    assert read["status"]["progress"] == 1.0
    keys = [c["key"] for c in read["result"]["candidates"]]
    assert keys == [c["key"] for c in direct["candidates"]], read["status"]["ingest"]
