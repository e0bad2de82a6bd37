"""The ``sightline`` command line.

Commands print JSON (or, for ``demo``, a readable summary) on stdout; progress goes to
stderr. Errors print one line naming the problem and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from serve.cluster_commands import add_cluster_commands
from serve.commands import add_serve_commands
from sightline.bench import bench_sim
from sightline.config import ConfigError, SiteConfig, load_site_config
from sightline.density.commands import add_density_commands
from sightline.evaluation import EvaluationError
from sightline.search.commands import add_search_commands
from sightline.security.commands import add_security_commands
from sightline.sim import PRESETS, SimulationError, simulate
from sightline.sim.summary import format_summary, summarise
from sightline.store.tables import StoreError
from sightline.training.sites import ensure_site

DEFAULT_DATA_DIR = Path.home() / ".cache" / "sightline" / "sites"

__all__ = ["main"]


def _cmd_simulate(args: argparse.Namespace) -> int:
    result = simulate(
        args.preset, args.seed, args.out, workers=args.workers, show_progress=not args.quiet
    )
    print(json.dumps(summarise(result), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    out = Path(args.out or tempfile.mkdtemp(prefix="sightline-demo-"))
    timings: dict[str, float] = {}
    print(
        f"Simulating the '{args.preset}' synthetic site (seed {args.seed}) into {out} ...",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    result = simulate(args.preset, args.seed, out, workers=args.workers)
    timings["simulate"] = time.perf_counter() - t0
    print(format_summary(summarise(result)))
    site = load_site_config(out / "site.yaml")
    print(
        f"\nsite.yaml loads: {len(site.cameras)} cameras, {len(site.zones)} zones, "
        f"calibration fit error <= {max(c.calibration_rmse_m for c in site.cameras):.4f} m"
    )
    from sightline.pipeline_report import format_pipeline_report

    print(
        "\nRunning the pipeline on a local Ray "
        "(camera actors -> Serve detector -> tracker -> Serve embedder) ..."
    )
    if not args.exit:
        from actors.pipeline import connect_ray
        from serve.commands import check_port_free

        check_port_free("127.0.0.1", args.port)  # before the long run, not after it
        connect_ray(http=("127.0.0.1", args.port))  # Serve's proxy, for the API at the end
    t0 = time.perf_counter()
    run = _run_pipeline(site, out / "run", out / "gt" / "boxes.parquet")
    timings["pipeline"] = time.perf_counter() - t0
    print(format_pipeline_report(*run))
    _demo_analyst(args, out, site, timings)
    if not args.exit:
        _demo_serve(site, args.port, out / "run")
    return 0


def _demo_serve(site: SiteConfig, port: int, run_dir: Path) -> None:
    """Leave the API running over the demo's store, with a key per role, until Ctrl-C."""
    import time

    from serve.commands import create_demo_keys, serve_api_over_store, shutdown_ray

    url = serve_api_over_store(site, port=port, run_dir=run_dir)
    keys = create_demo_keys(site)
    print(f"\nThe API is running at {url} (interactive docs: {url}/docs). Demo keys:")
    for role, key in keys.items():
        print(f"  {role:<9} {key}")
    start, end = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
    print(
        "Try:\n"
        f"  curl -s -H 'X-API-Key: {keys['data']}' "
        f"'{url}/density/summary?start={start}&end={end}'\n"
        f"  curl -s -H 'X-API-Key: {keys['operator']}' {url}/cameras\n"
        "The cameras have finished their recordings, so live routes (camera changes, watches,"
        "\nevents) answer 503; `sightline serve --config <site.yaml>` runs them live.\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping ...", file=sys.stderr)
    shutdown_ray()


def _demo_analyst(
    args: argparse.Namespace, out: Path, site: SiteConfig, timings: dict[str, float]
) -> None:
    """The demo's analyst part: searches for one person, route, alert, report, timings."""
    import time

    from sightline import demo
    from sightline.search.thumbnails import FrameDetections

    person = demo.pick_demo_person(out)
    print("\nAn analyst searches the store for one person of the site (audited) ...")
    searches = demo.run_demo_searches(
        out, site, person, case_id=f"demo-{args.preset}-seed{args.seed}"
    )
    timings.update(searches.timings)
    alerts = demo.crowd_alerts_vs_events(site.storage.root, out)
    gt = pl.read_parquet(out / "gt" / "boxes.parquet")
    print(demo.format_search_report(searches, gt, alerts))
    if not args.no_report:
        t0 = time.perf_counter()
        paths = demo.write_report(
            out,
            out,
            site,
            searches,
            detections=FrameDetections(out / "run"),
            alerts=alerts,
        )
        timings["report"] = time.perf_counter() - t0
        print(f"\nreport: {paths['report.md']} and {paths['report.html']}")
    print("\n" + demo.format_timings(timings))


def _run_pipeline(
    site: SiteConfig, out: Path, gt_boxes: Path | None
) -> tuple[dict[str, Any], pl.DataFrame | None, pl.DataFrame, dict[str, Any] | None]:
    """Run the site; with ground truth, also score its detections and tracklets."""
    from actors.pipeline import read_detections, run_pipeline
    from sightline.evaluation.matching import precision_recall_by_camera
    from sightline.evaluation.tracklets import score_tracklets
    from sightline.tracking.sink import latest_versions, read_tracklets

    summary = run_pipeline(site, out, store_root=site.storage.root)
    if summary.get("density") is not None and site.zones:
        zone_truth = gt_boxes.parent / "zone_counts.parquet" if gt_boxes is not None else None
        summary["density"]["zones"] = _density_summary(site, zone_truth)
    tracklets = latest_versions(read_tracklets(out))
    scores = tracklet_scores = None
    if gt_boxes is not None and gt_boxes.is_file():
        truth = pl.read_parquet(gt_boxes)
        scores = precision_recall_by_camera(read_detections(out), truth)
        people = gt_boxes.parent / "people.parquet"
        if people.is_file() and tracklets.height:
            tracklet_scores = score_tracklets(
                tracklets, truth, pl.read_parquet(people), site.cameras
            )
    return summary, scores, tracklets, tracklet_scores


def _density_summary(site: SiteConfig, zone_truth: Path | None) -> list[dict[str, Any]]:
    """Per zone: mean and peak people, peak density, worst coverage over the whole run;
    with the simulator's zone counts, the mean absolute error per second too."""
    from datetime import UTC, datetime

    from sightline.density.queries import zone_counts, zone_summary

    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    rows = zone_summary(str(site.storage.root), start, end).to_dicts()
    if zone_truth is not None and zone_truth.is_file():
        truth = pl.read_parquet(zone_truth)
        ours = zone_counts(str(site.storage.root), start, end)
        joined = truth.join(ours, on=["zone_id", "ts"], how="left").with_columns(
            pl.col("count").fill_null(0.0)
        )
        error = joined.group_by("zone_id").agg(
            mae=(pl.col("count") - pl.col("mean_count")).abs().mean()
        )
        maes = dict(zip(error["zone_id"], error["mae"], strict=True))
        for row in rows:
            row["mae_vs_truth"] = maes.get(row["zone_id"])
    return rows


def _cmd_run(args: argparse.Namespace) -> int:
    site = load_site_config(args.config)
    summary, scores, _, tracklet_scores = _run_pipeline(site, args.out, args.gt)
    if scores is not None:
        summary["accuracy_vs_ground_truth"] = scores.to_dicts()
    if tracklet_scores is not None:
        summary["tracklets_vs_ground_truth"] = tracklet_scores
    print(json.dumps(summary, indent=2, default=str))
    failed = [c for c in summary["cameras"] if c.get("state") == "failed"]
    for cam in failed:
        print(f"sightline: camera {cam['camera_id']} failed: {cam['last_error']}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_track(args: argparse.Namespace) -> int:
    from sightline.track_video import TrackVideoError, track_video

    try:
        summary = track_video(args.video, args.out, calibration=args.calibration, fps=args.fps)
    except TrackVideoError as exc:
        print(f"sightline: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    camera = summary["camera"]
    if camera["state"] == "failed":
        print(
            f"sightline: {args.video} could not be read to its end: {camera['last_error']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the ingestion pipeline of a site config on Ray")
    run.add_argument("--config", type=Path, required=True, help="site config (site.yaml)")
    run.add_argument("--out", type=Path, required=True, help="output folder for detections")
    run.add_argument(
        "--gt", type=Path, default=None, help="ground-truth boxes.parquet to score against"
    )
    run.set_defaults(func=_cmd_run)

    track = sub.add_parser(
        "track", help="detect and track people in any video file; tracks and a preview out"
    )
    track.add_argument("video", type=Path, help="video file (anything FFmpeg decodes)")
    track.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="YAML list of {image: [x, y], ground: [x, y]} points (video pixels <-> metres); "
        "without it world coordinates and heights are null",
    )
    track.add_argument(
        "--fps", type=float, default=None, help="analysis frame rate (default: the video's)"
    )
    track.add_argument("--out", type=Path, required=True, help="output folder")
    track.set_defaults(func=_cmd_track)


def _cmd_config_check(args: argparse.Namespace) -> int:
    site = load_site_config(args.file)
    print(
        json.dumps(
            {
                "file": str(args.file),
                "name": site.name,
                "cameras": [
                    {
                        "id": c.id,
                        "source": c.source,
                        "fps": c.fps,
                        "resolution": list(c.resolution),
                        "calibration_rmse_m": round(c.calibration_rmse_m, 4),
                        "enabled": c.enabled,
                    }
                    for c in site.cameras
                ],
                "zones": [
                    {"id": z.id, "area_m2": round(z.area_m2, 2), "alert_density": z.alert_density}
                    for z in site.zones
                ],
                "topology_links": len(site.topology.links) if site.topology else 0,
                "detector": site.models.detector.type,
                "embedder": site.models.embedder.type,
                "storage": site.storage.root,
            },
            indent=2,
        )
    )
    return 0


def _cmd_config_schema(args: argparse.Namespace) -> int:
    del args
    print(json.dumps(SiteConfig.model_json_schema(), indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    print(json.dumps(bench_sim(args.preset, args.seed, args.workers), indent=2))
    return 0


def _cmd_bench_serve(args: argparse.Namespace) -> int:
    # The Ray layers are imported only by the commands that need them: the core stays Ray-free.
    from serve.bench import bench_serve
    from sightline.ingest.bench import bench_decode

    result = bench_serve(cameras=args.cameras, duration_s=args.seconds)
    video = ensure_site(args.data, "small", 11) / "videos" / "cam01.mp4"
    result["decode"] = bench_decode(video, threads=args.threads)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_decode(args: argparse.Namespace) -> int:
    from sightline.ingest.bench import bench_decode

    path = args.file
    if path is None:
        path = ensure_site(args.data, "small", 11) / "videos" / "cam01.mp4"
    print(json.dumps(bench_decode(path, threads=args.threads), indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from sightline.training.commands import (
        run_calibrate_fusion,
        run_train_detector,
        run_train_reid,
    )

    if args.model == "calibration":
        summary = run_calibrate_fusion(args.data, out=args.out)
    elif args.model == "photo-adapter":
        from sightline.training.photo_adapter import train_photo_adapter

        summary = train_photo_adapter(args.data, out=args.out)
    elif args.model == "photo-child":
        from sightline.training.photo_child import train_photo_child

        epochs = 15 if args.iterations is None else args.iterations
        summary = train_photo_child(out=args.out, epochs=epochs)
    elif args.model == "attributes":
        from sightline.training.attributes import train_attributes

        epochs = 10 if args.iterations is None else args.iterations
        summary = train_attributes(args.data, out=args.out, epochs=epochs)
    else:
        run = run_train_detector if args.model == "detector" else run_train_reid
        summary = run(
            args.data, out=args.out, report_dir=args.report_dir, iterations=args.iterations
        )
    print(json.dumps(summary, indent=2))
    return 0


def _require_eval_extra() -> None:
    missing = [name for name in ("trackeval", "trackers") if importlib.util.find_spec(name) is None]
    if missing:
        raise EvaluationError(
            f"{' and '.join(missing)} not installed; tracking evaluation and benchmarks need "
            "them: pip install 'sightline[eval]'"
        )


def _cmd_eval(args: argparse.Namespace) -> int:
    from sightline.evaluation.commands import run_eval_detector, run_eval_reid

    if args.absent is not None and args.model != "search":
        raise EvaluationError("--absent only applies to `sightline eval search`")
    if args.absent is not None and args.absent < 1:
        raise EvaluationError(f"--absent must be at least 1, got {args.absent}")
    if args.model == "tracking":
        return _cmd_eval_tracking(args)
    if args.det is not None or args.gt is not None or args.fps is not None:
        raise EvaluationError("--det, --gt and --fps only apply to `sightline eval tracking`")
    if args.model == "fusion":
        _require_eval_extra()
        from sightline.evaluation.fusion import run_eval_fusion

        result = run_eval_fusion(args.preset, args.seed, args.data, detector_weights=args.weights)
        print(json.dumps(result, indent=2))
        return 0
    if args.model == "search":
        from sightline.evaluation.search import ABSENT_PEOPLE, run_eval_search

        result = run_eval_search(
            args.preset,
            args.seed,
            args.data,
            detector_weights=args.weights,
            absent=ABSENT_PEOPLE if args.absent is None else args.absent,
        )
        print(json.dumps(result, indent=2))
        return 0
    if args.model == "density":
        from sightline.evaluation.density import run_eval_density

        result = run_eval_density(args.preset, args.seed, args.data, detector_weights=args.weights)
        print(json.dumps(result, indent=2))
        return 0
    run = run_eval_detector if args.model == "detector" else run_eval_reid
    print(json.dumps(run(args.preset, args.seed, args.data, weights=args.weights), indent=2))
    return 0


def _cmd_eval_tracking(args: argparse.Namespace) -> int:
    _require_eval_extra()
    from sightline.config import TrackingConfig
    from sightline.evaluation.tracking import run_eval_tracking

    result = run_eval_tracking(
        args.preset,
        args.seed,
        args.data,
        det_file=args.det,
        gt_file=args.gt,
        fps=args.fps,
        detector_weights=args.weights,
        tracking=TrackingConfig(appearance=not args.no_appearance),
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_fusion(args: argparse.Namespace) -> int:
    from sightline.fusion.bench import bench_fusion

    print(json.dumps(bench_fusion(args.history, window=args.window), indent=2))
    return 0


def _cmd_bench_search(args: argparse.Namespace) -> int:
    from sightline.search.bench import bench_search

    result = bench_search(sizes=tuple(args.sizes), queries=args.queries)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_api(args: argparse.Namespace) -> int:
    from serve.bench_api import bench_api

    result = bench_api(
        preset=args.preset,
        seed=args.seed,
        rate_per_s=args.rate,
        duration_s=args.seconds,
        api_replicas=args.api_replicas,
        data_dir=args.data,
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from serve.bench_scale import bench_scale

    result = bench_scale(
        args.preset,
        args.seed,
        tuple(args.replicas),
        args.data,
        seconds=args.seconds,
        device=args.device,
        utilisation=args.utilisation,
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_autoscale(args: argparse.Namespace) -> int:
    from serve.bench_autoscale import bench_autoscale

    result = bench_autoscale(
        load_seconds=args.seconds,
        callers=args.callers,
        max_replicas=args.max_replicas,
        batch_ms=args.batch_ms,
        idle_timeout_s=args.idle_timeout,
        scale_in_timeout_s=args.scale_in_timeout,
    )
    print(json.dumps(result, indent=2))
    ok = all(result["outcomes"].values()) and not result["teardown"]["still_running"]
    return 0 if ok else 1


def _cmd_bench_density(args: argparse.Namespace) -> int:
    from sightline.density.bench import bench_density

    result = bench_density(zones=args.zones, hours=args.hours, bucket_s=args.bucket)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_bench_tracking(args: argparse.Namespace) -> int:
    _require_eval_extra()
    from sightline.tracking.bench import bench_tracking

    print(json.dumps(bench_tracking(objects=args.objects, frames=args.frames), indent=2))
    return 0


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a built-in model on synthetic sites")
    train.add_argument(
        "model",
        choices=["detector", "reid", "calibration", "photo-adapter", "photo-child", "attributes"],
        help="calibration: fit fusion's appearance probability on the validation site; "
        "photo-adapter: fit the reference-photo -> CCTV map and its calibration; "
        "photo-child: train the child-or-adult reader of reference photos "
        "(--iterations: epochs, default 15); "
        "attributes: train the hat-and-bag reader of CCTV crops (--iterations: epochs, "
        "default 10)",
    )
    train.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="rendered-site cache")
    train.add_argument("--out", type=Path, default=None, help="weights file (default: built-in)")
    train.add_argument("--report-dir", type=Path, default=None)
    train.add_argument("--iterations", type=int, default=None)
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "eval", help="score a built-in model or the tracker on a held-out synthetic site"
    )
    ev.add_argument(
        "model", choices=["detector", "reid", "tracking", "fusion", "density", "search"]
    )
    ev.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ev.add_argument("--seed", type=int, default=21)
    ev.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="rendered-site cache")
    ev.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="default: the built-in weights (tracking: the detector's)",
    )
    ev.add_argument("--det", type=Path, default=None, help="tracking: MOTChallenge det.txt")
    ev.add_argument("--gt", type=Path, default=None, help="tracking: MOTChallenge gt.txt")
    ev.add_argument(
        "--no-appearance",
        action="store_true",
        help="tracking: IoU-only association (no re-ID embeddings of detections)",
    )
    ev.add_argument(
        "--fps",
        type=float,
        default=None,
        help="tracking with --det: frame rate (default: seqinfo.ini, else 30)",
    )
    ev.add_argument(
        "--absent",
        type=int,
        default=None,
        help="search: people never on the site to query (default 200)",
    )
    ev.set_defaults(func=_cmd_eval)


def _add_bench_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bsim = bench_sub.add_parser("sim", help="simulator speed vs. encode-only baseline")
    bsim.add_argument("--preset", choices=sorted(PRESETS), default="small")
    bsim.add_argument("--seed", type=int, default=11)
    bsim.add_argument("--workers", type=int, default=None)
    bsim.set_defaults(func=_cmd_bench)
    bserve = bench_sub.add_parser(
        "serve", help="detector throughput through Ray Serve by batch size"
    )
    bserve.add_argument("--cameras", type=int, default=4, help="concurrent camera actors")
    bserve.add_argument("--seconds", type=float, default=8.0, help="load per batch size")
    bserve.add_argument("--threads", type=int, default=2, help="decode threads (both sides)")
    bserve.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    bserve.set_defaults(func=_cmd_bench_serve)
    bdec = bench_sub.add_parser("decode", help="PyAV decode speed vs ffmpeg -f null")
    bdec.add_argument("--file", type=Path, default=None, help="video (default: a small site's)")
    bdec.add_argument("--threads", type=int, default=2)
    bdec.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    bdec.set_defaults(func=_cmd_bench_decode)
    btrack = bench_sub.add_parser("tracking", help="tracker updates/s: ours vs. peer ByteTrack")
    btrack.add_argument("--objects", type=int, nargs="+", default=[20, 100])
    btrack.add_argument("--frames", type=int, default=300)
    btrack.set_defaults(func=_cmd_bench_tracking)
    bfuse = bench_sub.add_parser(
        "fusion", help="tracklets/s fused as the history grows (10k, 100k, ... tracklets)"
    )
    bfuse.add_argument("--history", type=int, nargs="+", default=[10_000, 100_000])
    bfuse.add_argument("--window", type=int, default=2000, help="tracklets timed per checkpoint")
    bfuse.set_defaults(func=_cmd_bench_fusion)
    bdens = bench_sub.add_parser(
        "density", help="zone-count query time over a day of per-second counts"
    )
    bdens.add_argument("--zones", type=int, default=100)
    bdens.add_argument("--hours", type=float, default=24.0)
    bdens.add_argument("--bucket", type=int, default=60, help="query bucket, seconds")
    bdens.set_defaults(func=_cmd_bench_density)
    bsearch = bench_sub.add_parser(
        "search", help="photo-query latency over 10^5 and 10^6 stored embeddings"
    )
    bsearch.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    bsearch.add_argument("--queries", type=int, default=20)
    bsearch.set_defaults(func=_cmd_bench_search)
    _add_cluster_bench_commands(bench_sub)


def _add_cluster_bench_commands(bench_sub: argparse._SubParsersAction) -> None:
    """``bench api`` and ``bench scale``: the service under load, and replica scaling."""
    bapi = bench_sub.add_parser(
        "api", help="HTTP API under load (density, tracks) while ingest runs, and idle"
    )
    bapi.add_argument("--preset", choices=sorted(PRESETS), default="small")
    bapi.add_argument("--seed", type=int, default=11)
    bapi.add_argument("--rate", type=float, default=200.0, help="requests/s offered")
    bapi.add_argument("--seconds", type=float, default=30.0, help="load duration")
    bapi.add_argument("--api-replicas", type=int, default=1)
    bapi.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="site cache")
    bapi.set_defaults(func=_cmd_bench_api)
    bscale = bench_sub.add_parser(
        "scale", help="pipeline frames/s by detector replicas (fake GPUs), cameras per device"
    )
    bscale.add_argument("--preset", choices=sorted(PRESETS), default="small")
    bscale.add_argument("--seed", type=int, default=11)
    bscale.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    bscale.add_argument(
        "--seconds", type=float, default=None, help="only the first seconds of each camera"
    )
    bscale.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where model costs are timed"
    )
    bscale.add_argument("--utilisation", type=float, default=0.7)
    bscale.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="site cache")
    bscale.set_defaults(func=_cmd_bench_scale)
    bauto = bench_sub.add_parser(
        "autoscale",
        help="detector scales out and in on a private fake-multinode cluster",
    )
    bauto.add_argument("--seconds", type=float, default=60.0, help="load duration")
    bauto.add_argument("--callers", type=int, default=8, help="concurrent callers")
    bauto.add_argument(
        "--max-replicas", type=int, default=3, help="detector max_replicas (= most GPU nodes)"
    )
    bauto.add_argument("--batch-ms", type=float, default=50.0, help="fake model time per batch")
    bauto.add_argument(
        "--idle-timeout", type=float, default=15.0, help="seconds before an idle node leaves"
    )
    bauto.add_argument("--scale-in-timeout", type=float, default=180.0, help="wait for scale-in")
    bauto.set_defaults(func=_cmd_bench_autoscale)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sightline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="render a synthetic site with ground truth")
    sim.add_argument("--preset", choices=sorted(PRESETS), default="small")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--workers", type=int, default=None, help="render processes (default: cores)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser("demo", help="run the main job on the built-in synthetic site")
    demo.add_argument("--preset", choices=sorted(PRESETS), default="small")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--out", type=Path, default=None, help="output folder (default: a temp dir)")
    demo.add_argument("--workers", type=int, default=None)
    demo.add_argument(
        "--no-report", action="store_true", help="skip report.md/report.html in the output folder"
    )
    demo.add_argument(
        "--exit", action="store_true", help="exit at the end instead of leaving the API running"
    )
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.set_defaults(func=_cmd_demo)

    config = sub.add_parser("config", help="site config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a site config and summarise it")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_cmd_config_check)
    schema = config_sub.add_parser("schema", help="print the site config's JSON schema")
    schema.set_defaults(func=_cmd_config_schema)

    _add_bench_commands(sub)
    _add_model_commands(sub)
    _add_pipeline_commands(sub)
    add_density_commands(sub)
    add_security_commands(sub)
    add_search_commands(sub)
    add_serve_commands(sub)
    add_cluster_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sightline`` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    errors: tuple[type[Exception], ...] = (
        ConfigError,
        SimulationError,
        EvaluationError,
        FileNotFoundError,
        StoreError,
        ValueError,  # our bad-argument errors name the argument and the value
    )
    try:
        return func(args)
    except errors as exc:
        print(f"sightline: error: {exc}", file=sys.stderr)
        return 2


def run() -> None:  # pragma: no cover - console-script shim
    """Console-script entry: run :func:`main` and exit with its status."""
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
