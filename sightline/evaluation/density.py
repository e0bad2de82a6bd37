"""``sightline eval density``: zone counts and crowd alerts on a held-out simulated site.

The built-in detector runs over every camera; each camera is tracked as the camera
actors track it, and every frame's tracked people go, as ground points, to a
:class:`~sightline.density.service.DensityService` writing a scratch store, in the
order of their times (one batch per camera and second, as the actors send them). The
stored per-second counts are compared with the simulator's ``gt/zone_counts.parquet``
(the true mean number of people in each zone over each second):

- buckets whose true count is at most 10: mean absolute error (target <= 0.5);
- buckets above 10: mean relative error (target <= 15%);
- the same for the naive count (every camera's own count summed), to show what counting
  a person seen by two cameras once changes;
- alerts: every scheduled crowd event (``gt/events.parquet``) must raise exactly one
  alert overlapping it, and no alert may fire outside the events.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sightline.density.counting import GroundFrame
from sightline.density.queries import density_alerts, zone_counts
from sightline.density.service import DensityService
from sightline.density.zones import ZoneCoverage
from sightline.evaluation import EvaluationError
from sightline.evaluation.tracking import held_out_site
from sightline.store.tables import TrackStore

__all__ = ["TARGETS", "feed_in_time_order", "run_eval_density", "score_alerts", "score_counts"]

TARGETS = {"mae_small": 0.5, "relative_error_large": 0.15, "small_max_people": 10}


def feed_in_time_order(service: DensityService, frames: dict[str, list[GroundFrame]]) -> None:
    """Send each camera's frames one second at a time, all cameras interleaved by time,
    then end every camera (as camera actors do)."""
    batches: list[tuple[int, str, list[GroundFrame]]] = []
    for camera_id, camera_frames in frames.items():
        by_second: dict[int, list[GroundFrame]] = defaultdict(list)
        for frame in camera_frames:
            by_second[int(np.floor(frame.ts))].append(frame)
        batches += [(second, camera_id, batch) for second, batch in by_second.items()]
    for _, _, batch in sorted(batches, key=lambda b: (b[0], b[1])):
        service.observe(batch)
    for camera_id in frames:
        service.finish_camera(camera_id)
    service.close()


def _errors(ours: pl.Series, truth: pl.Series) -> dict[str, Any]:
    ours_a, truth_a = ours.to_numpy(), truth.to_numpy()
    small = truth_a <= TARGETS["small_max_people"]
    large = ~small
    out: dict[str, Any] = {
        "buckets_small": int(small.sum()),
        "buckets_large": int(large.sum()),
        "mae_small": round(float(np.abs(ours_a[small] - truth_a[small]).mean()), 4)
        if small.any()
        else None,
        "relative_error_large": round(
            float((np.abs(ours_a[large] - truth_a[large]) / truth_a[large]).mean()), 4
        )
        if large.any()
        else None,
        "bias": round(float((ours_a - truth_a).mean()), 4) if len(truth_a) else None,
    }
    return out


def score_counts(ours: pl.DataFrame, truth: pl.DataFrame) -> dict[str, Any]:
    """Per-second zone counts (``zone_id, ts, count, naive_count, coverage``) against the
    simulator's truth (``zone_id, ts, mean_count``), overall and per zone."""
    joined = truth.select("zone_id", "ts", true="mean_count").join(
        ours.select("zone_id", "ts", "count", "naive_count", "coverage"),
        on=["zone_id", "ts"],
        how="left",
    )
    missing = int(joined["count"].null_count())
    joined = joined.with_columns(
        pl.col("count").fill_null(0.0), pl.col("naive_count").fill_null(0.0)
    )
    result: dict[str, Any] = {
        "seconds_missing": missing,
        "ours": _errors(joined["count"], joined["true"]),
        "naive_sum": _errors(joined["naive_count"], joined["true"]),
        "zones": {},
    }
    for (zone,), part in sorted(joined.partition_by("zone_id", as_dict=True).items()):
        result["zones"][zone] = {
            "coverage": round(float(part["coverage"].mean() or 0.0), 3),
            "true_peak": round(float(part["true"].max()), 2),
            "ours": _errors(part["count"], part["true"]),
            "naive_sum": _errors(part["naive_count"], part["true"]),
        }
    ours_res, targets = result["ours"], TARGETS
    result["passed"] = bool(
        (ours_res["mae_small"] is None or ours_res["mae_small"] <= targets["mae_small"])
        and (
            ours_res["relative_error_large"] is None
            or ours_res["relative_error_large"] <= targets["relative_error_large"]
        )
    )
    return result


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def score_alerts(alerts: pl.DataFrame, events: pl.DataFrame) -> dict[str, Any]:
    """Alerts (newest row per alert) against scheduled crowd events: each event must
    overlap exactly one alert of its zone, and every alert must overlap an event."""
    far = datetime(9999, 1, 1, tzinfo=UTC)
    rows = alerts.to_dicts()
    used: set[str] = set()
    per_event = []
    for event in events.to_dicts():
        hits = [
            a["alert_id"]
            for a in rows
            if a["zone_id"] == event["zone_id"]
            and a["t_start"] <= event["t_end"]
            and (a["t_end"] or far) >= event["t_start"]
        ]
        used |= set(hits)
        per_event.append(
            {
                "event_id": event["event_id"],
                "zone_id": event["zone_id"],
                "t_start": _iso(event["t_start"]),
                "t_end": _iso(event["t_end"]),
                "alerts": hits,
            }
        )
    false_alerts = [a["alert_id"] for a in rows if a["alert_id"] not in used]
    return {
        "events": per_event,
        "alerts": [
            {
                "alert_id": a["alert_id"],
                "zone_id": a["zone_id"],
                "t_start": _iso(a["t_start"]),
                "t_end": _iso(a["t_end"]),
                "peak_density": round(float(a["peak_density"]), 3),
                "peak_count": round(float(a["peak_count"]), 1),
            }
            for a in rows
        ],
        "false_alerts": false_alerts,
        "passed": all(len(e["alerts"]) == 1 for e in per_event) and not false_alerts,
    }


def run_eval_density(
    preset: str, seed: int, data_dir: Path, detector_weights: Path | None = None
) -> dict[str, Any]:
    """Zone-count errors (ours and naive), coverage and alerts on site (preset, seed)."""
    held = held_out_site(preset, seed, data_dir, detector_weights)
    site, site_cfg = held.path, held.config
    if not site_cfg.zones:
        raise EvaluationError(f"{site / 'site.yaml'} has no zones to count")
    collected: list[GroundFrame] = []
    held.track(ground=collected.append)
    frames: dict[str, list[GroundFrame]] = {c.id: [] for c in site_cfg.cameras}
    for frame in collected:
        frames[frame.camera_id].append(frame)
    with tempfile.TemporaryDirectory(prefix="sightline-eval-density-") as tmp:
        store = TrackStore(tmp, durable=False)
        service = DensityService(site_cfg, store, clock=lambda: 0.0)
        feed_in_time_order(service, frames)
        store.flush()
        truth = pl.read_parquet(site / "gt" / "zone_counts.parquet")
        start, end = truth["ts"].min(), truth["ts"].max()
        ours = zone_counts(tmp, start, end, bucket_s=1)
        alerts = density_alerts(tmp)
        counts = score_counts(ours, truth)
        alert_result = score_alerts(alerts, pl.read_parquet(site / "gt" / "events.parquet"))
        health = service.health()
    return {
        "evaluation": "density",
        "preset": preset,
        "seed": seed,
        "metric": "per-second zone counts (mean over the second) against "
        "gt/zone_counts.parquet mean_count; MAE where the truth is <= 10 people, mean "
        "relative error above; naive_sum adds every camera's own count",
        "counts": counts,
        "alerts": alert_result,
        "zone_coverage": {
            k: round(v, 3) for k, v in ZoneCoverage.for_site(site_cfg).full_coverage().items()
        },
        "counter": health,
        "targets": TARGETS,
        "passed": bool(counts["passed"] and alert_result["passed"]),
    }
