"""Reference photos: each person as a family would photograph them.

A close, eye-level, front view of the person standing still, against an indoor wall
and floor, under warm light: another pose, lighting and scale than any CCTV camera
of the site, so photo search is not a pixel-matching exercise.
"""

from __future__ import annotations

import numpy as np

from sightline.sim.body import Appearance, pose_parts
from sightline.sim.camera import PinholeCamera
from sightline.sim.layout import value_noise
from sightline.sim.render import Lighting, composite, rasterize_person, render_background

__all__ = ["render_reference"]

_SIZE = (256, 384)
_WALL = (214.0, 204.0, 186.0)


def _floor(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    grain = value_noise(x * 8.0, y * 0.8, 7)
    plank = np.floor(x / 0.18)
    tone = 120 + 25 * grain + 10 * ((plank % 3) - 1)
    return (tone[:, None] * np.array([1.0, 0.78, 0.55])).astype(np.float32)


def render_reference(app: Appearance, rng: np.random.Generator) -> np.ndarray:
    """A ``384 x 256`` RGB uint8 photo of a person with appearance ``app``."""
    width, height = _SIZE
    hfov = 30.0  # a longer lens, as a phone photo taken from a few metres
    focal = (width / 2.0) / np.tan(np.radians(hfov) / 2.0)
    distance = app.height_m * focal / (rng.uniform(0.72, 0.85) * height)
    camera = PinholeCamera.looking_at(
        position=(distance, 0.0),
        height=0.6 * app.height_m,
        target=(0.0, 0.0),
        hfov_deg=hfov,
        resolution=_SIZE,
        target_z=0.5 * app.height_m,
    )
    lighting = Lighting(
        gain=(1.12, 1.0, 0.84), exposure=1.05, noise_sigma=1.0, vignette=0.2, light_side=0.6
    )
    image = render_background(camera, _floor, lighting, sky=_WALL)
    heading = float(rng.normal(0.0, 0.25))  # roughly facing the camera at +x
    parts = pose_parts(app, np.zeros(2), heading, phase=0.0, moving=False)
    sprite = rasterize_person(camera, parts, app.hair_rgb, np.cos(heading), lighting.light_side)
    if sprite is None:  # pragma: no cover - the camera is aimed at the person
        raise RuntimeError("reference camera does not see the person")
    labels = np.full(image.shape[:2], -1, dtype=np.int32)
    composite(image, labels, sprite, 0, lighting.transfer(), lighting.vignette_map(width, height))
    image += rng.normal(0.0, lighting.noise_sigma, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
