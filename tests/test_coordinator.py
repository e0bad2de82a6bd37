"""The coordinator on Ray: killed mid-ingest, it restarts, replays its log, loses nothing."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
import ray

from sightline.config import FusionConfig, load_site_config
from sightline.fusion.bench import synthetic_tracklets
from sightline.fusion.calibration import AppearanceCalibration
from sightline.fusion.core import Fuser
from sightline.fusion.service import FusionService
from sightline.store.queries import latest_identities
from sightline.store.wal import WalError, WriteAheadLog, decode_tracklets

BATCH = 10
BATCHES = 24
KILL_AT = 11


def _batches() -> list[list]:
    stream = synthetic_tracklets(cameras=6, concurrent=30, seed=5)
    flat = list(itertools.islice(stream, BATCH * BATCHES))
    return [flat[i : i + BATCH] for i in range(0, len(flat), BATCH)]


def _reference(batches: list[list]) -> dict[str, list[str]]:
    fuser = Fuser(FusionConfig(), AppearanceCalibration.load())
    for batch in batches:
        fuser.ingest(batch)
    return fuser.identities()


def _open_when_free(folder: Path, timeout_s: float = 30.0) -> WriteAheadLog:
    """The log, once the killed actor's process has let go of its lock."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return WriteAheadLog(folder)
        except WalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.integration
def test_killed_coordinator_loses_no_acknowledged_tracklet(ray_local, tiny_site: Path, tmp_path):
    from actors.coordinator import Coordinator, CoordinatorSink

    site = load_site_config(tiny_site / "site.yaml")
    wal, store = tmp_path / "wal", tmp_path / "store"
    batches = _batches()
    coordinator = Coordinator.options(name="fault-test-coordinator", num_cpus=0).remote(
        site, str(wal), str(store)
    )
    sink = CoordinatorSink(coordinator, close_timeout_s=60)

    async def feed() -> None:
        for i, batch in enumerate(batches):
            if i == KILL_AT:
                coordinator.ingest.remote(batch)  # in flight when the actor dies
                ray.kill(coordinator, no_restart=False)
            await sink.write(batch)
        await sink.close()

    asyncio.run(feed())
    assert sink.stats["send_failures"] >= 1  # the kill was felt and the batch retried
    health = ray.get(coordinator.health.remote())
    assert health["replayed_batches"] >= KILL_AT - 1  # the restarted actor replayed its log
    identities = ray.get(coordinator.identities.remote())
    ray.get(coordinator.flush.remote())
    ray.kill(coordinator, no_restart=True)

    # fusion equals an uninterrupted run over the same batches
    assert identities == _reference(batches)
    # every tracklet in the log exactly once
    logged = [t.tracklet_id for p in _open_when_free(wal).replay() for t in decode_tracklets(p)]
    expected = {t.tracklet_id for b in batches for t in b}
    assert sorted(logged) == sorted(expected)
    # and in the store, each with its final identity
    owners = latest_identities(store)
    assert owners.height == len(expected) == owners["tracklet_id"].n_unique()
    final = {t: g for g, ts in identities.items() for t in ts}
    assert dict(zip(owners["tracklet_id"], owners["global_id"], strict=True)) == final


def test_service_replays_its_log_and_ignores_duplicates(tiny_site: Path, tmp_path):
    site = load_site_config(tiny_site / "site.yaml")
    batches = _batches()[:6]
    first = FusionService(site, tmp_path / "wal", tmp_path / "store")
    for batch in batches[:4]:
        first.ingest(batch)
    assert first.ingest(batches[0])["new"] == 0  # a retried batch adds nothing
    before = first.fuser.identities()
    first.close()
    again = FusionService(site, tmp_path / "wal", tmp_path / "store")
    assert again.stats["replayed_batches"] == 4
    assert again.fuser.identities() == before
    for batch in batches[4:]:
        again.ingest(batch)
    again.close()
    assert again.fuser.identities() == _reference(batches)
