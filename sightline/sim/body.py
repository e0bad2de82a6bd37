"""Articulated body model: a person's pose as capsules (segments with radii) in 3D.

Legs and arms swing with the walking phase; the head is a sphere (a zero-length
capsule). Proportions follow height, build and age, so children are shorter with
relatively larger heads. Leg swing is kept small (a few degrees) and the shins taper to
thin ankles, so the bottom-centre of a person's box stays within about 0.15 m of where
they stand near the image centre (perspective lean adds up to ~0.08 m at the frame's
left and right edges), the convention the ground-plane projection relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["KIND_BODY", "KIND_HEAD", "Appearance", "BodyParts", "pose_parts"]

KIND_BODY, KIND_HEAD = 0, 1
_LEG_SWING = np.radians(4.0)
_ARM_SWING = np.radians(16.0)
_ANKLE_R = 0.015  # metres


@dataclass(frozen=True)
class Appearance:
    """How a person looks: the ground truth for attribute search."""

    upper: str
    lower: str
    upper_rgb: np.ndarray
    lower_rgb: np.ndarray
    skin_rgb: np.ndarray
    hair_rgb: np.ndarray
    height_m: float
    build: float
    is_child: bool
    bag: str | None
    bag_rgb: np.ndarray | None
    hat: str | None
    hat_rgb: np.ndarray | None


@dataclass(frozen=True)
class BodyParts:
    """Capsules of one posed body: endpoints ``a``/``b`` (K, 3), radii at each end, albedo, kind.

    A capsule's radius tapers linearly from ``radius_a`` at ``a`` to ``radius_b`` at ``b``.
    """

    a: np.ndarray
    b: np.ndarray
    radius_a: np.ndarray
    radius_b: np.ndarray
    colour: np.ndarray
    kind: np.ndarray


def pose_parts(
    app: Appearance, xy: np.ndarray, heading: float, phase: float, moving: bool
) -> BodyParts:
    """Capsules for ``app`` standing at ground point ``xy`` facing ``heading`` (radians).

    ``phase`` is the walking cycle angle; ``moving`` False gives a still, standing pose.
    """
    h, build = app.height_m, app.build
    fwd = np.array([np.cos(heading), np.sin(heading), 0.0])
    left = np.array([-np.sin(heading), np.cos(heading), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    base = np.array([xy[0], xy[1], 0.0])

    head_r = (0.075 if app.is_child else 0.063) * h
    leg_r = 0.034 * h * build
    hip_h = (0.47 if app.is_child else 0.52) * h
    shoulder_h = h - 2.0 * head_r - 0.04 * h
    torso_r = 0.085 * h * build
    arm_r = 0.024 * h * build
    swing = np.sin(phase) if moving else 0.0

    # (a, b, radius at a, radius at b, albedo, kind)
    parts: list[tuple[np.ndarray, np.ndarray, float, float, np.ndarray, int]] = []
    for side in (1.0, -1.0):
        hip = base + up * hip_h + left * side * 0.045 * h * build
        angle = side * _LEG_SWING * swing
        direction = np.sin(angle) * fwd - np.cos(angle) * up
        # The shin tapers to a thin ankle just above the ground: a round, wide foot end
        # would push the silhouette's bottom towards the camera at shallow view angles.
        leg_len = hip_h - _ANKLE_R
        knee = hip + direction * leg_len * 0.5
        ankle = hip + direction * leg_len
        parts.append((hip, knee, leg_r * 1.1, leg_r, app.lower_rgb, KIND_BODY))
        parts.append((knee, ankle, leg_r, _ANKLE_R, app.lower_rgb, KIND_BODY))

        shoulder = base + up * shoulder_h + left * side * (torso_r + arm_r * 0.6)
        arm_angle = -side * _ARM_SWING * swing
        arm_dir = np.sin(arm_angle) * fwd - np.cos(arm_angle) * up + left * side * 0.08
        elbow = shoulder + arm_dir * 0.17 * h
        fore_dir = arm_dir + fwd * (0.25 if moving else 0.1)
        wrist = elbow + fore_dir / np.linalg.norm(fore_dir) * 0.16 * h
        parts.append((shoulder, elbow, arm_r, arm_r, app.upper_rgb, KIND_BODY))
        parts.append((elbow, wrist, arm_r * 0.85, arm_r * 0.7, app.skin_rgb, KIND_BODY))

    pelvis = base + up * (hip_h + 0.2 * torso_r)
    neck = base + up * (shoulder_h - 0.35 * torso_r)
    parts.append((pelvis, neck, torso_r, torso_r, app.upper_rgb, KIND_BODY))
    head = base + up * (h - head_r)
    parts.append((head, head, head_r, head_r, app.skin_rgb, KIND_HEAD))
    if app.hat_rgb is not None:
        top = head + up * head_r * 0.55
        brim = head_r * 0.95
        parts.append((top, top + up * 0.02 * h, brim, brim, app.hat_rgb, KIND_BODY))
    if app.bag_rgb is not None:
        back = base - fwd * (torso_r + 0.025 * h)
        bag_r = 0.045 * h
        parts.append(
            (back + up * 0.57 * h, back + up * 0.68 * h, bag_r, bag_r, app.bag_rgb, KIND_BODY)
        )

    a, b, ra, rb, c, k = zip(*parts, strict=True)
    return BodyParts(
        a=np.array(a),
        b=np.array(b),
        radius_a=np.array(ra),
        radius_b=np.array(rb),
        colour=np.array(c, dtype=np.float32),
        kind=np.array(k),
    )
