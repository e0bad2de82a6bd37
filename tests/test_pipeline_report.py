"""The demo's readable report: the density part (the rest is exercised by the pipeline test)."""

from __future__ import annotations

from sightline.pipeline_report import format_pipeline_report


def _summary(**density):
    camera = {
        "camera_id": "cam01",
        "state": "finished",
        "frames_detected": 10,
        "detections": 20,
        "drops": 0,
        "decode_errors": 0,
        "detector_errors": 0,
        "reconnects": 0,
    }
    return {
        "frames": 10,
        "seconds": 1.0,
        "frames_per_s": 10.0,
        "out_dir": "/tmp/x",
        "cameras": [camera],
        "density": density or None,
    }


def test_density_lines_show_zones_errors_and_alerts():
    zones = [
        {
            "zone_id": "plaza",
            "mean_count": 3.25,
            "peak_count": 14,
            "peak_density_per_m2": 0.14,
            "min_coverage": 1.0,
            "mae_vs_truth": 0.04,
        }
    ]
    start = {"alert_id": "plaza-1", "zone_id": "plaza", "state": "start", "t_start": 100.0,
             "t_end": None, "alert_density": 0.07, "peak_count": 12.0}  # fmt: skip
    end = {**start, "state": "end", "t_end": 130.0, "peak_count": 14.0}
    other = {**start, "alert_id": "plaza-2", "t_start": 200.0}
    text = format_pipeline_report(_summary(zones=zones, alerts=[start, end, other]), None)
    line = "plaza      mean   3.2  peak  14  (0.14/m2)  coverage 1.00  per-second error vs truth"
    assert f"{line} 0.04" in text
    assert "alert plaza: density above 0.07/m2 for 30 s, peak 14 people" in text
    assert "alert plaza: density above 0.07/m2 still on at the end, peak 12 people" in text


def test_no_density_section_without_zones():
    assert "crowd density" not in format_pipeline_report(_summary(), None)
