"""Render one camera's video and its ground-truth boxes (runs in a worker process)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightline.sim.body import pose_parts
from sightline.sim.camera import PinholeCamera
from sightline.sim.layout import CameraPlacement, SiteLayout
from sightline.sim.people import Person, PersonState
from sightline.sim.render import (
    composite,
    draw_shadow,
    rasterize_person,
    render_background,
    visible_pixels,
)
from sightline.sim.video import H264Writer

__all__ = ["BOX_FLOAT_COLUMNS", "CameraJob", "render_camera"]

_NOISE_BANK = 8
BOX_FLOAT_COLUMNS = (
    "x1",
    "y1",
    "x2",
    "y2",
    "visibility",
    "foot_x",
    "foot_y",
    "world_x",
    "world_y",
)
_BOX_COLUMNS = ("frame_index", "person_id", *BOX_FLOAT_COLUMNS)


@dataclass
class CameraJob:
    """Everything a worker needs to render one camera."""

    seed: int
    camera_index: int
    placement: CameraPlacement
    layout: SiteLayout
    people: list[Person]
    n_frames: int
    fps: float
    video_path: Path


@dataclass(frozen=True)
class _GroundPoints:
    """Every person's ground point seen by one camera, for every frame: (P, T) arrays.

    Projected once per camera, vectorised; it serves as the cheap pre-filter of who
    may be in view, the painter's order (far first) and the ground-truth foot pixel.
    """

    pixels: np.ndarray  # (P, T, 2)
    depth: np.ndarray  # (P, T)
    near: np.ndarray  # (P, T) present and close enough to the view to be worth drawing


def _ground_points(camera: PinholeCamera, states: list[PersonState]) -> _GroundPoints:
    xy = np.stack([st.xy for st in states])
    pixels, depth = camera.project(np.concatenate([xy, np.zeros((*xy.shape[:2], 1))], axis=2))
    margin = 0.6 * camera.width
    u, v = pixels[..., 0], pixels[..., 1]
    near = (
        np.stack([st.present for st in states])
        & (depth > 0.5)
        & (u > -margin)
        & (u < camera.width + margin)
        & (v > -camera.height_px)
        & (v < 2 * camera.height_px)
    )
    return _GroundPoints(pixels, depth, near)


def _facing(camera: PinholeCamera, xy: np.ndarray, heading: float) -> float:
    to_cam = np.asarray(camera.position) - xy
    to_cam /= max(float(np.linalg.norm(to_cam)), 1e-9)
    return float(np.cos(heading) * to_cam[0] + np.sin(heading) * to_cam[1])


@dataclass(frozen=True)
class _CameraLook:
    transfer: np.ndarray
    vignette: np.ndarray


def _draw_frame(
    job: CameraJob,
    look: _CameraLook,
    states: list[PersonState],
    ground: _GroundPoints,
    f: int,
    frame: np.ndarray,
) -> list[tuple[Any, ...]]:
    """Draw the people near the view at frame ``f`` onto ``frame``; return their GT rows."""
    cam, light = job.placement.camera, job.placement.lighting
    sprites = []
    for i in np.flatnonzero(ground.near[:, f]):
        st, person = states[i], job.people[i]
        xy, heading = st.xy[f], float(st.heading[f])
        parts = pose_parts(person.appearance, xy, heading, float(st.phase[f]), bool(st.moving[f]))
        sprite = rasterize_person(
            cam, parts, person.appearance.hair_rgb, _facing(cam, xy, heading), light.light_side
        )
        if sprite is not None:
            sprites.append((i, sprite))
    sprites.sort(key=lambda item: -ground.depth[item[0], f])
    for i, _ in sprites:
        draw_shadow(frame, cam, states[i].xy[f])
    labels = np.full(frame.shape[:2], -1, dtype=np.int32)
    for k, (_, sprite) in enumerate(sprites):
        composite(frame, labels, sprite, k, look.transfer, look.vignette)
    rows = []
    for k, (i, sprite) in enumerate(sprites):
        vis = visible_pixels(labels, sprite, k) / max(int(sprite.mask.sum()), 1)
        foot = ground.pixels[i, f]
        rows.append((f, job.people[i].person_id, *sprite.box, vis, *foot, *states[i].xy[f]))
    return rows


def render_camera(job: CameraJob, progress: Any = None) -> dict[str, Any]:
    """Render ``job``'s camera to its video file; return ground-truth boxes and timings.

    ``progress``, if given, is a queue that receives frame counts as rendering advances.
    """
    cam, light = job.placement.camera, job.placement.lighting
    background = render_background(cam, job.layout.ground_albedo, light)
    look = _CameraLook(light.transfer(), light.vignette_map(cam.width, cam.height_px))
    rng = np.random.default_rng([job.seed, 3, job.camera_index])
    noise = rng.normal(0.0, light.noise_sigma, (_NOISE_BANK, cam.height_px, cam.width, 3))
    noise = noise.astype(np.float32)
    t = np.arange(job.n_frames) / job.fps
    states = [p.state(t) for p in job.people]
    ground = _ground_points(cam, states)
    rows: list[tuple[Any, ...]] = []
    render_s = encode_s = 0.0
    with H264Writer(job.video_path, job.fps, cam.width, cam.height_px) as writer:
        for f in range(job.n_frames):
            t0 = time.perf_counter()
            frame = background.copy()
            rows.extend(_draw_frame(job, look, states, ground, f, frame))
            frame += noise[rng.integers(_NOISE_BANK)]
            out = np.clip(frame, 0, 255).astype(np.uint8)
            t1 = time.perf_counter()
            writer.write(out)
            render_s += t1 - t0
            encode_s += time.perf_counter() - t1
            if progress is not None and (f + 1) % 25 == 0:
                progress.put(25)
    if progress is not None:
        progress.put(job.n_frames % 25)
    table = {name: np.array([r[c] for r in rows]) for c, name in enumerate(_BOX_COLUMNS)}
    if not rows:
        table = {name: np.zeros(0) for name in _BOX_COLUMNS}
    return {
        "camera_id": job.placement.camera_id,
        "boxes": table,
        "n_frames": job.n_frames,
        "render_s": render_s,
        "encode_s": encode_s,
    }
