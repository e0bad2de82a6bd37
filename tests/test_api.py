"""The HTTP API app (``serve.api.create_app``) through FastAPI's TestClient, without Ray:
auth and roles, audit, searches, tracks, density, uploads and errors."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from serve.api import PARQUET_MEDIA_TYPE, create_app
from sightline.config import load_site_config
from sightline.density.counting import GroundFrame
from sightline.density.service import DensityService
from sightline.search.photos import encode_photo
from sightline.security import AuditLog, KeyStore
from sightline.store.tables import TrackStore
from tests.test_search_helpers import T0, make_tracklet, person_vector

ISO = datetime.fromtimestamp(T0, UTC).isoformat()
ISO_END = datetime.fromtimestamp(T0 + 3600, UTC).isoformat()
ROLES = ("analyst", "data", "operator", "admin")
SEARCH = {
    "case_id": "case-7",
    "reason": "missing child",
    "start": T0 - 60,
    "end": T0 + 3600,
}


def _site_config(tmp_path):
    corners = [(0, 0), (640, 0), (640, 480), (0, 480)]
    config = {
        "name": "api",
        "cameras": [
            {
                "id": cam,
                "source": f"videos/{cam}.mp4",
                "fps": 10,
                "resolution": [640, 480],
                "calibration": [{"image": [u, v], "ground": [u / 64, v / 64]} for u, v in corners],
            }
            for cam in ("cam1", "cam2")
        ],
        "zones": [
            {
                "id": "z",
                "polygon": [[0, 0], [10, 0], [10, 7.5], [0, 7.5]],
                "alert_density": 0.02,
                "alert_hold_s": 2,
            }
        ],
        "storage": {"root": "store"},
        "security": {"max_upload_mb": 0.05},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_site_config(path)


def _fill_store(site) -> None:
    """Person 1 (g1) on cam1 then cam2, person 2 (g2) on cam1; 10 s of zone counts."""
    thumbnail = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 20, 3), np.uint8)).save(
        thumbnail, "JPEG"
    )
    first = make_tracklet(1, "cam1", T0 + 10, person=1, start=(1, 1))
    first = dataclasses.replace(first, thumbnail_jpeg=thumbnail.getvalue())
    tracklets = [
        first,
        make_tracklet(2, "cam2", T0 + 30, person=1, start=(3, 2)),
        make_tracklet(3, "cam1", T0 + 12, person=2, start=(2, 3), upper="blue"),
    ]
    ids = {"cam1-0-1": "g1", "cam2-0-2": "g1", "cam1-0-3": "g2"}
    store = TrackStore(site.storage.root, durable=False)
    store.write_tracklets(tracklets, {})
    store.write_assignments(
        [
            {"tracklet_id": t, "global_id": g, "seq": i, "reason": "test"}
            for i, (t, g) in enumerate(ids.items())
        ],
        assigned_at=T0,
    )
    service = DensityService(site, store, clock=lambda: 0.0)
    for k in range(100):  # 3 people (0.04 /m2) from second 3 on: an alert
        people = 3 if k >= 30 else 1
        points = np.array([[2.0 + 2 * i, 3.0] for i in range(people)], np.float32)
        service.observe([GroundFrame("cam1", T0 + k / 10, points)])
    service.close()
    store.flush()
    store.close()
    # the run's detections of cam1-0-1's frames: the subject and a bystander behind it
    # (the default run folder <store>/_run); cam2's are missing
    boxes = np.asarray(first.boxes, np.float64)
    rows = [(t, b) for t, b in zip(first.ts, boxes, strict=True)]
    behind = boxes + np.array([8.0, 20, 8, 20])
    rows += [(t, b) for t, b in zip(first.ts, behind, strict=True)]
    folder = Path(site.storage.root) / "_run" / "detections" / "camera_id=cam1"
    folder.mkdir(parents=True)
    pl.DataFrame(
        {
            "camera_id": "cam1",
            "frame_ts": [datetime.fromtimestamp(t, UTC) for t, _ in rows],
            **{k: [float(b[i]) for _, b in rows] for i, k in enumerate(["x1", "y1", "x2", "y2"])},
            "score": 0.9,
        }
    ).write_parquet(folder / "part-0.parquet")


def _fake_embed(crops):
    return np.stack([person_vector(1) for _ in crops])


@pytest.fixture(
    scope="module", params=["asgi", pytest.param("serve", marks=pytest.mark.integration)]
)
def api(request, tmp_path_factory):
    """The app in process (FastAPI's TestClient), then the same app as the real Serve
    ingress on the session's local Ray, reached over HTTP through Serve's proxy: every
    test of this module runs against both."""
    tmp_path = tmp_path_factory.mktemp("api")
    site = _site_config(tmp_path)
    _fill_store(site)
    keys = KeyStore(tmp_path / "keys.json", create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    audit_dir = tmp_path / "audit"
    app = create_app(site, keys_file=tmp_path / "keys.json", audit_dir=audit_dir)
    if request.param == "asgi":
        yield TestClient(app), tokens, audit_dir, app
        return
    import httpx
    from ray import serve

    from serve.api import build_api_deployment

    base_url = request.getfixturevalue("ray_local")
    deployment = build_api_deployment(
        site,
        keys_file=tmp_path / "keys.json",
        audit_dir=audit_dir,
        ray_actor_options={"num_cpus": 0},
    )
    serve.run(deployment.bind(), name="api-test", route_prefix="/")
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        yield client, tokens, audit_dir, app
    serve.delete("api-test")


def _auth(tokens, role):
    return {"Authorization": f"Bearer {tokens[role]}"}


def _search(client, tokens, **fields):
    body = {**SEARCH, "embeddings": [person_vector(1).tolist()], **fields}
    return client.post("/searches", json=body, headers=_auth(tokens, "analyst"))


# --------------------------------------------------------------------------- auth

ROUTES = [
    ("POST", "/searches", "analyst"),
    ("GET", "/searches/nope", "analyst"),
    ("POST", "/searches/nope/refine", "analyst"),
    ("GET", "/searches/nope/candidates/g1/route", "analyst"),
    ("GET", "/searches/nope/candidates/g1/thumbnail", "analyst"),
    ("GET", f"/tracks?start={T0}&end={T0 + 60}", "data"),
    ("GET", "/identities/g1/route", "data"),
    ("GET", f"/density/zones?start={T0}&end={T0 + 10}", "data"),
    ("GET", f"/density/summary?start={T0}&end={T0 + 10}", "data"),
    ("GET", "/density/alerts", "data"),
    ("GET", f"/density/heatmap.png?start={T0}&end={T0 + 10}", "data"),
    ("GET", "/cameras", "operator"),
    ("GET", "/audit/verify", "admin"),
]


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sl_0123456789abcdef_" + "x" * 43}, {"X-API-Key": "junk"}],
    ids=["none", "unknown", "malformed"],
)
def test_every_route_needs_a_key(api, method, path, role, headers):
    client, *_ = api
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated" and response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
def test_every_route_needs_its_role(api, method, path, role):
    client, tokens, *_ = api
    for other in ROLES:
        if other == role:
            continue
        response = client.request(method, path, headers=_auth(tokens, other))
        assert response.status_code == 403, (other, response.text)
        assert f"needs role {role}" in response.json()["detail"]


def test_x_api_key_header_works(api):
    client, tokens, *_ = api
    response = client.get("/cameras", headers={"X-API-Key": tokens["operator"]})
    assert response.status_code == 200
    assert [c["id"] for c in response.json()] == ["cam1", "cam2"]
    assert response.json()[0]["fps"] == 10


# --------------------------------------------------------------------------- searches


def test_search_by_embeddings_returns_candidates_and_is_audited(api):
    client, tokens, audit_dir, _ = api
    response = _search(client, tokens)
    assert response.status_code == 201, response.text
    body = response.json()
    best = body["result"]["candidates"][0]
    assert best["key"] == "g1" and best["good_match"]
    assert body["result"]["requested_by"] == "analyst-user"
    entry = list(AuditLog(audit_dir).entries())[-1]
    assert entry["action"] == "search.create" and entry["case_id"] == "case-7"
    assert entry["principal"] == "analyst-user" and entry["role"] == "analyst"
    assert entry["parameters"]["embeddings"] == 1 and "photos" not in entry["parameters"]

    again = client.get(f"/searches/{body['search_id']}", headers=_auth(tokens, "analyst"))
    assert again.status_code == 200 and again.json()["result"] == body["result"]


def test_refine_and_route_of_a_candidate(api):
    client, tokens, *_ = api
    search_id = _search(client, tokens).json()["search_id"]
    headers = _auth(tokens, "analyst")
    refined = client.post(
        f"/searches/{search_id}/refine", json={"rejected": ["g1"]}, headers=headers
    )
    assert refined.status_code == 200, refined.text
    assert "g1" not in [c["key"] for c in refined.json()["result"]["candidates"]]
    back = client.post(f"/searches/{search_id}/refine", json={"confirmed": ["g1"]}, headers=headers)
    best = back.json()["result"]["candidates"][0]
    assert best["key"] == "g1" and best["confirmed"]
    route = client.get(f"/searches/{search_id}/candidates/g1/route", headers=headers)
    assert route.status_code == 200
    assert [s["camera_id"] for s in route.json()["route"]] == ["cam1", "cam2"]
    missing = client.get(f"/searches/{search_id}/candidates/zz/route", headers=headers)
    assert missing.status_code == 404 and "zz" in missing.json()["detail"]


def test_candidate_thumbnails_blur_bystanders_or_are_withheld(api):
    client, tokens, audit_dir, _ = api
    search_id = _search(client, tokens).json()["search_id"]
    headers = _auth(tokens, "analyst")
    url = f"/searches/{search_id}/candidates/g1/thumbnail"
    response = client.get(url, params={"tracklet_id": "cam1-0-1"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "private, no-store"
    assert Image.open(io.BytesIO(response.content)).size == (20, 80)
    entry = list(AuditLog(audit_dir).entries())[-1]
    assert entry["action"] == "search.thumbnail" and entry["case_id"] == "case-7"
    assert entry["parameters"]["tracklet_id"] == "cam1-0-1"
    # cam2's detections are not in the run folder: bystanders cannot be ruled out
    withheld = client.get(url, params={"tracklet_id": "cam2-0-2"}, headers=headers)
    assert withheld.status_code == 409 and "cam2" in withheld.json()["detail"]
    # another identity's tracklet, an unknown candidate
    other = client.get(url, params={"tracklet_id": "cam1-0-3"}, headers=headers)
    assert other.status_code == 404 and "cam1-0-3" in other.json()["detail"]
    missing = client.get(f"/searches/{search_id}/candidates/zz/thumbnail", headers=headers)
    assert missing.status_code == 404


@pytest.mark.parametrize("field", ["case_id", "reason"])
def test_a_search_without_case_or_reason_is_422_naming_it(api, field):
    client, tokens, *_ = api
    body = {**SEARCH, "embeddings": [person_vector(1).tolist()]}
    del body[field]
    response = client.post("/searches", json=body, headers=_auth(tokens, "analyst"))
    assert response.status_code == 422
    assert field in response.json()["detail"]


def _photo_upload(client, tokens, data: bytes, name="p.png", kind="image/png"):
    return client.post(
        "/searches",
        data={"query": json.dumps(SEARCH)},
        files=[("photos", (name, data, kind))],
        headers=_auth(tokens, "analyst"),
    )


def test_uploads_are_size_limited_and_type_checked(api):
    client, tokens, *_ = api
    too_big = _photo_upload(client, tokens, b"\0" * 60_000)  # limit 0.05 MB
    assert too_big.status_code == 413 and "photos[0]" in too_big.json()["detail"]
    not_image = _photo_upload(client, tokens, b"hello, not an image", "p.txt", "text/plain")
    assert not_image.status_code == 415 and "photos[0]" in not_image.json()["detail"]


def test_a_photo_search_without_an_embedder_is_503(api):
    client, tokens, *_ = api
    photo = encode_photo(np.full((64, 32, 3), 128, np.uint8))
    response = _photo_upload(client, tokens, photo)
    assert response.status_code == 503 and "embedder" in response.json()["detail"]


def test_a_photo_search_with_an_embedder_audits_the_photo_hash(tmp_path, api):
    _, tokens, _, app = api
    ctx = app.state.sightline
    audit_dir = tmp_path / "audit2"
    app2 = create_app(ctx.site, keys_file=ctx.keys.path, audit_dir=audit_dir, embed=_fake_embed)
    photo = encode_photo(np.full((64, 32, 3), 128, np.uint8))
    response = _photo_upload(TestClient(app2), tokens, photo)
    assert response.status_code == 201, response.text
    assert response.json()["result"]["candidates"][0]["key"] == "g1"
    entry = list(AuditLog(audit_dir).entries())[-1]
    assert len(entry["parameters"]["photo_sha256"][0]) == 64


# --------------------------------------------------------------------------- data


def test_tracks_as_json_and_parquet(api):
    client, tokens, audit_dir, _ = api
    headers = _auth(tokens, "data")
    params = {"start": ISO, "end": ISO_END, "cameras": "cam1", "case_id": "c9"}
    rows = client.get("/tracks", params=params, headers=headers)
    assert rows.status_code == 200
    assert {r["camera_id"] for r in rows.json()} == {"cam1"} and len(rows.json()) == 10
    entry = list(AuditLog(audit_dir).entries())[-1]
    assert entry["action"] == "tracks.read" and entry["case_id"] == "c9"
    assert entry["parameters"]["cameras"] == ["cam1"]
    parquet = client.get("/tracks", params={**params, "format": "parquet"}, headers=headers)
    assert parquet.headers["content-type"] == PARQUET_MEDIA_TYPE
    frame = pl.read_parquet(io.BytesIO(parquet.content))
    assert frame.height == 10 and set(frame["global_id"]) == {"g1", "g2"}


def test_identity_route(api):
    client, tokens, *_ = api
    response = client.get("/identities/g1/route", headers=_auth(tokens, "data"))
    assert [r["camera_id"] for r in response.json()] == ["cam1", "cam2"]
    assert client.get("/identities/nobody/route", headers=_auth(tokens, "data")).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"end": ISO_END}, "start"),
        ({"start": "yesterday", "end": ISO_END}, "start"),
        ({"start": ISO, "end": ISO_END, "area": "1,2;3"}, "area"),
        ({"start": ISO, "end": ISO_END, "format": "csv"}, "format"),
        ({"start": ISO_END, "end": ISO}, "end"),
    ],
)
def test_bad_track_parameters_are_422_naming_the_field(api, params, field):
    client, tokens, *_ = api
    response = client.get("/tracks", params=params, headers=_auth(tokens, "data"))
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_density_endpoints(api):
    client, tokens, audit_dir, _ = api
    headers = _auth(tokens, "data")
    window = {"start": T0, "end": T0 + 9}
    zones = client.get("/density/zones", params={**window, "bucket_s": 5}, headers=headers)
    assert zones.status_code == 200, zones.text
    assert [r["zone_id"] for r in zones.json()] == ["z", "z"]
    summary = client.get("/density/summary", params=window, headers=headers).json()
    assert summary[0]["peak_count"] == 3
    alerts = client.get("/density/alerts", params={"zones": "z"}, headers=headers).json()
    assert alerts and alerts[0]["zone_id"] == "z"
    png = client.get("/density/heatmap.png", params=window, headers=headers)
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    bad = client.get("/density/zones", params={**window, "bucket_s": 0}, headers=headers)
    assert bad.status_code == 422 and "bucket_s" in bad.json()["detail"]
    entries = [e for e in AuditLog(audit_dir).entries() if e["action"] == "density.read"]
    views = [e["parameters"]["view"] for e in entries][-4:]
    assert views == ["zones", "summary", "alerts", "heatmap"]


# --------------------------------------------------------------------------- admin, docs


def test_audit_verify_reports_an_intact_then_an_edited_log(api):
    client, tokens, audit_dir, _ = api
    _search(client, tokens)
    ok = client.get("/audit/verify", headers=_auth(tokens, "admin"))
    assert ok.status_code == 200 and ok.json()["ok"] and ok.json()["entries"] >= 1
    assert list(AuditLog(audit_dir).entries())[-1]["action"] == "audit.verify"


def test_audit_verify_detects_an_edited_entry(tmp_path, api):
    _, tokens, _, app = api
    ctx = app.state.sightline
    audit_dir = tmp_path / "audit3"
    client = TestClient(create_app(ctx.site, keys_file=ctx.keys.path, audit_dir=audit_dir))
    _search(client, tokens)
    (day,) = [p for p in audit_dir.iterdir() if p.suffix == ".jsonl"]
    day.write_text(day.read_text().replace("case-7", "case-8"))
    report = client.get("/audit/verify", headers=_auth(tokens, "admin")).json()
    assert not report["ok"] and report["first_bad"]


def test_openapi_lists_every_route_with_a_summary(api):
    client, *_ = api
    spec = client.get("/openapi.json").json()
    for _, path, _ in ROUTES:
        template = path.split("?")[0].replace("nope", "{search_id}").replace("g1", "{key}")
        if template.startswith("/identities"):
            template = "/identities/{global_id}/route"
        assert template in spec["paths"], template
    assert all(op.get("summary") for ops in spec["paths"].values() for op in ops.values())


def test_the_serve_deployment_builds_without_starting_ray(api):
    import ray

    from serve.api import build_api_deployment

    _, _, _, app = api
    running = ray.is_initialized()  # the Serve variant (or an earlier test) started it
    deployment = build_api_deployment(app.state.sightline.site, num_replicas=1)
    assert deployment.name == "SightlineAPI"
    assert ray.is_initialized() == running  # building did not start Ray


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/tracks?start=0001-01-01T00:00:00%2B00:01&end=2000-01-01T00:00:00Z", "start"),
        ("/density/zones?start=2000-01-01T00:00:00Z&end=9999-12-31T23:59:59-00:01", "end"),
        ("/density/alerts?start=9999-06-01T00:00:00Z", "start"),
    ],
)
def test_times_outside_the_supported_range_are_a_422_naming_the_parameter(api, url, named):
    client, tokens, *_ = api
    answer = client.get(url, headers=_auth(tokens, "data"))
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"] and "supported times" in answer.json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"case_id": "c", "reason": "r", "start": 0, "end": 1, "embeddings": [[NaN]]}',
        '{"case_id": "c", "reason": "r", "start": "0001-01-01T00:00:00+00:01", "end": 1}',
        '{"case_id": "c", "reason": "r", "start": 0, "end": 1, '
        '"last_seen": {"x": 1e308, "y": 1, "time": 0}}',
    ],
)
def test_non_finite_numbers_and_impossible_times_in_a_search_are_a_422(api, raw):
    client, tokens, *_ = api
    headers = {**_auth(tokens, "analyst"), "Content-Type": "application/json"}
    answer = client.post("/searches", content=raw, headers=headers)
    assert answer.status_code == 422, answer.text


def test_a_search_is_readable_only_by_the_analyst_who_ran_it(api, tmp_path):
    client, tokens, _, app = api
    keys = KeyStore(app.state.sightline.keys.path, iterations=1)
    other = {"Authorization": f"Bearer {keys.create('analyst-2', 'analyst')[1]}"}
    search_id = _search(client, tokens).json()["search_id"]
    assert client.get(f"/searches/{search_id}", headers=_auth(tokens, "analyst")).status_code == 200
    for method, path in [
        ("GET", f"/searches/{search_id}"),
        ("POST", f"/searches/{search_id}/refine"),
        ("GET", f"/searches/{search_id}/candidates/g1/route"),
    ]:
        body = {"confirmed": []} if method == "POST" else None
        answer = client.request(method, path, json=body, headers=other)
        assert answer.status_code == 404, (path, answer.text)
