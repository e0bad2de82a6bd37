"""Placement and a lost node on a simulated multi-node cluster (issue 9, items 2 and 4).

``tests/cluster_scenario.py`` runs in a subprocess (this session already has its own
local Ray, and a process joins one Ray only) on a ``ray.cluster_utils.Cluster``: a head
declaring ``sightline_coordinator``, two CPU workers declaring ``sightline_camera``, a
GPU worker (fake GPU) declaring ``sightline_model``. The tiny site runs through the
pipeline; mid-run the CPU worker hosting a camera is removed (a replacement joins).
About a minute here; the subprocess gets :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("cluster_scenario.py")
TIMEOUT_S = 480


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cluster_faults")
    # A short private Ray temp dir: socket paths stay short, and the cluster's address
    # file stays out of the machine's /tmp/ray (where a bare ray.init() would find it).
    ray_tmp = tempfile.mkdtemp(prefix="slr", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    # its own process group: on a timeout the scenario and its Ray processes go together
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"cluster scenario timed out after {TIMEOUT_S} s:\n{stderr[-4000:]}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if proc.returncode != 0 or not stdout.strip():
        pytest.fail(f"cluster scenario failed ({proc.returncode}):\n{stderr[-6000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def test_replicas_run_only_on_the_gpu_node(scenario):
    gpu = scenario["nodes"]["gpu"]
    replicas = scenario["placement_before"]["replicas"]
    assert len(replicas) == 2 and set(replicas.values()) == {gpu}
    assert set(scenario["replica_nodes"].values()) == {gpu}


def test_camera_actors_run_only_on_cpu_nodes(scenario):
    nodes = scenario["nodes"]
    first_two = set(nodes["cpu"][:2])
    assert set(scenario["placement_before"]["cameras"].values()) <= first_two
    # after the loss too: never on the GPU node or the head
    for camera in scenario["cameras"]:
        assert camera["node_id"] in nodes["cpu"], camera["camera_id"]
        assert camera["node_id"] != scenario["victim_node"]


def test_coordinator_runs_on_the_head(scenario):
    assert scenario["placement_before"]["coordinator"] == [scenario["nodes"]["head"]]


def test_lost_node_moves_the_camera_and_the_pipeline_finishes(scenario):
    by_id = {c["camera_id"]: c for c in scenario["cameras"]}
    victim = by_id[scenario["victim"]]
    assert victim["restarts"] >= 1 and scenario["victim"] in scenario["camera_restarts"]
    assert victim["resumed_after_s"] is not None  # from its checkpoint, not from the start
    for camera_id, camera in by_id.items():
        assert camera["state"] == "finished" and camera["progress"] == 1.0
        # every frame detected once: the restored counters plus the frames after the
        # checkpoint, processed again
        assert camera["frames_detected"] == scenario["frames_per_camera"][camera_id]
        assert camera["unacknowledged"] == 0 and camera["checkpoint_errors"] == 0


def test_no_acknowledged_tracklet_is_lost(scenario):
    stored = {tuple(row) for row in scenario["stored"]}
    acked = scenario["acked_before"]
    assert any(t.startswith(f"{scenario['victim']}-") for t in acked)
    missing = {(t, v) for t, v in acked.items() if (t, v) not in stored}
    assert not missing
    # and every version the cameras emitted reached the store
    assert scenario["fusion"]["tracklets_new"] == len(stored)
    assert len(stored) == sum(c["tracklets_emitted"] for c in scenario["cameras"])


def test_nothing_is_stored_twice(scenario):
    stored = [tuple(row) for row in scenario["stored"]]
    assert len(stored) == len(set(stored))
    # the camera's own Parquet parts written after its checkpoint were discarded
    local = [tuple(row) for row in scenario["stored_local"]]
    assert len(local) == len(set(local)) and set(local) == set(stored)
    assert scenario["detection_duplicates"] == 0
    assert scenario["fusion"]["wal_damage"] == []
