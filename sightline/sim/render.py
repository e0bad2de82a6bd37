"""Rasterisation: the textured ground seen by a camera, and people drawn over it.

People are drawn back to front (painter's order by camera depth), each from shaded
capsules, so nearer people occlude farther ones. Every drawn pixel records whose it
is in a label buffer, which gives each person's visible fraction exactly. Boxes are
computed analytically from the projected capsules, so they are the amodal (full,
unclipped) extent of the person even when part of them is hidden or off-frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sightline.sim.body import KIND_HEAD, BodyParts
from sightline.sim.camera import PinholeCamera

__all__ = [
    "Lighting",
    "Sprite",
    "composite",
    "draw_shadow",
    "rasterize_person",
    "render_background",
]

AlbedoFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
_MIN_DEPTH_M = 1.0  # people closer than this to the lens are not drawn (or labelled)


@dataclass(frozen=True)
class Lighting:
    """A camera's rendition of the scene: white balance, exposure, vignette, noise, light side."""

    gain: tuple[float, float, float]
    exposure: float
    noise_sigma: float
    vignette: float
    light_side: float

    def transfer(self) -> np.ndarray:
        """Per-channel multiplier applied to scene albedo."""
        return np.asarray(self.gain, dtype=np.float32) * np.float32(self.exposure)

    def vignette_map(self, width: int, height: int) -> np.ndarray:
        """``(H, W, 1)`` brightness falloff towards the corners."""
        v = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
        u = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
        r2 = (u[None, :] ** 2 + v[:, None] ** 2) / 0.5
        return (1.0 - self.vignette * r2)[..., None].astype(np.float32)


@dataclass
class Sprite:
    """One person rasterised for one camera: amodal box, pixel patch and mask."""

    box: np.ndarray  # (4,) float x1, y1, x2, y2 in pixels
    origin: tuple[int, int]  # (x, y) of the patch's top-left pixel
    colour: np.ndarray  # (h, w, 3) float32 shaded albedo
    mask: np.ndarray  # (h, w) bool


def render_background(
    camera: PinholeCamera,
    albedo_fn: AlbedoFn,
    lighting: Lighting,
    supersample: int = 2,
    sky: tuple[float, float, float] = (176.0, 190.0, 204.0),
) -> np.ndarray:
    """The lit, noise-free ground plane as seen by ``camera``: float32 ``(H, W, 3)``.

    Rendered at ``supersample`` x resolution and averaged, so distant tile seams do not
    alias into moire patterns.
    """
    w, h, s = camera.width, camera.height_px, supersample
    uu = (np.arange(w * s, dtype=np.float64) + 0.5) / s
    vv = (np.arange(h * s, dtype=np.float64) + 0.5) / s
    rays = camera.pixel_rays(uu[None, :].repeat(h * s, 0), vv[:, None].repeat(w * s, 1))
    dz = rays[..., 2]
    ground = dz < -1e-4
    t = np.where(ground, camera.height / np.where(ground, -dz, 1.0), np.inf)
    x = camera.position[0] + t * rays[..., 0]
    y = camera.position[1] + t * rays[..., 1]
    sky_rgb = np.asarray(sky, dtype=np.float32)
    albedo = np.broadcast_to(sky_rgb, (h * s, w * s, 3)).copy()
    near = ground & (t < 400.0)
    albedo[near] = albedo_fn(x[near], y[near])
    haze = 1.0 - np.exp(-np.where(near, t, 1e9) / 260.0)
    albedo = albedo * (1.0 - haze[..., None]) + sky_rgb * haze[..., None]
    albedo = albedo.reshape(h, s, w, s, 3).mean(axis=(1, 3)).astype(np.float32)
    return albedo * lighting.transfer() * lighting.vignette_map(w, h)


def _project_parts(
    camera: PinholeCamera, parts: BodyParts
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pa, da = camera.project(parts.a)
    pb, db = camera.project(parts.b)
    ra = parts.radius_a * camera.focal_px / np.maximum(da, 1e-6)
    rb = parts.radius_b * camera.focal_px / np.maximum(db, 1e-6)
    return pa, pb, ra, rb, (da + db) / 2.0


def rasterize_person(
    camera: PinholeCamera,
    parts: BodyParts,
    hair_rgb: np.ndarray,
    facing_camera: float,
    light_side: float,
) -> Sprite | None:
    """Rasterise posed ``parts`` for ``camera``; None if out of view or too close.

    ``facing_camera`` is the cosine between the person's heading and the direction to
    the camera (1 = facing it): it decides how much of the head shows hair.
    """
    pa, pb, ra, rb, mid_depth = _project_parts(camera, parts)
    if mid_depth.min() < _MIN_DEPTH_M:
        return None
    x1 = float(np.minimum(pa[:, 0] - ra, pb[:, 0] - rb).min())
    y1 = float(np.minimum(pa[:, 1] - ra, pb[:, 1] - rb).min())
    x2 = float(np.maximum(pa[:, 0] + ra, pb[:, 0] + rb).max())
    y2 = float(np.maximum(pa[:, 1] + ra, pb[:, 1] + rb).max())
    if x2 <= 0 or y2 <= 0 or x1 >= camera.width or y1 >= camera.height_px:
        return None
    ix0, iy0 = int(np.floor(x1)), int(np.floor(y1))
    ix1, iy1 = int(np.ceil(x2)), int(np.ceil(y2))
    order = np.argsort(-mid_depth, kind="stable")  # far parts first
    pa, pb, ra, rb = pa[order], pb[order], ra[order], rb[order]
    px = (np.arange(ix0, ix1, dtype=np.float32) + 0.5)[None, None, :]
    py = (np.arange(iy0, iy1, dtype=np.float32) + 0.5)[None, :, None]
    ax, ay = pa[:, 0, None, None], pa[:, 1, None, None]
    dx, dy = (pb - pa)[:, 0, None, None], (pb - pa)[:, 1, None, None]
    seg2 = np.maximum(dx * dx + dy * dy, 1e-9)
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / seg2, 0.0, 1.0)
    offx, offy = px - (ax + t * dx), py - (ay + t * dy)
    r = ra[:, None, None] + t * (rb - ra)[:, None, None]
    q2 = (offx * offx + offy * offy) / (r * r)
    inside = q2 <= 1.0
    k = len(order)
    top = (k - 1 - np.argmax(inside[::-1], axis=0))[None]
    mask = inside.any(axis=0)
    q2_top = np.take_along_axis(q2, top, 0)[0]
    lateral = np.take_along_axis(offx / r, top, 0)[0]
    shade = 0.45 + 0.55 * np.sqrt(np.clip(1.0 - q2_top, 0.0, 1.0)) + 0.18 * light_side * lateral
    colour = parts.colour[order][top[0]] * np.clip(shade, 0.2, 1.3)[..., None]
    head_k = np.flatnonzero(parts.kind[order] == KIND_HEAD)
    if head_k.size:
        hk = int(head_k[0])
        rel_v = (py[0] - pa[hk, 1]) / rb[hk]
        hair_line = -0.3 if facing_camera > 0.3 else (0.5 if facing_camera < -0.3 else 0.1)
        hair = (top[0] == hk) & (rel_v < hair_line)
        colour[hair] = hair_rgb * np.clip(shade[hair], 0.2, 1.3)[:, None]
    return Sprite(
        box=np.array([x1, y1, x2, y2]),
        origin=(ix0, iy0),
        colour=colour.astype(np.float32),
        mask=mask,
    )


def _clip_region(
    origin: tuple[int, int], shape: tuple[int, int], width: int, height: int
) -> tuple[slice, slice, slice, slice] | None:
    """Frame and patch slices of a patch at ``origin`` clipped to the frame, or None."""
    x0, y0 = origin
    h, w = shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return (
        slice(fy0, fy1),
        slice(fx0, fx1),
        slice(fy0 - y0, fy1 - y0),
        slice(fx0 - x0, fx1 - x0),
    )


def composite(
    frame: np.ndarray,
    labels: np.ndarray,
    sprite: Sprite,
    index: int,
    transfer: np.ndarray,
    vignette: np.ndarray,
) -> None:
    """Draw ``sprite`` over ``frame`` (float32) and mark its pixels ``index`` in ``labels``."""
    region = _clip_region(sprite.origin, sprite.mask.shape, frame.shape[1], frame.shape[0])
    if region is None:
        return
    fy, fx, py, px = region
    m = sprite.mask[py, px]
    lit = sprite.colour[py, px] * transfer * vignette[fy, fx]
    frame[fy, fx][m] = lit[m]
    labels[fy, fx][m] = index


def visible_pixels(labels: np.ndarray, sprite: Sprite, index: int) -> int:
    """How many of ``sprite``'s pixels still show in ``labels`` after all drawing."""
    region = _clip_region(sprite.origin, sprite.mask.shape, labels.shape[1], labels.shape[0])
    if region is None:
        return 0
    fy, fx, _, _ = region
    return int(np.count_nonzero(labels[fy, fx] == index))


def draw_shadow(
    frame: np.ndarray, camera: PinholeCamera, xy: np.ndarray, radius_m: float = 0.35
) -> None:
    """Darken a soft ellipse on the ground under a person standing at ``xy``."""
    pts, depth = camera.project(
        np.array(
            [[xy[0], xy[1], 0.0], [xy[0] + radius_m, xy[1], 0.0], [xy[0], xy[1] + radius_m, 0.0]]
        )
    )
    if depth.min() < _MIN_DEPTH_M:
        return
    cx, cy = pts[0]
    spread = np.abs(pts[1:] - pts[0])
    rx, ry = max(spread[:, 0].max(), 1.0), max(spread[:, 1].max(), 0.5)
    x0, x1 = int(max(cx - rx, 0)), int(min(cx + rx + 1, frame.shape[1]))
    y0, y1 = int(max(cy - ry, 0)), int(min(cy + ry + 1, frame.shape[0]))
    if x0 >= x1 or y0 >= y1:
        return
    u = (np.arange(x0, x1) + 0.5 - cx) / rx
    v = (np.arange(y0, y1) + 0.5 - cy) / ry
    e = u[None, :] ** 2 + v[:, None] ** 2
    factor = 1.0 - 0.35 * np.clip(1.0 - e, 0.0, 1.0)
    frame[y0:y1, x0:x1] *= factor[..., None].astype(np.float32)
