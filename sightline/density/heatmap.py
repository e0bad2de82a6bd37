"""Occupancy heatmaps: where people stood, drawn on the site map and in a camera's view.

The input is the ``ground_points`` table (:data:`~sightline.store.tables.GROUND_POINT_SCHEMA`):
one sample per person per second, each person once however many cameras saw them. Binned
on a grid of square cells, the samples give **occupancy**, in person-seconds per cell: one
person standing in a cell for 10 s adds 10, and so do ten people crossing it in a second
each. Occupancy divided by the window length and the cell area is the **mean density** in
persons per m2 over the window, the unit zone counts and alerts use, so the two can be
compared directly. A sample taken at another rate than once a second would need scaling
first; the store writes one a second.

Two renderings, both PNG bytes:

- :func:`render_site_png`: the site map seen from above, ground +x to the right and **+y
  up** (north up, as on a plan; image rows therefore run towards -y). Heat colours, the
  site outline, each zone outlined with its id, each camera as a dot with its id, and a
  legend band under the map with the colour scale in persons/m2.
- :func:`camera_overlay_png`: the same heatmap seen through one camera: every pixel (on a
  coarser pixel grid, for speed) is mapped to the ground with the camera's
  ``image_to_ground`` homography and coloured by the cell it lands in, then blended over a
  frame of that camera, so an operator sees where the crowd stood in the view they know.

Colours come from a small fixed inferno-like ramp (dark purple to pale yellow) so that
matplotlib is not needed.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import shapely
from PIL import Image, ImageDraw, ImageFont

from sightline import geometry
from sightline.config import CameraConfig, SiteConfig
from sightline.ingest.source import SourceError, VideoSource
from sightline.tracking.camera_model import GroundCamera

__all__ = [
    "DENSITY_UNITS",
    "Heatmap",
    "camera_overlay_png",
    "colourise",
    "first_frame",
    "occupancy_grid",
    "render_site_png",
    "site_bounds",
    "site_geometry",
    "site_occupancy",
]

DENSITY_UNITS = "persons/m2 mean"
"""Units of :meth:`Heatmap.mean_density`, as the legends write them."""

# Five stops of matplotlib's "inferno", linearly interpolated between.
_RAMP_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RAMP_RGB = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64
)
# Guards against a typo (cell_m=0.001 over a whole site) allocating gigabytes.
_MAX_CELLS = 4_000_000
_MAX_PIXELS = 25_000_000
_LEGEND_PX = 24
_BORDER_SAMPLES = 16
_OUTLINE_RGB = (235, 235, 235)
_ZONE_RGB = (64, 224, 208)
_CAMERA_RGB = (90, 170, 255)


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True, eq=False)
class Heatmap:
    """Occupancy of a ground grid over a time window.

    ``occupancy[row, col]`` (float32, shape ``(ny, nx)``) is person-seconds in the cell
    whose lower-left corner is ``(origin[0] + col * cell_m, origin[1] + row * cell_m)``:
    row 0 is the lowest ground y. ``seconds`` is the length of the window the samples
    cover, which turns occupancy into mean density (:meth:`mean_density`).
    """

    occupancy: np.ndarray
    origin: tuple[float, float]
    cell_m: float
    seconds: float

    def __post_init__(self) -> None:
        occupancy = np.asarray(self.occupancy, dtype=np.float32)
        if occupancy.ndim != 2 or 0 in occupancy.shape:
            raise ValueError(f"occupancy: expected a non-empty 2-D grid, got {occupancy.shape}")
        _check_positive("cell_m", self.cell_m)
        _check_positive("seconds", self.seconds)
        object.__setattr__(self, "occupancy", occupancy)
        object.__setattr__(self, "cell_m", float(self.cell_m))
        object.__setattr__(self, "seconds", float(self.seconds))
        object.__setattr__(self, "origin", (float(self.origin[0]), float(self.origin[1])))

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``: rows (along ground y) and columns (along ground x)."""
        ny, nx = self.occupancy.shape
        return ny, nx

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in metres: the ground the grid covers."""
        ny, nx = self.shape
        x0, y0 = self.origin
        return x0, y0, x0 + nx * self.cell_m, y0 + ny * self.cell_m

    def mean_density(self) -> np.ndarray:
        """Persons per m2 in each cell, averaged over the window (float32, like occupancy)."""
        return self.occupancy / np.float32(self.seconds * self.cell_m**2)

    def density_at(self, points: np.ndarray) -> np.ndarray:
        """Mean density (persons/m2) of the cell under each ground point ``(N, 2)``;
        ``nan`` for points off the grid or not finite."""
        pts = geometry.as_points(points)
        x0, y0 = self.origin
        ny, nx = self.shape
        with np.errstate(invalid="ignore"):
            col = np.floor((pts[:, 0] - x0) / self.cell_m)
            row = np.floor((pts[:, 1] - y0) / self.cell_m)
            inside = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
        out = np.full(len(pts), np.nan, dtype=np.float64)
        out[inside] = self.mean_density()[row[inside].astype(int), col[inside].astype(int)]
        return out

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """JSON-friendly form: grid geometry, window, units and the occupancy rows
        (row 0 = lowest y) rounded to ``decimals``."""
        ny, nx = self.shape
        return {
            "origin": list(self.origin),
            "cell_m": self.cell_m,
            "shape": [ny, nx],
            "seconds": self.seconds,
            "units": "person-seconds per cell",
            "max_density_per_m2": round(float(self.mean_density().max()), 6),
            "occupancy": np.round(self.occupancy.astype(np.float64), decimals).tolist(),
        }


def _as_float(value: object) -> float:
    """``value`` as a float, nan when it is not a number (so range checks reject it)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _check_positive(name: str, value: float) -> None:
    number = _as_float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _xy(points: pl.DataFrame | np.ndarray) -> np.ndarray:
    """``(N, 2)`` float64 ground points from a ground-points frame or an array."""
    if isinstance(points, pl.DataFrame):
        missing = [c for c in ("world_x", "world_y") if c not in points.columns]
        if missing:
            raise ValueError(f"points: frame lacks column(s) {missing}; it has {points.columns}")
        return points.select("world_x", "world_y").to_numpy().astype(np.float64)
    if len(points) == 0:
        return np.empty((0, 2))
    return geometry.as_points(points, "points")


def occupancy_grid(
    points: pl.DataFrame | np.ndarray,
    bounds: tuple[float, float, float, float],
    cell_m: float,
    seconds: float,
) -> Heatmap:
    """Bin ground points (one per person-second) into a :class:`Heatmap`.

    ``points`` is a frame with ``world_x``/``world_y`` columns (the ``ground_points``
    table) or an ``(N, 2)`` array. The grid starts at ``bounds``' ``(x0, y0)`` and is
    rounded up to whole cells of ``cell_m`` metres; points off it (or null/nan) are
    ignored. ``seconds`` is the length of the window the points cover. A smaller
    ``cell_m`` shows finer detail and needs more samples to look smooth.
    """
    _check_positive("cell_m", cell_m)
    _check_positive("seconds", seconds)
    x0, y0, x1, y1 = (float(v) for v in bounds)
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"bounds (x0, y0, x1, y1) must be finite with x1 > x0 and y1 > y0, got {tuple(bounds)}"
        )
    # The small tolerance keeps 10 / 0.1 = 100.00000000000001 at 100 cells, not 101.
    nx = max(1, math.ceil((x1 - x0) / cell_m - 1e-9))
    ny = max(1, math.ceil((y1 - y0) / cell_m - 1e-9))
    if nx * ny > _MAX_CELLS:
        raise ValueError(
            f"cell_m {cell_m} over bounds {tuple(bounds)} gives {nx}x{ny} cells, more than "
            f"{_MAX_CELLS}; use a larger cell_m"
        )
    xy = _xy(points)
    xy = xy[np.isfinite(xy).all(axis=1)]
    counts, _, _ = np.histogram2d(
        xy[:, 1],
        xy[:, 0],
        bins=(ny, nx),
        range=((y0, y0 + ny * cell_m), (x0, x0 + nx * cell_m)),
    )
    return Heatmap(counts.astype(np.float32), (x0, y0), float(cell_m), float(seconds))


def site_occupancy(points: pl.DataFrame | np.ndarray, site: SiteConfig, seconds: float) -> Heatmap:
    """:func:`occupancy_grid` over :func:`site_bounds` with the site's ``heatmap_cell_m``."""
    return occupancy_grid(points, site_bounds(site), site.density.heatmap_cell_m, seconds)


# --------------------------------------------------------------------------- site extent


def _image_to_ground(camera: CameraConfig, pixels: np.ndarray) -> np.ndarray:
    """Ground points of ``pixels`` ``(N, 2)``; ``nan`` where the pixel sees no ground
    (above the horizon) or maps to infinity."""
    h = camera.image_to_ground
    homog = geometry.as_points(pixels) @ h[:, :2].T + h[:, 2]
    # Calibration pixels certainly see the ground; a pixel whose homogeneous scale has
    # the other sign lies beyond the horizon, where the homography folds back.
    calib = np.array([p.image for p in camera.calibration])
    sign = np.sign((calib @ h[:, :2].T + h[:, 2])[:, 2].sum())
    w = homog[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = homog[:, :2] / w
    out[(np.sign(w[:, 0]) != sign) | (np.abs(w[:, 0]) < 1e-12)] = np.nan
    return out


def _camera_xy(camera: CameraConfig) -> np.ndarray | None:
    """The camera's position on the ground, or None when its homography gives no pinhole."""
    try:
        model = GroundCamera.from_homography(camera.ground_to_image, *camera.resolution)
    except ValueError:
        return None
    return model.centre[:2]


def _footprint(camera: CameraConfig, max_distance_m: float | None) -> np.ndarray:
    """Ground points of the image border that see the ground, pulled in to at most
    ``max_distance_m`` from the camera (pixels near the horizon map kilometres away)."""
    width, height = camera.resolution
    t = np.linspace(0.0, 1.0, _BORDER_SAMPLES)
    border = np.concatenate(
        [
            np.column_stack([t * width, np.zeros_like(t)]),
            np.column_stack([t * width, np.full_like(t, height)]),
            np.column_stack([np.zeros_like(t), t * height]),
            np.column_stack([np.full_like(t, width), t * height]),
        ]
    )
    ground = _image_to_ground(camera, border)
    ground = ground[np.isfinite(ground).all(axis=1)]
    anchor = _camera_xy(camera)
    if max_distance_m is None or anchor is None or not len(ground):
        return ground
    offset = ground - anchor
    dist = np.maximum(np.linalg.norm(offset, axis=1), 1e-9)
    return anchor + offset * np.minimum(1.0, max_distance_m / dist)[:, None]


def site_bounds(site: SiteConfig, margin_m: float = 1.0) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` in metres that a site heatmap should cover.

    The site outline when the config has one; otherwise the union of the zones and of
    what each camera sees of the ground (capped at ``density.max_view_distance_m`` from
    the camera). Either way grown by ``margin_m`` on every side, so outlines drawn on the
    map do not touch its edge.
    """
    if margin_m < 0 or not math.isfinite(margin_m):
        raise ValueError(f"margin_m must be finite and >= 0, got {margin_m!r}")
    if site.outline:
        parts = [np.asarray(site.outline, dtype=np.float64)]
    else:
        parts = [np.asarray(z.polygon, dtype=np.float64) for z in site.zones]
        limit = site.density.max_view_distance_m
        parts += [_footprint(cam, limit) for cam in site.cameras]
    pts = np.concatenate([p.reshape(-1, 2) for p in parts])
    if not len(pts):
        raise ValueError(
            f"site {site.name!r} has no outline, no zones and no camera that sees the ground; "
            "add an outline to bound its heatmap"
        )
    lo, hi = pts.min(axis=0) - margin_m, pts.max(axis=0) + margin_m
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def site_geometry(site: SiteConfig, decimals: int = 2) -> dict[str, Any]:
    """What a map of the site needs, in ground metres (JSON-ready): ``bounds``
    ``[x0, y0, x1, y1]`` (:func:`site_bounds`), the ``outline``, each zone's polygon and
    alert density, and each camera's ground position (null when its calibration gives
    none) and view footprint (the convex hull of what it sees of the ground, capped at
    ``density.max_view_distance_m``)."""
    import shapely

    def rounded(points: Any) -> list[list[float]]:
        return [[round(float(x), decimals), round(float(y), decimals)] for x, y in points]

    cameras = []
    for camera in site.cameras:
        position = _camera_xy(camera)
        seen = _footprint(camera, site.density.max_view_distance_m)
        hull = shapely.MultiPoint(seen).convex_hull if len(seen) >= 3 else None
        footprint = (
            rounded(hull.exterior.coords[:-1])
            if hull is not None and hull.geom_type == "Polygon"
            else []
        )
        cameras.append(
            {
                "id": camera.id,
                "position": None if position is None else rounded([position])[0],
                "footprint": footprint,
            }
        )
    return {
        "name": site.name,
        "bounds": [round(v, decimals) for v in site_bounds(site)],
        "outline": rounded(site.outline) if site.outline else None,
        "zones": [
            {
                "id": z.id,
                "name": z.name,
                "polygon": rounded(z.polygon),
                "alert_density": z.alert_density,
            }
            for z in site.zones
        ],
        "cameras": cameras,
    }


# --------------------------------------------------------------------------- colours


def colourise(values: np.ndarray, max_value: float) -> np.ndarray:
    """RGB uint8 (``values.shape + (3,)``) of ``values`` on the inferno-like ramp, 0 at
    the dark end and ``max_value`` (or more) at the light end; nan counts as 0."""
    _check_positive("max_value", max_value)
    t = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64) / max_value), 0.0, 1.0)
    rgb = [np.interp(t, _RAMP_STOPS, _RAMP_RGB[:, c]) for c in range(3)]
    return np.rint(np.stack(rgb, axis=-1)).astype(np.uint8)


def _scale_max(heatmap: Heatmap, max_value: float | None) -> float:
    """The density at the top of the colour scale: ``max_value``, else the map's peak."""
    if max_value is not None:
        _check_positive("max_value", max_value)
        return float(max_value)
    peak = float(heatmap.mean_density().max())
    # An empty map still needs a scale; any positive top colours every cell 0.
    return peak if peak > 0 else 1.0


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


# --------------------------------------------------------------------------- site map


@dataclass(frozen=True)
class _MapFrame:
    """World metres -> map pixels: +x right, +y up."""

    origin: tuple[float, float]
    scale: float
    height_px: int

    def px(self, points: np.ndarray | list) -> list[tuple[float, float]]:
        pts = geometry.as_points(points)
        x = (pts[:, 0] - self.origin[0]) * self.scale
        y = self.height_px - (pts[:, 1] - self.origin[1]) * self.scale
        return list(zip(x.tolist(), y.tolist(), strict=True))


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: tuple) -> None:
    """``text`` at ``xy`` (its top-left) on a dark box so it reads over any heat colour."""
    font = _font(11)
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=(0, 0, 0))
    draw.text(xy, text, fill=colour, font=font)


def _draw_zones(draw: ImageDraw.ImageDraw, site: SiteConfig, frame: _MapFrame) -> None:
    for zone in site.zones:
        draw.polygon(frame.px(zone.polygon), outline=_ZONE_RGB, width=2)
        inside = shapely.Polygon(zone.polygon).representative_point()
        _label(draw, frame.px([inside.x, inside.y])[0], zone.id, _ZONE_RGB)


def _draw_cameras(draw: ImageDraw.ImageDraw, site: SiteConfig, frame: _MapFrame) -> None:
    for camera in site.cameras:
        xy = _camera_xy(camera)
        if xy is None:
            continue
        x, y = frame.px(xy)[0]
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=_CAMERA_RGB, outline=(0, 0, 0))
        _label(draw, (x + 6, y - 6), camera.id, _CAMERA_RGB)


def _draw_legend(image: Image.Image, top: int, top_value: float, seconds: float) -> None:
    """A colour bar from 0 to ``top_value`` and its units in the band below the map."""
    draw = ImageDraw.Draw(image)
    bar_w = max(1, min(100, image.width // 3))
    bar = colourise(np.linspace(0.0, 1.0, bar_w)[None, :].repeat(10, axis=0), 1.0)
    image.paste(Image.fromarray(bar), (4, top + 7))
    text = f"0 - {top_value:.3g} {DENSITY_UNITS} over {seconds:.0f} s"
    draw.text((bar_w + 10, top + 5), text, fill=_OUTLINE_RGB, font=_font(11))


def render_site_png(
    heatmap: Heatmap,
    site: SiteConfig,
    *,
    scale_px_per_m: float = 8,
    max_value: float | None = None,
) -> bytes:
    """The heatmap as a site map (PNG), ground +y up; see the module docstring.

    The map is ``round(width_m * scale_px_per_m)`` by ``round(height_m * scale_px_per_m)``
    pixels for the grid's extent, with a 24-pixel legend band below it. ``max_value``
    (persons/m2) fixes the top of the colour scale, so maps of different windows compare;
    default: the map's own peak. Cameras whose homography gives no pinhole camera (no
    position) are left out.
    """
    _check_positive("scale_px_per_m", scale_px_per_m)
    top = _scale_max(heatmap, max_value)
    x0, y0, x1, y1 = heatmap.bounds
    width = max(1, round((x1 - x0) * scale_px_per_m))
    map_h = max(1, round((y1 - y0) * scale_px_per_m))
    if width * (map_h + _LEGEND_PX) > _MAX_PIXELS:
        raise ValueError(
            f"scale_px_per_m {scale_px_per_m} makes a {width}x{map_h} map, more than "
            f"{_MAX_PIXELS} pixels; lower it"
        )
    # Row 0 of the grid is the lowest y, which goes at the bottom of the map.
    cells = colourise(heatmap.mean_density()[::-1], top)
    heat = Image.fromarray(cells).resize((width, map_h), Image.Resampling.NEAREST)
    image = Image.new("RGB", (width, map_h + _LEGEND_PX), (24, 24, 24))
    image.paste(heat, (0, 0))
    draw = ImageDraw.Draw(image)
    frame = _MapFrame((x0, y0), float(scale_px_per_m), map_h)
    if site.outline:
        draw.polygon(frame.px(site.outline), outline=_OUTLINE_RGB, width=2)
    _draw_zones(draw, site, frame)
    _draw_cameras(draw, site, frame)
    _draw_legend(image, map_h, top, heatmap.seconds)
    return _png(image)


# --------------------------------------------------------------------------- camera view


def _check_frame(frame: np.ndarray, camera: CameraConfig) -> np.ndarray:
    image = np.asarray(frame)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"frame: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
        )
    width, height = camera.resolution
    if image.shape[:2] != (height, width):
        raise ValueError(
            f"frame is {image.shape[1]}x{image.shape[0]} but camera {camera.id!r} is "
            f"calibrated for {width}x{height}; resize the frame first"
        )
    return image


def camera_overlay_png(
    heatmap: Heatmap,
    camera: CameraConfig,
    frame: np.ndarray,
    *,
    alpha: float = 0.5,
    max_value: float | None = None,
    step_px: int = 4,
) -> bytes:
    """The heatmap seen through ``camera``, blended over ``frame`` (PNG of the frame's size).

    ``frame`` is an RGB uint8 image of the camera's calibrated resolution (else
    ``ValueError`` naming both sizes). Pixels are mapped to the ground in blocks of
    ``step_px`` x ``step_px`` (one lookup at the block centre): a larger step is faster
    and blockier at cell edges. Pixels over a cell where anyone stood are blended with
    its colour at opacity ``alpha``; empty cells, pixels off the grid and pixels above
    the horizon show the frame unchanged. ``max_value`` as in :func:`render_site_png`.
    """
    image = _check_frame(frame, camera)
    if not 0.0 <= _as_float(alpha) <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha!r}")
    if not (isinstance(step_px, int) and step_px >= 1):
        raise ValueError(f"step_px must be an integer >= 1, got {step_px!r}")
    top = _scale_max(heatmap, max_value)
    height, width = image.shape[:2]
    us = (np.arange(math.ceil(width / step_px)) + 0.5) * step_px
    vs = (np.arange(math.ceil(height / step_px)) + 0.5) * step_px
    grid_u, grid_v = np.meshgrid(us, vs)
    pixels = np.column_stack([grid_u.ravel(), grid_v.ravel()])
    density = heatmap.density_at(_image_to_ground(camera, pixels)).reshape(grid_u.shape)
    colour = colourise(density, top)
    tinted = np.nan_to_num(density) > 0

    def block(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, step_px, axis=0), step_px, axis=1)[:height, :width]

    mask = block(tinted)
    blend = (1.0 - alpha) * image.astype(np.float64) + alpha * block(colour)
    out = np.where(mask[..., None], np.rint(blend).astype(np.uint8), image)
    return _png(Image.fromarray(out))


def first_frame(source: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The first decodable frame of a video file or stream as RGB uint8 ``(H, W, 3)``.

    ``size`` ``(width, height)`` resizes it (pass a camera's ``resolution`` to get a frame
    its calibration refers to); default: the source's own size. Raises
    :class:`~sightline.ingest.source.SourceError` when the source cannot be opened or has
    no decodable frame.
    """
    video = VideoSource(source, *(size or (0, 0)))
    info = video.open()
    try:
        if size is None:
            video.width, video.height = info.width, info.height
        for _, image in video.frames(keep=lambda _t: True, on_decode_error=lambda _exc: None):
            if image is not None:
                return image
    finally:
        video.close()
    raise SourceError(f"{video.name} has no decodable frame")
