"""Bridging a family photo and CCTV crops: a linear map into the cameras' embedding space.

The re-ID embedder learned to match CCTV crops with CCTV crops. A reference photo is
another domain (close, frontal, warm indoor light, sharp), so its embedding sits off the
cloud of the same person's CCTV embeddings. :class:`PhotoAdapter` is a ``D x D`` matrix
fitted by ridge regression (towards the identity map) from the photos of the training
sites' people to the mean embedding of their CCTV crops; a photo's vector is mapped and
renormalised before search. Only photo vectors are mapped: CCTV embeddings, and so
tracking and fusion, are untouched. An adapter is tied to the embedder weights it was
fitted for (their hash); with other weights it is not applied.

``sightline train photo-adapter`` fits it (:mod:`sightline.training.photo_adapter`)
together with the calibration that turns a photo's cosine into a match probability.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_PHOTO_ADAPTER", "PhotoAdapter", "fit_photo_adapter"]

DEFAULT_PHOTO_ADAPTER = (
    Path(__file__).resolve().parent.parent / "models" / "weights" / "photo_adapter.npz"
)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def fit_photo_adapter(photos: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """The ``D x D`` matrix ``W`` minimising ``|P W^T - T|^2 + ridge |W - I|^2``.

    ``photos`` and ``targets`` are ``(N, D)`` (row i: a person's photo vector and the
    mean of their CCTV vectors). The ridge pulls ``W`` towards the identity map, so a
    few hundred people fit a 128 x 128 map without overfitting.
    """
    p, t = _normalised(photos), _normalised(targets)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"photos {p.shape} and targets {t.shape} must both be (N, D)")
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    eye = np.eye(p.shape[1])
    w_t = np.linalg.solve(p.T @ p + ridge * eye, p.T @ t + ridge * eye)
    return w_t.T


@dataclass(frozen=True)
class PhotoAdapter:
    """A fitted photo -> CCTV map for one embedder's weights (see the module docstring)."""

    matrix: np.ndarray
    embedder_sha256: str
    report: dict[str, Any] = field(default_factory=dict)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Photo vectors ``(N, D)`` mapped into CCTV space, L2-normalised (float32)."""
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != self.matrix.shape[1]:
            raise ValueError(
                f"photo vectors of shape {v.shape} do not fit a {self.matrix.shape} adapter"
            )
        return _normalised(v @ self.matrix.T).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write the matrix and its metadata to one ``.npz`` file."""
        meta = json.dumps({"embedder_sha256": self.embedder_sha256, "report": self.report})
        with Path(path).open("wb") as f:
            np.savez(f, matrix=self.matrix.astype(np.float32), meta=np.array(meta))

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PHOTO_ADAPTER) -> PhotoAdapter:
        """Read an adapter written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(np.asarray(data["matrix"]), meta["embedder_sha256"], meta["report"])

    @classmethod
    def for_embedder(
        cls, weights_sha256: str, path: str | Path = DEFAULT_PHOTO_ADAPTER
    ) -> PhotoAdapter | None:
        """The adapter at ``path`` if it was fitted for these embedder weights, else None."""
        if not Path(path).is_file():
            return None
        adapter = cls.load(path)
        return adapter if adapter.embedder_sha256 == weights_sha256 else None

    @classmethod
    def builtin(cls) -> PhotoAdapter | None:
        """The committed adapter, if it fits the built-in embedder's committed weights."""
        from sightline.models.builtin_embedder import DEFAULT_REID_WEIGHTS

        return cls.for_embedder(hashlib.sha256(DEFAULT_REID_WEIGHTS.read_bytes()).hexdigest())
