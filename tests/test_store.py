"""The store: write-ahead log damage handling, tracklet payloads, Parquet tables, queries."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sightline.store import queries
from sightline.store.tables import StoreError, TrackStore
from sightline.store.wal import (
    WalError,
    WriteAheadLog,
    _frame,
    decode_tracklets,
    encode_tracklets,
)
from sightline.tracking.tracklets import Tracklet

T0 = datetime(2024, 5, 1, 23, 59, 0, tzinfo=UTC).timestamp()  # windows cross midnight


def make_tracklet(
    tracklet_id: str,
    camera_id: str = "cam1",
    t0: float = T0,
    *,
    n: int = 5,
    version: int = 1,
    final: bool = False,
    start: tuple[float, float] = (0.0, 0.0),
    step: tuple[float, float] = (1.0, 0.0),
    thumbnail: bytes | None = None,
) -> Tracklet:
    """A tracklet of ``n`` frames 1 s apart walking from ``start`` by ``step`` per frame."""
    rng = np.random.default_rng(abs(hash((tracklet_id, version))) % 2**32)
    ts = t0 + np.arange(n, dtype=np.float64)
    world = np.asarray(start, np.float32) + np.outer(np.arange(n), step).astype(np.float32)
    boxes = np.column_stack(
        [np.arange(n) * 10.0, np.zeros(n), np.arange(n) * 10 + 20, 80.0 * np.ones(n)]
    )
    embeddings = rng.normal(size=(3, 8)).astype(np.float32)
    mean = embeddings.mean(axis=0)
    return Tracklet(
        tracklet_id=tracklet_id,
        camera_id=camera_id,
        track_id=int(tracklet_id.rsplit("-", 1)[-1]),
        version=version,
        final=final,
        ts=ts,
        boxes=boxes.astype(np.float32),
        scores=np.full(n, 0.9, np.float32),
        foot_px=boxes[:, [0, 3]].astype(np.float32),
        foot_world=world,
        embeddings=embeddings,
        embedding_mean=mean / np.linalg.norm(mean),
        upper_colour="red",
        upper_colour_confidence=0.8,
        lower_colour="black",
        lower_colour_confidence=0.6,
        height_m=float("nan") if version % 2 == 0 else 1.2,
        quality=0.7,
        thumbnail_jpeg=thumbnail if thumbnail is not None else f"{tracklet_id}/v{version}".encode(),
    )


def assert_same_tracklet(a: Tracklet, b: Tracklet) -> None:
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, name
            assert np.array_equal(other, value, equal_nan=True), name
        elif isinstance(value, float) and np.isnan(value):
            assert np.isnan(other), name
        else:
            assert other == value and type(other) is type(value), name


# --------------------------------------------------------------------------- WAL


def payloads(n: int) -> list[bytes]:
    return [f"record {i} ".encode() * (1 + i % 4) for i in range(n)]


def test_wal_round_trip_across_segments(tmp_path):
    records = payloads(20)
    with WriteAheadLog(tmp_path / "wal", segment_bytes=120) as wal:
        for r in records[:12]:
            wal.append(r)
    with WriteAheadLog(tmp_path / "wal", segment_bytes=120) as wal:
        for r in records[12:]:
            wal.append(r)
        assert len(wal.segments()) > 3
        assert list(wal.replay()) == records
        assert wal.check() == [] and wal.damage == []
        assert all(s.stat().st_size <= 120 for s in wal.segments())


def test_wal_is_single_writer(tmp_path):
    with WriteAheadLog(tmp_path), pytest.raises(WalError, match="another writer"):
        WriteAheadLog(tmp_path)


def _two_segments(folder: Path) -> tuple[list[bytes], list[Path]]:
    records = [bytes([65 + i]) * 30 for i in range(6)]  # 42-byte records, 3 per segment
    with WriteAheadLog(folder, segment_bytes=130) as wal:
        for r in records:
            wal.append(r)
        segments = wal.segments()
    assert len(segments) == 2
    return records, segments


@pytest.mark.parametrize(
    ("where", "problem"),
    [(0, "bad magic"), (5, "truncated record"), (12 + 7, "CRC mismatch"), (9, "CRC mismatch")],
    ids=["magic", "length", "payload", "crc"],
)
def test_wal_damaged_middle_record_is_reported_and_contained(tmp_path, where, problem):
    records, segments = _two_segments(tmp_path)
    offset = len(_frame(records[0]))  # the second record of segment 1
    data = bytearray(segments[0].read_bytes())
    data[offset + where] ^= 0xFF if where != 5 else 0x01  # length +16 M: runs past the end
    segments[0].write_bytes(bytes(data))

    with WriteAheadLog(tmp_path, segment_bytes=130) as wal:
        replayed = list(wal.replay())
        damage = wal.check()
    assert [(d.segment, d.offset) for d in damage] == [(segments[0], offset)]
    assert problem in damage[0].problem and not damage[0].repaired
    assert [(d.segment, d.offset) for d in wal.damage] == [(segments[0], offset)]
    # only the damaged record is lost: the rest of segment 1 and all of segment 2 replay
    assert replayed == [r for i, r in enumerate(records) if i != 1]


@pytest.mark.parametrize("tear", ["truncated", "zeros"])
def test_wal_torn_tail_is_cut_on_reopen_and_appends_follow(tmp_path, tear, caplog):
    with WriteAheadLog(tmp_path) as wal:
        for r in payloads(3):
            wal.append(r)
        segment = wal.segments()[-1]
    good = sum(len(_frame(r)) for r in payloads(2))
    with segment.open("r+b") as f:
        if tear == "truncated":
            f.truncate(segment.stat().st_size - 5)
        else:  # the last record's blocks never reached the disk
            f.seek(good)
            f.write(bytes(segment.stat().st_size - good))

    with WriteAheadLog(tmp_path) as wal:
        assert [(d.segment, d.offset, d.repaired) for d in wal.damage] == [(segment, good, True)]
        assert "write-ahead log damage" in caplog.text
        wal.append(b"after the crash")
        assert list(wal.replay()) == [*payloads(2), b"after the crash"]
        assert wal.check() == []


def test_wal_remove_segments_before(tmp_path):
    with WriteAheadLog(tmp_path, segment_bytes=50) as wal:
        for r in payloads(4):
            wal.append(r)
        keep = wal.roll()
        wal.append(b"new")
        removed = wal.remove_segments_before(keep)
        assert removed and wal.segments() == [keep]
        assert list(wal.replay()) == [b"new"]


# --------------------------------------------------------------------------- payloads


def test_tracklet_payload_round_trip_is_exact():
    batch = [
        make_tracklet("cam1-0-1"),
        make_tracklet("cam2-0-7", "cam2", version=2, final=True, n=1, thumbnail=b""),
    ]
    odd = make_tracklet("cam3-0-3", "cam3")
    batch.append(
        Tracklet(
            **{
                **vars(odd),
                "foot_world": odd.foot_world.astype(np.float64),
                "embeddings": np.zeros((0, 8), np.float32),
            }
        )
    )
    decoded = decode_tracklets(encode_tracklets(batch))
    assert len(decoded) == 3
    for a, b in zip(batch, decoded, strict=True):
        assert_same_tracklet(a, b)
    assert decode_tracklets(encode_tracklets([])) == []


def test_decode_rejects_foreign_payloads():
    with pytest.raises(ValueError, match="not a tracklet batch"):
        decode_tracklets(b"not arrow at all")


# --------------------------------------------------------------------------- tables


def _store_with_history(root: Path) -> TrackStore:
    """Two cameras; person g1 walks cam1 -> cam2; a second cam1 tracklet is merged late."""
    store = TrackStore(root)
    a1 = make_tracklet("cam1-0-1", t0=T0, start=(0, 0))
    a2 = make_tracklet("cam1-0-1", t0=T0, n=8, version=2, final=True, start=(0, 0))
    b1 = make_tracklet("cam2-0-4", "cam2", t0=T0 + 60, start=(20, 0), step=(0, 1), final=True)
    c1 = make_tracklet("cam1-0-2", t0=T0 + 120, start=(50, 50), final=True)
    store.write_tracklets([a1], {"cam1-0-1": "g1"})
    store.write_tracklets([a2, b1], {"cam1-0-1": "g1", "cam2-0-4": "g1"})
    store.write_tracklets([c1], {"cam1-0-2": "g2"})
    at = datetime.fromtimestamp(T0 + 200, UTC)
    store.write_assignments(
        [
            {
                "tracklet_id": "cam1-0-1",
                "global_id": "g1",
                "seq": 1,
                "assigned_at": at,
                "reason": "new",
            },
            {
                "tracklet_id": "cam2-0-4",
                "global_id": "g1",
                "seq": 2,
                "assigned_at": at,
                "reason": "appearance",
            },
            {
                "tracklet_id": "cam1-0-2",
                "global_id": "g2",
                "seq": 3,
                "assigned_at": at,
                "reason": "new",
            },
            {
                "tracklet_id": "cam1-0-2",
                "global_id": "g1",
                "seq": 5,
                "assigned_at": T0 + 300,
                "reason": "merge",
            },
        ]
    )
    store.write_events(
        [
            {
                "seq": 4,
                "ts": T0 + 300,
                "kind": "merge",
                "global_ids": ["g1", "g2"],
                "tracklet_ids": ["cam1-0-2"],
                "reason": "same person",
            },
        ]
    )
    store.flush()
    return store


READER = """
import json, sys
import polars as pl
root = sys.argv[1]
def read(table):
    return pl.scan_parquet(f"{root}/{table}/**/*.parquet", hive_partitioning=True).collect()
t = read("tracklets").sort("tracklet_id", "version")
print(json.dumps({
    "tracklets": t.select("tracklet_id", "version", "camera_id", pl.col("date").cast(str)).rows(),
    "n_frames": t["n_frames"].to_list(),
    "identities": read("identities").sort("seq")["global_id"].to_list(),
    "sightings": read("sightings").height,
    "events": read("events")["kind"].to_list(),
}))
"""


def test_tables_are_readable_by_plain_polars_in_another_process(tmp_path):
    _store_with_history(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", READER, str(tmp_path)], capture_output=True, text=True, check=True
    )
    seen = json.loads(done.stdout)
    assert seen["tracklets"] == [
        ["cam1-0-1", 1, "cam1", "2024-05-01"],
        ["cam1-0-1", 2, "cam1", "2024-05-01"],
        ["cam1-0-2", 1, "cam1", "2024-05-02"],
        ["cam2-0-4", 1, "cam2", "2024-05-02"],
    ]
    assert seen["n_frames"] == [5, 8, 5, 5]
    assert seen["identities"] == ["g1", "g1", "g2", "g1"]
    assert seen["sightings"] == 4 and seen["events"] == ["merge"]
    assert (tmp_path / "tracklets/date=2024-05-02/camera_id=cam2/part-000000.parquet").is_file()


def test_newest_version_and_newest_assignment_win(tmp_path):
    store = _store_with_history(tmp_path)
    ids = queries.latest_identities(store)
    assert ids.rows() == [("cam1-0-1", "g1"), ("cam1-0-2", "g1"), ("cam2-0-4", "g1")]
    seen = queries.sightings(tmp_path, T0 - 10, T0 + 1000)
    assert seen["tracklet_id"].to_list() == ["cam1-0-1", "cam2-0-4", "cam1-0-2"]
    assert seen["version"].to_list() == [2, 1, 1]
    assert seen["global_id"].to_list() == ["g1", "g1", "g1"]  # not the stale "g2"
    thumb = tmp_path / seen["thumbnail"][0]
    assert thumb.read_bytes() == b"cam1-0-1/v2"
    # a late, older version neither wins on read nor replaces the thumbnail
    store.write_tracklets([make_tracklet("cam1-0-1", version=1, thumbnail=b"old")])
    store.flush()
    assert queries.sightings(tmp_path, T0, T0 + 1)["version"].to_list() == [2]
    assert thumb.read_bytes() == b"cam1-0-1/v2"


def test_fused_tracks_filters_window_cameras_and_area(tmp_path):
    _store_with_history(tmp_path)
    everything = queries.fused_tracks(tmp_path, T0 - 10, T0 + 1000)
    assert everything.height == 8 + 5 + 5
    assert everything["ts"].is_sorted() and set(everything["global_id"]) == {"g1"}
    assert everything.schema == queries.FUSED_TRACK_SCHEMA

    window = queries.fused_tracks(tmp_path, T0 + 2, datetime.fromtimestamp(T0 + 4, UTC))
    assert window["tracklet_id"].to_list() == ["cam1-0-1"] * 3
    assert window["x1"].to_list() == [20.0, 30.0, 40.0]
    assert window["world_x"].to_list() == [2.0, 3.0, 4.0]

    cam2 = queries.fused_tracks(tmp_path, T0 - 10, T0 + 1000, cameras=["cam2"])
    assert set(cam2["camera_id"]) == {"cam2"} and cam2.height == 5

    square = [(1.5, -1), (5.5, -1), (5.5, 1), (1.5, 1)]
    inside = queries.fused_tracks(tmp_path, T0 - 10, T0 + 1000, area=square)
    assert inside["world_x"].to_list() == [2.0, 3.0, 4.0, 5.0]

    empty = queries.fused_tracks(tmp_path, T0 + 5000, T0 + 6000, area=square)
    assert empty.height == 0 and empty.schema == queries.FUSED_TRACK_SCHEMA
    with pytest.raises(ValueError, match="before start"):
        queries.fused_tracks(tmp_path, T0 + 10, T0)


def test_route_is_ordered_and_follows_merges(tmp_path):
    _store_with_history(tmp_path)
    steps = queries.route(tmp_path, "g1")
    assert steps.columns == list(queries.ROUTE_COLUMNS)
    assert steps["camera_id"].to_list() == ["cam1", "cam2", "cam1"]
    assert steps["t_start"].is_sorted()
    assert steps.row(0, named=True)["world_x"] == pytest.approx(3.5)  # median of 0..7
    assert steps.row(1, named=True)["last_y"] == pytest.approx(4.0)
    assert queries.route(tmp_path, "g2").height == 0
    summary = queries.identity_summary(tmp_path)
    assert summary["global_id"].to_list() == ["g1"]
    assert summary["cameras"].to_list() == [["cam1", "cam2"]]


def test_export_slice_copies_a_window(tmp_path):
    _store_with_history(tmp_path / "src")
    counts = queries.export_slice(tmp_path / "src", T0 - 10, T0 + 60, tmp_path / "out")
    assert counts["tracklets"] == 3 and counts["sightings"] == 3
    assert counts["identities"] == 2 and counts["thumbnails"] == 2
    assert counts["events"] == 0
    out = tmp_path / "out"
    assert queries.latest_identities(out)["tracklet_id"].to_list() == ["cam1-0-1", "cam2-0-4"]
    assert queries.route(out, "g1")["camera_id"].to_list() == ["cam1", "cam2"]
    assert (out / "thumbnails/camera_id=cam2/cam2-0-4.jpg").read_bytes() == b"cam2-0-4/v1"
    with pytest.raises(StoreError, match="already holds"):
        queries.export_slice(tmp_path / "src", T0, T0 + 60, out)


def test_unwritable_root_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=r"a-file/store is not a writable folder"):
        TrackStore(blocker / "store")


def test_fusion_dataclasses_are_accepted_as_rows(tmp_path):
    from sightline.fusion.core import Assignment, FusionEvent

    store = TrackStore(tmp_path)
    store.write_assignments([Assignment("cam1-0-9", "g7", 3, "new")], assigned_at=T0)
    store.write_events([FusionEvent(3, T0, "new", ("g7",), ("cam1-0-9",), "first sighting")])
    store.flush()
    rows = queries.scan(tmp_path, "identities").collect()
    assert rows["assigned_at"].to_list() == [datetime.fromtimestamp(T0, UTC)]
    events = queries.scan(tmp_path, "events").collect()
    assert events["global_ids"].to_list() == [["g7"]]


def test_bad_rows_are_rejected(tmp_path):
    store = TrackStore(tmp_path)
    with pytest.raises(ValueError, match="not among"):
        store.write_events(
            [
                {
                    "seq": 1,
                    "ts": T0,
                    "kind": "teleport",
                    "global_ids": [],
                    "tracklet_ids": [],
                    "reason": "",
                }
            ]
        )
    with pytest.raises(ValueError, match="lacks"):
        store.write_assignments([{"tracklet_id": "x", "global_id": "g"}])


def test_empty_store_gives_typed_empty_results(tmp_path):
    TrackStore(tmp_path)
    assert queries.latest_identities(tmp_path).schema == {
        "tracklet_id": pl.String(),
        "global_id": pl.String(),
    }
    assert queries.sightings(tmp_path, T0, T0 + 1).height == 0
    assert queries.route(tmp_path, "g1").height == 0
    start = datetime.fromtimestamp(T0, UTC)
    assert queries.fused_tracks(tmp_path, start, start + timedelta(hours=1)).height == 0


def test_tracklet_rows_equal_the_tracking_sink_frame():
    from polars.testing import assert_frame_equal

    from sightline.store.tables import tracklet_rows
    from sightline.tracking.sink import tracklets_frame

    odd = make_tracklet("cam3-0-3", "cam3", n=1)
    batch = [
        make_tracklet("cam1-0-1", n=7),
        Tracklet(**{**vars(odd), "embeddings": np.zeros((0, 8), np.float32)}),
    ]
    refs = ["thumbnails/a.jpg", "thumbnails/b.jpg"]
    assert_frame_equal(tracklet_rows(batch, refs), tracklets_frame(batch, refs))
    assert tracklet_rows([], []).height == 0
