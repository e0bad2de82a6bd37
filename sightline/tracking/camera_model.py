"""A full pinhole camera recovered from a camera's ground-plane homography.

A site's calibration gives each camera a homography ``G`` from ground metres to image
pixels. For a pinhole camera ``G ~ K [r1 r2 t]``: the first two columns of the rotation
and the translation, seen through the intrinsics ``K``. With the usual CCTV assumptions
(square pixels, zero skew, principal point at the image centre, no lens distortion) the
only unknown in ``K`` is the focal length ``f``, and the two constraints on ``r1`` and
``r2`` (orthogonal, equal norm) determine it. That gives the full projection
``P = K [R | t]``, which measures heights: the head of a person standing at a known
ground point lies on the vertical line above it, so one pixel fixes how high it is.

The trade-off: a plane-to-plane homography carries no more than this, so a camera whose
principal point is far from the image centre, or whose lens distorts, gives biased
heights. A camera looking straight down (image plane parallel to the ground) has no
perspective on the ground and its focal length cannot be recovered at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sightline.geometry import apply_homography, as_points, box_foot_points

__all__ = ["GroundCamera", "box_head_points", "heights_from_boxes"]

# Relative size under which the focal-length equations count as carrying no information.
_DEGENERATE_TOL = 1e-12


def _focal_from_homography(g: np.ndarray, width: int, height: int) -> float:
    """Focal length in pixels of the camera behind ground-to-image homography ``g``."""
    # Condition the pixels (principal point to the origin, unit about the image size) so
    # that the two constraint equations below weigh alike whatever the resolution.
    s = float(max(width, height))
    shift = np.array(
        [[1.0 / s, 0.0, -width / (2.0 * s)], [0.0, 1.0 / s, -height / (2.0 * s)], [0.0, 0.0, 1.0]]
    )
    h = shift @ g
    h = h / np.linalg.norm(h)
    h1, h2 = h[:, 0], h[:, 1]
    # With w = 1 / f^2 (f in units of s pixels) the columns give r1 ~ (h11 / f, h21 / f, h31),
    # likewise r2, and
    #   r1 . r2 = 0:           (h11 h12 + h21 h22) w + h31 h32 = 0
    #   |r1|^2 = |r2|^2:       (h11^2 + h21^2 - h12^2 - h22^2) w + h31^2 - h32^2 = 0
    # Either one alone degenerates for some poses (orthogonality when the camera looks
    # along a ground axis), so w is their joint least-squares solution.
    a = np.array([h1[0] * h2[0] + h1[1] * h2[1], h1[0] ** 2 + h1[1] ** 2 - h2[0] ** 2 - h2[1] ** 2])
    b = np.array([h1[2] * h2[2], h1[2] ** 2 - h2[2] ** 2])
    denom = float(a @ a)
    if denom <= _DEGENERATE_TOL:
        raise ValueError(
            "homography gives no focal length: the image plane looks parallel to the ground "
            "(no perspective), so the camera's tilt cannot be recovered"
        )
    w = -float(a @ b) / denom
    if not np.isfinite(w) or w <= _DEGENERATE_TOL:
        f2 = s * s / w if w else float("inf")
        raise ValueError(
            "homography cannot come from a pinhole camera with square pixels and its "
            f"principal point at the image centre ({width}x{height}): it implies a focal "
            f"length squared of {f2:.4g} px^2, which must be positive; check the "
            "calibration points and the resolution"
        )
    return s / float(np.sqrt(w))


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    """Orthogonal matrix nearest ``m`` (Frobenius), keeping the sign of its determinant."""
    u, _, vt = np.linalg.svd(m)
    return u @ vt


@dataclass(frozen=True, eq=False)
class GroundCamera:
    """A pinhole camera in site coordinates: world metres, z up from the ground plane.

    ``intrinsics`` is ``K`` (3x3), ``rotation`` the world-to-camera rotation ``R`` (camera
    axes x right, y down, z forward) and ``translation`` ``t``, so a world point ``X``
    is at ``R X + t`` in camera coordinates. Build one with :meth:`from_homography`.
    """

    intrinsics: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    width: int
    height: int

    @classmethod
    def from_homography(cls, ground_to_image: np.ndarray, width: int, height: int) -> GroundCamera:
        """The camera behind a ground-to-image homography for a ``width`` x ``height`` image.

        Assumes square pixels, zero skew, the principal point at the image centre and no
        distortion. Raises ``ValueError`` naming the problem when the homography cannot
        come from such a camera (singular, no positive focal length, or no pose with the
        ground in front of the camera).
        """
        g = np.asarray(ground_to_image, dtype=np.float64)
        if g.shape != (3, 3) or not np.isfinite(g).all():
            raise ValueError(f"ground_to_image: expected a finite 3x3 matrix, got shape {g.shape}")
        if abs(np.linalg.det(g)) <= _DEGENERATE_TOL * np.linalg.norm(g) ** 3:
            raise ValueError("ground_to_image homography is singular (rank < 3)")
        focal = _focal_from_homography(g, width, height)
        k = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
        m = np.linalg.solve(k, g)
        # G is known only up to a scale, sign included. The sign is the one that puts the
        # ground seen at the bottom-centre of the image in front of the camera.
        ground_bottom = np.linalg.solve(g, np.array([width / 2.0, float(height), 1.0]))
        if abs(ground_bottom[2]) <= _DEGENERATE_TOL * np.linalg.norm(ground_bottom):
            raise ValueError("the bottom of the image sees the horizon, not the ground")
        scale = np.sqrt(np.linalg.norm(m[:, 0]) * np.linalg.norm(m[:, 1]))
        scale *= np.sign(ground_bottom[2])
        r1, r2, t = m[:, 0] / scale, m[:, 1] / scale, m[:, 2] / scale
        r3 = np.cross(r1, r2)
        # r3 = +-(r1 x r2): whichever puts the camera above the ground. The minus sign is a
        # ground frame whose (x, y) is left-handed when z points up.
        if float(r3 @ t) > 0.0:
            r3 = -r3
        rotation = _nearest_rotation(np.column_stack([r1, r2, r3]))
        return cls(intrinsics=k, rotation=rotation, translation=t, width=width, height=height)

    @property
    def focal_px(self) -> float:
        """Focal length in pixels."""
        return float(self.intrinsics[0, 0])

    @property
    def centre(self) -> np.ndarray:
        """Camera centre ``(x, y, z)`` in world metres; ``z`` is its height above the ground."""
        return -self.rotation.T @ self.translation

    @property
    def projection(self) -> np.ndarray:
        """The 3x4 projection matrix ``P = K [R | t]``."""
        return self.intrinsics @ np.column_stack([self.rotation, self.translation])

    def project(self, points_xyz: np.ndarray) -> np.ndarray:
        """Pixels ``(N, 2)`` of world points ``(N, 3)`` (metres). Points behind give ``nan``."""
        pts = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        homog = pts @ self.projection[:, :3].T + self.projection[:, 3]
        w = homog[:, 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = homog[:, :2] / w
        out[w[:, 0] <= 0.0] = np.nan
        return out

    def height_of(self, foot_xy: np.ndarray, head_pixels: np.ndarray) -> np.ndarray:
        """Height (metres) of the point above each ground ``foot_xy`` seen at ``head_pixels``.

        For each pair, the ``Z`` such that ``P (X, Y, Z, 1)`` best matches the head pixel:
        linear least squares over both image coordinates. ``foot_xy`` and ``head_pixels``
        are ``(N, 2)``; returns ``(N,)``, ``nan`` where the vertical line is seen end-on.
        """
        foot = as_points(foot_xy, "foot_xy")
        head = as_points(head_pixels, "head_pixels")
        if len(foot) != len(head):
            raise ValueError(f"{len(foot)} foot points but {len(head)} head pixels")
        p = self.projection
        base = foot @ p[:, [0, 1]].T + p[:, 3]  # P (X, Y, 0, 1), (N, 3)
        up = p[:, 2]  # what each metre of Z adds
        # u (base_z + Z up_z) = base_x + Z up_x, and likewise for v: a Z = b per coordinate.
        a = head * up[2] - up[:2]
        b = base[:, :2] - head * base[:, 2:3]
        num = (a * b).sum(axis=1)
        den = (a * a).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0.0, num / den, np.nan)


def box_head_points(boxes: np.ndarray) -> np.ndarray:
    """Top-centre of each ``(x1, y1, x2, y2)`` box, as ``(N, 2)``: the top of the head."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2.0, b[:, 1]], axis=1)


def heights_from_boxes(
    boxes_xyxy: np.ndarray, image_to_ground: np.ndarray, camera: GroundCamera
) -> np.ndarray:
    """Height in metres of the person in each box: ``(N,)`` from ``(N, 4)`` boxes.

    The foot is the bottom-centre mapped to the ground by ``image_to_ground``; the head is
    the top-centre. One box is noisy (a pixel of box error is about 1.5 cm for a 100 px
    tall person, and walking legs move the foot point); take the median over a track.
    """
    feet = apply_homography(image_to_ground, box_foot_points(boxes_xyxy))
    return camera.height_of(feet, box_head_points(boxes_xyxy))
