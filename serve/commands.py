"""``sightline serve``, ``sightline tracks`` and ``sightline cameras``.

``serve`` starts the whole service for a site on the current Ray cluster (``RAY_ADDRESS``)
or a local one: the model applications, the pipeline supervisor with its coordinator and
camera actors, and the HTTP API as a Serve ingress on ``--host``/``--port``. It prints
the URL, then camera progress, until Ctrl-C (or, with ``--exit-when-done``, until every
recording has been processed).

``tracks`` reads fused tracks or an identity's route from the site's store (audited like
the API's ``GET /tracks``). ``cameras`` talks to a running API (``--url``, ``--key`` or
``SIGHTLINE_URL``/``SIGHTLINE_KEY``) to list cameras with health, add, change or remove
one, exactly as the HTTP routes do.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sightline.config import SiteConfig, load_site_config

__all__ = [
    "ServeHandle",
    "add_serve_commands",
    "check_port_free",
    "create_demo_keys",
    "serve_api_over_store",
    "shutdown_ray",
    "start_service",
    "stop_service",
]

DEFAULT_PORT = 8000
API_NUM_CPUS = 0.1
API_MAX_ONGOING_REQUESTS = 100
"""Requests one API replica takes at once. Serve's default (5) makes the proxy queue
cheap cached reads behind slow ones; the replica's thread pool (40) bounds the real work."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- serve


class ServeHandle:
    """What :func:`start_service` started: the URL, the app prefix, the supervisor and
    the search-jobs actor (held here: named actors live while their creator holds them)."""

    def __init__(self, url: str, app_prefix: str, supervisor: Any, out_dir: Path) -> None:
        self.url, self.app_prefix, self.supervisor, self.out_dir = (
            url,
            app_prefix,
            supervisor,
            out_dir,
        )
        self.search_jobs: Any = None


def start_service(
    site: SiteConfig,
    *,
    site_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    app_prefix: str = "sightline",
    api_replicas: int = 1,
    log: Callable[[str], None] = _log,
) -> ServeHandle:
    """Start models, pipeline and API for ``site`` on Ray (see the module docstring).

    Camera outputs and the coordinator's write-ahead log go under ``out_dir`` (default
    ``<storage.root>/_run``); the store is the site's ``storage.root``. With
    ``api_replicas`` > 1 a search's results live in the replica that ran it (reading or
    refining it from another replica is a 404): more replicas suit read-heavy use.
    """
    import ray

    from actors.pipeline import connect_ray
    from actors.search_jobs import start_search_jobs
    from actors.supervisor import start_supervisor
    from serve.deployments import deploy_models
    from serve.live import search_jobs_name

    store = Path(str(site.storage.root))
    out = Path(out_dir) if out_dir is not None else store / "_run"
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        check_port_free(host, port)
    connect_ray(http=(host, port))
    models = site.models
    log(f"deploying models ({models.detector.type} detector, {models.embedder.type} embedder)")
    handles = deploy_models(site.models, app_prefix)
    handles.detector.stats.remote().result()
    base_dir = Path(site_path).resolve().parent if site_path is not None else None
    supervisor = start_supervisor(site, out, store, app_prefix, base_dir)
    # kept in the handle: a named actor lives only as long as its creator holds it
    # its jobs can ingest recorded footage through this pipeline first (ingest=True)
    jobs = start_search_jobs(search_jobs_name(app_prefix), app_prefix=app_prefix)
    cameras = ray.get(supervisor.start.remote())
    log(f"started {len(cameras)} camera actors: {', '.join(cameras)}")
    url = serve_api_over_store(
        site, app_prefix=app_prefix, host=host, port=port, replicas=api_replicas, run_dir=out
    )
    log(f"API listening on {url} (OpenAPI: {url}/docs)")
    handle = ServeHandle(url, app_prefix, supervisor, out)
    handle.search_jobs = jobs
    return handle


def stop_service(handle: ServeHandle) -> dict[str, Any]:
    """Stop the cameras, flush the coordinator and delete the service's Serve apps;
    returns the coordinator's final health."""
    import ray
    from ray import serve

    from serve.deployments import delete_models

    health = ray.get(handle.supervisor.shutdown.remote())
    serve.delete(f"{handle.app_prefix}-api")
    delete_models(handle.app_prefix)
    coordinator = ray.get_actor(f"{handle.app_prefix}-coordinator")
    ray.kill(handle.supervisor)
    ray.kill(coordinator, no_restart=True)
    if handle.search_jobs is not None:
        ray.kill(handle.search_jobs, no_restart=True)
    return health


def check_port_free(host: str, port: int) -> None:
    """``ValueError`` naming ``--port`` when ``host:port`` is taken (before anything starts,
    rather than a proxy failing later with an obscure error)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(
                f"--port {port}: {host}:{port} is not free ({exc.strerror}); pass another port"
            ) from None


def serve_api_over_store(
    site: SiteConfig,
    *,
    app_prefix: str = "sightline",
    host: str = "127.0.0.1",
    port: int,
    replicas: int = 1,
    run_dir: str | Path | None = None,
) -> str:
    """Deploy the API ingress over ``site``'s store on the connected Ray (Serve started
    with its proxy on ``host:port``); photo searches use ``app_prefix``'s model apps and
    live routes its pipeline, when they run; ``run_dir`` holds the run's detections,
    which thumbnails need (default ``<store>/_run``). Returns the URL. Used by
    :func:`start_service` and by the demo after its batch run."""
    from ray import serve

    from serve.api import build_api_deployment

    api = build_api_deployment(
        site,
        app_prefix=app_prefix,
        run_dir=str(run_dir) if run_dir is not None else None,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": API_NUM_CPUS},
        max_ongoing_requests=API_MAX_ONGOING_REQUESTS,
    )
    serve.run(api.bind(), name=f"{app_prefix}-api", route_prefix="/")
    return f"http://{host}:{port}"


def shutdown_ray() -> None:
    """Stop Serve and disconnect from (or stop the local) Ray."""
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def create_demo_keys(site: SiteConfig) -> dict[str, str]:
    """One new API key per role for the demo (principal ``demo-<role>``), in the site's
    key file; returns role -> key. Printed once: the file keeps only hashes."""
    from sightline.security import KeyStore, security_paths
    from sightline.security.keys import ROLES

    keys = KeyStore(security_paths(site)[0], create=True)
    return {role: keys.create(f"demo-{role}", role)[1] for role in ROLES}


def _progress(cameras: list[dict[str, Any]]) -> str:
    parts = []
    for cam in cameras:
        health = cam.get("health") or {}
        progress = health.get("progress")
        state = f"{100 * progress:3.0f}%" if progress is not None else health.get("state", "?")
        parts.append(f"{cam['id']} {state} {health.get('frames_detected', 0)}f")
    return "cameras: " + " | ".join(parts)


def _cmd_serve(args: argparse.Namespace) -> int:
    import ray

    site = load_site_config(args.config)
    handle = start_service(
        site,
        site_path=args.config,
        out_dir=args.out,
        host=args.host,
        port=args.port,
        app_prefix=args.prefix,
    )
    print(json.dumps({"url": handle.url, "docs": f"{handle.url}/docs"}), flush=True)
    try:
        while True:
            time.sleep(args.poll)
            _log(_progress(ray.get(handle.supervisor.cameras.remote())))
            if args.exit_when_done and ray.get(handle.supervisor.done.remote()):
                _log("every recording has been processed")
                break
    except KeyboardInterrupt:
        _log("stopping ...")
    health = stop_service(handle)
    print(json.dumps({"identities": health.get("identities"), "stopped": True}), flush=True)
    ray.shutdown()
    return 0


# --------------------------------------------------------------------------- tracks


def _cmd_tracks(args: argparse.Namespace) -> int:
    from sightline.security import AuditLog, security_paths
    from sightline.store.queries import fused_tracks, route

    site = load_site_config(args.config)
    store = str(site.storage.root)
    params: dict[str, Any] = {"via": "cli"}
    if args.route is not None:
        params["global_id"] = args.route
    else:
        if args.start is None or args.end is None:
            raise ValueError("--start and --end are required (or --route GLOBAL_ID)")
        params.update(start=args.start, end=args.end, cameras=args.cameras, area=args.area)
    audit_dir = args.audit if args.audit is not None else security_paths(site)[1]
    action = "tracks.route" if args.route is not None else "tracks.read"
    AuditLog(audit_dir).append(
        f"cli:{getpass.getuser()}",
        "data",
        action,
        case_id=args.case_id,
        reason=args.reason,
        parameters=params,
    )
    if args.route is not None:
        frame = route(store, args.route)
    else:
        area = _parse_area(args.area) if args.area else None
        frame = fused_tracks(store, args.start, args.end, cameras=args.cameras, area=area)
    if args.out is not None:
        frame.write_parquet(args.out)
        print(json.dumps({"rows": frame.height, "out": str(args.out)}))
    else:
        print(frame.write_json())
    return 0


def _parse_area(text: str) -> list[tuple[float, float]]:
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split(";")]
    except ValueError:
        points = []
    if len(points) < 3 or any(len(p) != 2 for p in points):
        raise ValueError(f"--area: expected 'x1,y1;x2,y2;x3,y3...' (>= 3 points), got {text!r}")
    return points  # type: ignore[return-value]


# --------------------------------------------------------------------------- cameras


def _client(args: argparse.Namespace) -> tuple[Any, str]:
    import httpx

    url = args.url or os.environ.get("SIGHTLINE_URL")
    key = args.key or os.environ.get("SIGHTLINE_KEY")
    if not url:
        raise ValueError("--url: name the API (or set SIGHTLINE_URL), e.g. http://127.0.0.1:8000")
    if not key:
        raise ValueError("--key: an operator API key is needed (or set SIGHTLINE_KEY)")
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=url, headers=headers, timeout=60.0), url


def _answer(response: Any) -> int:
    try:
        body = response.json()
    except ValueError:
        body = {"error": "not JSON", "detail": response.text[:500]}
    print(json.dumps(body, indent=2, default=str))
    if response.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else body
        print(f"sightline: error: HTTP {response.status_code}: {detail}", file=sys.stderr)
        return 1
    return 0


def _camera_settings(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected one camera's settings as a mapping")
    return data


def _cmd_cameras(args: argparse.Namespace) -> int:
    import httpx

    client, url = _client(args)
    try:
        with client:
            if args.action == "list":
                return _answer(client.get("/cameras"))
            if args.action == "remove":
                return _answer(client.delete(f"/cameras/{args.camera_id}"))
            settings = _camera_settings(args.file)
            if args.action == "add":
                return _answer(client.post("/cameras", json=settings))
            return _answer(client.put(f"/cameras/{settings.get('id')}", json=settings))
    except httpx.TransportError as exc:
        raise ValueError(f"--url {url}: cannot reach the API ({exc})") from None


# --------------------------------------------------------------------------- parsers


def add_serve_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``tracks`` and ``cameras`` on the ``sightline`` parser."""
    srv = sub.add_parser("serve", help="run the pipeline and the HTTP API of a site on Ray")
    srv.add_argument("--config", type=Path, required=True, help="site config YAML")
    srv.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (default 8000)")
    srv.add_argument("--prefix", default="sightline", help="name prefix of apps and actors")
    srv.add_argument("--out", type=Path, default=None, help="run folder (default <store>/_run)")
    srv.add_argument("--poll", type=float, default=5.0, help="seconds between progress lines")
    srv.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop once every recording is processed (default: serve until Ctrl-C)",
    )
    srv.set_defaults(func=_cmd_serve)

    trk = sub.add_parser("tracks", help="fused tracks or an identity's route, from the store")
    trk.add_argument("--config", type=Path, required=True, help="site config YAML")
    trk.add_argument("--start", help="window start (ISO 8601 or epoch seconds)")
    trk.add_argument("--end", help="window end")
    trk.add_argument("--cameras", nargs="+", default=None, help="only these cameras")
    trk.add_argument("--area", default=None, help="ground polygon 'x1,y1;x2,y2;x3,y3' (m)")
    trk.add_argument("--route", metavar="GLOBAL_ID", default=None, help="one identity's route")
    trk.add_argument("--out", type=Path, default=None, help="write Parquet here, not JSON")
    trk.add_argument("--case-id", default=None, help="case this read serves (audited)")
    trk.add_argument("--reason", default=None, help="why (audited)")
    trk.add_argument("--audit", type=Path, default=None, help="audit folder (default: site's)")
    trk.set_defaults(func=_cmd_tracks)

    cams = sub.add_parser("cameras", help="list, add, change or remove cameras of a running API")
    cams.add_argument("--url", default=None, help="API URL (default $SIGHTLINE_URL)")
    cams.add_argument("--key", default=None, help="operator API key (default $SIGHTLINE_KEY)")
    actions = cams.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="cameras with health")
    for name, text in (("add", "add a camera"), ("change", "change a camera (same id)")):
        act = actions.add_parser(name, help=text)
        act.add_argument("file", type=Path, help="YAML with the camera's settings")
    rm = actions.add_parser("remove", help="stop and remove a camera")
    rm.add_argument("camera_id")
    cams.set_defaults(func=_cmd_cameras)
