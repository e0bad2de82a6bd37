"""Store reads cached per store version: a repeated read is served from the cache (and
still audited), a flush or a purge changes the version so the next read sees new rows,
and a store without the version marker is never cached."""

from __future__ import annotations

from fastapi.responses import Response
from fastapi.testclient import TestClient

from serve.api import create_app
from serve.read_cache import ReadCache
from sightline.security import AuditLog, KeyStore
from sightline.store.tables import VERSION_FILE, TrackStore, store_version
from tests.test_api import ROLES, _auth, _fill_store, _site_config
from tests.test_search_helpers import T0, make_tracklet


def test_a_flush_that_writes_rows_changes_the_store_version(tmp_path):
    store = TrackStore(tmp_path, durable=False)
    assert store_version(tmp_path) is None
    store.write_tracklets([make_tracklet(1, "cam1", T0, person=1)], {})
    store.flush()
    first = store_version(tmp_path)
    assert first is not None
    store.flush()  # nothing buffered: nothing changed
    assert store_version(tmp_path) == first
    store.write_tracklets([make_tracklet(2, "cam1", T0, person=1)], {})
    store.flush()
    assert store_version(tmp_path) not in (None, first)
    assert store_version("s3://bucket/store") is None


def test_the_cache_answers_per_version_and_keeps_capacity(tmp_path):
    (tmp_path / VERSION_FILE).write_text("a")
    cache = ReadCache(str(tmp_path), capacity=2)
    calls = []

    def compute(text):
        def run():
            calls.append(text)
            return Response(text.encode(), media_type="text/plain", headers={"X-A": "1"})

        return run

    assert cache.answer("k1", compute("one")).body == b"one"
    again = cache.answer("k1", compute("other"))
    assert again.body == b"one" and again.headers["x-a"] == "1" and calls == ["one"]
    cache.answer("k2", compute("two"))
    cache.answer("k3", compute("three"))  # k1 is the oldest: dropped
    cache.answer("k1", compute("one again"))
    assert calls == ["one", "two", "three", "one again"]
    (tmp_path / VERSION_FILE).unlink()
    (tmp_path / VERSION_FILE).write_text("bb")  # a new version
    assert cache.answer("k1", compute("new")).body == b"new"
    assert cache.stats == {"hits": 1, "misses": 5, "uncached": 0}


def test_api_reads_are_cached_audited_and_fresh_after_a_flush(tmp_path):
    site = _site_config(tmp_path)
    _fill_store(site)
    keys = KeyStore(tmp_path / "keys.json", create=True, iterations=1)
    tokens = {role: keys.create(f"{role}-user", role)[1] for role in ROLES}
    app = create_app(site, keys_file=tmp_path / "keys.json", audit_dir=tmp_path / "audit")
    client = TestClient(app)
    url = f"/tracks?start={T0}&end={T0 + 3600}"
    first = client.get(url, headers=_auth(tokens, "data"))
    second = client.get(url, headers=_auth(tokens, "data"))
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert app.state.sightline.reads.stats["hits"] == 1
    reads = [e for e in AuditLog(tmp_path / "audit").entries() if e["action"] == "tracks.read"]
    assert len(reads) == 2  # a cached answer is audited like any other
    store = TrackStore(site.storage.root, durable=False)
    store.write_tracklets([make_tracklet(9, "cam2", T0 + 100, person=3)], {})
    store.flush()
    third = client.get(url, headers=_auth(tokens, "data")).json()
    assert len(third) > len(first.json())
    assert "cam2-0-9" in {r["tracklet_id"] for r in third}


def test_a_store_without_the_marker_is_never_cached(tmp_path):
    cache = ReadCache(str(tmp_path))
    n = []
    for _ in range(3):
        cache.answer("k", lambda: n.append(1) or Response(b"x"))
    assert len(n) == 3 and cache.stats["uncached"] == 3
