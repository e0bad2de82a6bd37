"""The ``sightline`` command line.

Commands print JSON (or, for ``demo``, a readable summary) on stdout; progress goes to
stderr. Errors print one line naming the problem and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sightline.bench import bench_sim
from sightline.config import ConfigError, SiteConfig, load_site_config
from sightline.sim import PRESETS, SimulationError, simulate
from sightline.sim.summary import format_summary, summarise

__all__ = ["main"]


def _cmd_simulate(args: argparse.Namespace) -> int:
    result = simulate(
        args.preset, args.seed, args.out, workers=args.workers, show_progress=not args.quiet
    )
    print(json.dumps(summarise(result), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    out = args.out or tempfile.mkdtemp(prefix="sightline-demo-")
    print(
        f"Simulating the '{args.preset}' synthetic site (seed {args.seed}) into {out} ...",
        file=sys.stderr,
    )
    result = simulate(args.preset, args.seed, out, workers=args.workers)
    print(format_summary(summarise(result)))
    site = load_site_config(Path(out) / "site.yaml")
    print(
        f"\nsite.yaml loads: {len(site.cameras)} cameras, {len(site.zones)} zones, "
        f"calibration fit error <= {max(c.calibration_rmse_m for c in site.cameras):.4f} m"
    )
    return 0


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
    demo.set_defaults(func=_cmd_demo)

    config = sub.add_parser("config", help="site config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a site config and summarise it")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_cmd_config_check)
    schema = config_sub.add_parser("schema", help="print the site config's JSON schema")
    schema.set_defaults(func=_cmd_config_schema)

    bench = sub.add_parser("bench", help="benchmarks, printed as JSON")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    bsim = bench_sub.add_parser("sim", help="simulator speed vs. encode-only baseline")
    bsim.add_argument("--preset", choices=sorted(PRESETS), default="small")
    bsim.add_argument("--seed", type=int, default=11)
    bsim.add_argument("--workers", type=int, default=None)
    bsim.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sightline`` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    errors: tuple[type[Exception], ...] = (ConfigError, SimulationError)
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
