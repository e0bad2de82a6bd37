"""The site config a simulated site ships with: true calibration, zones, topology."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from sightline.config import SiteConfig, parse_site_config
from sightline.geometry import apply_homography, invert_homography, polygon_area
from sightline.sim.layout import CameraPlacement, SiteLayout
from sightline.sim.presets import Preset

__all__ = ["build_site_config"]

# Pixel positions (fractions of width, height) where calibration points are taken:
# well spread over the lower part of the frame, where the ground is always in view.
_CALIBRATION_SPOTS = [(0.1, 0.55), (0.5, 0.5), (0.9, 0.55), (0.12, 0.93), (0.5, 0.96), (0.88, 0.93)]
_WALK_SPEED_MPS = 1.35


def _calibration(placement: CameraPlacement) -> list[dict]:
    cam = placement.camera
    to_image = cam.ground_to_image()
    pixels = np.array([(fx * cam.width, fy * cam.height_px) for fx, fy in _CALIBRATION_SPOTS])
    ground = np.round(apply_homography(invert_homography(to_image), pixels), 3)
    image = np.round(apply_homography(to_image, ground), 3)
    return [
        {"image": [float(u), float(v)], "ground": [float(x), float(y)]}
        for (u, v), (x, y) in zip(image, ground, strict=True)
    ]


def _topology(layout: SiteLayout) -> dict:
    """Links between cameras: overlapping pairs, and groups joined by a path no other
    watched junction lies on, with the walking time between them."""
    by_group: dict[int, list[CameraPlacement]] = {}
    for p in layout.cameras:
        by_group.setdefault(p.group, []).append(p)
    targets = {g: cams[0].target_node for g, cams in by_group.items()}
    links = []
    for cams in by_group.values():
        if len(cams) == 2:
            links.append(
                {
                    "cameras": [cams[0].camera_id, cams[1].camera_id],
                    "typical_transit_s": 0.0,
                    "max_transit_s": 10.0,
                }
            )
    groups = sorted(targets)
    for gi in groups:
        for gj in groups:
            route = layout.route(targets[gi], targets[gj]) if gi < gj else []
            if not route or set(route[1:-1]) & set(targets.values()):
                continue
            seconds = float(layout.distances[targets[gi], targets[gj]] / _WALK_SPEED_MPS)
            for a in by_group[gi]:
                for b in by_group[gj]:
                    links.append(
                        {
                            "cameras": [a.camera_id, b.camera_id],
                            "typical_transit_s": round(seconds, 1),
                            "max_transit_s": round(3 * seconds, 1),
                        }
                    )
    return {"links": links}


def _zones(layout: SiteLayout, preset: Preset) -> list[dict]:
    zones = []
    for zone_id, polygon in layout.zones.items():
        area = polygon_area(polygon)
        crowds = [e.n_people for e in preset.crowd_events if e.zone == zone_id]
        # Alert at half the density the smallest scheduled crowd reaches; zones with no
        # scheduled crowd get a threshold ordinary traffic never reaches.
        alert = round(0.5 * min(crowds) / area, 3) if crowds else 1.0
        zones.append(
            {
                "id": zone_id,
                "name": zone_id.replace("_", " "),
                "polygon": [[round(float(x), 3), round(float(y), 3)] for x, y in polygon],
                "alert_density": alert,
                "alert_hold_s": 5.0,
            }
        )
    return zones


def build_site_config(layout: SiteLayout, preset: Preset, seed: int, start: datetime) -> SiteConfig:
    """A validated site config for the simulated site (videos under ``videos/``)."""
    data = {
        "name": f"synthetic-{preset.name}-seed{seed}",
        "outline": [[0.0, 0.0], [layout.size[0], 0.0], list(layout.size), [0.0, layout.size[1]]],
        "camera_defaults": {"fps": preset.fps, "resolution": list(preset.resolution)},
        "cameras": [
            {
                "id": p.camera_id,
                "source": f"videos/{p.camera_id}.mp4",
                "source_start": start.isoformat().replace("+00:00", "Z"),
                "calibration": _calibration(p),
            }
            for p in layout.cameras
        ],
        "zones": _zones(layout, preset),
        "topology": _topology(layout),
        "storage": {"root": "store"},
    }
    return parse_site_config(data, source="<simulated site.yaml>")
