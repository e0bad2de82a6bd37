"""``sightline simulate``: render a synthetic site with exact ground truth.

Output folder layout::

    site.yaml               site config the pipeline runs on as is (true calibration)
    videos/<camera>.mp4     H.264, one per camera
    gt/boxes.parquet        camera_id, frame_index, ts, person_id, x1..y2 (amodal
                            box), visibility, foot_x/foot_y (pixel where the person
                            stands), world_x, world_y
    gt/frames.parquet       camera_id, frame_index, ts (one row per video frame)
    gt/people.parquet       person_id, colours, height_m, is_child, bag, hat, ...
    gt/tracks.parquet       person_id, ts, world_x, world_y (every person, every tick)
    gt/zone_counts.parquet  zone_id, ts (1 s buckets), count, mean_count, density_per_m2
    gt/events.parquet       scheduled crowd events with their zone and peak count
    gt/cameras.json         true camera geometry and lighting
    reference/p0001.png     one reference photo per person

Everything is a function of (preset, seed): the same pair gives identical tables and
identical decoded frames.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image
from tqdm import tqdm

from sightline.config import dump_site_config
from sightline.geometry import point_in_polygon, polygon_area
from sightline.sim.footage import BOX_FLOAT_COLUMNS, CameraJob, render_camera
from sightline.sim.layout import SiteLayout, build_layout
from sightline.sim.people import Person, make_people
from sightline.sim.presets import Preset, get_preset
from sightline.sim.reference import render_reference
from sightline.sim.site_config import build_site_config

__all__ = ["SITE_START", "SimulationError", "simulate"]

SITE_START = datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)
_TS = pl.Datetime("us", "UTC")


class SimulationError(RuntimeError):
    """The simulation cannot run as asked (bad preset, unwritable folder, ...)."""


def _prepare_out(out: Path) -> None:
    try:
        for sub in ("videos", "gt", "reference"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SimulationError(
            f"cannot write to output folder {out}: {exc.strerror or exc}"
        ) from None


def _us(seconds: np.ndarray) -> np.ndarray:
    return int(SITE_START.timestamp() * 1_000_000) + np.round(np.asarray(seconds) * 1e6).astype(
        np.int64
    )


def _seconds_to_ts(column: str) -> pl.Expr:
    """A column of seconds since the site start, as UTC timestamps (us)."""
    return (
        (pl.lit(_us(0.0)) + (pl.col(column) * 1e6).round().cast(pl.Int64)).cast(_TS).alias(column)
    )


def _render_all(jobs: list[CameraJob], workers: int, show_progress: bool) -> list[dict[str, Any]]:
    total = sum(j.n_frames for j in jobs)
    bar = tqdm(
        total=total, unit="frame", desc="rendering", disable=not show_progress, mininterval=1.0
    )
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(render_camera(job))
            bar.update(job.n_frames)
        bar.close()
        return results
    # fork, not spawn: spawn would make every calling script need a __main__ guard.
    # Workers use only numpy and PyAV, none of the parent's thread pools.
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = [pool.submit(render_camera, job, queue) for job in jobs]
        done = 0
        while done < total:
            try:
                step = queue.get(timeout=0.5)
            except Exception:  # queue.Empty from the manager proxy
                if any(f.done() and f.exception() for f in futures):
                    break
                continue
            done += step
            bar.update(step)
        results = [f.result() for f in futures]
    bar.close()
    return results


def _boxes_table(results: list[dict[str, Any]], fps: float) -> pl.DataFrame:
    frames = []
    for res in results:
        b = res["boxes"]
        frames.append(
            pl.DataFrame(
                {
                    "camera_id": [res["camera_id"]] * len(b["frame_index"]),
                    "frame_index": b["frame_index"].astype(np.int32),
                    "ts": _us(b["frame_index"] / fps),
                    "person_id": b["person_id"].astype(np.int32),
                    **{k: b[k].astype(np.float32) for k in BOX_FLOAT_COLUMNS},
                }
            )
        )
    return pl.concat(frames).with_columns(pl.col("ts").cast(_TS))


def _frames_table(results: list[dict[str, Any]], fps: float) -> pl.DataFrame:
    return pl.concat(
        [
            pl.DataFrame(
                {
                    "camera_id": [r["camera_id"]] * r["n_frames"],
                    "frame_index": np.arange(r["n_frames"], dtype=np.int32),
                    "ts": _us(np.arange(r["n_frames"]) / fps),
                }
            )
            for r in results
        ]
    ).with_columns(pl.col("ts").cast(_TS))


def _people_table(people: list[Person]) -> pl.DataFrame:
    rows = []
    for p in people:
        a = p.appearance
        rows.append(
            {
                "person_id": p.person_id,
                "role": p.role,
                "upper_colour": a.upper,
                "lower_colour": a.lower,
                "upper_rgb": [int(v) for v in a.upper_rgb],
                "lower_rgb": [int(v) for v in a.lower_rgb],
                "height_m": round(a.height_m, 3),
                "build": round(a.build, 3),
                "is_child": a.is_child,
                "bag_colour": a.bag,
                "hat_colour": a.hat,
                "guardian_id": p.guardian.person_id if p.guardian else None,
                "t_enter": float(p.t_enter),
                "t_exit": float(p.t_exit),
                "reference_photo": f"reference/p{p.person_id:04d}.png",
            }
        )
    df = pl.DataFrame(
        rows,
        schema_overrides={
            "bag_colour": pl.String,
            "hat_colour": pl.String,
            "guardian_id": pl.Int32,
        },
    )
    return df.with_columns(_seconds_to_ts("t_enter"), _seconds_to_ts("t_exit"))


def _tracks_table(people: list[Person], t: np.ndarray) -> pl.DataFrame:
    parts = []
    for p in people:
        st = p.state(t)
        keep = st.present
        parts.append(
            pl.DataFrame(
                {
                    "person_id": np.full(int(keep.sum()), p.person_id, dtype=np.int32),
                    "ts": _us(t[keep]),
                    "world_x": st.xy[keep, 0].astype(np.float32),
                    "world_y": st.xy[keep, 1].astype(np.float32),
                }
            )
        )
    return pl.concat(parts).with_columns(pl.col("ts").cast(_TS)).sort("ts", "person_id")


def _zone_counts(
    layout: SiteLayout, tracks: pl.DataFrame, fps: float, duration: float
) -> pl.DataFrame:
    """True people per zone: instantaneous at each whole second, and mean over the second."""
    xy = tracks.select("world_x", "world_y").to_numpy()
    tick = (
        ((tracks["ts"].dt.epoch("us").to_numpy() - _us(0.0)) * fps / 1e6).round().astype(np.int64)
    )
    n_ticks = round(duration * fps)
    per_s = round(fps)
    out = []
    for zone_id, poly in layout.zones.items():
        inside = point_in_polygon(xy, poly)
        counts = np.bincount(tick[inside], minlength=n_ticks)[:n_ticks]
        seconds = np.arange(int(duration))
        instant = counts[seconds * per_s]
        mean = counts[: len(seconds) * per_s].reshape(len(seconds), per_s).mean(axis=1)
        area = polygon_area(poly)
        out.append(
            pl.DataFrame(
                {
                    "zone_id": [zone_id] * len(seconds),
                    "ts": _us(seconds.astype(float)),
                    "count": instant.astype(np.int32),
                    "mean_count": mean.astype(np.float32),
                    "density_per_m2": (instant / area).astype(np.float32),
                }
            )
        )
    return pl.concat(out).with_columns(pl.col("ts").cast(_TS))


def _events_table(preset: Preset, zone_counts: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for k, e in enumerate(preset.crowd_events):
        window = zone_counts.filter(
            (pl.col("zone_id") == e.zone)
            & pl.col("ts").is_between(
                pl.lit(SITE_START).cast(_TS) + pl.duration(seconds=e.start_s),
                pl.lit(SITE_START).cast(_TS) + pl.duration(seconds=e.end_s),
            )
        )
        rows.append(
            {
                "event_id": k + 1,
                "zone_id": e.zone,
                "t_start": float(e.start_s),
                "t_end": float(e.end_s),
                "n_people": e.n_people,
                "peak_count": int(window["count"].max() or 0),
            }
        )
    schema = {
        "event_id": pl.Int32,
        "zone_id": pl.String,
        "t_start": pl.Float64,
        "t_end": pl.Float64,
        "n_people": pl.Int32,
        "peak_count": pl.Int32,
    }
    df = pl.DataFrame(rows, schema=schema)
    return df.with_columns(_seconds_to_ts("t_start"), _seconds_to_ts("t_end"))


def _write_references(people: list[Person], out: Path, seed: int) -> None:
    for p in people:
        rng = np.random.default_rng([seed, 4, p.person_id])
        image = render_reference(p.appearance, rng)
        Image.fromarray(image).save(out / "reference" / f"p{p.person_id:04d}.png", optimize=False)


def _cameras_json(layout: SiteLayout) -> list[dict[str, Any]]:
    return [
        {
            "camera_id": p.camera_id,
            "group": p.group,
            "target_node": p.target_node,
            "camera": asdict(p.camera),
            "lighting": asdict(p.lighting),
        }
        for p in layout.cameras
    ]


def simulate(
    preset_name: str,
    seed: int,
    out_dir: str | Path,
    workers: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Render the site of ``preset_name`` and ``seed`` into ``out_dir``; return a summary.

    ``workers`` processes render cameras in parallel (default: one per core, at most one
    per camera). Raises :class:`SimulationError` for a bad preset or unwritable folder.
    """
    try:
        preset = get_preset(preset_name)
    except ValueError as exc:
        raise SimulationError(str(exc)) from None
    if seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed}")
    out = Path(out_dir)
    _prepare_out(out)
    started = time.perf_counter()
    layout = build_layout(preset, seed)
    people = make_people(preset, layout, seed)
    n_frames = round(preset.duration_s * preset.fps)
    jobs = [
        CameraJob(
            seed,
            k,
            placement,
            layout,
            people,
            n_frames,
            preset.fps,
            out / "videos" / f"{placement.camera_id}.mp4",
        )
        for k, placement in enumerate(layout.cameras)
    ]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    results = _render_all(jobs, workers, show_progress)
    boxes = _boxes_table(results, preset.fps)
    tracks = _tracks_table(people, np.arange(n_frames) / preset.fps)
    zone_counts = _zone_counts(layout, tracks, preset.fps, preset.duration_s)
    boxes.write_parquet(out / "gt" / "boxes.parquet")
    _frames_table(results, preset.fps).write_parquet(out / "gt" / "frames.parquet")
    _people_table(people).write_parquet(out / "gt" / "people.parquet")
    tracks.write_parquet(out / "gt" / "tracks.parquet")
    zone_counts.write_parquet(out / "gt" / "zone_counts.parquet")
    events = _events_table(preset, zone_counts)
    events.write_parquet(out / "gt" / "events.parquet")
    (out / "gt" / "cameras.json").write_text(json.dumps(_cameras_json(layout), indent=2))
    _write_references(people, out, seed)
    config = build_site_config(layout, preset, seed, SITE_START)
    dump_site_config(config, out / "site.yaml")
    return {
        "preset": preset.name,
        "seed": seed,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 2),
        "workers": workers,
        "cameras": [
            {
                "camera_id": r["camera_id"],
                "frames": r["n_frames"],
                "render_s": round(r["render_s"], 2),
                "encode_s": round(r["encode_s"], 2),
            }
            for r in results
        ],
        "boxes": boxes,
        "people": people,
        "zone_counts": zone_counts,
        "events": events,
    }
