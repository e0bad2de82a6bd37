"""The coordinator's density work without Ray: ground frames in, counts and alerts out.

:class:`DensityService` feeds the cameras' ground frames to a
:class:`~sightline.density.counting.DensityCounter`, writes every final second to the
store (``zone_counts``, ``camera_counts``, ``ground_points``), runs the zone alerts
(:class:`~sightline.density.alerts.AlertBoard`) and stores their rows
(``density_alerts``). Live readers ask :meth:`DensityService.latest` for the newest
counts and :meth:`DensityService.alerts_since` for new alert rows.

Counts are not write-ahead logged like tracklets: a coordinator that restarts loses the
seconds it had not finished counting (at most the slowest camera's lag), and says so in
its health (``restarted``); the seconds already stored stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sightline.config import SiteConfig
from sightline.density.alerts import AlertBoard, DensityAlert, alerts_frame
from sightline.density.counting import DensityCounter, GroundFrame, IdentityFn, rows_frames
from sightline.store.tables import TrackStore

__all__ = ["DensityService"]


class DensityService:
    """Counts, stores and alerts crowd density for one site (see the module docstring)."""

    def __init__(
        self,
        site: SiteConfig,
        store: TrackStore,
        *,
        identity: IdentityFn | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site = site
        self.store = store
        self.counter = DensityCounter(site, identity=identity, clock=clock)
        self.board = AlertBoard(site.zones)
        self._latest: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, Any] = {"ground_batches": 0, "seconds_stored": 0, "alerts": 0}

    def observe(self, frames: Iterable[GroundFrame]) -> int:
        """Take a batch of ground frames; returns how many seconds became final."""
        self.stats["ground_batches"] += 1
        self.counter.add(frames)
        return self._advance(final=False)

    def finish_camera(self, camera_id: str) -> int:
        """``camera_id``'s stream ended: it no longer holds counts back."""
        self.counter.finish_camera(camera_id)
        return self._advance(final=False)

    def set_cameras(self, site: SiteConfig) -> int:
        """The site's cameras changed at run time (see :meth:`DensityCounter.set_cameras`);
        returns how many seconds became final because a removed camera no longer waits."""
        self.site = site
        self.counter.set_cameras(site)
        return self._advance(final=False)

    def close(self) -> int:
        """Count every second still held (the streams are over)."""
        return self._advance(final=True)

    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest final second of each zone: count, density, coverage, ..."""
        return dict(self._latest)

    def alerts_since(self, seq: int = 0) -> list[DensityAlert]:
        """Alert rows numbered after ``seq`` (poll with the last ``seq`` seen)."""
        return self.board.since(seq)

    def active_alerts(self) -> list[DensityAlert]:
        """Alerts that have started and not ended."""
        return self.board.active()

    def health(self) -> dict[str, Any]:
        """Counters of the counter and the alert board."""
        return {
            **self.stats,
            **{f"density_{k}": v for k, v in self.counter.stats.items()},
            "alerts_active": len(self.board.active()),
            "alert_callback_errors": self.board.callback_errors,
        }

    def _advance(self, *, final: bool) -> int:
        seconds = self.counter.advance(final=final)
        if not seconds:
            return 0
        for table, rows in rows_frames(seconds).items():
            if rows.height:
                self.store.append_rows(table, rows)
        alerts: list[DensityAlert] = []
        for second in seconds:
            alerts += self.board.update(second.ts, second.densities)
        if alerts:
            self.store.append_rows("density_alerts", alerts_frame(alerts))
            self.stats["alerts"] += len(alerts)
        for row in seconds[-1].zone_rows:
            self._latest[row["zone_id"]] = row
        self.stats["seconds_stored"] += len(seconds)
        return len(seconds)
