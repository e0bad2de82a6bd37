"""Hats and bags recorded on tracklets survive every way tracklets are stored, and
tracklets stored before they existed read as unknown (nothing already stored breaks)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from sightline.search import search_store
from sightline.store import queries
from sightline.store.tables import TrackStore
from sightline.store.wal import decode_tracklets, encode_tracklets
from sightline.tracking.sink import ParquetTrackletSink, read_tracklets
from tests.test_search_helpers import query
from tests.test_store import T0, make_tracklet


def _worn(tracklet_id: str, hat: float | None, bag: float | None, **kwargs):
    tracklet = make_tracklet(tracklet_id, final=True, **kwargs)
    return dataclasses.replace(tracklet, hat_probability=hat, bag_probability=bag)


def _strip_columns(parquet: Path) -> None:
    """Rewrite a part as an older release wrote it: without the two columns."""
    frame = pl.read_parquet(parquet, hive_partitioning=False)
    frame.drop("hat_probability", "bag_probability").write_parquet(parquet)


def test_the_wal_payload_carries_hats_and_bags():
    batch = [_worn("cam1-0-1", 0.9, 0.2), _worn("cam1-0-2", None, None)]
    decoded = decode_tracklets(encode_tracklets(batch))
    assert [(t.hat_probability, t.bag_probability) for t in decoded] == [(0.9, 0.2), (None, None)]


def test_a_wal_payload_from_before_hats_and_bags_decodes_them_as_none():
    payload = encode_tracklets([_worn("cam1-0-1", 0.9, 0.2)])
    table = (
        pa.ipc.open_stream(payload).read_all().drop_columns(["hat_probability", "bag_probability"])
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (old,) = decode_tracklets(sink.getvalue().to_pybytes())
    assert old.hat_probability is None and old.bag_probability is None
    assert old.tracklet_id == "cam1-0-1" and old.height_m == pytest.approx(1.2)


def test_tracking_sink_parts_with_and_without_the_columns_read_together(tmp_path: Path):
    sink = ParquetTrackletSink(tmp_path, "cam1")
    sink.write([_worn("cam1-0-1", 0.9, 0.2)])
    (old_part,) = (tmp_path / "tracklets" / "camera_id=cam1").glob("*.parquet")
    _strip_columns(old_part)
    sink.write([_worn("cam1-0-2", 0.1, 0.7)])
    rows = read_tracklets(tmp_path).sort("tracklet_id")
    assert rows["hat_probability"].to_list() == [None, pytest.approx(0.1)]
    assert rows["bag_probability"].to_list() == [None, pytest.approx(0.7)]


def test_a_store_written_before_hats_and_bags_is_searched_with_them_unknown(tmp_path: Path):
    store = TrackStore(tmp_path)
    store.write_tracklets([_worn("cam1-0-1", None, None)], {"cam1-0-1": "g1"})
    store.flush()
    for part in (tmp_path / "tracklets").rglob("*.parquet"):
        _strip_columns(part)
    store.write_tracklets([_worn("cam1-0-2", 0.95, 0.1, t0=T0 + 30)], {"cam1-0-2": "g2"})
    store.flush()

    rows = queries.scan(tmp_path, "tracklets").collect().sort("tracklet_id")
    assert rows["hat_probability"].to_list() == [None, pytest.approx(0.95)]

    start = datetime.fromtimestamp(T0 - 60, UTC)
    q = query(description={"hat": True}, start=start, end=start + timedelta(hours=1))
    result = search_store(tmp_path, q)
    assert [c.best_tracklet_id for c in result.candidates] == ["cam1-0-2", "cam1-0-1"]
    assert result.candidates[1].confidence == pytest.approx(0.5)  # unknown: a coin flip
    assert any("1 of 2 tracklet(s) do not record a hat" in w for w in result.warnings)
