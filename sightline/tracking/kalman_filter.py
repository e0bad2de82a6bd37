"""A constant-velocity Kalman filter over boxes, vectorised across tracks.

State per track: ``(cx, cy, w, h, vcx, vcy, vw, vh)``; measurement ``(cx, cy, w, h)``.
Noise scales with the box size (as in ByteTrack / BoT-SORT): a 200 px tall person
jitters more in pixels than a 40 px one. Time is measured in nominal frames, so a
camera that dropped two frames predicts three steps ahead in one call.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KalmanBoxFilter", "xywh_to_xyxy", "xyxy_to_xywh"]

_DIM = 4


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` corner boxes to centre/size boxes ``(cx, cy, w, h)``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` centre/size boxes to corner boxes."""
    half = boxes[:, 2:] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


class KalmanBoxFilter:
    """Batched predict and update for many tracks at once (no per-track Python loop).

    ``std_position`` and ``std_velocity`` are fractions of the box size: raising
    ``std_position`` trusts detections less (smoother, laggier boxes); raising
    ``std_velocity`` lets tracks turn and accelerate faster but drift further when lost.
    """

    def __init__(self, std_position: float = 1 / 20, std_velocity: float = 1 / 160) -> None:
        self.std_position = std_position
        self.std_velocity = std_velocity
        self._observe = np.eye(_DIM, 2 * _DIM)

    def _size(self, mean: np.ndarray) -> np.ndarray:
        # (N, 4) scale per state component: width for x-ish, height for y-ish
        w, h = np.maximum(mean[:, 2], 1.0), np.maximum(mean[:, 3], 1.0)
        return np.stack([w, h, w, h], axis=1)

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from ``(N, 4)`` xywh measurements: means ``(N, 8)``, covs ``(N, 8, 8)``."""
        z = np.asarray(measurements, dtype=np.float64).reshape(-1, _DIM)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        size = self._size(mean)
        std = np.concatenate([2 * self.std_position * size, 10 * self.std_velocity * size], axis=1)
        return mean, _diag(std**2)

    def predict(
        self, mean: np.ndarray, cov: np.ndarray, steps: np.ndarray | float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Advance every track by ``steps`` frames (a scalar or one per track)."""
        n = mean.shape[0]
        if n == 0:
            return mean, cov
        dt = np.broadcast_to(np.asarray(steps, dtype=np.float64), (n,))
        motion = np.tile(np.eye(2 * _DIM), (n, 1, 1))
        motion[:, np.arange(_DIM), np.arange(_DIM) + _DIM] = dt[:, None]
        size = self._size(mean)
        std = np.concatenate([self.std_position * size, self.std_velocity * size], axis=1)
        noise = _diag(std**2 * dt[:, None])
        mean = np.einsum("nij,nj->ni", motion, mean)
        cov = motion @ cov @ motion.transpose(0, 2, 1) + noise
        return mean, cov

    def update(
        self, mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct ``(N, 8)`` tracks with their matched ``(N, 4)`` xywh measurements."""
        if mean.shape[0] == 0:
            return mean, cov
        size = self._size(mean)
        projected_cov = cov[:, :_DIM, :_DIM] + _diag((self.std_position * size) ** 2)
        gain = np.linalg.solve(projected_cov, cov[:, :_DIM, :]).transpose(0, 2, 1)
        innovation = np.asarray(measurements, dtype=np.float64) - mean[:, :_DIM]
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        cov = cov - gain @ projected_cov @ gain.transpose(0, 2, 1)
        return mean, cov


def _diag(values: np.ndarray) -> np.ndarray:
    out = np.zeros((*values.shape, values.shape[-1]))
    idx = np.arange(values.shape[-1])
    out[:, idx, idx] = values
    return out
