"""The pure parts of ``sightline bench autoscale`` (no Ray): the cluster config derived
from ``cluster/fake-multinode.yaml``, the head's ``ray start`` arguments, the summary of
the replica / node log, the leftover-process search and the sleep backend."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from serve.bench_autoscale import (
    DEFAULT_BASE_CONFIG,
    GPU_NODE_TYPE,
    HEAD_NODE_TYPE,
    AutoscaleSettings,
    Proc,
    SleepDetector,
    SleepDetectorFactory,
    autoscale_cluster_config,
    descendants,
    format_sample,
    head_start_args,
    leftover_processes,
    parse_ps,
    summarise,
)
from sightline.placement import MODEL_RESOURCE, declared_resources, placement_options

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load((ROOT / "cluster" / "fake-multinode.yaml").read_text())


def test_default_base_config_is_the_shipped_file():
    assert DEFAULT_BASE_CONFIG == ROOT / "cluster" / "fake-multinode.yaml"


def test_config_has_head_and_one_gpu_type_only(base):
    cfg = autoscale_cluster_config(base, "10.0.0.1:43210", gpu_nodes=3, idle_timeout_s=15)
    types = cfg["available_node_types"]
    assert set(types) == {HEAD_NODE_TYPE, GPU_NODE_TYPE}
    gpu = types[GPU_NODE_TYPE]
    assert gpu["resources"]["GPU"] == 1
    assert gpu["resources"][MODEL_RESOURCE] == 100
    assert (gpu["min_workers"], gpu["max_workers"]) == (0, 3)
    assert "GPU" not in types[HEAD_NODE_TYPE]["resources"]
    assert types[HEAD_NODE_TYPE]["max_workers"] == 0
    assert cfg["max_workers"] == 3
    assert cfg["head_node_type"] == HEAD_NODE_TYPE
    assert cfg["idle_timeout_minutes"] == pytest.approx(0.25)


def test_config_points_fake_nodes_at_the_private_head(base):
    cfg = autoscale_cluster_config(base, "10.0.0.1:43210", gpu_nodes=2, idle_timeout_s=0)
    provider = cfg["provider"]
    assert provider["type"] == "fake_multinode"
    assert provider["gcs_address"] == "10.0.0.1:43210"
    assert provider["launch_multiple"] is True
    # the rest of the provider block is kept
    assert provider["use_node_id_as_ip"] is True
    assert provider["disable_node_updaters"] is True
    assert cfg["idle_timeout_minutes"] == 0


def test_config_does_not_modify_base_and_is_yaml_round_trippable(base):
    before = copy.deepcopy(base)
    cfg = autoscale_cluster_config(base, "h:1", gpu_nodes=2, idle_timeout_s=30)
    assert base == before
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg


def test_replicas_ask_for_what_the_gpu_nodes_declare(base):
    cfg = autoscale_cluster_config(base, "h:1", gpu_nodes=2, idle_timeout_s=30)
    assert placement_options("model", declared_resources(cfg)) == {
        "resources": {MODEL_RESOURCE: 1.0}
    }
    # cameras have nowhere to go: the CPU workers were dropped
    assert placement_options("camera", declared_resources(cfg)) == {}


def test_config_renames_the_gpu_type_and_adds_model_resource():
    base = {
        "provider": {"type": "fake_multinode"},
        "available_node_types": {
            HEAD_NODE_TYPE: {"resources": {"CPU": 1, "GPU": 2}},
            "cpu": {"resources": {"CPU": 4}},
            "big-gpu": {"resources": {"CPU": 2, "GPU": 4}},
        },
    }
    cfg = autoscale_cluster_config(base, "h:1", gpu_nodes=1, idle_timeout_s=6)
    gpu = cfg["available_node_types"][GPU_NODE_TYPE]
    assert gpu["resources"] == {"CPU": 2, "GPU": 1, MODEL_RESOURCE: 100}
    assert gpu["node_config"] == {}
    assert cfg["available_node_types"][HEAD_NODE_TYPE]["resources"] == {"CPU": 1}
    assert cfg["idle_timeout_minutes"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["provider"].update(type="aws"), "fake_multinode"),
        (lambda b: b["available_node_types"].pop(HEAD_NODE_TYPE), "ray.head.default"),
        (lambda b: b["available_node_types"].pop("gpu-worker"), "with GPUs"),
    ],
)
def test_config_rejects_unusable_bases(base, change, message):
    bad = copy.deepcopy(base)
    change(bad)
    with pytest.raises(ValueError, match=message):
        autoscale_cluster_config(bad, "h:1", gpu_nodes=2, idle_timeout_s=10)


@pytest.mark.parametrize(("nodes", "idle"), [(0, 10), (2, -1)])
def test_config_rejects_bad_numbers(base, nodes, idle):
    with pytest.raises(ValueError):
        autoscale_cluster_config(base, "h:1", gpu_nodes=nodes, idle_timeout_s=idle)


def test_head_start_args_match_the_head_entry(base):
    cfg = autoscale_cluster_config(base, "h:1", gpu_nodes=2, idle_timeout_s=10)
    args = head_start_args(cfg)
    assert args[:2] == ["--num-cpus=2", "--num-gpus=0"]
    (res,) = [a for a in args if a.startswith("--resources=")]
    assert json.loads(res.split("=", 1)[1]) == {"sightline_coordinator": 1}


def test_head_start_args_object_store_and_no_custom_resources():
    cfg = {
        "available_node_types": {
            HEAD_NODE_TYPE: {"resources": {"CPU": 3, "object_store_memory": 1e8}}
        }
    }
    assert head_start_args(cfg) == [
        "--num-cpus=3",
        "--num-gpus=0",
        "--object-store-memory=100000000",
    ]


# --------------------------------------------------------------------------- summary


def _s(t, running, gpu, total=None):
    return {"t": t, "running": running, "replicas_total": running if total is None else total,
            "gpu_nodes": gpu}  # fmt: skip


def _full_run():
    return [
        _s(0, 0, 0, total=1),  # startup: the first GPU node comes
        _s(5, 1, 1),
        _s(10, 1, 1),  # baseline (last before the load at t=11)
        _s(12, 1, 1),
        _s(20, 1, 2, total=3),  # scaled, replicas STARTING, a node joins
        _s(22, 2, 3, total=3),
        _s(26, 3, 3),
        _s(70, 3, 3),  # load stops at 71
        _s(80, 1, 3, total=3),  # STOPPING
        _s(84, 1, 3),
        _s(100, 1, 2),
        _s(102, 1, 1),
    ]


def test_summary_of_a_full_scale_out_and_in():
    got = summarise(_full_run(), load_start=11, load_stop=71, min_replicas=1)
    assert got["baseline_running_replicas"] == 1
    assert got["baseline_gpu_nodes"] == 1
    assert got["max_running_replicas"] == 3
    assert got["max_replicas_any_state"] == 3
    assert got["max_gpu_nodes"] == 3
    assert got["time_to_scale_out_s"] == 11  # t=22
    assert got["time_to_max_replicas_s"] == 15  # t=26
    assert got["time_to_gpu_node_added_s"] == 9  # t=20
    assert got["time_to_scale_in_s"] == 13  # t=84: nothing STOPPING any more
    assert got["time_to_gpu_nodes_back_s"] == 31  # t=102
    assert got["time_to_node_removed_s"] == 29  # t=100
    assert (got["final_running_replicas"], got["final_gpu_nodes"]) == (1, 1)
    assert got["scaled_out"] and got["gpu_node_added"]
    assert got["scaled_in"] and got["node_removed"]


def test_summary_when_nothing_scales():
    samples = [_s(0, 1, 1), _s(5, 1, 1), _s(10, 1, 1), _s(15, 1, 1)]
    got = summarise(samples, load_start=2, load_stop=8, min_replicas=1)
    assert not (got["scaled_out"] or got["gpu_node_added"])
    assert not (got["scaled_in"] or got["node_removed"])
    assert got["time_to_scale_out_s"] is None
    assert got["time_to_scale_in_s"] is None
    assert got["time_to_gpu_nodes_back_s"] is None


def test_summary_scaled_out_but_never_back():
    samples = [_s(0, 1, 1), _s(4, 3, 3), _s(8, 3, 3), _s(30, 3, 3)]
    got = summarise(samples, load_start=2, load_stop=9, min_replicas=1)
    assert got["scaled_out"] and got["gpu_node_added"]
    assert not got["scaled_in"] and not got["node_removed"]
    assert got["time_to_scale_in_s"] is None and got["time_to_node_removed_s"] is None


def test_summary_replicas_wait_for_a_node_that_never_comes():
    # more replicas asked for (STARTING) but no node: not scaled out, no node added
    samples = [_s(0, 1, 1), _s(4, 1, 1, total=3), _s(8, 1, 1, total=3), _s(12, 1, 1)]
    got = summarise(samples, load_start=2, load_stop=9, min_replicas=1)
    assert got["max_replicas_any_state"] == 3
    assert not got["scaled_out"] and not got["gpu_node_added"]
    assert not got["scaled_in"]


def test_summary_of_an_empty_log():
    got = summarise([], load_start=0, load_stop=1, min_replicas=1)
    assert got["max_running_replicas"] == 0
    assert got["final_gpu_nodes"] is None
    assert not got["scaled_out"]


def test_format_sample_is_one_line():
    line = format_sample(
        {
            "t": 12.34,
            "phase": "load",
            "replicas": {"RUNNING": 1, "STARTING": 2},
            "nodes": 2,
            "gpu_nodes": 1,
            "gpus_used": 1.0,
            "demand": [{"bundle": {"GPU": 1.0}, "count": 2}],
            "pending_launches": {"gpu-worker": 2},
        }
    )
    assert "\n" not in line
    assert "RUNNING=1 STARTING=2" in line
    assert '2x{"GPU": 1.0}' in line
    assert "GPU nodes 1" in line


# --------------------------------------------------------------------------- processes


PS = """\
  100     1   100 Ss   bash
  200   600   200 Ss   /venv/bin/ray start --head --temp-dir=/tmp/sl-as-x --block
  201   200   200 Sl   /venv/ray/core/src/ray/gcs/gcs_server --session-dir=/tmp/sl-as-x/session_1
  202   200   200 Z    [raylet] <defunct>
  203   201   200 Sl   /venv/ray/raylet --store_socket_name=/tmp/sl-as-x/session_1/sockets/p
  300   203   300 Sl   ray::Detector
  301     1   301 Sl   ray::ServeController
  302   203   302 Sl   ray::IDLE
  400     1   400 Sl   /other/raylet --session-dir=/tmp/ray/session_9
  500   600   500 R    ps -eo pid=,ppid=,pgid=,stat=,args=
  bad line
"""


def test_parse_ps_drops_zombies_and_junk():
    rows = parse_ps(PS)
    assert [r.pid for r in rows] == [100, 200, 201, 203, 300, 301, 302, 400, 500]
    assert rows[1] == Proc(
        200, 600, 200, "/venv/bin/ray start --head --temp-dir=/tmp/sl-as-x --block"
    )


def test_descendants_follow_the_parent_tree():
    rows = parse_ps(PS)
    assert sorted(r.pid for r in descendants(rows, 200)) == [201, 203, 300, 302]
    assert descendants(rows, 300) == []
    assert descendants(rows, 12345) == []


def test_leftovers_by_group_temp_dir_or_known_tree():
    rows = parse_ps(PS)
    # group (200, 201, 203); ray::Detector and ray::IDLE are in their own groups and
    # renamed: found only because they were seen below the head before
    known = {r.pid: r.cmd for r in descendants(rows, 200)}
    got = leftover_processes(rows, pgid=200, marker="/tmp/sl-as-x", known=known, exclude=[500])
    assert [r.pid for r in got] == [200, 201, 203, 300, 302]
    # without the tree they would be missed
    blind = leftover_processes(rows, pgid=200, marker="/tmp/sl-as-x")
    assert [r.pid for r in blind] == [200, 201, 203]
    # a reused pid (same pid, another command line) is not ours
    reused = leftover_processes(rows, pgid=999, marker="", known={301: "ray::Detector"})
    assert reused == []
    # never another Ray (400) or unrelated processes (100)
    assert leftover_processes(rows, pgid=999, marker="") == []
    assert (
        leftover_processes(
            rows, pgid=999, marker="", exclude=[301], known={301: "ray::ServeController"}
        )
        == []
    )


# --------------------------------------------------------------------------- backend, settings


def test_sleep_detector_finds_nobody_per_frame():
    backend = SleepDetectorFactory(0.0)({"type": "builtin"}, prefer_gpu=True)
    assert isinstance(backend, SleepDetector)
    out = backend.detect(np.zeros((3, 8, 8, 3), np.uint8))
    assert len(out) == 3
    assert all(d.xyxy.shape == (0, 4) for d in out)
    assert backend.device == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"load_seconds": 0}, "load_seconds"),
        ({"callers": 0}, "callers"),
        ({"max_replicas": 1}, "max_replicas"),
        ({"max_replicas": 9}, "max_replicas"),
        ({"idle_timeout_s": -1}, "idle_timeout_s"),
        ({"batch_seconds": -0.1}, "batch_seconds"),
        ({"sample_every_s": 0}, "sample_every_s"),
    ],
)
def test_settings_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoscaleSettings(**kwargs).check()
    AutoscaleSettings().check()
