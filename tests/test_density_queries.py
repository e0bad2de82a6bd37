"""Density queries over the store: buckets, filters, repeats, partitions, alerts; the bench."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sightline.density import queries as dq
from sightline.density.bench import bench_density
from sightline.store.tables import TABLES, TrackStore

T0 = datetime(2024, 5, 1, 23, 59, 50, tzinfo=UTC)  # 20 seconds from here cross midnight
MIDNIGHT = datetime(2024, 5, 2, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def zone_row(zone: str, i: float, count: float, coverage: float = 1.0) -> dict:
    return {
        "zone_id": zone,
        "ts": at(i),
        "count": count,
        "peak": int(count) + 1,
        "density_per_m2": count / 10,
        "coverage": coverage,
        "naive_count": 2 * count,
        "n_cameras": 2,
        "frames": 20,
    }


def camera_row(camera: str, i: int, count: float) -> dict:
    return {"camera_id": camera, "ts": at(i), "count": count, "peak": int(count) + 2, "frames": 10}


def alert_row(
    alert: str, zone: str, state: str, t_start: float, ts: float, t_end: float | None = None
) -> dict:
    return {
        "alert_id": alert,
        "zone_id": zone,
        "state": state,
        "ts": at(ts),
        "t_start": at(t_start),
        "t_peak": at(ts),
        "t_end": None if t_end is None else at(t_end),
        "peak_density": 3.0,
        "peak_count": 30.0,
        "alert_density": 2.0,
        "clear_density": 1.5,
    }


def frame(rows: list[dict], table: str) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TABLES[table])


@pytest.fixture
def store(tmp_path: Path) -> TrackStore:
    """gate: counts 0..19 over 20 s across midnight, coverage 0.9 at second 3; hall: 5 per
    second over seconds 5..14, 50 at second 7 in a later part; yard: 3 over seconds 0..2.
    A later part repeats gate's second 12 (a replay)."""
    s = TrackStore(tmp_path / "store", durable=False)
    gate = [zone_row("gate", i, float(i), 0.9 if i == 3 else 1.0) for i in range(20)]
    hall = [zone_row("hall", i, 5.0) for i in range(5, 15)]
    yard = [zone_row("yard", i, 3.0) for i in (2, 1, 0)]  # out of time order
    s.append_rows("zone_counts", frame(gate + hall + yard, "zone_counts"))
    cams = [camera_row("cam1", i, float(i)) for i in range(20)]
    cams += [camera_row("cam2", i, 1.0) for i in range(10)]
    s.append_rows("camera_counts", frame(cams, "camera_counts"))
    points = [
        {"ts": at(i), "world_x": float(i), "world_y": 1.0, "n_views": 1} for i in range(0, 20, 4)
    ]
    s.append_rows("ground_points", frame(points, "ground_points"))
    alerts = [
        alert_row("a1", "gate", "start", 0, 1),
        alert_row("a2", "hall", "start", 19, 20),
        alert_row("a3", "yard", "start", -3601, -3600),  # opened an hour before, still open
    ]
    s.append_rows("density_alerts", frame(alerts, "density_alerts"))
    s.flush()
    replay = [zone_row("gate", 12, 12.0), zone_row("hall", 7, 50.0)]
    s.append_rows("zone_counts", frame(replay, "zone_counts"))
    s.append_rows("camera_counts", frame([camera_row("cam1", 12, 12.0)], "camera_counts"))
    ended = alert_row("a1", "gate", "end", 0, 30, t_end=25)
    s.append_rows("density_alerts", frame([ended, alerts[1]], "density_alerts"))  # a2 repeats
    s.flush()
    return s


def test_one_second_buckets_count_each_second_once(store: TrackStore) -> None:
    out = dq.zone_counts(store, T0, at(20), zones=["gate"])
    assert out.schema == pl.Schema(dq.ZONE_BUCKET_SCHEMA)
    assert out["ts"].to_list() == [at(i) for i in range(20)]
    assert out["count"].to_list() == [float(i) for i in range(20)]
    assert out["seconds"].unique().to_list() == [1]
    assert out["partial_view"].to_list() == [i == 3 for i in range(20)]


def test_ten_second_buckets(store: TrackStore) -> None:
    out = dq.zone_counts(store, T0, at(20), bucket_s=10)
    gate = out.filter(pl.col("zone_id") == "gate")
    assert gate["ts"].to_list() == [T0, MIDNIGHT]
    assert gate["count"].to_list() == pytest.approx([4.5, 14.5])
    assert gate["peak"].to_list() == [10, 20]
    assert gate["density_per_m2"].to_list() == pytest.approx([0.45, 1.45])
    assert gate["peak_density_per_m2"].to_list() == pytest.approx([0.9, 1.9])
    assert gate["naive_count"].to_list() == pytest.approx([9.0, 29.0])
    assert gate["coverage"].to_list() == pytest.approx([0.9, 1.0])
    assert gate["partial_view"].to_list() == [True, False]
    assert gate["seconds"].to_list() == [10, 10]  # the replayed second 12 counts once
    hall = out.filter(pl.col("zone_id") == "hall")
    # the later row of second 7 (50) replaces the first (5)
    assert hall["count"].to_list() == pytest.approx([(4 * 5 + 50) / 5, 5.0])
    assert hall["seconds"].to_list() == [5, 5]
    assert out["zone_id"].to_list() == ["gate", "gate", "hall", "hall", "yard"]


def test_hour_buckets_split_at_the_hour(store: TrackStore) -> None:
    out = dq.zone_counts(store, T0 - timedelta(hours=1), at(3600), zones=["gate"], bucket_s=3600)
    assert out["ts"].to_list() == [MIDNIGHT - timedelta(hours=1), MIDNIGHT]
    assert out["count"].to_list() == pytest.approx([4.5, 14.5])
    assert out["coverage"].to_list() == pytest.approx([0.9, 1.0])
    assert out["seconds"].to_list() == [10, 10]


@pytest.mark.parametrize(
    ("zones", "expected"),
    [(None, ["gate", "hall", "yard"]), (["hall", "nowhere"], ["hall"]), ([], [])],
)
def test_zone_filter(store: TrackStore, zones: list[str] | None, expected: list[str]) -> None:
    out = dq.zone_counts(store, T0, at(20), zones=zones, bucket_s=60)
    assert out["zone_id"].unique(maintain_order=True).to_list() == expected


def test_window_is_closed(store: TrackStore) -> None:
    out = dq.zone_counts(store.root, at(5), at(15), zones=["gate"], bucket_s=10)
    assert out["count"].to_list() == pytest.approx([7.0, 12.5])  # seconds 5..9, 10..15
    assert out["seconds"].to_list() == [5, 6]
    as_epoch = dq.zone_counts(store.root, at(5).timestamp(), at(15).isoformat(), zones=["gate"])
    assert as_epoch.height == 11
    just_before = dq.zone_counts(store, at(5), at(15) - timedelta(microseconds=1), zones=["gate"])
    assert just_before.height == 10


def test_a_day_opens_only_its_partition(store: TrackStore) -> None:
    for part in Path(store.root, "zone_counts", "date=2024-05-02").glob("*.parquet"):
        part.write_bytes(b"not parquet")
    day = dq.zone_counts(store, T0, MIDNIGHT - timedelta(microseconds=1), zones=["gate"])
    assert day["ts"].to_list() == [at(i) for i in range(10)]
    with pytest.raises(pl.exceptions.ComputeError):  # ending at midnight holds its second
        dq.zone_counts(store, T0, MIDNIGHT)


def test_seconds_off_the_whole_second_are_grouped(tmp_path: Path) -> None:
    s = TrackStore(tmp_path, durable=False)
    rows = [zone_row("gate", 0.0, 2.0), zone_row("gate", 0.5, 4.0), zone_row("gate", 1.0, 6.0)]
    s.append_rows("zone_counts", frame(rows, "zone_counts"))
    s.flush()
    out = dq.zone_counts(s, T0, at(2))
    assert out["ts"].to_list() == [T0, at(1)]
    assert out["count"].to_list() == pytest.approx([3.0, 6.0])
    assert out["seconds"].to_list() == [2, 1]


def test_zone_summary(store: TrackStore) -> None:
    out = dq.zone_summary(store, T0, at(20))
    assert out.schema == pl.Schema(dq.ZONE_SUMMARY_SCHEMA)
    assert out["zone_id"].to_list() == ["gate", "hall", "yard"]
    gate, hall, yard = out.rows(named=True)
    assert gate["mean_count"] == pytest.approx(9.5)
    assert gate["peak_count"] == 20
    assert gate["peak_density_per_m2"] == pytest.approx(1.9)
    assert gate["peak_ts"] == at(19)
    assert gate["min_coverage"] == pytest.approx(0.9)
    assert gate["seconds"] == 20
    assert (hall["peak_ts"], hall["seconds"]) == (at(7), 10)
    assert yard["peak_ts"] == T0  # a tie: the first of the densest seconds


def test_camera_counts(store: TrackStore) -> None:
    out = dq.camera_counts(store, T0, at(20), bucket_s=10)
    assert out.schema == pl.Schema(dq.CAMERA_BUCKET_SCHEMA)
    assert out["camera_id"].to_list() == ["cam1", "cam1", "cam2"]
    assert out["count"].to_list() == pytest.approx([4.5, 14.5, 1.0])
    assert out["peak"].to_list() == [11, 21, 3]
    assert out["frames"].to_list() == [100, 100, 100]  # the replayed second once
    only = dq.camera_counts(store, T0, at(20), cameras=["cam2"])
    assert only["camera_id"].unique().to_list() == ["cam2"]
    assert only.height == 10


def test_ground_points(store: TrackStore) -> None:
    out = dq.ground_points(store, at(4), at(15))
    assert out.columns == ["ts", "world_x", "world_y", "n_views"]
    assert out["world_x"].to_list() == [4.0, 8.0, 12.0]
    inside = dq.ground_points(store, T0, at(20), area=[(7, 0), (13, 0), (13, 2), (7, 2)])
    assert inside["world_x"].to_list() == [8.0, 12.0]


def test_alerts_newest_row_per_alert(store: TrackStore) -> None:
    out = dq.density_alerts(store)
    assert out["alert_id"].to_list() == ["a3", "a1", "a2"]  # by t_start
    assert dict(zip(out["alert_id"], out["state"], strict=True)) == {
        "a1": "end",
        "a2": "start",
        "a3": "start",
    }
    assert out.filter(pl.col("alert_id") == "a1")["t_end"].item() == at(25)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"open_only": True}, ["a3", "a2"]),
        ({"zones": ["gate"]}, ["a1"]),
        ({"start": at(26)}, ["a3", "a2"]),  # a1 closed at 25
        ({"end": at(10)}, ["a3", "a1"]),  # a2 began at 19
        ({"start": at(0), "end": at(18)}, ["a3", "a1"]),
        ({"start": at(19), "end": at(19)}, ["a3", "a1", "a2"]),  # a2 from its first second
        ({"start": at(-7200), "end": at(-3602)}, []),  # before a3 began
    ],
)
def test_alert_filters(store: TrackStore, kwargs: dict, expected: list[str]) -> None:
    assert dq.density_alerts(store, **kwargs)["alert_id"].to_list() == expected


@pytest.mark.parametrize("bucket_s", [0, -5, 3601, 1.5, True, "60"])
def test_bad_bucket_is_refused(store: TrackStore, bucket_s: object) -> None:
    with pytest.raises(ValueError, match="bucket_s"):
        dq.zone_counts(store, T0, at(20), bucket_s=bucket_s)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bucket_s"):
        dq.camera_counts(store, T0, at(20), bucket_s=bucket_s)  # type: ignore[arg-type]


def test_bad_arguments(store: TrackStore) -> None:
    with pytest.raises(TypeError, match="zones"):
        dq.zone_counts(store, T0, at(20), zones="gate")
    with pytest.raises(ValueError, match="before start"):
        dq.zone_counts(store, at(20), T0)
    with pytest.raises(ValueError, match="before start"):
        dq.density_alerts(store, at(20), T0)


@pytest.mark.parametrize("bucket_s", [1, 60])
def test_empty_store_gives_typed_empty_frames(tmp_path: Path, bucket_s: int) -> None:
    s = TrackStore(tmp_path)
    assert dq.zone_counts(s, T0, at(20), bucket_s=bucket_s).schema == pl.Schema(
        dq.ZONE_BUCKET_SCHEMA
    )
    assert dq.camera_counts(s, T0, at(20), bucket_s=bucket_s).height == 0
    assert dq.zone_summary(s, T0, at(20)).schema == pl.Schema(dq.ZONE_SUMMARY_SCHEMA)
    assert dq.ground_points(s, T0, at(20)).height == 0
    assert dq.density_alerts(s, open_only=True).columns[:3] == ["alert_id", "zone_id", "state"]


def test_bench_returns_its_figures(tmp_path: Path) -> None:
    out = bench_density(zones=3, hours=0.01, repeats=1, root=tmp_path)
    assert out["rows"] == 3 * 36
    assert set(out["queries"]) == {
        "zone_counts_1s",
        "zone_counts_60s",
        "zone_counts_3600s",
        "zone_summary",
        "baseline_group_by_dynamic_60s",
    }
    for figures in out["queries"].values():
        assert set(figures) == {"median_s", "best_s", "rows_scanned", "rows_returned"}
        assert figures["rows_scanned"] == 108
    assert out["queries"]["zone_counts_60s"]["rows_returned"] == 3
    assert out["baseline_agrees"] is True
    for key in ("baseline_over_ours", "target", "passed", "polars", "cpu_count", "peak_rss_mib"):
        assert key in out
    with pytest.raises(ValueError, match="already holds"):
        bench_density(zones=3, hours=0.01, repeats=1, root=tmp_path)
