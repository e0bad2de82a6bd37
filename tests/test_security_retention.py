"""Retention: old store partitions and their thumbnails go; everything else stays."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from sightline.security import commands
from sightline.security.retention import TRASH, _finish, cutoff_date, purge_store
from sightline.store.tables import StoreError, TrackStore
from tests.test_store import make_tracklet

DAYS = [date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3)]


def _noon(day: date) -> float:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()


@pytest.fixture
def root(tmp_path) -> Path:
    """A store with two cameras' tracklets, identities, events and zone counts on each of
    three days, plus files that are not the store's tables."""
    root = tmp_path / "store"
    with TrackStore(root, durable=False) as store:
        for d, day in enumerate(DAYS):
            t0 = _noon(day)
            tracklets = [make_tracklet(f"cam{c}-{d}-{c}", f"cam{c}", t0) for c in (1, 2)]
            store.write_tracklets(tracklets, {t.tracklet_id: f"g{d}" for t in tracklets})
            store.write_assignments(
                [
                    {"tracklet_id": t.tracklet_id, "global_id": f"g{d}", "seq": d, "reason": "new"}
                    for t in tracklets
                ],
                assigned_at=t0,
            )
            store.write_events(
                [
                    {
                        "seq": d,
                        "ts": t0,
                        "kind": "new",
                        "global_ids": [f"g{d}"],
                        "tracklet_ids": [t.tracklet_id for t in tracklets],
                        "reason": "first sighting",
                    }
                ]
            )
            counts = pl.DataFrame(
                {
                    "zone_id": ["z1"],
                    "ts": [t0],
                    "count": [3.0],
                    "peak": [4],
                    "density_per_m2": [0.5],
                    "coverage": [1.0],
                    "naive_count": [3.0],
                    "n_cameras": [1],
                    "frames": [5],
                }
            )
            store.append_rows("zone_counts", counts)
    (root / "_security").mkdir()
    (root / "_security" / "keys.json").write_text("{}")
    (root / "notes.txt").write_text("keep me")
    (root / "thumbnails" / "camera_id=cam1" / "manual.jpg").write_bytes(b"not referenced")
    return root


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_cutoff_date():
    now = datetime(2024, 6, 30, 8, tzinfo=UTC)
    assert cutoff_date(30, now) == date(2024, 5, 31)
    assert cutoff_date(1, datetime(2024, 6, 30, 23, 59)) == date(2024, 6, 29)  # naive is UTC
    with pytest.raises(ValueError, match="days must be >= 1, got 0"):
        cutoff_date(0, now)


def test_purge_removes_old_days_and_their_thumbnails(root):
    before = _files(root)
    report = purge_store(root, date(2024, 5, 3))
    assert report.partitions == {
        table: ["date=2024-05-01", "date=2024-05-02"]
        for table in ("tracklets", "sightings", "identities", "events", "zone_counts")
    }
    assert report.thumbnails == 4 and report.thumbnail_bytes > 0
    # tracklets and sightings: 2 cameras x 2 days; identities 4 rows, events 2, counts 2
    assert report.rows == 4 + 4 + 4 + 2 + 2
    assert report.files == 2 * 2 + 2 * 2 + 2 + 2 + 2 and report.bytes > 0
    after = _files(root)
    gone = before - after
    assert all("2024-05-01" in f or "2024-05-02" in f or "-0-" in f or "-1-" in f for f in gone)
    assert {
        "thumbnails/camera_id=cam1/cam1-0-1.jpg",
        "thumbnails/camera_id=cam2/cam2-1-2.jpg",
    } <= gone
    assert {
        "notes.txt",
        "_security/keys.json",
        "thumbnails/camera_id=cam1/manual.jpg",
        "thumbnails/camera_id=cam1/cam1-2-1.jpg",
    } <= after
    assert not (root / TRASH).exists()


@pytest.mark.parametrize("table", ["tracklets", "sightings", "identities", "events", "zone_counts"])
def test_kept_days_stay_readable(root, table):
    purge_store(root, date(2024, 5, 3))
    frame = pl.scan_parquet(f"{root}/{table}/**/*.parquet", hive_partitioning=True).collect()
    assert frame.height > 0
    assert frame["date"].cast(pl.String).unique().to_list() == ["2024-05-03"]


def test_sightings_keep_their_thumbnails(root):
    purge_store(root, date(2024, 5, 3))
    sightings = pl.scan_parquet(f"{root}/sightings/**/*.parquet").collect()
    assert all((root / ref).is_file() for ref in sightings["thumbnail"])


def test_dry_run_changes_nothing(root):
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    report = purge_store(root, date(2024, 5, 3), dry_run=True)
    assert report.dry_run and report.thumbnails == 4 and report.rows == 16
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_nothing_old_is_a_no_op(root):
    before = _files(root)
    report = purge_store(root, date(2024, 5, 1))
    assert report.partitions == {} and report.rows == 0 and report.thumbnails == 0
    assert _files(root) == before


def test_thumbnail_named_by_a_kept_row_stays(root):
    # a later version of an old tracklet filed under a kept day names the same thumbnail
    late = make_tracklet("cam1-0-1", "cam1", _noon(DAYS[2]), version=2)
    with TrackStore(root, durable=False) as store:
        store.write_tracklets([late])
    report = purge_store(root, date(2024, 5, 3))
    assert report.thumbnails == 3
    assert (root / "thumbnails/camera_id=cam1/cam1-0-1.jpg").is_file()


def test_interrupted_purge_is_finished_next_time(root):
    # a crash after the plan was written and one partition moved
    trash = root / TRASH / "crashed"
    (trash / "events").mkdir(parents=True)
    (root / "events" / "date=2024-05-01").rename(trash / "events" / "date=2024-05-01")
    plan = {
        "partitions": ["events/date=2024-05-01", "zone_counts/date=2024-05-01"],
        "thumbnails": ["thumbnails/camera_id=cam1/cam1-0-1.jpg", "../notes.txt"],
    }
    (trash / "plan.json").write_text(json.dumps(plan))
    report = purge_store(root, date(2024, 5, 1))
    assert report.resumed == 1
    assert not (root / "zone_counts" / "date=2024-05-01").exists()
    assert not (root / "thumbnails/camera_id=cam1/cam1-0-1.jpg").exists()
    assert (root / "notes.txt").is_file()  # a ref outside thumbnails/ is never followed
    assert not (root / TRASH).exists()


def test_finish_without_a_plan_only_removes_the_trash(root):
    trash = root / TRASH / "empty"
    trash.mkdir(parents=True)
    _finish(root, trash)
    assert not (root / TRASH).exists()


@pytest.mark.parametrize(
    ("where", "message"),
    [("s3://bucket/store", "is a URL"), ("missing", "is not a folder")],
)
def test_bad_roots(tmp_path, where, message):
    target = where if "://" in where else tmp_path / where
    with pytest.raises(StoreError, match=message):
        purge_store(target, date(2024, 5, 3))


def test_cli_retention_purge(root, capsys):
    parser = argparse.ArgumentParser()
    commands.add_security_commands(parser.add_subparsers(dest="command", required=True))
    argv = ["retention", "purge", "--store", str(root), "--before", "2024-05-02", "--dry-run"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] and report["partitions"]["tracklets"] == ["date=2024-05-01"]
    assert (root / "tracklets" / "date=2024-05-01").is_dir()
    days = (datetime.now(UTC).date() - date(2024, 5, 2)).days  # keeps 2 May on
    args = parser.parse_args(["retention", "purge", "--store", str(root), "--days", str(days)])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["before"] == "2024-05-02"
    assert not (root / "tracklets" / "date=2024-05-01").exists()
    assert (root / "tracklets" / "date=2024-05-02").is_dir()


def test_cli_rejects_bad_days(root):
    parser = argparse.ArgumentParser()
    commands.add_security_commands(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["retention", "purge", "--store", str(root), "--days", "0"])


def test_cli_uses_the_site_config(root, tmp_path, capsys, monkeypatch):
    from sightline.config import SecurityConfig, SiteConfig, StorageConfig

    site = SiteConfig.model_construct(
        storage=StorageConfig.model_construct(root=str(root)),
        security=SecurityConfig(retention_days=3650, audit_retention_days=3650),
    )
    monkeypatch.setattr(commands, "load_site_config", lambda _path: site)
    keys, audit = commands.security_paths(site)
    assert keys == root / "_security" / "keys.json" and audit == root / "_security" / "audit"
    parser = argparse.ArgumentParser()
    commands.add_security_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["retention", "purge", "--config", "site.yaml"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["partitions"] == {}  # ten years: keep all
