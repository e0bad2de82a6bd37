"""A compact, JSON-ready summary of a simulated site, for the demo and for scripts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

__all__ = ["format_summary", "summarise"]

_VISIBLE = 0.3  # a box counts as "seen" when at least this fraction of the person shows


def _overlapping_pairs(boxes: pl.DataFrame) -> list[dict[str, Any]]:
    """Camera pairs that see the same person in the same frame (shared views)."""
    seen = boxes.filter(pl.col("visibility") >= _VISIBLE).select("camera_id", "ts", "person_id")
    pairs = (
        seen.join(seen, on=["ts", "person_id"], suffix="_b")
        .filter(pl.col("camera_id") < pl.col("camera_id_b"))
        .group_by("camera_id", "camera_id_b")
        .agg(pl.len().alias("shared_sightings"))
        .sort("camera_id", "camera_id_b")
    )
    return [
        {"cameras": [r["camera_id"], r["camera_id_b"]], "shared_sightings": r["shared_sightings"]}
        for r in pairs.iter_rows(named=True)
    ]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Summarise the dict returned by :func:`sightline.sim.simulate`."""
    boxes: pl.DataFrame = result["boxes"]
    seen = boxes.filter(pl.col("visibility") >= _VISIBLE)
    per_camera = seen.group_by("camera_id").agg(
        pl.len().alias("boxes"), pl.col("person_id").n_unique().alias("people_seen")
    )
    cams = {r["camera_id"]: r for r in per_camera.iter_rows(named=True)}
    people = result["people"]
    zones = (
        result["zone_counts"]
        .group_by("zone_id")
        .agg(
            pl.col("count").max().alias("peak_count"),
            pl.col("density_per_m2").max().alias("peak_density_per_m2"),
        )
        .sort("zone_id")
    )
    return {
        "preset": result["preset"],
        "seed": result["seed"],
        "out": result["out"],
        "seconds": result["seconds"],
        "cameras": [
            {
                **c,
                "boxes": cams.get(c["camera_id"], {}).get("boxes", 0),
                "people_seen": cams.get(c["camera_id"], {}).get("people_seen", 0),
            }
            for c in result["cameras"]
        ],
        "overlapping_camera_pairs": _overlapping_pairs(boxes),
        "people": {
            "total": len(people),
            "children": sum(p.appearance.is_child for p in people),
            "seen_by_some_camera": int(seen["person_id"].n_unique()),
            "upper_colours": dict(Counter(p.appearance.upper for p in people).most_common()),
        },
        "zones": [
            {
                "zone_id": r["zone_id"],
                "peak_count": r["peak_count"],
                "peak_density_per_m2": round(r["peak_density_per_m2"], 3),
            }
            for r in zones.iter_rows(named=True)
        ],
        "crowd_events": [
            {
                "zone_id": r["zone_id"],
                "start": r["t_start"].isoformat(),
                "end": r["t_end"].isoformat(),
                "people": r["n_people"],
                "peak_count": r["peak_count"],
            }
            for r in result["events"].iter_rows(named=True)
        ],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for the demo."""
    lines = [
        f"Synthetic site '{summary['preset']}' (seed {summary['seed']}) written to "
        f"{summary['out']} in {summary['seconds']} s",
        "",
        "cameras:",
    ]
    for c in summary["cameras"]:
        lines.append(
            f"  {c['camera_id']}: {c['frames']} frames, {c['boxes']} visible person boxes, "
            f"{c['people_seen']} distinct people"
        )
    pairs = ", ".join(
        f"{p['cameras'][0]}+{p['cameras'][1]} ({p['shared_sightings']} shared sightings)"
        for p in summary["overlapping_camera_pairs"]
    )
    ppl = summary["people"]
    lines += [
        f"overlapping views: {pairs or 'none'}",
        f"people: {ppl['total']} ({ppl['children']} children), "
        f"{ppl['seen_by_some_camera']} seen by at least one camera",
        "  tops: " + ", ".join(f"{k} {v}" for k, v in ppl["upper_colours"].items()),
        "zones:",
    ]
    for z in summary["zones"]:
        lines.append(
            f"  {z['zone_id']}: peak {z['peak_count']} people ({z['peak_density_per_m2']} /m2)"
        )
    for e in summary["crowd_events"]:
        lines.append(
            f"crowd event in {e['zone_id']} {e['start']} -> {e['end']}: "
            f"{e['people']} people, peak {e['peak_count']}"
        )
    return "\n".join(lines)
