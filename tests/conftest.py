"""Shared fixtures: one tiny simulated site per test session (rendered once, ~5 s)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sightline.sim import simulate

TINY_SEED = 3


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the 'tiny' preset rendered with seed 3 (two overlapping cameras)."""
    out = tmp_path_factory.mktemp("tiny_site")
    simulate("tiny", TINY_SEED, out, workers=2, show_progress=False)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[str]:
    """One local Ray for the whole session: 2 CPUs and a fake GPU, and Serve with its HTTP
    proxy on 127.0.0.1 at a free port; yields the proxy's base URL.

    Fast autoscaling metric pushes are set before Ray starts so the autoscaling test can
    watch replicas change within seconds.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
    os.environ.setdefault("RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S", "1.0")
    import ray
    from ray import serve

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
