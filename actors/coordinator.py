"""The coordinator actor: one per site, fusing every camera's tracklets into people,
counting crowd density and checking standing watches.

A thin Ray layer over :class:`~sightline.fusion.service.FusionService` (durable
write-ahead log, fusion, Parquet store) and
:class:`~sightline.density.service.DensityService` (zone counts, alerts; same store).
It restarts on failure (``max_restarts``) and replays its log in ``__init__``, so an
acknowledged batch is never lost. Calls run one at a time in arrival order (a
synchronous actor), which keeps fusion deterministic.

After a batch is stored its new tracklet versions are checked against the standing
watches (:class:`~sightline.search.watch.WatchList`); a failing watch is counted in
``health()["watches"]`` and never fails the acknowledgement. Watches live in memory: a
restarted coordinator has none (the analyst adds them again).

Cameras reach it through :class:`CoordinatorSink`, a tracklet sink that retries a batch
until the coordinator acknowledges it; ingest is idempotent, so a retry of a batch that
was in fact stored is harmless. Their per-frame ground points for density go through
:class:`GroundSender`, best effort (a lost batch lowers a few seconds' counts).

Placement: on a cluster whose head (or a dedicated node) declares
``sightline_coordinator`` (:mod:`sightline.placement`), the coordinator asks for half of
that node's unit and the pipeline supervisor for the other half
(:func:`coordinator_node_options`), so both run there and nowhere else; on one machine
(no such resource) they run anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle

from sightline.config import SiteConfig
from sightline.density.counting import GroundFrame
from sightline.density.service import DensityService
from sightline.fusion.service import FusionService
from sightline.placement import placement_options
from sightline.search.query import SearchQuery
from sightline.search.watch import WatchList
from sightline.tracking.tracklets import Tracklet

__all__ = [
    "Coordinator",
    "CoordinatorSink",
    "GroundSender",
    "coordinator_node_options",
    "start_coordinator",
]

COORDINATOR_NUM_CPUS = 0.25
COORDINATOR_SHARE = 0.5
"""Share of the coordinator node's ``sightline_coordinator`` unit the coordinator asks
for; the pipeline supervisor asks for the rest, so the two fit there together."""


def coordinator_node_options(
    share: float = COORDINATOR_SHARE, cluster_resources: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Ray options placing an actor on the coordinator node: ``share`` of the unit of
    ``sightline_coordinator`` it declares, or ``{}`` when no node declares it (one
    machine). ``cluster_resources`` defaults to ``ray.cluster_resources()``."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if cluster_resources is None:
        cluster_resources = ray.cluster_resources()
    options = placement_options("coordinator", cluster_resources)
    if "resources" in options:
        options["resources"] = {k: v * share for k, v in options["resources"].items()}
    return options


@ray.remote(max_restarts=-1, max_task_retries=0)
class Coordinator:
    """Receives tracklet batches from all camera actors (see the module docstring)."""

    def __init__(self, site: SiteConfig, wal_dir: str, store_root: str) -> None:
        self._service = FusionService(
            site, wal_dir, store_root, flush_after_s=site.storage.flush_after_s
        )
        self._density = DensityService(
            site, self._service.store, identity=self._service.fuser.global_id
        )
        self._watches = WatchList()
        self._watch_check_errors = 0

    def ingest(self, tracklets: list[Tracklet]) -> dict[str, int]:
        """Durably append, fuse and store; the return value is the acknowledgement.
        Then the batch's new versions are checked against the standing watches."""
        fuser, watching = self._service.fuser, len(self._watches) > 0
        fresh = [
            t for t in tracklets if watching and fuser.known_version(t.tracklet_id) < t.version
        ]
        ack = self._service.ingest(tracklets)
        if fresh:
            try:
                owners = {t.tracklet_id: fuser.global_id(t.tracklet_id) for t in fresh}
                self._watches.check(fresh, owners)
            except Exception:  # the batch is stored: a watch must not fail its acknowledgement
                self._watch_check_errors += 1
        return ack

    def add_watch(self, query: SearchQuery, threshold: float | None = None) -> str:
        """Keep ``query`` open as a standing watch (embeddings and/or a description, no
        photos); returns its id. ``threshold`` defaults to the query's min_confidence."""
        return self._watches.add(query, threshold)

    def remove_watch(self, watch_id: str) -> None:
        """Close a watch; ``KeyError`` if unknown."""
        self._watches.remove(watch_id)

    def watches(self) -> list[dict[str, Any]]:
        """The open watches (id, case, reason, threshold, alert and error counts)."""
        return self._watches.watches()

    def watch_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        """Watch alerts numbered after ``since`` (poll with the last ``seq`` seen)."""
        return [a.as_dict() for a in self._watches.since(since)]

    def observe_ground(self, frames: list[GroundFrame]) -> int:
        """Count a batch of ground frames; returns how many seconds became final."""
        return self._density.observe(frames)

    def finish_camera(self, camera_id: str) -> int:
        """A camera's stream ended: its absence no longer holds density counts back."""
        return self._density.finish_camera(camera_id)

    def set_site(self, site: SiteConfig) -> int:
        """Cameras were added, changed or removed at run time: density counts the new set
        (fusion needs nothing: it learns cameras from their tracklets)."""
        return self._density.set_cameras(site)

    def close_density(self) -> int:
        """Count every second still held (all streams are over)."""
        return self._density.close()

    def density(self) -> dict[str, dict[str, Any]]:
        """The newest final second of each zone (count, density, coverage, ...)."""
        return self._density.latest()

    def density_alerts(self, since: int = 0) -> list[dict[str, Any]]:
        """Alert rows numbered after ``since`` (poll with the last ``seq`` seen)."""
        return [a.__dict__ for a in self._density.alerts_since(since)]

    def flush(self) -> int:
        """Write buffered store rows now."""
        return self._service.flush()

    def identities(self) -> dict[str, list[str]]:
        """Global id -> tracklet ids, as fusion stands now."""
        return self._service.fuser.identities()

    def acknowledged(self, camera_id: str | None = None) -> dict[str, int]:
        """Tracklet id -> newest version acknowledged (of ``camera_id``'s, or all)."""
        fuser = self._service.fuser
        ids = {t for members in fuser.identities().values() for t in members}
        return {
            t: fuser.known_version(t)
            for t in sorted(ids)
            if camera_id is None or t.startswith(f"{camera_id}-")
        }

    def node_id(self) -> str:
        """The Ray node this coordinator runs on (placement checks)."""
        return ray.get_runtime_context().get_node_id()

    def events(self) -> list[dict[str, Any]]:
        """The most recent fusion events (new, assign, merge, split) as dicts; the store's
        ``events`` table has them all."""
        return [e.__dict__ for e in self._service.fuser.recent_events]

    def health(self) -> dict[str, Any]:
        """Counters, identities, events, replay and log damage; density and watch counters."""
        watches = {
            **self._watches.stats,
            "open": len(self._watches),
            "callback_errors": self._watches.callback_errors,
            "check_errors": self._watch_check_errors,
        }
        return {**self._service.health(), "density": self._density.health(), "watches": watches}


def start_coordinator(
    site: SiteConfig, wal_dir: str | Path, store_root: str | Path, name: str
) -> ActorHandle:
    """Start (or reconnect to) the named coordinator of ``site``, on the coordinator node
    when the cluster declares one (:func:`coordinator_node_options`)."""
    return Coordinator.options(  # type: ignore[attr-defined]
        name=name,
        get_if_exists=True,
        num_cpus=COORDINATOR_NUM_CPUS,
        **coordinator_node_options(),
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

    def pending(self) -> list[list[Tracklet]]:
        """The batches not acknowledged yet, oldest first (a camera checkpoints them)."""
        return list(self._queue)

    def restore(self, pending: list[list[Tracklet]], stats: Mapping[str, int]) -> None:
        """Take over a checkpointed queue and counters (a restarted camera); the queue
        goes out with the next write or :meth:`close`."""
        self._queue = deque(pending)
        self.stats.update(stats)

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


class GroundSender:
    """A camera's ground frames to the coordinator, a batch per ``batch_s`` of stream time.

    Density is best effort: a batch the coordinator cannot take (it is restarting) is
    dropped and counted, never retried, so a camera never waits on density. One batch
    is in flight at a time and the camera does not wait for it: it waits only if the
    previous batch is still unanswered when the next one is due. :meth:`close` sends
    the rest and tells the coordinator the camera has finished.
    """

    def __init__(self, coordinator: ActorHandle, camera_id: str, batch_s: float = 1.0) -> None:
        self._coordinator = coordinator
        self.camera_id = camera_id
        self.batch_s = batch_s
        self._batch: list[GroundFrame] = []
        self._in_flight: Any = None
        self.stats = {"ground_batches_sent": 0, "ground_batches_lost": 0}
        self.last_error: str | None = None

    async def add(self, frame: GroundFrame) -> None:
        """Queue one frame; send the batch once it spans ``batch_s``."""
        self._batch.append(frame)
        if frame.ts - self._batch[0].ts >= self.batch_s:
            await self._send()

    async def close(self) -> None:
        """Send what is queued, wait for it, and mark the camera finished."""
        await self._send()
        await self._settle()
        try:
            await self._coordinator.finish_camera.remote(self.camera_id)
        except Exception as exc:  # density must not fail the camera
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    async def _send(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        await self._settle()
        self._in_flight = self._coordinator.observe_ground.remote(batch)

    async def _settle(self) -> None:
        """Wait for the batch in flight, counting it sent or lost."""
        if self._in_flight is None:
            return
        ref, self._in_flight = self._in_flight, None
        try:
            await ref
            self.stats["ground_batches_sent"] += 1
        except Exception as exc:  # density must not fail the camera
            self.stats["ground_batches_lost"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
