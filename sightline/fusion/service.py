"""The coordinator's logic without Ray: durable ingest, fusion and the store.

:class:`FusionService` takes batches of tracklets from the cameras. A batch's new
versions (ingest is idempotent on (tracklet id, version)) are appended to the
write-ahead log and fsynced *before* the call returns, so a batch that was acknowledged
survives a crash. Then they are fused and written to the store (tracklets, sightings,
identity assignments, fusion events). Opening a service on an existing log replays it
through a fresh :class:`~sightline.fusion.Fuser`: the same batches in the same order give
the same identities, so a restarted coordinator resumes where it stood.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sightline.config import SiteConfig
from sightline.fusion.calibration import AppearanceCalibration
from sightline.fusion.core import Fuser
from sightline.store.tables import TrackStore
from sightline.store.wal import WriteAheadLog, decode_tracklets, encode_tracklets
from sightline.tracking.tracklets import Tracklet

__all__ = ["FusionService"]


class FusionService:
    """Durable ingest -> fusion -> store for one site (see the module docstring)."""

    def __init__(
        self,
        site: SiteConfig,
        wal_dir: str | Path,
        store_root: str | Path,
        *,
        calibration: AppearanceCalibration | None = None,
        flush_rows: int = 2000,
        flush_after_s: float | None = None,
    ) -> None:
        self.site = site
        self.fuser = Fuser(site.fusion, calibration, site.topology)
        self.wal = WriteAheadLog(wal_dir)
        # the store writes a part once ``flush_rows`` rows are buffered or the oldest has
        # waited ``flush_after_s``
        self.store = TrackStore(store_root, flush_rows=flush_rows, flush_after_s=flush_after_s)
        self.stats: dict[str, Any] = {
            "batches": 0,
            "tracklets_received": 0,
            "tracklets_new": 0,
            "duplicates": 0,
            "replayed_batches": 0,
            "replayed_tracklets": 0,
            "started": datetime.now(UTC).isoformat(),
        }
        self._replay()

    def ingest(self, tracklets: list[Tracklet]) -> dict[str, int]:
        """Durably append, fuse and store a batch; returns the acknowledgement."""
        self.stats["batches"] += 1
        self.stats["tracklets_received"] += len(tracklets)
        fresh = self._unseen(tracklets)
        self.stats["duplicates"] += len(tracklets) - len(fresh)
        if fresh:
            self.wal.append(encode_tracklets(fresh))  # fsynced: from here on it is safe
            self._fuse_and_store(fresh)
            self.stats["tracklets_new"] += len(fresh)
        return {"acknowledged": len(tracklets), "new": len(fresh)}

    def flush(self) -> int:
        """Write the store's buffered rows; returns how many."""
        return self.store.flush()

    def close(self) -> None:
        """Flush the store and close the log."""
        self.store.close()
        self.wal.close()

    def health(self) -> dict[str, Any]:
        """Counters, identities, fusion events and any log damage found."""
        return {
            **self.stats,
            "identities": len(self.fuser.identities()),
            "active_people": len(self.fuser.people),
            "events": self.fuser.counts(),
            "wal_damage": [str(d) for d in self.wal.damage],
            "learned_transits": self.fuser.transits.learned(),
        }

    # ------------------------------------------------------------------ internals

    def _unseen(self, tracklets: list[Tracklet]) -> list[Tracklet]:
        newest: dict[str, Tracklet] = {}
        for t in tracklets:
            if self.fuser.known_version(t.tracklet_id) >= t.version:
                continue
            if t.tracklet_id not in newest or newest[t.tracklet_id].version < t.version:
                newest[t.tracklet_id] = t
        return list(newest.values())

    def _fuse_and_store(self, tracklets: list[Tracklet]) -> None:
        assignments = self.fuser.ingest(tracklets)
        owners = {t.tracklet_id: self.fuser.global_id(t.tracklet_id) or "" for t in tracklets}
        self.store.write_tracklets(tracklets, owners)
        now = datetime.fromtimestamp(max(t.t_end for t in tracklets), UTC)
        if assignments:
            self.store.write_assignments(assignments, assigned_at=now)
        events = self.fuser.last_events
        if events:
            self.store.write_events(events)

    def _replay(self) -> None:
        started = time.perf_counter()
        for payload in self.wal.replay():
            batch = decode_tracklets(payload)
            self.stats["replayed_batches"] += 1
            self.stats["replayed_tracklets"] += len(batch)
            # rows already in the store are written again; readers keep the newest
            # version and seq, so a replay never duplicates what a query returns
            self._fuse_and_store(self._unseen(batch))
        self.flush()
        self.stats["replay_seconds"] = round(time.perf_counter() - started, 3)
