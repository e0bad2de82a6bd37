"""The model interfaces: what every detector and embedder backend takes and returns.

A detector maps a batch of frames ``(N, H, W, 3) uint8 RGB`` to one :class:`Detections`
per frame, in the pixel coordinates of the frames it was given. An embedder maps a batch
of person crops (each ``(h, w, 3) uint8 RGB``, any size) to L2-normalised vectors
``(N, D) float32``. Backends are plugins: one file each under ``sightline.models``,
registered by their config ``type`` (see :mod:`sightline.models.registry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Detections",
    "DetectorBackend",
    "EmbedderBackend",
    "check_crops",
    "check_frames",
    "check_image",
    "l2_normalise",
    "read_weights",
    "select_device",
]


@dataclass(frozen=True)
class Detections:
    """Person boxes found in one frame: a struct of arrays.

    ``xyxy`` is ``(K, 4) float32`` (x1, y1, x2, y2 in pixels, x2 >= x1, y2 >= y1);
    ``scores`` is ``(K,) float32`` in [0, 1]. Rows are sorted by descending score.
    """

    xyxy: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (K, 4), got {self.xyxy.shape}")
        if self.scores.shape != (self.xyxy.shape[0],):
            raise ValueError(
                f"scores must have shape ({self.xyxy.shape[0]},), got {self.scores.shape}"
            )
        if self.xyxy.dtype != np.float32 or self.scores.dtype != np.float32:
            raise ValueError(
                f"xyxy and scores must be float32, got {self.xyxy.dtype} and {self.scores.dtype}"
            )

    @classmethod
    def empty(cls) -> Detections:
        """No boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    @classmethod
    def from_arrays(cls, xyxy: np.ndarray, scores: np.ndarray) -> Detections:
        """Build from any float arrays: casts to float32 and sorts by descending score."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")
        return cls(np.ascontiguousarray(xyxy[order]), np.ascontiguousarray(scores[order]))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def scaled(self, sx: float, sy: float) -> Detections:
        """The same boxes with x multiplied by ``sx`` and y by ``sy`` (a resize)."""
        factor = np.array([sx, sy, sx, sy], np.float32)
        return Detections(self.xyxy * factor, self.scores)

    def above(self, threshold: float) -> Detections:
        """Only the boxes scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(self.xyxy[keep], self.scores[keep])


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate a detector batch: ``(N, H, W, 3) uint8``; returns it unchanged."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise ValueError(f"frames must be an (N, H, W, 3) uint8 array, got shape {shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    return frames


def check_image(image: object, name: str) -> np.ndarray:
    """Validate one ``(H, W, 3) uint8`` image with H, W >= 1; errors start with ``name``."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) uint8 array, got shape {shape}")
    if image.dtype != np.uint8 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty uint8, got {image.dtype} {image.shape}")
    return image


def check_crops(crops: list[np.ndarray]) -> list[np.ndarray]:
    """Validate an embedder batch: a list of ``(h, w, 3) uint8`` crops with h, w >= 1."""
    for i, crop in enumerate(crops):
        check_image(crop, f"crop {i}")
    return crops


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def read_weights(path: Path | str, what: str, command: str) -> tuple[dict[str, Any], dict]:
    """The ``state_dict`` and metadata of a built-in weights file; a missing file is a
    ``FileNotFoundError`` naming ``what`` and the ``command`` that trains it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path} (train them with `{command}`)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["state_dict"], dict(blob.get("meta", {}))


def select_device(prefer_gpu: bool = True) -> tuple[str, bool]:
    """``("cuda", True)`` (fp16) when CUDA is visible and wanted, else ``("cpu", False)``."""
    import torch

    if prefer_gpu and torch.cuda.is_available():
        return "cuda", True
    return "cpu", False


class DetectorBackend(ABC):
    """A person detector. Subclasses set ``type`` and implement :meth:`detect`."""

    type: ClassVar[str]

    @abstractmethod
    def detect(self, frames: np.ndarray) -> list[Detections]:
        """One :class:`Detections` per frame of ``frames`` (N, H, W, 3) uint8 RGB."""

    @property
    def device(self) -> str:
        """Where the model runs (``cpu`` or ``cuda``)."""
        return "cpu"


class EmbedderBackend(ABC):
    """A re-identification embedder. Subclasses set ``type`` and implement :meth:`embed`."""

    type: ClassVar[str]

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the vectors :meth:`embed` returns."""

    @abstractmethod
    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, dim) float32`` L2-normalised vectors, one per crop (h, w, 3) uint8 RGB."""

    @property
    def device(self) -> str:
        """Where the model runs (``cpu`` or ``cuda``)."""
        return "cpu"
