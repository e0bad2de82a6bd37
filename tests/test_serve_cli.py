"""``sightline tracks`` (the store, audited) and ``sightline cameras`` (a running API,
here the app in process with a fake pipeline), through ``sightline.cli.main``."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from fastapi.testclient import TestClient

from serve import commands
from serve.api import create_app
from sightline.cli import main
from sightline.security import AuditLog, KeyStore, security_paths
from tests.test_api import ISO, ISO_END, _fill_store, _site_config
from tests.test_api_live import FakePipeline, _new_camera


@pytest.fixture
def site(tmp_path):
    site = _site_config(tmp_path)
    _fill_store(site)
    return site


def test_tracks_prints_rows_and_audits_the_read(site, tmp_path, capsys):
    config = tmp_path / "site.yaml"
    argv = ["tracks", "--config", str(config), "--start", ISO, "--end", ISO_END]
    assert main([*argv, "--cameras", "cam1", "--case-id", "C-1", "--reason", "check"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["camera_id"] for r in rows} == {"cam1"}
    assert {r["global_id"] for r in rows} == {"g1", "g2"}
    (entry,) = AuditLog(security_paths(site)[1]).entries()
    assert entry["action"] == "tracks.read" and entry["case_id"] == "C-1"
    assert entry["principal"].startswith("cli:") and entry["role"] == "data"


def test_tracks_writes_parquet_and_routes(site, tmp_path, capsys):
    config = tmp_path / "site.yaml"
    out = tmp_path / "t.parquet"
    argv = ["tracks", "--config", str(config), "--start", ISO, "--end", ISO_END, "--out", str(out)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == pl.read_parquet(out).height > 0
    assert main(["tracks", "--config", str(config), "--route", "g1"]) == 0
    route = json.loads(capsys.readouterr().out)
    assert [r["camera_id"] for r in route] == ["cam1", "cam2"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [([], "--start and --end"), (["--start", ISO, "--end", ISO_END, "--area", "1,2"], "--area")],
)
def test_tracks_names_a_bad_argument(site, tmp_path, capsys, extra, named):
    assert main(["tracks", "--config", str(tmp_path / "site.yaml"), *extra]) == 2
    assert named in capsys.readouterr().err


@pytest.fixture
def api(tmp_path, monkeypatch):
    site = _site_config(tmp_path)
    keys = KeyStore(tmp_path / "keys.json", create=True, iterations=1)
    key = keys.create("ops", "operator")[1]
    fake = FakePipeline(site)
    app = create_app(site, keys_file=tmp_path / "keys.json", audit_dir=tmp_path / "a", ops=fake)

    def client(args):
        assert args.key == key and args.url == "http://sightline.test"
        headers = {"Authorization": f"Bearer {args.key}"}
        return TestClient(app, base_url=args.url, headers=headers), args.url

    monkeypatch.setattr(commands, "_client", client)
    return ["--url", "http://sightline.test", "--key", key], fake, site


def test_cameras_list_add_change_and_remove_through_the_api(api, tmp_path, capsys):
    auth, fake, site = api
    assert main(["cameras", *auth, "list"]) == 0
    assert [c["id"] for c in json.loads(capsys.readouterr().out)] == ["cam1", "cam2"]
    settings = tmp_path / "cam3.yaml"
    settings.write_text(yaml.safe_dump(_new_camera(site)))
    assert main(["cameras", *auth, "add", str(settings)]) == 0
    settings.write_text(yaml.safe_dump(_new_camera(site, fps=5)))
    assert main(["cameras", *auth, "change", str(settings)]) == 0
    assert fake.site.camera("cam3").fps == 5
    assert main(["cameras", *auth, "remove", "cam3"]) == 0
    assert fake.calls == [("add", "cam3"), ("replace", "cam3"), ("remove", "cam3")]


def test_cameras_report_the_apis_refusal(api, tmp_path, capsys):
    auth, fake, site = api
    settings = tmp_path / "bad.yaml"
    settings.write_text(yaml.safe_dump(_new_camera(site, fps=-2)))
    assert main(["cameras", *auth, "add", str(settings)]) == 1
    err = capsys.readouterr().err
    assert "HTTP 422" in err and "fps" in err
    assert fake.calls == []
    settings.write_text("- not\n- a mapping\n")
    assert main(["cameras", *auth, "add", str(settings)]) == 2
    assert "expected one camera's settings" in capsys.readouterr().err


def test_cameras_need_a_url_and_a_key(monkeypatch, capsys):
    monkeypatch.delenv("SIGHTLINE_URL", raising=False)
    monkeypatch.delenv("SIGHTLINE_KEY", raising=False)
    assert main(["cameras", "list"]) == 2
    assert "--url" in capsys.readouterr().err
    assert main(["cameras", "--url", "http://127.0.0.1:9", "list"]) == 2
    assert "--key" in capsys.readouterr().err
    assert main(["cameras", "--url", "http://127.0.0.1:9", "--key", "k", "list"]) == 2
    assert "cannot reach the API" in capsys.readouterr().err
