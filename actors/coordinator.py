"""The coordinator actor: one per site, fusing every camera's tracklets into people.

A thin Ray layer over :class:`~sightline.fusion.service.FusionService` (durable
write-ahead log, fusion, Parquet store). It restarts on failure (``max_restarts``) and
replays its log in ``__init__``, so an acknowledged batch is never lost. Calls run one
at a time in arrival order (a synchronous actor), which keeps fusion deterministic.

Cameras reach it through :class:`CoordinatorSink`, a tracklet sink that retries a batch
until the coordinator acknowledges it; ingest is idempotent, so a retry of a batch that
was in fact stored is harmless.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle

from sightline.config import SiteConfig
from sightline.fusion.service import FusionService
from sightline.tracking.tracklets import Tracklet

__all__ = ["Coordinator", "CoordinatorSink", "start_coordinator"]

COORDINATOR_NUM_CPUS = 0.25


@ray.remote(max_restarts=-1, max_task_retries=0)
class Coordinator:
    """Receives tracklet batches from all camera actors (see the module docstring)."""

    def __init__(self, site: SiteConfig, wal_dir: str, store_root: str) -> None:
        self._service = FusionService(site, wal_dir, store_root)

    def ingest(self, tracklets: list[Tracklet]) -> dict[str, int]:
        """Durably append, fuse and store; the return value is the acknowledgement."""
        return self._service.ingest(tracklets)

    def flush(self) -> int:
        """Write buffered store rows now."""
        return self._service.flush()

    def identities(self) -> dict[str, list[str]]:
        """Global id -> tracklet ids, as fusion stands now."""
        return self._service.fuser.identities()

    def events(self) -> list[dict[str, Any]]:
        """The most recent fusion events (new, assign, merge, split) as dicts; the store's
        ``events`` table has them all."""
        return [e.__dict__ for e in self._service.fuser.recent_events]

    def health(self) -> dict[str, Any]:
        """Counters, identities, events, replay and log damage."""
        return self._service.health()


def start_coordinator(
    site: SiteConfig, wal_dir: str | Path, store_root: str | Path, name: str
) -> ActorHandle:
    """Start (or reconnect to) the named coordinator of ``site``."""
    return Coordinator.options(  # type: ignore[attr-defined]
        name=name, get_if_exists=True, num_cpus=COORDINATOR_NUM_CPUS
    ).remote(site, str(wal_dir), str(store_root))


class CoordinatorSink:
    """A camera's tracklet sink: batches go to the coordinator, retried until acknowledged.

    A failed call (the coordinator restarting, say) leaves the batch queued; the next
    write sends the queue first, in order. :meth:`close` keeps retrying for
    ``close_timeout_s`` before giving up (and says how many tracklets were not
    acknowledged).
    """

    def __init__(self, coordinator: ActorHandle, close_timeout_s: float = 120.0) -> None:
        self._coordinator = coordinator
        self._queue: deque[list[Tracklet]] = deque()
        self.close_timeout_s = close_timeout_s
        self.stats = {
            "batches_acknowledged": 0,
            "batches_rejected": 0,
            "send_failures": 0,
            "unacknowledged": 0,
        }
        self.last_error: str | None = None

    async def write(self, tracklets: list[Tracklet]) -> None:
        """Queue a batch and send what is queued."""
        if tracklets:
            self._queue.append(tracklets)
        await self._drain()

    async def close(self) -> None:
        """Send everything still queued, retrying with backoff until the timeout."""
        deadline = time.monotonic() + self.close_timeout_s
        delay = 0.2
        while self._queue and time.monotonic() < deadline:
            await self._drain()
            if self._queue:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.stats["unacknowledged"] = sum(len(b) for b in self._queue)
        if self._queue:
            raise RuntimeError(
                f"{self.stats['unacknowledged']} tracklets were never acknowledged by the "
                f"coordinator: {self.last_error}"
            )

    async def _drain(self) -> None:
        while self._queue:
            try:
                await self._coordinator.ingest.remote(self._queue[0])
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                self.stats["send_failures"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                return  # keep it queued: the coordinator restarts and replays its log
            except Exception as exc:  # the coordinator refused the batch: do not retry it
                self.stats["batches_rejected"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._queue.popleft()
                continue
            self._queue.popleft()
            self.stats["batches_acknowledged"] += 1
