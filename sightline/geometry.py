"""Ground-plane geometry: homographies, image <-> ground projection, polygons.

Everything is vectorised over numpy arrays of points shaped ``(N, 2)``.
World coordinates are metres on the site's ground plane; image coordinates are
pixels with the origin at the top-left corner, x to the right, y down.

Polygon area, containment and intersection use shapely (vectorised since 2.0);
the homography is a normalised direct linear transform (DLT) in numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
import shapely

__all__ = [
    "DegenerateCalibrationError",
    "apply_homography",
    "box_foot_points",
    "fit_homography",
    "homography_rmse",
    "invert_homography",
    "point_in_polygon",
    "polygon_area",
]

# Relative size below which a triangle of three points counts as collinear.
# Scale-free: the triangle's area is compared with the squared spread of the points.
_COLLINEAR_TOL = 1e-6


class DegenerateCalibrationError(ValueError):
    """Calibration points cannot define a homography (too few, or collinear)."""


def as_points(points: np.ndarray | list, name: str = "points") -> np.ndarray:
    """Return ``points`` as a float64 ``(N, 2)`` array, or raise naming ``name``."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 2:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (N, 2), got {arr.shape}")
    return arr


def _normaliser(points: np.ndarray) -> np.ndarray:
    """Similarity transform moving points to zero mean and mean distance sqrt(2) (Hartley)."""
    centre = points.mean(axis=0)
    spread = np.sqrt(((points - centre) ** 2).sum(axis=1)).mean()
    scale = np.sqrt(2.0) / spread if spread > 0 else 1.0
    return np.array(
        [[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]]
    )


def collinear_triples(points: np.ndarray) -> list[tuple[int, int, int]]:
    """Indices of every triple of points that lies (numerically) on one line."""
    pts = as_points(points)
    spread = float(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean())
    if spread == 0.0:
        return list(itertools.combinations(range(len(pts)), 3))
    triples = []
    for i, j, k in itertools.combinations(range(len(pts)), 3):
        a, b = pts[j] - pts[i], pts[k] - pts[i]
        if abs(a[0] * b[1] - a[1] * b[0]) / 2.0 <= _COLLINEAR_TOL * spread:
            triples.append((i, j, k))
    return triples


def _has_general_position_quad(points: np.ndarray) -> bool:
    """True if some four of the points have no three on one line."""
    bad = set(collinear_triples(points))
    for quad in itertools.combinations(range(len(points)), 4):
        if not any(t in bad for t in itertools.combinations(quad, 3)):
            return True
    return False


def check_calibration_points(image_pts: np.ndarray, ground_pts: np.ndarray) -> None:
    """Raise :class:`DegenerateCalibrationError` unless the pairs can define a homography.

    A plane-to-plane homography needs at least four pairs, and among them four points
    (in the image and on the ground) with no three on a line.
    """
    image_pts = as_points(image_pts, "image points")
    ground_pts = as_points(ground_pts, "ground points")
    if len(image_pts) != len(ground_pts):
        raise DegenerateCalibrationError(
            f"{len(image_pts)} image points but {len(ground_pts)} ground points; they must pair up"
        )
    if len(image_pts) < 4:
        raise DegenerateCalibrationError(
            f"need at least 4 calibration point pairs, got {len(image_pts)}"
        )
    for name, pts in (("image", image_pts), ("ground", ground_pts)):
        if not _has_general_position_quad(pts):
            triples = collinear_triples(pts)
            raise DegenerateCalibrationError(
                f"{name} points are degenerate: no 4 of them are free of collinear triples "
                f"(collinear triples by index: {triples[:5]}); spread the points out"
            )


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Fit the 3x3 homography mapping ``src`` points to ``dst`` points (least squares).

    Uses the normalised DLT: both point sets are conditioned before the SVD, which keeps
    the fit stable when pixel and metre coordinates differ by orders of magnitude.
    Raises :class:`DegenerateCalibrationError` for fewer than 4 pairs or collinear points.
    """
    src = as_points(src, "source points")
    dst = as_points(dst, "destination points")
    check_calibration_points(src, dst)
    t_src, t_dst = _normaliser(src), _normaliser(dst)
    s = apply_homography(t_src, src)
    d = apply_homography(t_dst, dst)
    n = len(s)
    a = np.zeros((2 * n, 9))
    a[0::2, 0:2], a[0::2, 2] = s, 1.0
    a[0::2, 6:8], a[0::2, 8] = -d[:, [0]] * s, -d[:, 0]
    a[1::2, 3:5], a[1::2, 5] = s, 1.0
    a[1::2, 6:8], a[1::2, 8] = -d[:, [1]] * s, -d[:, 1]
    _, sing, vt = np.linalg.svd(a)
    # A unique solution needs rank 8: the 8th singular value (of 8 for four pairs,
    # of 9 for more) must not vanish.
    if sing[7] <= 1e-10 * sing[0]:
        raise DegenerateCalibrationError("calibration points do not determine a unique homography")
    h_norm = vt[-1].reshape(3, 3)
    h = np.linalg.inv(t_dst) @ h_norm @ t_src
    return h / h[2, 2]


def invert_homography(h: np.ndarray) -> np.ndarray:
    """Inverse homography, scaled so its bottom-right entry is 1."""
    inv = np.linalg.inv(np.asarray(h, dtype=np.float64))
    return inv / inv[2, 2]


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through homography ``h``; returns ``(N, 2)``.

    Points that map to the line at infinity (for example image points above the horizon
    when ``h`` is image-to-ground) come back as ``nan``.
    """
    pts = as_points(points)
    homog = pts @ h[:, :2].T + h[:, 2]
    w = homog[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = homog[:, :2] / w
    out[(np.abs(w[:, 0]) < 1e-12)] = np.nan
    return out


def homography_rmse(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    """Root-mean-square distance between ``h(src)`` and ``dst`` (in ``dst`` units)."""
    err = apply_homography(h, src) - as_points(dst)
    return float(np.sqrt((err**2).sum(axis=1).mean()))


def box_foot_points(boxes: np.ndarray) -> np.ndarray:
    """Foot-point of each ``(x1, y1, x2, y2)`` box: the bottom-centre, as ``(N, 2)``.

    For an upright person this is where the feet touch the ground, the point that the
    camera's image-to-ground homography maps to the person's world position.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2.0, b[:, 3]], axis=1)


def polygon_area(polygon: np.ndarray | list) -> float:
    """Area of a simple polygon given as ``(M, 2)`` vertices (any orientation)."""
    return float(shapely.Polygon(as_points(polygon, "polygon")).area)


def point_in_polygon(points: np.ndarray, polygon: np.ndarray | list) -> np.ndarray:
    """Boolean mask, one per point of ``(N, 2)``, true where the point is inside ``polygon``.

    Points exactly on the boundary count as inside, so a person standing on a zone's
    edge is not dropped from both neighbouring zones.
    """
    pts = as_points(points)
    poly = shapely.Polygon(as_points(polygon, "polygon"))
    shapely.prepare(poly)
    return shapely.intersects_xy(poly, pts[:, 0], pts[:, 1])
