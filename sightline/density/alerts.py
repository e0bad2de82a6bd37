"""Crowd-density alerts per zone, with a hold time and hysteresis.

A zone's density (persons per m2) arrives once per time bucket, typically each second.
An alert **starts** once the density has stayed above ``alert_density`` for ``hold_s``
seconds, and **ends** once it has stayed below ``clear_density`` (lower, by default 80% of
``alert_density``) for ``hold_s`` seconds. The hold ignores brief surges and dips; the gap
between the two thresholds (hysteresis) keeps a density hovering near ``alert_density``
from starting and ending alerts over and over.

Each change is a row of the alert log (:data:`~sightline.store.tables.DENSITY_ALERT_SCHEMA`):
a ``start`` row when the alert is raised and an ``end`` row when it clears, both with the
peak as known then. :class:`ZoneAlerter` follows one zone; :class:`AlertBoard` follows
every zone of a site, numbers the rows and hands them to subscribers. Neither needs Ray.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from sightline.config import ZoneConfig
from sightline.store.tables import DENSITY_ALERT_SCHEMA

__all__ = ["AlertBoard", "DensityAlert", "ZoneAlerter", "alerts_frame"]

log = logging.getLogger(__name__)

AlertState = Literal["start", "end"]


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class DensityAlert:
    """One row of the alert log: an alert of zone ``zone_id`` as known at ``ts``.

    Times are epoch seconds. ``t_start`` is when the density first went above
    ``alert_density`` (the hold started), ``ts`` of the ``start`` row is when the hold
    elapsed and the alert was raised; ``t_end`` (``end`` rows only) is when the density
    first went below ``clear_density``. ``peak_*`` is the highest density since
    ``t_start``, with the count at that moment. ``seq`` is the :class:`AlertBoard`'s
    number for the row (None outside a board); it is not stored.
    """

    alert_id: str
    zone_id: str
    state: AlertState
    ts: float
    t_start: float
    t_peak: float
    t_end: float | None
    peak_density: float
    peak_count: float
    alert_density: float
    clear_density: float
    seq: int | None = None

    def as_row(self) -> dict[str, Any]:
        """The row as :data:`DENSITY_ALERT_SCHEMA` columns, times as UTC datetimes."""
        return {
            "alert_id": self.alert_id,
            "zone_id": self.zone_id,
            "state": self.state,
            "ts": _utc(self.ts),
            "t_start": _utc(self.t_start),
            "t_peak": _utc(self.t_peak),
            "t_end": _utc(self.t_end),
            "peak_density": self.peak_density,
            "peak_count": self.peak_count,
            "alert_density": self.alert_density,
            "clear_density": self.clear_density,
        }


def alerts_frame(alerts: Iterable[DensityAlert]) -> pl.DataFrame:
    """The alerts as a frame with exactly :data:`DENSITY_ALERT_SCHEMA` (ready for
    ``TrackStore.append_rows("density_alerts", ...)``)."""
    return pl.DataFrame([a.as_row() for a in alerts], schema=DENSITY_ALERT_SCHEMA)


class ZoneAlerter:
    """Starts and ends the density alerts of one zone from its per-bucket densities.

    Feed :meth:`update` one bucket at a time, in increasing ``ts``:

    - **start**: the density has been ``> alert_density`` in every bucket from the first
      one above (at ``t_first``) to the current one at ``ts``, and
      ``ts - t_first >= hold_s`` (``hold_s == 0`` starts on the first bucket above). The
      alert's ``t_start`` is ``t_first``; the ``start`` row's ``ts`` is the current ``ts``.
    - **end**: likewise with ``< clear_density``: every bucket since the first one below
      (``t_end``) was below it, for at least ``hold_s``. A bucket at or above
      ``clear_density`` restarts that wait, so densities between the two thresholds
      keep an alert open (hysteresis); a bucket at or below ``alert_density`` likewise
      restarts the wait for a start.
    - **missing data is not evidence**: a step of more than ``max_gap_s`` between two
      buckets, or a NaN density, restarts both waits (an open alert stays open). Raising
      ``max_gap_s`` bridges longer outages at the risk of holds that nobody observed.
    - At the end of the stream (:meth:`finish`) an open alert stays open: no ``end`` row
      is made up, so the log shows it without ``t_end``.

    A longer ``hold_s`` ignores longer surges but raises (and ends) alerts later; a
    ``clear_density`` closer to ``alert_density`` ends alerts sooner but lets them flap.
    """

    def __init__(
        self,
        zone_id: str,
        alert_density: float,
        clear_density: float | None = None,
        hold_s: float = 10.0,
        *,
        max_gap_s: float = 10.0,
    ) -> None:
        clear = 0.8 * alert_density if clear_density is None else clear_density
        if not 0 < clear <= alert_density:
            raise ValueError(
                f"zone {zone_id}: need 0 < clear_density <= alert_density, got "
                f"clear_density {clear} and alert_density {alert_density}"
            )
        if hold_s < 0 or max_gap_s <= 0:
            raise ValueError(
                f"zone {zone_id}: need hold_s >= 0 and max_gap_s > 0, got hold_s {hold_s} "
                f"and max_gap_s {max_gap_s}"
            )
        self.zone_id = zone_id
        self.alert_density = float(alert_density)
        self.clear_density = float(clear)
        self.hold_s = float(hold_s)
        self.max_gap_s = float(max_gap_s)
        self._last_ts: float | None = None
        self._since: float | None = None
        # while waiting to start: the peak since the first bucket above, (density, count, ts)
        self._peak: tuple[float, float, float] | None = None
        self._open: DensityAlert | None = None

    @classmethod
    def from_config(cls, zone: ZoneConfig, *, max_gap_s: float = 10.0) -> ZoneAlerter:
        """The alerter for a configured zone (its thresholds and hold)."""
        return cls(
            zone.id,
            zone.alert_density,
            zone.effective_clear_density,
            zone.alert_hold_s,
            max_gap_s=max_gap_s,
        )

    @property
    def active(self) -> DensityAlert | None:
        """The open alert (its ``start`` row with the peak as of the last update), or None."""
        return self._open

    def update(self, ts: float, density: float, count: float) -> list[DensityAlert]:
        """Take one bucket (epoch seconds, persons per m2, persons); returns the rows it
        causes: ``[]``, a ``start`` row or an ``end`` row.

        Raises ValueError if ``ts`` is not after the previous bucket's.
        """
        if self._last_ts is not None and ts <= self._last_ts:
            raise ValueError(
                f"zone {self.zone_id}: ts {ts} is not after the previous update's {self._last_ts}"
            )
        gap = self._last_ts is not None and ts - self._last_ts > self.max_gap_s
        self._last_ts = ts
        if gap or math.isnan(density):
            self._reset()
        if math.isnan(density):
            return []
        if self._open is None:
            return self._wait_for_start(ts, density, count)
        return self._wait_for_end(ts, density, count)

    def finish(self, ts: float) -> list[DensityAlert]:
        """End of the stream at ``ts`` (not before the last update): forgets unfinished
        holds and returns ``[]``; an open alert stays open (see the class docstring)."""
        if self._last_ts is not None and ts < self._last_ts:
            raise ValueError(
                f"zone {self.zone_id}: finish at {ts} is before the last update {self._last_ts}"
            )
        self._last_ts = ts
        self._reset()
        return []

    def _reset(self) -> None:
        self._since = None
        self._peak = None

    def _wait_for_start(self, ts: float, density: float, count: float) -> list[DensityAlert]:
        if density <= self.alert_density:
            self._reset()
            return []
        if self._since is None or self._peak is None:
            self._since = ts
            self._peak = (density, count, ts)
        elif density > self._peak[0]:
            self._peak = (density, count, ts)
        if ts - self._since < self.hold_s:
            return []
        peak_density, peak_count, t_peak = self._peak
        self._open = DensityAlert(
            alert_id=f"{self.zone_id}-{round(self._since * 1000)}",
            zone_id=self.zone_id,
            state="start",
            ts=ts,
            t_start=self._since,
            t_peak=t_peak,
            t_end=None,
            peak_density=peak_density,
            peak_count=peak_count,
            alert_density=self.alert_density,
            clear_density=self.clear_density,
        )
        self._reset()
        return [self._open]

    def _wait_for_end(self, ts: float, density: float, count: float) -> list[DensityAlert]:
        assert self._open is not None
        if density > self._open.peak_density:
            self._open = replace(self._open, peak_density=density, peak_count=count, t_peak=ts)
        if density >= self.clear_density:
            self._since = None
            return []
        if self._since is None:
            self._since = ts
        if ts - self._since < self.hold_s:
            return []
        ended = replace(self._open, state="end", ts=ts, t_end=self._since)
        self._open = None
        self._reset()
        return [ended]


class AlertBoard:
    """The alerts of every zone of a site: numbered rows, a bounded history, subscribers.

    Each row gets ``seq`` (1, 2, ... in emission order); the last ``history`` rows are
    kept for pollers (:meth:`since`); a poller that falls further behind misses rows
    (compare its last seq with the first one :meth:`since` returns). Subscribers are
    called with each new row in the updating thread; an exception from one is logged and
    counted in ``callback_errors`` and does not stop the others or the counting.
    """

    def __init__(
        self, zones: Iterable[ZoneConfig], *, history: int = 1000, max_gap_s: float = 10.0
    ) -> None:
        self.alerters: dict[str, ZoneAlerter] = {}
        for zone in zones:
            if zone.id in self.alerters:
                raise ValueError(f"zone id {zone.id!r} appears twice")
            self.alerters[zone.id] = ZoneAlerter.from_config(zone, max_gap_s=max_gap_s)
        self.history: deque[DensityAlert] = deque(maxlen=history)
        self.callback_errors = 0
        self._subscribers: list[Callable[[DensityAlert], object]] = []
        self._seq = 0

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest row (0 before the first)."""
        return self._seq

    def subscribe(self, callback: Callable[[DensityAlert], object]) -> None:
        """Call ``callback(row)`` for every row from now on."""
        self._subscribers.append(callback)

    def update(self, ts: float, values: Mapping[str, tuple[float, float]]) -> list[DensityAlert]:
        """Take one bucket of ``{zone_id: (density, count)}``; returns the new rows.

        A zone absent from ``values`` is not updated (a long absence is a gap).
        Raises ValueError for an unknown zone id, before updating any zone.
        """
        unknown = sorted(set(values) - set(self.alerters))
        if unknown:
            raise ValueError(f"unknown zone(s) {unknown}; known: {list(self.alerters)}")
        rows = []
        for zone_id, alerter in self.alerters.items():
            if zone_id in values:
                density, count = values[zone_id]
                rows.extend(self._publish(a) for a in alerter.update(ts, density, count))
        return rows

    def since(self, seq: int = 0) -> list[DensityAlert]:
        """The kept rows with a ``seq`` greater than ``seq``, oldest first."""
        return [row for row in self.history if row.seq is not None and row.seq > seq]

    def active(self) -> list[DensityAlert]:
        """The open alerts, in zone order."""
        return [a.active for a in self.alerters.values() if a.active is not None]

    def _publish(self, alert: DensityAlert) -> DensityAlert:
        self._seq += 1
        row = replace(alert, seq=self._seq)
        self.history.append(row)
        for callback in self._subscribers:
            try:
                callback(row)
            except Exception:
                self.callback_errors += 1
                log.exception("density alert subscriber %r failed on %s", callback, row.alert_id)
        return row
