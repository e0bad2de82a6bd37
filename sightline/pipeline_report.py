"""A readable report of a pipeline run (what ``sightline demo`` prints)."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

__all__ = ["format_pipeline_report"]


def format_pipeline_report(
    summary: dict[str, Any],
    scores: pl.DataFrame | None,
    tracklets: pl.DataFrame | None = None,
    tracklet_scores: dict[str, Any] | None = None,
) -> str:
    """Per-camera frames, detections and health, the models' batching, accuracy, and the
    people tracked (tracklets, latest versions) with their accuracy."""
    lines = [
        f"processed {summary['frames']} frames in {summary['seconds']} s "
        f"({summary['frames_per_s']} frames/s); detections in {summary['out_dir']}/detections",
        "",
        f"{'camera':<8} {'state':<10} {'frames':>7} {'boxes':>7} {'drops':>6} "
        f"{'errors':>7} {'reconn':>7}",
    ]
    for cam in summary["cameras"]:
        lines.append(
            f"{cam['camera_id']:<8} {cam['state']:<10} {cam['frames_detected']:>7} "
            f"{cam['detections']:>7} {cam['drops']:>6} "
            f"{cam['decode_errors'] + cam['detector_errors']:>7} {cam['reconnects']:>7}"
        )
    if tracklets is not None:
        lines += _tracklet_lines(summary, tracklets, tracklet_scores)
    fusion = summary.get("fusion")
    if fusion:
        events = ", ".join(f"{n} {kind}" for kind, n in sorted(fusion["events"].items()))
        lines += [
            "",
            f"fused across cameras: {fusion['identities']} people from "
            f"{fusion['tracklets_new']} tracklet versions ({events}); store in {fusion['store']}",
        ]
    lines += _density_lines(summary.get("density"))
    lines.append("")
    for name in ("detector", "embedder"):
        batches = summary.get(f"{name}_batches") or {}
        if batches:
            lines.append(
                f"{name} replica {batches.get('replica_id', '?')} on "
                f"{batches.get('device', '?')}: {batches.get('batches', 0)} batches, "
                f"mean size {batches.get('mean_batch_size', 0):.1f}, "
                f"largest {batches.get('max_batch_size_seen', 0)}"
            )
    if scores is not None and not scores.is_empty():
        lines += ["", "found vs ground truth (IoU >= 0.5, persons >= 50 % visible):"]
        for row in scores.iter_rows(named=True):
            lines.append(
                f"  {row['camera_id']:<8} people found {row['tp']:>5}  missed {row['fn']:>4}  "
                f"false boxes {row['fp']:>4}  recall {row['recall']:.3f}  "
                f"precision {row['precision']:.3f}"
            )
    return "\n".join(lines)


def _tracklet_lines(
    summary: dict[str, Any], tracklets: pl.DataFrame, scores: dict[str, Any] | None
) -> list[str]:
    lines = [
        "",
        f"people tracked: {tracklets.height} tracklets ({summary.get('tracklets', 0)} versions "
        f"emitted) in {summary['out_dir']}/tracklets; the longest:",
    ]
    longest = tracklets.sort("n_frames", descending=True).head(5)
    for row in longest.iter_rows(named=True):
        height = row["height_m"]
        lines.append(
            f"  {row['tracklet_id']:<28} {row['t_start']:%H:%M:%S}-{row['t_end']:%H:%M:%S} "
            f"{row['n_frames']:>4} frames  top {row['upper_colour']:<7} "
            f"bottom {row['lower_colour']:<7} "
            + (f"{height:.2f} m" if height is not None and math.isfinite(height) else "height ?")
        )
    if scores:
        foot = scores["foot_median_error_m"]
        height_err = scores["height_median_error_m"]
        lines.append(
            f"  vs ground truth: upper colour right {scores['upper_colour_accuracy']:.1%} of "
            f"{scores['tracklets_longer_than_1s']} tracklets > 1 s; median height error "
            f"{height_err if height_err is None else f'{100 * height_err:.1f} cm'}; "
            f"median foot-point error {foot if foot is None else f'{foot:.2f} m'}"
        )
    return lines


def _density_lines(density: dict[str, Any] | None) -> list[str]:
    """Crowd density per zone (counted once across cameras) and the alerts raised."""
    if not density or not density.get("zones"):
        return []
    lines = ["", "crowd density per zone (people counted once across overlapping cameras):"]
    for zone in density["zones"]:
        truth = zone.get("mae_vs_truth")
        versus = f"  per-second error vs truth {truth:.2f}" if truth is not None else ""
        lines.append(
            f"  {zone['zone_id']:<10} mean {zone['mean_count']:>5.1f}  peak {zone['peak_count']:>3}"
            f"  ({zone['peak_density_per_m2']:.2f}/m2)  coverage {zone['min_coverage']:.2f}"
            f"{versus}"
        )
    newest = {a["alert_id"]: a for a in density.get("alerts") or []}  # rows in order
    for alert in newest.values():
        lasted = (
            f"for {alert['t_end'] - alert['t_start']:.0f} s"
            if alert["t_end"] is not None
            else "still on at the end"
        )
        lines.append(
            f"  alert {alert['zone_id']}: density above {alert['alert_density']:.2f}/m2 "
            f"{lasted}, peak {alert['peak_count']:.0f} people"
        )
    return lines
