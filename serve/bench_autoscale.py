"""``sightline bench autoscale``: the detector scales out under load and pulls in GPU nodes.

A private Ray "cluster" on this machine whose nodes Ray's ``fake_multinode`` autoscaler
adds and removes (each node is another raylet here; the GPUs are fake):

1. A head is started in its own process group (``ray start --head --block``,
   ``RAY_FAKE_CLUSTER=1``) with a private temp dir and free ports, from a cluster config
   derived from ``cluster/fake-multinode.yaml`` (:func:`autoscale_cluster_config`): the
   head without GPUs, one ``gpu-worker`` type with 1 fake GPU and ``sightline_model``
   per node, starting at zero nodes, and a short idle timeout.
2. This process connects as a driver, starts Serve (no HTTP proxy) and deploys the
   Detector with autoscaling (``min_replicas`` 1 to ``max_replicas``,
   ``target_ongoing_requests`` 2, short delays), each replica asking for ``num_gpus: 1``
   and one ``sightline_model``: every extra replica needs a new GPU node. The detector
   backend is :class:`SleepDetector` (a fixed sleep per batch, no model): the point is
   the scaling, and the built-in model on the two cores of a small machine would only
   add noise.
3. ``callers`` threads call the replicas through the DeploymentHandle in a closed loop
   for ``load_seconds``; then the load stops and the benchmark waits for the replicas to
   go back to ``min_replicas`` and the extra GPU nodes to leave (idle timeout).
   Every ``sample_every_s`` it logs replica counts by state (``serve.status()``), the
   alive nodes and their GPUs (``ray.nodes()``) and the autoscaler's pending demand.
4. Teardown: ``serve.shutdown()``, ``ray.shutdown()``, then SIGTERM (SIGKILL after a
   grace period) to the head's process group, which holds the raylets of the fake
   nodes too (the autoscaler monitor starts them); processes left over are looked for
   by that group and by the private temp dir in their command line, and reported.

The result (:func:`summarise`) says whether the detector scaled out, a GPU node was
added, the detector scaled in and a node was removed, with the times it took.
A process can be connected to one Ray only: run it as a command, not inside pytest.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from sightline.models.core import Detections, DetectorBackend
from sightline.placement import MODEL_RESOURCE, declared_resources, placement_options

__all__ = [
    "FAST_AUTOSCALING_ENV",
    "AutoscaleSettings",
    "Proc",
    "SleepDetector",
    "SleepDetectorFactory",
    "autoscale_cluster_config",
    "bench_autoscale",
    "descendants",
    "format_sample",
    "head_start_args",
    "leftover_processes",
    "parse_ps",
    "summarise",
]

DEFAULT_BASE_CONFIG = Path(__file__).resolve().parent.parent / "cluster" / "fake-multinode.yaml"
APP_NAME = "sightline-autoscale-bench"
HEAD_NODE_TYPE = "ray.head.default"
GPU_NODE_TYPE = "gpu-worker"

FAST_AUTOSCALING_ENV: dict[str, str] = {
    # Serve: report ongoing requests twice a second instead of every 10 s.
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    # Under load on 2 cores the routers miss the default 0.1 s deadline.
    "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1.0",
    # The cluster autoscaler: one update a second.
    "AUTOSCALER_UPDATE_INTERVAL_S": "1",
    "RAY_AUTH_MODE": "disabled",
    # A Serve router thread outliving ray.shutdown() must not start a local Ray here.
    "RAY_ENABLE_AUTO_CONNECT": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
"""Set in this process and in the head's environment before Ray or Serve start. Serve
reads its constants when ``ray.serve`` is first imported: the benchmark reports the
push interval actually in effect in this process."""

_HEAD_READY = "Ray runtime started"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AutoscaleSettings:
    """Everything the benchmark varies (defaults: a run of about three minutes)."""

    load_seconds: float = 60.0
    callers: int = 8
    max_replicas: int = 3
    batch_seconds: float = 0.05
    max_batch_size: int = 4
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 2.0
    downscale_delay_s: float = 5.0
    look_back_period_s: float = 12.0
    idle_timeout_s: float = 15.0
    sample_every_s: float = 2.0
    start_timeout_s: float = 180.0
    scale_in_timeout_s: float = 180.0
    grace_s: float = 10.0
    frame_shape: tuple[int, int, int] = (32, 32, 3)
    base_config: Path = field(default=DEFAULT_BASE_CONFIG)

    def check(self) -> None:
        """``ValueError`` naming the first bad setting."""
        for name in ("load_seconds", "sample_every_s", "start_timeout_s", "scale_in_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch_seconds", "idle_timeout_s", "upscale_delay_s", "downscale_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.callers < 1:
            raise ValueError(f"callers must be >= 1, got {self.callers}")
        if not 2 <= self.max_replicas <= 8:
            raise ValueError(f"max_replicas must be in [2, 8], got {self.max_replicas}")


# --------------------------------------------------------------------------- backend


class SleepDetector(DetectorBackend):
    """A detector that finds nobody and takes ``seconds`` per batch (a stand-in model)."""

    type = "sleep"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def detect(self, frames: np.ndarray) -> list[Detections]:
        """No boxes for each frame, after sleeping ``seconds`` (one batch)."""
        time.sleep(self.seconds)
        return [Detections.empty() for _ in range(len(frames))]


class SleepDetectorFactory:
    """``backend_factory`` for the Detector deployment: a :class:`SleepDetector`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, config: Any, prefer_gpu: bool = False) -> SleepDetector:
        """The backend; ``config`` and ``prefer_gpu`` do not matter to it."""
        del config, prefer_gpu
        return SleepDetector(self.seconds)


# --------------------------------------------------------------------------- cluster config


def _gpu_node_types(node_types: Mapping[str, Any]) -> list[str]:
    return [
        name
        for name, spec in node_types.items()
        if name != HEAD_NODE_TYPE and float(((spec or {}).get("resources") or {}).get("GPU", 0)) > 0
    ]


def autoscale_cluster_config(
    base: Mapping[str, Any], gcs_address: str, gpu_nodes: int, idle_timeout_s: float
) -> dict[str, Any]:
    """The benchmark's cluster config, derived from a ``fake_multinode`` config ``base``.

    Keeps the head entry (GPUs removed) and the first GPU node type of ``base`` (renamed
    ``gpu-worker``): 1 GPU per node, ``min_workers`` 0, ``max_workers`` ``gpu_nodes``,
    and ``sightline_model`` declared (100 if ``base`` does not). Other worker types
    (the CPU workers) are dropped, so every node the autoscaler adds is a GPU node.
    ``provider.gcs_address`` points the fake nodes at the head's port (the provider
    assumes 6379 otherwise) and ``launch_multiple`` makes it start as many nodes as the
    autoscaler asks for in one go. ``idle_timeout_s`` is how long an idle node lives.
    """
    if (base.get("provider") or {}).get("type") != "fake_multinode":
        raise ValueError("the base cluster config must use provider type 'fake_multinode'")
    node_types = base.get("available_node_types") or {}
    if HEAD_NODE_TYPE not in node_types:
        raise ValueError(f"the base cluster config has no {HEAD_NODE_TYPE!r} node type")
    gpu_types = _gpu_node_types(node_types)
    if not gpu_types:
        raise ValueError("the base cluster config has no worker node type with GPUs")
    if gpu_nodes < 1:
        raise ValueError(f"gpu_nodes must be >= 1, got {gpu_nodes}")
    if idle_timeout_s < 0:
        raise ValueError(f"idle_timeout_s must be >= 0, got {idle_timeout_s}")
    config = copy.deepcopy(dict(base))
    head = copy.deepcopy(node_types[HEAD_NODE_TYPE])
    head_resources = dict(head.get("resources") or {})
    head_resources.pop("GPU", None)
    head.update(resources=head_resources, max_workers=0)
    gpu = copy.deepcopy(node_types[gpu_types[0]])
    gpu_resources = dict(gpu.get("resources") or {})
    gpu_resources["GPU"] = 1
    gpu_resources.setdefault(MODEL_RESOURCE, 100)
    gpu.update(resources=gpu_resources, min_workers=0, max_workers=gpu_nodes)
    gpu.setdefault("node_config", {})
    config["available_node_types"] = {HEAD_NODE_TYPE: head, GPU_NODE_TYPE: gpu}
    config["head_node_type"] = HEAD_NODE_TYPE
    config["max_workers"] = gpu_nodes
    config["idle_timeout_minutes"] = idle_timeout_s / 60.0
    config["provider"] = {
        **config["provider"],
        "gcs_address": gcs_address,
        "launch_multiple": True,
    }
    return config


def head_start_args(config: Mapping[str, Any]) -> list[str]:
    """``ray start`` arguments giving the head the resources its node type declares.

    The head's resources come from the command line, not from the config: they must
    agree, or the autoscaler plans with resources the head does not have.
    """
    resources = dict(config["available_node_types"][HEAD_NODE_TYPE].get("resources") or {})
    args = [
        f"--num-cpus={int(resources.pop('CPU', 1))}",
        f"--num-gpus={int(resources.pop('GPU', 0))}",
    ]
    memory = resources.pop("object_store_memory", None)
    if memory is not None:
        args.append(f"--object-store-memory={int(memory)}")
    if resources:
        args.append(f"--resources={json.dumps(resources, sort_keys=True)}")
    return args


# --------------------------------------------------------------------------- processes


class Proc(NamedTuple):
    """One process of ``ps``."""

    pid: int
    ppid: int
    pgid: int
    cmd: str


def parse_ps(text: str) -> list[Proc]:
    """The processes of ``ps -eo pid=,ppid=,pgid=,stat=,args=`` output.

    Zombies (state ``Z``: exited, waiting to be reaped by their parent) are left out:
    nothing of them runs any more.
    """
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
            continue
        if parts[3].startswith("Z"):
            continue
        cmd = parts[4] if len(parts) > 4 else ""
        rows.append(Proc(int(parts[0]), int(parts[1]), int(parts[2]), cmd))
    return rows


def descendants(rows: Iterable[Proc], root: int) -> list[Proc]:
    """The processes below ``root`` in the parent tree (children, their children...)."""
    children: dict[int, list[Proc]] = {}
    for r in rows:
        children.setdefault(r.ppid, []).append(r)
    out: list[Proc] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def leftover_processes(
    rows: Iterable[Proc],
    pgid: int,
    marker: str,
    known: Mapping[int, str] | None = None,
    exclude: Iterable[int] = (),
) -> list[Proc]:
    """The processes of the private cluster still there.

    A process is the cluster's when it is in the head's process group ``pgid``, its
    command line holds ``marker`` (the private temp dir), or it was seen below the head
    in the process tree (``known``: pid -> command line; the same pid with another
    command line is another process). Ray's workers (the Serve controller, replicas,
    idle workers) start their own process groups and rename themselves (``ray::...``),
    and once their parent dies they hang under init: only ``known`` finds those.
    The pids in ``exclude`` (this process) never count.
    """
    known = known or {}
    skip = set(exclude)
    return [
        r
        for r in rows
        if r.pid not in skip
        and (r.pgid == pgid or (marker and marker in r.cmd) or known.get(r.pid) == r.cmd)
    ]


def _ps() -> list[Proc]:
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,pgid=,stat=,args="], capture_output=True, text=True, check=False
    )
    return parse_ps(out.stdout)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _ray_executable() -> str:
    here = Path(sys.executable).parent / "ray"
    found = str(here) if here.exists() else shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed next to this Python")
    return found


@dataclass
class _Head:
    proc: subprocess.Popen[bytes]
    pgid: int
    address: str
    tmp: Path
    log_path: Path
    known: dict[int, str] = field(default_factory=dict)

    def remember(self) -> list[Proc]:
        """Note every process now below the head (for the teardown); return them."""
        below = descendants(_ps(), self.proc.pid)
        self.known.update((r.pid, r.cmd) for r in below)
        return below


def _start_head(config: dict[str, Any], tmp: Path, settings: AutoscaleSettings) -> _Head:
    """``ray start --head --block`` in its own session (process group)."""
    config_path = tmp / "cluster.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    address = config["provider"]["gcs_address"]
    port = int(address.rsplit(":", 1)[1])
    # Every port the head would otherwise take at its default: another Ray on this
    # machine may hold those (the autoscaler's and the dashboard's metrics included).
    client_port, agent_port, dash_port, autoscaler_metrics, dash_metrics = _free_ports(5)
    env = {
        **os.environ,
        **FAST_AUTOSCALING_ENV,
        "RAY_FAKE_CLUSTER": "1",
        "RAY_TMPDIR": str(tmp),
        "AUTOSCALER_METRIC_PORT": str(autoscaler_metrics),
        "DASHBOARD_METRIC_PORT": str(dash_metrics),
    }
    cmd = [
        _ray_executable(),
        "start",
        "--head",
        f"--port={port}",
        f"--autoscaling-config={config_path}",
        f"--temp-dir={tmp}",
        f"--ray-client-server-port={client_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--dashboard-port={dash_port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        *head_start_args(config),
        "--block",
    ]
    log_path = tmp / "head.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    head = _Head(proc, os.getpgid(proc.pid), address, tmp, log_path)
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if _HEAD_READY in text:
            return head
        if proc.poll() is not None:
            raise RuntimeError(
                f"`ray start --head` exited with {proc.returncode}:\n{text[-3000:]}\n"
                f"command: {' '.join(cmd)}"
            )
        time.sleep(0.5)
    raise RuntimeError(f"the head did not start in {settings.start_timeout_s} s: see {log_path}")


def _stop_head(head: _Head, grace_s: float, log: Callable[[str], None]) -> dict[str, Any]:
    """SIGTERM to the head's process group, SIGKILL after ``grace_s``; then every
    process of the cluster left (:func:`leftover_processes`) is killed and reported."""
    head.remember()
    marker = str(head.tmp)
    me = {os.getpid()}

    def left() -> list[Proc]:
        return leftover_processes(_ps(), head.pgid, marker, head.known, me)

    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and left():
        time.sleep(0.5)
    after_grace = left()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.proc.wait(timeout=5)
    time.sleep(1.0)
    outside = left()
    for r in outside:
        log(f"killing leftover {r.pid} (group {r.pgid}): {r.cmd[:120]}")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(r.pid, signal.SIGKILL)
    time.sleep(0.5)
    still = left()
    return {
        "head_exit_code": head.proc.returncode,
        "processes_seen": len(head.known),
        "alive_after_sigterm_grace": [f"{r.pid} {r.cmd[:80]}" for r in after_grace],
        "killed_after_group_kill": [f"{r.pid} {r.cmd[:80]}" for r in outside],
        "still_running": [f"{r.pid} {r.cmd[:200]}" for r in still],
    }


def _process_groups(head: _Head) -> dict[str, Any]:
    """The processes below the head: how many in its process group, and which not."""
    below = head.remember()
    raylets = [r for r in below if "raylet" in r.cmd.split(" ", 1)[0]]
    outside = [r for r in below if r.pgid != head.pgid]
    return {
        "processes_below_head": len(below),
        "in_head_group": len(below) - len(outside),
        "raylets": len(raylets),
        "raylets_in_head_group": sum(r.pgid == head.pgid for r in raylets),
        "outside_head_group": sorted(r.cmd.split(" ", 1)[0][:60] for r in outside),
    }


# --------------------------------------------------------------------------- sampling


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state))


def _demand(status: Mapping[str, Any]) -> dict[str, Any]:
    """Pending demand and launches from the autoscaler's debug status."""
    load = status.get("load_metrics_report") or {}
    report = status.get("autoscaler_report") or {}
    return {
        "demand": [{"bundle": b, "count": n} for b, n in load.get("resource_demand") or []],
        "pending_launches": report.get("pending_launches") or {},
        "pending_nodes": len(report.get("pending_nodes") or []),
    }


def _sample(t: float, phase: str, ongoing: int) -> dict[str, Any]:
    """One log entry: replicas by state, alive nodes and their GPUs, pending demand."""
    import ray
    from ray import serve
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    from serve.deployments import DETECTOR_DEPLOYMENT

    replicas: dict[str, int] = {}
    with contextlib.suppress(Exception):
        app = serve.status().applications.get(APP_NAME)
        if app is not None and DETECTOR_DEPLOYMENT in app.deployments:
            states = app.deployments[DETECTOR_DEPLOYMENT].replica_states
            replicas = {_state_name(k): int(v) for k, v in states.items() if v}
    available = ray._private.state.available_resources_per_node()
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        gpus = float(n.get("Resources", {}).get("GPU", 0))
        free = float(available.get(n["NodeID"], {}).get("GPU", 0))
        nodes.append({"id": n["NodeID"][-5:], "gpus": gpus, "gpus_used": gpus - free})
    raw = None
    with contextlib.suppress(Exception):
        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    return {
        "t": round(t, 1),
        "phase": phase,
        "callers_in_flight": ongoing,
        "replicas": replicas,
        "running": replicas.get("RUNNING", 0),
        "replicas_total": sum(replicas.values()),
        "nodes": len(nodes),
        "gpu_nodes": sum(n["gpus"] > 0 for n in nodes),
        "gpus_used": sum(n["gpus_used"] for n in nodes),
        "node_gpus": nodes,
        **_demand(json.loads(raw) if raw else {}),
    }


def format_sample(s: Mapping[str, Any]) -> str:
    """One log line for a sample."""
    states = " ".join(f"{k}={v}" for k, v in sorted(s["replicas"].items())) or "-"
    demand = ", ".join(
        f"{d['count']}x{json.dumps(d['bundle'], sort_keys=True)}" for d in s["demand"]
    )
    launches = s["pending_launches"]
    return (
        f"t={s['t']:6.1f}s {s['phase']:<8} replicas[{states}] | nodes {s['nodes']} "
        f"(GPU nodes {s['gpu_nodes']}, GPUs used {s['gpus_used']:g}) | "
        f"demand [{demand}] launching {launches or '-'}"
    )


# --------------------------------------------------------------------------- summary


def _first(samples: Sequence[Mapping[str, Any]], start: float, pred: Callable[..., bool]) -> Any:
    """Seconds from ``start`` to the first sample at or after it satisfying ``pred``."""
    for s in samples:
        if s["t"] >= start and pred(s):
            return round(s["t"] - start, 1)
    return None


def summarise(
    samples: Sequence[Mapping[str, Any]], load_start: float, load_stop: float, min_replicas: int
) -> dict[str, Any]:
    """What the log shows: peaks, the four outcomes and the times they took.

    ``samples`` have ``t`` (seconds), ``running`` / ``replicas_total`` (replicas RUNNING /
    in any state) and ``gpu_nodes``; the load ran from ``load_start`` to ``load_stop``.
    The baseline is the last sample before the load (``min_replicas`` replicas and the
    GPU nodes they need). Scaled out: more than the baseline's replicas RUNNING during
    or after the load. GPU node added: more GPU nodes than the baseline. Scaled in:
    after the load stops, a sample with at most ``min_replicas`` replicas in any state
    after having scaled out. Node removed: after the peak, fewer GPU nodes than the peak.
    ``time_to_*`` are seconds from the start of the load (scale-out, node added, max
    replicas) or from its stop (scale-in, node removed, GPU nodes back to the baseline),
    at the resolution of the samples; ``None`` when it did not happen.
    """
    before = [s for s in samples if s["t"] < load_start]
    base = before[-1] if before else None
    base_running = base["running"] if base else min_replicas
    base_gpu = base["gpu_nodes"] if base else 0
    after_start = [s for s in samples if s["t"] >= load_start]
    max_running = max((s["running"] for s in after_start), default=0)
    max_gpu = max((s["gpu_nodes"] for s in after_start), default=0)
    peak_t = next((s["t"] for s in after_start if s["gpu_nodes"] == max_gpu), load_start)
    scaled_out = max_running > base_running
    gpu_added = max_gpu > base_gpu
    to_in = _first(samples, load_stop, lambda s: s["replicas_total"] <= min_replicas)
    removed_at = _first(samples, peak_t, lambda s: s["gpu_nodes"] < max_gpu)
    removed_after_stop = _first(samples, load_stop, lambda s: s["gpu_nodes"] < max_gpu)
    back_at = _first(samples, load_stop, lambda s: s["gpu_nodes"] <= base_gpu)
    last = samples[-1] if samples else None
    return {
        "baseline_running_replicas": base_running,
        "baseline_gpu_nodes": base_gpu,
        "max_running_replicas": max_running,
        "max_replicas_any_state": max((s["replicas_total"] for s in after_start), default=0),
        "max_gpu_nodes": max_gpu,
        "final_running_replicas": last["running"] if last else None,
        "final_gpu_nodes": last["gpu_nodes"] if last else None,
        "time_to_scale_out_s": _first(samples, load_start, lambda s: s["running"] > base_running),
        "time_to_max_replicas_s": _first(
            samples, load_start, lambda s: scaled_out and s["running"] == max_running
        ),
        "time_to_gpu_node_added_s": _first(
            samples, load_start, lambda s: s["gpu_nodes"] > base_gpu
        ),
        "time_to_scale_in_s": to_in if scaled_out else None,
        "time_to_gpu_nodes_back_s": back_at if gpu_added else None,
        "time_to_node_removed_s": removed_after_stop if gpu_added else None,
        "scaled_out": scaled_out,
        "gpu_node_added": gpu_added,
        "scaled_in": scaled_out and to_in is not None,
        "node_removed": gpu_added and removed_at is not None,
    }


# --------------------------------------------------------------------------- load


class _Load:
    """``callers`` threads calling ``handle`` (bound to ``detect``) in a closed loop."""

    def __init__(self, handle: Any, callers: int, frame: np.ndarray) -> None:
        self._handle = handle
        self._frame = frame
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.in_flight = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"caller-{i}", daemon=True)
            for i in range(callers)
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.in_flight += 1
            try:
                self._handle.remote(self._frame).result(timeout_s=60)
                with self._lock:
                    self.ok += 1
            except Exception as exc:
                with self._lock:
                    name = type(exc).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                time.sleep(0.2)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=70)


# --------------------------------------------------------------------------- the run


def _deploy(settings: AutoscaleSettings, config: Mapping[str, Any]) -> list[BaseException]:
    """Serve (no proxy) and the Detector app with autoscaling, 1 GPU + 1 sightline_model.

    Returns a list that receives the exception if ``serve.run`` fails."""
    from ray import serve

    from serve.deployments import build_detector_app
    from sightline.config import AutoscalingConfig, BuiltinDetectorConfig, ServingConfig

    serving = ServingConfig(
        max_batch_size=settings.max_batch_size,
        batch_wait_timeout_s=0.005,
        num_gpus=1,
        num_cpus=0.1,
        autoscaling=AutoscalingConfig(
            min_replicas=1,
            max_replicas=settings.max_replicas,
            target_ongoing_requests=settings.target_ongoing_requests,
            upscale_delay_s=settings.upscale_delay_s,
            downscale_delay_s=settings.downscale_delay_s,
            look_back_period_s=settings.look_back_period_s,
        ),
    )
    # The GPU nodes start at zero, so ray.cluster_resources() does not show
    # sightline_model yet: ask for it from what the cluster config declares.
    placement = placement_options("model", declared_resources(config))
    app = build_detector_app(
        BuiltinDetectorConfig(serving=serving),
        backend_factory=SleepDetectorFactory(settings.batch_seconds),
        ray_actor_options={"num_cpus": serving.num_cpus, "num_gpus": 1, **placement},
    )
    serve.start(proxy_location="Disabled")
    # serve.run returns once the app is RUNNING, which takes a GPU node: run it aside
    # and sample meanwhile.
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app, name=APP_NAME, route_prefix=None).shutdown()  # handle unused
        except BaseException as exc:  # reported by the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name="serve-run", daemon=True)
    thread.start()
    return failure


class _Recorder:
    """Samples the cluster, logs each sample, and notes the head's processes each time."""

    def __init__(self, t0: float, log: Callable[[str], None], head: _Head) -> None:
        self.t0 = t0
        self.log = log
        self.head = head
        self.samples: list[dict[str, Any]] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def take(self, phase: str, ongoing: int = 0) -> dict[str, Any]:
        s = _sample(self.now(), phase, ongoing)
        self.head.remember()  # workers of nodes removed later are found at teardown
        self.samples.append(s)
        self.log(format_sample(s))
        return s

    def until(self, phase: str, seconds: float, every: float, done: Callable[[dict], bool]) -> bool:
        """Sample every ``every`` s until ``done(sample)`` or ``seconds`` have passed."""
        end = self.now() + seconds
        while True:
            s = self.take(phase)
            if done(s):
                return True
            if self.now() >= end:
                return False
            time.sleep(every)


def _run_phases(
    settings: AutoscaleSettings, config: Mapping[str, Any], head: _Head, log: Callable
) -> dict[str, Any]:
    """Deploy, wait for the first replica, load, wait for scale-in. Returns raw results."""
    from ray import serve

    from serve.deployments import DETECTOR_DEPLOYMENT

    rec = _Recorder(time.monotonic(), log, head)
    failure = _deploy(settings, config)
    every = settings.sample_every_s
    ready = rec.until(
        "startup", settings.start_timeout_s, every, lambda s: s["running"] >= 1 or bool(failure)
    )
    if failure:
        raise RuntimeError(f"serve.run failed: {failure[0]!r}")
    if not ready:
        raise RuntimeError(
            f"no Detector replica was RUNNING after {settings.start_timeout_s} s: the "
            "autoscaler did not add a GPU node (see the log above and the monitor logs)"
        )
    for _ in range(2):  # a short baseline
        time.sleep(every)
        rec.take("startup")
    # One handle bound to `detect` for every caller: `handle.detect` would make a new
    # handle per call, each with its own router (and metrics thread) until the first
    # call has created one. The first call here creates the one router they share.
    handle = serve.get_deployment_handle(DETECTOR_DEPLOYMENT, APP_NAME).options(
        method_name="detect"
    )
    frame = np.zeros(settings.frame_shape, np.uint8)
    handle.remote(frame).result(timeout_s=60)
    load = _Load(handle, settings.callers, frame)
    load_start = rec.now()
    log(f"--- load: {settings.callers} callers for {settings.load_seconds} s")
    load.start()
    groups: dict[str, Any] = {}
    peak = (0, 0)
    while rec.now() - load_start < settings.load_seconds:
        s = rec.take("load", load.in_flight)
        if (s["gpu_nodes"], s["running"]) > peak:  # where the new nodes' processes are
            peak = (s["gpu_nodes"], s["running"])
            groups = {"gpu_nodes": peak[0], "running": peak[1], **_process_groups(head)}
        time.sleep(every)
    load.stop()
    load_stop = rec.now()
    # Stop the handle's router (its metrics thread would outlive ray.shutdown()).
    handle.shutdown()
    log(f"--- load stopped ({load.ok} requests, errors {load.errors}); waiting for scale-in")
    # The GPU nodes the baseline (min_replicas) needed: the last sample before the load.
    base_gpu = [s["gpu_nodes"] for s in rec.samples if s["phase"] == "startup"][-1]
    scaled_in = rec.until(
        "cooldown",
        settings.scale_in_timeout_s,
        every,
        lambda s: s["replicas_total"] <= 1 and s["gpu_nodes"] <= base_gpu,
    )
    return {
        "samples": rec.samples,
        "load_start": load_start,
        "load_stop": load_stop,
        "requests_ok": load.ok,
        "request_errors": load.errors,
        "requests_per_s": round(load.ok / max(load_stop - load_start, 1e-9), 1),
        "scale_in_complete": scaled_in,
        "process_groups_at_peak": groups,
    }


def _connect(address: str) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="WARNING")


def _disconnect(log: Callable[[str], None]) -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    try:
        serve.shutdown()
    except Exception as exc:  # the head is going away anyway
        log(f"serve.shutdown failed: {type(exc).__name__}: {exc}")
    ray.shutdown()


def _effective_push_intervals() -> dict[str, float]:
    from ray.serve._private import constants

    prefix = "RAY_SERVE_{}_AUTOSCALING_METRIC_PUSH_INTERVAL_S"
    return {
        f"{who.lower()}_metric_push_interval_s": getattr(constants, prefix.format(who))
        for who in ("HANDLE", "REPLICA")
    }


def bench_autoscale(
    load_seconds: float = 60.0,
    callers: int = 8,
    max_replicas: int = 3,
    batch_ms: float = 50.0,
    idle_timeout_s: float = 15.0,
    scale_in_timeout_s: float = 180.0,
    log: Callable[[str], None] = _stderr,
    settings: AutoscaleSettings | None = None,
) -> dict[str, Any]:
    """Run the autoscaling benchmark on a private fake-multinode cluster; JSON-able result.

    ``settings`` (all knobs) wins over the plain arguments when given. The log of
    samples goes to ``log`` as it is taken and is returned in ``log`` of the result,
    with :func:`summarise`'s outcomes in ``summary``. Nothing of the private cluster is
    left running afterwards (``teardown`` says what was found and killed).
    """
    if settings is None:
        settings = AutoscaleSettings(
            load_seconds=load_seconds,
            callers=callers,
            max_replicas=max_replicas,
            batch_seconds=batch_ms / 1000.0,
            idle_timeout_s=idle_timeout_s,
            scale_in_timeout_s=scale_in_timeout_s,
        )
    settings.check()
    # Ray prints some driver messages ("(raylet) Task ... failed") on stdout, which
    # belongs to the JSON result of the command: send them to stderr meanwhile.
    with contextlib.redirect_stdout(sys.stderr):
        return _bench(settings, log)


def _bench(settings: AutoscaleSettings, log: Callable[[str], None]) -> dict[str, Any]:
    for key, value in FAST_AUTOSCALING_ENV.items():
        os.environ.setdefault(key, value)
    import ray
    from ray._private import auto_init_hook

    # Read when ray is first imported: if it was imported before, say it again here.
    auto_init_hook.enable_auto_connect = False
    if ray.is_initialized():
        raise RuntimeError("this process is already connected to a Ray: run it as a command")
    base = yaml.safe_load(Path(settings.base_config).read_text())
    ip = ray._private.services.get_node_ip_address()
    (port,) = _free_ports(1)
    config = autoscale_cluster_config(
        base, f"{ip}:{port}", settings.max_replicas, settings.idle_timeout_s
    )
    tmp = Path(tempfile.mkdtemp(prefix="sl-as-"))
    log(f"private Ray head on {ip}:{port}, temp dir {tmp}")
    head = _start_head(config, tmp, settings)
    raw: dict[str, Any] = {}
    error = None
    try:
        _connect(head.address)
        raw = _run_phases(settings, config, head, log)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {error}")
    finally:
        _disconnect(log)
        teardown = _stop_head(head, settings.grace_s, log)
    samples = raw.get("samples", [])
    summary = (
        summarise(samples, raw["load_start"], raw["load_stop"], 1) if "load_start" in raw else None
    )
    keep = error is not None or bool(teardown["still_running"])
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "benchmark": "autoscale",
        "error": error,
        "summary": summary,
        "outcomes": {
            k: bool(summary and summary[k])
            for k in ("scaled_out", "gpu_node_added", "scaled_in", "node_removed")
        },
        "scale_in_complete": raw.get("scale_in_complete"),
        "load": {
            "seconds": settings.load_seconds,
            "callers": settings.callers,
            "requests_ok": raw.get("requests_ok"),
            "request_errors": raw.get("request_errors"),
            "requests_per_s": raw.get("requests_per_s"),
            "started_at_s": round(raw["load_start"], 1) if "load_start" in raw else None,
            "stopped_at_s": round(raw["load_stop"], 1) if "load_stop" in raw else None,
        },
        "deployment": {
            "backend": f"SleepDetector ({settings.batch_seconds * 1000:g} ms per batch, no model)",
            "min_replicas": 1,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": settings.target_ongoing_requests,
            "upscale_delay_s": settings.upscale_delay_s,
            "downscale_delay_s": settings.downscale_delay_s,
            "look_back_period_s": settings.look_back_period_s,
            "max_batch_size": settings.max_batch_size,
            "replica_resources": {"num_gpus": 1, MODEL_RESOURCE: 1},
            **_effective_push_intervals(),
        },
        "cluster": {
            "provider": "fake_multinode",
            "gpu_node_type": config["available_node_types"][GPU_NODE_TYPE],
            "head_node_type": config["available_node_types"][HEAD_NODE_TYPE],
            "idle_timeout_s": settings.idle_timeout_s,
            "max_gpu_nodes": settings.max_replicas,
            "process_groups_at_peak": raw.get("process_groups_at_peak"),
            "temp_dir_kept": str(tmp) if keep else None,
        },
        "teardown": teardown,
        "log": samples,
    }
