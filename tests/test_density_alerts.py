"""Crowd-density alerts: hold, hysteresis, gaps, the board and the stored log."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import polars as pl
import pytest

from sightline.config import ZoneConfig
from sightline.density.alerts import AlertBoard, DensityAlert, ZoneAlerter, alerts_frame
from sightline.store.tables import DENSITY_ALERT_SCHEMA, TrackStore

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
NAN = math.nan


def feed(alerter: ZoneAlerter, densities: list[float], t0: float = T0) -> list[DensityAlert]:
    """Feed one density per second (count = 10 x density); all emitted rows."""
    rows = []
    for i, d in enumerate(densities):
        rows += alerter.update(t0 + i, d, d * 10)
    return rows


def summary(rows: list[DensityAlert]) -> list[tuple]:
    """(state, ts, t_start, t_end) relative to T0."""
    return [
        (r.state, r.ts - T0, r.t_start - T0, None if r.t_end is None else r.t_end - T0)
        for r in rows
    ]


def zone(zone_id: str = "hall", **kwargs) -> ZoneConfig:
    return ZoneConfig(id=zone_id, polygon=[(0, 0), (10, 0), (10, 10), (0, 10)], **kwargs)


@pytest.mark.parametrize(
    ("densities", "expected"),
    [
        # a surge shorter than the hold (above at 1..3 = 2 s < 3 s)
        ([1, 3, 3, 3, 1, 1], []),
        # a long surge: above from 1, raised at 4, below clear from 7, ended at 10
        (
            [1, 3, 3, 4, 3, 3, 3, 1, 1, 1, 1, 1],
            [("start", 4, 1, None), ("end", 10, 1, 7)],
        ),
        # flapping around the alert threshold never holds long enough
        ([3, 1.9, 3, 2.0, 3, 1.5, 3, 1.9, 3, 1.0], []),
        # hovering between clear (1.6) and alert (2.0) keeps the alert open (hysteresis)
        ([3, 3, 3, 3, 1.8, 1.7, 1.9, 1.6, 1.8, 1.7, 1.8], [("start", 3, 0, None)]),
        # a dip below clear that is shorter than the hold does not end it
        ([3, 3, 3, 3, 1, 1, 1.7, 1, 1, 1.8, 3], [("start", 3, 0, None)]),
    ],
)
def test_hold_and_hysteresis(densities, expected):
    alerter = ZoneAlerter("hall", alert_density=2.0, clear_density=1.6, hold_s=3)
    assert summary(feed(alerter, densities)) == expected
    open_now = bool(expected) and expected[-1][0] == "start"
    assert (alerter.active is not None) == open_now


def test_long_surge_peak_and_rows():
    alerter = ZoneAlerter("hall", alert_density=2.0, hold_s=2)
    rows = feed(alerter, [1, 2.5, 4.0, 3.0, 5.0, 3.0, 1.0, 1.0, 1.0])
    start, end = rows
    assert start.alert_id == end.alert_id == f"hall-{round((T0 + 1) * 1000)}"
    assert start.peak_density == 4.0  # the peak during the hold counts
    assert (start.t_peak, start.peak_count) == (T0 + 2, 40.0)
    assert (end.peak_density, end.peak_count, end.t_peak) == (5.0, 50.0, T0 + 4)
    assert (end.ts, end.t_end) == (T0 + 8, T0 + 6)
    assert (end.alert_density, end.clear_density) == (2.0, pytest.approx(1.6))
    assert alerter.active is None


def test_two_events_two_ids():
    alerter = ZoneAlerter("hall", alert_density=2.0, clear_density=1.5, hold_s=1)
    rows = feed(alerter, [3, 3, 1, 1, 1, 3, 3, 1, 1])
    assert [r.state for r in rows] == ["start", "end", "start", "end"]
    assert rows[0].alert_id == "hall-" + str(round(T0 * 1000))
    assert rows[2].alert_id == "hall-" + str(round((T0 + 5) * 1000))


def test_zero_hold_starts_and_ends_at_once():
    alerter = ZoneAlerter("hall", alert_density=2.0, hold_s=0)
    assert summary(feed(alerter, [1, 2.0, 2.1, 1.7, 1.5])) == [
        ("start", 2, 2, None),
        ("end", 4, 2, 4),
    ]


@pytest.mark.parametrize(
    ("times", "densities", "expected"),
    [
        # a 15 s gap (> max_gap_s 10) restarts the hold: above again from 16
        ([0, 1, 16, 17, 18], [3, 3, 3, 3, 3], [("start", 18, 16, None)]),
        # a 10 s step is not a gap
        ([0, 10], [3, 3], [("start", 10, 0, None)]),
        # NaN restarts the hold
        ([0, 1, 2, 3, 4], [3, NAN, 3, 3, 3], [("start", 4, 2, None)]),
        # while open, a gap restarts the wait for the end
        (
            [0, 2, 3, 4, 20, 21, 22],
            [3, 3, 1, 1, 1, 1, 1],
            [("start", 2, 0, None), ("end", 22, 0, 20)],
        ),
        # while open, NaN restarts the wait for the end
        ([0, 2, 3, 4, 5, 6], [3, 3, 1, NAN, 1, 1], [("start", 2, 0, None)]),
    ],
)
def test_gaps_and_nan_reset(times, densities, expected):
    alerter = ZoneAlerter("hall", alert_density=2.0, hold_s=2, max_gap_s=10)
    rows = []
    for t, d in zip(times, densities, strict=True):
        rows += alerter.update(T0 + t, d, 1.0)
    assert summary(rows) == expected


@pytest.mark.parametrize("step", [0.0, -1.0])
def test_non_increasing_ts_raises(step):
    alerter = ZoneAlerter("gate", alert_density=2.0)
    alerter.update(T0 + 5, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"zone gate: ts .* is not after .*") as info:
        alerter.update(T0 + 5 + step, 1.0, 1.0)
    assert str(T0 + 5) in str(info.value)
    assert str(T0 + 5 + step) in str(info.value)


def test_finish_keeps_the_open_alert_open():
    alerter = ZoneAlerter("hall", alert_density=2.0, hold_s=0)
    feed(alerter, [3, 1.8])
    assert alerter.finish(T0 + 5) == []
    assert alerter.active is not None
    assert alerter.active.t_end is None
    assert alerter.active.state == "start"


def test_from_config_uses_zone_thresholds():
    alerter = ZoneAlerter.from_config(zone(alert_density=4.0, alert_hold_s=5))
    assert (alerter.zone_id, alerter.alert_density, alerter.clear_density, alerter.hold_s) == (
        "hall",
        4.0,
        pytest.approx(3.2),
        5.0,
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"clear_density": 3.0}, {"clear_density": 0.0}, {"hold_s": -1}, {"max_gap_s": 0}],
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError, match="zone hall"):
        ZoneAlerter("hall", alert_density=2.0, **kwargs)


def test_board_numbers_rows_and_polls():
    board = AlertBoard(
        [zone("a", alert_density=2.0, alert_hold_s=0), zone("b", alert_density=1.0, alert_hold_s=0)]
    )
    first = board.update(T0, {"a": (3.0, 300), "b": (2.0, 200)})
    assert [(r.zone_id, r.state, r.seq) for r in first] == [("a", "start", 1), ("b", "start", 2)]
    assert [r.zone_id for r in board.active()] == ["a", "b"]
    board.update(T0 + 1, {"a": (0.5, 50)})
    assert [(r.zone_id, r.state, r.seq) for r in board.since(1)] == [
        ("b", "start", 2),
        ("a", "end", 3),
    ]
    assert board.since(3) == []
    assert board.last_seq == 3
    assert [r.zone_id for r in board.active()] == ["b"]
    with pytest.raises(ValueError, match="unknown zone"):
        board.update(T0 + 2, {"a": (3.0, 300), "nowhere": (1.0, 1)})
    assert board.alerters["a"].active is None  # nothing was updated


def test_board_history_is_bounded():
    board = AlertBoard([zone("a", alert_density=2.0, alert_hold_s=0)], history=3)
    for i in range(6):
        board.update(T0 + i, {"a": (3.0 if i % 2 == 0 else 0.1, 1)})
    assert [r.seq for r in board.since(0)] == [4, 5, 6]


def test_board_subscribers_and_failing_callback():
    board = AlertBoard([zone("a", alert_density=2.0, alert_hold_s=0)])
    got: list[DensityAlert] = []

    def broken(row: DensityAlert) -> None:
        raise RuntimeError("subscriber down")

    board.subscribe(broken)
    board.subscribe(got.append)
    board.update(T0, {"a": (3.0, 300)})
    board.update(T0 + 1, {"a": (0.1, 10)})
    assert [(r.state, r.seq) for r in got] == [("start", 1), ("end", 2)]
    assert board.callback_errors == 2
    assert board.last_seq == 2


def test_duplicate_zone_ids_raise():
    with pytest.raises(ValueError, match="'a' appears twice"):
        AlertBoard([zone("a"), zone("a")])


def test_alerts_frame_schema_and_store_round_trip(tmp_path):
    alerter = ZoneAlerter("hall", alert_density=2.0, hold_s=1)
    rows = feed(alerter, [3, 3.5, 1, 1])
    frame = alerts_frame(rows)
    assert frame.schema == pl.Schema(DENSITY_ALERT_SCHEMA)
    assert frame["t_end"].to_list() == [None, datetime.fromtimestamp(T0 + 2, UTC)]
    assert alerts_frame([]).schema == pl.Schema(DENSITY_ALERT_SCHEMA)

    store = TrackStore(tmp_path, durable=False)
    store.append_rows("density_alerts", frame)
    store.flush()
    back = (
        pl.scan_parquet(f"{tmp_path}/density_alerts/**/*.parquet", hive_partitioning=True)
        .sort("ts")
        .collect()
    )
    assert back.select(list(DENSITY_ALERT_SCHEMA)).equals(frame)
    assert back["date"].cast(pl.String).to_list() == ["2024-05-01"] * 2
    assert back["state"].to_list() == ["start", "end"]
    assert back["peak_density"].to_list() == [3.5, 3.5]
