"""Placement and a lost node on a simulated multi-node Ray cluster (``ray.cluster_utils``).

Run by ``tests/test_cluster_faults.py`` in a subprocess (a process joins one Ray only,
and the test session already runs its own)::

    RAY_TMPDIR=/tmp/some-short-dir python tests/cluster_scenario.py OUT_DIR

``RAY_TMPDIR`` keeps this cluster's files (and its ``ray_current_cluster`` address
file, which a bare ``ray.init()`` elsewhere on the machine would otherwise join) out of
the machine's shared ``/tmp/ray``.

The cluster: a head (1 CPU, ``sightline_coordinator``), two CPU workers (2 CPUs,
``sightline_camera``) and a GPU worker (a fake GPU, 1 CPU, ``sightline_model``). The
``tiny`` site (2 cameras) runs through :func:`actors.pipeline.run_pipeline` in a thread.
Mid-run the CPU worker hosting a camera that has checkpointed and has acknowledged
tracklets is removed (a replacement CPU worker joins first). Prints one JSON line:
where everything ran, what was acknowledged before the loss, and what the store and
the camera's files hold afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S", "1.0")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402
import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from sightline.config import SiteConfig, load_site_config  # noqa: E402
from sightline.placement import (  # noqa: E402
    CAMERA_RESOURCE,
    COORDINATOR_RESOURCE,
    MODEL_RESOURCE,
)

PREFIX = "faults"
SEED = 3
WAIT_S = 240.0  # for the run as a whole, on a loaded 2-core machine
CPU_WORKER = {"num_cpus": 2, "resources": {CAMERA_RESOURCE: 100}}


def log(message: str) -> None:
    print(f"[scenario {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def small_site(folder: Path) -> SiteConfig:
    """The tiny site with light model replicas (a quarter of the fake GPU, no CPU) and
    partial tracklets every second, so tracklets are acknowledged early in the run."""
    site = load_site_config(folder / "site.yaml")
    serving = {"max_batch_size": 8, "batch_wait_timeout_s": 0.05, "num_gpus": 0.25, "num_cpus": 0}
    return site.model_copy(
        update={
            "models": site.models.model_validate(
                {"detector": {"serving": serving}, "embedder": {"serving": serving}}
            ),
            "tracking": site.tracking.model_copy(update={"emit_every_s": 1.0}),
        }
    )


def actors_now() -> list[dict[str, Any]]:
    """Alive actors: name, class and node (from the GCS; no dashboard needed)."""
    out = []
    for info in ray._private.state.actors().values():  # test-only view of the GCS
        if info.get("State") != "ALIVE":
            continue
        out.append(
            {
                "name": info.get("Name") or "",
                "class": info.get("ActorClassName") or "",
                "node_id": (info.get("Address") or {}).get("NodeID"),
            }
        )
    return out


def placement() -> dict[str, Any]:
    actors = actors_now()
    return {
        "replicas": {
            a["class"]: a["node_id"] for a in actors if a["class"].startswith("ServeReplica")
        },
        "cameras": {
            a["name"].rsplit("-", 1)[1]: a["node_id"]
            for a in actors
            if a["name"].startswith(f"{PREFIX}-camera-")
        },
        "coordinator": [a["node_id"] for a in actors if a["name"] == f"{PREFIX}-coordinator"],
    }


def wait_for_victim(site: SiteConfig, deadline: float) -> tuple[str, dict[str, Any]]:
    """A camera mid-recording that has checkpointed and has acknowledged tracklets."""
    handles: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for camera in site.cameras:
            if camera.id not in handles:
                try:
                    handles[camera.id] = ray.get_actor(f"{PREFIX}-camera-{camera.id}")
                except ValueError:
                    continue
        for camera_id, handle in handles.items():
            try:
                health = ray.get(handle.health.remote(), timeout=10)
            except Exception:  # not up yet, or restarting
                continue
            progress = health.get("progress") or 0.0
            if (
                health.get("checkpoints", 0) >= 4  # the first is the start
                and health.get("batches_acknowledged", 0) >= 1
                and progress < 0.8
            ):
                return camera_id, health
        time.sleep(0.3)
    raise TimeoutError("no camera reached a checkpoint with acknowledged tracklets in time")


def stored_versions(store: Path) -> pl.DataFrame:
    from sightline.store.queries import scan

    return scan(store, "tracklets").select("tracklet_id", "version").collect()


def main(out: Path) -> dict[str, Any]:  # noqa: PLR0915 (one scenario, step by step)
    from actors.pipeline import run_pipeline
    from sightline.sim import simulate
    from sightline.tracking.sink import read_tracklets

    started = time.monotonic()
    timings: dict[str, float] = {}
    simulate("tiny", SEED, out / "site", workers=1, show_progress=False)
    site = small_site(out / "site")
    timings["simulate_s"] = round(time.monotonic() - started, 1)

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {COORDINATOR_RESOURCE: 1},
            "include_dashboard": False,
        },
    )
    result: dict[str, Any] = {}
    try:
        cpu_nodes = [cluster.add_node(**CPU_WORKER) for _ in range(2)]
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, resources={MODEL_RESOURCE: 100})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = {
            "head": cluster.head_node.node_id,
            "cpu": [n.node_id for n in cpu_nodes],
            "gpu": gpu_node.node_id,
        }
        timings["cluster_s"] = round(time.monotonic() - started, 1)
        log(f"cluster up: {nodes}")

        run: dict[str, Any] = {}
        lines: list[str] = []

        def pipeline() -> None:
            try:
                run["summary"] = run_pipeline(
                    site,
                    out / "run",
                    app_prefix=PREFIX,
                    poll_s=0.5,
                    log=lines.append,
                    # checkpoint every 10 frames (1 s of video), paced to real time so the
                    # node can be removed mid-recording
                    camera_options={"flush_every": 10, "reader_options": {"realtime": True}},
                )
            except BaseException:  # reported in the JSON
                run["error"] = traceback.format_exc()

        thread = threading.Thread(target=pipeline, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_S
        victim, before = wait_for_victim(site, deadline)
        timings["victim_found_s"] = round(time.monotonic() - started, 1)
        placed = placement()
        log(f"placement before the loss: {placed}")
        victim_node = next(n for n in cpu_nodes if n.node_id == before["node_id"])
        replacement = cluster.add_node(**CPU_WORKER)
        nodes["cpu"].append(replacement.node_id)
        coordinator = ray.get_actor(f"{PREFIX}-coordinator")
        acked_before = ray.get(coordinator.acknowledged.remote())
        log(f"removing {victim}'s node {victim_node.node_id} at progress {before['progress']}")
        cluster.remove_node(victim_node)
        removed_at = time.monotonic()
        timings["node_removed_s"] = round(removed_at - started, 1)

        thread.join(max(1.0, deadline - time.monotonic()))
        if thread.is_alive():
            raise TimeoutError("the pipeline did not finish after the node was lost")
        timings["pipeline_done_s"] = round(time.monotonic() - started, 1)
        if "error" in run:
            raise RuntimeError(run["error"])
        summary = run["summary"]
        store = Path(summary["fusion"]["store"])
        stored = stored_versions(store)
        local = read_tracklets(out / "run").select("tracklet_id", "version")
        frames = pl.read_parquet(out / "site" / "gt" / "frames.parquet")
        detections = pl.read_parquet(out / "run" / "detections" / "**" / "*.parquet")
        result = {
            "nodes": nodes,
            "victim": victim,
            "victim_node": victim_node.node_id,
            "progress_at_loss": before["progress"],
            "placement_before": placed,
            "acked_before": acked_before,
            "stored": stored.rows(),
            "stored_local": local.rows(),
            "cameras": summary["cameras"],
            "camera_restarts": summary["camera_restarts"],
            "frames_per_camera": dict(
                frames.group_by("camera_id").len().iter_rows()  # type: ignore[arg-type]
            ),
            "detection_rows": detections.height,
            "detection_duplicates": int(detections.is_duplicated().sum()),
            "fusion": {
                k: summary["fusion"][k]
                for k in ("tracklets_new", "duplicates", "tracklets_received", "wal_damage")
            },
            "replica_nodes": {
                "detector": summary["detector_batches"]["node_id"],
                "embedder": summary["embedder_batches"]["node_id"],
            },
            "log_tail": lines[-8:],
            "timings": timings,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), default=str))
