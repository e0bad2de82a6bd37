"""What each camera sees of each zone: the coverage behind every zone count.

A zone is sampled on a grid (``coverage_cell_m``); a sample counts as seen by a camera
when its image point lies inside the frame (``view_margin_px``), in front of the camera
and, if ``max_view_distance_m`` is set, close enough for people there to be detected.
The share of samples seen by the cameras reporting at a moment is the zone's coverage
then: a count over a zone half out of view says so (coverage 0.5) instead of looking
like an empty half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sightline import geometry
from sightline.config import CameraConfig, DensityConfig, SiteConfig, ZoneConfig
from sightline.tracking.camera_model import GroundCamera

__all__ = ["ZoneCoverage", "camera_sees", "zone_samples"]


def zone_samples(polygon: np.ndarray | list, cell_m: float) -> np.ndarray:
    """Grid points ``(N, 2)`` (cell centres, step ``cell_m``) inside ``polygon``; never
    empty: a zone smaller than a cell is sampled at its centroid."""
    if cell_m <= 0:
        raise ValueError(f"cell_m must be > 0, got {cell_m}")
    poly = geometry.as_points(polygon, "polygon")
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    xs = np.arange(lo[0] + cell_m / 2, hi[0], cell_m)
    ys = np.arange(lo[1] + cell_m / 2, hi[1], cell_m)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    inside = grid[geometry.point_in_polygon(grid, poly)] if len(grid) else grid
    return inside if len(inside) else poly.mean(axis=0, keepdims=True)


def camera_sees(camera: CameraConfig, points: np.ndarray, config: DensityConfig) -> np.ndarray:
    """Boolean mask: which ground ``points`` (N, 2) ``camera`` sees (module docstring)."""
    pts = geometry.as_points(points)
    width, height = camera.resolution
    try:
        model: GroundCamera | None = GroundCamera.from_homography(
            camera.ground_to_image, width, height
        )
    except ValueError:
        model = None
    if model is not None:
        pixels = model.project(np.column_stack([pts, np.zeros(len(pts))]))
    else:
        pixels = _project_in_front(camera, pts)
    m = config.view_margin_px
    with np.errstate(invalid="ignore"):
        seen = (
            (pixels[:, 0] >= m)
            & (pixels[:, 0] <= width - m)
            & (pixels[:, 1] >= m)
            & (pixels[:, 1] <= height - m)
        )
    if model is not None and config.max_view_distance_m is not None:
        distance = np.linalg.norm(pts - model.centre[:2], axis=1)
        seen &= distance <= config.max_view_distance_m
    return seen


def _project_in_front(camera: CameraConfig, pts: np.ndarray) -> np.ndarray:
    """Pixels of ground points without a camera model: points on the far side of the
    horizon get nan (their homogeneous scale has the other sign than a visible point's)."""
    width, height = camera.resolution
    h = camera.ground_to_image
    reference = geometry.apply_homography(camera.image_to_ground, [[width / 2, height * 0.9]])
    sign = np.sign((h @ np.append(reference[0], 1.0))[2])
    homog = np.column_stack([pts, np.ones(len(pts))]) @ h.T
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = homog[:, :2] / homog[:, 2:3]
    pixels[np.sign(homog[:, 2]) != sign] = np.nan
    return pixels


@dataclass(frozen=True)
class ZoneCoverage:
    """Every zone's grid samples and which camera sees which sample."""

    zones: tuple[ZoneConfig, ...]
    samples: dict[str, np.ndarray]
    seen: dict[str, dict[str, np.ndarray]]  # zone id -> camera id -> mask over samples

    @classmethod
    def for_site(cls, site: SiteConfig) -> ZoneCoverage:
        """Coverage of ``site``'s zones by its cameras."""
        samples, seen = {}, {}
        for zone in site.zones:
            points = zone_samples(zone.polygon, site.density.coverage_cell_m)
            samples[zone.id] = points
            seen[zone.id] = {c.id: camera_sees(c, points, site.density) for c in site.cameras}
        return cls(tuple(site.zones), samples, seen)

    def coverage(self, zone_id: str, cameras: set[str] | frozenset[str]) -> float:
        """Share (0..1) of ``zone_id`` that at least one of ``cameras`` sees."""
        masks = [m for c, m in self.seen[zone_id].items() if c in cameras]
        if not masks:
            return 0.0
        return float(np.logical_or.reduce(masks).mean())

    def cameras_of(self, zone_id: str) -> frozenset[str]:
        """Cameras that see at least part of ``zone_id``."""
        return frozenset(c for c, m in self.seen[zone_id].items() if m.any())

    def full_coverage(self) -> dict[str, float]:
        """Each zone's coverage with every camera reporting."""
        return {z.id: self.coverage(z.id, set(self.seen[z.id])) for z in self.zones}
