"""A readable report of a pipeline run (what ``sightline demo`` prints)."""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["format_pipeline_report"]


def format_pipeline_report(summary: dict[str, Any], scores: pl.DataFrame | None) -> str:
    """Per-camera frames, detections and health, the detector's batching, and accuracy."""
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
    batches = summary.get("detector_batches") or {}
    if batches:
        lines += [
            "",
            f"detector replica {batches.get('replica_id', '?')} on "
            f"{batches.get('device', '?')}: {batches.get('batches', 0)} batches, "
            f"mean size {batches.get('mean_batch_size', 0):.1f}, "
            f"largest {batches.get('max_batch_size_seen', 0)}",
        ]
    if scores is not None and not scores.is_empty():
        lines += ["", "found vs ground truth (IoU >= 0.5, persons >= 50 % visible):"]
        for row in scores.iter_rows(named=True):
            lines.append(
                f"  {row['camera_id']:<8} people found {row['tp']:>5}  missed {row['fn']:>4}  "
                f"false boxes {row['fp']:>4}  recall {row['recall']:.3f}  "
                f"precision {row['precision']:.3f}"
            )
    return "\n".join(lines)
