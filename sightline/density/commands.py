"""``sightline density ...``: zone counts, summaries, alerts and heatmaps from a store.

Each command reads the Parquet store (``--store``, or the ``storage.root`` of
``--config``); tables print as JSON rows on stdout, heatmaps are written as PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import polars as pl

from sightline.config import SiteConfig, load_site_config

__all__ = ["add_density_commands"]


def _site(args: argparse.Namespace) -> SiteConfig | None:
    return load_site_config(args.config) if args.config is not None else None


def _store(args: argparse.Namespace, site: SiteConfig | None) -> str:
    if args.store is not None:
        return str(args.store)
    if site is None:
        raise FileNotFoundError("name the store with --store DIR or a site config with --config")
    return str(site.storage.root)


def _print_rows(frame: pl.DataFrame) -> None:
    rows = frame.with_columns(pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    print(json.dumps(rows.to_dicts(), indent=2, default=str))


def _cmd_counts(args: argparse.Namespace) -> int:
    from sightline.density.queries import camera_counts, zone_counts

    store = _store(args, _site(args))
    if args.cameras:
        frame = camera_counts(
            store, args.start, args.end, cameras=args.cameras, bucket_s=args.bucket
        )
    else:
        frame = zone_counts(store, args.start, args.end, zones=args.zones, bucket_s=args.bucket)
    _print_rows(frame)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from sightline.density.queries import zone_summary

    _print_rows(zone_summary(_store(args, _site(args)), args.start, args.end, zones=args.zones))
    return 0


def _cmd_alerts(args: argparse.Namespace) -> int:
    from sightline.density.queries import density_alerts

    store = _store(args, _site(args))
    _print_rows(density_alerts(store, args.start, args.end, zones=args.zones, open_only=args.open))
    return 0


def _cmd_heatmap(args: argparse.Namespace) -> int:
    from sightline.density.heatmap import (
        camera_overlay_png,
        first_frame,
        render_site_png,
        site_occupancy,
    )
    from sightline.density.queries import ground_points
    from sightline.store.queries import _window

    site = _site(args)
    if site is None:
        raise FileNotFoundError("a heatmap needs the site config (--config site.yaml)")
    store = _store(args, site)
    start, end = _window(args.start, args.end)
    seconds = max((end - start).total_seconds(), 1.0)
    heatmap = site_occupancy(ground_points(store, start, end), site, seconds)
    if args.camera is not None:
        camera = site.camera(args.camera)
        png = camera_overlay_png(heatmap, camera, first_frame(camera.source, camera.resolution))
    else:
        png = render_site_png(heatmap, site)
    args.out.write_bytes(png)
    summary: dict[str, Any] = {
        "png": str(args.out),
        "window_s": seconds,
        "max_density_per_m2": round(float(heatmap.mean_density().max(initial=0.0)), 4),
        "person_seconds": round(float(heatmap.occupancy.sum()), 1),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(heatmap.to_dict()))
        summary["json"] = str(args.json)
    print(json.dumps(summary, indent=2))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=None, help="store root folder or URL")
    parser.add_argument("--config", type=Path, default=None, help="site config (its store)")
    parser.add_argument("--start", required=True, help="window start: ISO time or epoch s")
    parser.add_argument("--end", required=True, help="window end: ISO time or epoch s")


def add_density_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``sightline density counts|summary|alerts|heatmap``."""
    density = sub.add_parser("density", help="crowd density from the store: counts, alerts, maps")
    dsub = density.add_subparsers(dest="density_command", required=True)
    counts = dsub.add_parser("counts", help="people per zone (or camera) per time bucket")
    _common(counts)
    counts.add_argument("--zones", nargs="+", default=None)
    counts.add_argument("--cameras", nargs="+", default=None, help="per-camera raw counts")
    counts.add_argument("--bucket", type=int, default=60, help="bucket seconds, 1..3600")
    counts.set_defaults(func=_cmd_counts)
    summary = dsub.add_parser("summary", help="mean and peak per zone over the window")
    _common(summary)
    summary.add_argument("--zones", nargs="+", default=None)
    summary.set_defaults(func=_cmd_summary)
    alerts = dsub.add_parser("alerts", help="crowd alerts overlapping the window")
    _common(alerts)
    alerts.add_argument("--zones", nargs="+", default=None)
    alerts.add_argument("--open", action="store_true", help="only alerts that have not ended")
    alerts.set_defaults(func=_cmd_alerts)
    heat = dsub.add_parser("heatmap", help="occupancy heatmap PNG of the site or one camera")
    _common(heat)
    heat.add_argument("--out", type=Path, required=True, help="PNG file to write")
    heat.add_argument("--camera", default=None, help="overlay on this camera's first frame")
    heat.add_argument("--json", type=Path, default=None, help="also write the grid as JSON")
    heat.set_defaults(func=_cmd_heatmap)
