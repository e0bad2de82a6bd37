"""``sightline bench api``: does the HTTP API hold its load target while ingest runs?

The target (issue 8): the density and tracks endpoints hold 200 requests/s for 30 s with
p99 < 200 ms and no errors, on 127.0.0.1, while the pipeline ingests. The run:

1. renders (or reuses) a synthetic site and starts the whole service on a local Ray
   (:func:`serve.commands.start_service`: models, camera actors, coordinator, the API
   on Serve's HTTP proxy) with a fresh store and a ``data`` key;
2. waits until the store holds the first counts and tracks, then offers the load with
   :func:`serve.load.run_load` (open loop, latency from the scheduled send time) over
   ``/density/zones``, ``/density/summary`` and ``/tracks`` while the cameras are still
   decoding and detecting;
3. waits for ingest to finish and offers the same load again: the baseline of the same
   run, so the JSON shows what ingest costs the API (ratios, not just absolute times);
4. offers the same load to a one-line Serve deployment answering a constant JSON through
   the same proxy (``serve_proxy_static``): the ceiling of Serve's HTTP path on this
   machine, whatever the API does, so the JSON shows how much of it the API reaches.

Every request is a real, audited read (one hash-chained, fsynced audit entry each).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["bench_api"]

P99_TARGET_MS = 200.0


def _log(message: str) -> None:
    print(f"[bench api] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _requests(t0: datetime, tracks_window_s: float) -> list[tuple[str, str, str]]:
    def iso(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    minute = f"start={iso(t0)}&end={iso(t0 + timedelta(seconds=60))}"
    tracks = f"start={iso(t0)}&end={iso(t0 + timedelta(seconds=tracks_window_s))}"
    return [
        ("density_zones", "GET", f"/density/zones?{minute}&bucket_s=10"),
        ("density_summary", "GET", f"/density/summary?{minute}"),
        ("tracks", "GET", f"/tracks?{tracks}"),
    ]


def _cameras_running(supervisor: Any) -> int:
    import ray

    cams = ray.get(supervisor.cameras.remote())
    return sum(1 for c in cams if (c.get("health") or {}).get("state") == "running")


def _frames(supervisor: Any) -> int:
    import ray

    cams = ray.get(supervisor.cameras.remote())
    return sum((c.get("health") or {}).get("frames_detected", 0) for c in cams)


def _wait_for_rows(store: str, t0: datetime, timeout_s: float = 300.0) -> float:
    from sightline.density.queries import zone_counts
    from sightline.store.queries import fused_tracks

    started = time.monotonic()
    end = t0 + timedelta(hours=1)
    while time.monotonic() - started < timeout_s:
        try:
            if zone_counts(store, t0, end).height and fused_tracks(store, t0, end).height:
                return time.monotonic() - started
        except Exception:  # the first parts are being written
            pass
        time.sleep(1.0)
    raise RuntimeError(f"no rows in the store {store} after {timeout_s:.0f} s of ingest")


def _static_ceiling(url: str, load: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The same load against a Serve deployment that only answers ``{"ok": true}``."""
    from ray import serve

    @serve.deployment(name="StaticBaseline", ray_actor_options={"num_cpus": 0})
    class StaticBaseline:
        """A route doing nothing: what the proxy and one replica cost per request."""

        async def __call__(self, request: Any) -> dict[str, bool]:
            return {"ok": True}

    serve.run(StaticBaseline.bind(), name="bench-static", route_prefix="/bench-static")
    try:
        return load([("static", "GET", "/bench-static")])
    finally:
        serve.delete("bench-static")


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    from serve.load import shortfalls

    rate = result["offered_rate_per_s"]
    return {
        **result,
        "meets_target": not shortfalls(result, rate, P99_TARGET_MS),
        "shortfalls": shortfalls(result, rate, P99_TARGET_MS),
    }


def bench_api(
    *,
    preset: str = "small",
    seed: int = 11,
    rate_per_s: float = 200.0,
    duration_s: float = 30.0,
    tracks_window_s: float = 2.0,
    api_replicas: int = 1,
    data_dir: Path | None = None,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run the benchmark (module docstring); returns the JSON-able report."""
    import ray

    from serve.commands import start_service, stop_service
    from serve.load import run_load
    from sightline.config import load_site_config
    from sightline.security import KeyStore, security_paths
    from sightline.training.sites import ensure_site

    cache = data_dir or Path.home() / ".cache" / "sightline" / "sites"
    folder = ensure_site(cache, preset, seed)
    site = load_site_config(folder / "site.yaml")
    work = Path(tempfile.mkdtemp(prefix="sightline-bench-api-"))
    storage = site.storage.model_copy(update={"root": str(work / "store"), "flush_after_s": 1.0})
    site = site.model_copy(update={"storage": storage})
    key = KeyStore(security_paths(site)[0], create=True).create("bench", "data")[1]
    t0 = min(c.source_start for c in site.cameras if c.source_start is not None)
    t0 = t0.astimezone(UTC).replace(microsecond=0)
    requests = _requests(t0, tracks_window_s)
    headers = {"Authorization": f"Bearer {key}"}
    port = _free_port()

    log(f"starting the service for {preset} seed {seed} on port {port}")
    handle = start_service(
        site,
        site_path=folder / "site.yaml",
        port=port,
        app_prefix="bench-api",
        api_replicas=api_replicas,
        log=log,
    )
    try:
        waited = _wait_for_rows(str(site.storage.root), t0)
        log(f"first rows stored after {waited:.1f} s; load during ingest ...")

        def load(paths: list[tuple[str, str, str]] = requests) -> dict[str, Any]:
            return run_load(
                handle.url,
                paths,
                rate_per_s=rate_per_s,
                duration_s=duration_s,
                headers=headers,
                progress=log,
            )

        before = (_cameras_running(handle.supervisor), _frames(handle.supervisor))
        during = load()
        after = (_cameras_running(handle.supervisor), _frames(handle.supervisor))
        log("waiting for ingest to finish ...")
        while not ray.get(handle.supervisor.done.remote()):
            time.sleep(2.0)
        log("load with ingest idle (baseline) ...")
        idle = load()
        log("the same load on a static Serve route (the proxy's ceiling) ...")
        static = _static_ceiling(handle.url, load)
    finally:
        stop_service(handle)
        ray.shutdown()
    during_s, idle_s, static_s = _summary(during), _summary(idle), _summary(static)
    p99_during, p99_idle = during["latency_ms"]["p99"], idle["latency_ms"]["p99"]
    return {
        "benchmark": "api",
        "site": f"{preset}-{seed}",
        "target": {"rate_per_s": rate_per_s, "duration_s": duration_s, "p99_ms": P99_TARGET_MS},
        "endpoints": [path for _, _, path in requests],
        "api_replicas": api_replicas,
        "ingest_during_load": {
            "cameras_running_at_start": before[0],
            "cameras_running_at_end": after[0],
            "frames_detected_during_load": after[1] - before[1],
        },
        "during_ingest": during_s,
        "idle": idle_s,
        "serve_proxy_static": static_s,
        "achieved_rate_ratio_idle_vs_static": (
            round(idle["achieved_rate_per_s"] / static["achieved_rate_per_s"], 3)
            if static["achieved_rate_per_s"]
            else None
        ),
        "p99_ratio_during_vs_idle": (
            round(p99_during / p99_idle, 2) if p99_during and p99_idle else None
        ),
        "meets_target_during_ingest": during_s["meets_target"] and before[0] > 0 and after[0] > 0,
    }
