"""``sightline cluster ...``: the Serve config of a site, and checks of the cluster files.

- ``sightline cluster serve-config --config site.yaml [--site-path P] [--out FILE]``
  prints (or writes) the ``serve deploy``-able Serve config of the site;
- ``sightline cluster check DIR_OR_FILE --config site.yaml`` validates the cluster
  YAMLs (``cluster/``) against Ray's schemas and the site; prints JSON, exit 1 on any
  problem.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sightline.config import load_site_config

__all__ = ["add_cluster_commands", "serve_config_header"]


def serve_config_header(args: argparse.Namespace, site_path: str) -> str:
    """The comment on top of a generated Serve config: what made it and how to use it."""
    command = f"sightline cluster serve-config --config {args.config}"
    if args.site_path is not None:
        command += f" --site-path {args.site_path}"
    if args.prefix != "sightline":
        command += f" --prefix {args.prefix}"
    if args.host != "0.0.0.0":
        command += f" --host {args.host}"
    if args.port != 8000:
        command += f" --port {args.port}"
    if args.out is not None:
        command += f" --out {args.out}"
    return (
        "Serve config generated from a Sightline site config; do not edit by hand:\n"
        f"    {command}\n"
        f"Every node that builds or runs a replica must have the site config at {site_path}.\n"
        "Deploy or upgrade with: serve deploy <this file> (batch sizes in user_config\n"
        "change without restarting replicas)."
    )


def _cmd_serve_config(args: argparse.Namespace) -> int:
    from serve.cluster_config import dump_serve_config, serve_config

    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be 1..65535, got {args.port}")
    site = load_site_config(args.config)
    site_path = args.site_path or str(Path(args.config).resolve())
    config = serve_config(
        site, site_path, app_prefix=args.prefix, http_host=args.host, http_port=args.port
    )
    text = dump_serve_config(config, serve_config_header(args, site_path))
    if args.out is None:
        print(text, end="")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    apps = [app["name"] for app in config["applications"]]
    print(json.dumps({"written": str(args.out), "site_path": site_path, "applications": apps}))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from serve.cluster_config import check_cluster_path

    if not args.path.exists():
        raise FileNotFoundError(f"{args.path}: no such file or folder")
    site = load_site_config(args.config)
    files = check_cluster_path(args.path, site)
    count = sum(len(v["problems"]) for v in files.values())
    print(json.dumps({"site": str(args.config), "problems": count, "files": files}, indent=2))
    return 1 if count else 0


def add_cluster_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``sightline cluster serve-config|check``."""
    cluster = sub.add_parser("cluster", help="cluster files: Serve config, checks")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)

    gen = csub.add_parser("serve-config", help="the site's Serve config (serve deploy-able)")
    gen.add_argument("--config", type=Path, required=True, help="site config YAML")
    gen.add_argument(
        "--site-path",
        default=None,
        help="the site config's path on the cluster's nodes (default: --config, absolute)",
    )
    gen.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    gen.add_argument("--prefix", default="sightline", help="application name prefix")
    gen.add_argument("--host", default="0.0.0.0", help="HTTP proxy host")
    gen.add_argument("--port", type=int, default=8000, help="HTTP proxy port")
    gen.set_defaults(func=_cmd_serve_config)

    check = csub.add_parser("check", help="validate cluster YAMLs against the site config")
    check.add_argument("path", type=Path, help="a cluster YAML or a folder of them")
    check.add_argument("--config", type=Path, required=True, help="site config YAML")
    check.set_defaults(func=_cmd_check)
