"""A pinhole camera with real perspective (position, height, yaw, tilt, focal length)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PinholeCamera"]


@dataclass(frozen=True)
class PinholeCamera:
    """A camera at ``position`` (x, y metres), ``height`` metres above the ground plane.

    ``yaw`` is the compass direction it looks along (radians from +x towards +y), ``tilt``
    how far it looks down below the horizon (radians), ``focal_px`` the focal length in
    pixels for a ``width`` x ``height_px`` image.
    """

    position: tuple[float, float]
    height: float
    yaw: float
    tilt: float
    focal_px: float
    width: int
    height_px: int

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates (x, y, z)."""
        return np.array([self.position[0], self.position[1], self.height])

    @property
    def rotation(self) -> np.ndarray:
        """World-to-camera rotation; camera axes: x right, y down (in image), z forward."""
        cy, sy = np.cos(self.yaw), np.sin(self.yaw)
        ct, st = np.cos(self.tilt), np.sin(self.tilt)
        forward = np.array([ct * cy, ct * sy, -st])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(forward, right)
        return np.stack([right, down, forward])

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 intrinsic matrix with the principal point at the image centre."""
        return np.array(
            [
                [self.focal_px, 0.0, self.width / 2.0],
                [0.0, self.focal_px, self.height_px / 2.0],
                [0.0, 0.0, 1.0],
            ]
        )

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` in camera coordinates ``(..., 3)``."""
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points ``(..., 3)``; returns pixels ``(..., 2)`` and depths ``(...)``.

        Points behind the camera get a non-positive depth; their pixels are meaningless.
        """
        cam = self.to_camera(points)
        depth = cam[..., 2]
        safe = np.where(depth > 1e-6, depth, 1e-6)
        u = self.focal_px * cam[..., 0] / safe + self.width / 2.0
        v = self.focal_px * cam[..., 1] / safe + self.height_px / 2.0
        return np.stack([u, v], axis=-1), depth

    def ground_to_image(self) -> np.ndarray:
        """Homography mapping ground (x, y, 0) to image pixels."""
        r = self.rotation
        t = -r @ self.centre
        h = self.intrinsics @ np.column_stack([r[:, 0], r[:, 1], t])
        return h / h[2, 2]

    def pixel_rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """World-space ray directions ``(..., 3)`` through pixel coordinates ``u``, ``v``."""
        x = (np.asarray(u) - self.width / 2.0) / self.focal_px
        y = (np.asarray(v) - self.height_px / 2.0) / self.focal_px
        cam_dirs = np.stack([x, y, np.ones_like(x)], axis=-1)
        return cam_dirs @ self.rotation

    @classmethod
    def looking_at(
        cls,
        position: tuple[float, float],
        height: float,
        target: tuple[float, float],
        hfov_deg: float,
        resolution: tuple[int, int],
        target_z: float = 0.0,
    ) -> PinholeCamera:
        """A camera at ``position``/``height`` aimed at ``target`` (x, y) at height ``target_z``."""
        dx, dy = target[0] - position[0], target[1] - position[1]
        dist = float(np.hypot(dx, dy))
        width, height_px = resolution
        focal = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        return cls(
            position=(float(position[0]), float(position[1])),
            height=float(height),
            yaw=float(np.arctan2(dy, dx)),
            tilt=float(np.arctan2(height - target_z, dist)),
            focal_px=float(focal),
            width=int(width),
            height_px=int(height_px),
        )
